"""Connecting to the project's database, with driver errors turned into one readable line.

Only this module and `locking` open connections. `target` says where the driver will really
connect, computed from the keyword arguments SQLAlchemy's dialect hands the driver (a
``?host=`` in the query overrides the URL's host for PyMySQL), so the ``--allow-remote`` guard
and the driver can never disagree. Other drivers are not modelled: local only for
``localhost`` or a loopback literal with no query key that could move them. Errors name the
host and port (or the SQLite file) and say what to do; the password never appears, whatever
the driver put in its message.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from ..errors import AlembicRepairError, ConfigError, DatabaseUnreachable, LockTimeout, LoginRefused
from ..masking import redact
from .project import Project

#: MySQL client/server error numbers we translate.
_ACCESS_DENIED = {1045, 1698}
_DB_ACCESS_DENIED = 1044
_UNKNOWN_DATABASE = 1049
_CANNOT_CONNECT = {2002, 2003, 2005, 2006, 2013}

#: Seconds an SQLite connection waits for another writer's lock before giving up.
BUSY_TIMEOUT_ENV = "ALEMBIC_REPAIR_SQLITE_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT = 5.0

#: The only name taken as this machine without asking DNS (resolvers may send others out).
_LOCAL_NAMES = {"localhost"}
_DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306, "postgresql": 5432}


def busy_timeout() -> float:
    """The bounded wait for a locked SQLite file (``ALEMBIC_REPAIR_SQLITE_BUSY_TIMEOUT``)."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{BUSY_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    return max(value, 0.0)


# -- where the driver will connect --------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the driver will connect (no connection made to find out).

    `local` is True only when proven: a loopback address or name, a Unix socket, SQLite.
    `known` is False when the destination cannot be told without connecting (an option file
    the driver reads, an unknown driver); `error` is set when the driver rejects the options
    outright (it would fail before opening any socket)."""

    backend: str
    place: str
    local: bool
    known: bool = True
    why: str = ""
    error: str = ""
    #: PyMySQL's resolved endpoint (host and port, or the socket), for tools such as
    #: mariadb-dump that must reach the same server as our session; None when not computed.
    host: str | None = None
    port: int | None = None
    socket: str | None = None

    def refusal(self) -> str:
        """Why a guarded action is refused here (no password: hosts, files and sockets only)."""
        why = f" ({self.why})" if self.why else ""
        if self.known:
            return f"the database at {self.place} is not on this machine{why}"
        return f"cannot tell that the database at {self.place} is on this machine{why}"


def _loopback_address(text: str) -> bool:
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified  # 0.0.0.0 / :: reach this machine on Linux


def is_loopback(host: str) -> bool:
    """A name or literal that can only mean this machine; never asks DNS (a name other than
    ``localhost`` proves nothing, whatever it resolves to today)."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if not name:
        return False
    if name in _LOCAL_NAMES:
        return True
    try:  # numeric only: the same parser the driver's getaddrinfo uses (127.1, ::ffff:127.0.0.1)
        infos = socket.getaddrinfo(name, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return False
    addresses = {str(info[4][0]) for info in infos}
    try:
        return bool(addresses) and all(_loopback_address(a) for a in addresses)
    except ValueError:
        return False


def _hostport(host: str, port: object) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{shown}:{port}" if port else shown


def _unproven(url: URL, why: str, place: str | None = None) -> Target:
    port = url.port or _DEFAULT_PORTS.get(url.get_backend_name())
    return Target(url.get_backend_name(), place or _hostport(url.host or "localhost", port),
                  False, known=False, why=why)


def _tcp(url: URL, host: str, port: object, why: str = "") -> Target:
    port = port or _DEFAULT_PORTS.get(url.get_backend_name())
    return Target(url.get_backend_name(), _hostport(host, port), is_loopback(host), why=why)


#: PyMySQL's option file when ``read_default_group`` is given without ``read_default_file``.
_PYMYSQL_DEFAULT_FILE = "/etc/my.cnf"
#: Query keys another driver may be given and still be judged from the URL's host alone: none
#: of them can name another host (an option file, a service, a DSN or ``host=`` could).
_INERT_QUERY = frozenset({"charset", "use_unicode", "connect_timeout", "sslmode"})


def _one_line(err: BaseException, url: URL) -> str:
    """An exception's first line, without the URL's password (a driver may quote its options)."""
    text = (str(err).strip().splitlines() or [""])[0] or type(err).__name__
    return redact(text, url.render_as_string(hide_password=False))


def _pymysql_target(url: URL, cparams: dict[str, Any]) -> Target:
    """PyMySQL's own `Connection.__init__` (with ``defer_connect``: no socket) decides: it
    applies ``?host=``/``?unix_socket=``/``?port=`` and reads ``read_default_file`` exactly as
    the real connection will, and rejects bad options (a str timeout) here rather than at
    connect. TLS options are left out: they name files read only when connecting."""
    try:
        from pymysql.connections import Connection
    except ImportError:
        return _unproven(url, "PyMySQL is not installed")
    given = {key: value for key, value in cparams.items()  # the password moves nothing, and
             if key not in ("ssl", "password", "passwd")  # PyMySQL encodes it as latin-1
             and not key.startswith("ssl_")}
    given.setdefault("charset", "utf8mb4")
    try:
        conn = Connection(**given, defer_connect=True, ssl_disabled=True)
    except Exception as err:  # noqa: BLE001  (whatever PyMySQL raises, it raises it at connect)
        place = _hostport(url.host or "localhost", url.port or 3306)
        option_file = given.get("read_default_file") or (
            _PYMYSQL_DEFAULT_FILE if given.get("read_default_group") else None)
        if option_file and isinstance(err, (configparser.Error, OSError, UnicodeError)):
            # never str(err): configparser quotes the offending line (a password=, /etc/passwd)
            return Target(url.get_backend_name(), place, False,
                          error=f"cannot read option file {option_file} ({type(err).__name__})")
        return Target(url.get_backend_name(), place, False,
                      error=f"PyMySQL rejects the URL's options ({_one_line(err, url)})")
    files = [f"option file {given[k]}" for k in ("read_default_file",) if given.get(k)]
    if given.get("read_default_group") and not files:
        files = [f"option file {_PYMYSQL_DEFAULT_FILE}"]
    if conn.unix_socket:
        via = f" ({', '.join(files)})" if files else ""
        return Target(url.get_backend_name(), f"Unix socket {conn.unix_socket}{via}", True,
                      socket=str(conn.unix_socket))
    host, port = str(conn.host), conn.port
    why = ""
    if files:
        why = f"host from {files[0]}" if host != (url.host or "localhost") else files[0]
    elif host != (url.host or "localhost"):
        why = f"host= in the URL's query overrides {url.host or 'localhost'!r}"
    return replace(_tcp(url, host, port, why), host=host, port=port)


def _other_driver_target(url: URL, driver: str) -> Target:
    """A driver the project does not support (mysqlclient, libpq, ...): its defaults, option
    files, environment and query keys are not modelled, so it is local only when the URL names
    ``localhost`` or a loopback literal and nothing in the query could move it."""
    name = driver or url.get_backend_name()
    moving = sorted(set(url.query) - _INERT_QUERY)
    if moving:
        return _unproven(url, f"the {name} driver may read {moving[0]}= in the URL's options")
    if not url.host:
        return _unproven(url, f"no host, and the {name} driver's default is unknown")
    return _tcp(url, url.host, url.port)


def target(url: str | URL) -> Target:
    """Where the driver will connect for `url`, from `dialect.create_connect_args` plus the
    connect arguments our own engines add: the same keywords the driver receives."""
    parsed = url if isinstance(url, URL) else make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        place = f"SQLite file {database}" if database and database != ":memory:" else (
            "in-memory SQLite")
        return Target(backend, place, True)
    place = _hostport(parsed.host or "localhost",
                      parsed.port or _DEFAULT_PORTS.get(backend))
    repeated = sorted(key for key, value in parsed.query.items()
                      if isinstance(value, (tuple, list)))
    if repeated:
        return Target(backend, place, False,
                      error=f"the URL gives {repeated[0]}= more than once")
    if {"plugin", "plugins"} & set(parsed.query):
        return _unproven(parsed, "an engine plugin in the URL may change where it connects")
    try:
        dialect_cls = parsed.get_dialect()
    except Exception:  # noqa: BLE001  (an unknown dialect or driver: make_engine says which)
        return _unproven(parsed, f"SQLAlchemy has no dialect for {parsed.drivername!r}")
    driver = getattr(dialect_cls, "driver", "")
    if driver != "pymysql":
        return _other_driver_target(parsed, driver)
    try:
        _cargs, cparams = dialect_cls().create_connect_args(parsed)
    except Exception as err:  # noqa: BLE001  (options the dialect cannot read: a bad number)
        return Target(backend, place, False,
                      error=f"SQLAlchemy cannot read the URL's options ({_one_line(err, parsed)})")
    return _pymysql_target(parsed, {**cparams, **connect_args(parsed)})


def where(url: URL) -> str:
    """Where the driver connects (``host:port``, the socket or the SQLite file), for messages;
    never the credentials."""
    try:
        return target(url).place
    except Exception:  # noqa: BLE001  (a message must never fail)
        port = url.port or _DEFAULT_PORTS.get(url.get_backend_name())
        return _hostport(url.host or "localhost", port)


# -- driver errors to one line -----------------------------------------------------------------

_ERRNO = re.compile(r"\[Errno (-?\d+)\] ([^)\]]+)")
_DB_DENIED = re.compile(r"user '([^']*)'@'([^']*)' to database '([^']*)'")


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


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        database = database[5:].split("?", 1)[0]
    return Path(database).expanduser().resolve()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "?"


def _openers(files: set[Path]) -> set[int]:
    """Processes (other than us) with one of `files` open: /proc/*/fd, where readable."""
    me, found = os.getpid(), set()
    wanted = {str(f) for f in files}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    if os.readlink(fd) in wanted:
                        found.add(int(entry.name))
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return found


def _lockers(files: set[Path]) -> set[int]:
    """Processes (other than us) holding a POSIX/flock lock on one of `files`: /proc/locks."""
    inodes = set()
    for file in files:
        try:
            inodes.add(file.stat().st_ino)
        except OSError:
            continue
    found: set[int] = set()
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        for index, part in enumerate(parts[1:], start=1):
            fields = part.split(":")
            if len(fields) == 3 and fields[2].isdigit() and parts[index - 1].lstrip("-").isdigit():
                pid = int(parts[index - 1])
                if int(fields[2]) in inodes and pid > 0 and pid != os.getpid():
                    found.add(pid)
                break
    return found


def lock_holders(path: Path) -> str:
    """Who holds `path` (an SQLite file), for a message: ``pid 123 (python3)``, or that it
    is unknown. The lock table says who holds a lock; failing that, who has the file open."""
    files = {path} | {path.with_name(path.name + s) for s in ("-journal", "-wal", "-shm")}
    openers = _openers(files)
    holders = _lockers(files)
    if holders and openers:
        holders &= openers
    if holders:
        return "held by " + ", ".join(f"pid {p} ({_comm(p)})" for p in sorted(holders))
    if openers:
        return "open in " + ", ".join(f"pid {p} ({_comm(p)})" for p in sorted(openers))
    return "held by a process this user cannot see"


def sqlite_locked(path: Path, source: str | None = None) -> LockTimeout:
    """The one line for an SQLite file another writer kept locked past the bounded wait."""
    origin = f"; URL from {source}" if source else ""
    return LockTimeout(
        f"SQLite file {path} is locked by another writer ({lock_holders(path)}; waited "
        f"{busy_timeout():g} s{origin}): stop that process or let it finish, then run again "
        f"({BUSY_TIMEOUT_ENV} sets the wait)"
    )


_SQLITE_BUSY_OR_LOCKED = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (named in sqlite3 from 3.11 only)


def sqlite_backup_progress(path: Path) -> Callable[[int, int, int], None]:
    """A `sqlite3.Connection.backup` progress callback that gives up after the bounded wait:
    Python retries a busy source forever otherwise."""
    deadline = time.monotonic() + busy_timeout()

    def progress(status: int, remaining: int, total: int) -> None:
        if status in _SQLITE_BUSY_OR_LOCKED and (
                time.monotonic() > deadline):
            raise sqlite_locked(path)

    return progress


def _translate_sqlite(url: URL, detail: str, source: str) -> AlembicRepairError:
    path = _sqlite_file(url)
    shown = f"SQLite file {path}" if path else where(url)
    lowered = detail.lower()
    if path is not None and ("database is locked" in lowered or "database table is locked"
                             in lowered):
        return sqlite_locked(path, source)
    if "not a database" in lowered or "malformed" in lowered:
        return ConfigError(
            f"{path or shown} is not an SQLite database ({detail}; URL from {source}): fix the "
            "path in the URL, or move that file away"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return DatabaseUnreachable(
            f"cannot write {shown} ({detail}; URL from {source}): the file or its folder is "
            "not writable by this user; fix the permissions"
        )
    folder = path.parent if path else None
    if folder is not None and not folder.is_dir():
        return DatabaseUnreachable(
            f"cannot open {shown}: folder {folder} does not exist (URL from {source}); create "
            "it or fix the path"
        )
    if folder is not None and path is not None and not path.exists():
        return DatabaseUnreachable(
            f"cannot create {shown}: folder {folder} is not writable here ({detail}; URL from "
            f"{source}): fix its permissions, or the path"
        )
    return DatabaseUnreachable(
        f"cannot open {shown} ({detail}; URL from {source}): check that its folder exists "
        "and is writable"
    )


def translate(err: SQLAlchemyError, url_text: str, source: str) -> AlembicRepairError:
    """The exception to raise instead of a driver error met while connecting."""
    url = make_url(url_text)
    place = where(url)
    detail = redact(driver_message(err), url_text)
    if url.get_backend_name() == "sqlite" and isinstance(err, DBAPIError):
        return _translate_sqlite(url, detail, source)
    if isinstance(err, DBAPIError):
        code = _error_code(err)
        if code in _CANNOT_CONNECT and (dns := _ERRNO.search(detail)) and dns.group(1) in (
            "-2", "-3", "-5", "11001"
        ):
            return DatabaseUnreachable(
                f"cannot reach the database at {place}: host {url.host!r} not found (DNS; URL "
                f"from {source}): fix the host (inside Docker use the compose service name)"
            )
        if code == _DB_ACCESS_DENIED:
            found = _DB_DENIED.search(detail)
            user, host, database = found.groups() if found else (
                url.username or "", "%", url.database or "")
            return LoginRefused(
                f"{place}: user '{user}'@'{host}' may not use database {database!r}, or it does "
                f"not exist (URL from {source}): as an administrator run GRANT ALL PRIVILEGES ON "
                f"`{database}`.* TO '{user}'@'{host}' (and CREATE DATABASE `{database}` if it "
                "is missing)"
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
            found_errno = _ERRNO.search(detail)
            reason = found_errno.group(2).strip().lower() if found_errno else detail
            return DatabaseUnreachable(
                f"cannot reach the database at {place} ({reason}; URL from {source}): start the "
                "server, or fix the host or port (inside Docker use the compose service name)"
            )
    return DatabaseUnreachable(f"cannot use the database at {place}: {detail} (URL from {source})")


def explain(err: BaseException, url_text: str | None, source: str) -> AlembicRepairError | None:
    """A driver error met after connecting that is about the database file or server rather
    than a bug of ours (a lock taken meanwhile, a file that is not a database): its one line.
    None for anything else."""
    if url_text is None or not isinstance(err, DBAPIError):
        return None
    try:
        url = make_url(url_text)
    except Exception:  # noqa: BLE001
        return None
    detail = driver_message(err).lower()
    if url.get_backend_name() == "sqlite":
        if any(s in detail for s in ("locked", "not a database", "readonly", "unable to open")):
            return _translate_sqlite(url, redact(driver_message(err), url_text), source)
        return None
    if _error_code(err) in _CANNOT_CONNECT:  # the server went away; privileges are not ours
        return translate(err, url_text, source)
    return None


# -- engines -----------------------------------------------------------------------------------


def connect_args(url: URL) -> dict[str, Any]:
    """Keyword arguments our engines add to the dialect's: the bounded SQLite busy wait (the
    URL's own ``?timeout=`` wins). Nothing here may change where a server connection goes."""
    if url.get_backend_name() == "sqlite" and "timeout" not in url.query:
        return {"timeout": busy_timeout()}
    return {}


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
            if not err.args or err.args[0] not in _ACCESS_DENIED:
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
    url = make_url(project.url)
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
        return engine_for(url)
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


def file_error(err: OSError, project: Project) -> AlembicRepairError:
    """A file the driver opens while connecting (a CA or key named in the URL) it cannot read,
    as one line: the file and the exception's type, never its text."""
    url = make_url(project.url)
    name = getattr(err, "filename", None)
    if name is None:  # ssl's load_verify_locations does not say which file: find it
        named = [f"{value} ({key}=)" for key, value in sorted(url.query.items())
                 if key.startswith("ssl_") and isinstance(value, str) and "/" in value
                 and not os.access(os.path.expanduser(value), os.R_OK)]
        name = named[0] if named else None
    if name is not None:
        return ConfigError(
            f"{project.url_source}: cannot read file {redact(str(name), project.url)} named in "
            f"the URL's options ({type(err).__name__}), connecting to {where(url)}; fix "
            "the path or the file's permissions")
    return DatabaseUnreachable(
        f"cannot reach the database at {where(url)} ({type(err).__name__}; URL from "
        f"{project.url_source})")


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
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool,
                               connect_args={"timeout": busy_timeout()})
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
