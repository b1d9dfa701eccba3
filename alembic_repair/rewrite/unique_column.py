"""A NOT NULL (and/or unique) ``add_column`` on a table with rows, in three steps.

``op.add_column("article", sa.Column("article_id", sa.String(36), unique=True,
nullable=False, default=uuid.uuid4))`` fails on a table with rows (SQLite: NOT NULL without
a default; MariaDB: every row gets ``''``, then ``Duplicate entry`` for the unique key): the
model's ``default`` is Python-side and never reaches existing rows. The rewrite turns it into,
in the same revision:

1. add the column nullable (no unique constraint yet);
2. backfill every row, set-based, in batches of primary-key ranges (`ops.BackfillOp`), with
   distinct values chosen from the column: ``uuid`` when the model default is ``uuid.uuid4``
   (or a ``uuid.uuid4()`` evaluated once), the type is ``Uuid`` or a string of 36+
   characters; ``sequence`` (the integer primary key) for an integer column; the SQL
   expression the caller gives for ``table.column`` (`expressions`), which wins; a
   column that is NOT NULL but not unique with a constant default gets that constant;
3. NOT NULL, then a named unique constraint ``uq_<table>_<column>`` (and the index if the
   column had ``index=True``).

``downgrade()``'s ``drop_column`` of that column becomes: drop the unique constraint (and
index), drop the column; all in ``batch_alter_table``, which SQLite needs. The rewritten
column is nullable, so a second run finds nothing to do.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import libcst as cst
from alembic.operations import ops
from sqlalchemy import Column, Integer, MetaData, String, Uuid
from sqlalchemy.engine import Dialect

from ..data.trash import MAX_IDENTIFIER
from .ops import BATCH_ROWS, BackfillOp
from .transform import (
    RevisionSource,
    Rewrite,
    Statement,
    argument,
    batch_block,
    block_body,
    is_docstring,
    op_call,
    render_statements,
    transform,
    with_body,
)

__all__ = ["rewrite_unique_columns", "unique_name"]


def unique_name(table: str, column: str) -> str:
    return f"uq_{table}_{column}"[:MAX_IDENTIFIER]


def _index_name(table: str, column: str) -> str:
    return f"ix_{table}_{column}"[:MAX_IDENTIFIER]


def _namespace(source: RevisionSource) -> dict[str, Any]:
    """The file's own top-level imports, run, so its column expressions can be evaluated."""
    imports = [s for s in source.module.body if isinstance(s, cst.SimpleStatementLine)
               and isinstance(s.body[0], (cst.Import, cst.ImportFrom))]
    namespace: dict[str, Any] = {}
    try:
        exec(compile(cst.Module(body=imports).code, str(source.path), "exec"), namespace)
    except Exception as err:  # the user's imports: anything may be raised
        raise source.refuse(f"its imports fail ({type(err).__name__}: {err})") from None
    return namespace


def _uuid_default(column: Column[Any]) -> bool:
    default = column.default
    arg = getattr(default, "arg", None)
    if isinstance(arg, uuid.UUID):
        return True  # uuid.uuid4() evaluated once: the author meant a new one per row
    return callable(arg) and getattr(arg, "__name__", "") in ("uuid4", "uuid1", "uuid7")


class _Planner:
    def __init__(self, source: RevisionSource, schema: MetaData,
                 nonempty: Collection[str] | None, expressions: Mapping[str, str],
                 batch_rows: int, dialect: Dialect | None) -> None:
        self.source, self.schema, self.nonempty = source, schema, nonempty
        self.expressions, self.batch_rows, self.dialect = expressions, batch_rows, dialect
        self.namespace: dict[str, Any] | None = None
        self.notes: list[str] = []
        self.downgrades: dict[tuple[str, str], list[Statement]] = {}

    def column(self, table: str, node: cst.BaseExpression | None) -> Column[Any] | None:
        if node is None:
            return None
        if self.namespace is None:
            self.namespace = _namespace(self.source)
        code = cst.Module([]).code_for_node(node)
        try:
            value = eval(compile(code, str(self.source.path), "eval"), dict(self.namespace))
        except Exception as err:  # the user's expression
            self.notes.append(f"{table}: add_column({code[:60]}) could not be evaluated "
                              f"({type(err).__name__}), left as it is")
            return None
        return value if isinstance(value, Column) else None

    def _strategy(self, table: str, column: Column[Any], key: Column[Any]) -> tuple[str, Any]:
        where = f"{table}.{column.name}"
        if where in self.expressions:
            return "expression", self.expressions[where]
        type_ = column.type
        long_string = isinstance(type_, String) and (type_.length is None or type_.length >= 36)
        if isinstance(type_, Uuid) or (_uuid_default(column) and long_string):
            return "uuid", None
        if column.unique and isinstance(type_, Integer) and isinstance(key.type, Integer):
            return "sequence", None
        if column.unique and long_string:
            return "uuid", None
        default = getattr(column.default, "arg", None)
        if not column.unique and getattr(column.default, "is_scalar", False):
            return "constant", default
        raise self.source.refuse(
            f"no distinct value can be chosen for new column {where} ({type_}) on a table with "
            f"rows; pass expressions={{{where!r}: '<SQL per row>'}} (or give it a server "
            "default)")

    def plan(self, table: str, node: cst.BaseExpression | None) -> list[Statement] | None:
        column = self.column(table, node)
        if column is None or column.primary_key:
            return None
        if column.nullable and not (column.unique and column.server_default is not None):
            return None
        if column.nullable is not True and column.server_default is not None \
                and not column.unique:
            return None  # the server default fills the rows
        where = f"{table}.{column.name}"
        if table not in self.schema.tables:
            self.notes.append(f"{where}: table {table} is not in the database yet (created by "
                              "this revision?), left as it is")
            return None
        if self.nonempty is not None and table not in self.nonempty:
            self.notes.append(f"{where}: table {table} has no rows, left as it is")
            return None
        keys = list(self.schema.tables[table].primary_key.columns)
        if len(keys) != 1:
            raise self.source.refuse(f"new column {where}: table {table} has no single-column "
                                     "primary key to backfill it in batches")
        strategy, value = self._strategy(table, column, keys[0])
        added = column._copy()
        added.nullable, added.unique, added.index = True, None, None
        finish: list[ops.MigrateOperation] = []
        undo: list[ops.MigrateOperation] = []
        if not column.nullable:
            finish.append(ops.AlterColumnOp(table, column.name, modify_nullable=False,
                                            existing_type=column.type, existing_nullable=True,
                                            existing_server_default=column.server_default))
        if column.unique:
            finish.append(ops.CreateUniqueConstraintOp(unique_name(table, column.name), table,
                                                       [column.name]))
            undo.append(ops.DropConstraintOp(unique_name(table, column.name), table,
                                             type_="unique"))
        if column.index:
            finish.append(ops.CreateIndexOp(_index_name(table, column.name), table,
                                            [column.name]))
            undo.append(ops.DropIndexOp(_index_name(table, column.name), table))
        undo.append(ops.DropColumnOp(table, column.name))
        what = f"add {where} in three steps (backfill {strategy})"
        statements, imports = render_statements([
            ops.ModifyTableOps(table, [ops.AddColumnOp(table, added)]),
            BackfillOp(table, column.name, keys[0].name, strategy, value, self.batch_rows),
            ops.ModifyTableOps(table, finish)], self.dialect, comment=what)
        self.source.add_imports(imports)
        down, imports = render_statements([ops.ModifyTableOps(table, undo)], self.dialect,
                                          comment=f"undo {what}")
        self.source.add_imports(imports)
        self.downgrades[(table, column.name)] = down
        self.notes.append(f"{where}: three steps, backfill {strategy}")
        return statements


def _upgrade(planner: _Planner, body: Sequence[Statement]) -> list[Statement]:
    out: list[Statement] = []
    for statement in body:
        call = op_call(statement)
        if call is not None and call.receiver == "op" and call.method == "add_column":
            try:
                table = call.arg(0, "table_name")
            except (ValueError, SyntaxError):
                table = None
            new = planner.plan(table, argument(call.call, 1, "column")) if table else None
            if new:
                new[0] = new[0].with_changes(leading_lines=[*statement.leading_lines,
                                                            *new[0].leading_lines])
                out += new
                continue
        batch = batch_block(statement)
        if batch is not None:
            out += _split_batch(planner, batch.table, batch.name, batch.node)
            continue
        out.append(statement)
    return out


def _split_batch(planner: _Planner, table: str, name: str, node: cst.With) -> list[Statement]:
    """The batch block with each candidate add_column taken out and replaced by three steps
    (the block is split around it, so the order of operations stays)."""
    pieces: list[Statement] = []
    pending: list[Statement] = []
    changed = False
    for inner in block_body(node):
        call = op_call(inner)
        new = None
        if call is not None and call.receiver == name and call.method == "add_column":
            new = planner.plan(table, argument(call.call, 0, "column"))
        if not new:
            pending.append(inner)
            continue
        changed = True
        if pending:
            pieces.append(with_body(node if not pieces else node.with_changes(
                leading_lines=[]), pending))
            pending = []
        pieces += new
    if not changed:
        return [node]
    if pending:
        pieces.append(with_body(node.with_changes(leading_lines=[]), pending))
    return pieces


def _downgrade(planner: _Planner, body: Sequence[Statement]) -> list[Statement]:
    left = dict(planner.downgrades)
    out: list[Statement] = []
    for statement in body:
        call = op_call(statement)
        if call is not None and call.receiver == "op" and call.method == "drop_column":
            try:
                spot = (call.arg(0, "table_name"), call.arg(1, "column_name"))
            except (ValueError, SyntaxError):
                spot = None
            if spot in left:
                out += left.pop(spot)
                continue
        batch = batch_block(statement)
        if batch is not None:
            kept: list[Statement] = []
            found: list[Statement] = []
            for inner in block_body(batch.node):
                call = op_call(inner)
                try:
                    column = call.arg(0, "column_name") if call and call.receiver == batch.name \
                        and call.method == "drop_column" else None
                except (ValueError, SyntaxError):
                    column = None
                if isinstance(column, str) and (batch.table, column) in left:
                    found += left.pop((batch.table, column))
                else:
                    kept.append(inner)
            if found:
                out += ([with_body(batch.node, kept)] if kept else []) + found
                continue
        out.append(statement)
    start = 1 if out and is_docstring(out[0]) else 0
    rest = [s for block in left.values() for s in block]
    return out[:start] + rest + out[start:]


def rewrite_unique_columns(path: Path, *, schema: MetaData,
                           nonempty: Collection[str] | None = None,
                           expressions: Mapping[str, str] | None = None,
                           batch_rows: int = BATCH_ROWS, dry_run: bool = False,
                           dialect: Dialect | None = None) -> Rewrite:
    """Rewrite each NOT NULL / unique ``add_column`` of the revision at `path` into three steps
    (module docs). `schema`: the reflected schema the revision starts from (the table's primary
    key drives the batches); `nonempty`: the tables that have rows (None: assume all do);
    `expressions`: ``{"table.column": "SQL"}`` to backfill with. Idempotent; `dry_run` only
    returns the diff; a column whose values cannot be chosen leaves the file alone
    (`RewriteRefused`)."""
    def change(source: RevisionSource) -> list[str]:
        for name in ("upgrade", "downgrade"):
            source.check_understood(name)
        planner = _Planner(source, schema, nonempty, expressions or {}, batch_rows, dialect)
        upgrade = _upgrade(planner, source.bodies["upgrade"])
        if not planner.downgrades:
            return planner.notes or ["no NOT NULL or unique add_column to rewrite"]
        source.set_body("upgrade", upgrade)
        source.set_body("downgrade", _downgrade(planner, source.bodies["downgrade"]))
        return planner.notes

    return transform(path, change, dry_run=dry_run)
