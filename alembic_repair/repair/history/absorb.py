"""AR405 when the models already say it: a change made by hand on the live database (an ALTER
TABLE), then written into the models, is in the tables and the models but in no revision.
Autogenerate sees nothing (models = database) and a fresh database never gets it.

The repair writes the revision the history lacks, from the history's head to the models
(Alembic's autogenerate against the head replayed on a scratch database, rendered through the
project's script.py.mako), proves that the history replayed from empty then gives the live
schema at that revision, and stamps it: no DDL runs on the live database, which has it already.
Only additions are written: a drop or a column changed in place is refused at planning time.
A column's server default comes from the live table when the models give none (`alembic check`
ignores server defaults, so ``ADD COLUMN c INTEGER NOT NULL DEFAULT 0`` by hand matches a model
saying ``default=0``): the revision must build what the table is, or the proof fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from alembic.autogenerate import produce_migrations
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, DefaultClause, inspect, text
from sqlalchemy.engine import Connection

from ...diagnose.findings import Finding
from ...diagnose.rules.schema import history_view
from ...engine import migrations, revisions
from ...engine.models import load_target_metadata, project_on_path
from ...engine.project import Project
from ...engine.replay import apply_revision, scratch_database
from ...engine.state.graph import history_chain
from ...engine.state.read import State
from ...engine.state.recorder import version_table_of
from ...engine.state.schema import Fact, describe, is_user_table
from ...errors import NeedsRepair
from ..journal import crash_point
from ..registry import Draft
from ..steps.base import Context, Step, register, reuse_own_revision, take_own_revision_back
from ..steps.versions import stamp_rows
from .files import render_revision
from .proof import prove

CACHE_KEY = "absorb"


@dataclass(frozen=True)
class Absorption:
    """The head's schema against the live one, compared once per plan (`Draft.cache`): what
    the revision adds, or why none can be written."""

    refusal: str | None
    added: tuple[Fact, ...] = ()


def _absorption(draft: Draft) -> Absorption:
    cached = draft.cache.get(CACHE_KEY)
    if not isinstance(cached, Absorption):
        cached = draft.cache[CACHE_KEY] = _compare(draft.state)
    return cached


def absorb_refusal(draft: Draft, finding: Finding) -> str | None:
    """Why the drift in `finding` (AR405) cannot be written as a revision; None when it can."""
    return _absorption(draft).refusal


def absorbed(draft: Draft) -> str:
    """What the revision will add, in doctor's words (the plan shows it)."""
    added = sorted(describe(f) for f in _absorption(draft).added)
    return ", ".join(added[:6]) + (f" and {len(added) - 6} more" if len(added) > 6 else "")


#: what works when fix cannot write the revision: the user writes it, the database has it
BY_HAND = ("write that revision by hand (`alembic revision -m \"...\"`, then its operations), "
           "then record it as applied here with `alembic stamp head`")


def _compare(state: State) -> Absorption:
    """A revision can be written when the database records the history's one head, the models
    equal the tables (as `alembic check` compares them), and the difference only adds tables,
    columns, keys and indexes to the head's schema, with the server defaults the tables have.
    A drop, or a column changed in place (its type or nullability: a type changed by hand may
    have cut values that a fresh database would not reproduce), deserves a reviewed revision."""
    heads = state.versions.heads if state.versions is not None else ()
    replay, live = state.replay, history_view(state)
    if state.models is None or state.drift is None or state.models_owner is not None:
        return Absorption("the models cannot be compared with the tables")
    if state.drift.tables:
        names = ", ".join(sorted(state.drift.names))
        return Absorption(f"the models differ from the tables too ({names}): put the change "
                          "into the models (then fix writes the revision), or undo it")
    if len(heads) != 1 or tuple(state.script_heads) != heads:
        return Absorption("the database is not at the history's one head: upgrade it first")
    expected = replay.snapshots.get(heads[0]) if replay is not None else None
    if expected is None or live is None:
        return Absorption("the history's head could not be replayed")
    if replay is not None and (replay.failed_at is not None or replay.setup is not None):
        return Absorption("the history does not build from empty on its own (see AR404)")
    removed, added = expected - live, live - expected
    now = {_column(f): f for f in added if f[0] == "column"}
    changed = sorted(f"{f[1]}.{f[2]} ({_details(f)} -> {_details(now[_column(f)])})"
                     for f in removed if f[0] == "column" and _column(f) in now)
    gone = sorted(describe(f) for f in removed if f[0] != "column" or _column(f) not in now)
    if gone:
        return Absorption(f"the tables lack what the history's head has ({', '.join(gone[:4])}):"
                          f" {BY_HAND}")
    if changed:
        return Absorption(f"columns were changed in place ({', '.join(changed[:4])}): what that "
                          f"did to their values no revision can tell; {BY_HAND}")
    models = {_column(f): f for f in state.models.facts if f[0] == "column"}
    clash = sorted(f"{f[1]}.{f[2]} (DEFAULT {models[_column(f)][5]}, the table's "
                   f"{'none' if f[5] is None else f[5]})" for f in now.values()
                   if _column(f) in models and models[_column(f)][5] not in (None, f[5]))
    if clash:
        return Absorption(f"the models give other server defaults than the tables "
                          f"({', '.join(clash[:4])}): make the models' server_default say the "
                          "table's, then run `alembic-repair fix` again")
    return Absorption(None, tuple(sorted(added, key=repr)))


def _column(fact: Fact) -> tuple[object, ...]:
    return fact[1:3]


def _details(fact: Fact) -> str:
    """A column fact's type, nullability and default, in words."""
    return describe(fact).split(" ", 2)[2]


def absorb_ops(project: Project, conn: Connection, parent: str, models: str | None
               ) -> ops.UpgradeOps:
    """Autogenerate from revision `parent`'s schema (the history replayed on a scratch
    database) to the models: the revision the history lacks."""
    with project_on_path(project.root):
        metadata = load_target_metadata(project, explicit=models)
        if metadata is None:
            raise NeedsRepair("target_metadata is None: pass --models")
        version = version_table_of(conn, project)[0]
        conn.rollback()
        chain = history_chain(migrations.scripts(project), parent)
        with scratch_database(project, conn.engine) as scratch:
            for script in chain:
                try:
                    apply_revision(scratch, script)
                except Exception as err:  # the revision's own code
                    raise NeedsRepair(
                        f"revision {script.revision} fails when the history is replayed "
                        f"from an empty database ({type(err).__name__}): no revision can be "
                        "written on it") from err
            scratch.commit()
            context = MigrationContext.configure(scratch, opts={
                "compare_type": True, "target_metadata": metadata,
                "include_name": lambda name, type_, _: type_ != "table" or is_user_table(
                    name or "", {version})})
            muted = logging.root.manager.disable
            logging.disable(max(muted, logging.INFO))
            try:
                upgrade_ops = produce_migrations(context, metadata).upgrade_ops
            finally:
                logging.disable(muted)
    assert upgrade_ops is not None
    _with_live_defaults(upgrade_ops, conn)
    return upgrade_ops


def _with_live_defaults(upgrade_ops: ops.UpgradeOps, conn: Connection) -> None:
    """Give each column the revision adds the live column's server default when the models
    give none (a Python-side ``default=`` is no DDL): the revision then builds the table as it
    is here. The models' own server default, when they give one, equals it (`_compare`)."""
    insp = inspect(conn)
    live: dict[str, dict[str, object]] = {}

    def with_default(table: str, column: Any) -> Any:
        if not isinstance(column, Column) or column.server_default is not None:
            return column
        if table not in live:
            live[table] = {c["name"]: c.get("default") for c in insp.get_columns(table)}
        default = live[table].get(column.name)
        if not isinstance(default, str):
            return column
        copy = column._copy()  # the models' own column stays as it is
        copy.server_default = DefaultClause(text(default))
        return copy

    for op in upgrade_ops.ops:
        if isinstance(op, ops.CreateTableOp):
            op.columns = [with_default(op.table_name, c) for c in op.columns]
        elif isinstance(op, ops.ModifyTableOps):
            for sub in op.ops:
                if isinstance(sub, ops.AddColumnOp):
                    sub.column = with_default(sub.table_name, sub.column)
    conn.rollback()


@register
@dataclass(frozen=True)
class AbsorbDrift(Step):
    """Write the revision that adds what the tables and the models have and the history does
    not, prove an empty database builds it, and stamp it (the live tables are not touched)."""

    kind: ClassVar[str] = "absorb"
    parent: str  # the head the database records
    before: tuple[str, ...]
    what: str = ""

    def describe(self) -> str:
        return (f"write a revision on {self.parent} for what the tables and the models have "
                f"and no revision creates ({self.what or 'the difference'}; only additions, "
                "with the tables' server defaults), prove an empty database builds it, and "
                "stamp it (no DDL runs here: the tables have it)")

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        revision = reuse_own_revision(ctx, self)
        if revision is None:
            operations = absorb_ops(project, ctx.conn, self.parent, ctx.models)
            if operations.is_empty():
                raise NeedsRepair(f"the models add nothing to revision {self.parent}: compare "
                                  "them with `alembic-repair doctor`")
            revision = revisions.stable_revision_id([self.parent], operations)
            existed = bool(revisions.own_files(project, revision)[0])
            ctx.remember(self, revision=revision, existed=existed)
            if not existed:
                with project_on_path(project.root):
                    path = render_revision(project, ctx.conn.dialect, revision, self.parent,
                                           "changes made by hand, now in the models",
                                           operations)
                ctx.say("absorb", f"wrote revision {revision} ({project.rel(path)})")
                crash_point("absorb.written")
        problem = prove(project, ctx.conn, revision)
        if problem is not None:
            take_own_revision_back(ctx, self)
            raise NeedsRepair(f"the revision for the hand-made changes was taken back: "
                              f"{problem}; {BY_HAND}")
        ctx.say("verify", "an empty database builds from the history; its schema at "
                f"{revision} equals this database's")
        stamp_rows(project, ctx.conn, (revision,))
        ctx.say("stamp", f"{version_table_of(ctx.conn, project)[0]} now records {revision}")

    def undo(self, ctx: Context) -> None:
        stamp_rows(ctx.project, ctx.conn, self.before)
        take_own_revision_back(ctx, self)
