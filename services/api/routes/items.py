"""``/items``: list, read, change (``PATCH``) and delete stored items (an item's files:
``routes/item_files.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from services import media_files
from services.api.deps import Authenticated, CanWrite, StateDep, StoreDep
from services.api.errors import ApiError
from services.api.routes.params import Limit, Offset
from services.api.schemas import ERROR_RESPONSES, ItemOut, ItemPage
from services.index import ItemKind, ItemNotFound
from services.item_metadata import MAX_METADATA_BYTES, patch_item_metadata

router = APIRouter(tags=["items"], dependencies=[Authenticated])


@router.get("/items", response_model=ItemPage, responses=ERROR_RESPONSES)
def list_items(
    store: StoreDep,
    offset: Offset = 0,
    limit: Limit = 50,
    kind: ItemKind | None = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=40,
            description="continue after the page that answered this ``next_cursor`` "
            "(instead of ``offset``: pages do not shift when items are deleted)",
        ),
    ] = None,
) -> ItemPage:
    """A page of stored items, oldest first, by ``offset`` or by ``cursor``; ``next_cursor``
    continues after this page (null at the end)."""
    if cursor is not None and offset:
        raise ApiError(422, "invalid_request", "give 'cursor' or 'offset', not both")
    if cursor is None:
        records, total = store.list_items(offset, limit, kind)
        last_row = store.row_of(records[-1].item_id) if records else None
        more = offset + len(records) < total
        next_cursor = str(last_row) if more and last_row is not None else None
    else:
        if not cursor.isdigit() or len(cursor) > 18:
            raise ApiError(422, "invalid_cursor", "cursor: pass back a next_cursor unchanged")
        records, total, next_row = store.items_after(int(cursor), limit, kind)
        next_cursor = None if next_row is None else str(next_row)
    return ItemPage(
        items=[ItemOut.of(r) for r in records],
        total=total,
        offset=offset,
        limit=limit,
        next_cursor=next_cursor,
    )


@router.get("/items/{item_id}", response_model=ItemOut, responses=ERROR_RESPONSES)
def get_item(item_id: str, store: StoreDep) -> ItemOut:
    record = store.get(item_id)
    if record is None:
        raise ItemNotFound(item_id)
    return ItemOut.of(record)


@router.patch(
    "/items/{item_id}",
    response_model=ItemOut,
    responses=ERROR_RESPONSES,
    dependencies=[CanWrite],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["metadata"],
                        "properties": {"metadata": {"type": "object"}},
                    },
                    "example": {"metadata": {"label": "dog", "old_key": None}},
                }
            },
        }
    },
)
async def patch_item(item_id: str, request: Request, store: StoreDep) -> ItemOut:
    """Change the item's metadata: ``{"metadata": {...}}`` is a JSON merge patch (RFC 7396)
    of it: keys are set, ``null`` removes a key, nested objects merge. Its vectors stay."""
    raw = await request.body()
    if len(raw) > 2 * MAX_METADATA_BYTES:
        raise ApiError(413, "too_large", f"the body is over {2 * MAX_METADATA_BYTES} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_metadata", "the body is not UTF-8 JSON") from None
    record = await run_in_threadpool(patch_item_metadata, store, item_id, text)
    return ItemOut.of(record)


@router.delete(
    "/items/{item_id}",
    status_code=204,
    response_class=Response,
    responses=ERROR_RESPONSES,
    dependencies=[CanWrite],
)
def delete_item(item_id: str, state: StateDep) -> Response:
    """Remove the item, its vectors and its kept media file, unless another item (of another
    model version, not yet reindexed) holds the same file: then the file stays for it."""
    if not media_files.delete_item(state.store, state.settings.media_dir, item_id):
        raise ItemNotFound(item_id)
    return Response(status_code=204)
