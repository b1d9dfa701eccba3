"""Where the driver will connect, told without connecting: the ``--allow-remote`` guard's view.

`target` is computed from the keyword arguments SQLAlchemy's dialect hands the driver plus the
ones our engines add (`connect_args`), so a ``?host=`` in the query (which overrides the URL's
host for PyMySQL) moves the guard exactly as it moves the driver: they can never disagree.
Other drivers are not modelled: local only for ``localhost`` or a loopback literal with no
query key that could move them. Nothing here holds or prints a password.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import socket
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import URL

from ..errors import ConfigError
from ..masking import redact
from .url import parse_url

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


def connect_args(url: URL) -> dict[str, Any]:
    """Keyword arguments our engines add to the dialect's: the bounded SQLite busy wait (the
    URL's own ``?timeout=`` wins). Nothing here may change where a server connection goes."""
    if url.get_backend_name() == "sqlite" and "timeout" not in url.query:
        return {"timeout": busy_timeout()}
    return {}



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
    parsed = parse_url(url)
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
