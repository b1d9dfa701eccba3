"""Pytest fixtures for real database backends.

* ``mariadb_server`` (session): a throwaway MariaDB server on a free TCP port of 127.0.0.1,
  with its own data directory in a temp dir, started once per test session and stopped at
  the end. Tests that need it are skipped when ``mariadbd`` is not installed, except under
  ``CI=true`` where a missing server fails the run.
* ``mariadb_url`` (function): URL of a fresh, empty utf8mb4 database, dropped afterwards.
* ``sqlite_url`` (function): URL of a SQLite file in ``tmp_path`` (not created).
* ``backend`` (function, parametrized ``sqlite``/``mariadb``): a :class:`Backend`.
  The MariaDB server is only started when a ``mariadb`` parameter actually runs, so
  ``-m "not mariadb"`` or ``-k sqlite`` never start it.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pymysql
import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import URL

IN_CI = os.environ.get("CI", "").strip().lower() == "true"

# ---------------------------------------------------------------------------------------
# Hypothesis profiles
# ---------------------------------------------------------------------------------------

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if IN_CI else "dev")

# ---------------------------------------------------------------------------------------
# Markers and reporting
# ---------------------------------------------------------------------------------------

_STARTUP_SECONDS = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mariadb: the test needs the throwaway MariaDB server (fixture mariadb_server)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that request the server directly (or through mariadb_url) get the marker, so
    # `-m "not mariadb"` selects the SQLite-only part of the suite.
    for item in items:
        if "mariadb_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mariadb)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    seconds = terminalreporter.config.stash.get(_STARTUP_SECONDS, None)
    if seconds is not None:
        terminalreporter.write_line(f"MariaDB test server: started in {seconds:.2f}s")


# ---------------------------------------------------------------------------------------
# MariaDB server
# ---------------------------------------------------------------------------------------

APP_USER = "app"
# Every character that breaks a naively formatted URL: % @ : / # ?
APP_PASSWORD = "p%ss@w:rd/#?"
APP_HOSTS = ("%", "127.0.0.1", "localhost")

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
_DB_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")

MISSING_SERVER = (
    "mariadbd not found: install it with `apt-get install mariadb-server` "
    "(under CI=true this is a failure)"
)


@dataclass(frozen=True)
class MariaDBServer:
    host: str
    port: int
    root_url: str
    app_password: str = APP_PASSWORD

    def _connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host, port=self.port, user="root", password="", autocommit=True
        )

    def create_database(self, name: str) -> str:
        """Create an empty utf8mb4 database and return its SQLAlchemy URL (as root)."""
        _check_name(name)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
        finally:
            conn.close()
        return f"{self.root_url}/{name}"

    def drop_database(self, name: str) -> None:
        _check_name(name)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()

    def app_url(self, database: str | None = None) -> str:
        """URL for the ``app`` user, password correctly escaped."""
        return URL.create(
            "mysql+pymysql",
            username=APP_USER,
            password=self.app_password,
            host=self.host,
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)


def _check_name(name: str) -> None:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"unsafe database name for the test server: {name!r}")


def _missing(message: str) -> NoReturn:
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)  # only outside CI: under CI=true the pytest.fail above fires


def _find_binary(*candidates: str) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
        path = Path("/usr/sbin") / candidate
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM: mariadbd shuts down cleanly
    try:
        proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, deadline: float) -> str | None:
    """Poll ``SELECT 1`` over TCP. Return None when ready, else why it failed."""
    last_error = "timed out"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"mariadbd exited with code {proc.returncode}"
        try:
            conn = pymysql.connect(
                host="127.0.0.1", port=port, user="root", password="", connect_timeout=2
            )
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchone()
            finally:
                conn.close()
            return None
        except pymysql.err.MySQLError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    return f"not ready after {STARTUP_TIMEOUT:.0f}s ({last_error})"


def _create_app_user(port: int) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            for host in APP_HOSTS:
                # Parameters, not string formatting: the password contains '%'.
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (APP_USER, host, APP_PASSWORD))
                cur.execute(
                    "GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (APP_USER, host)
                )
    finally:
        conn.close()


@pytest.fixture(scope="session")
def mariadb_server(pytestconfig: pytest.Config) -> Iterator[MariaDBServer]:
    server_bin = _find_binary("mariadbd", "mysqld")
    if server_bin is None:
        _missing(MISSING_SERVER)
    install_bin = _find_binary("mariadb-install-db", "mysql_install_db")
    if install_bin is None:
        _missing(MISSING_SERVER.replace("mariadbd", "mariadb-install-db", 1))

    user = getpass.getuser()
    # Short path on purpose: the unix socket path must stay under ~107 bytes.
    tmpdir = Path(tempfile.mkdtemp(prefix="mariadb-test-"))
    datadir = tmpdir / "data"
    err_log = tmpdir / "err.log"
    console_log = tmpdir / "console.log"
    proc: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        install = subprocess.run(
            [
                install_bin,
                "--no-defaults",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--user={user}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
        if install.returncode != 0:
            output = install.stdout.decode(errors="replace")[-4000:]
            raise RuntimeError(f"{install_bin} failed with code {install.returncode}:\n{output}")

        failure = ""
        for _attempt in range(3):  # retry only if the free port got taken meanwhile
            port = _free_port()
            with console_log.open("ab") as console:
                proc = subprocess.Popen(
                    [
                        server_bin,
                        "--no-defaults",
                        f"--datadir={datadir}",
                        f"--socket={tmpdir / 'sock'}",
                        f"--port={port}",
                        "--bind-address=127.0.0.1",
                        f"--user={user}",
                        "--skip-name-resolve",
                        "--innodb-buffer-pool-size=64M",
                        f"--log-error={err_log}",
                        f"--pid-file={tmpdir / 'mariadbd.pid'}",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                )
            reason = _wait_ready(proc, port, time.monotonic() + STARTUP_TIMEOUT)
            if reason is None:
                break
            _stop(proc)
            proc = None
            failure = reason
            if "Address already in use" not in _tail(err_log, 20):
                break
        if proc is None:
            raise RuntimeError(
                f"MariaDB test server did not start: {failure}\n"
                f"--- tail of {err_log} ---\n{_tail(err_log)}\n"
                f"--- tail of {console_log} ---\n{_tail(console_log, 10)}"
            )

        _create_app_user(port)
        pytestconfig.stash[_STARTUP_SECONDS] = time.monotonic() - started
        yield MariaDBServer(
            host="127.0.0.1",
            port=port,
            root_url=f"mysql+pymysql://root@127.0.0.1:{port}",
        )
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture
def mariadb_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    name = "t_" + secrets.token_hex(5)
    url = mariadb_server.create_database(name)
    try:
        yield url
    finally:
        mariadb_server.drop_database(name)


# ---------------------------------------------------------------------------------------
# SQLite and the parametrized backend
# ---------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@dataclass(frozen=True)
class Backend:
    name: str
    url: str


@pytest.fixture(
    params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)],
    ids=["sqlite", "mariadb"],
)
def backend(request: pytest.FixtureRequest) -> Backend:
    # getfixturevalue: the server is only started when a mariadb case actually runs.
    if request.param == "sqlite":
        return Backend("sqlite", request.getfixturevalue("sqlite_url"))
    return Backend("mariadb", request.getfixturevalue("mariadb_url"))
