"""Which items a search may return: by kind and by metadata fields (equality and ``in``,
as Qdrant's payload filters ``match.value`` and ``match.any``; ``gt``/``gte``/``lt``/``lte``
on numbers, as its ``range``).

Judged here, on the items' metadata, whichever vector engine holds the vectors (FAISS or
Milvus): ``item_search`` asks the engine for more windows until enough items pass."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.index.records import ItemKind

RangeOp = Literal["gt", "gte", "lt", "lte"]
RANGE_OPS: dict[RangeOp, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def is_number(value: Any) -> bool:
    """A JSON number (not ``true``/``false``), finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``; ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


@dataclass(frozen=True)
class FieldCondition:
    """The metadata value at ``path`` (keys into nested objects) is one of ``values`` (when
    given) and a number within every one of ``bounds`` (``("gte", 2)``: at least 2). A
    missing field holds no condition."""

    path: tuple[str, ...]
    values: tuple[Any, ...] = ()
    bounds: tuple[tuple[RangeOp, int | float], ...] = ()

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        value: Any = metadata
        for key in self.path:
            if not isinstance(value, Mapping) or key not in value:
                return False
            value = value[key]
        if self.values and not any(_same(value, wanted) for wanted in self.values):
            return False
        if self.bounds and not is_number(value):
            return False
        return all(RANGE_OPS[op](value, bound) for op, bound in self.bounds)


@dataclass(frozen=True)
class ItemFilter:
    """Every condition must hold (and the item be of ``kind``, when given)."""

    kind: ItemKind | None = None
    conditions: tuple[FieldCondition, ...] = ()

    def matches(self, kind: ItemKind, metadata: Mapping[str, Any]) -> bool:
        if self.kind is not None and kind != self.kind:
            return False
        return all(condition.holds(metadata) for condition in self.conditions)
