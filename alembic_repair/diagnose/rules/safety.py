"""AR5xx: the revisions the database has not applied yet, checked before they run.

Each rule reads `State.pending` (the pending revisions' operations, recorded offline, and the
answers of a few read-only queries on the rows); a question the database did not answer gives no
finding. Data loss and corruption are warnings; style (names, splitting) is info.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from alembic.operations import ops
from sqlalchemy import Column, String, Text
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.types import Enum

from ...engine.sqlite_alter import CONSTRAINTS, keyed_columns, sqlite_cannot
from ...engine.state.pending import (
    ROW_CAP,
    Pending,
    PendingOp,
    PendingRevision,
    is_text,
    new_kind,
    string_length,
    unique_columns,
)
from ...engine.state.read import State
from ...engine.state.schema import TRASH_PREFIX, type_text
from ..findings import AR501, AR502, AR503, AR504, AR505, AR506, AR507, AR508, AR509, AR510, Finding
from ..subjects import PendingChange, RevisionFile, SourceFile, split_location
from . import rule

Item = tuple[PendingRevision, PendingOp]


def _about(revision: PendingRevision, item: PendingOp, *, new_column: bool = False
           ) -> tuple[RevisionFile, PendingChange]:
    """The subject (the operation's line in the revision) and facts of a finding on `item`."""
    return (RevisionFile(revision.path, revision.revision, item.line),
            PendingChange(type(item.operation).__name__, new_column))


def _items(state: State) -> Iterator[Item]:
    pending = state.pending
    if pending is None:
        return
    for revision in pending.revisions:
        for item in revision.ops:
            yield revision, item


def _rows(pending: Pending, table: str) -> int | None:
    value = pending.data.get(("rows", table))
    return value if isinstance(value, int) else None


def _rows_text(count: int) -> str:
    if count >= ROW_CAP:
        return f"at least {ROW_CAP} rows"
    return "1 row" if count == 1 else f"{count} rows"


def _dialect(pending: Pending) -> Dialect:
    return sqlite_dialect.dialect() if pending.dialect == "sqlite" else mysql_dialect.dialect()


# -- AR501 / AR508: drops ----------------------------------------------------------------------


def _backed_up(revision: PendingRevision, index: int, table: str, column: str | None) -> bool:
    """Whether the revision saves the rows before the drop at `index`: the tool's own hard drop
    (taken after a verified backup), a copy into a trash or backup table, or SQL that reads the
    table into another one."""
    what = f"hard drop of table {table}" if column is None else \
        f"hard drop of column {table}.{column}"
    if what in revision.markers:
        return True
    reads = re.compile(rf"\bFROM\s+[`\"\[]?{re.escape(table)}\b", re.IGNORECASE)
    for item in revision.ops[:index]:
        op = item.operation
        if isinstance(op, ops.CreateTableOp) and (
                op.table_name.startswith(TRASH_PREFIX) or "backup" in op.table_name.lower()):
            return True
        if isinstance(op, ops.ExecuteSQLOp):
            sql = str(op.sqltext)
            if reads.search(sql) and re.search(r"\b(INSERT|CREATE)\b", sql, re.IGNORECASE):
                return True
    return False


def _renames(state: State) -> list[tuple[PendingRevision, PendingOp, PendingOp, str]]:
    """(revision, drop, add, type) for a dropped live column and a column added to the same
    table with the same type, one of each per table and type (anything else is ambiguous)."""
    pending = state.pending
    if pending is None or pending.live is None:
        return []
    found = []
    dialect = _dialect(pending)
    for revision in pending.revisions:
        drops: dict[tuple[str, str], list[PendingOp]] = {}
        adds: dict[tuple[str, str], list[PendingOp]] = {}
        for item in revision.ops:
            op = item.operation
            if isinstance(op, ops.DropColumnOp):
                fact = pending.columns(op.table_name).get(op.column_name)
                if fact is not None:
                    drops.setdefault((op.table_name, str(fact[3])), []).append(item)
            elif isinstance(op, ops.AddColumnOp) and \
                    op.column.name not in pending.columns(op.table_name):
                adds.setdefault((op.table_name, type_text(op.column.type, dialect)),
                                []).append(item)
        for key, dropped in drops.items():
            added = adds.get(key, [])
            if len(dropped) == 1 and len(added) == 1:
                found.append((revision, dropped[0], added[0], key[1]))
    return found


def _table_renames(state: State) -> list[tuple[PendingRevision, PendingOp, PendingOp]]:
    pending = state.pending
    if pending is None or pending.live is None:
        return []
    dialect = _dialect(pending)
    found = []
    for revision in pending.revisions:
        created = [(item, {(c.name, type_text(c.type, dialect))
                           for c in _columns(item.operation)})
                   for item in revision.ops if isinstance(item.operation, ops.CreateTableOp)
                   and not pending.has_table(item.operation.table_name)]
        for item in revision.ops:
            op = item.operation
            if not isinstance(op, ops.DropTableOp) or not pending.has_table(op.table_name):
                continue
            columns = {(name, str(fact[3])) for name, fact in
                       pending.columns(op.table_name).items()}
            same = [new for new, cols in created if cols == columns]
            if columns and len(same) == 1:
                found.append((revision, item, same[0]))
    return found


@rule("AR508")
def rename_like(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None:
        return
    for revision, dropped, added, type_ in _renames(state):
        drop, add = dropped.operation, added.operation
        if not pending.data.get(("values", drop.table_name, drop.column_name)):
            continue  # nothing to lose
        yield AR508.finding(
            f"revision {revision.revision} drops {drop.table_name}.{drop.column_name} and adds "
            f"{drop.table_name}.{add.column.name}, both {type_}: the values of "
            f"{drop.column_name} would be lost, not renamed",
            *_about(revision, dropped),
            fix=f"op.alter_column({drop.table_name!r}, {drop.column_name!r}, "
                f"new_column_name={add.column.name!r}, existing_type=...) instead of the "
                "drop and the add")
    for revision, dropped, created in _table_renames(state):
        old, new = dropped.operation.table_name, created.operation.table_name
        rows = _rows(pending, old)
        if not rows:
            continue
        yield AR508.finding(
            f"revision {revision.revision} drops table {old} ({_rows_text(rows)}) "
            f"and creates table {new} with the same columns: the rows would be lost, not "
            "renamed", *_about(revision, dropped),
            fix=f"op.rename_table({old!r}, {new!r}) instead of the drop and the create")


@rule("AR501")
def drop_without_backup(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None:
        return
    renamed = {(r.revision, id(d.operation)) for r, d, _, _ in _renames(state)} | {
        (r.revision, id(d.operation)) for r, d, _ in _table_renames(state)}
    for revision in pending.revisions:
        for index, item in enumerate(revision.ops):
            op = item.operation
            if (revision.revision, id(op)) in renamed:
                continue  # AR508 says it better
            if isinstance(op, ops.DropTableOp):
                rows = _rows(pending, op.table_name)
                if not rows or _backed_up(revision, index, op.table_name, None):
                    continue
                yield AR501.finding(
                    f"revision {revision.revision} drops table {op.table_name}, which has "
                    f"{_rows_text(rows)}; its downgrade cannot bring them back",
                    *_about(revision, item),
                    fix=f"`alembic-repair drop {op.table_name} --into {revision.revision}` "
                        "(a soft drop: renamed into the trash, the downgrade renames it back), "
                        "or remove the drop if the model was lost by accident")
            elif isinstance(op, ops.DropColumnOp):
                if not pending.data.get(("values", op.table_name, op.column_name)) or \
                        _backed_up(revision, index, op.table_name, op.column_name):
                    continue
                yield AR501.finding(
                    f"revision {revision.revision} drops column {op.table_name}."
                    f"{op.column_name}, which holds values; its downgrade cannot bring them "
                    "back", *_about(revision, item),
                    fix=f"`alembic-repair drop {op.table_name}.{op.column_name} --into "
                        f"{revision.revision}` (the values are kept in a trash table and put "
                        "back by the downgrade), or remove the drop")


# -- AR502 / AR503: new constraints on existing rows ----------------------------------------------


def _constant_fill(column: Any) -> str | None:
    """What every existing row gets when `column` is added, if the same for all (else None)."""
    if column.server_default is not None:
        arg = getattr(column.server_default, "arg", None)
        value = getattr(arg, "text", arg)
        if isinstance(value, str) and "(" in value:  # a function: may differ per row
            return None
        return f"the server default {value!r}"
    if not column.nullable:
        return "the same implicit value ('' or 0 on MariaDB)"
    return None  # NULLs: a unique constraint allows many


@rule("AR502")
def not_null_on_rows(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None:
        return
    for revision, item in _items(state):
        op = item.operation
        if isinstance(op, ops.AddColumnOp):
            column = op.column
            rows = _rows(pending, op.table_name)
            if column.nullable or column.server_default is not None or column.primary_key \
                    or column.computed is not None or column.identity is not None or not rows \
                    or column.name in pending.columns(op.table_name):
                continue
            yield AR502.finding(
                f"revision {revision.revision} adds {op.table_name}.{column.name} NOT NULL "
                f"without a server default; {op.table_name} has {_rows_text(rows)}: MariaDB "
                "fills them with ''/0 silently, SQLite and strict MySQL refuse",
                *_about(revision, item, new_column=True))
        elif isinstance(op, ops.AlterColumnOp) and op.modify_nullable is False and \
                pending.data.get(("nulls", op.table_name, op.column_name)):
            yield AR502.finding(
                f"revision {revision.revision} sets {op.table_name}.{op.column_name} NOT NULL; "
                f"it holds NULLs, which MariaDB turns into ''/0 and strict servers refuse",
                *_about(revision, item),
                fix="Fill the NULLs with an UPDATE first (in the same revision, before the "
                    "alter_column), or give the column a server_default.")


@rule("AR503")
def unique_on_rows(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None:
        return
    for revision in pending.revisions:
        added: dict[tuple[str, str], Any] = {}
        for item in revision.ops:
            op = item.operation
            if isinstance(op, ops.AddColumnOp):
                added[(op.table_name, op.column.name)] = op.column
                if not op.column.unique:
                    continue
                columns: tuple[str, ...] | None = (op.column.name,)
            else:
                columns = unique_columns(op)
            table = getattr(op, "table_name", None)
            if columns is None or not isinstance(table, str):
                continue
            duplicate = pending.data.get(("dups", table, columns))
            if duplicate is not None:
                values, count = duplicate
                yield AR503.finding(
                    f"revision {revision.revision} makes {table}({', '.join(columns)}) unique; "
                    f"{count} rows already hold {', '.join(map(repr, values))}",
                    *_about(revision, item))
                continue
            rows = _rows(pending, table)
            new = [added[(table, c)] for c in columns if (table, c) in added]
            if not rows or rows < 2 or len(new) != len(columns):
                continue
            fills = [_constant_fill(c) for c in new]
            if all(fill is not None for fill in fills):
                yield AR503.finding(
                    f"revision {revision.revision} adds unique {table}({', '.join(columns)}); "
                    f"its {_rows_text(rows)} all get {fills[0]}, so the unique constraint "
                    "fails on the second row", *_about(revision, item, new_column=True))


# -- AR504: defaults computed once ---------------------------------------------------------------


@rule("AR504")
def default_evaluated_once(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None:
        return
    for once in pending.once_defaults:
        yield AR504.finding(
            f"{once.keyword}={once.expression} is computed once, when the module is imported: "
            "every row gets the same value", SourceFile(*split_location(once.location)))


# -- AR505: type changes -----------------------------------------------------------------------


_ARTICLE = {"integer": "an integer", "number": "a number", "date": "a date"}


@rule("AR505")
def type_change_on_rows(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None:
        return
    for revision, item in _items(state):
        op = item.operation
        if not isinstance(op, ops.AlterColumnOp) or op.modify_type is None:
            continue
        where = f"{op.table_name}.{op.column_name}"
        length = string_length(op.modify_type)
        longest = pending.data.get(("maxlen", op.table_name, op.column_name))
        if length is not None and isinstance(longest, int) and longest > length:
            yield AR505.finding(
                f"revision {revision.revision} changes {where} to VARCHAR({length}); its "
                f"longest value has {longest} characters", *_about(revision, item))
            continue
        kind = new_kind(op.modify_type)
        fact = pending.columns(op.table_name).get(op.column_name)
        if kind is None or fact is None or not is_text(str(fact[3])):
            continue
        sample = pending.data.get(("misfit", op.table_name, op.column_name, kind))
        if sample is not None:
            yield AR505.finding(
                f"revision {revision.revision} changes {where} from {fact[3]} to "
                f"{type(op.modify_type).__name__}; some values are not {_ARTICLE[kind]}, e.g. "
                f"{sample!r}", *_about(revision, item))


# -- AR506: several DDL statements in one MySQL/MariaDB revision ---------------------------------

_DDL = (ops.AddColumnOp, ops.DropColumnOp, ops.AlterColumnOp, ops.CreateIndexOp,
        ops.DropIndexOp, ops.AddConstraintOp, ops.DropConstraintOp, ops.DropTableOp,
        ops.RenameTableOp, ops.CreateTableCommentOp, ops.DropTableCommentOp)


@rule("AR506")
def several_ddl(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None or not pending.mysql:
        return
    for revision in pending.revisions:
        on_live = [item for item in revision.ops if isinstance(item.operation, _DDL)
                   and pending.has_table(getattr(item.operation, "table_name", ""))]
        if len(on_live) > 1:
            tables = sorted({item.operation.table_name for item in on_live})
            yield AR506.finding(
                f"revision {revision.revision} runs {len(on_live)} DDL statements on existing "
                f"tables ({', '.join(tables)}); MySQL/MariaDB commit each one, so a failure "
                "half-way leaves it half-applied", *_about(revision, on_live[0]))


# -- AR507: SQLite ALTER outside batch mode -----------------------------------------------------


#: Alembic's operation classes -> the op.* method `sqlite_cannot` judges.
_METHODS = {ops.AlterColumnOp: "alter_column", ops.DropConstraintOp: "drop_constraint",
            ops.AddColumnOp: "add_column", ops.DropColumnOp: "drop_column"}


def _sqlite_cannot(op: Any, keyed: frozenset[tuple[str, str]]) -> str | None:
    """Why SQLite cannot run `op` in place (None: it can): `engine.sqlite_alter.sqlite_cannot`,
    the predicate fix's batch rewrite moves calls by, on the recorded operation."""
    if isinstance(op, ops.AddConstraintOp):
        kind = getattr(op, "constraint_type", None)
        named = next((m for m, k in CONSTRAINTS.items() if k == kind), "create_constraint")
        return sqlite_cannot(named)
    method = _METHODS.get(type(op))
    if method is None:
        return None
    changes = [name for name, changed in (
        ("type", op.modify_type is not None), ("nullable", op.modify_nullable is not None),
        ("server_default", op.modify_server_default is not False),
        ("comment", op.modify_comment is not False)) if changed] \
        if method == "alter_column" else []
    return sqlite_cannot(
        method, changes=changes,
        unique=method == "add_column" and bool(op.column.unique),
        keyed=method == "drop_column" and (op.table_name, op.column_name) in keyed)


@rule("AR507")
def sqlite_outside_batch(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None or pending.dialect != "sqlite":
        return
    keyed = frozenset() if pending.live is None else keyed_columns(pending.live.facts)
    for revision, item in _items(state):
        if item.batch:
            continue
        why = _sqlite_cannot(item.operation, keyed)
        if why is None:
            continue
        table = getattr(item.operation, "table_name", "?")
        yield AR507.finding(
            f"revision {revision.revision}: {why} on {table} outside batch mode; SQLite cannot "
            "do it in place", *_about(revision, item),
            fix="Run `alembic-repair fix --yes`: it moves the call into "
                f"`with op.batch_alter_table({table!r}) as batch_op:` and finishes the upgrade.")


# -- AR509: unnamed constraints ----------------------------------------------------------------

_CONVENTION = {"unique": "uq", "foreignkey": "fk", "check": "ck", "primary": "pk"}
_KINDS = {ops.CreateUniqueConstraintOp: "unique", ops.CreateForeignKeyOp: "foreignkey",
          ops.CreateCheckConstraintOp: "check"}


@rule("AR509")
def unnamed_constraints(state: State) -> Iterator[Finding]:
    if state.pending is None:
        return
    convention = dict(state.metadata.naming_convention) if state.metadata is not None else {}
    for revision, item in _items(state):
        op = item.operation
        kind = next((k for cls, k in _KINDS.items() if isinstance(op, cls)), None)
        if kind is not None and op.constraint_name is None and \
                _CONVENTION[kind] not in convention:
            yield AR509.finding(
                f"revision {revision.revision} creates a {kind} constraint on "
                f"{op.table_name} with no name", *_about(revision, item))
        elif isinstance(op, ops.DropConstraintOp) and op.constraint_name is None:
            yield AR509.finding(
                f"revision {revision.revision} drops a constraint of {op.table_name} named "
                "None: the upgrade fails", *_about(revision, item), severity="warning",
                fix="Name the constraint (doctor's database holds its real name).")


# -- AR510: VARCHAR without length on MySQL/MariaDB ------------------------------------------


def _columns(op: Any) -> list[Any]:
    if isinstance(op, ops.CreateTableOp):
        return [c for c in op.columns if isinstance(c, Column)]
    if isinstance(op, ops.AddColumnOp):
        return [op.column]
    return []


def _unbounded(type_: Any) -> bool:
    return isinstance(type_, String) and not isinstance(type_, (Text, Enum)) and \
        type_.length is None


@rule("AR510")
def varchar_without_length(state: State) -> Iterator[Finding]:
    pending = state.pending
    if pending is None or not pending.mysql:
        return
    for revision, item in _items(state):
        op = item.operation
        names = [f"{op.table_name}.{c.name}" for c in _columns(op) if _unbounded(c.type)]
        if isinstance(op, ops.AlterColumnOp) and _unbounded(op.modify_type):
            names.append(f"{op.table_name}.{op.column_name}")
        if names:
            yield AR510.finding(
                f"revision {revision.revision}: {', '.join(names)} is sa.String() without a "
                f"length; {pending.dialect} has no VARCHAR without one",
                *_about(revision, item))
