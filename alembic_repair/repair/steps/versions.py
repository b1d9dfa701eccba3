"""The steps that set what alembic_version records: `Stamp` (the schema already is there) and
`AdoptSchema` (write the revision that describes the live schema, then stamp it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alembic.migration import MigrationContext
from alembic.operations import ops
from sqlalchemy.engine import Connection

from ...engine import migrations, revisions
from ...engine.models import project_on_path
from ...engine.project import Project
from ...engine.state.config import version_table_notes
from ...engine.state.graph import history_chain
from ...engine.state.recorder import version_table_of, write_version_rows
from ...engine.state.schema import is_user_table
from ...errors import RefusedUnsafe
from ..journal import crash_point
from .base import (
    Context,
    Step,
    register,
    reuse_own_revision,
    take_own_revision_back,
)

# -- alembic_version ---------------------------------------------------------------------------


@register
@dataclass(frozen=True)
class Stamp(Step):
    """Record `revisions` in alembic_version (no DDL runs): the schema already is there."""

    kind: ClassVar[str] = "stamp"
    revisions: tuple[str, ...]
    before: tuple[str, ...]
    why: str = ""

    def describe(self) -> str:
        was = ", ".join(self.before) or "nothing"
        return (f"stamp {', '.join(self.revisions) or 'base'} in alembic_version (it records "
                f"{was}){': ' + self.why if self.why else ''}")

    def apply(self, ctx: Context) -> None:
        stamp_rows(ctx.project, ctx.conn, self.revisions)
        ctx.say("stamp", f"{version_table_of(ctx.conn, ctx.project)[0]} now records "
                f"{', '.join(self.revisions) or 'nothing'}")

    def undo(self, ctx: Context) -> None:
        stamp_rows(ctx.project, ctx.conn, self.before)


def stamp_rows(project: Project, conn: Connection, rows: tuple[str, ...]) -> None:
    """Make the version table hold `rows`: our own writer (it also puts the table in
    Alembic's shape) on the table env.py names; when env.py's ``version_table`` cannot be
    read without running it, Alembic's own ``stamp`` through env.py, which knows."""
    if version_table_notes(project) and len(rows) <= 1:
        migrations.stamp(project, conn, rows[0] if rows else "base")
        conn.commit()
        return
    write_version_rows(project, conn, rows)


# -- adopting the live schema -------------------------------------------------------------------


def adoption_ops(project: Project, conn: Connection, parent: str | None) -> ops.UpgradeOps:
    """The operations from revision `parent`'s schema (replayed on a scratch database; nothing
    when None) to the live schema: what a baseline or bridge revision must hold."""
    from alembic.autogenerate import produce_migrations

    from ...engine.replay import apply_revision, scratch_database

    live = revisions.reflect_user_tables(conn)
    conn.rollback()
    if parent is None:
        return revisions.create_ops(live)
    directory = migrations.scripts(project)
    chain = history_chain(directory, parent)
    with project_on_path(project.root), scratch_database(project, conn.engine) as scratch:
        for script in chain:
            try:
                apply_revision(scratch, script)
            except Exception as err:  # the revision's own code: anything may be raised
                raise RefusedUnsafe(
                    f"revision {script.revision} fails when the history is replayed from an "
                    f"empty database ({type(err).__name__}), so no bridge revision can be "
                    "written; stamp the revision the tables are at instead") from err
        context = MigrationContext.configure(scratch, opts={
            "compare_type": True, "target_metadata": live,
            "include_name": lambda name, type_, _: type_ != "table" or is_user_table(name or ""),
        })
        upgrade_ops = produce_migrations(context, live).upgrade_ops
    assert upgrade_ops is not None
    return upgrade_ops


@register
@dataclass(frozen=True)
class AdoptSchema(Step):
    """Write one revision that turns `parent`'s schema (or nothing: a baseline) into the live
    schema, and stamp it: the history then describes this database, whose tables and rows
    stay exactly as they are (the revision only runs on databases built from scratch)."""

    kind: ClassVar[str] = "adopt"
    parent: str | None
    before: tuple[str, ...]
    why: str = ""

    def describe(self) -> str:
        what = (f"a bridge revision on {self.parent}" if self.parent else "a baseline revision")
        return (f"write {what} describing the tables as they are now, and stamp it "
                f"(alembic_version records {', '.join(self.before) or 'nothing'})"
                f"{': ' + self.why if self.why else ''}")

    def apply(self, ctx: Context) -> None:
        revision = reuse_own_revision(ctx, self)
        if revision is None:
            operations = adoption_ops(ctx.project, ctx.conn, self.parent)
            parents = [self.parent] if self.parent else []
            revision = revisions.stable_revision_id(parents, operations)
            existed = bool(revisions.own_files(ctx.project, revision)[0])
            ctx.remember(self, revision=revision, existed=existed)
            if not existed:
                message = "bridge (adopted)" if self.parent else "baseline (adopted)"
                with project_on_path(ctx.project.root):
                    written = revisions.write_revision(ctx.project, ctx.conn, message,
                                                       operations, rev_id=revision)
                ctx.conn.commit()
                ctx.say("adopt", f"wrote revision {revision} "
                        f"({ctx.project.rel(written.path or ctx.project.versions_dir)})")
                crash_point("adopt.written")
        stamp_rows(ctx.project, ctx.conn, (revision,))
        ctx.say("stamp", f"{version_table_of(ctx.conn, ctx.project)[0]} now records {revision}")

    def undo(self, ctx: Context) -> None:
        # From what apply recorded before it acted, never recomputed: the live schema and
        # the history may be exactly what the failed run left half-changed.
        stamp_rows(ctx.project, ctx.conn, self.before)
        take_own_revision_back(ctx, self)


