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

__all__ = ["denied", "missing_grant"]

_DENIED = {1044, 1142, 1227}  # a statement refused (driver_errors.DENIED adds logins)


def denied(err: BaseException) -> bool:
    """True for a MySQL/MariaDB 'command denied' / 'access denied' to a statement."""
    if not isinstance(err, DBAPIError):
        return False
    args = tuple(getattr(err.orig, "args", ()))
    return bool(args) and args[0] in _DENIED


def _account(conn: Connection) -> str:
    """``'user'@'host'`` as GRANT spells it (CURRENT_USER is the account the server chose)."""
    conn.rollback()
    current = str(conn.exec_driver_sql("SELECT CURRENT_USER()").scalar() or "")
    user, _, host = current.rpartition("@")
    return f"'{user}'@'{host}'" if user else f"'{current}'"


def missing_grant(conn: Connection, action: str, err: DBAPIError, privileges: str,
                  on: str, why: str) -> PrivilegeMissing:
    """The error to raise instead of `err`; `on` is the GRANT's object (e.g. `` `db`.* ``)."""
    detail = redact(driver_message(err), conn.engine.url.render_as_string(hide_password=False))
    return PrivilegeMissing(
        f"{action}: the server refused it ({detail}); nothing changed; {why}; an "
        f"administrator can allow it with: GRANT {privileges} ON {on} TO {_account(conn)}")
