"""The per-file fields of ``POST /embed/batch``: ``ids`` and ``metadatas``, JSON lists
aligned with the files (Chroma's ``add(ids=..., metadatas=...)``, Qdrant's batch ``ids`` and
``payloads``), beside ``metadata``, one object for every file.

``batch_fields`` checks them all before anything is saved or embedded, so a request whose
lists do not fit its files is refused whole (``InvalidInput``, code ``invalid_batch``, naming
the field and the entry), never half stored."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.errors import InvalidInput, ServiceError
from services.item_metadata import MAX_METADATA_DEPTH, nesting_depth, parse_metadata

ITEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
_ITEM_ID = re.compile(ITEM_ID_PATTERN)
MAX_LIST_BYTES = 1024 * 1024  # the multipart parser's limit on a form field


@dataclass(frozen=True)
class FileFields:
    """One file's own fields: its item id (None: a random one) and its metadata as JSON
    text (the shared ``metadata`` with its own entry's keys over it)."""

    item_id: str | None
    metadata: str | None


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_batch")


def _json_list(raw: str | None, name: str, n_files: int) -> list[Any] | None:
    if raw is None or not raw.strip():
        return None
    if len(raw.encode()) > MAX_LIST_BYTES:
        raise _invalid(f"{name}: over {MAX_LIST_BYTES} bytes of JSON")
    if nesting_depth(raw) > MAX_METADATA_DEPTH + 1:  # the list, then an entry
        raise _invalid(f"{name}: nested too deep")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise _invalid(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, list):
        raise _invalid(f"{name} must be a JSON list with one entry per file, in the files' order")
    if len(value) != n_files:
        raise _invalid(f"{name} has {len(value)} entries for {n_files} files: give one per file")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _ids(raw: str | None, n_files: int) -> list[str | None]:
    values = _json_list(raw, "ids", n_files)
    if values is None:
        return [None] * n_files
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        if not isinstance(value, str) or not _ITEM_ID.match(value):
            raise _invalid(
                f"ids[{i}]: an item id is a string of 1 to 200 letters, digits and ._:- "
                f"(starting with a letter or digit), or null for a random one; got {value!r}"
            )
        if value in seen:
            raise _invalid(f"ids[{i}]: {value!r} is also ids[{seen[value]}]; ids must differ")
        seen[value] = i
    return values


def _metadatas(raw: str | None, shared: str | None, n_files: int) -> list[str | None]:
    common = parse_metadata(shared)  # the request's own field: its own errors
    values = _json_list(raw, "metadatas", n_files)
    if values is None:
        return [shared] * n_files
    texts: list[str | None] = []
    for i, value in enumerate(values):
        if value is not None and not isinstance(value, dict):
            raise _invalid(f"metadatas[{i}]: a JSON object or null; got {type(value).__name__}")
        text = json.dumps({**common, **(value or {})})
        try:
            parse_metadata(text)  # the limits of a single upload's metadata
        except ServiceError as exc:
            raise type(exc)(f"metadatas[{i}]: {exc.message}", code=exc.code) from exc
        texts.append(text)
    return texts


def batch_fields(
    n_files: int, ids: str | None, metadatas: str | None, metadata: str | None
) -> list[FileFields]:
    """Each file's fields, checked: ``ids`` a JSON list of item ids (or null), distinct;
    ``metadatas`` a JSON list of objects (or null), each merged over ``metadata``
    (its keys win); both, when given, exactly one entry per file."""
    item_ids = _ids(ids, n_files)
    texts = _metadatas(metadatas, metadata, n_files)
    return [FileFields(i, t) for i, t in zip(item_ids, texts, strict=True)]
