"""Revision files written and relinked for a history repair: `render_revision` (Alembic's
renderer through the project's script.py.mako, with the id and parent chosen here) and
`relink_file` / `Relink` (``down_revision`` changed with libcst, never a regular expression)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import libcst as cst
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Dialect

from ...engine.project import Project
from ...engine.state.scripts import ScriptFile
from ...errors import NeedsRepair
from ..steps.base import Context, Step, register


def _slug(message: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in message.lower()).split()
    return "_".join(words)[:40] or "revision"


def render_revision(project: Project, dialect: Dialect, revision: str,
                    down_revision: str | None, message: str, upgrade_ops: ops.UpgradeOps) -> Path:
    """Write `upgrade_ops` (downgrade: their reverse) as revision `revision` on
    `down_revision`, rendered by Alembic through the project's script.py.mako. Written to a
    temporary name first, so a crash never leaves half a revision file in versions/."""
    from alembic import util
    from alembic.autogenerate import render
    from alembic.autogenerate.api import AutogenContext

    template = project.script_location / "script.py.mako"
    if not template.is_file():
        from importlib import resources

        template = Path(str(resources.files("alembic").joinpath(
            "templates/generic/script.py.mako")))
    context = MigrationContext.configure(dialect=dialect)
    autogen = AutogenContext(context, opts={
        "sqlalchemy_module_prefix": "sa.", "alembic_module_prefix": "op.",
        "render_item": None, "render_as_batch": dialect.name == "sqlite",
        "user_module_prefix": None})
    upgrades = render._indent(render._render_cmd_body(upgrade_ops, autogen))
    downgrades = render._indent(render._render_cmd_body(upgrade_ops.reverse(), autogen))
    path = project.versions_dir / f"{revision}_{_slug(message)}.py"
    temporary = path.with_name(f".{path.name}.tmp")
    util.template_to_file(  # str paths: Alembic before 1.16 (its Mako call) takes no Path
        str(template), str(temporary), "utf-8", up_revision=revision, down_revision=down_revision,
        branch_labels=None, depends_on=None, create_date=datetime.now(),
        comma=util.format_as_comma, message=message, upgrades=upgrades,
        downgrades=downgrades, imports="\n".join(sorted(autogen.imports)))
    os.replace(temporary, path)
    return path


def _down_revisions(path: Path) -> tuple[str, ...]:
    script = next(iter(read_scripts_of([path])), None)
    return script.down_revisions if script is not None else ()


def read_scripts_of(paths: Iterable[Path]) -> list[ScriptFile]:
    from ...engine.state.scripts import read_script

    return [read_script(p) for p in paths]


def _value(ids: tuple[str, ...]) -> cst.BaseExpression:
    if not ids:
        return cst.Name("None")
    if len(ids) == 1:
        return cst.SimpleString(repr(ids[0]))
    return cst.parse_expression(repr(tuple(ids)))


class _Relinker(cst.CSTTransformer):
    """Sets ``down_revision`` (plain or annotated assignment at module level) and the
    ``Revises:`` line of the module docstring."""

    def __init__(self, ids: tuple[str, ...]) -> None:
        self.ids = ids
        self.found = False
        self.depth = 0

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False  # only module-level assignments

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    @staticmethod
    def _named(target: cst.BaseExpression) -> bool:
        return isinstance(target, cst.Name) and target.value == "down_revision"

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        if any(self._named(t.target) for t in updated.targets):
            self.found = True
            return updated.with_changes(value=_value(self.ids))
        return updated

    def leave_AnnAssign(self, original: cst.AnnAssign, updated: cst.AnnAssign) -> cst.AnnAssign:
        if self._named(updated.target):
            self.found = True
            return updated.with_changes(value=_value(self.ids))
        return updated

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        if not updated.body:
            return updated
        first = updated.body[0]
        if not (isinstance(first, cst.SimpleStatementLine) and len(first.body) == 1
                and isinstance(first.body[0], cst.Expr)
                and isinstance(first.body[0].value, cst.SimpleString)):
            return updated
        string = first.body[0].value
        lines = string.value.split("\n")
        changed = [f"Revises: {', '.join(self.ids)}" if line.startswith("Revises:") else line
                   for line in lines]
        if changed == lines:
            return updated
        expr = first.body[0].with_changes(value=string.with_changes(value="\n".join(changed)))
        return updated.with_changes(body=[first.with_changes(body=[expr]), *updated.body[1:]])


def relink_file(path: Path, old: str | None, new: str | None) -> bool:
    """Replace parent `old` (None: the file is a base) by `new` (None: make it a base) in the
    revision file's down_revision; False when it already is so. Rewritten with libcst."""
    current = _down_revisions(path)
    if old is None:
        ids = current if new is None or new in current else (*current, new)
    else:
        ids = tuple(dict.fromkeys(new if p == old and new is not None else p
                                  for p in current if not (p == old and new is None)))
    if ids == current:
        return False
    set_down_revisions(path, ids)
    return True


def set_down_revisions(path: Path, ids: tuple[str, ...]) -> None:
    """Write `ids` as the file's whole down_revision in one atomic write (libcst; the
    docstring's ``Revises:`` line follows), so a kill leaves it old or new, never between."""
    transformer = _Relinker(ids)
    module = cst.parse_module(path.read_text(encoding="utf-8")).visit(transformer)
    if not transformer.found:
        raise NeedsRepair(f"{path.name}: no module-level `down_revision = ...` to relink")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(module.code, encoding="utf-8")
    os.replace(temporary, path)


@register
@dataclass(frozen=True)
class Relink(Step):
    """Point a revision file's down_revision at another revision (libcst; the docstring's
    ``Revises:`` line follows)."""

    kind: ClassVar[str] = "relink"
    path: str  # relative to the project root
    old: str | None
    new: str | None
    why: str = ""

    def describe(self) -> str:
        return (f"relink {self.path}: down_revision {self.old or 'None'} -> {self.new or 'None'}"
                f"{': ' + self.why if self.why else ''}")

    def apply(self, ctx: Context) -> None:
        if relink_file(ctx.project.root / self.path, self.old, self.new):
            ctx.say("relink", f"{self.path} now revises {self.new or 'nothing (a base)'}")

    def undo(self, ctx: Context) -> None:
        relink_file(ctx.project.root / self.path, self.new, self.old)

