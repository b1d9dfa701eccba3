"""SQLite ALTERs into batch mode: ``op.alter_column("post", "title", type_=...)`` becomes
``with op.batch_alter_table("post") as batch_op: batch_op.alter_column("title", type_=...)``.

SQLite cannot change a column's type, nullability or default, nor add or drop a constraint, in
place (``near "ALTER": syntax error``); Alembic's batch mode copies the table into its new
shape instead. The move is mechanical, so it is done on the statements as written: the call
keeps every argument the user wrote except the table name (and ``schema``, which goes to
``batch_alter_table``), its comments and its line; consecutive moved calls on the same table
share one block, and the order of all operations stays. Only the calls SQLite cannot run in
place move: `engine.sqlite_alter.sqlite_cannot` decides, for doctor's AR507 and for this
rewrite alike, so fix never turns an in-place ALTER into a table copy (which drops the table's
triggers and, with ``PRAGMA foreign_keys=ON``, may cascade deletes). ``create_index``, a plain
``add_column``, a rename, an ``alter_column`` that changes only ``autoincrement``, and (SQLite
>= 3.35) a ``drop_column`` of a column in no key or index stay where they are. On MySQL/MariaDB
the same file runs as before: ``batch_alter_table`` recreates tables only on SQLite, elsewhere
it issues the same ALTERs. Both ``upgrade()`` and ``downgrade()`` are rewritten; a second run
finds nothing left to move.

A ``unique`` column added outside batch mode is not moved: in batch mode SQLite still adds a
column in place, and that fails the same way (`RewriteRefused`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import libcst as cst

from ..engine.sqlite_alter import CHANGES, sqlite_cannot
from .transform import (
    MARKER,
    TABLE_ARGUMENT,
    RevisionSource,
    Rewrite,
    Statement,
    argument,
    literal,
    op_call,
    transform,
)

__all__ = ["BATCH_NAME", "rewrite_batch"]

#: The name of the batch operations object, as Alembic's autogenerate writes it.
BATCH_NAME = "batch_op"

#: keywords naming the table's schema: batch_alter_table takes it instead.
SCHEMA_KEYWORDS = {"schema", "source_schema"}


def _changes(call: cst.Call) -> list[str]:
    """What an ``alter_column`` call changes (a keyword whose value is not a literal counts)."""
    found: list[str] = []
    for arg in call.args:
        if arg.keyword is None or arg.keyword.value not in CHANGES:
            continue
        name, unchanged = CHANGES[arg.keyword.value]
        try:
            value = literal(arg.value)
        except (ValueError, SyntaxError):
            value = ...  # an expression: a change
        if value is not unchanged:
            found.append(name)
    return found


def _names(call: cst.Call) -> tuple[Any, Any]:
    """A drop_column's table and column as written (None: not a literal)."""
    names = []
    for position, keyword in ((0, "table_name"), (1, "column_name")):
        try:
            names.append(literal(argument(call, position, keyword)))
        except (ValueError, SyntaxError):
            names.append(None)
    return names[0], names[1]


def _needs_batch(method: str, call: cst.Call, keyed: Collection[tuple[str, str]] | None
                 ) -> bool:
    table, name = _names(call) if method == "drop_column" else (None, None)
    # a column (or keys) not known: moved, the copy is slower but the upgrade runs
    is_keyed = keyed is None or not isinstance(name, str) or not isinstance(table, str) \
        or (table, name) in keyed
    return sqlite_cannot(method, changes=_changes(call) if method == "alter_column" else (),
                         unique=method == "add_column" and _unique_column(call),
                         keyed=method == "drop_column" and is_keyed) is not None


def _unique_column(call: cst.Call) -> bool:
    """``op.add_column(t, sa.Column(..., unique=True))``: SQLite refuses it in batch too."""
    column = argument(call, 1, "column")
    return isinstance(column, cst.Call) and any(
        a.keyword is not None and a.keyword.value == "unique"
        and isinstance(a.value, cst.Name) and a.value.value == "True" for a in column.args)


def _table_and_schema(source: RevisionSource, name: str, method: str, call: cst.Call
                      ) -> tuple[str, cst.BaseExpression, cst.BaseExpression | None]:
    """The table's name, its expression as written (the user's quotes), the schema's."""
    position, keyword = TABLE_ARGUMENT[method]
    node = argument(call, position, keyword)
    try:
        table = literal(node)
    except (ValueError, SyntaxError):
        raise source.refuse(f"{name}() calls op.{method} with a table name that is not a "
                            "literal string") from None
    if not isinstance(table, str):
        raise source.refuse(f"{name}() calls op.{method} with a table name that is not a "
                            "literal string")
    schemas = [a.value for a in call.args
               if a.keyword is not None and a.keyword.value in SCHEMA_KEYWORDS]
    assert node is not None
    return table, node, (schemas[0] if schemas else None)


def _inner_call(method: str, call: cst.Call) -> cst.Call:
    """The same call on the batch: without the table argument and the schema keywords."""
    position, keyword = TABLE_ARGUMENT[method]
    positional = [i for i, a in enumerate(call.args) if a.keyword is None and not a.star]
    named = {i: a.keyword.value for i, a in enumerate(call.args) if a.keyword is not None}
    drop = {i for i, name in named.items() if name in {keyword} | SCHEMA_KEYWORDS}
    if keyword not in named.values() and position < len(positional):
        drop.add(positional[position])
    args = [a for i, a in enumerate(call.args) if i not in drop]
    if args and isinstance(args[-1].comma, cst.Comma) and not isinstance(
            args[-1].comma.whitespace_after, cst.ParenthesizedWhitespace):
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)  # "x, )" otherwise
    return call.with_changes(func=cst.Attribute(cst.Name(BATCH_NAME), cst.Name(method)),
                             args=args)


def _block(table: str, written: cst.BaseExpression, schema: cst.BaseExpression | None,
           first: Statement) -> cst.With:
    args = [cst.Arg(written)]
    if schema is not None:
        args.append(cst.Arg(schema, keyword=cst.Name("schema"), equal=cst.AssignEqual(
            whitespace_before=cst.SimpleWhitespace(""),
            whitespace_after=cst.SimpleWhitespace(""))))
    opener = cst.Call(cst.Attribute(cst.Name("op"), cst.Name("batch_alter_table")), args)
    note = cst.EmptyLine(comment=cst.Comment(
        f"{MARKER}batch mode: SQLite cannot ALTER {table} in place"))
    return cst.With(items=[cst.WithItem(opener, asname=cst.AsName(cst.Name(BATCH_NAME)))],
                    body=cst.IndentedBlock(body=[]),
                    leading_lines=[*first.leading_lines, note])


def _moved(source: RevisionSource, name: str, body: Sequence[Statement],
           keyed: Collection[tuple[str, str]] | None) -> tuple[list[Statement], list[str]]:
    out: list[Statement] = []
    moved: list[str] = []
    current: tuple[str, str] | None = None  # (table, schema code) of the block being filled
    for statement in body:
        call = op_call(statement)
        if call is None or call.receiver != "op" or call.method not in TABLE_ARGUMENT:
            out.append(statement)
            current = None
            continue
        if call.method == "add_column" and _unique_column(call.call):
            raise source.refuse(f"{name}() adds a unique column with op.add_column; SQLite "
                                "adds columns in place even in batch mode: add it nullable "
                                "without unique=True, then create_unique_constraint in a batch "
                                "block")
        if not _needs_batch(call.method, call.call, keyed):
            out.append(statement)
            current = None
            continue
        table, written, schema = _table_and_schema(source, name, call.method, call.call)
        assert isinstance(statement, cst.SimpleStatementLine)
        key = (table, cst.Module([]).code_for_node(schema) if schema is not None else "")
        expression = statement.body[0]
        assert isinstance(expression, cst.Expr)
        inner = statement.with_changes(
            body=[expression.with_changes(value=_inner_call(call.method, call.call))])
        block = out[-1] if current == key else None
        if isinstance(block, cst.With) and isinstance(block.body, cst.IndentedBlock):
            out[-1] = block.with_changes(body=block.body.with_changes(
                body=[*block.body.body, inner]))
        else:
            new = _block(table, written, schema, statement)
            out.append(new.with_changes(body=cst.IndentedBlock(
                body=[inner.with_changes(leading_lines=[])])))
            current = key
        moved.append(f"{name}(): op.{call.method} on {table} into batch mode")
    return out, moved


def rewrite_batch(path: Path, *, keyed: Collection[tuple[str, str]] | None = None,
                  dry_run: bool = False) -> Rewrite:
    """Move the ALTERs of the revision at `path` that SQLite cannot run in place into
    ``op.batch_alter_table`` blocks (module docs). `keyed`: the live database's
    `engine.sqlite_alter.keyed_columns` (what AR507 reads); None (not known) moves every
    drop_column. Idempotent; `dry_run` only returns the diff; a file that cannot be understood
    is left alone (`RewriteRefused`)."""
    def change(source: RevisionSource) -> list[str]:
        notes: list[str] = []
        for name in ("upgrade", "downgrade"):
            source.check_understood(name)
            body, moved = _moved(source, name, source.bodies[name], keyed)
            if moved:
                source.set_body(name, body)
                notes += moved
        return notes or ["nothing SQLite cannot run in place outside batch mode"]

    return transform(path, change, dry_run=dry_run)
