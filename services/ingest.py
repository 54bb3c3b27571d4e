"""Embed an uploaded file and store it as an item: the work behind ``POST /embed/*``.

The same ``EmbedRequest`` runs inline (short files) or as a background job (its JSON payload),
and gives the same result dict either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avid_model.errors import EmptyMediaError, MediaError, NoUsableStreamError
from avid_model.inference import FileEmbedding
from avid_model.media import MediaInfo, MediaLimits, probe
from services.embedding import EmbeddingBackend
from services.index import IndexStore, ItemExists, ItemKind, Modality, NewItem, WindowVectors
from services.jobs import Progress

_OTHER_ENDPOINT: dict[Modality, str] = {"video": "/embed/audio", "audio": "/embed/video"}


@dataclass(frozen=True)
class EmbedRequest:
    """One upload to embed. ``media_created``: this upload wrote the file (so a rejected or
    unkept file may be removed); ``keep_media``: the file stays for ``avid reindex``."""

    kind: ItemKind
    path: str
    sha256: str
    client_name: str
    media_created: bool
    store: bool = True
    windows: bool = False
    item_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def keep_media(self) -> bool:
        return self.store

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> EmbedRequest:
        return cls(**payload)


def renamed(exc: MediaError, shown_name: str) -> MediaError:
    """The same error naming the client's file instead of the stored ``<sha256>`` name."""
    message = exc.message
    if exc.filename and message.startswith(f"{exc.filename}: "):
        message = message[len(exc.filename) + 2 :]
    fresh = type(exc)(message, path=shown_name)
    fresh.__cause__ = exc
    return fresh


def require_stream(info: MediaInfo, modality: Modality, shown_name: str) -> None:
    has = info.has_video if modality == "video" else info.has_audio
    if not has:
        hint = f"; use {_OTHER_ENDPOINT[modality]}" if modality == "video" else ""
        raise NoUsableStreamError(f"no {modality} stream{hint}", path=shown_name)


def check_media(path: Path, modality: Modality, limits: MediaLimits, shown_name: str) -> MediaInfo:
    """Probe the headers (limits, readability) and require a ``modality`` stream."""
    try:
        info = probe(path, limits)
    except MediaError as exc:
        raise renamed(exc, shown_name) from exc
    require_stream(info, modality, shown_name)
    return info


def _window_vectors(emb: FileEmbedding, modality: Modality) -> WindowVectors | None:
    vectors = emb.video if modality == "video" else emb.audio
    if vectors is None:
        return None
    if vectors.shape[0] != len(emb.starts):
        raise RuntimeError(f"{vectors.shape[0]} {modality} vectors for {len(emb.starts)} windows")
    return WindowVectors.from_lists(vectors.numpy(), emb.starts, emb.ends)


def _as_list(vector: Any) -> list[float] | None:
    return None if vector is None else [float(x) for x in np.asarray(vector).reshape(-1)]


def result_body(
    item_id: str | None, kind: ItemKind, emb: FileEmbedding, model_version: str, windows: bool
) -> dict[str, Any]:
    """The JSON result of an embed request (inline response or job result)."""
    body: dict[str, Any] = {
        "id": item_id,
        "kind": kind,
        "duration": emb.duration,
        "has_video": emb.has_video and kind == "video",
        "has_audio": emb.has_audio,
        "model_version": model_version,
        "video": _as_list(emb.item_video),
        "audio": _as_list(emb.item_audio),
        "windows": None,
    }
    if windows:
        rows = []
        for i, (start, end) in enumerate(zip(emb.starts, emb.ends, strict=True)):
            rows.append(
                {
                    "start": start,
                    "end": end,
                    "video": None if emb.video is None else _as_list(emb.video[i]),
                    "audio": None if emb.audio is None else _as_list(emb.audio[i]),
                }
            )
        body["windows"] = rows
    return body


def embed_and_store(
    request: EmbedRequest,
    backend: EmbeddingBackend,
    store: IndexStore,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Embed the file, add it to the index (when ``request.store``), return the result body.

    The index is only written once the whole file embedded; a ``MediaError`` part-way
    leaves it unchanged (and removes a file this upload created).
    """
    path = Path(request.path)
    wanted: frozenset[Modality] = frozenset(
        {"video", "audio"} if request.kind == "video" else {"audio"}
    )
    try:
        try:
            emb = backend.embed_file(path, wanted, progress)
        except MediaError as exc:
            raise renamed(exc, request.client_name) from exc
        if (emb.video if request.kind == "video" else emb.audio) is None:
            raise EmptyMediaError(
                f"no {request.kind} window could be cut from the file", path=request.client_name
            )
        item_id = request.item_id
        if request.store:
            record = store.add_item(
                NewItem(
                    kind=request.kind,
                    model_version=backend.model_version,
                    content_hash=request.sha256,
                    duration=emb.duration,
                    video=_window_vectors(emb, "video"),
                    audio=_window_vectors(emb, "audio"),
                    metadata=request.metadata,
                    item_id=request.item_id,
                )
            )
            if record.kind != request.kind:
                raise ItemExists(
                    f"this file is already stored as {record.kind} item {record.item_id!r} "
                    f"(a file is stored once, as one kind of item)",
                    item_id=record.item_id,
                )
            item_id = record.item_id
    except BaseException:
        if request.media_created:
            _remove(path)
        raise
    if not request.keep_media and request.media_created:
        _remove(path)
    if progress is not None:
        progress(1.0)
    return result_body(item_id, request.kind, emb, backend.model_version, request.windows)


def run_embed_job(
    payload: Mapping[str, Any], progress: Progress, backend: EmbeddingBackend, store: IndexStore
) -> dict[str, Any]:
    """A background job's body (see ``services.jobs``)."""
    return embed_and_store(EmbedRequest.from_payload(payload), backend, store, progress)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
