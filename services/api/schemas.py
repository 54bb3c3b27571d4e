"""Response bodies of the HTTP API (pydantic models: validation and the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.index import ItemRecord

Vector = list[float]


class ErrorDetail(BaseModel):
    code: str = Field(examples=["no_stream"])
    message: str = Field(examples=["clip.wav: no video stream; use /embed/audio"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class WindowOut(BaseModel):
    start: float
    end: float
    video: Vector | None
    audio: Vector | None


class EmbedResult(BaseModel):
    id: str | None = Field(description="the stored item's id (null with store=false)")
    kind: Literal["video", "audio"]
    duration: float
    has_video: bool
    has_audio: bool
    model_version: str
    video: Vector | None = Field(description="item-level video vector (128, unit norm)")
    audio: Vector | None = Field(description="item-level audio vector; null without audio")
    windows: list[WindowOut] | None = Field(None, description="per-window vectors if asked")


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class JobOut(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float
    created_at: float
    updated_at: float
    result: EmbedResult | None = None
    error: ErrorDetail | None = None


class JobPage(BaseModel):
    jobs: list[JobOut]
    total: int
    offset: int
    limit: int


class SearchResult(BaseModel):
    id: str
    kind: Literal["video", "audio"]
    score: float = Field(description="cosine similarity of the best-matching window pair")
    start: float = Field(description="start (s) of the item's best-matching window")
    end: float
    metadata: dict[str, Any]
    file_name: str | None = Field(None, description="the item's uploaded file name")
    size_bytes: int | None = Field(None, description="the item's uploaded file's size in bytes")
    vector: Vector | None = Field(
        None, description="the matched window's vector (with_vectors=true only)"
    )


class SearchResults(BaseModel):
    results: list[SearchResult]


class ItemOut(BaseModel):
    id: str
    kind: Literal["video", "audio"]
    model_version: str
    content_hash: str
    duration: float
    has_video: bool
    has_audio: bool
    n_video_windows: int
    n_audio_windows: int
    metadata: dict[str, Any]
    created_at: float
    file_name: str | None = Field(description="the uploaded file's name (sanitised), if sent")
    size_bytes: int | None = Field(description="the uploaded file's size in bytes")

    @classmethod
    def of(cls, record: ItemRecord) -> ItemOut:
        return cls(
            id=record.item_id,
            kind=record.kind,
            model_version=record.model_version,
            content_hash=record.content_hash,
            duration=record.duration,
            has_video=record.has_video,
            has_audio=record.has_audio,
            n_video_windows=record.n_video_windows,
            n_audio_windows=record.n_audio_windows,
            metadata=record.metadata,
            created_at=record.created_at,
            file_name=record.file_name,
            size_bytes=record.size_bytes,
        )


class ServiceInfo(BaseModel):
    model_version: str = Field(description="the model whose vectors this service searches")
    items: int = Field(description="stored items of this model version")
    access: Literal["read", "write"] = Field(
        description="what the caller's key allows: read (search, read) or write (all)"
    )
    max_upload_bytes: int
    sync_max_seconds: float = Field(description="longer uploads are embedded as a job (202)")


class ItemPage(BaseModel):
    items: list[ItemOut]
    total: int
    offset: int
    limit: int
    next_cursor: str | None = Field(
        None, description="pass as ``cursor`` for the page after this one; null at the end"
    )


class MediaUrl(BaseModel):
    url: str = Field(description="the item's kept file (HTTP Range), for a <video> or <audio>")
    poster_url: str = Field(description="its poster (a JPEG), for an <img>")
    expires_at: int | None = Field(
        description="when the URLs stop working (UNIX seconds); null: the service has no key, "
        "they carry no token and do not expire"
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "a body the multipart parser refuses (a form field over its size limit, ...)"),
        (401, "missing or wrong API key"),
        (
            403,
            "the read-only key on a route that stores, changes or deletes; a media token "
            "of another item",
        ),
        (404, "unknown item or job"),
        (408, "the request body stalled (no data for AVID_BODY_TIMEOUT_S)"),
        (409, "conflicting id or kind, duplicate content, or an item of another model version"),
        (413, "upload, metadata, duration or resolution over a limit"),
        (422, "bad parameters, or media that cannot be used"),
        (503, "shutting down, the broker down, or no worker of the service's model"),
    )
}
