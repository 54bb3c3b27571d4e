"""The service's index store: items and window vectors durable in SQLite (or PostgreSQL),
searched through FAISS (one index per modality). Framework-free: no FastAPI or Celery here."""

from services.index.errors import (
    BadItem,
    BadVector,
    DuplicateContent,
    IndexStoreError,
    ItemExists,
    ItemNotFound,
    ModelVersionMismatch,
    StoreLocked,
    WindowNotFound,
)
from services.index.index_settings import (
    HNSWParams,
    IndexSpec,
    IndexType,
    IVFParams,
    SnapshotPolicy,
)
from services.index.item_filter import FieldCondition, ItemFilter
from services.index.records import (
    ItemKind,
    ItemRecord,
    Modality,
    NewItem,
    SearchHit,
    WindowVectors,
)
from services.index.store import IndexStore

__all__ = [
    "BadItem",
    "BadVector",
    "DuplicateContent",
    "FieldCondition",
    "HNSWParams",
    "IVFParams",
    "IndexSpec",
    "IndexStore",
    "IndexStoreError",
    "IndexType",
    "ItemExists",
    "ItemFilter",
    "ItemKind",
    "ItemNotFound",
    "ItemRecord",
    "Modality",
    "ModelVersionMismatch",
    "NewItem",
    "SearchHit",
    "SnapshotPolicy",
    "StoreLocked",
    "WindowNotFound",
    "WindowVectors",
]
