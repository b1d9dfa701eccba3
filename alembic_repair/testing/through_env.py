"""Alembic's upgrade and downgrade on a scratch database, through the project's own env.py.

As ``alembic upgrade`` runs it: env.py's options, ``context.get_bind()`` and its set-up code
run, with the scratch URL in ``sqlalchemy.url`` and ``DATABASE_URL``. Where the OS allows and
this process has one thread, each migration runs in a forked copy of the process, where the
project's own modules are imported afresh under the scratch URL (they may read the URL at
import, as `engine.replay_child` explains); else here, and the project modules the run
imported are dropped afterwards. Either way a guard refuses to run any revision unless env.py's
connection is the scratch database (the same SQLite file; the same server and schema).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import Pool

from .. import errors
from ..engine import migrations
from ..engine.database import engine_for
from ..engine.project import Project
from ..engine.replay_child import forget_project_modules
from ..engine.url import DatabaseUrl, parse_url

__all__ = ["migrate", "scratch_engine"]

FORK = hasattr(os, "fork")


def _identity(conn: Connection) -> tuple[Any, ...]:
    """What tells one database from another: SQLite's file, the server and schema on MySQL."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("PRAGMA database_list")).fetchall()
        return tuple(os.path.realpath(str(r[2])) for r in rows if r[1] == "main")
    return tuple(conn.execute(text("SELECT @@hostname, @@port, DATABASE()")).one())


@contextmanager
def _guarded(expected: tuple[Any, ...]) -> Iterator[None]:
    """Alembic runs no revision unless env.py's connection is the scratch database."""
    from alembic.runtime.migration import MigrationContext

    original = MigrationContext.run_migrations

    def checked(self: Any, **kw: Any) -> Any:
        if self.connection is None or _identity(self.connection) != expected:
            raise errors.RefusedUnsafe(
                "env.py connects to another database than the scratch database it was given "
                "in sqlalchemy.url and DATABASE_URL; nothing was run")
        return original(self, **kw)

    MigrationContext.run_migrations = checked  # type: ignore[method-assign]
    try:
        yield
    finally:
        MigrationContext.run_migrations = original  # type: ignore[method-assign]


@contextmanager
def _pointed_at(project: Project, url: str) -> Iterator[None]:
    """The process as ``alembic`` sees it in the project folder, with the scratch URL."""
    saved_env, saved_cwd, saved_path = os.environ.get("DATABASE_URL"), os.getcwd(), sys.path[:]
    os.environ["DATABASE_URL"] = url
    os.chdir(project.root)
    sys.path.insert(0, str(project.root))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        os.chdir(saved_cwd)
        if saved_env is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved_env


def _run(project: Project, url: str, expected: tuple[Any, ...], down: bool, target: str) -> None:
    from alembic import command

    what = f"{'downgrade' if down else 'upgrade'} to {target}"
    fn = command.downgrade if down else command.upgrade
    with _pointed_at(project, url), _guarded(expected):
        try:
            migrations.run_alembic(project, what, fn, migrations.alembic_config(project),
                                   target)
        except errors.MigrationFailed as err:  # our guard's refusal is not a migration's
            if isinstance(err.__cause__, errors.RefusedUnsafe):
                raise err.__cause__ from None
            raise


def _in_process(project: Project, url: str, expected: tuple[Any, ...], down: bool,
                target: str) -> None:
    """`_run` here (no fork: other threads, or no os.fork). The project's modules this run
    imports are dropped again afterwards (the next project may have an ``app`` of its own);
    the ones the caller had imported before stay."""
    had = set(sys.modules)
    try:
        _run(project, url, expected, down, target)
    finally:
        root = os.path.realpath(project.root) + os.sep
        for name in set(sys.modules) - had:
            path = getattr(sys.modules.get(name), "__file__", None)
            if isinstance(path, str) and os.path.realpath(path).startswith(root):
                sys.modules.pop(name, None)


def _forked(project: Project, url: str, expected: tuple[Any, ...], down: bool,
            target: str) -> None:
    """`_run` in a forked child: the project's modules are imported afresh under the scratch
    URL and this process keeps its own; a failure comes back as (class name, message)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        outcome = b""
        try:
            os.close(read_end)
            forget_project_modules(str(project.root))
            if expected and project.dialect == "sqlite":  # this copy of the process only
                event.listen(Pool, "connect", partial(_no_sync_on, expected[0]))
            _run(project, url, expected, down, target)
        except BaseException as err:  # noqa: BLE001  (everything goes back to the parent)
            kind = type(err).__name__ if isinstance(err, errors.AlembicRepairError) else ""
            line = (str(err).splitlines() or [type(err).__name__])[0]
            outcome = json.dumps([kind, line]).encode()
        finally:
            with suppress(BaseException):
                os.write(write_end, outcome)
            os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    if chunks:
        kind, line = json.loads(b"".join(chunks))
        cls = getattr(errors, kind, None) if kind else None
        if not (isinstance(cls, type) and issubclass(cls, errors.AlembicRepairError)):
            cls = errors.MigrationFailed
        raise cls(line)


def _warm() -> None:
    """Import here, once, what every forked child would import again (0.3 s each time)."""
    import importlib

    for name in ("alembic.command", "alembic.runtime.environment", "alembic.operations",
                 "alembic.autogenerate", "sqlalchemy.orm", "sqlalchemy.ext.declarative"):
        with suppress(ImportError):
            importlib.import_module(name)


def scratch_engine(url: str) -> Engine:
    """Our engine on the scratch database: no fsync on SQLite (it is thrown away)."""
    engine = engine_for(parse_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _no_sync)
    return engine


def _no_sync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("PRAGMA journal_mode = MEMORY")
    finally:
        cursor.close()


def _no_sync_on(path: str, dbapi_connection: Any, record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        main = [r[2] for r in dbapi_connection.execute("PRAGMA database_list") if r[1] == "main"]
        if main and main[0] and os.path.realpath(main[0]) == path:
            _no_sync(dbapi_connection, record)


def migrate(project: Project, url: str, target: str, *, down: bool = False) -> None:
    """``alembic upgrade|downgrade target`` on the scratch database at `url`, through env.py."""
    scratch = replace(project, url=DatabaseUrl(url))
    engine = scratch_engine(url)
    try:
        with engine.connect() as conn:
            expected = _identity(conn)
    finally:
        engine.dispose()
    if FORK and threading.active_count() == 1:
        _warm()
        _forked(scratch, url, expected, down, target)
    else:
        _in_process(scratch, url, expected, down, target)
