"""Revision files read with `ast`, never imported.

Alembic's own loader imports every revision (a missing import or a syntax error stops it) and
raises a bare KeyError on a dangling ``down_revision``. Reading the identifiers statically lets us
name the file and line of every problem, before Alembic is asked to load anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScriptFile:
    """One ``versions/*.py`` file: its identifiers, or why they could not be read."""

    path: Path
    revision: str | None
    down_revisions: tuple[str, ...] = ()
    error: str | None = None
    error_line: int | None = None
    upgrade: str = "missing"  # "missing" | "empty" | "code"
    downgrade: str = "missing"

    @property
    def is_merge(self) -> bool:
        return len(self.down_revisions) > 1


def _body_kind(tree: ast.Module, name: str) -> str:
    """Whether function `name` is missing, does nothing (pass, docstring, ...) or has code."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            for statement in node.body:
                if isinstance(statement, ast.Pass):
                    continue
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    continue  # docstring, or a bare `...`
                return "code"
            return "empty"
    return "missing"


def _literal(node: ast.expr | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def _as_ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def read_script(path: Path) -> ScriptFile:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as err:
        return ScriptFile(path, None, error=f"SyntaxError: {err.msg}", error_line=err.lineno)
    except OSError as err:  # a symlink loop, a dangling link, a folder named *.py
        return ScriptFile(path, None, error=f"{type(err).__name__}: {err.strerror or err}")
    except ValueError as err:
        return ScriptFile(path, None, error=f"{type(err).__name__}: {err}")
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = _literal(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            values[node.target.id] = _literal(node.value)
    revision = values.get("revision")
    return ScriptFile(
        path,
        revision if isinstance(revision, str) else None,
        _as_ids(values.get("down_revision")),
        upgrade=_body_kind(tree, "upgrade"),
        downgrade=_body_kind(tree, "downgrade"),
    )


def read_scripts(versions_dir: Path) -> tuple[ScriptFile, ...]:
    """Every revision file of `versions_dir` (sorted by name); empty when the folder is missing."""
    if not versions_dir.is_dir():
        return ()
    return tuple(read_script(p) for p in sorted(versions_dir.glob("*.py"))
                 if not p.name.startswith("__"))


def duplicates(scripts: Iterable[ScriptFile]) -> dict[str, list[ScriptFile]]:
    seen: dict[str, list[ScriptFile]] = {}
    for script in scripts:
        if script.revision is not None:
            seen.setdefault(script.revision, []).append(script)
    return {rev: files for rev, files in seen.items() if len(files) > 1}


def dangling(scripts: Iterable[ScriptFile]) -> list[tuple[ScriptFile, str]]:
    """(file, missing parent id) for every down_revision no file defines."""
    scripts = list(scripts)
    known = {s.revision for s in scripts if s.revision is not None}
    return [(s, parent) for s in scripts for parent in s.down_revisions if parent not in known]


def cycle(scripts: Iterable[ScriptFile]) -> list[ScriptFile]:
    """The files of one cycle in the down_revision graph (empty when there is none)."""
    by_id = {s.revision: s for s in scripts if s.revision is not None}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(rev: str) -> list[str]:
        state[rev] = 1
        path.append(rev)
        for parent in by_id[rev].down_revisions:
            if parent not in by_id:
                continue
            if state.get(parent) == 1:
                return path[path.index(parent):]
            if parent not in state and (found := visit(parent)):
                return found
        path.pop()
        state[rev] = 2
        return []

    for rev in sorted(by_id):
        if rev not in state and (found := visit(rev)):
            return [by_id[r] for r in sorted(found)]
    return []


def heads(scripts: Iterable[ScriptFile]) -> list[str]:
    """Revision ids that no other revision names as its parent."""
    scripts = [s for s in scripts if s.revision is not None]
    parents = {p for s in scripts for p in s.down_revisions}
    return sorted({str(s.revision) for s in scripts} - parents)
