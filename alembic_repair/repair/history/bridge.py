"""AR404, a table made outside the migrations (``create_all()``, by hand) that a later revision
needs: a bridge revision creating it, inserted just before the first revision that needs it,
proved, or taken back.

The bridge holds the table as it was when that revision first ran: the live table, rebuilt on
a scratch database, with the downgrades of the later revisions that name it undone (newest
first; a data revision's downgrade, read offline as changing no table's shape, is not run),
written as Alembic's create operations through Alembic's renderer, each table's statements
guarded by ``has_table`` (other deployments' apps made the table with ``create_all()``
already: there the bridge does nothing). Its ``down_revision`` is that revision's parent(s);
the revision then revises the bridge alone, set in one libcst write (a merge too), so a kill
leaves it linked or not, and a partial link an older run left is recognised.
A database at or after that revision counts the bridge as applied (it is an ancestor of what
it records), so no DDL runs here; one still at the parent is stamped to the bridge (the table
is there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import libcst as cst
from alembic.operations import ops
from sqlalchemy import Select, TextClause, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

from ...diagnose.findings import Finding
from ...engine import migrations, revisions
from ...engine.models import project_on_path
from ...engine.replay import Replay, run_replay
from ...engine.state.graph import RevisionGraph
from ...engine.state.pending import data_only, read_operations
from ...engine.state.read import State
from ...engine.state.schema import is_user_table
from ...engine.state.scripts import ScriptFile
from ...errors import NeedsRepair
from ..journal import crash_point
from ..steps.base import Context, Step, move, register
from ..steps.versions import stamp_rows
from .files import read_scripts_of, render_revision, set_down_revisions
from .proof import by_revision, file_names, kept_tables, load, prove, schema_after_downgrades
from .proof import words as _words

_TABLE_ATTRIBUTES = ("table_name", "source_table", "referent_table", "new_table_name")


def _reshapes(operation: Any, wanted: set[str]) -> bool:
    """Whether one operation may change the shape of a `wanted` table (rows do not count);
    an operation naming no table (a custom one, DDL as a construct) counts."""
    if isinstance(operation, ops.BulkInsertOp):
        return False
    if isinstance(operation, ops.ExecuteSQLOp):
        sql = operation.sqltext
        if isinstance(sql, UpdateBase | Select):
            return False
        if isinstance(sql, str | TextClause):
            return not data_only(str(sql)) and bool(_words(str(sql)) & wanted)
        return True
    named = {getattr(operation, a, None) for a in _TABLE_ATTRIBUTES} - {None}
    return not named or bool(named & wanted)


def _undoes_shape(project: Any, path: Path, dialect: Dialect, wanted: set[str]) -> bool:
    """Whether the revision's downgrade must run to rebuild the `wanted` tables as they were
    before it: its upgrade (read offline, nothing runs) changes one of their shapes. A data
    revision (its downgrade often ``raise NotImplementedError``) does not; a revision that
    cannot be read offline counts as one that does."""
    try:
        with project_on_path(project.root):
            found = read_operations(load(path), str(path), dialect)
    except Exception:  # the revision's own code, op.get_bind(): not readable offline
        return True
    return any(_reshapes(item.operation, wanted) for item in found)


def _string(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _table_of(statement: cst.BaseStatement, tables: set[str]) -> str | None:
    """The bridged table an ``op.<command>(...)`` statement (or ``with
    op.batch_alter_table(...)``) works on: its ``table_name=``, else its first string
    argument that is one of `tables`."""
    call: cst.BaseExpression | None = None
    if isinstance(statement, cst.SimpleStatementLine) and isinstance(statement.body[0], cst.Expr):
        call = statement.body[0].value
    elif isinstance(statement, cst.With):
        call = statement.items[0].item
    if not isinstance(call, cst.Call):
        return None
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "table_name":
            return _string(arg.value)
    return next((v for a in call.args if a.keyword is None
                 and (v := _string(a.value)) in tables), None)


def _command(statement: cst.BaseStatement) -> str | None:
    """``create_table`` of ``op.create_table(...)``, ``batch_alter_table`` of a ``with``."""
    call: cst.BaseExpression | None = None
    if isinstance(statement, cst.SimpleStatementLine) and isinstance(statement.body[0], cst.Expr):
        call = statement.body[0].value
    elif isinstance(statement, cst.With):
        call = statement.items[0].item
    if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return None


def _drops_index_of_dropped(statement: cst.BaseStatement, body: list[cst.BaseStatement],
                            tables: set[str]) -> bool:
    """Whether `statement` drops indexes of a table `body` drops as well."""
    table = _table_of(statement, tables)
    return table is not None and _command(statement) in ("drop_index", "batch_alter_table") \
        and any(_command(s) == "drop_table" and _table_of(s, tables) == table for s in body)


class _Guard(cst.CSTTransformer):
    """Puts each bridged table's statements of ``upgrade()`` under ``if not
    has_table(...)`` and of ``downgrade()`` under ``if has_table(...)``: on a database whose
    application made the table already (``create_all()`` at start) the bridge is a no-op."""

    def __init__(self, tables: set[str]) -> None:
        self.tables = tables

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef
                          ) -> cst.FunctionDef:
        name = updated.name.value
        if name not in ("upgrade", "downgrade") or not isinstance(updated.body, cst.IndentedBlock):
            return updated
        body = list(updated.body.body)
        if any(isinstance(s, cst.If) for s in body):
            return updated  # guarded already (a run cut short after it)
        out: list[cst.BaseStatement] = []
        group: list[cst.BaseStatement] = []
        table: str | None = None

        def close() -> None:
            if group and table is not None:
                test = f"{'not ' if name == 'upgrade' else ''}" \
                       f"sa.inspect(op.get_bind()).has_table({table!r})"
                first = group[0]
                out.append(cst.If(test=cst.parse_expression(test),
                                  body=cst.IndentedBlock(body=[
                                      first.with_changes(leading_lines=[]), *group[1:]]),
                                  leading_lines=getattr(first, "leading_lines", ())))
            group.clear()

        if name == "downgrade":  # a dropped table takes its indexes (MySQL refuses to
            body = [s for s in body if not _drops_index_of_dropped(s, body, self.tables)]
        for statement in body:  # drop one a foreign key needs before the table)
            found = _table_of(statement, self.tables)
            if found is None and table is None:
                out.append(statement)  # the docstring, `pass`
                continue
            if found is not None and found != table:
                close()
                table = found
            group.append(statement)
        close()
        return updated.with_changes(body=updated.body.with_changes(body=out))


def guard_bridge(path: Path, tables: tuple[str, ...]) -> None:
    """Rewrite the rendered bridge with its per-table guards (`_Guard`) in one write;
    idempotent. ``import sqlalchemy as sa`` is added when the template has no such line."""
    source = path.read_text(encoding="utf-8")
    module = cst.parse_module(source).visit(_Guard(set(tables)))
    if "import sqlalchemy as sa\n" not in module.code:
        imports = [i for i, s in enumerate(module.body) if isinstance(s, cst.SimpleStatementLine)
                   and isinstance(s.body[0], cst.Import | cst.ImportFrom)]
        at = imports[-1] + 1 if imports else 0
        module = module.with_changes(body=[*module.body[:at], cst.parse_statement(
            "import sqlalchemy as sa\n"), *module.body[at:]])
    if module.code != source:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(module.code, encoding="utf-8")
        os.replace(temporary, path)


@dataclass(frozen=True)
class Place:
    """Where one bridge goes: before `needs` (today on `parents`), creating `tables`."""

    needs: str
    parents: tuple[str, ...]
    tables: tuple[str, ...]


def missing_tables(replay: Replay, files: dict[str, ScriptFile], live: frozenset[str]
                   ) -> Place | None:
    """Where the replay from empty stopped, when it stopped at a revision after a base for
    want of tables this database has (named in the error); else None."""
    needer = files.get(replay.failed_at or "")
    if needer is None or not needer.down_revisions:
        return None  # the base: a baseline before it
    there = set(replay.partial.tables) if replay.partial is not None else set()
    for parent in needer.down_revisions:  # what the history had made when it stopped
        snapshot = replay.snapshots.get(parent)
        there |= set(snapshot.tables) if snapshot is not None else set()
    tables = tuple(sorted(t for t in _words(replay.error or "") & live
                          if is_user_table(t) and t not in there))
    return Place(replay.failed_at or "", needer.down_revisions, tables) if tables else None


def _operations(ctx: Context, files: dict[str, ScriptFile], place: Place, recorded: str
                ) -> ops.UpgradeOps:
    """Create operations for `place.tables` as they were before `place.needs` ran: the live
    tables with the downgrades of the revisions since (`needs` included) that change their
    shape undone (scratch db); data revisions' downgrades are not run."""
    project, conn = ctx.project, ctx.conn
    graph = RevisionGraph.of(files.values())
    wanted = set(place.tables)
    downgrades = [files[r].path for r in graph.between(recorded, (place.needs,))
                  if file_names(files[r].path) & wanted
                  and _undoes_shape(project, files[r].path, conn.dialect, wanted)]
    keep = sorted(set(kept_tables(project, conn, ctx.models)) | wanted)
    before = schema_after_downgrades(
        project, conn, keep, downgrades,
        advice=f"write the revision creating {', '.join(place.tables)} before {place.needs} "
               "by hand, or make that downgrade() undo its upgrade()")
    created = [o for o in revisions.create_ops(before).ops
               if getattr(o, "table_name", None) in wanted]
    if not created:
        raise NeedsRepair(f"before {place.needs} ran, the database held no table "
                          f"{', '.join(place.tables)}: write the revision creating it by hand")
    return ops.UpgradeOps(created)


def _linked(files: dict[str, ScriptFile], place: Place) -> str | None:
    """The bridge `place.needs` already revises, wholly (``(bridge,)``) or in part (the bridge
    beside some of its old parents, as a run of an older version cut short between two writes
    left it): a revision revising exactly `place.parents`."""
    current = files[place.needs].down_revisions
    for revision in current:
        bridge = files.get(revision)
        if bridge is not None and bridge.down_revisions == place.parents and \
                links(current, revision, place.parents):
            return revision
    return None


def links(current: tuple[str, ...], bridge: str, parents: tuple[str, ...]) -> bool:
    """Whether a needer revising `current` is linked to `bridge`, wholly or in part: the
    bridge among its parents, the others some of the bridge's own `parents`."""
    return bridge not in parents and bridge in current and \
        set(current) - {bridge} <= set(parents)


def set_parents(path: Path, ids: tuple[str, ...]) -> bool:
    """Write `ids` as the file's whole down_revision in one write (libcst, the ``Revises:``
    line follows), so a kill leaves it old or new, never between; False when it is so."""
    if read_scripts_of([path])[0].down_revisions == ids:
        return False
    set_down_revisions(path, ids)
    return True


@register
@dataclass(frozen=True)
class InsertBridge(Step):
    """Write a bridge revision creating `tables` (as the live database has them, before
    `needs` ran) between `needs` and its parents, relink `needs` onto it (and so for each
    later revision the replay then stops at for another such table), and prove an empty
    database builds the history to the live schema; taken back whole when it does not."""

    kind: ClassVar[str] = "insert-bridge"
    needs: str  # the first revision that needs the tables
    parents: tuple[str, ...]  # its down_revision(s) today: the bridge's
    tables: tuple[str, ...]
    recorded: str  # the revision the database records

    def describe(self) -> str:
        stamp = (f"; the database (at {self.recorded}) is stamped to the bridge"
                 if self.recorded in self.parents else
                 f"; databases at {self.recorded} count it as applied (no restamp)")
        return (f"write a bridge revision creating {', '.join(self.tables)} (as this database "
                f"has it, before {self.needs} ran) on {', '.join(self.parents)}, relink "
                f"{self.needs} onto it (the same for a later revision needing another table "
                f"made outside the migrations) and prove an empty database builds{stamp}; no "
                "DDL runs here")

    def _insert(self, ctx: Context, place: Place) -> str:
        project = ctx.project
        files = by_revision(project)
        if place.needs not in files:
            raise NeedsRepair(f"revision {place.needs} has no file any more")
        revision = _linked(files, place)
        if revision is not None:
            guard_bridge(files[revision].path, place.tables)
            set_parents(files[place.needs].path, (revision,))
            return revision
        if files[place.needs].down_revisions != place.parents:
            raise NeedsRepair(f"revision {place.needs} no longer revises "
                              f"{', '.join(place.parents)}; run fix again")
        operations = _operations(ctx, files, place, self.recorded)
        revision = revisions.stable_revision_id(place.parents, operations)
        done = [b for b in ctx.recall(self).get("bridges", []) if b[0] != revision]
        ctx.remember(self, bridges=[*done, (revision, place.needs, place.parents)])
        if revision not in files:
            down = place.parents[0] if len(place.parents) == 1 else place.parents
            path = render_revision(project, ctx.conn.dialect, revision, down,  # type: ignore[arg-type]
                                   f"bridge: {', '.join(place.tables)} made outside the "
                                   "migrations", operations)
            crash_point("insert-bridge.rendered")
            ctx.say("bridge", f"wrote revision {revision} ({project.rel(path)})")
        else:
            path = files[revision].path
        guard_bridge(path, place.tables)
        crash_point("insert-bridge.written")
        needer = files[place.needs].path
        set_parents(needer, (revision,))
        ctx.say("relink", f"{project.rel(needer)} now revises {revision}")
        return revision

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        place: Place | None = Place(self.needs, self.parents, self.tables)
        first = target = self.recorded
        seen: set[str] = set()
        problem: str | None = None
        while place is not None:
            if place.needs in seen:
                self._take_back(ctx)
                raise NeedsRepair(f"the bridge before {place.needs} did not make the history "
                                  "build; it was taken back: write the revision creating "
                                  f"{', '.join(place.tables)} by hand")
            seen.add(place.needs)
            revision = self._insert(ctx, place)
            if place.needs == self.needs:
                first = revision
            if self.recorded in self.parents:  # the table is here already: the bridge ran
                stamp_rows(project, ctx.conn, (first,))
                ctx.say("stamp", f"alembic_version now records {first} (the table is there)")
                target = first
            problem = prove(project, ctx.conn, target)
            if problem is None:
                ctx.say("verify", "an empty database builds from the history; its schema at "
                        f"{target} equals this database's")
                return
            place = self._next(ctx)
            if place is not None and self.recorded not in (
                    place.needs, *RevisionGraph.of(by_revision(project).values())
                    .descendants(place.needs)):
                place = None  # that revision has not run here: its bridge would run here
        self._take_back(ctx)
        raise NeedsRepair(f"the bridge before {self.needs} was taken back: {problem}; write "
                          f"the revision creating {', '.join(self.tables)} by hand")

    def _next(self, ctx: Context) -> Place | None:
        """Where the replay from empty now stops, if for another table made outside."""
        project = ctx.project
        with project_on_path(project.root):
            replay = run_replay(project, migrations.scripts(project), ctx.conn.engine)
        live = frozenset(inspect(ctx.conn).get_table_names())
        ctx.conn.rollback()
        return missing_tables(replay, by_revision(project), live)

    def _take_back(self, ctx: Context) -> None:
        """Every bridge this step wrote, newest first (from what it recorded)."""
        for revision, needs, parents in reversed(ctx.recall(self).get("bridges", [])):
            parents = tuple(parents)
            files = by_revision(ctx.project)
            needer = files.get(needs)
            if needer is not None and links(needer.down_revisions, revision, parents):
                set_parents(needer.path, parents)
            written = files.get(revision)
            if written is not None and written.down_revisions == parents:
                move(written.path, ctx.keep(written.path))
        if self.recorded in self.parents:
            stamp_rows(ctx.project, ctx.conn, (self.recorded,))

    def undo(self, ctx: Context) -> None:
        self._take_back(ctx)


def plan_bridge(state: State, finding: Finding) -> Step | str | None:
    """The step repairing AR404 when the replay stops at a revision after the base because a
    table this database has is missing there; a reason when it cannot; None when the
    failure is not that (the baseline's case)."""
    replay = state.replay
    if replay is None or replay.failed_at is None or not state.graph_ok:
        return None
    files = {s.revision: s for s in state.scripts if s.revision}
    live = state.live.tables if state.live is not None else frozenset()
    place = missing_tables(replay, files, live)
    if place is None:
        return None
    tables, parents = ", ".join(place.tables), place.parents
    versions = state.versions
    heads = versions.heads if versions is not None else ()
    if len(heads) != 1 or heads[0] not in files:
        return (f"{tables} exist(s) here but no revision creates it, and the database records "
                "no one revision of this history to rebuild it from: write a revision "
                f"creating it before {place.needs} by hand")
    (recorded,) = heads
    if recorded != place.needs and recorded not in state.graph.descendants(place.needs) and \
            not (len(parents) == 1 and recorded == parents[0]):
        return (f"the database records {recorded}, before {parents[0]}: upgrade it to "
                f"{parents[0]} (`alembic upgrade {parents[0]}`), then run fix again")
    return InsertBridge(place.needs, parents, place.tables, recorded)
