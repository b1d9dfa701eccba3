"""Data steps as Alembic operations, so they are rendered like every other operation.

Alembic has operations for DDL only. The rewrites also move data: a backfill of distinct values
(`BackfillOp`), and a column copied into a trash table and back (`CopyColumnOp`,
`RestoreColumnOp`). Each is a `MigrateOperation` with a renderer registered in Alembic's
renderer table, so `render_op` turns it into code like any ``op.add_column``. The rendered code
uses only ``op`` and ``sa`` (SQLAlchemy Core, identifiers quoted by the dialect at run time):
the revision does not import alembic_repair and runs on SQLite, MySQL/MariaDB and PostgreSQL.

The backfill is set-based and batched by primary-key range (keyset): each batch is one
``SELECT`` of the batch's upper key through the primary-key index and one ``UPDATE`` of the
rows in that key range, so every row is read once (no ``OFFSET`` from the start, no scan per
batch for ``IS NULL``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic.autogenerate.api import AutogenContext
from alembic.autogenerate.render import renderers
from alembic.operations import ops

__all__ = ["BATCH_ROWS", "SQLITE_UUID", "BackfillOp", "CopyColumnOp", "RestoreColumnOp"]

BATCH_ROWS = 10_000

#: A version-4 UUID string (36 characters) per row in SQLite, which has no uuid function.
SQLITE_UUID = (
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
    "substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
)

STRATEGIES = ("uuid", "sequence", "expression", "constant")


class BackfillOp(ops.MigrateOperation):
    """Fill `column` of every row of `table` where it is NULL, batch by batch of `key` ranges.

    strategy: ``uuid`` (a new UUID string per row), ``sequence`` (the row's integer primary
    key), ``expression`` (`value` is SQL evaluated per row), ``constant`` (`value`)."""

    def __init__(self, table: str, column: str, key: str, strategy: str, value: Any = None,
                 batch_rows: int = BATCH_ROWS) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        self.table, self.column, self.key = table, column, key
        self.strategy, self.value, self.batch_rows = strategy, value, batch_rows

    def reverse(self) -> ops.MigrateOperation:
        raise NotImplementedError("a backfill is undone by dropping the column")


class CopyColumnOp(ops.MigrateOperation):
    """``INSERT INTO target (key..., column) SELECT key..., column FROM source``."""

    def __init__(self, source: str, target: str, key: Sequence[str], column: str) -> None:
        self.source, self.target, self.key, self.column = source, target, tuple(key), column

    def reverse(self) -> RestoreColumnOp:
        return RestoreColumnOp(self.target, self.source, self.key, self.column)


class RestoreColumnOp(ops.MigrateOperation):
    """``UPDATE target SET column = (SELECT column FROM source WHERE source.key = target.key)``."""

    def __init__(self, source: str, target: str, key: Sequence[str], column: str) -> None:
        self.source, self.target, self.key, self.column = source, target, tuple(key), column

    def reverse(self) -> CopyColumnOp:
        return CopyColumnOp(self.target, self.source, self.key, self.column)


def _sa(autogen: AutogenContext) -> str:
    return str(autogen.opts.get("sqlalchemy_module_prefix") or "sa.")


def _op(autogen: AutogenContext) -> str:
    return str(autogen.opts.get("alembic_module_prefix") or "op.")


def _table(sa: str, name: str, columns: Sequence[str]) -> str:
    cols = "".join(f", {sa}column({c!r})" for c in columns)
    return f"{sa}table({name!r}{cols})"


def _value(sa: str, op: BackfillOp) -> str:
    if op.strategy == "uuid":
        return (f"{{'sqlite': {sa}text({SQLITE_UUID!r}), 'postgresql': "
                f"{sa}cast({sa}func.gen_random_uuid(), {sa}String())}}"
                f".get(_ar_bind.dialect.name, {sa}func.uuid())")
    if op.strategy == "sequence":
        return f"_ar_table.c[{op.key!r}]"
    if op.strategy == "expression":
        return f"{sa}text({str(op.value)!r})"
    return f"{sa}literal({op.value!r})"


@renderers.dispatch_for(BackfillOp)
def _render_backfill(autogen: AutogenContext, op: BackfillOp) -> list[str | None]:
    sa, key, col = _sa(autogen), f"_ar_table.c[{op.key!r}]", f"_ar_table.c[{op.column!r}]"
    return [
        f"_ar_bind = {_op(autogen)}get_bind()",
        f"_ar_table = {_table(sa, op.table, (op.key, op.column))}",
        f"_ar_value = {_value(sa, op)}",
        "_ar_last = None",
        "while True:",
        f"_ar_after = {key} > _ar_last if _ar_last is not None else {sa}true()",
        f"_ar_upper = _ar_bind.execute({sa}select({key}).where(_ar_after).order_by({key})"
        f".offset({op.batch_rows - 1}).limit(1)).scalar()",
        f"_ar_upto = {key} <= _ar_upper if _ar_upper is not None else {sa}true()",
        f"_ar_bind.execute(_ar_table.update().where(_ar_after, _ar_upto, {col}.is_(None))"
        f".values({{{op.column!r}: _ar_value}}))",
        "if _ar_upper is None:",
        "break",
        None,
        "_ar_last = _ar_upper",
        None,
    ]


@renderers.dispatch_for(CopyColumnOp)
def _render_copy(autogen: AutogenContext, op: CopyColumnOp) -> str:
    sa, columns = _sa(autogen), (*op.key, op.column)
    picked = ", ".join(f"{sa}column({c!r})" for c in columns)
    return (f"{_op(autogen)}execute({_table(sa, op.target, columns)}.insert().from_select("
            f"{list(columns)!r}, {sa}select({picked}).select_from({sa}table({op.source!r}))))")


@renderers.dispatch_for(RestoreColumnOp)
def _render_restore(autogen: AutogenContext, op: RestoreColumnOp) -> list[str]:
    sa, columns = _sa(autogen), (*op.key, op.column)
    same = ", ".join(f"_ar_source.c[{k!r}] == _ar_table.c[{k!r}]" for k in op.key)
    return [
        f"_ar_source = {_table(sa, op.source, columns)}",
        f"_ar_table = {_table(sa, op.target, columns)}",
        f"{_op(autogen)}execute(_ar_table.update().values({{{op.column!r}: "
        f"{sa}select(_ar_source.c[{op.column!r}]).where({same}).scalar_subquery()}}))",
    ]


def _render_rename_table(autogen: AutogenContext, op: ops.RenameTableOp) -> str:
    schema = f", schema={op.schema!r}" if op.schema is not None else ""
    return f"{_op(autogen)}rename_table({op.table_name!r}, {op.new_table_name!r}{schema})"


try:  # Alembic has the operation but (so far) no renderer for it
    renderers.dispatch(ops.RenameTableOp("a", "b"))
except ValueError:
    renderers.dispatch_for(ops.RenameTableOp)(_render_rename_table)
