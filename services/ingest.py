"""Embed an uploaded file and store it as an item: the work behind ``POST /embed/*``.

``submit_upload`` checks the form, saves and probes the file, checks that the store would
take it (id, kind and content conflicts: all before the model runs), then embeds it now
(``EmbedResult``) or, for a long file, starts a background job (``JobAccepted``). The same
``EmbedRequest`` runs inline or as a job (its JSON payload), with the same result dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from avid_model.errors import EmptyMediaError, MediaError, NoUsableStreamError
from avid_model.inference import FileEmbedding
from avid_model.media import MediaInfo, MediaLimits, probe
from services.embedding import EmbeddingBackend
from services.index import (
    DuplicateContent,
    IndexStore,
    ItemExists,
    ItemKind,
    Modality,
    NewItem,
    WindowVectors,
)
from services.item_metadata import parse_metadata
from services.jobs import JobRunner, Progress
from services.settings import Settings
from services.uploads import sanitised_name, save_upload

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
    probe: dict[str, Any] | None = None  # the upload's MediaInfo: a job does not probe again
    file_name: str | None = None  # kept on the item (sanitised; jobs recorded before: None)
    size_bytes: int | None = None

    @property
    def keep_media(self) -> bool:
        return self.store

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> EmbedRequest:
        return cls(**payload)


@dataclass(frozen=True)
class UploadForm:
    """What a client sent to ``POST /embed/{kind}``: the file and the form's fields."""

    kind: ItemKind
    source: BinaryIO
    filename: str | None
    item_id: str | None = None
    metadata: str | None = None
    store: bool = True
    windows: bool = False


@dataclass(frozen=True)
class EmbedResult:
    """The upload was embedded now: ``body`` is the result (see ``result_body``)."""

    body: dict[str, Any]


@dataclass(frozen=True)
class JobAccepted:
    """The upload is long: it is embedded by the background job ``job_id``."""

    job_id: str


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


def check_storable(store: IndexStore, kind: ItemKind, sha256: str, item_id: str | None) -> None:
    """Refuse, before anything is embedded, what ``IndexStore.add_item`` would refuse after:
    ``item_id`` holding other content (``ItemExists``), this content stored as another kind
    (``ItemExists``) or under another id (``DuplicateContent``)."""
    if item_id is not None:
        same_id = store.get(item_id)
        if same_id is not None and (same_id.content_hash, same_id.model_version) != (
            sha256,
            store.model_version,
        ):
            raise ItemExists(
                f"item {item_id!r} already exists with other content or another model "
                f"version ({same_id.model_version!r})",
                item_id=item_id,
            )
    same_content = store.find_content(sha256)
    if same_content is None:
        return
    if same_content.kind != kind:
        raise _kind_conflict(same_content.kind, same_content.item_id)
    if item_id is not None and item_id != same_content.item_id:
        raise DuplicateContent.of(same_content.item_id, item_id)


def _kind_conflict(stored_kind: ItemKind, stored_id: str) -> ItemExists:
    return ItemExists(
        f"this file is already stored as {stored_kind} item {stored_id!r} "
        f"(a file is stored once, as one kind of item)",
        item_id=stored_id,
    )


def submit_upload(
    form: UploadForm,
    *,
    settings: Settings,
    backend: EmbeddingBackend,
    store: IndexStore,
    jobs: JobRunner,
    limits: MediaLimits,
) -> EmbedResult | JobAccepted:
    """Check, save and probe an upload, then embed it now or start a job for it.

    Every check that can fail runs before the model: the metadata (before the file is even
    saved), the media's headers and limits, and the store's conflicts. A refused upload
    leaves no file behind that it created."""
    metadata = parse_metadata(form.metadata)
    upload = save_upload(
        form.source,
        form.filename,
        settings.media_dir if form.store else settings.scratch_dir,
        settings.max_upload_bytes,
        unique_name=not form.store,
    )
    try:
        info = check_media(upload.path, form.kind, limits, upload.client_name)
        if form.store:
            check_storable(store, form.kind, upload.sha256, form.item_id)
    except (MediaError, ItemExists):
        upload.discard()
        raise
    request = EmbedRequest(
        kind=form.kind,
        path=str(upload.path),
        sha256=upload.sha256,
        client_name=upload.client_name,
        media_created=upload.created,
        store=form.store,
        windows=form.windows,
        item_id=form.item_id,
        metadata=metadata,
        probe=asdict(info),
        file_name=sanitised_name(form.filename),
        size_bytes=upload.size,
    )
    if info.duration > settings.sync_max_seconds:
        return JobAccepted(jobs.submit(request.to_payload()).id)
    return EmbedResult(embed_and_store(request, backend, store, info=info))


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
    info: MediaInfo | None = None,
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
            emb = backend.embed_file(path, wanted, progress, info)
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
                    file_name=request.file_name,
                    size_bytes=request.size_bytes,
                )
            )
            if record.kind != request.kind:
                raise _kind_conflict(record.kind, record.item_id)
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
    request = EmbedRequest.from_payload(payload)
    info = MediaInfo(**request.probe) if request.probe is not None else None
    return embed_and_store(request, backend, store, progress, info)


def job_input_missing(payload: Mapping[str, Any]) -> str | None:
    """Why a recorded embed job cannot run again after a restart (its file is gone), or None."""
    request = EmbedRequest.from_payload(payload)
    if not Path(request.path).is_file():
        return f"its upload {request.client_name!r} is no longer on disk; send it again"
    return None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
