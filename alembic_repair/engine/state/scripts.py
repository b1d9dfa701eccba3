"""Revision files read with `ast`, never imported.

Alembic's own loader imports every revision (a missing import or a syntax error stops it) and
raises a bare KeyError on a dangling ``down_revision``. Reading the identifiers statically lets us
name the file and line of every problem, before Alembic is asked to load anything.
"""

from __future__ import annotations

import ast
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
