"""One migration run at a time per database, across processes, containers and replicas.

MySQL/MariaDB: a named server lock (``GET_LOCK``) held on its own connection, so every replica
that reaches the same server waits its turn. SQLite: an advisory file lock beside the database
file, which is shared exactly when the database is (and removed when the run ends: nothing is
left beside the user's database for version control to see). PostgreSQL: an advisory lock.
The lock also covers writing revision files, so replicas sharing one project folder do not
race either.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..errors import ConfigError, LockTimeout
from .scratch import sweep

Notify = Callable[[str], None]


def lock_name(engine: Engine) -> str:
    """Stable per database, within MySQL's 64-character lock-name limit."""
    database = engine.url.database or ""
    digest = hashlib.sha256(database.encode()).hexdigest()[:16]
    return f"alembic_repair.{digest}"


def _release(conn: Connection, statement: str, params: dict[str, object]) -> None:
    """Give the lock back; a dead session has released it already."""
    try:
        if conn.in_transaction():
            conn.rollback()  # whatever the caller left uncommitted is not ours to keep
        conn.execute(text(statement), params)
        conn.commit()
    except DBAPIError:
        pass


@contextmanager
def _mysql_lock(engine: Engine, timeout: float, notify: Notify) -> Iterator[Connection]:
    name = lock_name(engine)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar()
        if got != 1:
            notify(f"waiting for another alembic-repair run to finish (lock {name})")
            got = conn.execute(text("SELECT GET_LOCK(:n, :t)"),
                               {"n": name, "t": max(int(timeout), 1)}).scalar()
            if got != 1:
                raise LockTimeout(
                    f"another alembic-repair run held the migration lock {name!r} for more than "
                    f"{timeout:.0f} s; wait for it, or raise --lock-timeout"
                )
        # Strict mode for our session: a statement that would cut or coerce a value fails
        # instead of warning (the server default may be non-strict).
        conn.execute(text("SET SESSION sql_mode = CONCAT_WS(',', @@sql_mode, "
                          "'STRICT_ALL_TABLES')"))
        conn.commit()
        sweep(conn)  # scratch schemas a killed run left on this server (scratch.py)
        try:
            yield conn
        finally:
            _release(conn, "SELECT RELEASE_LOCK(:n)", {"n": name})


@contextmanager
def _postgres_lock(engine: Engine, timeout: float, notify: Notify) -> Iterator[Connection]:
    key = int(hashlib.sha256(lock_name(engine).encode()).hexdigest()[:15], 16)
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            notify("waiting for another alembic-repair run to finish (advisory lock)")
            conn.execute(text("SELECT set_config('lock_timeout', :t, false)"),
                         {"t": f"{int(timeout * 1000)}"})
            try:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            except Exception as err:  # lock_timeout fires as a driver error
                raise LockTimeout(
                    f"another alembic-repair run held the advisory lock for more than "
                    f"{timeout:.0f} s; wait for it, or raise --lock-timeout"
                ) from err
        conn.commit()
        try:
            yield conn
        finally:
            _release(conn, "SELECT pg_advisory_unlock(:k)", {"k": key})


def _flock(fd: int, path: Path, deadline: float, timeout: float, notify: Notify | None) -> None:
    """Take the exclusive lock on `fd`, waiting until `deadline` (monotonic)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if notify is not None:
            notify(f"waiting for another alembic-repair run to finish (lock file {path})")
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LockTimeout(
                    f"another alembic-repair run held {path} for more than "
                    f"{timeout:.0f} s; wait for it, or raise --lock-timeout") from None
            time.sleep(0.05)


def _still_there(fd: int, path: Path) -> bool:
    """`path` is still the file `fd` locked (the run before removed it otherwise)."""
    try:
        here, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


@contextmanager
def _file_lock(path: Path, timeout: float, notify: Notify, *,
               remove: bool = False) -> Iterator[None]:
    """flock on `path`. With `remove`, the file is deleted when the run ends (while still
    held: nothing is left beside the user's database), so a waiter that then gets the lock on
    the deleted file checks the path again and locks the new file instead."""
    deadline = time.monotonic() + timeout
    told: Notify | None = notify
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _flock(fd, path, deadline, timeout, told)
        except BaseException:
            os.close(fd)
            raise
        if not remove or _still_there(fd, path):
            break
        os.close(fd)
        told = None  # said once
    try:
        yield
    finally:
        if remove:
            with suppress(OSError):
                os.unlink(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def sqlite_lock_path(database: Path) -> Path:
    """The lock file of an SQLite database: beside it (``app.db.alembic-repair.lock``), so
    every project and container that opens the same file takes the same lock. It exists only
    while a run holds it (`_file_lock` removes it): nothing is left in the user's folder for
    version control to pick up, except after a run killed with ``kill -9`` (an empty file,
    safe to delete when no run is going)."""
    path = database.expanduser().resolve()
    return path.with_name(path.name + ".alembic-repair.lock")


@contextmanager
def migration_lock(
    engine: Engine, fallback_dir: Path, *, timeout: float = 600.0, notify: Notify = lambda _: None
) -> Iterator[Connection]:
    """Hold the database's migration lock for the block; yields the one connection to work on
    (on a server, the session that holds the lock: no second login per run)."""
    if fallback_dir.exists() and not fallback_dir.is_dir():  # before any change is made
        raise ConfigError(
            f"{fallback_dir}: a file where alembic-repair keeps its journal and backups (a "
            "folder); nothing changed; move the file away, then run the command again")
    backend = engine.url.get_backend_name()
    if backend in ("mysql", "mariadb"):
        with _mysql_lock(engine, timeout, notify) as conn:
            yield conn
        return
    if backend == "postgresql":
        with _postgres_lock(engine, timeout, notify) as conn:
            yield conn
        return
    database = engine.url.database
    if backend == "sqlite" and database and database != ":memory:":
        path, remove = sqlite_lock_path(Path(database)), True
    else:
        fallback_dir.mkdir(parents=True, exist_ok=True)
        path, remove = fallback_dir / "migration.lock", False
    with _file_lock(path, timeout, notify, remove=remove), engine.connect() as conn:
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()
