"""Soft drop: a table is renamed into the trash instead of dropped, and can be renamed back.

``soft_drop`` renames table ``t`` to ``_ar_trash_<YYYYmmddHHMMSS>_<t>`` (UTC stamp), cut to
MySQL's 64-character identifier limit and made unique. A rename is O(1) whatever the table
size: no row is copied, and none is read (the rows are counted when the trash is listed, not
when a table goes in). Every trashed table is recorded in ``_ar_trash_index`` (original name,
trash name, dropped_at), created on first use, so a cut name still restores to its original
name. Both names
start with ``_ar_trash_``, so doctor, replay and autogenerate never see them
(`state.schema.is_user_table`, the generated env.py's ``include_name``). A trash table missing
from the index (a run killed between the rename and the bookkeeping) is still listed, its
original name and time read back from its own name.

Foreign keys follow the renamed table on both backends: MariaDB/InnoDB rewrites the
constraints of the referencing tables to the new name, and SQLite (``legacy_alter_table`` off,
the default since 3.26 and set explicitly here) rewrites the referencing tables' definitions.
So while a referenced table is in the trash, the rows pointing at it keep pointing at it (and
doctor reports the referencing table's foreign key as drift); ``restore`` renames it back and
the foreign keys are exactly as before.

Every change holds the migration lock (`locking.migration_lock`) and passes `guards.require`:
a database that is not local needs ``allow_remote``, and nothing changes without ``yes``.
Identifiers are quoted by SQLAlchemy (Alembic's ``Operations``); none is pasted into SQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    inspect,
    select,
    table,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.privileges import denied, missing_grant
from ..engine.project import Project
from ..engine.state.config import version_table
from ..engine.state.schema import TRASH_PREFIX, VERSION_TABLE
from ..errors import ConfigError, NeedsRepair, RefusedUnsafe
from ..wording import counted
from . import guards

__all__ = ["INDEX_TABLE", "MAX_IDENTIFIER", "TrashEntry", "list_trash", "purge", "restore",
           "soft_drop", "trash_name"]

#: MySQL/MariaDB's identifier limit (SQLite has none; we keep to it everywhere).
MAX_IDENTIFIER = 64
INDEX_TABLE = f"{TRASH_PREFIX}index"
_STAMP = "%Y%m%d%H%M%S"
_NAME = re.compile(rf"^{TRASH_PREFIX}(\d{{14}})_(.+)$")

_metadata = MetaData()
_index = Table(
    INDEX_TABLE, _metadata,
    Column("trash_name", String(MAX_IDENTIFIER), primary_key=True),
    Column("original", String(MAX_IDENTIFIER), nullable=False),
    Column("dropped_at", DateTime(), nullable=False),
)


@dataclass(frozen=True)
class TrashEntry:
    """One table in the trash: its original name, its name now, when (UTC), and its rows
    (None from `soft_drop`, which does not read the table; counted by `list_trash`)."""

    table: str
    trash_name: str
    dropped_at: datetime
    rows: int | None
    already: bool = False  # the command found it done (by an earlier, maybe killed, run)

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "trash_name": self.trash_name,
                "dropped_at": self.dropped_at.isoformat(timespec="seconds"),
                "rows": self.rows}


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def trash_name(table_name: str, at: datetime, taken: set[str] | frozenset[str] = frozenset()
               ) -> str:
    """``_ar_trash_<stamp>_<table>``, at most 64 characters and not in `taken`."""
    stamp = at.astimezone(timezone.utc).strftime(_STAMP)
    base = f"{TRASH_PREFIX}{stamp}_{table_name}"
    name = base[:MAX_IDENTIFIER]
    counter = 1
    while name in taken:
        counter += 1
        suffix = f"~{counter}"
        name = base[:MAX_IDENTIFIER - len(suffix)] + suffix
    return name


# -- reading -----------------------------------------------------------------------------------


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _foreign_index(conn: Connection, tables: set[str]) -> list[str] | None:
    """The columns of a table named ``_ar_trash_index`` that is not our index (a user's own
    table); None when there is no such table or it is ours."""
    if INDEX_TABLE not in tables:
        return None
    names = [c["name"] for c in inspect(conn).get_columns(INDEX_TABLE)]
    return None if {"trash_name", "original", "dropped_at"} <= set(names) else names


def _has_index(conn: Connection, tables: set[str]) -> bool:
    return INDEX_TABLE in tables and _foreign_index(conn, tables) is None


def _entries(conn: Connection) -> tuple[TrashEntry, ...]:
    tables = _tables(conn)
    found: dict[str, TrashEntry] = {}
    if _has_index(conn, tables):
        for row in conn.execute(select(_index)):
            if row.trash_name in tables:
                found[row.trash_name] = TrashEntry(row.original, row.trash_name,
                                                   _utc(row.dropped_at),
                                                   _count(conn, row.trash_name))
    for name in tables - set(found):
        match = _NAME.match(name)
        if match is None:
            continue
        at = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=timezone.utc)
        found[name] = TrashEntry(match.group(2), name, at, _count(conn, name))
    return tuple(sorted(found.values(), key=lambda e: (e.dropped_at, e.trash_name)))


def _ensure_index(conn: Connection) -> None:
    _metadata.create_all(conn, tables=[_index], checkfirst=True)


def _ops(conn: Connection) -> Operations:
    return Operations(MigrationContext.configure(conn))


@contextmanager
def _locked(project: Project) -> Iterator[Connection]:
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            if conn.dialect.name == "sqlite":
                # References in other tables follow a renamed table (the default since 3.26).
                conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
            yield conn
    finally:
        engine.dispose()


def list_trash(project: Project) -> tuple[TrashEntry, ...]:
    """The tables in the trash, oldest first. Read-only."""
    engine = connect(project)
    try:
        with engine.connect() as conn:
            return _entries(conn)
    finally:
        engine.dispose()


# -- changing ----------------------------------------------------------------------------------


def soft_drop(project: Project, table_name: str, *, yes: bool,
              allow_remote: bool = False) -> TrashEntry:
    """Rename `table_name` into the trash (O(1): no row is copied); returns its entry."""
    action = f"trash drop {table_name}"
    guards.require_local(allow_remote, project, action)
    if table_name.startswith(TRASH_PREFIX) or table_name in (VERSION_TABLE,
                                                             version_table(project)[0]):
        raise ConfigError(f"{action}: {table_name} is not an application table; name one of "
                          "your tables")
    with _locked(project) as conn:
        tables = _tables(conn)
        done = _already_trashed(conn, table_name, tables, yes)
        if done is not None:
            return done
        if table_name not in tables:
            raise ConfigError(f"{action}: {project.masked_url} has no table {table_name!r}; "
                              "check the name (`alembic-repair doctor` lists the tables)")
        foreign = _foreign_index(conn, tables)
        if foreign is not None:
            raise RefusedUnsafe(
                f"{action}: table {INDEX_TABLE} exists but is not alembic-repair's trash index "
                f"(its columns: {', '.join(foreign)}); nothing changed; rename that table, "
                "then run the command again")
        at = _now()
        name = trash_name(table_name, at, tables)
        if not yes:  # only the plan says how many rows: the drop itself never reads them
            rows = _count(conn, table_name)
            conn.rollback()
            guards.require(yes, allow_remote, project,
                           f"{action}: would rename table {table_name} ({_rows(rows)}) to {name}")
        # The rename first: it is what needs ALTER and DROP, and a refusal must leave nothing
        # behind (not even the index table). A trash table missing from the index is listed
        # from its name, so a run killed between the two steps loses nothing.
        try:
            _ops(conn).rename_table(table_name, name)
        except DBAPIError as err:
            if not denied(err):
                raise
            raise _grant(conn, action, err) from None
        conn.commit()
        try:
            _ensure_index(conn)
            conn.commit()
            conn.execute(insert(_index).values(trash_name=name, original=table_name,
                                               dropped_at=at.replace(tzinfo=None)))
            conn.commit()
        except DBAPIError as err:
            if not denied(err):
                raise
            conn.rollback()
            _ops(conn).rename_table(name, table_name)  # undo: nothing changed after all
            conn.commit()
            raise _grant(conn, action, err) from None
        return TrashEntry(table_name, name, at, None)


def _already_trashed(conn: Connection, table_name: str, tables: set[str], yes: bool
                     ) -> TrashEntry | None:
    """The newest trash entry of `table_name` when that table is gone: the drop was done (a
    run killed between the rename and the index row is completed). Running the same command
    again must not fail."""
    if table_name in tables:
        return None
    entries = [e for e in _entries(conn) if e.table == table_name]
    if not entries:
        return None
    entry = entries[-1]
    if yes and _foreign_index(conn, tables) is None:
        _ensure_index(conn)
        if conn.execute(select(_index.c.trash_name).where(
                _index.c.trash_name == entry.trash_name)).first() is None:
            conn.execute(insert(_index).values(trash_name=entry.trash_name,
                                               original=table_name,
                                               dropped_at=entry.dropped_at.replace(tzinfo=None)))
    conn.commit()
    return replace(entry, already=True)


def _already_restored(conn: Connection, name: str, yes: bool) -> TrashEntry | None:
    """`name` (original or trash name) was renamed back already: its original table exists
    and no trash table is left for it. A stale index row (a run killed between the rename
    and the index update, on MySQL where DDL commits at once) is removed."""
    tables = _tables(conn)
    rows = [r for r in conn.execute(select(_index)) if name in (r.trash_name, r.original)
            and r.trash_name not in tables and r.original in tables
            ] if _has_index(conn, tables) else []
    if not rows:
        conn.rollback()
        if name in tables and not name.startswith(TRASH_PREFIX):  # restored, or never dropped
            return TrashEntry(name, "", _now(), None, already=True)
        return None
    for row in rows if yes else ():
        conn.execute(delete(_index).where(_index.c.trash_name == row.trash_name))
    conn.commit()
    row = rows[-1]
    return TrashEntry(row.original, row.trash_name, _utc(row.dropped_at), None, already=True)


def _grant(conn: Connection, action: str, err: DBAPIError) -> Exception:
    database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
    quoted = conn.dialect.identifier_preparer.quote(database)
    return missing_grant(conn, action, err, "ALTER, DROP, CREATE, INSERT, SELECT, DELETE",
                         f"{quoted}.*", "moving a table into the trash renames it (ALTER, DROP "
                         "on the table; CREATE, INSERT under its new name) and records it in "
                         f"{INDEX_TABLE}")


def _pick(entries: tuple[TrashEntry, ...], name: str) -> TrashEntry | None:
    """By trash name, else the newest entry whose original name is `name`."""
    for entry in entries:
        if entry.trash_name == name:
            return entry
    same = [e for e in entries if e.table == name]
    return same[-1] if same else None


def restore(project: Project, trash_name_or_table: str, *, yes: bool,
            allow_remote: bool = False) -> TrashEntry:
    """Rename a trashed table back to its original name (by trash name, or by original name:
    the newest). Refuses, changing nothing, when that name is taken."""
    action = f"trash restore {trash_name_or_table}"
    guards.require_local(allow_remote, project, action)
    with _locked(project) as conn:
        entries = _entries(conn)
        entry = _pick(entries, trash_name_or_table)
        if entry is None and (done := _already_restored(conn, trash_name_or_table, yes)):
            return done
        if entry is None:
            listing = ", ".join(e.trash_name for e in entries) or "the trash is empty"
            raise ConfigError(f"{action}: no such table in the trash ({listing}); see "
                              "`alembic-repair trash list`")
        if entry.table in _tables(conn):
            raise NeedsRepair(
                f"{action}: table {entry.table} exists already, so {entry.trash_name} cannot be "
                f"renamed back; nothing changed; rename or soft-drop the existing "
                f"{entry.table} first"
            )
        conn.rollback()
        guards.require(yes, allow_remote, project,
                       f"{action}: would rename {entry.trash_name} ({_rows(entry.rows)}) back to "
                       f"{entry.table}")
        _ops(conn).rename_table(entry.trash_name, entry.table)
        if _has_index(conn, _tables(conn)):
            conn.execute(delete(_index).where(_index.c.trash_name == entry.trash_name))
        conn.commit()
        return entry


def _rows(rows: int | None) -> str:
    return "rows not counted" if rows is None else counted(rows, "row")


def purge(project: Project, *, older_than: timedelta, yes: bool, allow_remote: bool = False,
          now: datetime | None = None) -> tuple[TrashEntry, ...]:
    """DROP the trashed tables dropped more than `older_than` ago; returns them. Nothing to
    purge returns () without asking for `yes`."""
    action = f"trash purge --older-than {_age(older_than)}"
    guards.require_local(allow_remote, project, action)
    cutoff = (now or _now()) - older_than
    with _locked(project) as conn:
        doomed = tuple(e for e in _entries(conn) if e.dropped_at <= cutoff)
        conn.rollback()
        if not doomed:
            return ()
        listing = ", ".join(f"{e.trash_name} ({_rows(e.rows)})" for e in doomed)
        guards.require(yes, allow_remote, project,
                       f"{action}: would drop {counted(len(doomed), 'table')} for good: {listing}")
        ops = _ops(conn)
        indexed = _has_index(conn, _tables(conn))
        for entry in doomed:
            ops.drop_table(entry.trash_name)
            if indexed:
                conn.execute(delete(_index).where(_index.c.trash_name == entry.trash_name))
            conn.commit()
        return doomed


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_AGE = re.compile(r"(\d+)\s*([wdhms])")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_age(text: str) -> timedelta:
    """``7d``, ``12h``, ``1d12h``, ``2w``, ``90m``, ``30s`` (or plain seconds)."""
    spec = text.strip().lower()
    if spec.isdigit():
        return timedelta(seconds=int(spec))
    parts = _AGE.findall(spec)
    if not parts or _AGE.sub("", spec).strip():
        raise ConfigError(f"--older-than {text!r}: not an age; write e.g. 7d, 12h, 1d12h, 2w")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))
