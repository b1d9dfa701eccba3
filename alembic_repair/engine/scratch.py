"""Scratch schemas on a MySQL/MariaDB server, and removing the ones a killed run left behind.

Replay (``_ar_replay_<stamp>_<hex>``) and restore (``_ar_restore_<stamp>_<hex>``) work in a
scratch schema on the user's server. A run that is killed cannot drop it, so each one is
*claimed*: before ``CREATE DATABASE`` the run takes the server-wide named lock
``GET_LOCK('alembic_repair:<schema>', 0)`` on a session that lives as long as the schema
(`claim`), and releases it only after the drop. The server releases a named lock when its
session ends, however the process ended (kill -9 closes the socket). So `sweep`, run before a
run creates its own scratch schema, drops exactly the scratch schemas whose lock it can take
itself: their creator is gone. A live run's schema (this process's or a concurrent one's, on
any host) is never touched, and a name that does not have our exact form is left alone.

Names of the form earlier versions used (``_ar_replay_<12 hex>``, ``_ar_restore_<stamp>_<6
hex>``) were never locked; they are removed when no table in them was created in the last
`LEGACY_AGE` seconds (those runs take seconds).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..errors import AlembicRepairError

__all__ = ["claim", "new_name", "sweep"]

_STAMP = r"\d{8}T\d{6}"
_CURRENT = re.compile(rf"_ar_(?:replay|restore)_{_STAMP}_[0-9a-f]{{8}}")
_LEGACY = re.compile(rf"_ar_replay_[0-9a-f]{{12}}|_ar_restore_{_STAMP}_[0-9a-f]{{6}}")
#: A legacy (never locked) scratch schema with a table younger than this may be in use.
LEGACY_AGE = 600
_held: set[str] = set()  # the scratch schemas this process holds now


def new_name(kind: str) -> str:
    """A fresh scratch schema name: ``_ar_<kind>_<UTC stamp>_<8 hex>`` (kind: replay or
    restore; at most 36 characters)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"_ar_{kind}_{stamp}_{os.urandom(4).hex()}"


def _lock(name: str) -> str:
    return f"alembic_repair:{name}"


def _get_lock(conn: Connection, name: str) -> bool:
    return conn.exec_driver_sql("SELECT GET_LOCK(%s, 0)", (_lock(name),)).scalar() == 1


def _release(conn: Connection, name: str) -> None:
    with suppress(DBAPIError):  # the session is gone: so is the lock
        conn.exec_driver_sql("SELECT RELEASE_LOCK(%s)", (_lock(name),))


@contextmanager
def claim(conn: Connection, name: str) -> Iterator[None]:
    """Hold scratch schema `name`'s lock on `conn` for the block; create the schema inside
    the block and drop it before the block ends. `conn` must stay open as long as the schema
    exists (its session holds the lock). Commits `conn`."""
    if not _get_lock(conn, name):
        raise AlembicRepairError(f"the scratch schema name {name} is in use by another run; "
                                 "run the command again")
    conn.commit()
    _held.add(name)
    try:
        yield
    finally:
        _held.discard(name)
        _release(conn, name)


def _legacy_stale(conn: Connection, name: str) -> bool:
    age = conn.exec_driver_sql(
        "SELECT TIMESTAMPDIFF(SECOND, MAX(CREATE_TIME), NOW()) FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s", (name,)).scalar()
    if age is not None:
        return int(age) >= LEGACY_AGE
    stamp = re.search(_STAMP, name)
    if stamp is None:
        return True  # an empty replay schema: its run died before the first table
    made = datetime.strptime(stamp.group(0), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - made).total_seconds() >= LEGACY_AGE


def sweep(conn: Connection) -> list[str]:
    """Drop the scratch schemas on `conn`'s server that no live run holds (see the module
    docstring); returns their names. Housekeeping: a schema the user may not see or drop is
    skipped silently. Commits `conn`."""
    dropped: list[str] = []
    try:
        names = [str(n) for n in conn.exec_driver_sql(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
            "OR SCHEMA_NAME LIKE %s", (r"\_ar\_replay\_%", r"\_ar\_restore\_%")).scalars()]
    except DBAPIError:
        conn.rollback()
        return dropped
    quote = conn.dialect.identifier_preparer.quote
    for name in names:
        if name in _held:
            continue
        current = _CURRENT.fullmatch(name) is not None
        if not current and _LEGACY.fullmatch(name) is None:
            continue
        try:
            if not current and not _legacy_stale(conn, name):
                continue
            if not _get_lock(conn, name):
                continue  # a live run holds it
            try:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)}")
                dropped.append(name)
            finally:
                _release(conn, name)
        except DBAPIError:
            conn.rollback()
    conn.commit()
    return dropped
