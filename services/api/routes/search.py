"""``GET /search`` (with a stored item) and ``POST /search`` (with an uploaded file)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from services import query
from services.api.deps import Authenticated, StateDep
from services.api.errors import ApiError
from services.api.routes.params import At, AtForm, K, KForm
from services.api.schemas import ERROR_RESPONSES, SearchResults
from services.index import Modality

router = APIRouter(tags=["search"], dependencies=[Authenticated])


@router.get("/search", response_model=SearchResults, responses=ERROR_RESPONSES)
def search_stored(
    state: StateDep,
    audio: Annotated[
        str | None, Query(description="item id: find videos whose pictures match its sound")
    ] = None,
    video: Annotated[
        str | None, Query(description="item id: find sounds that fit its pictures")
    ] = None,
    k: K = 10,
    at: At = None,
) -> SearchResults:
    """Cross-modal search with a stored item; the item itself is left out of the results."""
    if (audio is None) == (video is None):
        raise ApiError(422, "invalid_request", "give exactly one of 'audio' or 'video'")
    item_id, modality = (audio, "audio") if audio is not None else (video, "video")
    assert item_id is not None
    query_modality: Modality = "audio" if modality == "audio" else "video"
    return SearchResults.model_validate(
        query.search_by_item(state.store, item_id, query_modality, k, at)
    )


@router.post("/search", response_model=SearchResults, responses=ERROR_RESPONSES)
def search_upload(
    state: StateDep,
    file: Annotated[UploadFile, File(description="the query: a sound or a video")],
    target: Annotated[
        Modality,
        Form(
            description="video: find videos matching the file's sound; "
            "audio: find sounds fitting the file's pictures"
        ),
    ],
    k: KForm = 10,
    at: AtForm = None,
) -> SearchResults:
    """Embed the uploaded file (nothing is stored) and search the ``target`` index with it."""
    body = query.search_upload(
        file.file,
        file.filename,
        target,
        k,
        at,
        settings=state.settings,
        backend=state.backend,
        store=state.store,
        limits=state.limits,
    )
    return SearchResults.model_validate(body)
