"""The steps that change the database's schema by running revisions: `Upgrade`, `Autogenerate`
(write a revision for what the models add, then apply it) and `CompleteRevision` (finish a
revision a crash left half-applied, skipping what already took effect). Each needs a backup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from alembic.migration import MigrationContext
from alembic.operations import Operations, ops
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ...engine import migrations, revisions
from ...engine.driver_errors import driver_message
from ...engine.models import project_on_path
from ...engine.state.graph import history_order
from ...engine.state.recorder import version_rows, write_version_rows
from ...errors import MigrationFailed, NeedsRepair, RefusedUnsafe
from ...masking import redact
from ...wording import counted
from ..journal import crash_point
from .base import (
    Context,
    Step,
    register,
    reuse_own_revision,
    take_own_revision_back,
)


@register
@dataclass(frozen=True)
class Upgrade(Step):
    kind: ClassVar[str] = "upgrade"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    reads_history: ClassVar[bool] = True
    target: str = "heads"

    def describe(self) -> str:
        return f"upgrade the database to {self.target}"

    def alters(self, ctx: Context) -> frozenset[str] | None:
        from ...engine.state.pending import pending_ids
        from ...engine.state.scripts import read_scripts

        ids = pending_ids(tuple(read_scripts(ctx.project.versions_dir)), version_rows(ctx.conn))
        ctx.conn.rollback()
        return None if ids is None else altered_tables(ctx, ids)

    def apply(self, ctx: Context) -> None:
        if ctx.recall(self).get("upgrading"):
            # killed during the upgrade: on MySQL/MariaDB each DDL statement committed, so
            # the revision it was in is half-applied; finish it (and the rest) skipping what
            # already took effect, instead of failing on it forever
            finish_revisions(ctx)
        else:
            ctx.remember(self, upgrading=True, writes_rows=_revisions_write_rows(ctx))
            crash_point("upgrade.started")
        with project_on_path(ctx.project.root):
            migrations.upgrade(ctx.project, ctx.conn, self.target)
        ctx.conn.commit()
        ctx.say("upgrade", f"upgraded to {', '.join(migrations.current_heads(ctx.conn))}")
        ctx.conn.rollback()


def _revisions_write_rows(ctx: Context) -> bool:
    """Whether a revision the upgrade will run writes rows itself (``op.execute``,
    ``op.bulk_insert``, or code that asks for the connection, which cannot be read offline):
    the user's own data migration, whose new rows and changed values the runner's row check
    then accepts (counts may grow, never fall; the backup holds the values from before)."""
    from ...engine.state.pending import pending_ids
    from ...engine.state.scripts import read_scripts

    ids = pending_ids(tuple(read_scripts(ctx.project.versions_dir)), version_rows(ctx.conn))
    ctx.conn.rollback()
    if not ids:
        return ids is None  # None: alembic_version names no known revision, so unknown
    operations = _operations(ctx, ids)
    return operations is None or any(
        isinstance(o, (ops.ExecuteSQLOp, ops.BulkInsertOp)) for o in operations)


def _operations(ctx: Context, ids: set[str]) -> list[ops.MigrateOperation] | None:
    """The operations the revisions `ids` issue, in history order, read offline
    (`read_operations`: nothing runs); None when one of them cannot be read so (its own code
    asks for the connection): what it does is only known by running it."""
    from ...engine.state.pending import read_operations

    operations: list[ops.MigrateOperation] = []
    with project_on_path(ctx.project.root):
        for script in history_order(migrations.scripts(ctx.project)):
            if script.revision not in ids:
                continue
            try:
                found = read_operations(script.module, script.path, ctx.conn.dialect)
            except Exception:  # the revision's own code
                return None
            operations += [item.operation for item in found]
    return operations


#: Operations that change no column definition: ``CHECKSUM TABLE`` (over the rows as the
#: server stores them) stays comparable across them, so the row check can use it.
_KEEPS_COLUMNS = (ops.CreateIndexOp, ops.DropIndexOp, ops.CreateForeignKeyOp,
                  ops.CreateUniqueConstraintOp, ops.CreateCheckConstraintOp,
                  ops.CreateTableCommentOp, ops.DropTableCommentOp)


def altered_tables(ctx: Context, ids: set[str]) -> frozenset[str] | None:
    """The tables the revisions `ids` may change the columns of (or create, drop, rename, or
    insert rows into), read offline from the operations they issue (`read_operations`: nothing
    runs); None when one of them cannot be read so (its own code asks for the connection) or
    runs SQL of its own (``op.execute``): any table, then."""
    operations = _operations(ctx, ids)
    if operations is None:
        return None
    tables: set[str] = set()
    for operation in operations:
        if isinstance(operation, _KEEPS_COLUMNS):
            continue
        if isinstance(operation, ops.BulkInsertOp):
            tables.add(str(operation.table.name))
            continue
        name = getattr(operation, "table_name", None)
        if isinstance(operation, ops.ExecuteSQLOp) or not isinstance(name, str):
            return None
        tables.add(name)
        if isinstance(operation, ops.RenameTableOp):
            tables.add(operation.new_table_name)
    return frozenset(tables)


def finish_revisions(ctx: Context) -> None:
    """Every revision the database has not applied, in order, through `CompleteRevision`."""
    from ...engine.state.pending import pending_ids
    from ...engine.state.scripts import read_scripts

    pending = pending_ids(tuple(read_scripts(ctx.project.versions_dir)),
                          version_rows(ctx.conn))
    ctx.conn.rollback()
    if not pending:
        return
    with project_on_path(ctx.project.root):
        order = [s.revision for s in history_order(migrations.scripts(ctx.project))]
    for revision in order:
        if revision in pending:
            CompleteRevision(revision, ()).apply(ctx)


@register
@dataclass(frozen=True)
class Autogenerate(Step):
    """Write a revision for what the models add or widen (never a drop or a narrowing: those
    are reported, not written) and apply it."""

    kind: ClassVar[str] = "autogenerate"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    message: str = "models changed"

    def describe(self) -> str:
        return ("autogenerate a revision for what the models add or widen, and upgrade to it "
                "(drops and narrowing changes are never written)")

    def apply(self, ctx: Context) -> None:
        from ...engine.models import load_target_metadata

        revision = reuse_own_revision(ctx, self)
        if revision is not None:
            # An interrupted run wrote it: the models are compared with it, not written again
            # on top of it. Its operations already in the live schema (MariaDB commits each
            # DDL) are skipped.
            if revision not in version_rows(ctx.conn):
                CompleteRevision(revision, ()).apply(ctx)
            ctx.say("autogenerate", f"finished revision {revision}, written by the "
                    "interrupted run")
            return
        with project_on_path(ctx.project.root):
            metadata = load_target_metadata(ctx.project, explicit=ctx.models)
            if metadata is None:
                raise NeedsRepair("autogenerate: target_metadata is None; pass --models")
            pending, held = revisions.pending_model_changes(ctx.conn, metadata)
            ctx.conn.rollback()
            for reason in held:
                ctx.say("kept", reason)
            if pending.is_empty():
                return
            existing = migrations.revisions(ctx.project)
            heads = [rev for rev, script in existing.items() if script.is_head]
            revision = revisions.next_revision_id(heads, pending, existing)
            ctx.remember(self, revision=revision)
            written = revisions.write_revision(ctx.project, ctx.conn, self.message, pending,
                                               rev_id=revision)
            ctx.conn.commit()
            ctx.say("autogenerate", f"wrote revision {written.revision}")
            crash_point("autogenerate.written")
            ctx.remember(self, upgrading=True)
            migrations.upgrade(ctx.project, ctx.conn, "heads")
        ctx.conn.commit()

    def undo_refusal(self, ctx: Context) -> str | None:
        memo = ctx.recall(self)
        revision = memo.get("revision")
        if revision is None:
            return None
        if revision in version_rows(ctx.conn):
            return f"revision {revision} is applied already"
        if memo.get("upgrading"):
            return f"the upgrade to revision {revision} may have run part-way"
        return None

    def undo(self, ctx: Context) -> None:
        if (why := self.undo_refusal(ctx)) is not None:
            raise RefusedUnsafe(f"autogenerate cannot be undone: {why}; finish the run with "
                                "`alembic-repair fix --yes`")
        take_own_revision_back(ctx, self)


def _already(conn: Connection, operation: Any) -> bool:
    """True when the effect of `operation` is already in the live schema (a half-applied
    revision's committed DDL), so running it again would fail or duplicate it."""
    insp = inspect(conn)
    table = getattr(operation, "table_name", None)
    if isinstance(operation, ops.CreateTableOp):
        return bool(insp.has_table(operation.table_name))
    if isinstance(operation, ops.DropTableOp):
        return not insp.has_table(operation.table_name)
    if table is None or not insp.has_table(table):
        return False
    columns = {c["name"] for c in insp.get_columns(table)}
    if isinstance(operation, ops.AddColumnOp):
        return operation.column.name in columns
    if isinstance(operation, ops.DropColumnOp):
        return operation.column_name not in columns
    if isinstance(operation, ops.CreateIndexOp):
        return operation.index_name in {i["name"] for i in insp.get_indexes(table)}
    if isinstance(operation, ops.DropIndexOp):
        return operation.index_name not in {i["name"] for i in insp.get_indexes(table)}
    if isinstance(operation, ops.CreateForeignKeyOp):
        return operation.constraint_name in {f["name"] for f in insp.get_foreign_keys(table)}
    if isinstance(operation, ops.CreateUniqueConstraintOp):
        names = {u["name"] for u in insp.get_unique_constraints(table)}
        names |= {i["name"] for i in insp.get_indexes(table) if i.get("unique")}
        return operation.constraint_name in names
    if isinstance(operation, ops.AlterColumnOp) and _nullable_only(operation):
        # only NOT NULL / NULL, already so (MariaDB: a MODIFY would rebuild the table for nothing)
        found = {c["name"]: c for c in insp.get_columns(table)}.get(operation.column_name)
        return found is not None and bool(found["nullable"]) == operation.modify_nullable
    return False


def _nullable_only(operation: ops.AlterColumnOp) -> bool:
    others = ("type", "server_default", "name", "comment")
    return operation.modify_nullable is not None and not any(operation.kw.values()) and all(
        getattr(operation, f"modify_{name}") in (None, False) for name in others)


@contextmanager
def _skipping_applied(conn: Connection, skipped: list[str]) -> Iterator[Operations]:
    def missing_only(run: Any) -> Any:
        """`run` (an ``invoke``) for the operations whose effect is not there yet."""
        def invoke_missing(operation: Any) -> Any:
            if _already(conn, operation):
                skipped.append(type(operation).__name__)
                return None
            return run(operation)
        return invoke_missing

    with Operations.context(MigrationContext.configure(conn)) as operations:
        invoke_missing = missing_only(operations.invoke)
        batch_alter_table = operations.batch_alter_table

        @contextmanager
        def batch_missing(*args: Any, **kwargs: Any) -> Iterator[Any]:
            # a batch's operations are checked as they are recorded, before any of them runs
            # (on MariaDB a batch runs them one by one, as ALTERs: the same check applies)
            with batch_alter_table(*args, **kwargs) as batch:
                batch.invoke = missing_only(batch.invoke)  # type: ignore[method-assign]
                yield batch

        operations.invoke = invoke_missing  # type: ignore[method-assign]
        operations.batch_alter_table = batch_missing  # type: ignore[method-assign]
        yield operations


@register
@dataclass(frozen=True)
class CompleteRevision(Step):
    """Finish a half-applied revision: run only the operations whose effect is missing
    (columns and tables it already added are kept, never dropped and re-added), then stamp."""

    kind: ClassVar[str] = "complete"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    reads_history: ClassVar[bool] = True
    revision: str
    before: tuple[str, ...]

    def describe(self) -> str:
        return (f"run the operations of revision {self.revision} that did not take effect "
                f"(keeping what it already did), then stamp {self.revision}")

    def alters(self, ctx: Context) -> frozenset[str] | None:
        return altered_tables(ctx, {self.revision})

    def apply(self, ctx: Context) -> None:
        if self.revision in version_rows(ctx.conn):
            return
        script = migrations.revisions(ctx.project)[self.revision]
        skipped: list[str] = []
        with project_on_path(ctx.project.root):
            try:
                with _skipping_applied(ctx.conn, skipped):
                    script.module.upgrade()
            except Exception as err:  # the revision's own code
                ctx.conn.rollback()
                detail = (driver_message(err) if isinstance(err, DBAPIError)
                          else f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
                raise MigrationFailed(
                    f"{ctx.project.rel(script.path)}: completing revision {self.revision} "
                    f"failed again ({redact(detail, ctx.project.url)}); "
                    "the revision itself is wrong: fix it, then run `alembic-repair fix` again"
                ) from None
        ctx.conn.commit()
        rows = tuple(r for r in version_rows(ctx.conn) if r not in script._all_down_revisions)
        write_version_rows(ctx.project, ctx.conn, (*rows, self.revision))
        ctx.say("complete", f"completed revision {self.revision} "
                f"({counted(len(skipped), 'operation')} "
                f"{'was' if len(skipped) == 1 else 'were'} already applied and were skipped)")


