"""``POST /embed/video`` and ``POST /embed/audio``: embed an upload and store it as an item.

Thin: the form goes to ``services.ingest.submit_upload``, which answers now or starts a job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from services import ingest
from services.api.deps import CanWrite, StateDep
from services.api.schemas import ERROR_RESPONSES, EmbedResult, JobAccepted
from services.batch_fields import ITEM_ID_PATTERN
from services.index import ItemKind
from services.item_metadata import MAX_METADATA_BYTES, MAX_METADATA_DEPTH

router = APIRouter(tags=["embed"], dependencies=[CanWrite])

FileField = Annotated[UploadFile, File(description="a video or audio file FFmpeg can read")]
IdField = Annotated[
    str | None,
    Form(pattern=ITEM_ID_PATTERN, description="item id to use (default: a random one)"),
]
MetadataField = Annotated[
    str | None,
    Form(
        description=f"a JSON object stored with the item: at most {MAX_METADATA_BYTES} bytes, "
        f"nested at most {MAX_METADATA_DEPTH} deep"
    ),
]
StoreField = Annotated[bool, Form(description="false: embed only, store nothing")]
WindowsField = Annotated[bool, Form(description="also return per-window vectors")]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": JobAccepted, "description": "a long file: embedded as a background job"},
    **ERROR_RESPONSES,
}


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
    form = ingest.UploadForm(kind, file.file, file.filename, item_id, metadata, store, windows)
    outcome = ingest.submit_upload(
        form,
        settings=state.settings,
        backend=state.backend,
        store=state.store,
        jobs=state.jobs,
        limits=state.limits,
    )
    if isinstance(outcome, ingest.JobAccepted):
        url = str(request.url_for("get_job", job_id=outcome.job_id))
        body = JobAccepted(job_id=outcome.job_id, status_url=url)
        return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})
    return EmbedResult.model_validate(outcome.body)


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

    Files longer than ``sync_max_seconds`` are answered 202 with a job to poll. The same bytes
    are stored once: sent again under another ``id`` they are refused (409
    ``duplicate_content``, naming the stored item); sent again without an ``id`` (or with the
    stored one) they answer the stored item."""
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
    """Embed a sound (wav/mp3/ogg/flac, or a video's audio track) and store it as an item.

    The same duplicate-content rule as ``/embed/video``."""
    return _embed("audio", request, state, file, id, metadata, store, windows)
