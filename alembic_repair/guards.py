"""The two confirmations a destructive action needs (design section 5).

* ``--allow-remote``: the database is not on this machine (a TCP host other than loopback).
  Checked from the URL alone, before any connection is attempted.
* ``--yes``: the action changes the database.

`require` raises `RefusedUnsafe` (exit 4) with one readable line naming the action and the
option to pass; the line names the host and port, never the password.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .database import where
from .errors import RefusedUnsafe, UrlError
from .project import Project

__all__ = ["is_local", "require", "require_local"]

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _url(url: str | URL) -> URL:
    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise UrlError("the database URL cannot be parsed; fix it (see --url / DATABASE_URL)")\
            from None


def is_local(url: str | URL) -> bool:
    """SQLite, a Unix socket, no host, ``localhost``, 127.0.0.0/8 or ::1."""
    parsed = _url(url)
    if parsed.get_backend_name() == "sqlite":
        return True
    for key in ("unix_socket", "host"):  # PyMySQL's socket; libpq's host=/run/postgresql
        value = parsed.query.get(key)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, str) and v.startswith("/") for v in values):
            return True
    host = (parsed.host or "").strip().strip("[]").lower()
    if not host or host.startswith("/") or host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _place(url: URL) -> str:
    return where(url)


def require_local(allow_remote: bool, project: Project, action: str) -> None:
    """Refuse `action` on a database that is not local unless `allow_remote`. No connection."""
    url = _url(project.url)
    if allow_remote or is_local(url):
        return
    raise RefusedUnsafe(
        f"{action}: refused, the database at {_place(url)} is not on this machine; nothing "
        "changed; pass --allow-remote (and --yes) to do it there"
    )


def require(yes: bool, allow_remote: bool, project: Project, action: str) -> None:
    """Refuse `action` unless the database is local (or `allow_remote`) and `yes` was given.

    `action` says what would be done (``trash drop: would move table author (3 rows) to
    _ar_trash_...``); the message adds that nothing changed and which option to pass.
    """
    require_local(allow_remote, project, action)
    if not yes:
        raise RefusedUnsafe(f"{action}; nothing changed; pass --yes to do it")
