"""What narrows or enriches a search, beside its query: a filter on the items' metadata and
kind, a score threshold, and whether hits carry their matched window's vector.

``parse_filter`` reads the ``filter`` a client sends, a JSON object of metadata fields:
``{"label": "dog"}`` (equality), ``{"label": {"in": ["dog", "cat"]}}`` (one of),
``{"year": {"gte": 2000, "lt": 2010}}`` (a number in a range, as Qdrant's ``range``), several
fields all holding; ``"a.b"`` names the field ``b`` of the object ``a``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.errors import InvalidInput
from services.index import FieldCondition, ItemFilter, ItemKind
from services.index.item_filter import RANGE_OPS, RangeOp, is_number
from services.item_metadata import nesting_depth

MAX_FILTER_BYTES = 16 * 1024
MAX_IN_VALUES = 1000
_SCALARS = (str, int, float, bool, type(None))
_CONDITION_KEYS = ("in", *RANGE_OPS)


@dataclass(frozen=True)
class SearchOptions:
    item_filter: ItemFilter | None = None
    score_threshold: float | None = None  # hits scoring below are left out
    with_vectors: bool = False


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"filter: {message}", code="invalid_filter")


def _in_values(field: str, values: Any) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values or len(values) > MAX_IN_VALUES:
        raise _invalid(f"{field}: 'in' takes a list of 1 to {MAX_IN_VALUES} values")
    if not all(isinstance(v, _SCALARS) for v in values):
        raise _invalid(f"{field}: 'in' values are strings, numbers, booleans or null")
    return tuple(values)


def _condition(field: str, condition: Any) -> FieldCondition:
    path = tuple(field.split("."))
    if not field or any(not key for key in path):
        raise _invalid(f"{field!r} is not a field name (keys joined by '.')")
    if isinstance(condition, Mapping):
        unknown = sorted(set(condition) - set(_CONDITION_KEYS))
        if unknown or not condition:
            keys = ", ".join(f'"{k}"' for k in _CONDITION_KEYS)
            what = f"{', '.join(map(repr, unknown))} is not a condition; " if unknown else ""
            raise _invalid(f"{field}: {what}a condition object has one or more of {keys}")
        values: tuple[Any, ...] = ()
        if "in" in condition:
            values = _in_values(field, condition["in"])
        bounds: list[tuple[RangeOp, int | float]] = []
        for op in RANGE_OPS:
            if op in condition:
                bound = condition[op]
                if not is_number(bound):
                    raise _invalid(f"{field}: '{op}' takes a finite number, got {bound!r}")
                bounds.append((op, bound))
        return FieldCondition(path, values, tuple(bounds))
    if not isinstance(condition, _SCALARS):
        raise _invalid(f"{field}: compare with a string, number, boolean or null, or use 'in'")
    return FieldCondition(path, (condition,))


def parse_filter(
    raw: str | Mapping[str, Any] | None, kind: ItemKind | None = None
) -> ItemFilter | None:
    """The ``filter`` (JSON text or an already parsed object) and an item ``kind`` as one
    ``ItemFilter``; None when neither narrows anything. ``InvalidInput`` (code
    ``invalid_filter``) naming what is wrong."""
    if isinstance(raw, str):
        if len(raw.encode()) > MAX_FILTER_BYTES:
            raise _invalid(f"over {MAX_FILTER_BYTES} bytes")
        if nesting_depth(raw) > 4:
            raise _invalid("nested deeper than a field's condition object")
        try:
            raw = (
                json.loads(raw, parse_constant=lambda name: _refuse(name)) if raw.strip() else None
            )
        except ValueError as exc:
            raise _invalid(f"not valid JSON: {exc}") from exc
    if raw is not None and not isinstance(raw, Mapping):
        raise _invalid('a JSON object of metadata fields, e.g. {"label": {"in": ["a", "b"]}}')
    conditions = tuple(_condition(field, c) for field, c in (raw or {}).items())
    if not conditions and kind is None:
        return None
    return ItemFilter(kind=kind, conditions=conditions)


def _refuse(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")
