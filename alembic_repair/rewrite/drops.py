"""Drops that can be undone: a revision's ``upgrade()`` drops tables/columns, ``downgrade()``
brings them back.

Soft (the default):

* a table is renamed into the trash (``_ar_trash_<stamp>_<table>``, `trash.trash_name`, 64
  characters at most); ``downgrade()`` renames it back, rows, indexes and foreign keys included.
  O(1) whatever the table size. ``alembic-repair trash list`` shows it from its name (a trash
  table missing from ``_ar_trash_index`` is listed from its name), and ``trash purge`` removes
  it for good once the revision is trusted.
* a column is copied, with the primary key, into a trash table ``_ar_trash_<stamp>_<t>__<c>``,
  then dropped (``batch_alter_table``, which SQLite needs); ``downgrade()`` adds it back,
  copies the values back by primary key, restores NOT NULL and drops the trash table. A table
  without a primary key is refused: the values could not be put back on their rows.

Hard (``hard=True``) drops for real; ``downgrade()`` recreates the table from its reflected
definition (columns, types, server defaults, indexes, unique constraints, foreign keys), or
adds the column back (nullable, unless it has a server default), but *empty*: the rows come
back only from a backup. So a hard drop requires the manifest of a verified backup
(`alembic_repair.data.backups.backup`) that holds every table involved.

Tables are dropped children first (foreign keys); a table that a table not being dropped
references is refused, naming that table. Columns in the primary key, in a foreign key or an
index/unique constraint are refused (say which).

This module is the pure transform (plan the steps, put them into a parsed revision). The
`drop` command around it (the lock, the backup, a new file through ``alembic revision``, crash
points) is `alembic_repair.repair.drop`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import libcst as cst
from alembic.operations import ops
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import sort_tables

from ..data.backups import Manifest
from ..data.trash import trash_name
from ..engine.state.schema import TRASH_PREFIX, is_user_table
from ..errors import ConfigError, RefusedUnsafe
from .ops import CopyColumnOp, RestoreColumnOp
from .transform import (
    TABLE_ARGUMENT,
    RevisionSource,
    Rewrite,
    Statement,
    argument,
    batch_block,
    block_body,
    is_docstring,
    literal,
    markers,
    op_call,
    render_statements,
    transform,
    with_body,
)

__all__ = ["Drop", "DropStep", "apply_steps", "plan_drops", "rewrite_upgrade_drops"]


@dataclass(frozen=True)
class Drop:
    """A table (``post``) or a column (``post.views``) to drop."""

    table: str
    column: str | None = None

    @classmethod
    def parse(cls, spec: str | Drop) -> Drop:
        if isinstance(spec, Drop):
            return spec
        table, dot, column = spec.strip().partition(".")
        if not table or (dot and not column) or "." in column:
            raise ConfigError(f"drop {spec!r}: write TABLE or TABLE.COLUMN")
        return cls(table, column or None)

    def __str__(self) -> str:
        return self.table if self.column is None else f"{self.table}.{self.column}"


@dataclass(frozen=True)
class DropStep:
    """One drop: the operations of its upgrade and of its downgrade, and its marker text."""

    drop: Drop
    hard: bool
    upgrade: tuple[ops.MigrateOperation, ...]
    downgrade: tuple[ops.MigrateOperation, ...]
    trash: str | None = None

    @property
    def what(self) -> str:
        kind = "table" if self.drop.column is None else "column"
        return f"{'hard' if self.hard else 'soft'} drop of {kind} {self.drop}"


# -- planning ----------------------------------------------------------------------------------


def _table(schema: MetaData, name: str) -> Table:
    if not is_user_table(name):
        raise ConfigError(f"drop {name}: {name} is not an application table")
    if name not in schema.tables:
        known = ", ".join(sorted(schema.tables)) or "none"
        raise ConfigError(f"drop {name}: the database has no table {name!r} (tables: {known})")
    return schema.tables[name]


def _referencing(schema: MetaData, table: Table) -> list[tuple[Table, Any]]:
    return [(other, fk) for other in schema.tables.values() for fk in other.foreign_keys
            if fk.column.table is table]


def _implicit_fk_index(table: Table, index: Any) -> bool:
    """MySQL's own index for a foreign key: CREATE TABLE makes it again."""
    cols = [c.name for c in index.columns]
    return any(fk.name == index.name and [c.name for c in fk.columns] == cols
               for fk in table.foreign_key_constraints)


def _require_backup(backup: Manifest | None, tables: Sequence[str]) -> None:
    missing = [t for t in tables if backup is None or backup.table(t) is None]
    if missing:
        where = "no backup was given" if backup is None else f"backup {backup.path} lacks them"
        raise RefusedUnsafe(
            f"hard drop of {', '.join(missing)}: its downgrade recreates the tables empty, so the "
            f"rows must be in a verified backup first ({where}); run `alembic-repair backup`, "
            "or drop softly (without --hard)")


def _check_column(schema: MetaData, table: Table, name: str) -> Column[Any]:
    if name not in table.c:
        known = ", ".join(table.c.keys())
        raise ConfigError(f"drop {table.name}.{name}: table {table.name} has no column "
                          f"{name!r} (columns: {known})")
    column = table.c[name]
    where = f"drop {table.name}.{name}"
    if column.primary_key:
        raise RefusedUnsafe(f"{where}: it is part of the primary key; drop the table instead")
    for fk in column.foreign_keys:
        raise RefusedUnsafe(f"{where}: it holds a foreign key to {fk.target_fullname}; drop "
                            "that foreign key first (a revision of its own)")
    for other, fk in _referencing(schema, table):
        if fk.column is column:
            raise RefusedUnsafe(f"{where}: table {other.name} references it (foreign key "
                                f"{other.name}.{fk.parent.name}); drop that foreign key first")
    for index in table.indexes:
        if column.name in index.columns:
            raise RefusedUnsafe(f"{where}: index {index.name} covers it; drop the index first "
                                "(a revision of its own)")
    for constraint in table.constraints:
        if column.name in getattr(constraint, "columns", {}) and not isinstance(
                constraint, PrimaryKeyConstraint):
            raise RefusedUnsafe(f"{where}: constraint {constraint.name or '(unnamed)'} covers "
                                "it; drop that constraint first (a revision of its own)")
    return column


def _readded(column: Column[Any], nullable: bool) -> Column[Any]:
    copy = column._copy()
    copy.nullable = nullable
    return copy


def _table_step(table: Table, hard: bool, at: datetime, taken: set[str]) -> DropStep:
    drop = Drop(table.name)
    if not hard:
        name = trash_name(table.name, at, taken)
        taken.add(name)
        return DropStep(drop, False, (ops.RenameTableOp(table.name, name),),
                        (ops.RenameTableOp(name, table.name),), name)
    indexes = sorted((i for i in table.indexes if not _implicit_fk_index(table, i)),
                     key=lambda i: str(i.name))
    return DropStep(drop, True, (ops.DropTableOp.from_table(table),),
                    (ops.CreateTableOp.from_table(table),
                     *(ops.CreateIndexOp.from_index(i) for i in indexes)))


def _column_step(table: Table, column: Column[Any], hard: bool, at: datetime,
                 taken: set[str]) -> DropStep:
    drop = Drop(table.name, column.name)
    remove = ops.ModifyTableOps(table.name, [ops.DropColumnOp.from_column_and_tablename(
        None, table.name, column._copy())])
    if hard:
        nullable = column.nullable or column.server_default is not None
        readd = ops.AddColumnOp(table.name, _readded(column, bool(nullable)))
        return DropStep(drop, True, (remove,), (ops.ModifyTableOps(table.name, [readd]),))
    key = [c.name for c in table.primary_key.columns]
    if not key:
        raise RefusedUnsafe(f"drop {drop}: table {table.name} has no primary key, so a soft drop "
                            "could not put the values back on their rows; add a primary key, or "
                            "back up and use --hard")
    name = trash_name(f"{table.name}__{column.name}", at, taken)
    taken.add(name)
    trash = Table(name, MetaData(),
                  *(Column(k, table.c[k].type, autoincrement=False) for k in key),
                  Column(column.name, column.type, nullable=True),
                  PrimaryKeyConstraint(*key))
    readd = ops.AddColumnOp(table.name, _readded(column, True))
    back: list[ops.MigrateOperation] = [ops.ModifyTableOps(table.name, [readd]),
                                        RestoreColumnOp(name, table.name, key, column.name)]
    if not column.nullable:
        back.append(ops.ModifyTableOps(table.name, [ops.AlterColumnOp(
            table.name, column.name, modify_nullable=False, existing_type=column.type,
            existing_nullable=True, existing_server_default=column.server_default)]))
    back.append(ops.DropTableOp(name))
    return DropStep(drop, False, (ops.CreateTableOp.from_table(trash),
                                  CopyColumnOp(table.name, name, key, column.name), remove),
                    tuple(back), name)


def plan_drops(schema: MetaData, drops: Sequence[str | Drop], *, hard: bool = False,
               backup: Manifest | None = None, at: datetime | None = None) -> list[DropStep]:
    """The steps that drop `drops` from `schema` (the reflected schema *before* the revision
    runs), in the order they must run: columns, then tables children first. Refuses (changing
    nothing) what cannot be dropped safely; a hard drop needs `backup` (see module docs)."""
    wanted = [Drop.parse(d) for d in drops]
    if not wanted:
        raise ConfigError("drop: name at least one TABLE or TABLE.COLUMN")
    at = at or datetime.now(timezone.utc).replace(microsecond=0)
    tables = {d.table: _table(schema, d.table) for d in wanted if d.column is None}
    taken = set(schema.tables)
    for table in tables.values():
        for other, fk in _referencing(schema, table):
            if other.name not in tables:
                raise RefusedUnsafe(
                    f"drop {table.name}: table {other.name} references it (foreign key "
                    f"{other.name}.{fk.parent.name} -> {fk.target_fullname}) and is not being "
                    f"dropped; drop {other.name} too, or drop that foreign key first")
    steps: list[DropStep] = []
    for drop in dict.fromkeys(d for d in wanted if d.column is not None):
        if drop.table in tables:
            continue  # the whole table goes
        table = _table(schema, drop.table)
        assert drop.column is not None
        steps.append(_column_step(table, _check_column(schema, table, drop.column), hard, at,
                                  taken))
    for table in reversed(sort_tables(list(tables.values()))):  # children first
        steps.append(_table_step(table, hard, at, taken))
    if hard:
        _require_backup(backup, sorted({s.drop.table for s in steps}))
    return steps


# -- rewriting a revision file -----------------------------------------------------------------

_UPGRADE_GONE = {"drop_table", "drop_index", "drop_constraint", "drop_table_comment"}
_DOWNGRADE_GONE = {"create_table", "create_index", "create_unique_constraint",
                   "create_foreign_key", "create_check_constraint", "create_primary_key",
                   "create_table_comment", "add_column"}


def _column_name(call: cst.Call, position: int) -> str | None:
    """The name in ``add_column(..., sa.Column("name", ...))``."""
    value = argument(call, position, "column")
    if not isinstance(value, cst.Call):
        return None
    try:
        name = literal(argument(value, 0, "name"))
    except (ValueError, SyntaxError):
        return None
    return name if isinstance(name, str) else None


class _Remover:
    """Takes out of a body the statements the new drop steps replace, keeping their comments."""

    def __init__(self, source: RevisionSource, steps: Sequence[DropStep], upgrade: bool) -> None:
        self.source, self.upgrade = source, upgrade
        self.tables = {s.drop.table for s in steps if s.drop.column is None}
        self.columns = {(s.drop.table, s.drop.column) for s in steps if s.drop.column}
        self.comments: list[cst.EmptyLine] = []
        self.position: int | None = None

    def _gone(self, table: str, method: str, column: str | None) -> bool:
        if self.upgrade and method == "create_table" and table in self.tables:
            raise self.source.refuse(f"upgrade() creates table {table} itself")
        if table in self.tables:
            return method in (_UPGRADE_GONE | {"drop_column"} if self.upgrade
                              else _DOWNGRADE_GONE)
        wanted = "drop_column" if self.upgrade else "add_column"
        return method == wanted and (table, column) in self.columns

    def _top(self, statement: Statement) -> bool:
        call = op_call(statement)
        spot = TABLE_ARGUMENT.get(call.method) if call is not None else None
        if call is None or call.receiver != "op" or spot is None:
            return False
        try:
            table = call.arg(*spot)
            column = call.arg(1, "column_name") if call.method == "drop_column" else None
        except (ValueError, SyntaxError):
            return False
        if call.method == "add_column":
            column = _column_name(call.call, 1)
        return self._gone(table, call.method, column)

    def _inner(self, table: str, name: str, statement: Statement) -> bool:
        call = op_call(statement)
        if call is None or call.receiver != name:
            return False
        column = None
        try:
            if call.method == "drop_column":
                column = call.arg(0, "column_name")
        except (ValueError, SyntaxError):
            return False
        if call.method == "add_column":
            column = _column_name(call.call, 0)
        return self._gone(table, call.method, column)

    def run(self, body: list[Statement]) -> list[Statement]:
        kept: list[Statement] = []
        for statement in body:
            batch = batch_block(statement)
            if batch is not None:
                inner = block_body(batch.node)
                left = [s for s in inner if not self._inner(batch.table, batch.name, s)]
                if len(left) == len(inner):
                    kept.append(statement)
                    continue
                self._note(len(kept), [statement, *(s for s in inner if s not in left)])
                if left:
                    kept.append(with_body(batch.node, left))
            elif self._top(statement):
                self._note(len(kept), [statement])
            else:
                kept.append(statement)
        return kept

    def _note(self, position: int, removed: list[Statement]) -> None:
        if self.position is None:
            self.position = position
        for statement in removed:
            self.comments.extend(line for line in statement.leading_lines
                                 if line.comment is not None)


def _already_soft_dropped(body: Sequence[Statement], table: str) -> bool:
    for statement in body:
        call = op_call(statement)
        if call is not None and call.receiver == "op" and call.method == "rename_table":
            try:
                old, new = call.arg(0, "old_table_name"), call.arg(1, "new_table_name")
            except (ValueError, SyntaxError):
                continue
            if old == table and isinstance(new, str) and new.startswith(TRASH_PREFIX):
                return True
    return False


def _insert(body: list[Statement], at: int, block: list[Statement],
            comments: list[cst.EmptyLine]) -> list[Statement]:
    if block and comments:
        block[0] = block[0].with_changes(leading_lines=[*comments, *block[0].leading_lines])
    return body[:at] + block + body[at:]


def _after_docstring(body: Sequence[Statement]) -> int:
    return 1 if body and is_docstring(body[0]) else 0


def apply_steps(source: RevisionSource, steps: Sequence[DropStep],
                dialect: Dialect | None = None) -> list[str]:
    """Put `steps` into the parsed revision (see module docs); returns notes."""
    for name in ("upgrade", "downgrade"):
        source.check_understood(name)
    up, down = source.bodies["upgrade"], source.bodies["downgrade"]
    done = markers(up)
    todo = [s for s in steps if s.what not in done and not (
        s.drop.column is None and not s.hard and _already_soft_dropped(up, s.drop.table))]
    notes = [f"{s.drop}: already dropped by this revision, left as it is"
             for s in steps if s not in todo]
    if not todo:
        return notes
    up_remover, down_remover = _Remover(source, todo, True), _Remover(source, todo, False)
    up, down = up_remover.run(up), down_remover.run(down)
    up_block: list[Statement] = []
    down_block: list[Statement] = []
    for step in todo:
        statements, imports = render_statements(step.upgrade, dialect, comment=step.what)
        up_block += statements
        source.add_imports(imports)
    for step in reversed(todo):
        statements, imports = render_statements(step.downgrade, dialect,
                                                comment=f"undo {step.what}")
        down_block += statements
        source.add_imports(imports)
    at = len(up) if up_remover.position is None else up_remover.position
    after = len([s for s in up[at:] if not is_docstring(s)])
    up = _insert(up, at, up_block, up_remover.comments)
    if down_remover.position is None:
        # the undo of what upgrade() does after the drops comes first in downgrade()
        start = _after_docstring(down)
        down_at = min(start + after, len(down))
    else:
        down_at = down_remover.position
    down = _insert(down, down_at, down_block, down_remover.comments)
    source.set_body("upgrade", up)
    source.set_body("downgrade", down)
    for step in todo:
        where = f" into {step.trash}" if step.trash else ""
        notes.append(f"{step.drop}: {step.what.split(' of ')[0]}{where}")
    return notes


def rewrite_upgrade_drops(path: Path, drops: Sequence[str | Drop], *, schema: MetaData,
                          hard: bool = False, backup: Manifest | None = None,
                          dry_run: bool = False, at: datetime | None = None,
                          dialect: Dialect | None = None) -> Rewrite:
    """Rewrite the revision at `path` so its ``upgrade()`` drops `drops` safely and its
    ``downgrade()`` brings them back.

    `schema` is the reflected schema the revision starts from (`reflect_user_tables` on the
    database at the revision's parent). Hand-written drops of those tables/columns in
    ``upgrade()`` (``op.drop_table``, ``op.drop_column``, their indexes and constraints) are
    replaced in place, and what ``downgrade()`` recreated of them is replaced by the undo.
    Soft by default; ``hard=True`` drops for real and REQUIRES `backup`, the manifest of a
    verified backup (`alembic_repair.data.backups.backup`) holding the tables: its downgrade
    recreates them empty, the rows come back only by restoring that backup. Running it again
    changes nothing; `dry_run` returns the diff without writing; a file that cannot be
    understood is left alone (`RewriteRefused`)."""
    steps = plan_drops(schema, drops, hard=hard, backup=backup, at=at)
    return transform(path, lambda source: apply_steps(source, steps, dialect), dry_run=dry_run)

