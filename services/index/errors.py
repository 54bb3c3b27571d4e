"""The index store's exceptions: one family, so callers (the API's exception handlers, the
Celery tasks) can catch ``IndexStoreError`` and map each subclass once."""

from __future__ import annotations


class IndexStoreError(Exception):
    """Base class of every error the index store raises on purpose."""


class ItemNotFound(IndexStoreError):
    """No item with this id (never stored, or deleted)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"item {item_id!r} not found")
        self.item_id = item_id


class ItemExists(IndexStoreError):
    """An item with this id (or this content under this model version) already exists and
    differs from the one being written; ``item_id`` is the stored item in the way."""

    def __init__(self, message: str, item_id: str | None = None) -> None:
        super().__init__(message)
        self.item_id = item_id


class DuplicateContent(ItemExists):
    """The content is already stored under another id (``item_id``: that one). The same bytes
    are one item per model version: stored again under a new id they are refused, not given
    the old id silently."""

    @classmethod
    def of(cls, stored_id: str, wanted_id: str | None) -> DuplicateContent:
        """The error for content stored as ``stored_id`` offered again as ``wanted_id``."""
        return cls(
            f"this file is already stored as item {stored_id!r}; it is not stored again "
            f"under {wanted_id!r}",
            item_id=stored_id,
        )


class ModelVersionMismatch(IndexStoreError):
    """Vectors from one embedding model met a store (or an item) of another: spaces never mix."""


class BadVector(IndexStoreError):
    """A vector array has the wrong shape or dimension, non-finite values, or a zero norm."""


class BadItem(IndexStoreError):
    """An item's fields are inconsistent (unknown kind, a video modality on an audio item,
    windows that end before they start, metadata that is not a JSON object, ...)."""


class WindowNotFound(IndexStoreError):
    """The item has no windows of the requested modality, or none covering the requested time."""


class StoreLocked(IndexStoreError):
    """Another process holds this data directory's writer lock (the store has one writer)."""
