"""Copy the items of an embedded store (SQLite) into another item database (PostgreSQL),
with their window vectors, metadata and creation times, oldest first.

Resumable: items are copied a page at a time, one transaction per page, and an item whose
id the target already holds with the same content and model version is skipped, so a run
stopped half-way is finished by the next one. An id the target holds with other content, or
content the target holds under another id, is a conflict: left out and reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from services.index.item_database import ItemDatabase
from services.index.metadata import MetadataDB
from services.index.records import MODALITIES, ItemRecord, Modality, WindowVectors


@dataclass
class CopiedItems:
    copied: int = 0
    already_there: int = 0
    conflicts: list[str] = field(default_factory=list)  # one line per item left out


def copy_items(
    source: MetadataDB,
    target: ItemDatabase,
    *,
    page_size: int = 500,
    progress: Callable[[CopiedItems], None] | None = None,
) -> CopiedItems:
    """Every item of ``source`` into ``target`` (see the module doc)."""
    done = CopiedItems()
    after = 0
    while True:
        page, _, next_row = source.items_after(after, page_size, None)
        if page:
            _copy_page(source, target, page, done)
            if progress is not None:
                progress(done)
        if next_row is None:
            return done
        after = next_row


def _copy_page(
    source: MetadataDB, target: ItemDatabase, page: list[ItemRecord], done: CopiedItems
) -> None:
    present = target.item_summaries([item.item_id for item in page])
    with target.write_transaction() as tx:
        for item in page:
            if item.item_id in present:
                held = target.get(item.item_id, tx)
                same = held is not None and (held.content_hash, held.model_version) == (
                    item.content_hash,
                    item.model_version,
                )
                if same:
                    done.already_there += 1
                else:
                    done.conflicts.append(
                        f"{item.item_id}: the target holds other content under this id"
                    )
                continue
            clash = target.find_by_content(item.content_hash, item.model_version, tx)
            if clash is not None:
                done.conflicts.append(
                    f"{item.item_id}: the target holds this content as item {clash.item_id!r}"
                )
                continue
            target.insert_item(
                tx,
                item_id=item.item_id,
                kind=item.kind,
                model_version=item.model_version,
                content_hash=item.content_hash,
                duration=item.duration,
                metadata_json=json.dumps(item.metadata, allow_nan=False, sort_keys=True),
                windows=_windows_of(source, item),
                file_name=item.file_name,
                size_bytes=item.size_bytes,
                created_at=item.created_at,
            )
            done.copied += 1


def _windows_of(source: MetadataDB, item: ItemRecord) -> dict[Modality, WindowVectors]:
    windows: dict[Modality, WindowVectors] = {}
    for modality in MODALITIES:
        stored = source.windows_of(item.item_id, modality)
        if stored is not None:
            windows[modality] = stored.windows
    return windows
