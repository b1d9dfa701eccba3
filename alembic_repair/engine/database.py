"""Connecting to the project's database: every engine this package opens comes from here.

Only this module and `locking` open connections. Where the driver will connect (and the
``--allow-remote`` guard's view of it) is `endpoint`; a driver error met while connecting
becomes one readable line in `driver_errors`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ..errors import ConfigError, DatabaseUnreachable
from .driver_errors import ACCESS_DENIED, file_error, translate
from .endpoint import busy_timeout, connect_args, target, where
from .project import Project
from .state.recorder import bind_version_table


def _utf8_password(engine: Engine) -> None:
    """PyMySQL encodes a str password as latin-1, so a password with other characters raises
    UnicodeEncodeError and one with é is sent in a spelling the server did not hash (accounts
    created over a utf8mb4 session, the default). Send UTF-8 bytes; on a refused login retry
    the latin-1 bytes once, for accounts created over a latin-1 session."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        password = cparams.get("password")
        if not isinstance(password, str) or password.isascii():
            return None
        cparams["password"] = password.encode("utf-8")
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as err:
            if not err.args or err.args[0] not in ACCESS_DENIED:
                raise
            try:
                cparams["password"] = password.encode("latin-1")
            except UnicodeEncodeError:
                raise err from None
            return dialect.connect(*cargs, **cparams)


def engine_for(url: URL) -> Engine:
    """`create_engine` with our connect arguments and the PyMySQL password fix: every engine
    this package opens on the project's server should come from here."""
    kwargs: dict[str, Any] = {"connect_args": connect_args(url)}
    if url.get_backend_name() != "sqlite":
        kwargs["pool_pre_ping"] = True
    else:
        kwargs["poolclass"] = NullPool
    engine = create_engine(url, **kwargs)
    if engine.dialect.driver == "pymysql":
        _utf8_password(engine)
    return engine


def make_engine(project: Project) -> Engine:
    """An engine for the project's URL; SQLite folders must exist, nothing is created here."""
    url = project.url.parsed
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        folder = Path(url.database).expanduser().parent
        if not folder.is_dir():
            what = ("is a file, not a folder; fix the path" if folder.exists() else
                    "does not exist; create it or fix the path")
            raise DatabaseUnreachable(
                f"cannot open {where(url)}: folder {folder} {what} (URL from {project.url_source})"
            )
    found = target(url)
    if found.error:
        raise ConfigError(f"{project.url_source}: {found.error}; fix the URL")
    try:
        return bind_version_table(engine_for(url), project)
    except NoSuchModuleError as err:
        raise ConfigError(
            f"{project.url_source}: no SQLAlchemy dialect/driver for {url.drivername!r}; install "
            "the driver (e.g. PyMySQL for mysql+pymysql) or fix the URL"
        ) from err
    except ModuleNotFoundError as err:
        if url.get_backend_name() in ("mysql", "mariadb"):
            # PyMySQL comes with alembic-repair; mysqlclient (MySQLdb) needs a C build
            raise ConfigError(
                f"{project.url_source}: the driver for {url.drivername!r} is not installed "
                f"({err.name}); write the URL as {url.get_backend_name()}+pymysql://... "
                "(PyMySQL is installed with alembic-repair)"
            ) from err
        raise ConfigError(
            f"{project.url_source}: the driver for {url.drivername!r} is not installed "
            f"({err.name}); pip install it"
        ) from err


def _probe(conn: Any) -> None:
    """One round trip that needs the login (servers) or a read of the file's header (SQLite:
    a text file or another writer's exclusive lock shows here, not at open)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
    else:
        inspect(conn).default_schema_name  # noqa: B018  (forces the login and a query)


def connect(project: Project) -> Engine:
    """`make_engine` plus one round trip, so an unreachable server fails here, readably."""
    engine = make_engine(project)
    try:
        with engine.connect() as conn:
            _probe(conn)
    except SQLAlchemyError as err:
        engine.dispose()
        raise translate(err, project.url, project.url_source) from None
    except OSError as err:  # e.g. ?ssl_ca= names a missing file: PyMySQL opens it to connect
        engine.dispose()
        raise file_error(err, project) from None
    return engine


def connect_readonly(project: Project) -> Engine | None:
    """An engine for looking only: SQLite is opened read-only (and a missing file is not
    created: None); servers are only ever read through it."""
    url = project.url.parsed
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:":
            return None
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            return None
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool,
                               connect_args={"timeout": busy_timeout()})
        bind_version_table(engine, project)
        try:
            with engine.connect() as conn:
                _probe(conn)
        except SQLAlchemyError as err:
            engine.dispose()
            raise translate(err, project.url, project.url_source) from None
        except OSError as err:
            engine.dispose()
            raise file_error(err, project) from None
        return engine
    return connect(project)
