"""Search: with a stored item, with an uploaded file that is not stored, or with a raw vector.

Cross-modal by default: a sound finds videos (its audio vectors against the VIDEO index) and
a video finds sounds (its video vectors against the AUDIO index). The query modality can be
the target's own too (video->video, audio->audio): both towers embed into one space. The
AUDIO index holds the sounds of audio items and the soundtracks of video items; an
``ItemFilter`` of kind keeps one of the two.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from avid_model.errors import MediaError, MediaTooLongError, NoUsableStreamError
from avid_model.media import MediaLimits
from services.embedding import EmbeddingBackend
from services.errors import InvalidInput
from services.index import IndexStore, Modality, SearchHit, WindowNotFound
from services.ingest import check_media, renamed
from services.search_options import SearchOptions
from services.settings import Settings
from services.uploads import save_upload

OTHER: dict[Modality, Modality] = {"video": "audio", "audio": "video"}


def hits_body(
    hits: list[SearchHit],
    options: SearchOptions | None = None,
    store: IndexStore | None = None,
    target: Modality | None = None,
) -> dict[str, Any]:
    """The JSON body of a search: the hits over ``options.score_threshold``, each with its
    matched window's ``target`` vector when ``options.with_vectors``."""
    options = options or SearchOptions()
    threshold = options.score_threshold
    kept = [h for h in hits if threshold is None or h.score >= threshold]
    results = []
    for h in kept:
        result: dict[str, Any] = {
            "id": h.item_id,
            "kind": h.kind,
            "score": h.score,
            "start": h.start,
            "end": h.end,
            "metadata": h.metadata,
            "file_name": h.file_name,
            "size_bytes": h.size_bytes,
        }
        if options.with_vectors and store is not None and target is not None:
            vectors = store.vectors_of(h.item_id, target).vectors
            result["vector"] = [float(x) for x in vectors[h.window]]
        results.append(result)
    return {"results": results}


def search_by_item(
    store: IndexStore,
    item_id: str,
    query_modality: Modality,
    k: int,
    at: float | None,
    target: Modality | None = None,
    options: SearchOptions | None = None,
) -> dict[str, Any]:
    """Items of ``target`` (default: the other modality) that match ``item_id``'s
    ``query_modality`` windows; the item itself is left out."""
    target = target or OTHER[query_modality]
    options = options or SearchOptions()
    hits = store.search_by_item(
        item_id,
        query_modality=query_modality,
        target=target,
        k=k,
        at=at,
        item_filter=options.item_filter,
    )
    return hits_body(hits, options, store, target)


def search_by_vector(
    store: IndexStore,
    vector: list[float],
    target: Modality,
    k: int,
    options: SearchOptions | None = None,
) -> dict[str, Any]:
    """Items of ``target`` nearest to a raw vector of this store's model (normalised here)."""
    options = options or SearchOptions()
    query = np.asarray(vector, dtype=np.float64)
    if query.shape != (store.spec.dim,):
        raise InvalidInput(
            f"vector: {store.spec.dim} numbers expected, got {query.size}", code="bad_vector"
        )
    if not np.all(np.isfinite(query)) or not np.linalg.norm(query) > 0:
        raise InvalidInput("vector: finite numbers, not all zero", code="bad_vector")
    unit = (query / np.linalg.norm(query)).astype(np.float32)
    hits = store.search(unit, target, k, item_filter=options.item_filter)
    return hits_body(hits, options, store, target)


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
    query_modality: Modality | None = None,
    options: SearchOptions | None = None,
) -> dict[str, Any]:
    """Embed ``path`` (the query modality only: by default the other one) and search
    ``target`` with it."""
    query_modality = query_modality or OTHER[target]
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
    options = options or SearchOptions()
    hits = store.search(queries, target, k, item_filter=options.item_filter)
    return hits_body(hits, options, store, target)


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
    query_modality: Modality | None = None,
    options: SearchOptions | None = None,
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
            query_modality=query_modality,
            options=options,
        )
    finally:
        with contextlib.suppress(OSError):
            upload.path.unlink()
