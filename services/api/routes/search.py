"""``GET /search`` (with a stored item), ``POST /search`` (with an uploaded file) and
``POST /search/vector`` (with a raw vector)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import BaseModel, Field

from services import query
from services.api.deps import Authenticated, StateDep
from services.api.errors import ApiError
from services.api.routes.params import MAX_K, At, AtForm, K, KForm
from services.api.schemas import ERROR_RESPONSES, SearchResults, Vector
from services.index import ItemKind, Modality
from services.search_options import SearchOptions, parse_filter

router = APIRouter(tags=["search"], dependencies=[Authenticated])

_FILTER_TEXT = (
    'JSON object of metadata fields the items must hold: {"label": "dog"} (equality), '
    '{"label": {"in": ["dog", "cat"]}} (one of), {"year": {"gte": 2000, "lt": 2010}} '
    '(a number in a range: gt, gte, lt, lte); "a.b" is field b of object a'
)
_THRESHOLD_TEXT = "leave out hits scoring below this (cosine similarity, -1..1)"
_KIND_TEXT = (
    "only items of this kind: with target=audio, 'audio' keeps the sound files and 'video' "
    "the soundtracks of videos (default: both)"
)
_VECTORS_TEXT = "return each hit's matched window vector (target modality)"
_TARGET_TEXT = "the index to search: video (pictures) or audio (sounds)"

FilterQuery = Annotated[str | None, Query(description=_FILTER_TEXT)]
FilterForm = Annotated[str | None, Form(description=_FILTER_TEXT)]
ThresholdQuery = Annotated[
    float | None, Query(ge=-1, le=1, allow_inf_nan=False, description=_THRESHOLD_TEXT)
]
ThresholdForm = Annotated[
    float | None, Form(ge=-1, le=1, allow_inf_nan=False, description=_THRESHOLD_TEXT)
]
KindQuery = Annotated[ItemKind | None, Query(description=_KIND_TEXT)]
KindForm = Annotated[ItemKind | None, Form(description=_KIND_TEXT)]
VectorsQuery = Annotated[bool, Query(description=_VECTORS_TEXT)]
VectorsForm = Annotated[bool, Form(description=_VECTORS_TEXT)]


def _options(
    raw_filter: str | None, kind: ItemKind | None, threshold: float | None, with_vectors: bool
) -> SearchOptions:
    return SearchOptions(parse_filter(raw_filter, kind), threshold, with_vectors)


@router.get("/search", response_model=SearchResults, responses=ERROR_RESPONSES)
def search_stored(
    state: StateDep,
    audio: Annotated[
        str | None, Query(description="item id: search with its sound (default: find videos)")
    ] = None,
    video: Annotated[
        str | None, Query(description="item id: search with its pictures (default: find sounds)")
    ] = None,
    target: Annotated[
        Modality | None, Query(description=f"{_TARGET_TEXT}; default: the other modality")
    ] = None,
    k: K = 10,
    at: At = None,
    filter: FilterQuery = None,
    score_threshold: ThresholdQuery = None,
    item_kind: KindQuery = None,
    with_vectors: VectorsQuery = False,
) -> SearchResults:
    """Search with a stored item (cross-modal by default; ``target`` of the query's own
    modality: video->video, audio->audio); the item itself is left out of the results."""
    if (audio is None) == (video is None):
        raise ApiError(422, "invalid_request", "give exactly one of 'audio' or 'video'")
    item_id, query_modality = (audio, "audio") if audio is not None else (video, "video")
    assert item_id is not None
    options = _options(filter, item_kind, score_threshold, with_vectors)
    modality: Modality = "audio" if query_modality == "audio" else "video"
    body = query.search_by_item(state.store, item_id, modality, k, at, target, options)
    return SearchResults.model_validate(body)


@router.post("/search", response_model=SearchResults, responses=ERROR_RESPONSES)
def search_upload(
    state: StateDep,
    file: Annotated[UploadFile, File(description="the query: a sound or a video")],
    target: Annotated[
        Modality,
        Form(
            description="video: find videos (by default matching the file's sound); "
            "audio: find sounds (by default fitting the file's pictures)"
        ),
    ],
    query_modality: Annotated[
        Modality | None,
        Form(
            alias="query",
            description="what of the file to search with: audio or video (default: the other "
            "modality than target; the same one searches video->video or audio->audio)",
        ),
    ] = None,
    k: KForm = 10,
    at: AtForm = None,
    filter: FilterForm = None,
    score_threshold: ThresholdForm = None,
    item_kind: KindForm = None,
    with_vectors: VectorsForm = False,
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
        query_modality=query_modality,
        options=_options(filter, item_kind, score_threshold, with_vectors),
    )
    return SearchResults.model_validate(body)


class VectorQuery(BaseModel):
    vector: Vector = Field(description="a vector of this service's model (128 numbers)")
    target: Modality = Field(description=_TARGET_TEXT)
    k: int = Field(10, ge=1, le=MAX_K)
    filter: dict[str, object] | None = Field(None, description=_FILTER_TEXT)
    score_threshold: float | None = Field(None, ge=-1, le=1, description=_THRESHOLD_TEXT)
    item_kind: ItemKind | None = Field(None, description=_KIND_TEXT)
    with_vectors: bool = Field(False, description=_VECTORS_TEXT)


@router.post("/search/vector", response_model=SearchResults, responses=ERROR_RESPONSES)
def search_vector(state: StateDep, body: VectorQuery) -> SearchResults:
    """Search the ``target`` index with a raw vector (normalised here), e.g. one that
    ``/embed/*`` or ``with_vectors`` returned."""
    options = SearchOptions(
        parse_filter(body.filter, body.item_kind), body.score_threshold, body.with_vectors
    )
    found = query.search_by_vector(state.store, body.vector, body.target, body.k, options)
    return SearchResults.model_validate(found)
