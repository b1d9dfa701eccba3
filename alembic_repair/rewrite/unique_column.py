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

When the original revision already ran part-way (MariaDB commits each DDL statement: the
column is there, every row holding ``''`` or ``0``, and the unique constraint failed), the
rewritten file's backfills are read back (`read_backfills`) and the same per-row value is
written into the committed column's repeated values (`repeated_values`, `fill_repeated`),
batched the same way; then the rest of the revision can run (`repair/steps/complete.py`).
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libcst as cst
from alembic.operations import ops
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Uuid,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    table,
    text,
    true,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from ..data.trash import MAX_IDENTIFIER
from .ops import BATCH_ROWS, SQLITE_UUID, BackfillOp
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

__all__ = ["Backfill", "fill_repeated", "read_backfills", "repeated_values",
           "rewrite_unique_columns", "unique_name"]

#: More distinct repeated values than this in a committed column: not a failed ADD COLUMN's
#: one implicit value, so the values are the user's (nothing is overwritten).
MAX_REPEATED = 1000


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


# -- the committed column of a half-applied revision ---------------------------------------------


@dataclass(frozen=True)
class Backfill:
    """One backfill of a rewritten revision, read back from its file (`BackfillOp`'s fields)."""

    table: str
    column: str
    key: str
    strategy: str
    value: Any = None


def _assigned(statement: Statement, name: str) -> cst.BaseExpression | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and \
                isinstance(small.targets[0].target, cst.Name) and \
                small.targets[0].target.value == name:
            return small.value
    return None


def _literal(node: cst.BaseExpression | None) -> Any:
    if node is None:
        raise ValueError("missing")
    return ast.literal_eval(cst.Module([]).code_for_node(node))


def _strategy_of(node: cst.BaseExpression) -> tuple[str, Any]:
    """The strategy `ops._render_backfill` rendered into ``_ar_value = ...``."""
    if isinstance(node, cst.Subscript):
        return "sequence", None
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        name = node.func.attr.value
        if name == "get" and isinstance(node.func.value, cst.Dict):
            return "uuid", None
        if name == "text":
            return "expression", _literal(argument(node, 0, "text"))
        if name == "literal":
            return "constant", _literal(argument(node, 0, "value"))
    raise ValueError("not a backfill value this tool renders")


def read_backfills(path: Path) -> tuple[Backfill, ...]:
    """The backfills the three-step rewrite put into `path`'s ``upgrade()`` (libcst; the file is
    never imported). Empty when the file has none (not rewritten, or changed by hand)."""
    module = cst.parse_module(path.read_text(encoding="utf-8"))
    found: list[Backfill] = []
    for node in module.body:
        if not (isinstance(node, cst.FunctionDef) and node.name.value == "upgrade"):
            continue
        target: tuple[str, str, str] | None = None
        for statement in block_body(node):
            made = _assigned(statement, "_ar_table")
            if isinstance(made, cst.Call) and len(made.args) == 3:
                try:
                    name, key, col = (_literal(made.args[0].value),
                                      *(_literal(argument(a.value, 0, "text"))
                                        for a in made.args[1:] if isinstance(a.value, cst.Call)))
                except (ValueError, SyntaxError, TypeError):
                    target = None
                else:
                    target = (name, key, col)
                continue
            value = _assigned(statement, "_ar_value")
            if value is not None and target is not None:
                try:
                    strategy, given = _strategy_of(value)
                except (ValueError, SyntaxError):
                    continue
                found.append(Backfill(target[0], target[2], target[1], strategy, given))
                target = None
    return tuple(found)


def _per_row(backfill: Backfill, dialect: str, key: ColumnElement[Any]) -> Any:
    """The per-row value as SQL, as the rendered backfill chooses it at run time."""
    if backfill.strategy == "uuid":
        if dialect == "sqlite":
            return text(SQLITE_UUID)
        if dialect == "postgresql":
            return cast(func.gen_random_uuid(), String())
        return func.uuid()
    if backfill.strategy == "sequence":
        return key
    if backfill.strategy == "expression":
        return text(str(backfill.value))
    return literal(backfill.value)


def repeated_values(conn: Connection, backfill: Backfill,
                    limit: int = MAX_REPEATED) -> list[Any] | None:
    """The values of the committed column that more than one row holds (one full scan,
    grouped by the column's own collation, as its unique index will compare them); None when
    more than `limit` distinct values repeat."""
    col: ColumnClause[Any] = column(backfill.column)
    found = list(conn.execute(
        select(col).select_from(table(backfill.table)).where(col.is_not(None))
        .group_by(col).having(func.count() > 1).limit(limit + 1)).scalars())
    return None if len(found) > limit else found


def fill_repeated(conn: Connection, backfill: Backfill, values: Sequence[Any], *,
                  batch_rows: int = BATCH_ROWS,
                  after_batch: Callable[[], None] | None = None) -> int:
    """Give every row whose value is NULL or one of `values` the backfill's per-row value,
    set-based, batch by batch of primary-key ranges (committed after each, so a kill keeps
    what was done); returns the rows changed. A row holding a value no other row holds keeps
    it."""
    target = table(backfill.table, column(backfill.key), column(backfill.column))
    key, col = target.c[backfill.key], target.c[backfill.column]
    value = _per_row(backfill, conn.dialect.name, key)
    wanted = or_(col.is_(None), col.in_(list(values))) if values else col.is_(None)
    last, filled = None, 0
    while True:
        after = key > last if last is not None else true()
        upper = conn.execute(select(key).where(after).order_by(key)
                             .offset(batch_rows - 1).limit(1)).scalar()
        upto = key <= upper if upper is not None else true()
        filled += conn.execute(target.update().where(after, upto, wanted)
                               .values({backfill.column: value})).rowcount or 0
        conn.commit()
        if after_batch is not None:
            after_batch()
        if upper is None:
            return filled
        last = upper
