"""``make_backend``: the index backend a setting names (FAISS, or Milvus at a URI)."""

from __future__ import annotations

from services.index.index_backend import (
    INDEX_BACKENDS,
    FaissBackend,
    IndexBackend,
    IndexBackendName,
)


def make_backend(name: IndexBackendName, milvus_uri: str | None = None) -> IndexBackend:
    """The backend called ``name`` ("faiss", or "milvus" at ``milvus_uri``). pymilvus is
    imported only for Milvus, so the embedded default does not load it."""
    if name == "faiss":
        return FaissBackend()
    if name == "milvus":
        from services.index.milvus_uri import check_milvus_uri

        if not milvus_uri:
            raise ValueError("the milvus index backend needs AVID_MILVUS_URI")
        check_milvus_uri(milvus_uri)
        from services.index.milvus_index import MilvusBackend

        return MilvusBackend(milvus_uri)
    raise ValueError(f"index backend must be one of {INDEX_BACKENDS}, got {name!r}")
