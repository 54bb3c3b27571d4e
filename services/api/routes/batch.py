"""``POST /embed/batch``: several files in one request, each with its own result or error.

Thin: the per-file fields (``ids``, ``metadatas``) are checked by
``services.batch_fields`` before anything is saved; then each file goes to
``services.ingest.submit_upload`` as if it came alone (a few at once, so their windows share
the model's batches); a file's refusal is its own entry, never the request's."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from avid_model.media_suffixes import AUDIO_SUFFIXES
from services import ingest
from services.api.deps import CanWrite, StateDep
from services.api.errors import ApiError, describe
from services.api.routes.embed import MetadataField
from services.api.schemas import ERROR_RESPONSES, EmbedResult, ErrorDetail, JobAccepted
from services.batch_fields import batch_fields
from services.index import ItemKind

log = logging.getLogger(__name__)

router = APIRouter(tags=["embed"], dependencies=[CanWrite])

MAX_BATCH_FILES = 64
PARALLEL_FILES = 4


class BatchEntry(BaseModel):
    index: int = Field(description="the file's place in the request (0-based)")
    file_name: str | None
    status: int = Field(description="what the file alone would have been answered: 200, 202, 4xx")
    result: EmbedResult | None = None
    job: JobAccepted | None = None
    error: ErrorDetail | None = None


class BatchResults(BaseModel):
    results: list[BatchEntry]


def kind_for(upload: UploadFile, kind: Literal["auto", "video", "audio"]) -> ItemKind:
    if kind != "auto":
        return kind
    content_type = upload.content_type or ""
    suffix = PurePath(upload.filename or "").suffix.lower()
    return "audio" if content_type.startswith("audio/") or suffix in AUDIO_SUFFIXES else "video"


@router.post("/embed/batch", response_model=BatchResults, responses=ERROR_RESPONSES)
def embed_batch(
    request: Request,
    state: StateDep,
    files: Annotated[
        list[UploadFile], File(description=f"1 to {MAX_BATCH_FILES} video or audio files")
    ],
    kind: Annotated[
        Literal["auto", "video", "audio"],
        Form(description="auto: /embed/audio for sound files (audio/* or .wav, .mp3, ...)"),
    ] = "auto",
    ids: Annotated[
        str | None,
        Form(
            description="a JSON list with one item id per file, in the files' order: "
            '["clip-1", null, ...] (null: a random id); ids must differ',
        ),
    ] = None,
    metadatas: Annotated[
        str | None,
        Form(
            description="a JSON list with one metadata object per file, in the files' "
            'order: [{"label": "dog"}, null, ...]; each is merged over `metadata` (its keys '
            "win)",
        ),
    ] = None,
    metadata: MetadataField = None,
) -> BatchResults:
    """Embed and store several files; each entry is what ``/embed/{kind}`` would have
    answered for that file alone (a long file: a job to poll). ``metadata`` applies to all;
    ``ids`` and ``metadatas`` give each file its own (422 ``invalid_batch`` before anything
    is stored when they do not fit the files)."""
    if not 1 <= len(files) <= MAX_BATCH_FILES:
        raise ApiError(422, "invalid_request", f"send 1 to {MAX_BATCH_FILES} files")
    fields = batch_fields(len(files), ids, metadatas, metadata)  # refused whole, up front

    def one(index: int, upload: UploadFile) -> BatchEntry:
        entry: dict[str, Any] = {"index": index, "file_name": upload.filename}
        own = fields[index]
        form = ingest.UploadForm(
            kind_for(upload, kind), upload.file, upload.filename, own.item_id, own.metadata
        )
        try:
            outcome = ingest.submit_upload(
                form,
                settings=state.settings,
                backend=state.backend,
                store=state.store,
                jobs=state.jobs,
                limits=state.limits,
            )
        except Exception as exc:
            status, code, message = describe(exc)
            if status >= 500:
                log.error("batch file %d failed: %s", index, exc, exc_info=exc)
            return BatchEntry(**entry, status=status, error=ErrorDetail(code=code, message=message))
        if isinstance(outcome, ingest.JobAccepted):
            url = str(request.url_for("get_job", job_id=outcome.job_id))
            job = JobAccepted(job_id=outcome.job_id, status_url=url)
            return BatchEntry(**entry, status=202, job=job)
        return BatchEntry(**entry, status=200, result=EmbedResult.model_validate(outcome.body))

    with ThreadPoolExecutor(max_workers=min(PARALLEL_FILES, len(files))) as pool:
        entries = list(pool.map(one, range(len(files)), files))
    return BatchResults(results=entries)
