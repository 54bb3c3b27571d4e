"""``avid reindex``: re-embed every stored item's kept media with a new checkpoint (``run``),
staging the new vectors in a side database until all are made (``staging``)."""
