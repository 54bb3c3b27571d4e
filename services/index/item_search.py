"""Window-level FAISS results turned into one hit per item.

An item's score is its best (query window, item window) inner product. For each query row
FAISS is asked for more windows than ``k`` and, while a row has not yet produced ``k``
distinct items, asked again for four times as many (up to every vector): an item in the true
top ``k`` is necessarily among the top ``k`` distinct items of the query row that gives its
best pair, so once each row has ``k`` distinct items (or has seen everything) the merged
ranking is the one exact search over every pair would give (approximate indexes aside).
"""

from __future__ import annotations

import numpy as np

from services.index.item_database import ItemDatabase
from services.index.item_filter import ItemFilter
from services.index.metadata import WindowRef
from services.index.records import FloatArray, SearchHit
from services.index.vector_index import ModalityIndex

_FIRST_FETCH_FACTOR = 4
_GROWTH = 4


def search_items(
    index: ModalityIndex,
    db: ItemDatabase,
    queries: FloatArray,
    k: int,
    exclude_item: str | None = None,
    item_filter: ItemFilter | None = None,
) -> list[SearchHit]:
    """The ``k`` best items for unit ``queries`` (n, dim), best first (ties by item id),
    among those ``item_filter`` lets through (the search goes deeper until each query row has
    ``k`` such items, or has seen every vector).

    The caller holds the store's read lock so the index does not change underneath.
    """
    if k <= 0:
        return []
    # The first fetch needs no count (an index returns at most what it holds); the count is
    # asked only when a row must look deeper (on Milvus it is a query to the server).
    fetch = max(_FIRST_FETCH_FACTOR * k, k + 16)
    n_live: int | None = None
    refs: dict[int, WindowRef] = {}
    best: dict[str, tuple[float, int, int]] = {}  # item -> (score, row id, query row)
    allowed: dict[str, bool] = {}  # item -> whether the filter lets it through
    pending: list[int] = list(range(queries.shape[0]))
    while pending:
        scores, ids = index.search(np.ascontiguousarray(queries[pending]), fetch)
        unseen = {int(i) for i in np.unique(ids) if i >= 0 and int(i) not in refs}
        if unseen:
            refs.update(db.window_refs(sorted(unseen)))
        if item_filter is not None:
            judge = sorted({refs[i].item_id for i in unseen if i in refs} - allowed.keys())
            for item_id, judged in db.item_summaries(judge).items():
                allowed[item_id] = item_filter.matches(judged.kind, judged.metadata)
        short: list[int] = []
        for row, query_row in enumerate(pending):
            distinct: set[str] = set()
            for score, row_id in zip(scores[row], ids[row], strict=True):
                ref = refs.get(int(row_id)) if row_id >= 0 else None
                if ref is None or ref.item_id == exclude_item:
                    continue  # padding, a row deleted meanwhile, or the excluded item
                if item_filter is not None and not allowed.get(ref.item_id, False):
                    continue
                distinct.add(ref.item_id)
                current = best.get(ref.item_id)
                if current is None or score > current[0]:
                    best[ref.item_id] = (float(score), int(row_id), query_row)
            if len(distinct) < k:
                short.append(query_row)
        if short and n_live is None:
            n_live = index.live_count
        pending = short if n_live is not None and fetch < n_live else []
        if n_live is not None:
            fetch = min(n_live, fetch * _GROWTH)

    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    summaries = db.item_summaries([item_id for item_id, _ in ranked])
    hits: list[SearchHit] = []
    for item_id, (score, row_id, query_row) in ranked:
        summary = summaries.get(item_id)
        if summary is None:
            continue
        ref = refs[row_id]
        hits.append(
            SearchHit(
                item_id=item_id,
                score=min(score, 1.0),  # unit vectors: anything above is rounding
                start=ref.start,
                end=ref.end,
                window=ref.window,
                query_window=query_row,
                kind=summary.kind,
                metadata=summary.metadata,
                file_name=summary.file_name,
                size_bytes=summary.size_bytes,
            )
        )
    return hits
