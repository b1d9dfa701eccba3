"""The package's shape: folders by pipeline stage, imports only downwards, no cycles, small modules.

Read from the source with `ast` (nothing is imported), so an import inside a function counts
as much as one at the top: a lazy import that closes a cycle or reaches up a layer is still a
dependency the next reader has to untangle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "alembic_repair"

#: The pipeline, lowest first: a module may import from its own layer and the layers before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "masking", "private", "version", "wording"),  # the base every layer shares
    ("engine",),                        # project, database, Alembic, the four sources of truth
    ("data", "testing"),                # backups, trash, guards; test support (engine only)
    ("rewrite",),                       # libcst transforms of revision files
    ("diagnose",),                      # findings catalogue, rules, the diagnosis
    ("repair",),                        # plan, steps, the runner, fix/reset/squash/drop/bootstrap
    ("api", "__init__"),                # the public facade
    ("cli", "__main__", "pytest_plugin"),  # the command line; the pytest plugin
)

#: Modules allowed past the size limit: catalogues of data, not logic.
CATALOGUES = {"diagnose/findings.py"}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        name = node.module or ""
        if not name.startswith("alembic_repair"):
            return None
        return name[len("alembic_repair"):].lstrip(".")
    base = module.split(".") if module else []
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in the file)."""
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.module == "__future__":
                    continue
                base = _resolve(name, path.name == "__init__.py", node)
                if base is None:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}".lstrip(".")
                    targets.add(sub if sub in modules else base)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("alembic_repair."):
                        targets.add(alias.name[len("alembic_repair."):])
        edges[name] = {t for t in targets if t != name and t in modules}
    return edges


def _layer(module: str) -> int:
    top = module.split(".")[0] if module else "__init__"
    for number, names in enumerate(LAYERS):
        if top in names:
            return number
    raise AssertionError(f"alembic_repair/{top} is in no layer of tests/test_architecture.py")


def test_every_module_belongs_to_a_layer() -> None:
    for module in _modules():
        _layer(module)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{source} -> {target}" for source, targets in graph.items()
                  for target in targets
                  if _layer(target) > _layer(source) and not _parent_package(source, target))


def _parent_package(source: str, target: str) -> bool:
    """A module may import the package it lives in (its __init__), e.g. to register itself;
    not the top-level package, which is the facade and reaches every layer."""
    return target != "" and source.startswith(target + ".")


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if _parent_package(node, nxt):
                continue  # importing one's own package's __init__ (registration) is not a cycle
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_reaches_up_a_layer() -> None:
    assert _upward(_graph()) == []


def test_testing_support_uses_the_engine_only() -> None:
    reached = sorted(f"{s} -> {t}" for s, ts in _graph().items() if s.startswith("testing")
                     for t in ts if t.split(".")[0] not in ("testing", "engine", "errors",
                                                             "masking", "private", "version"))
    assert reached == []


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("module", sorted(_modules()))
def test_module_is_small(module: str) -> None:
    path = _modules()[module]
    relative = path.relative_to(PACKAGE).as_posix()
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if relative in CATALOGUES:
        return
    assert lines <= MAX_LINES, f"{relative}: {lines} lines (split it by job)"


def test_the_checks_can_fail() -> None:
    """Relative imports resolve as Python resolves them, and a cycle or an upward import in a
    made-up graph is reported."""
    node = ast.parse("from ..repair import plan").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _resolve("engine.state.read", False, node) == "engine.repair"
    assert _resolve("engine.models", False, node) == "repair"
    assert _resolve("engine", True, ast.parse("from .state import read").body[0]) \
        == "engine.state"  # type: ignore[arg-type]
    assert _upward({"engine.models": {"repair.plan"}, "repair.plan": {"engine.models"}}) == [
        "engine.models -> repair.plan"]
    assert _cycles({"engine.a": {"engine.b"}, "engine.b": {"engine.a"}}) == [
        "engine.a -> engine.b -> engine.a"]
    assert _cycles({"diagnose.rules.graph": {"diagnose.rules"}, "diagnose.rules": set()}) == []
    assert _upward({"diagnose.verdict_cache": {""}}) == ["diagnose.verdict_cache -> "]


def _where_table() -> str:
    """The table of docs/design.md naming, for each code, where its rule and repair live."""
    from alembic_repair.repair.registry import BY_CODE, Repair
    from alembic_repair.repair.repairs import catalogue

    def path(module: str) -> str:
        return module.replace(".", "/") + ".py"

    lines = ["| code | rule | layer | resolved by |", "|---|---|---|---|"]
    for entry in catalogue():
        declared = BY_CODE[entry.code]
        what = (f"repair `{declared.fn.__name__}`" if isinstance(declared, Repair)
                else entry.resolution)
        lines.append(f"| {entry.code} | `{path(entry.rule_home)}` `{entry.rule}` | "
                     f"{entry.layer or '-'} | {what} in `{path(entry.home)}` |")
    return "\n".join(lines) + "\n"


def test_design_doc_says_where_each_code_lives() -> None:
    """docs/design.md's table is the registry's. When a rule or a repair moves, print the new one
    with `python -c "import sys; sys.path.insert(0, 'tests'); import test_architecture as t;
    print(t._where_table())"` and paste it over the old."""
    design = (PACKAGE.parent / "docs" / "design.md").read_text(encoding="utf-8")
    assert _where_table() in design
