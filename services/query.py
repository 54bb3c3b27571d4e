"""Cross-modal search: with a stored item, or with an uploaded file that is not stored.

A sound finds videos (its audio vectors against the VIDEO index) and a video finds sounds
(its video vectors against the AUDIO index): the query modality is the other one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from avid_model.errors import MediaError, MediaTooLongError, NoUsableStreamError
from avid_model.media import MediaLimits
from services.embedding import EmbeddingBackend
from services.index import IndexStore, Modality, SearchHit, WindowNotFound
from services.ingest import check_media, renamed
from services.settings import Settings
from services.uploads import save_upload

OTHER: dict[Modality, Modality] = {"video": "audio", "audio": "video"}


def hits_body(hits: list[SearchHit]) -> dict[str, Any]:
    return {
        "results": [
            {
                "id": h.item_id,
                "kind": h.kind,
                "score": h.score,
                "start": h.start,
                "end": h.end,
                "metadata": h.metadata,
                "file_name": h.file_name,
            }
            for h in hits
        ]
    }


def search_by_item(
    store: IndexStore, item_id: str, query_modality: Modality, k: int, at: float | None
) -> dict[str, Any]:
    """Items of the other modality that match ``item_id``'s ``query_modality`` windows."""
    hits = store.search_by_item(
        item_id, query_modality=query_modality, target=OTHER[query_modality], k=k, at=at
    )
    return hits_body(hits)


def search_by_file(
    path: Path,
    shown_name: str,
    target: Modality,
    k: int,
    at: float | None,
    *,
    backend: EmbeddingBackend,
    store: IndexStore,
    limits: MediaLimits,
    max_seconds: float,
) -> dict[str, Any]:
    """Embed ``path`` (the query modality only) and search ``target`` with it."""
    query_modality = OTHER[target]
    info = check_media(path, query_modality, limits, shown_name)
    if info.duration > max_seconds:
        raise MediaTooLongError(
            f"a search query lasts at most {max_seconds:g} s (this one {info.duration:.1f} s)",
            path=shown_name,
        )
    try:
        emb = backend.embed_file(path, frozenset({query_modality}), info=info)
    except MediaError as exc:
        raise renamed(exc, shown_name) from exc
    vectors = emb.video if query_modality == "video" else emb.audio
    if vectors is None or vectors.shape[0] == 0:
        raise NoUsableStreamError(f"no {query_modality} to search with", path=shown_name)
    queries = vectors.numpy()
    if at is not None:
        starts, ends = np.asarray(emb.starts), np.asarray(emb.ends)
        covering = np.flatnonzero((starts <= at) & (at <= ends))
        if not len(covering):
            raise WindowNotFound(f"no window of the query file covers t={at}s")
        centres = (starts[covering] + ends[covering]) / 2
        queries = queries[covering[np.argmin(np.abs(centres - at))]]
    return hits_body(store.search(queries, target, k))


def search_upload(
    source: BinaryIO,
    filename: str | None,
    target: Modality,
    k: int,
    at: float | None,
    *,
    settings: Settings,
    backend: EmbeddingBackend,
    store: IndexStore,
    limits: MediaLimits,
) -> dict[str, Any]:
    """Save an uploaded query to the scratch directory, search with it, remove it."""
    upload = save_upload(
        source, filename, settings.scratch_dir, settings.max_upload_bytes, unique_name=True
    )
    try:
        return search_by_file(
            upload.path,
            upload.client_name,
            target,
            k,
            at,
            backend=backend,
            store=store,
            limits=limits,
            max_seconds=max(settings.sync_max_seconds, settings.window_hop),
        )
    finally:
        with contextlib.suppress(OSError):
            upload.path.unlink()
