"""Connecting to the project's database, with driver errors turned into one readable line.

Only this module and `locking` open connections. Errors name the host and port (or the SQLite
file) and say what to do; the password never appears, whatever the driver put in its message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from .errors import ConfigError, DatabaseUnreachable, LoginRefused
from .masking import redact
from .project import Project

#: MySQL client/server error numbers we translate.
_ACCESS_DENIED = {1044, 1045, 1698}
_UNKNOWN_DATABASE = 1049
_CANNOT_CONNECT = {2002, 2003, 2005, 2006, 2013}


def where(url: URL) -> str:
    """``host:port`` (or the SQLite file) for messages; never the credentials."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}" if url.database else "in-memory SQLite"
    default = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432}.get(url.get_backend_name())
    port = url.port or default
    return f"{url.host or 'localhost'}:{port}" if port else str(url.host or "localhost")


_ERRNO = re.compile(r"\[Errno (-?\d+)\] ([^)\]]+)")


def driver_message(err: SQLAlchemyError) -> str:
    """The driver's own words: PyMySQL's (code, text) tuple becomes its text."""
    orig: Any = getattr(err, "orig", None) or err
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return args[1].splitlines()[0]
    return (str(orig) or type(orig).__name__).splitlines()[0]


def _error_code(err: DBAPIError) -> int | None:
    args: Any = getattr(err.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def translate(err: SQLAlchemyError, url_text: str, source: str) -> Exception:
    """The exception to raise instead of a driver error met while connecting."""
    url = make_url(url_text)
    place = where(url)
    detail = redact(driver_message(err), url_text)
    if isinstance(err, DBAPIError):
        code = _error_code(err)
        if code in _CANNOT_CONNECT and (dns := _ERRNO.search(detail)) and dns.group(1) in (
            "-2", "-3", "-5", "11001"
        ):
            return DatabaseUnreachable(
                f"cannot reach the database at {place}: host {url.host!r} not found (DNS; URL "
                f"from {source}): fix the host (inside Docker use the compose service name)"
            )
        if code in _ACCESS_DENIED:
            return LoginRefused(
                f"{place} refused the login for user {url.username!r} (wrong password, or the "
                f"user may not connect from here; URL from {source}): check the credentials"
            )
        if code == _UNKNOWN_DATABASE:
            return DatabaseUnreachable(
                f"{place} has no database {url.database!r} (URL from {source}): create it with "
                f"CREATE DATABASE `{url.database}`, or fix the database name"
            )
        if code in _CANNOT_CONNECT:
            found = _ERRNO.search(detail)
            reason = found.group(2).strip().lower() if found else detail
            return DatabaseUnreachable(
                f"cannot reach the database at {place} ({reason}; URL from {source}): start the "
                "server, or fix the host or port (inside Docker use the compose service name)"
            )
        if url.get_backend_name() == "sqlite":
            return DatabaseUnreachable(
                f"cannot open {place} ({detail}; URL from {source}): check that its folder "
                "exists and is writable"
            )
    return DatabaseUnreachable(f"cannot use the database at {place}: {detail} (URL from {source})")


def make_engine(project: Project) -> Engine:
    """An engine for the project's URL; SQLite folders must exist, nothing is created here."""
    url = make_url(project.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        folder = Path(url.database).expanduser().parent
        if not folder.is_dir():
            raise DatabaseUnreachable(
                f"cannot open {where(url)}: folder {folder} does not exist (URL from "
                f"{project.url_source}); create it or fix the path"
            )
    try:
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() != "sqlite":
            kwargs["pool_pre_ping"] = True
        else:
            kwargs["poolclass"] = NullPool
        return create_engine(url, **kwargs)
    except NoSuchModuleError as err:
        raise ConfigError(
            f"{project.url_source}: no SQLAlchemy dialect/driver for {url.drivername!r}; install "
            "the driver (e.g. PyMySQL for mysql+pymysql) or fix the URL"
        ) from err
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"{project.url_source}: the driver for {url.drivername!r} is not installed "
            f"({err.name}); pip install it"
        ) from err


def connect(project: Project) -> Engine:
    """`make_engine` plus one round trip, so an unreachable server fails here, readably."""
    engine = make_engine(project)
    try:
        with engine.connect() as conn:
            inspect(conn).default_schema_name  # noqa: B018  (forces the login and a query)
    except SQLAlchemyError as err:
        engine.dispose()
        raise translate(err, project.url, project.url_source) from None
    return engine


def connect_readonly(project: Project) -> Engine | None:
    """An engine for looking only: SQLite is opened read-only (and a missing file is not
    created: None); servers are only ever read through it."""
    url = make_url(project.url)
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:":
            return None
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            return None
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as err:
            engine.dispose()
            raise translate(err, project.url, project.url_source) from None
        return engine
    return connect(project)
