"""Locate: which revision a database is at, from the revisions' effects, without a replay.

When the replay from empty stops (a history that needs the application's own set-up, a
revision that fails on an empty database), nothing after the stop has a snapshot, so "which
revision does this schema equal?" has no answer there. The history still says what each
revision does: its operations are read offline, as the safety lint reads pending revisions
(`pending.read_operations`: nothing runs, no database is touched), and turned into expectations
about the live schema after each revision: a table exists or is gone; a column exists, with
its type and nullability; an index, unique set or foreign key is present or dropped; a table
the history created has exactly the columns it gave it. What a revision's first operation on a
thing needs beforehand is expected before it too (``create_table("tag")`` at revision 3: no
``tag`` up to revision 2; ``add_column("post", "summary")``: no ``post.summary`` before).

A revision is a candidate when every expectation after it holds in the live schema. One
candidate is an exact location. Revisions whose effects cannot be told apart (data
migrations, empty releases, revisions whose operations cannot be read or run their own DDL)
give several candidates: a range, reported as such and never guessed to one point. No candidate
is contradictory evidence: no location. Only linear histories are located (one base, one head,
no merge). Nothing here writes anything; revision files are never changed on this evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from alembic.operations import ops
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Column, ForeignKeyConstraint, Table, UniqueConstraint
from sqlalchemy.engine import Dialect

from .graph import history_order
from .pending import Unreadable, data_only, read_operations
from .schema import SchemaSnapshot, is_user_table, type_text

#: The candidate before the first revision (the application's own tables, nothing applied).
BASE = "base"
MAX_SHOWN = 3


@dataclass(frozen=True)
class Location:
    """Where the revisions' effects place the live schema. `revisions`: every candidate,
    oldest first (`BASE` first when nothing applied fits too); empty: contradictory evidence,
    `problem` says what fails. `run`: the candidates are consecutive revisions. `stopped_at`:
    where the replay from empty stopped (why the effects were read instead). `unreadable`:
    revisions whose operations could not be read or ran their own DDL (they may have done
    anything: after one, only what later revisions need is expected, so they widen a range
    instead of being guessed past)."""

    revisions: tuple[str, ...]
    stopped_at: str | None = None
    unreadable: tuple[str, ...] = ()
    problem: str = ""
    run: bool = True

    @property
    def exact(self) -> str | None:
        """The one revision the database is at, or None (a range, or no location)."""
        if len(self.revisions) == 1 and self.revisions[0] != BASE:
            return self.revisions[0]
        return None

    def against(self, equal: Collection[str]) -> Location:
        """This location beside the revisions a replayed snapshot equals (`equal`): itself
        when they share a candidate (or there is no snapshot match), else no location, saying
        why. A snapshot match is real evidence; the effects read offline are weaker, and two
        answers that disagree mean one misread: neither is stamped on."""
        if not equal or not self.revisions or set(equal) & set(self.revisions):
            return self
        said = list(equal)
        span = said[0] if len(said) == 1 else f"{said[0]} .. {said[-1]}"
        where = "before the first revision" if self.revisions == (BASE,) else self.span
        return Location((), self.stopped_at, self.unreadable, (
            f"the replayed schema of revision {span} equals the tables, but the effects "
            f"place them at {where}: the two disagree, so neither is taken"))

    @property
    def span(self) -> str:
        """The candidates in words: ``X``, ``A .. B`` (a run) or ``A, C`` (apart)."""
        if len(self.revisions) > 1 and self.run:
            return f"{self.revisions[0]} .. {self.revisions[-1]}"
        return ", ".join(self.revisions)

    def describe(self) -> str:
        """For findings: where the effects place the schema, and that no replay said so."""
        source = "the revisions' effects (their operations read offline, not a replay"
        source += f": the replay from empty stops at {self.stopped_at})" if self.stopped_at \
            else ")"
        if not self.revisions:
            return f"no revision fits {source}: {self.problem}"
        if self.exact is not None:
            return f"{source} place the schema at revision {self.exact}"
        if self.revisions == (BASE,):
            return f"{source} place the schema before the first revision"
        if not self.run:
            return (f"{source} place the schema at one of {self.span} (revisions that leave "
                    "the same schema)")
        unread = [r for r in self.revisions if r in self.unreadable]
        return (f"{source} place the schema somewhere in {self.span}: revisions that change "
                f"nothing these effects can tell apart (data only, empty, or unreadable"
                + (f": {', '.join(unread)} could not be read offline)" if unread else ")"))


# -- expectations --------------------------------------------------------------------------------

Key = tuple[Any, ...]
Expect = dict[Key, Any]
#: An effect: (key, what holds before it when it is the first to touch key, what holds after:
#: a value, None for "unknown from now on", or a function of the expectations so far).
Effect = tuple[Key, Any, Any]


@dataclass(frozen=True)
class Col:
    """A column that exists, with its normalised type and nullability (None: not known)."""

    type: str | None = None
    nullable: bool | None = None


#: Operations that change nothing a SchemaSnapshot holds.
NEUTRAL = (ops.BulkInsertOp, ops.CreateCheckConstraintOp, ops.CreateTableCommentOp,
           ops.DropTableCommentOp, ops.CreatePrimaryKeyOp)


def _cols(names: Iterable[Any]) -> tuple[str, ...] | None:
    found = tuple(names)
    return found if found and all(isinstance(c, str) for c in found) else None


def _column(column: Column[Any], dialect: Dialect) -> Col:
    return Col(type_text(column.type, dialect), bool(column.nullable) and not column.primary_key)


class _Reader:
    """Turns operations into effects, keeping the names of what the history created (a drop
    names its index or constraint, not its columns), per table: MySQL's index names are."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.names: dict[tuple[str, str], Key] = {}  # (table, name) -> key

    def _named(self, name: Any, key: Key) -> Effect:
        if name:
            self.names[(key[1], str(name))] = key
        return key, False, True

    def _dropped(self, name: Any, table: Any) -> list[Effect]:
        """The drop of the index or constraint `name` the history created on `table` (any
        table when the operation names none and only one has it); [] when it is not known."""
        if table:
            key = self.names.get((str(table), str(name)))
        else:
            keys = [k for (_, n), k in self.names.items() if n == str(name)]
            key = keys[0] if len(keys) == 1 else None
        return [(key, True, False)] if key is not None else []

    def _renamed(self, old: str, new: str) -> None:
        for (table, name), key in list(self.names.items()):
            if table == old:
                del self.names[(table, name)]
                self.names[(new, name)] = (key[0], new, *key[2:])

    def create_table(self, op: ops.CreateTableOp) -> list[Effect]:
        # the reading already built the table (`create_table` returns it); a second
        # to_table() would attach its indexes twice
        table = next((c.table for c in op.columns if isinstance(c, Column)
                      and isinstance(getattr(c, "table", None), Table)), None)
        if table is None:
            table = op.to_table()
        name = table.name
        found: list[Effect] = [(("table", name), False, True)]
        columns = [c for c in table.columns]
        for column in columns:
            found.append((("column", name, column.name), False, _column(column, self.dialect)))
            if column.unique:
                found.append((("unique", name, (column.name,)), False, True))
        found.append((("cols", name), None, frozenset(c.name for c in columns)))
        for constraint in table.constraints:
            cols = _cols(getattr(constraint, "columns", {}).keys())
            if isinstance(constraint, UniqueConstraint) and cols:
                found.append(self._named(constraint.name, ("unique", name, cols)))
            elif isinstance(constraint, ForeignKeyConstraint) and cols:
                targets = [e.target_fullname.rsplit(".", 1) for e in constraint.elements]
                if all(len(t) == 2 for t in targets) and len({t[0] for t in targets}) == 1:
                    key = ("fk", name, cols, targets[0][0], tuple(t[1] for t in targets))
                    found.append(self._named(constraint.name, key))
        for index in table.indexes:
            found.extend(self._index(index.name, name, index.expressions, index.unique))
        return found

    def _index(self, name: Any, table: str, columns: Iterable[Any], unique: Any) -> list[Effect]:
        names = [getattr(c, "name", c) if isinstance(c, Column) else c for c in columns]
        cols = _cols(names)
        if cols is None:
            return []  # an expression index: left out of every comparison
        return [self._named(name, ("unique" if unique else "index", table, cols))]

    def effects(self, op: Any) -> list[Effect] | None:
        """The effects of one operation; [] for none, None for "cannot be read"."""
        if isinstance(op, ops.CreateTableOp):
            return self.create_table(op)
        if isinstance(op, ops.DropTableOp):
            return [(("table", op.table_name), True, False)]
        if isinstance(op, ops.RenameTableOp):
            self._renamed(op.table_name, op.new_table_name)
            return [(("rename", op.table_name, op.new_table_name), None, None)]
        if isinstance(op, ops.AddColumnOp):
            t, c = op.table_name, op.column.name
            return [(("table", t), True, True), (("column", t, c), False,
                                                 _column(op.column, self.dialect)),
                    (("cols", t), None, _edit_cols(t, add=c))]
        if isinstance(op, ops.DropColumnOp):
            t, c = op.table_name, op.column_name
            return [(("column", t, c), Col(), False), (("cols", t), None, _edit_cols(t, drop=c))]
        if isinstance(op, ops.AlterColumnOp):
            return self._alter(op)
        if isinstance(op, ops.CreateIndexOp):
            return self._index(op.index_name, op.table_name, op.columns, op.unique)
        if isinstance(op, ops.DropIndexOp):
            return self._dropped(op.index_name, op.table_name)
        if isinstance(op, ops.CreateUniqueConstraintOp):
            cols = _cols(op.columns)
            return [self._named(op.constraint_name, ("unique", op.table_name, cols))] \
                if cols else []
        if isinstance(op, ops.CreateForeignKeyOp):
            local, remote = _cols(op.local_cols), _cols(op.remote_cols)
            if not local or not remote:
                return []
            return [self._named(op.constraint_name, ("fk", op.source_table, local,
                                                     op.referent_table, remote))]
        if isinstance(op, ops.DropConstraintOp):
            return self._dropped(op.constraint_name, op.table_name)
        if isinstance(op, ops.ExecuteSQLOp):
            sql = op.sqltext
            return [] if data_only(sql if isinstance(sql, str) else str(sql)) else None
        if isinstance(op, NEUTRAL):
            return []
        return None  # an operation of the project's own: what it does is not known

    def _alter(self, op: ops.AlterColumnOp) -> list[Effect]:
        t, c = op.table_name, op.column_name
        new_type = type_text(op.modify_type, self.dialect) if op.modify_type is not None \
            else None
        nullable = op.modify_nullable

        def after(old: Key) -> Callable[[Expect], Any]:
            def value(expect: Expect) -> Col:
                was = expect.get(old)
                was = was if isinstance(was, Col) else Col()
                return Col(new_type or was.type,
                           nullable if nullable is not None else was.nullable)
            return value

        if not op.modify_name or op.modify_name == c:
            return [(("column", t, c), Col(), after(("column", t, c)))]
        new = op.modify_name
        return [(("column", t, new), False, after(("column", t, c))),
                (("column", t, c), Col(), False),
                (("cols", t), None, _edit_cols(t, drop=c, add=new))]


def _edit_cols(table: str, add: str | None = None, drop: str | None = None
               ) -> Callable[[Expect], Any]:
    def value(expect: Expect) -> Any:
        known = expect.get(("cols", table))
        if not isinstance(known, frozenset):
            return None
        return (known - {drop}) | ({add} if add else set())
    return value


def _rename(expect: Expect, old: str, new: str) -> None:
    moved = {k: v for k, v in expect.items() if len(k) > 1 and k[1] == old and k[0] != "table"}
    for key in moved:
        del expect[key]
    for key in [k for k in expect if len(k) > 1 and k[1] == new and k[0] != "table"]:
        del expect[key]
    for key, value in moved.items():
        expect[(key[0], new) + key[2:]] = value
    expect[("table", old)], expect[("table", new)] = False, True


# -- the live schema against the expectations -----------------------------------------------------


class _Live:
    def __init__(self, live: SchemaSnapshot, mysql: bool, hidden: frozenset[str]) -> None:
        self.hidden = hidden
        self.tables = live.tables
        self.columns = {(f[1], f[2]): Col(f[3], f[4]) for f in live.facts if f[0] == "column"}
        self.keys = {f[:3] for f in live.facts if f[0] in ("index", "unique")}
        self.fks = {f[:5] for f in live.facts if f[0] == "fk"}
        self.mysql = mysql

    def holds(self, key: Key, value: Any) -> bool:
        kind, table = key[0], key[1]
        if kind == "table":
            return (table in self.tables) is bool(value)
        if kind == "column":
            found = self.columns.get((table, key[2]))
            if value is False:
                return found is None
            return found is not None and value.type in (None, found.type) and \
                value.nullable in (None, found.nullable)
        if kind == "cols":
            return {c for t, c in self.columns if t == table} == set(value)
        if kind == "fk":
            return (key in self.fks) is bool(value)
        present = key in self.keys
        if not value and present and kind == "index" and self.mysql:
            # InnoDB keeps (or makes) an index for a foreign key on the same columns
            return any(fk[1] == table and fk[2] == key[2] for fk in self.fks)
        return present is bool(value)

    def failures(self, expect: Expect) -> list[str]:
        gone = {k[1] for k, v in expect.items() if k[0] == "table" and v is False}
        return [_words(key, value) for key, value in sorted(expect.items(), key=repr)
                if value is not None and not (key[0] != "table" and key[1] in gone)
                and is_user_table(key[1], self.hidden) and not self.holds(key, value)]


def _words(key: Key, value: Any) -> str:
    kind, table = key[0], key[1]
    if kind == "table":
        return f"table {table} {'missing' if value else 'present'}"
    if kind == "column":
        if value is False:
            return f"column {table}.{key[2]} present"
        return f"column {table}.{key[2]} {value.type or ''} missing or different".replace(
            "  ", " ")
    if kind == "cols":
        return f"table {table} has other columns than {', '.join(sorted(value))}"
    what = f"{'foreign key' if kind == 'fk' else kind} {table}({', '.join(key[2])})"
    return f"{what} {'missing' if value else 'present'}"


# -- locating ---------------------------------------------------------------------------------


def _apply(expect: Expect, effects: list[Effect]) -> None:
    for key, _, after in effects:
        if key[0] == "rename":
            _rename(expect, key[1], key[2])
            continue
        value = after(expect) if callable(after) else after
        if value is None:
            expect.pop(key, None)
        else:
            expect[key] = value
        if key[0] == "table" and value is False:  # a dropped table: its facts go with it
            for other in [k for k in expect if k[0] != "table" and k[1] == key[1]]:
                del expect[other]


def _initial(read: list[list[Effect] | None]) -> Expect:
    """What holds before the first of `read`: each thing as its first toucher needs it (a
    revision that cannot be read in between is taken not to have made or removed it: the
    toucher would have failed on every database that ran the history)."""
    seen: set[Key] = set()
    expect: Expect = {}
    for effects in read:
        for key, before, _ in effects or ():
            if key[0] == "rename":
                for name, was in ((key[1], True), (key[2], False)):
                    if ("table", name) not in seen:
                        seen.add(("table", name))
                        expect[("table", name)] = was
                continue
            if key not in seen:
                seen.add(key)
                if before is not None:
                    expect[key] = before
    return expect


def _effects(reader: _Reader, operations: list[Any]) -> list[Effect] | None:
    """A revision's effects, or None when one of its operations cannot be read."""
    effects: list[Effect] = []
    for operation in operations:
        try:
            found = reader.effects(operation)
        except (Exception, Unreadable):  # objects of the project's own making: not readable
            found = None
        if found is None:
            return None
        effects.extend(found)
    return effects


def _parents(script: Script) -> tuple[str, ...]:
    down = script.down_revision
    return tuple(down) if isinstance(down, (tuple, list)) else ((down,) if down else ())


def linear(order: list[Script]) -> bool:
    """One base, one head, no merge: each revision after the first revises the one before."""
    return bool(order) and not _parents(order[0]) and all(
        _parents(order[i]) == (order[i - 1].revision,) for i in range(1, len(order)))


def locate(order: list[Script], live: SchemaSnapshot, dialect: Dialect, *,
           stopped_at: str | None = None, hidden: Collection[str] = ()) -> Location | None:
    """Where `live` is in the history `order` (base first), by the revisions' effects; None
    when the history is not one line. Expectations about `hidden` tables (kept out of the
    comparisons) are not checked."""
    if not linear(order):
        return None
    reader = _Reader(dialect)
    read: list[list[Effect] | None] = []
    for script in order:
        try:
            operations = read_operations(script.module, script.path, dialect)
        except (Exception, Unreadable):  # the revision's own code, op.get_bind(): not offline
            read.append(None)
            continue
        read.append(_effects(reader, [item.operation for item in operations]))
    checker = _Live(live, dialect.name in ("mysql", "mariadb"), frozenset(hidden))
    expect = _initial(read)
    names = [BASE, *(s.revision for s in order)]
    failures = [checker.failures(expect)]
    for i, effects in enumerate(read):
        if effects is None:  # it may have changed anything: only what later revisions need
            expect = _initial(read[i + 1:])
        else:
            _apply(expect, effects)
        failures.append(checker.failures(expect))
    fits = [i for i, failed in enumerate(failures) if not failed]
    unreadable = tuple(s.revision for s, effects in zip(order, read, strict=True)
                       if effects is None)
    if not fits:
        shown = failures[-1][:MAX_SHOWN]
        more = len(failures[-1]) - len(shown)
        return Location((), stopped_at, unreadable, f"at head {names[-1]}: " + "; ".join(
            shown) + (f" and {more} more" if more > 0 else ""))
    return Location(tuple(names[i] for i in fits), stopped_at, unreadable,
                    run=fits == list(range(fits[0], fits[-1] + 1)))


def locate_live(directory: ScriptDirectory, replay: Any, live: SchemaSnapshot | None,
                dialect: Dialect, hidden: Collection[str] = ()) -> Location | None:
    """`locate` for doctor, only where it is needed: the replay from empty stopped, so the
    revisions after the stop have no snapshot. (`replay` is read with getattr: any object
    with a `failed_at`.)"""
    stopped = getattr(replay, "failed_at", None)
    if stopped is None or live is None or not live.tables:
        return None
    try:
        order = history_order(directory)
    except Exception:  # Alembic could not walk the history: the graph rules say why
        return None
    return locate(order, live, dialect, stopped_at=stopped, hidden=hidden)
