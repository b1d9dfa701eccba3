"""`FillCommitted`: the column a half-applied revision committed, given distinct values so the
rest of the revision (its unique constraint) can run.

MariaDB commits each DDL statement: ``add_column(..., unique=True, nullable=False)`` on a table
with rows leaves the column with every row holding ``''`` (or ``0``), then its unique
constraint fails. Running the missing operations again (`CompleteRevision`) would fail the same
way. This step first rewrites the revision into its three-step form (`rewrite/unique_column.py`,
unless the pending-revision layer did already), so an empty database builds it too; then it
writes the rewritten file's own per-row value (a UUID, the primary key, the given SQL) into
the rows whose value is repeated or NULL, in primary-key batches, set-based. `CompleteRevision`
comes next: the column is skipped (there), the file's backfill finds nothing left, the unique
constraint is built, the revision stamped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from ...engine import revisions
from ...engine.state.recorder import version_rows
from ...engine.state.schema import Fact
from ...errors import NeedsRepair
from ...wording import counted
from ..journal import crash_point
from .base import Context, Step, keep_copy, register

__all__ = ["FillCommitted", "fills_for"]


@register
@dataclass(frozen=True)
class FillCommitted(Step):
    kind: ClassVar[str] = "fill-committed"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    keeps_history: ClassVar[bool] = True  # its rewrite of the file keeps its tables
    revision: str
    path: str  # the revision file, relative to the project root
    table: str
    column: str

    def describe(self) -> str:
        return (f"rewrite {self.path} into three steps (add nullable, backfill distinct values, "
                f"then NOT NULL + unique) and give the rows of {self.table}.{self.column} that "
                f"revision {self.revision} left repeated or empty a distinct value each, in "
                "batches (the values no other row holds are kept)")

    def rewrites(self) -> tuple[tuple[str, str], ...]:
        return ((self.table, self.column),)

    def alters(self, ctx: Context) -> frozenset[str] | None:
        return frozenset()  # UPDATEs of the rewritten column and an edit of the revision file

    def apply(self, ctx: Context) -> None:
        from ...rewrite import rewrite_unique_columns
        from ...rewrite.unique_column import fill_repeated, read_backfills, repeated_values

        if self.revision in version_rows(ctx.conn):
            return
        path = ctx.project.root / self.path
        keep_copy(ctx, path)
        found = [b for b in read_backfills(path)
                 if (b.table, b.column) == (self.table, self.column)]
        if not found:
            done = rewrite_unique_columns(path, schema=revisions.reflect_user_tables(ctx.conn),
                                          dialect=ctx.conn.dialect)
            ctx.conn.rollback()
            if done.changed:
                ctx.say("rewrite", f"rewrote {self.path} (unique-columns)")
            found = [b for b in read_backfills(path)
                     if (b.table, b.column) == (self.table, self.column)]
        if not found:
            raise NeedsRepair(f"{self.path}: no backfill of {self.table}.{self.column} could be "
                              "written into it, so its values cannot be chosen: give the column "
                              "distinct values by hand, then run fix again")
        backfill = found[0]
        memo = ctx.recall(self)
        if "values" in memo:  # an interrupted run chose them: some rows are filled already
            values: list[Any] = list(memo["values"])
        else:
            chosen = repeated_values(ctx.conn, backfill)
            ctx.conn.rollback()
            if chosen is None or not all(isinstance(v, (str, int, float)) for v in chosen):
                raise NeedsRepair(
                    f"{self.table}.{self.column} holds many repeated values (or values of a "
                    f"kind this tool does not overwrite), not the one implicit value a failed "
                    f"ADD COLUMN leaves: make them distinct by hand, then run fix again")
            values = chosen
            ctx.remember(self, values=values)
        filled = fill_repeated(ctx.conn, backfill, values,
                               after_batch=lambda: crash_point("fill-committed.batch"))
        ctx.say("fill", f"gave {counted(filled, 'row')} of {self.table}.{self.column} a distinct "
                f"value each (backfill {backfill.strategy})")


def fills_for(revision: str, path: str | None, done: Iterable[Fact],
              left: Iterable[Fact]) -> tuple[FillCommitted, ...]:
    """A `FillCommitted` for each column a half-applied revision committed (`done`) whose unique
    constraint it still has to build (`left`)."""
    if path is None:
        return ()
    committed = {(f[1], f[2]) for f in done if f[0] == "column"}
    unique = {(f[1], f[2][0]) for f in left if f[0] == "unique" and len(f[2]) == 1}
    return tuple(FillCommitted(revision, path, table, name)
                 for table, name in sorted(committed & unique))
