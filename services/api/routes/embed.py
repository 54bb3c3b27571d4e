"""``POST /embed/video`` and ``POST /embed/audio``: embed an upload and store it as an item."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from avid_model.errors import MediaError
from services.api.deps import Authenticated, StateDep
from services.api.errors import ApiError
from services.api.schemas import ERROR_RESPONSES, EmbedResult, JobAccepted
from services.index import ItemKind
from services.ingest import EmbedRequest, check_media, embed_and_store
from services.uploads import save_upload

router = APIRouter(tags=["embed"], dependencies=[Authenticated])

ITEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"

FileField = Annotated[UploadFile, File(description="a video or audio file FFmpeg can read")]
IdField = Annotated[
    str | None,
    Form(pattern=ITEM_ID_PATTERN, description="item id to use (default: a random one)"),
]
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 32
MetadataField = Annotated[
    str | None,
    Form(
        description=f"a JSON object stored with the item: at most {MAX_METADATA_BYTES} bytes, "
        f"nested at most {MAX_METADATA_DEPTH} deep"
    ),
]
StoreField = Annotated[bool, Form(description="false: embed only, store nothing")]
WindowsField = Annotated[bool, Form(description="also return per-window vectors")]

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[][{}]")

_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": JobAccepted, "description": "a long file: embedded as a background job"},
    **ERROR_RESPONSES,
}


def _nesting_depth(raw: str) -> int:
    """How deep arrays and objects nest in JSON text, counted without parsing it (a parser
    recurses, so text nested thousands deep would exhaust Python's stack)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub('""', raw)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """The ``metadata`` form field as a dict; checked before the upload is saved or embedded:
    at most ``MAX_METADATA_BYTES`` of JSON (else 413), nested at most ``MAX_METADATA_DEPTH``
    deep, a JSON object with no NaN or Infinity (else 422)."""
    if raw is None or not raw.strip():
        return {}
    size = len(raw.encode())
    if size > MAX_METADATA_BYTES:
        raise ApiError(
            413,
            "too_large",
            f"metadata is {size} bytes of JSON, over the limit of {MAX_METADATA_BYTES} bytes",
        )
    if _nesting_depth(raw) > MAX_METADATA_DEPTH:
        raise ApiError(
            422,
            "invalid_metadata",
            f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels",
        )
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, or NaN / Infinity
        raise ApiError(422, "invalid_metadata", f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object")
    return value


def _embed(
    kind: ItemKind,
    request: Request,
    state: StateDep,
    file: UploadFile,
    item_id: str | None,
    metadata: str | None,
    store: bool,
    windows: bool,
) -> EmbedResult | JSONResponse:
    settings = state.settings
    meta = parse_metadata(metadata)
    upload = save_upload(
        file.file,
        file.filename,
        settings.media_dir if store else settings.scratch_dir,
        settings.max_upload_bytes,
        unique_name=not store,
    )
    try:
        info = check_media(upload.path, kind, state.limits, upload.client_name)
    except MediaError:
        upload.discard()
        raise
    job = EmbedRequest(
        kind=kind,
        path=str(upload.path),
        sha256=upload.sha256,
        client_name=upload.client_name,
        media_created=upload.created,
        store=store,
        windows=windows,
        item_id=item_id,
        metadata=meta,
    )
    if info.duration > settings.sync_max_seconds:
        status = state.jobs.submit(job.to_payload())
        url = str(request.url_for("get_job", job_id=status.id))
        body = JobAccepted(job_id=status.id, status_url=url)
        return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})
    return EmbedResult.model_validate(embed_and_store(job, state.backend, state.store))


@router.post("/embed/video", response_model=EmbedResult, responses=_RESPONSES)
def embed_video(
    request: Request,
    state: StateDep,
    file: FileField,
    id: IdField = None,
    metadata: MetadataField = None,
    store: StoreField = True,
    windows: WindowsField = False,
) -> EmbedResult | JSONResponse:
    """Embed a video (its pictures and, when it has one, its sound) and store it as an item.

    Files longer than ``sync_max_seconds`` are answered 202 with a job to poll."""
    return _embed("video", request, state, file, id, metadata, store, windows)


@router.post("/embed/audio", response_model=EmbedResult, responses=_RESPONSES)
def embed_audio(
    request: Request,
    state: StateDep,
    file: FileField,
    id: IdField = None,
    metadata: MetadataField = None,
    store: StoreField = True,
    windows: WindowsField = False,
) -> EmbedResult | JSONResponse:
    """Embed a sound (wav/mp3/ogg/flac, or a video's audio track) and store it as an item."""
    return _embed("audio", request, state, file, id, metadata, store, windows)
