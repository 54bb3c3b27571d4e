"""``GET /items``, ``GET /items/{item_id}``, ``DELETE /items/{item_id}``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services import media_files
from services.api.deps import Authenticated, StateDep, StoreDep
from services.api.routes.params import Limit, Offset
from services.api.schemas import ERROR_RESPONSES, ItemOut, ItemPage
from services.index import ItemKind, ItemNotFound

router = APIRouter(tags=["items"], dependencies=[Authenticated])


@router.get("/items", response_model=ItemPage, responses=ERROR_RESPONSES)
def list_items(
    store: StoreDep,
    offset: Offset = 0,
    limit: Limit = 50,
    kind: ItemKind | None = None,
) -> ItemPage:
    """A page of stored items, oldest first."""
    records, total = store.list_items(offset, limit, kind)
    return ItemPage(items=[ItemOut.of(r) for r in records], total=total, offset=offset, limit=limit)


@router.get("/items/{item_id}", response_model=ItemOut, responses=ERROR_RESPONSES)
def get_item(item_id: str, store: StoreDep) -> ItemOut:
    record = store.get(item_id)
    if record is None:
        raise ItemNotFound(item_id)
    return ItemOut.of(record)


@router.delete(
    "/items/{item_id}", status_code=204, response_class=Response, responses=ERROR_RESPONSES
)
def delete_item(item_id: str, state: StateDep) -> Response:
    """Remove the item, its vectors and its kept media file, unless another item (of another
    model version, not yet reindexed) holds the same file: then the file stays for it."""
    if not media_files.delete_item(state.store, state.settings.media_dir, item_id):
        raise ItemNotFound(item_id)
    return Response(status_code=204)
