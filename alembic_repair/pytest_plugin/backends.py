"""Scratch databases for the ready tests: each one gets fresh, empty databases and drops them.

SQLite by default (a file in a 0700 temporary folder). With a MySQL/MariaDB URL, a claimed
``_ar_replay_*`` schema on that server (`engine.scratch`: swept if a killed run left it, root's
from the compose file where the account may not create databases), used through a throwaway
account granted only that schema and doctor's ``_ar_replay_*`` ones: the server is often a
developer's own, and a revision naming another schema (``DELETE FROM appdb.x``) must be denied
there, not run. With ``mariadbd``, a private server started once per pytest session (under
xdist once, by the controller, its URL handed to the workers), stopped when the session ends.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.database import engine_for
from ..engine.project import Project
from ..engine.url import DatabaseUrl, parse_url
from ..masking import redact
from .outcome import Unusable
from .settings import THROWAWAY

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class Backends:
    """Where scratch databases come from, for one pytest session (`close` at its end)."""

    def __init__(self, url: str, *, server: str | None = None, failed: str | None = None
                 ) -> None:
        """`server`/`failed`: the throwaway server another process (xdist's controller)
        started, or why it did not start."""
        self.url = url
        self._stack = ExitStack()
        self._server = server  # the throwaway server's root URL, once started
        self._failed = failed  # why it could not start (said by every test)

    @property
    def name(self) -> str:
        if not self.url:
            return "sqlite"
        return THROWAWAY if self.url == THROWAWAY else "server"

    def close(self) -> None:
        self._stack.close()

    def server_url(self) -> str:
        """The MySQL/MariaDB URL scratch schemas are created on (starts mariadbd if asked)."""
        if self.url != THROWAWAY:
            return self.url
        if self._failed is None and self._server is None:
            self._server = self._start()
        if self._server is None:
            raise Unusable(self._failed or "mariadbd did not start")
        return self._server

    def _start(self) -> str | None:
        from ..testing.mariadb import MissingServer, throwaway_server

        try:
            server = self._stack.enter_context(throwaway_server())
        except MissingServer as err:
            self._failed = (f"alembic_repair_url = mariadbd, but {err}; or set "
                            "alembic_repair_url to a MySQL/MariaDB server URL")
            return None
        except (OSError, RuntimeError) as err:
            last = str(err).strip().splitlines()[-1:] or ["no output"]
            self._failed = f"alembic_repair_url = mariadbd: the server did not start ({last[0]})"
            return None
        return server.root_url

    @contextmanager
    def scratch(self, project: Project) -> Iterator[str]:
        """The URL of a new, empty database, dropped when the block ends."""
        if not self.url:
            folder = Path(tempfile.mkdtemp(prefix="ar-pytest-"))  # 0700
            try:
                yield f"sqlite:///{folder / 'scratch.db'}"
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return
        with self._schema(project, self.server_url()) as url:
            yield url

    @contextmanager
    def _schema(self, project: Project, server: str) -> Iterator[str]:
        from sqlalchemy.exc import DBAPIError

        from ..engine import scratch
        from ..engine.driver_errors import driver_message

        try:
            parsed = parse_url(server)
        except Exception as err:  # noqa: BLE001  (make_url's errors: one line)
            raise Unusable(f"alembic_repair_url is not a database URL ({err})") from None
        if parsed.get_backend_name() not in ("mysql", "mariadb"):
            raise Unusable(f"alembic_repair_url names a {parsed.get_backend_name()} database; "
                           "give a MySQL/MariaDB server URL, `mariadbd`, or nothing (SQLite)")
        on_server = dataclasses.replace(project, url=DatabaseUrl(server))
        with ExitStack() as stack:
            engine = engine_for(parsed)
            stack.callback(engine.dispose)
            try:
                name, _holder = stack.enter_context(scratch.held_schema(engine, on_server))
            except scratch.ScratchDenied as err:
                raise Unusable(str(err)) from None
            except DBAPIError as err:
                raise Unusable(f"no scratch schema on {on_server.masked_url}: "
                               f"{redact(driver_message(err), server)}") from None
            user, password = stack.enter_context(_account(engine, name, on_server.masked_url))
            yield parsed.set(username=user, password=password, database=name
                             ).render_as_string(hide_password=False)


#: where the throwaway account may log in from (as `testing.mariadb`'s app user)
_HOSTS = ("%", "127.0.0.1", "localhost")


@contextmanager
def _account(engine: Engine, schema: str, where: str) -> Iterator[tuple[str, str]]:
    """A new account granted ALL only on `schema` and the ``_ar_replay_*`` schemas (doctor's
    replay makes its own there), dropped when the block ends (also on failure)."""
    from sqlalchemy.exc import DBAPIError

    from ..engine.driver_errors import driver_message

    user, password = f"_ar_u_{secrets.token_hex(8)}", secrets.token_hex(16)  # 22 of 32 chars
    try:
        with engine.begin() as conn:
            for host in _HOSTS:
                conn.exec_driver_sql("CREATE USER %s@%s IDENTIFIED BY %s",
                                     (user, host, password))
                # `_` is a wildcard in a GRANT's schema name; `%%`: pymysql's own `%`
                for pattern in (schema.replace("_", "\\_"), "\\_ar\\_replay\\_%%"):
                    conn.exec_driver_sql(f"GRANT ALL ON `{pattern}`.* TO %s@%s", (user, host))
    except DBAPIError as err:
        with suppress(DBAPIError):  # whatever part was made (none, without CREATE USER)
            _drop_account(engine, user)
        raise Unusable(
            f"alembic_repair_url's account on {where} may not create the scratch account the "
            f"ready tests run as ({driver_message(err)}); give an account with CREATE USER, or "
            "set alembic_repair_url = mariadbd (a throwaway server)") from None
    try:
        yield user, password
    finally:
        _drop_account(engine, user)


def _drop_account(engine: Engine, user: str) -> None:
    with engine.begin() as conn:
        for host in _HOSTS:
            conn.exec_driver_sql("DROP USER IF EXISTS %s@%s", (user, host))
