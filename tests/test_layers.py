"""The import graph of ``src/wawindow`` keeps its layers: no cycles (function-level imports
included), the rules import no I/O, the receiver reaches none of the engine, the rules or
the API, and only the command line builds the service. Read from the source with ``ast``,
so an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src"
PACKAGE = "wawindow"


def module_files() -> dict[str, Path]:
    out = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_files()


def imported(name: str, path: Path) -> set[str]:
    """Every name ``path`` imports, anywhere in it (absolute, dotted)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}
    return out


def project_module(name: str) -> str | None:
    """The project module a dotted name is or lives in (None: not the project's)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {
    name: {m for i in imported(name, path) if (m := project_module(i)) and m != name}
    for name, path in MODULES.items()
}


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in GRAPH[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def cycles() -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while (w := stack.pop()) != v:
                part.append(w)
            if part:
                found.append(sorted([v, *part]))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def under(names: Iterable[str], *prefixes: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


#: what every layer shares, and all that sits at the top of the package
SHARED = {
    "wawindow", "wawindow.__main__", "wawindow.config", "wawindow.contracts", "wawindow.keys",
    "wawindow.errors", "wawindow.logs", "wawindow.metrics", "wawindow.answers",
}  # fmt: skip
LAYERS = ("ingest", "kafka", "redis", "rules", "engine", "finance", "api", "service", "cli", "dev")


def test_the_graph_is_read_from_the_source() -> None:
    assert "wawindow.ingest.app" in GRAPH
    assert "wawindow.kafka.publisher" in GRAPH["wawindow.ingest.app"]
    assert "wawindow.rules.state" in reachable("wawindow.rules.engine")


def test_the_top_level_holds_only_what_every_layer_shares() -> None:
    top = {m for m in MODULES if m.count(".") <= 1 and MODULES[m].name != "__init__.py"}
    packages = {m for m in MODULES if MODULES[m].name == "__init__.py"} - {"wawindow"}

    assert top | {"wawindow"} <= SHARED
    assert {p.removeprefix("wawindow.") for p in packages} >= set(LAYERS)


def test_there_is_no_import_cycle() -> None:
    assert cycles() == []


def test_the_receiver_reaches_only_kafka_and_what_every_layer_shares() -> None:
    reached = reachable("wawindow.ingest.app")
    # the Redis connection settings (TLS, Sentinels) are read with every setting
    outside = reached - SHARED - under(MODULES, "wawindow.ingest", "wawindow.kafka")

    assert outside <= {"wawindow.redis.connection"}
    assert not reached & under(MODULES, "wawindow.engine", "wawindow.rules", "wawindow.api")


@pytest.mark.parametrize("module", sorted(under(MODULES, "wawindow.rules")))
def test_the_rules_import_no_io(module: str) -> None:
    libraries = {i.partition(".")[0] for i in imported(module, MODULES[module])}
    project = GRAPH[module] - under(MODULES, "wawindow.rules")

    assert libraries.isdisjoint({"aiohttp", "aiokafka", "redis", "asyncio", "socket", "os"})
    assert project <= {"wawindow", "wawindow.contracts", "wawindow.keys", "wawindow.errors"}


def test_nothing_but_the_command_line_imports_the_service() -> None:
    service = under(MODULES, "wawindow.service")
    importers = {m for m, deps in GRAPH.items() if deps & service} - service

    assert importers <= under(MODULES, "wawindow.cli")


def test_the_engine_and_the_finance_layer_serve_no_http() -> None:
    for module in under(MODULES, "wawindow.engine", "wawindow.finance", "wawindow.rules"):
        assert not GRAPH[module] & under(MODULES, "wawindow.api", "wawindow.ingest"), module
        libraries = {i.partition(".")[0] for i in imported(module, MODULES[module])}
        assert "aiohttp" not in libraries, module


def test_every_error_the_project_defines_descends_from_its_root() -> None:
    import importlib
    import inspect

    from wawindow.errors import WawindowError

    found = {}
    for name in MODULES:
        if name.endswith("__main__") or name == "wawindow.kafka.msk":  # an optional extra's
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                found[f"{name}.{attr}"] = value

    assert "wawindow.errors.BadParameter" in found
    assert [n for n, cls in found.items() if not issubclass(cls, WawindowError)] == []
