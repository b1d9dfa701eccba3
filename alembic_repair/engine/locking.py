"""One migration run at a time per database, across processes, containers and replicas.

MySQL/MariaDB: a named server lock (``GET_LOCK``) held on its own connection, so every replica
that reaches the same server waits its turn. SQLite: an advisory file lock beside the database
file, which is shared exactly when the database is. PostgreSQL: an advisory lock. The lock also
covers writing revision files, so replicas sharing one project folder do not race either.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def _file_lock(path: Path, timeout: float, notify: Notify) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            notify(f"waiting for another alembic-repair run to finish (lock file {path})")
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockTimeout(
                            f"another alembic-repair run held {path} for more than "
                            f"{timeout:.0f} s; wait for it, or raise --lock-timeout"
                        ) from None
                    time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
        path = Path(database).expanduser().resolve()
        path = path.with_name(path.name + ".alembic-repair.lock")
    else:
        fallback_dir.mkdir(parents=True, exist_ok=True)
        path = fallback_dir / "migration.lock"
    with _file_lock(path, timeout, notify), engine.connect() as conn:
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()
