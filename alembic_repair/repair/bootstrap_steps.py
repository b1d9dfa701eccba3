"""The steps bootstrap runs through the one runner (repair/runner.py) when the database or
the history must change: `ClearVersions`, `RecreateLost`, `AdoptDatabase`, `UpgradeHeads`,
`AutogenerateModels`. They say bootstrap's own messages (as `Action` values: `ctx.say` is
bootstrap's recorder, which also takes a path and a revision) and pass its crash points.

Bootstrap takes no backup and checks no rows (it only adds: autogenerate never writes a drop),
so the runner's journal is what these steps add: a bootstrap killed half-way is finished by
the next one, which reuses the revision a step recorded writing (`Context.remember`) instead
of refusing it as a history it does not know. None is reversible: a step that fails with a
clear error closes the run (bootstrap.py), and the next bootstrap plans from the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from ..engine import migrations, revisions
from ..engine.state.schema import is_user_table
from ..errors import NeedsRepair
from ..wording import counted
from .journal import crash_point
from .steps.base import Context, Step, keep_aside, register
from .steps.schema import finish_revisions

if TYPE_CHECKING:
    from alembic.operations.ops import UpgradeOps

    from ..engine.project import Project

__all__ = ["AdoptDatabase", "AutogenerateModels", "BootstrapContext", "ClearVersions",
           "RecreateLost", "UpgradeHeads", "unknown_refusal"]


@dataclass
class BootstrapContext(Context):
    """A step's `Context` plus the models bootstrap loaded once (never serialised)."""

    metadata: MetaData | None = None


def _say(ctx: Context, kind: str, message: str, path: Path | None = None,
         revision: str | None = None) -> None:
    cast(Any, ctx.say)(kind, message, path, revision)


def _metadata(ctx: Context) -> MetaData:
    metadata = getattr(ctx, "metadata", None)
    if metadata is None:  # (always set by bootstrap; a guard, not a path)
        raise NeedsRepair("bootstrap: the models are not loaded; run bootstrap again")
    return cast(MetaData, metadata)


def unknown_refusal(project: Project, unknown: list[str] | tuple[str, ...],
                    tables: int) -> NeedsRepair:
    """Revision files exist, but none is what the database records (or it records none)."""
    what = (f"is at revision {', '.join(unknown)}, which no file in "
            f"{project.rel(project.versions_dir)} defines" if unknown else
            f"has {counted(tables, 'table')} but no alembic_version row")
    return NeedsRepair(
        f"{project.masked_url}: the database {what}, while revision files exist; "
        "bootstrap will not guess which one the schema matches: restore the file "
        "(git checkout), or run `alembic-repair doctor` to find the revision to stamp")


def _own_file(ctx: Context, revision: str | None) -> Path | None:
    """The whole file of `revision` a step wrote (a file cut short goes to the backup folder)."""
    if revision is None:
        return None
    intact, partial = revisions.own_files(ctx.project, revision)
    for path in partial:
        keep_aside(ctx, path)
    return intact[0] if intact else None


def _upgrade(ctx: Context, step: Step) -> None:
    """Alembic's upgrade to every head. That it started is recorded first: run again after a
    kill, it finishes a revision left half-applied (MySQL/MariaDB commit each DDL statement),
    skipping what already took effect, as fix's `Upgrade` does."""
    if ctx.recall(step).get("upgrading"):
        finish_revisions(ctx)
    else:
        ctx.remember(step, upgrading=True)
    migrations.upgrade(ctx.project, ctx.conn, "heads")
    ctx.conn.commit()


class _BootstrapStep(Step):
    reversible: ClassVar[bool] = False

    def kept_after_error(self, ctx: Context) -> bool:
        """True when a clear error stopped this step after it wrote what only finishing it
        makes sense of: the journal then stays for the next bootstrap (bootstrap.py)."""
        return False


@register
@dataclass(frozen=True)
class ClearVersions(_BootstrapStep):
    """alembic_version records revisions no file defines, and the database has no tables."""

    kind: ClassVar[str] = "bootstrap-clear"
    destructive: ClassVar[bool] = True
    recorded: tuple[str, ...]
    unknown: tuple[str, ...]

    def describe(self) -> str:
        return f"clear alembic_version (it records {', '.join(self.unknown)})"

    def apply(self, ctx: Context) -> None:
        if migrations.current_heads(ctx.conn):
            migrations.stamp(ctx.project, ctx.conn, "base")
            ctx.conn.commit()
            migrations.log_stamp(ctx.project, self.recorded, ())
        _say(ctx, "adopt", f"cleared alembic_version: it recorded {', '.join(self.unknown)}, "
             "but the database has no tables")


@register
@dataclass(frozen=True)
class RecreateLost(_BootstrapStep):
    """The database is at a revision bootstrap wrote on top of our head in another container
    (and that never reached this folder). Autogenerating from the same models on top of the
    same head gives the same content-derived id: if it does, write that file back; otherwise
    refuse (`unknown_refusal`)."""

    kind: ClassVar[str] = "bootstrap-recreate"
    revision: str
    tables: int

    def describe(self) -> str:
        return f"write back revision {self.revision}, which the database records"

    def apply(self, ctx: Context) -> None:
        from ..engine import replay
        from ..engine.state.graph import history_order

        project, conn = ctx.project, ctx.conn
        if _own_file(ctx, self.revision) is not None:
            return  # written before the interrupted run stopped
        directory = migrations.scripts(project)
        with replay.scratch_database(project, conn.engine) as scratch:
            for script in history_order(directory):
                replay.apply_revision(scratch, script)
            ops, held = revisions.pending_model_changes(scratch, _metadata(ctx))
        if held or ops.is_empty() or \
                revisions.stable_revision_id(directory.get_heads(), ops) != self.revision:
            raise unknown_refusal(project, [self.revision], self.tables)
        written = revisions.write_revision(project, conn, "models changed", ops,
                                           rev_id=self.revision)
        conn.commit()
        if written.path is not None:
            _say(ctx, "adopt", f"recreated revision {self.revision} "
                 f"({project.rel(written.path)}), which the database records but this folder "
                 "had lost; no table touched", written.path, self.revision)


def adoption(conn: Connection, metadata: MetaData) -> tuple[UpgradeOps, str]:
    """The baseline bootstrap adopts a database with (its operations, its message)."""
    upgrade_ops, held = revisions.pending_model_changes(conn, metadata)
    conn.rollback()
    if upgrade_ops.is_empty() and not held:
        # The database is exactly the models: the same initial revision a fresh database
        # gets, with the same content-derived id.
        return revisions.create_ops(metadata), "initial schema"
    return (revisions.create_ops(revisions.reflect_user_tables(conn)),
            "baseline: the existing database, adopted")


@register
@dataclass(frozen=True)
class AdoptDatabase(_BootstrapStep):
    """Make the revision files describe the existing database, then stamp it. Drops nothing.
    The revision is recorded (`remember`) before it is written, so a bootstrap killed in
    between stamps the file it wrote instead of refusing it as a history it does not know."""

    kind: ClassVar[str] = "bootstrap-adopt"
    destructive: ClassVar[bool] = True
    recorded: tuple[str, ...]
    tables: int

    def describe(self) -> str:
        return "write a baseline revision describing the tables as they are, and stamp it"

    def kept_after_error(self, ctx: Context) -> bool:
        # its baseline written but not stamped: planned again, bootstrap would refuse it
        return _own_file(ctx, ctx.recall(self).get("revision")) is not None

    def apply(self, ctx: Context) -> None:
        project, conn = ctx.project, ctx.conn
        revision = ctx.recall(self).get("revision")
        path = _own_file(ctx, revision)
        if path is None:
            ops, message = adoption(conn, _metadata(ctx))
            revision = revisions.stable_revision_id([], ops)
            local = migrations.revisions(project)
            if revision in local:
                path = Path(local[revision].path)
            else:
                if ops.is_empty():
                    raise NeedsRepair(f"{project.masked_url}: nothing to adopt as a baseline; "
                                      "run `alembic-repair doctor`")
                ctx.remember(self, revision=revision)
                written = revisions.write_revision(project, conn, message, ops, rev_id=revision)
                crash_point("bootstrap.adopt.written")
                path = written.path or project.versions_dir
        assert revision is not None
        if migrations.current_heads(conn) != (revision,):
            if self.recorded != (revision,):
                migrations.log_stamp(project, self.recorded, (revision,))
            migrations.stamp(project, conn, revision)
        conn.commit()
        where = project.rel(path)
        if self.recorded == (revision,):
            message = (f"recreated revision {revision} ({where}), which the database "
                       f"({counted(self.tables, 'table')}) already records; no table touched")
        else:
            before = (f"was at {', '.join(self.recorded)}" if self.recorded
                      else "had no alembic_version row")
            message = (f"adopted the existing database ({counted(self.tables, 'table')}, "
                       f"{before}) as "
                       f"revision {revision} ({where}); no table touched")
        _say(ctx, "adopt", message, path, revision)


@register
@dataclass(frozen=True)
class UpgradeHeads(_BootstrapStep):
    """Apply the pending revisions (every head)."""

    kind: ClassVar[str] = "bootstrap-upgrade"
    destructive: ClassVar[bool] = True
    before: tuple[str, ...]
    heads: tuple[str, ...]

    def describe(self) -> str:
        return f"upgrade the database to {', '.join(self.heads)}"

    def apply(self, ctx: Context) -> None:
        _upgrade(ctx, self)
        start = ", ".join(self.before) if self.before else "an empty database"
        _say(ctx, "upgrade", f"upgraded {start} to {', '.join(self.heads)}",
             revision=", ".join(self.heads))


@register
@dataclass(frozen=True)
class AutogenerateModels(_BootstrapStep):
    """Write a revision for what the models add or widen (never empty, never a drop: what
    it holds back is said as ``kept``), and apply it when `upgrade`. A database with neither
    revisions nor tables gets the models' whole schema as its initial revision."""

    kind: ClassVar[str] = "bootstrap-autogenerate"
    destructive: ClassVar[bool] = True
    upgrade: bool = True

    def describe(self) -> str:
        return "autogenerate a revision for what the models add or widen" + \
            (", and upgrade to it" if self.upgrade else "")

    def apply(self, ctx: Context) -> None:
        conn = ctx.conn
        revision = ctx.recall(self).get("revision")
        if _own_file(ctx, revision) is None:
            revision = self._write(ctx)
            if revision is None:
                return
        if self.upgrade and revision not in migrations.current_heads(conn):
            before = migrations.current_heads(conn)
            conn.rollback()
            _upgrade(ctx, self)
            start = ", ".join(before) if before else "an empty database"
            _say(ctx, "upgrade", f"upgraded {start} to {revision}", revision=revision)
        conn.commit()

    def _write(self, ctx: Context) -> str | None:
        project, conn = ctx.project, ctx.conn
        metadata = _metadata(ctx)
        local = migrations.revisions(project)
        held: tuple[str, ...] = ()
        if not local and not [t for t in inspect(conn).get_table_names() if is_user_table(t)]:
            pending, message = revisions.create_ops(metadata), "initial schema"
        else:
            pending, held = revisions.pending_model_changes(conn, metadata)
            message = "models changed"
        conn.rollback()
        for reason in held:
            _say(ctx, "kept", reason)
        if pending.is_empty():
            return None
        heads = [rev for rev, script in local.items() if script.is_head]
        revision = revisions.next_revision_id(heads, pending, local)
        ctx.remember(self, revision=revision)
        written = revisions.write_revision(project, conn, message, pending, rev_id=revision)
        conn.commit()
        crash_point("bootstrap.autogenerate.written")
        if written.revision is None or written.path is None:
            return None
        _say(ctx, "autogenerate", f"wrote revision {written.revision} "
             f"({project.rel(written.path)}): {message}", written.path, written.revision)
        return written.revision
