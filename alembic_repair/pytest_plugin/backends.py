"""Scratch databases for the ready tests: each one gets fresh, empty databases and drops them.

SQLite by default (a file in a 0700 temporary folder). With a MySQL/MariaDB URL, a claimed
``_ar_replay_*`` schema on that server (`engine.scratch`: swept if a killed run left it, root's
from the compose file where the account may not create databases). With ``mariadbd``, a
private server started once per pytest session, stopped when the session ends.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ..engine.database import engine_for
from ..engine.project import Project
from ..engine.url import DatabaseUrl, parse_url
from ..masking import redact
from .outcome import Unusable
from .settings import THROWAWAY


class Backends:
    """Where scratch databases come from, for one pytest session (`close` at its end)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._stack = ExitStack()
        self._server: str | None = None  # the throwaway server's root URL, once started
        self._failed: str | None = None  # why it could not start (said by every test)

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
            yield parsed.set(database=name).render_as_string(hide_password=False)
