"""The steps that add, take out or rewrite revision files: `MoveToBackup`, `WriteMerge`,
`RewritePending` (a pending revision made safe) and `RemoveHiddenDrops` (what plain
autogenerate wrote about tables the tool hides)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from ...engine import migrations, revisions
from ...engine.models import project_on_path
from .base import (
    Context,
    Step,
    keep_aside,
    keep_copy,
    move,
    register,
    restore_copy,
)


@register
@dataclass(frozen=True)
class MoveToBackup(Step):
    """Take a file out of the project (into the backup folder: never deleted)."""

    kind: ClassVar[str] = "move"
    path: str  # relative to the project root
    why: str = ""

    def describe(self) -> str:
        return f"move {self.path} into the backup folder{': ' + self.why if self.why else ''}"

    def apply(self, ctx: Context) -> None:
        source = ctx.project.root / self.path
        if move(source, ctx.keep(source)):
            ctx.say("move", f"moved {self.path} into {ctx.project.rel(ctx.keep(source))}")

    def undo(self, ctx: Context) -> None:
        source = ctx.project.root / self.path
        move(ctx.keep(source), source)



@register
@dataclass(frozen=True)
class WriteMerge(Step):
    """A merge revision joining `heads` (no operations: both branches' schemas already add up)."""

    kind: ClassVar[str] = "merge"
    heads: tuple[str, ...]
    revision: str

    def describe(self) -> str:
        return f"write merge revision {self.revision} joining the heads {', '.join(self.heads)}"

    def apply(self, ctx: Context) -> None:
        intact, partial = revisions.own_files(ctx.project, self.revision)
        for path in partial:  # cut short by a kill: Alembic writes it in place
            keep_aside(ctx, path)
        if intact:
            return
        config = migrations.alembic_config(ctx.project, ctx.conn)
        from alembic import command

        with project_on_path(ctx.project.root):
            migrations.run_alembic(ctx.project, "writing the merge revision", command.merge,
                                   config, list(self.heads), message="merge heads",
                                   rev_id=self.revision)
        ctx.say("merge", f"wrote merge revision {self.revision}")

    def undo(self, ctx: Context) -> None:
        intact, partial = revisions.own_files(ctx.project, self.revision)  # read, never imported
        for path in intact + partial:
            keep_aside(ctx, path)

    @staticmethod
    def revision_for(heads: tuple[str, ...]) -> str:
        return hashlib.sha256(("merge:" + ",".join(sorted(heads))).encode()).hexdigest()[:12]



# -- pending revisions made safe (rewrite/) ------------------------------------------------------


@register
@dataclass(frozen=True)
class RewritePending(Step):
    """Rewrite a revision the database has not applied yet (the next one it will run, so the
    live schema is where it starts) into its safe form, with libcst: its drops become soft
    drops (``soft-drops``), or each unique / NOT NULL ``add_column`` on a table with rows
    becomes add nullable, backfill distinct values, then constrain (``unique-columns``), or
    the ALTERs SQLite cannot run in place move into ``batch_alter_table`` (``batch``: any
    pending revision, the live schema does not matter). The original file is kept in the
    backup folder; a second run changes nothing."""

    kind: ClassVar[str] = "rewrite"
    path: str  # relative to the project root
    transform: str  # soft-drops | unique-columns | batch
    drops: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.transform == "soft-drops":
            return (f"rewrite {self.path}: its drops of {', '.join(self.drops)} become soft "
                    "drops (renamed into the trash; downgrade() brings them back)")
        if self.transform == "batch":
            return (f"rewrite {self.path}: the ALTERs SQLite cannot run in place move into "
                    "op.batch_alter_table(...) blocks (the table is copied into its new shape)")
        return (f"rewrite {self.path}: each unique or NOT NULL add_column on a table with rows "
                "becomes add nullable, backfill distinct values, then NOT NULL + unique")

    def apply(self, ctx: Context) -> None:
        from sqlalchemy import func, select, table

        from ...rewrite import rewrite_unique_columns, rewrite_upgrade_drops

        path = ctx.project.root / self.path
        keep_copy(ctx, path)
        if self.transform == "batch":
            from ...engine.sqlite_alter import keyed_columns
            from ...engine.state.schema import reflect
            from ...rewrite import rewrite_batch

            keyed = keyed_columns(reflect(ctx.conn).facts)  # what AR507 judged drops by
            ctx.conn.rollback()
            if rewrite_batch(path, keyed=keyed).changed:
                ctx.say("rewrite", f"rewrote {self.path} ({self.transform})")
            return
        schema = revisions.reflect_user_tables(ctx.conn)
        if self.transform == "soft-drops":
            done = rewrite_upgrade_drops(path, list(self.drops), schema=schema,
                                         dialect=ctx.conn.dialect)
        else:
            nonempty = {name for name in schema.tables if ctx.conn.execute(
                select(func.count()).select_from(table(name))).scalar_one()}
            done = rewrite_unique_columns(path, schema=schema, nonempty=nonempty,
                                          dialect=ctx.conn.dialect)
        ctx.conn.rollback()
        if done.changed:
            ctx.say("rewrite", f"rewrote {self.path} ({self.transform})")

    def undo(self, ctx: Context) -> None:
        restore_copy(ctx, ctx.project.root / self.path)



@register
@dataclass(frozen=True)
class RemoveHiddenDrops(Step):
    """Take out of a pending revision the operations that drop tables the tool owns or keeps
    (and, from its downgrade, those that would recreate them): what a plain autogenerate
    wrote while env.py did not hide them. libcst; the original is kept in the backup folder."""

    kind: ClassVar[str] = "remove-hidden-drops"
    path: str  # relative to the project root
    tables: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"rewrite {self.path}: remove its drops of {', '.join(self.tables)} (tables the "
                "tool owns or keeps; not turned into soft drops)")

    def apply(self, ctx: Context) -> None:
        from ...rewrite.hidden import remove_table_ops

        path = ctx.project.root / self.path
        keep_copy(ctx, path)
        done = remove_table_ops(path, set(self.tables))
        if done.changed:
            ctx.say("rewrite", f"rewrote {self.path}: removed what it did to "
                    f"{', '.join(self.tables)}")

    def undo(self, ctx: Context) -> None:
        restore_copy(ctx, ctx.project.root / self.path)
