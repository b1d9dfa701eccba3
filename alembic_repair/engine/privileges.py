"""A statement the server refused for want of a privilege, as one line naming the GRANT.

MySQL/MariaDB answer a missing privilege with error 1142 (table), 1044 (database) or 1227
(global); the driver's text names the user but not the fix. `missing_grant` turns it into a
`PrivilegeMissing` that says which GRANT statement an administrator would run.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..errors import PrivilegeMissing
from ..masking import redact
from .driver_errors import driver_message

__all__ = ["current_account", "denied", "missing_grant", "spelled"]

_DENIED = {1044, 1142, 1227}  # a statement refused (driver_errors.DENIED adds logins)


def denied(err: BaseException) -> bool:
    """True for a MySQL/MariaDB 'command denied' / 'access denied' to a statement."""
    if not isinstance(err, DBAPIError):
        return False
    args = tuple(getattr(err.orig, "args", ()))
    return bool(args) and args[0] in _DENIED


def current_account(conn: Connection) -> tuple[str, str]:
    """(user, host) of the account the server chose for `conn` (CURRENT_USER, not the login
    name: ``'app'@'%'`` is what a GRANT must name). Rolls `conn` back."""
    conn.rollback()
    current = str(conn.exec_driver_sql("SELECT CURRENT_USER()").scalar() or "")
    user, _, host = current.rpartition("@")
    return (user, host) if user else (current, "")


def spelled(account: tuple[str, str]) -> str:
    """``'user'@'host'`` as GRANT spells it."""
    user, host = (part.replace("'", "''") for part in account)
    return f"'{user}'@'{host}'" if host else f"'{user}'"


def _account(conn: Connection) -> str:
    return spelled(current_account(conn))


def missing_grant(conn: Connection, action: str, err: DBAPIError, privileges: str,
                  on: str, why: str, also: str = "") -> PrivilegeMissing:
    """The error to raise instead of `err`; `on` is the GRANT's object (e.g. `` `db`.* ``);
    `also` follows the server's words (e.g. why an admin login did not step in)."""
    detail = redact(driver_message(err), conn.engine.url.render_as_string(hide_password=False))
    detail += f"; {also}" if also else ""
    return PrivilegeMissing(
        f"{action}: the server refused it ({detail}); nothing changed; {why}; an "
        f"administrator can allow it with: GRANT {privileges} ON {on} TO {_account(conn)}")
