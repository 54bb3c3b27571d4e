"""Which items a search may return: by kind and by metadata fields (equality and ``in``,
as Qdrant's payload filters ``match.value`` and ``match.any``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.index.records import ItemKind


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``; ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


@dataclass(frozen=True)
class FieldCondition:
    """The metadata value at ``path`` (keys into nested objects) is one of ``values``."""

    path: tuple[str, ...]
    values: tuple[Any, ...]

    def holds(self, metadata: Mapping[str, Any]) -> bool:
        value: Any = metadata
        for key in self.path:
            if not isinstance(value, Mapping) or key not in value:
                return False
            value = value[key]
        return any(_same(value, wanted) for wanted in self.values)


@dataclass(frozen=True)
class ItemFilter:
    """Every condition must hold (and the item be of ``kind``, when given)."""

    kind: ItemKind | None = None
    conditions: tuple[FieldCondition, ...] = ()

    def matches(self, kind: ItemKind, metadata: Mapping[str, Any]) -> bool:
        if self.kind is not None and kind != self.kind:
            return False
        return all(condition.holds(metadata) for condition in self.conditions)
