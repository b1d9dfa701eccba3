"""Repairs of the revision history itself: a missing intermediate revision (AR203), a history
that cannot build an empty database (AR404), and the pieces `squash` shares with them.

Both repairs rebuild a revision from schemas, never from guesses:

* **the schema after a revision** comes from the live database: its tables are rebuilt on a
  scratch database and the ``downgrade()`` of every revision the database applied after that
  point runs there, newest first (a revision's downgrade is its own statement of what it added);
* **the schema before a revision** is the replay of its ancestors on a scratch database;
* the difference is rendered as a revision through the project's ``script.py.mako`` (Alembic's
  renderer), with the id and ``down_revision`` chosen here (Alembic's own writer insists on
  loading the broken history first);
* ``down_revision`` of an existing file is changed with libcst (the assignment and the
  ``Revises:`` line of the docstring), never with a regular expression on the source;
* the result is **proved**: the new history is replayed from an empty database, and the schema
  it gives at the revision the database records must equal the live schema. A repair whose
  proof fails is taken back (the written file goes into the backup folder, the link is
  restored) and reported: nothing half-repaired stays.

Databases already migrated need no restamp: a baseline inserted before the old base is an
ancestor of every revision they record, so Alembic counts it as applied and never runs it
there; a recreated intermediate revision keeps the missing id, so a database recording it is
right as it is.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import libcst as cst
from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Dialect

from ..diagnose.findings import Finding
from ..engine import migrations, revisions
from ..engine.models import load_target_metadata, project_on_path
from ..engine.project import Project
from ..engine.replay import run_replay, scratch_database
from ..engine.state.read import State
from ..engine.state.schema import SchemaSnapshot, describe, is_user_table, reflect_tables
from ..engine.state.scripts import ScriptFile, read_scripts
from ..errors import AlembicRepairError, NeedsRepair
from .journal import crash_point
from .steps import Context, Step, _move, register

__all__ = ["InsertBaseline", "RecreateMissing", "Relink", "relink_file", "render_revision"]


# -- revision files ------------------------------------------------------------------------------


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
    util.template_to_file(
        template, temporary, "utf-8", up_revision=revision, down_revision=down_revision,
        branch_labels=None, depends_on=None, create_date=datetime.now(),
        comma=util.format_as_comma, message=message, upgrades=upgrades,
        downgrades=downgrades, imports="\n".join(sorted(autogen.imports)))
    os.replace(temporary, path)
    return path


def _down_revisions(path: Path) -> tuple[str, ...]:
    script = next(iter(read_scripts_of([path])), None)
    return script.down_revisions if script is not None else ()


def read_scripts_of(paths: Iterable[Path]) -> list[ScriptFile]:
    from ..engine.state.scripts import read_script

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
    source = path.read_text(encoding="utf-8")
    transformer = _Relinker(ids)
    module = cst.parse_module(source).visit(transformer)
    if not transformer.found:
        raise NeedsRepair(f"{path.name}: no module-level `down_revision = ...` to relink")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(module.code, encoding="utf-8")
    os.replace(temporary, path)
    return True


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


# -- scratch databases ---------------------------------------------------------------------------


def _run(conn: Connection, fn: Callable[[], Any]) -> None:
    """One revision function (upgrade or downgrade) through Alembic's operations."""
    with Operations.context(MigrationContext.configure(conn)):
        fn()
    conn.commit()


def invoke_ops(conn: Connection, upgrade_ops: ops.UpgradeOps) -> None:
    with Operations.context(MigrationContext.configure(conn)) as operations:
        for operation in upgrade_ops.ops:
            operations.invoke(operation)
    conn.commit()


def reflect_metadata(conn: Connection, tables: Iterable[str] | None = None) -> MetaData:
    names = [t for t in inspect(conn).get_table_names() if is_user_table(t)]
    if tables is not None:
        wanted = set(tables)
        names = [t for t in names if t in wanted]
    metadata = MetaData()
    metadata.reflect(conn, only=names)
    conn.rollback()
    return metadata


def _load(path: Path) -> ModuleType:
    from alembic.util import load_python_file

    return load_python_file(str(path.parent), path.name)


def _history_names(project: Project) -> set[str]:
    """Every string constant of the revision files: the names of the tables they touch."""
    names: set[str] = set()
    for script in read_scripts(project.versions_dir):
        try:
            tree = ast.parse(script.path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        names |= {n.value for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names


def kept_tables(project: Project, conn: Connection, models: str | None) -> list[str]:
    """The live tables a rebuilt revision may describe: those the models or the revision
    files name. A table neither knows (AR406) stays in the database and out of the history."""
    live = [t for t in inspect(conn).get_table_names() if is_user_table(t)]
    conn.rollback()
    try:
        with project_on_path(project.root):
            metadata = load_target_metadata(project, explicit=models)
    except AlembicRepairError:
        metadata = None
    if metadata is None:
        return sorted(live)
    known = set(metadata.tables) | _history_names(project)
    return sorted(t for t in live if t in known)


def schema_after_downgrades(project: Project, conn: Connection, tables: list[str],
                            downgrades: list[Path]) -> MetaData:
    """The live `tables` rebuilt on a scratch database, then the downgrade() of each file in
    `downgrades` (newest first) run there: the schema before those revisions ran."""
    live = reflect_metadata(conn, tables)
    with project_on_path(project.root), scratch_database(project, conn.engine) as scratch:
        invoke_ops(scratch, revisions.create_ops(live))
        for path in downgrades:
            try:
                _run(scratch, _load(path).downgrade)
            except Exception as err:  # the revision's own code
                scratch.rollback()
                raise NeedsRepair(
                    f"{project.rel(path)}: its downgrade() fails on a copy of the live schema "
                    f"({type(err).__name__}: {str(err).splitlines()[0][:200]}), so the schema "
                    "before it cannot be rebuilt; restore the missing revision from git"
                ) from None
        return reflect_metadata(scratch)


def prove(project: Project, conn: Connection, recorded: str) -> str | None:
    """Replay the history now in versions/ from an empty database; None when it builds and
    its schema at `recorded` equals the live one, else what differs."""
    with project_on_path(project.root):
        directory = migrations.scripts(project)
        replay = run_replay(project, directory, conn.engine)
    if replay.failed_at is not None:
        return f"replaying from an empty database fails at {replay.failed_at}: {replay.error}"
    expected = replay.snapshots.get(recorded)
    if expected is None:
        return f"revision {recorded} is not in the replayed history"
    known: set[str] = set().union(*(s.tables for s in replay.snapshots.values()))
    live_names = [t for t in inspect(conn).get_table_names() if t in known]
    live = reflect_tables(conn, live_names)
    conn.rollback()
    if live == expected:
        return None
    return _difference(live, expected, recorded)


def _difference(live: SchemaSnapshot, expected: SchemaSnapshot, recorded: str) -> str:
    extra = sorted(describe(f) for f in live - expected)[:6]
    missing = sorted(describe(f) for f in expected - live)[:6]
    return (f"the rebuilt history's schema at {recorded} differs from the database: in the "
            f"database only: {', '.join(extra) or 'nothing'}; in the history only: "
            f"{', '.join(missing) or 'nothing'}")


# -- AR404: a true baseline before the old base ------------------------------------------------


def _by_revision(project: Project) -> dict[str, ScriptFile]:
    return {s.revision: s for s in read_scripts(project.versions_dir) if s.revision}


@register
@dataclass(frozen=True)
class InsertBaseline(Step):
    """Write a baseline revision holding what the history relies on but never creates (the
    live tables as they were before the old base ran), and make the old base revise it."""

    kind: ClassVar[str] = "insert-baseline"
    base: str  # the old base revision
    recorded: str  # the revision the database records

    def describe(self) -> str:
        return (f"write a baseline revision before {self.base} (the tables as they were "
                f"before {self.base} ran: the live schema with the downgrades of {self.recorded} "
                f"back to {self.base}), relink {self.base} onto it and prove an empty database "
                f"builds; databases at {self.recorded} count it as applied (no restamp)")

    def _baseline(self, ctx: Context) -> tuple[str, ops.UpgradeOps]:
        project = ctx.project
        with project_on_path(project.root):
            directory = migrations.scripts(project)
            chain = [Path(s.path) for s in directory.iterate_revisions(self.recorded, "base")]
        names = [Path(p).name for p in chain]
        if not chain or _by_revision(project)[self.base].path.name != names[-1]:
            raise NeedsRepair(f"revision {self.recorded} does not descend from {self.base}")
        before = schema_after_downgrades(project, ctx.conn,
                                         kept_tables(project, ctx.conn, ctx.models), chain)
        operations = revisions.create_ops(before)
        if operations.is_empty():
            raise NeedsRepair(f"before {self.base} ran the database held no table, so a "
                              "baseline cannot help: fix the revision named by doctor")
        return revisions.stable_revision_id([], operations), operations

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        files = _by_revision(project)
        base = files.get(self.base)
        if base is None:
            raise NeedsRepair(f"revision {self.base} has no file any more")
        parent = base.down_revisions[0] if base.down_revisions else None
        if parent is None or parent not in files:
            revision, operations = self._baseline(ctx)
            if revision not in files:
                path = render_revision(project, ctx.conn.dialect, revision, None,
                                       f"baseline before {self.base}", operations)
                ctx.say("baseline", f"wrote revision {revision} ({project.rel(path)})")
            crash_point("insert-baseline.written")
            relink_file(base.path, None, revision)
            ctx.say("relink", f"{project.rel(base.path)} now revises {revision}")
        else:
            revision = parent
        problem = prove(project, ctx.conn, self.recorded)
        if problem is not None:
            self._take_back(ctx, revision)
            raise NeedsRepair(f"the baseline before {self.base} was taken back: {problem}; "
                              "write the baseline by hand")
        ctx.say("verify", "an empty database builds from the history; its schema at "
                f"{self.recorded} equals this database's")

    def _take_back(self, ctx: Context, revision: str) -> None:
        files = _by_revision(ctx.project)
        base = files.get(self.base)
        if base is not None:
            relink_file(base.path, revision, None)
        written = files.get(revision)
        if written is not None:
            _move(written.path, ctx.keep(written.path))

    def undo(self, ctx: Context) -> None:
        base = _by_revision(ctx.project).get(self.base)
        if base is not None and base.down_revisions:
            self._take_back(ctx, base.down_revisions[0])


# -- AR203: the missing intermediate revision ------------------------------------------------------


def _ancestry(files: dict[str, ScriptFile], revision: str) -> list[str]:
    """`revision` and its ancestors, parents first."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(rev: str) -> None:
        if rev in seen or rev not in files:
            return
        seen.add(rev)
        for parent in files[rev].down_revisions:
            visit(parent)
        order.append(rev)

    visit(revision)
    return order


def downgrade_path(files: dict[str, ScriptFile], recorded: str, stop: Iterable[str]
                   ) -> list[str]:
    """The revisions between `stop` (included) and `recorded`, newest first: what a
    database at `recorded` applied after the revisions below `stop`."""
    stops = set(stop)
    below: set[str] = set()
    for rev in stops:
        below |= set(_ancestry(files, rev)) - {rev}
    return [r for r in reversed(_ancestry(files, recorded)) if r not in below]


@register
@dataclass(frozen=True)
class RecreateMissing(Step):
    """Recreate the deleted revision `missing` as a bridge from `parent`'s schema to the one
    its children start from (rebuilt from the live schema and their downgrades); or relink
    the children onto `parent` when the schemas show nothing is missing."""

    kind: ClassVar[str] = "recreate-missing"
    missing: str
    parent: str | None
    children: tuple[str, ...]
    recorded: str

    def describe(self) -> str:
        return (f"recreate revision {self.missing} (deleted) as a bridge from "
                f"{self.parent or 'an empty database'} to the schema "
                f"{', '.join(self.children)} start from (the live schema with the downgrades "
                f"of {self.recorded} back to {', '.join(self.children)}); relink instead when "
                "nothing is missing; prove an empty database builds")

    def _operations(self, ctx: Context, files: dict[str, ScriptFile]) -> ops.UpgradeOps:
        from alembic.autogenerate import produce_migrations

        project, conn = ctx.project, ctx.conn
        if self.recorded == self.missing:
            downgrades: list[Path] = []
        else:
            downgrades = [files[r].path for r in downgrade_path(files, self.recorded,
                                                                 self.children)]
        after = schema_after_downgrades(project, conn, kept_tables(project, conn, ctx.models),
                                        downgrades)
        chain = _ancestry(files, self.parent) if self.parent else []
        with project_on_path(project.root), scratch_database(project, conn.engine) as scratch:
            for rev in chain:
                _run(scratch, _load(files[rev].path).upgrade)
            context = MigrationContext.configure(scratch, opts={
                "compare_type": True, "target_metadata": after,
                "include_name": lambda name, type_, _: type_ != "table" or is_user_table(
                    name or "")})
            upgrade_ops = produce_migrations(context, after).upgrade_ops
            scratch.rollback()
        assert upgrade_ops is not None
        return upgrade_ops

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        files = _by_revision(project)
        relinked = all(files[c].down_revisions == ((self.parent,) if self.parent else ())
                       for c in self.children if c in files)
        if self.missing not in files and not relinked:
            operations = self._operations(ctx, files)
            if operations.is_empty():
                for child in self.children:
                    relink_file(files[child].path, self.missing, self.parent)
                    ctx.say("relink", f"{project.rel(files[child].path)} now revises "
                            f"{self.parent or 'nothing'} (nothing was missing)")
            else:
                path = render_revision(project, ctx.conn.dialect, self.missing, self.parent,
                                       "bridge (recreated)", operations)
                ctx.say("bridge", f"recreated revision {self.missing} ({project.rel(path)})")
                crash_point("recreate-missing.written")
        files = _by_revision(project)
        target = self.recorded
        if self.recorded == self.missing and self.missing not in files:
            target = self.parent or ""  # relinked: the version rows are restamped next round
        problem = prove(project, ctx.conn, target) if target else None
        if problem is not None:
            self._take_back(ctx)
            raise NeedsRepair(f"recreating revision {self.missing} was taken back: {problem}; "
                              "restore the deleted file from git")
        ctx.say("verify", "an empty database builds from the history; its schema at "
                f"{target} equals this database's")

    def _take_back(self, ctx: Context) -> None:
        files = _by_revision(ctx.project)
        written = files.get(self.missing)
        if written is not None:
            _move(written.path, ctx.keep(written.path))
        for child in self.children:
            if child in files and self.missing not in files[child].down_revisions:
                relink_file(files[child].path, self.parent, self.missing)

    def undo(self, ctx: Context) -> None:
        self._take_back(ctx)


def missing_parent(scripts: Iterable[ScriptFile], missing: str
                   ) -> tuple[tuple[str, ...], list[str], set[str]]:
    """(the children naming `missing`, the candidates for its own parent: the heads of the
    part of the graph that does not descend from those children, and those descendants)."""
    files = {s.revision: s for s in scripts if s.revision}
    children = tuple(sorted(r for r, s in files.items() if missing in s.down_revisions))
    below: dict[str, set[str]] = {r: set() for r in files}
    for rev, script in files.items():
        for parent in script.down_revisions:
            if parent in below:
                below[parent].add(rev)
    descendants: set[str] = set()
    todo = list(children)
    while todo:
        rev = todo.pop()
        if rev not in descendants:
            descendants.add(rev)
            todo.extend(below.get(rev, ()))
    others = set(files) - descendants
    heads = sorted(r for r in others if not (below[r] & others))
    return children, heads, descendants


# -- planning (plan.py asks these) -----------------------------------------------------------------


_MISSING_OBJECT = ("no such table", "no such column", "doesn't exist", "unknown column",
                   "unknown table", "can't drop", "check that column/key exists",
                   "no such index")


def plan_missing_revision(state: State, finding: Finding) -> Step | str:
    """The step repairing one AR203 finding, or why it cannot be repaired safely."""
    from ..engine.state.scripts import cycle, dangling, duplicates

    scripts = state.scripts
    if any(s.error or s.revision is None for s in scripts) or duplicates(scripts) or \
            cycle(scripts):
        return "repair the other revision-file findings first, then run fix again"
    pairs = [(s, p) for s, p in dangling(scripts) if state.project.rel(s.path) == finding.location]
    if not pairs:
        return "restore the deleted revision file from git, then run fix again"
    missing = pairs[0][1]
    children, candidates, descendants = missing_parent(scripts, missing)
    restore = "restore the deleted revision file from git (or a teammate's clone)"
    if any(len(files.down_revisions) > 1 for files in scripts if files.revision in children):
        return f"a merge revision names the missing {missing}: {restore}"
    if len(candidates) > 1:
        return (f"the parent of the missing {missing} is ambiguous (it could revise "
                f"{', '.join(candidates)}): {restore}")
    versions = state.versions
    heads = versions.heads if versions is not None else ()
    if state.db_error is not None or len(heads) != 1:
        return (f"no database records one revision after {missing}, so the schema it left "
                f"cannot be rebuilt: {restore}")
    (recorded,) = heads
    if recorded != missing and recorded not in descendants:
        return (f"the database records {recorded}, before the missing {missing}, so the "
                f"schema {missing} left is unknown: {restore}")
    return RecreateMissing(missing, candidates[0] if candidates else None, children, recorded)


def plan_baseline(state: State, finding: Finding) -> Step | str:
    """The step repairing AR404 (a baseline before the old base), or why not."""
    roots = sorted(str(s.revision) for s in state.scripts if s.revision and not s.down_revisions)
    replay = state.replay
    versions = state.versions
    heads = versions.heads if versions is not None else ()
    known = {s.revision for s in state.scripts}
    if not state.graph_ok or len(roots) != 1:
        return ("the history has several bases: write a baseline revision before the first "
                "one by hand (or alembic-repair squash), then fix again")
    error = (replay.error or "").lower() if replay is not None else ""
    if not any(text in error for text in _MISSING_OBJECT):
        return ("the replay fails for another reason than a table or column no revision "
                "creates (rows, raw SQL): fix the revision named, then run fix again")
    if len(heads) != 1 or heads[0] not in known or not (state.live and state.live.tables):
        return ("no database at a revision of this history holds the tables the history "
                "relies on, so a baseline cannot be rebuilt from it: write the baseline "
                "revision by hand")
    return InsertBaseline(roots[0], heads[0])
