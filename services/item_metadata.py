"""The ``metadata`` an upload carries: JSON text checked before the upload is saved or
embedded (size, nesting, a JSON object without NaN or Infinity)."""

from __future__ import annotations

import json
import re
from typing import Any

from services.errors import InvalidInput, TooLarge
from services.index import IndexStore, ItemRecord

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 32

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[][{}]")


def nesting_depth(raw: str) -> int:
    """How deep arrays and objects nest in JSON text, counted without parsing it (a parser
    recurses, so text nested thousands deep would exhaust Python's stack)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub('""', raw)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """The ``metadata`` form field as a dict: at most ``MAX_METADATA_BYTES`` of JSON (else
    ``TooLarge``), nested at most ``MAX_METADATA_DEPTH`` deep, a JSON object with no NaN or
    Infinity (else ``InvalidInput``, code ``invalid_metadata``)."""
    if raw is None or not raw.strip():
        return {}
    size = len(raw.encode())
    if size > MAX_METADATA_BYTES:
        raise TooLarge(
            f"metadata is {size} bytes of JSON, over the limit of {MAX_METADATA_BYTES} bytes"
        )
    if nesting_depth(raw) > MAX_METADATA_DEPTH:
        raise InvalidInput(
            f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels", code="invalid_metadata"
        )
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, or NaN / Infinity
        raise InvalidInput(f"metadata is not valid JSON: {exc}", code="invalid_metadata") from exc
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object", code="invalid_metadata")
    return value


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch of an object: ``null`` removes a key, an object merges into
    an object, anything else replaces."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        elif isinstance(value, dict):
            merged[key] = merge_patch({}, value)
        else:
            merged[key] = value
    return merged


def parse_metadata_patch(raw: str) -> dict[str, Any]:
    """The body of ``PATCH /items/{id}``: ``{"metadata": <merge patch object>}``, checked
    as ``parse_metadata`` checks an upload's metadata."""
    body = parse_metadata(raw)
    if set(body) != {"metadata"} or not isinstance(body["metadata"], dict):
        raise InvalidInput(
            'the body must be {"metadata": {...}}: a JSON merge patch of the item\'s metadata '
            "(null removes a key)",
            code="invalid_metadata",
        )
    patch: dict[str, Any] = body["metadata"]
    return patch


def patched_metadata(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``patch`` merged in, within the size limit of an upload's metadata."""
    merged = merge_patch(current, patch)
    size = len(json.dumps(merged).encode())
    if size > MAX_METADATA_BYTES:
        raise TooLarge(
            f"the patched metadata is {size} bytes of JSON, over the limit of "
            f"{MAX_METADATA_BYTES} bytes"
        )
    return merged


def patch_item_metadata(store: IndexStore, item_id: str, raw_body: str) -> ItemRecord:
    """``PATCH /items/{id}``: merge the body's patch into the item's metadata."""
    patch = parse_metadata_patch(raw_body)
    return store.update_metadata(item_id, lambda current: patched_metadata(current, patch))
