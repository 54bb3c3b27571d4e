"""``avid migrate-index``: an embedded data directory's items and vectors copied into the
scale-out backends (Milvus for the vectors, PostgreSQL for the items)."""
