"""An item's files: its kept file (``/media``, with HTTP Range), a picture of it
(``/poster``), and short-lived signed URLs for both (``/media-url``) for a ``<video>`` or
``<img>`` element, which cannot send the key header (``services.api.media_tokens``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from services import item_media
from services.api.deps import Authenticated, CanReadMedia, SettingsDep, StoreDep
from services.api.media_tokens import issue_media_token, token_expiry
from services.api.schemas import ERROR_RESPONSES, MediaUrl
from services.index import ItemNotFound

router = APIRouter(tags=["items"])

PosterAt = Annotated[
    float | None,
    Query(ge=0, allow_inf_nan=False, description="time (s) of the picture; default: mid-file"),
]


@router.get(
    "/items/{item_id}/media-url",
    response_model=MediaUrl,
    responses=ERROR_RESPONSES,
    dependencies=[Authenticated],
)
def item_media_url(
    item_id: str, request: Request, store: StoreDep, settings: SettingsDep
) -> MediaUrl:
    """Signed URLs of the item's media and poster that work without the key header, for
    ``AVID_MEDIA_TOKEN_TTL_S`` (default 15 min): a ``<video src>`` seeks with Range requests
    through them. Each carries a ``token`` bound to this item, read-only, signed with the
    service's key; any key may ask (the read-only one too)."""
    if store.get(item_id) is None:
        raise ItemNotFound(item_id)
    media = request.url_for("item_media_file", item_id=item_id)
    poster = request.url_for("item_poster", item_id=item_id)
    if settings.api_key is None:
        return MediaUrl(url=str(media), poster_url=str(poster), expires_at=None)
    token = issue_media_token(
        settings.api_key.get_secret_value(), item_id, settings.media_token_ttl_s
    )
    return MediaUrl(
        url=str(media.include_query_params(token=token)),
        poster_url=str(poster.include_query_params(token=token)),
        expires_at=token_expiry(token),
    )


@router.get(
    "/items/{item_id}/media",
    response_class=FileResponse,
    responses={
        200: {"description": "the kept file", "content": {"video/mp4": {}, "audio/wav": {}}},
        206: {"description": "the byte range asked for (a `Range` header)"},
        416: {"description": "a range outside the file"},
        **ERROR_RESPONSES,
    },
    dependencies=[CanReadMedia],
)
def item_media_file(item_id: str, store: StoreDep, settings: SettingsDep) -> FileResponse:
    """The item's kept file as uploaded, with HTTP Range support (a video element seeks
    with it). With the key, or a ``token`` from ``/items/{item_id}/media-url``."""
    kept = item_media.kept_file(store, settings.media_dir, item_id)
    download_name = kept.record.file_name or f"{item_id}{kept.path.suffix}"
    return FileResponse(
        kept.path,
        media_type=kept.media_type,
        filename=download_name,
        content_disposition_type="inline",
    )


@router.get(
    "/items/{item_id}/poster",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERROR_RESPONSES},
    dependencies=[CanReadMedia],
)
def item_poster(
    item_id: str, store: StoreDep, settings: SettingsDep, at: PosterAt = None
) -> Response:
    """A JPEG picture: of a video item, its frame at ``at`` seconds (default: the middle; at
    most 320 px on its longer side); of an audio item, its waveform (320x120)."""
    kept = item_media.kept_file(store, settings.media_dir, item_id)
    jpeg = item_media.item_poster(settings.media_dir, kept, at)  # decoded once, then cached
    headers = {"Cache-Control": "private, max-age=3600"}
    return Response(jpeg, media_type="image/jpeg", headers=headers)
