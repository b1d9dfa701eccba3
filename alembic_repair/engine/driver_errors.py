"""Driver errors turned into one readable line that says what to do.

Errors name the host and port (or the SQLite file) and the URL's source; the password never
appears, whatever the driver put in its message. A locked SQLite file names who holds it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import AlembicRepairError, ConfigError, DatabaseUnreachable, LockTimeout, LoginRefused
from ..masking import redact
from .endpoint import BUSY_TIMEOUT_ENV, busy_timeout, where
from .project import Project
from .url import parse_url

#: MySQL client/server error numbers we translate.
ACCESS_DENIED = {1045, 1698}
_DB_ACCESS_DENIED = 1044
_UNKNOWN_DATABASE = 1049
_CANNOT_CONNECT = {2002, 2003, 2005, 2006, 2013}
#: MySQL/MariaDB's "denied": to a database (1044), a table (1142), an operation (1227), a column
#: (1143), a routine (1370), the login itself (1045)
DENIED = frozenset({1044, 1045, 1142, 1143, 1227, 1370})


_ERRNO = re.compile(r"\[Errno (-?\d+)\] ([^)\]]+)")
_DB_DENIED = re.compile(r"user '([^']*)'@'([^']*)' to database '([^']*)'")


def driver_message(err: SQLAlchemyError) -> str:
    """The driver's own words: PyMySQL's (code, text) tuple becomes its text."""
    orig: Any = getattr(err, "orig", None) or err
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return (args[1].strip().splitlines() or [f"{type(orig).__name__} {args[0]}"])[0]
    return ((str(orig) or type(orig).__name__).splitlines() or [type(orig).__name__])[0]


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
    url = parse_url(url_text)
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
        if code in ACCESS_DENIED:
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
        url = parse_url(url_text)
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


def file_error(err: OSError, project: Project) -> AlembicRepairError:
    """A file the driver opens while connecting (a CA or key named in the URL) it cannot read,
    as one line: the file and the exception's type, never its text."""
    url = project.url.parsed
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


def environmental(err: BaseException) -> bool:
    """True when `err` says something about this server, account or connection (a missing
    privilege, a lost connection, a locked or unwritable file) rather than about the history:
    such a failure may be gone tomorrow, so it is never cached as the history's verdict."""
    if not isinstance(err, DBAPIError):
        return False
    if err.connection_invalidated or _error_code(err) in DENIED | ACCESS_DENIED | _CANNOT_CONNECT:
        return True
    text = driver_message(err).lower()
    return any(words in text for words in ("database is locked", "disk i/o error",
                                           "unable to open database", "readonly database"))
