"""The two confirmations a destructive action needs (design section 5).

* ``--allow-remote``: the database is not on this machine (a TCP host other than loopback).
  Judged, before any connection is attempted, on the host the driver will really connect to
  (`endpoint.target`: the dialect's connect arguments, so ``?host=``, ``?unix_socket=`` and
  option files count), never on the URL's netloc alone; what cannot be proven local is refused.
* ``--yes``: the action changes the database.

`require` raises `RefusedUnsafe` (exit 4) with one readable line naming the action and the
option to pass; the line names the host and port, never the password. Without ``--yes`` alone
it raises `DryRun` (a `RefusedUnsafe`, exit 5): the action is the plan the CLI prints.
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

from ..engine.endpoint import Target, target
from ..engine.project import Project
from ..engine.url import parse_url
from ..errors import DryRun, RefusedUnsafe, UrlError

__all__ = ["decide", "is_local", "require", "require_local"]


def _url(url: str | URL) -> URL:
    """The project's own parse (`Project.url` is parsed once, at discovery), else parsed now."""
    try:
        return parse_url(url)
    except (ArgumentError, ValueError):
        raise UrlError("the database URL cannot be parsed; fix it (see --url / DATABASE_URL)")\
            from None


def decide(url: str | URL) -> Target:
    """Where `url` really connects, and whether that is provably this machine (no connection)."""
    return target(_url(url))


def is_local(url: str | URL) -> bool:
    """SQLite, a Unix socket, ``localhost``, 127.0.0.0/8 or ::1, as the driver will see it."""
    return decide(url).local


def require_local(allow_remote: bool, project: Project, action: str) -> None:
    """Refuse `action` on a database that is not local unless `allow_remote`. No connection."""
    found = decide(project.url)
    if found.error:
        raise UrlError(f"{action}: {found.error} (URL from {project.url_source}); nothing "
                       "changed; fix the URL")
    if allow_remote or found.local:
        return
    raise RefusedUnsafe(
        f"{action}: refused, {found.refusal()}; nothing changed; pass --allow-remote (and "
        "--yes) to do it there"
    )


def require(yes: bool, allow_remote: bool, project: Project, action: str) -> None:
    """Refuse `action` unless the database is local (or `allow_remote`) and `yes` was given.

    `action` says what would be done (``trash drop: would move table author (3 rows) to
    _ar_trash_...``); the message adds that nothing changed and which option to pass.
    """
    require_local(allow_remote, project, action)
    if not yes:
        raise DryRun(action)
