"""Alembic's upgrade, downgrade and check on a scratch database, through the project's env.py.

As ``alembic upgrade`` runs them: no connection of ours is handed over, env.py makes its own
from ``sqlalchemy.url`` / ``DATABASE_URL`` (both the scratch URL), in the project folder, with
its options, ``context.get_bind()`` and set-up code. The ready tests of the pytest plugin and
the data-survival check (`survival`) run every migration here.

Forked where the OS allows and this process has one thread (a plain pytest run), else in this
process. Forking is the faithful choice: an application module that reads ``DATABASE_URL`` at
import (``engine = create_engine(os.environ["DATABASE_URL"])``) was typically imported by the
caller's own tests under the real URL; the child drops the project's modules and imports them
afresh under the scratch URL, as ``alembic upgrade`` would, and whatever env.py and the
project's code do to the process (``fileConfig`` of the logging, event listeners, globals)
dies with the child instead of changing the caller's test run. Measured (SQLite, the
scenarios' 3-revision project, best of 6, this process warmed by `_warm`): an upgrade takes
36 ms forked and 15 ms in process, ``alembic check`` 35 ms and 11 ms; the example project's
six ready tests 3.6 to 4.0 s forked, 2.2 to 4.1 s in process (a shared machine): fidelity
costs about 25 ms per migration. In process (xdist's threads make forking unsafe),
the modules the run imported are dropped afterwards; the caller's own stay, so an env.py
that uses an engine the caller built under another URL is stopped by the guard (a false
alarm, but never a statement on that database).

The guard: while a command runs, the first statement on any connection (and the first after
``USE``) is preceded by a query of that connection's identity (SQLite: the main file's real
path; MySQL/MariaDB: server host, port and current schema), and stopped unless it is the
scratch database's; so is a run whose ``version_table_schema`` names another schema. The
stop is a BaseException, so an env.py ``except Exception`` cannot
swallow it, and is reported as `Elsewhere` (a `RefusedUnsafe`): nothing ran on the other
database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import Pool

from .. import errors
from ..engine import migrations
from ..engine.database import engine_for
from ..engine.project import Project
from ..engine.state.schema import SchemaSnapshot, reflect
from ..engine.url import DatabaseUrl, parse_url
from ..masking import redact

__all__ = ["Elsewhere", "Irreversible", "check", "migrate", "schema", "scratch_engine"]

FORK = hasattr(os, "fork")


class Elsewhere(errors.RefusedUnsafe):
    """env.py connected to a database that is not the scratch one; stopped before its first
    statement there."""

    fix = ("let env.py use config.attributes['connection'], sqlalchemy.url or DATABASE_URL, "
           "read at run time, so that it never runs on another database than the scratch "
           "database it is given")

    def __init__(self, where: str) -> None:
        self.where = where
        self.line = f"env.py connected to {where}, not the scratch database (nothing ran there)"
        super().__init__(f"{self.line}; {self.fix}")


class Irreversible(errors.MigrationFailed):
    """A downgrade() raised NotImplementedError: the revision says it cannot be undone."""


class _Stop(BaseException):  # noqa: N818  (BaseException: env.py's `except Exception` lets it by)
    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


# -- the guard ---------------------------------------------------------------------------------


def _identity(dialect: str, dbapi_connection: Any) -> tuple[Any, ...]:
    """What tells one database from another, asked on the driver's connection (no events)."""
    cursor = dbapi_connection.cursor()
    try:
        if dialect == "sqlite":
            cursor.execute("PRAGMA database_list")
            return ("sqlite", *(os.path.realpath(r[2]) if r[2] else "" for r in cursor.fetchall()
                                if r[1] == "main"))  # "": in memory
        cursor.execute("SELECT @@hostname, @@port, DATABASE()")
        return ("mysql", *cursor.fetchone())
    finally:
        cursor.close()


def _family(dialect: str) -> str:
    return "mysql" if dialect in ("mysql", "mariadb") else dialect


@contextmanager
def _guarded(url: str, expected: tuple[Any, ...]) -> Iterator[None]:
    """Stop the first statement on any connection that is not the scratch database, and
    any run keeping alembic_version in another schema."""
    verified: dict[int, Any] = {}  # id -> the driver connection (held: ids are not reused)
    stopped: list[str] = []

    def check(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        raw = conn.connection.dbapi_connection
        if id(raw) not in verified:
            family = _family(conn.dialect.name)
            if family != expected[0] or family not in ("sqlite", "mysql") or \
                    _identity(family, raw) != expected:
                where = redact(conn.engine.url.render_as_string(hide_password=True), url)
                stopped.append(where)
                raise _Stop(where)
            verified[id(raw)] = raw
        if statement.lstrip()[:3].lower() == "use":  # the next one may run elsewhere: ask again
            verified.pop(id(raw), None)

    from alembic.runtime.migration import MigrationContext

    original = MigrationContext.run_migrations
    allowed = {None, "main"} if expected[0] == "sqlite" else {None, expected[-1]}

    def version_table_here(self: Any, **kw: Any) -> Any:
        """env.py's version_table_schema names no other schema (`replay_child`'s rule)."""
        if self.version_table_schema not in allowed:
            where = f"schema {self.version_table_schema} (its version_table_schema)"
            stopped.append(where)
            raise _Stop(where)
        return original(self, **kw)

    event.listen(Engine, "before_cursor_execute", check)
    MigrationContext.run_migrations = version_table_here  # type: ignore[method-assign]
    try:
        yield
    except _Stop as stop:
        raise Elsewhere(stop.where) from None
    finally:
        MigrationContext.run_migrations = original  # type: ignore[method-assign]
        event.remove(Engine, "before_cursor_execute", check)
    if stopped:  # env.py swallowed the stop (a bare `except:`): still nothing ran there
        raise Elsewhere(stopped[0])


# -- one command, here or in a forked child -----------------------------------------------------


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


Command = Callable[[Project], Any]


def _run(project: Project, url: str, expected: tuple[Any, ...], command: Command) -> Any:
    no_sync = partial(_no_sync_on, expected[1:])  # env.py's own connections to the file
    if expected[0] == "sqlite":
        event.listen(Pool, "connect", no_sync)
    try:
        with _pointed_at(project, url), _guarded(url, expected):
            return command(project)
    except errors.MigrationFailed as err:
        if isinstance(err.__cause__, NotImplementedError):
            raise Irreversible(str(err)) from err.__cause__
        raise
    finally:
        if expected[0] == "sqlite":
            event.remove(Pool, "connect", no_sync)


_REAL: dict[str, str] = {}  # a module's folder -> its real path (asked once: 0.1 ms each)


def _own(root: Path, names: Iterable[str]) -> list[str]:
    """The modules of `names` that are the project's own code (`engine.replay_child`'s rule:
    installed packages, a virtualenv inside the project too, are not)."""
    base = os.path.realpath(root) + os.sep
    own = []
    for name in list(names):
        path = getattr(sys.modules.get(name), "__file__", None)
        if not isinstance(path, str):
            continue
        folder = os.path.dirname(path)
        real = _REAL.get(folder) or _REAL.setdefault(folder, os.path.realpath(folder) + os.sep)
        if real.startswith(base) and "site-packages" not in real and "dist-packages" not in real:
            own.append(name)
    return own


def _forget(names: Iterable[str]) -> None:
    for name in names:
        sys.modules.pop(name, None)


def _in_process(project: Project, url: str, expected: tuple[Any, ...], command: Command) -> Any:
    """`_run` here. The project's modules this run imports are dropped again afterwards (the
    next run imports them afresh); the ones the caller had imported before stay."""
    had = set(sys.modules)
    try:
        return _run(project, url, expected, command)
    finally:
        _forget(_own(project.root, set(sys.modules) - had))


_RAISED = {cls.__name__: cls for cls in (
    errors.ConfigError, errors.IniError, errors.UrlError, errors.PyprojectError,
    errors.DatabaseUnreachable, errors.LoginRefused, errors.PrivilegeMissing,
    errors.LockTimeout, errors.MigrationFailed, errors.NeedsRepair, errors.RefusedUnsafe,
    Irreversible)}


def _outcome(run: Callable[[], Any]) -> dict[str, Any]:
    """What the child sends back: the command's value, or its error as plain data."""
    try:
        return {"value": run()}
    except Elsewhere as err:
        return {"elsewhere": err.where}
    except BaseException as err:  # noqa: BLE001  (everything goes back to the parent)
        kind = type(err).__name__ if type(err).__name__ in _RAISED else "MigrationFailed"
        return {"error": kind, "line": (str(err).splitlines() or [type(err).__name__])[0]}


#: Seconds a forked migration may take before it is killed (an env.py that blocks would hang
#: the test run); the environment variable overrides it.
TIMEOUT_VARIABLE = "ALEMBIC_REPAIR_MIGRATION_TIMEOUT"
DEFAULT_TIMEOUT = 600.0


def _timeout() -> float:
    given = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    try:
        return float(given) if given else DEFAULT_TIMEOUT
    except ValueError:
        raise errors.ConfigError(f"{TIMEOUT_VARIABLE}={given!r} is not a number of "
                                 "seconds") from None


def _read_until(read_end: int, pid: int, timeout: float, what: str) -> list[bytes]:
    """The child's outcome, read from the pipe; past `timeout` the child is killed."""
    import select
    import signal
    import time

    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready = select.select([read_end], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise errors.MigrationFailed(
                    f"{what} did not finish within {timeout:g} s (env.py or a revision "
                    f"blocks?): the migration process was killed; {TIMEOUT_VARIABLE} sets "
                    "the limit")
            if not (chunk := os.read(read_end, 65536)):
                return chunks
            chunks.append(chunk)
    finally:
        os.close(read_end)


def _forked(project: Project, url: str, expected: tuple[Any, ...], command: Command,
            what: str = "alembic") -> Any:
    """`_run` in a forked child: the project's modules are imported afresh under the scratch
    URL and this process keeps its own; the outcome comes back through a pipe as JSON."""
    own = _own(project.root, sys.modules)  # asked here: the folders' paths are kept
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        data = b""
        try:
            os.close(read_end)
            _forget(own)  # imported afresh, under the scratch URL
            data = json.dumps(_outcome(partial(_run, project, url, expected, command))).encode()
        finally:
            with suppress(BaseException):
                os.write(write_end, data)
            os._exit(0)
    os.close(write_end)
    chunks = _read_until(read_end, pid, _timeout(), what)
    _, status = os.waitpid(pid, 0)
    try:
        outcome = json.loads(b"".join(chunks))
    except ValueError:  # killed, or it ended before writing all of it
        outcome = {"error": "MigrationFailed", "line": "the forked migration process ended "
                   f"without its outcome (wait status {status})"}
    if "elsewhere" in outcome:
        raise Elsewhere(outcome["elsewhere"])
    if "error" in outcome:
        raise _RAISED[outcome["error"]](outcome["line"])
    return outcome["value"]


_WARM: list[bool] = []


def _warm() -> None:
    """Import here, once, what every forked child would import again (0.3 s each time)."""
    import importlib

    if _WARM:
        return
    for name in ("alembic.command", "alembic.runtime.environment", "alembic.operations",
                 "alembic.autogenerate", "sqlalchemy.orm", "sqlalchemy.ext.declarative"):
        with suppress(ImportError):
            importlib.import_module(name)
    _WARM.append(True)


def _through_env(project: Project, url: str, command: Command, what: str) -> Any:
    scratch = replace(project, url=DatabaseUrl(url))
    engine = scratch_engine(url)
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            expected = _identity(_family(conn.dialect.name), raw)
    finally:
        engine.dispose()
    if FORK and threading.active_count() == 1:
        _warm()
        return _forked(scratch, url, expected, command, what)
    return _in_process(scratch, url, expected, command)


# -- the commands --------------------------------------------------------------------------------


def _migrate(target: str, down: bool, project: Project) -> None:
    from alembic import command

    what = "upgrade" if target in ("head", "heads") and not down else \
        f"{'downgrade' if down else 'upgrade'} to {target}"  # as `engine.migrations` says it
    migrations.run_alembic(project, what, command.downgrade if down else command.upgrade,
                           migrations.alembic_config(project), target)


def migrate(project: Project, url: str, target: str, *, down: bool = False) -> None:
    """``alembic upgrade|downgrade target`` on the scratch database at `url`, through env.py.
    A downgrade() that raises NotImplementedError: `Irreversible`."""
    _through_env(project, url, partial(_migrate, target, down),
                 f"alembic {'downgrade' if down else 'upgrade'} {target}")


def _check(project: Project) -> list[str]:
    from alembic import command
    from alembic.util import AutogenerateDiffsDetected

    found: list[str] = []

    def alembic_check(config: Any) -> None:
        try:
            command.check(config)
        except AutogenerateDiffsDetected as err:
            found.extend(_diff_text(d) for d in getattr(err, "diffs", ()) or ())
            found.extend(() if found else [str(err)])

    migrations.run_alembic(project, "alembic check", alembic_check,
                           migrations.alembic_config(project))
    return found


def check(project: Project, url: str) -> tuple[str, ...]:
    """``alembic check`` on the scratch database: what autogenerate would write (empty = the
    models match the schema)."""
    return tuple(_through_env(project, url, _check, "alembic check"))


def _diff_text(diff: Any) -> str:
    """``add_column author.email``: autogenerate's diff tuple, as words."""
    if isinstance(diff, list) and diff:
        diff = diff[0]
    if not isinstance(diff, tuple) or not diff:
        return str(diff)
    names = []
    for part in diff[1:]:
        name = getattr(part, "name", part if isinstance(part, str) else None)
        if name:
            names.append(str(name))
    return f"{diff[0]} {'.'.join(names[:2])}".strip()


# -- our own access to the scratch database ------------------------------------------------------


def scratch_engine(url: str) -> Engine:
    """Our engine on the scratch database: no fsync on SQLite (it is thrown away)."""
    engine = engine_for(parse_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _no_sync)
    return engine


def schema(url: str) -> SchemaSnapshot:
    """The scratch database's schema (our catalogue of facts, version table left out)."""
    engine = scratch_engine(url)
    try:
        with engine.connect() as conn:
            return reflect(conn)
    finally:
        engine.dispose()


def _no_sync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("PRAGMA journal_mode = MEMORY")
    finally:
        cursor.close()


def _no_sync_on(paths: tuple[str, ...], dbapi_connection: Any, record: Any) -> None:
    """env.py's own connections to the scratch file skip fsync too (it is thrown away)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        main = [r[2] for r in dbapi_connection.execute("PRAGMA database_list") if r[1] == "main"]
        if main and main[0] and (os.path.realpath(main[0]),) == paths:
            _no_sync(dbapi_connection, record)
