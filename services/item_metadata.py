"""The ``metadata`` an upload carries: JSON text checked before the upload is saved or
embedded (size, nesting, a JSON object without NaN or Infinity)."""

from __future__ import annotations

import json
import re
from typing import Any

from services.errors import InvalidInput, TooLarge

MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 32

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[][{}]")


def _nesting_depth(raw: str) -> int:
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
    if _nesting_depth(raw) > MAX_METADATA_DEPTH:
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
