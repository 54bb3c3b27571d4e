"""The package layout, checked on the source (ast): no import cycle among the modules of
avid_model, training and services; only ``services.api`` imports FastAPI or Starlette; the
model library imports none of the service's frameworks; the core never imports the API.

Every import counts, the ones inside functions too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("avid_model", "training", "services")
HTTP_FRAMEWORKS = ("fastapi", "starlette")
NOT_IN_MODEL_LIBRARY = ("services", "training", "fastapi", "starlette", "celery", "redis", "faiss")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_names(name: str) -> Iterator[str]:
    """Every module name an import statement of module ``name`` names (absolute, resolved)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def project_imports(name: str) -> set[str]:
    """The project's modules that ``name`` imports (``from pkg import mod`` is ``pkg.mod``)."""
    known = modules()
    return {other for other in imported_names(name) if other in known and other != name}


def external_roots(name: str) -> set[str]:
    return {other.split(".")[0] for other in imported_names(name)}


def import_graph() -> dict[str, set[str]]:
    return {name: project_imports(name) for name in modules()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> the modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_walk_sees_the_packages_and_their_imports() -> None:
    names = modules()
    for expected in ("avid_model.cli", "services.api.app", "services.worker.tasks", "training"):
        assert expected in names
    assert "services.settings" in project_imports("services.cli")
    assert "fastapi" in external_roots("services.api.app")


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_a_cycle_would_be_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_only_the_api_package_imports_http_frameworks() -> None:
    offenders = {
        name: sorted(external_roots(name) & set(HTTP_FRAMEWORKS))
        for name in modules()
        if not (name == "services.api" or name.startswith("services.api."))
    }
    assert {name: roots for name, roots in offenders.items() if roots} == {}


def test_the_core_below_the_api_never_imports_it() -> None:
    offenders = {
        name: sorted(o for o in project_imports(name) if o.startswith("services.api"))
        for name in modules()
        if name.startswith("services") and not name.startswith("services.api")
    }
    # services.cli starts the app for `avid serve`; services.demo runs it in a thread.
    allowed = {"services.cli", "services.demo"}
    assert {n: o for n, o in offenders.items() if o and n not in allowed} == {}


def test_the_model_library_imports_no_service_framework() -> None:
    offenders = {
        name: sorted(external_roots(name) & set(NOT_IN_MODEL_LIBRARY))
        for name in modules()
        if name.startswith("avid_model")
    }
    assert {name: roots for name, roots in offenders.items() if roots} == {}


def test_training_never_imports_services() -> None:
    offenders = [name for name in modules() if name.startswith("training")]
    assert [n for n in offenders if "services" in external_roots(n)] == []
