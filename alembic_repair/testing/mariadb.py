"""A throwaway MariaDB server: its own data folder in a temp dir, loopback, a free port.

Used by this project's tests and benchmarks, and usable in a project's own test suite::

    with throwaway_server() as server:
        url = server.create_database("shop")

It needs the Debian package ``mariadb-server`` (``mariadbd`` and ``mariadb-install-db``);
`MissingServer` says so when they are not installed. Starting takes about a second.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql
from sqlalchemy.engine import URL

APP_USER = "app"
#: Every character that breaks a naively formatted URL: % @ : / # ?
APP_PASSWORD = "p%ss@w:rd/#?"
APP_HOSTS = ("%", "127.0.0.1", "localhost")
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
_DB_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
INSTALL_HINT = "install it with `apt-get install mariadb-server`"


class MissingServer(RuntimeError):
    """mariadbd or mariadb-install-db is not installed."""


@dataclass(frozen=True)
class MariaDBServer:
    host: str
    port: int
    root_url: str
    app_password: str = APP_PASSWORD
    started_in: float = 0.0

    def _connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.host, port=self.port, user="root", password="",
                               autocommit=True)

    def create_database(self, name: str) -> str:
        """Create an empty utf8mb4 database and return its SQLAlchemy URL (as root)."""
        _check_name(name)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                            "COLLATE utf8mb4_unicode_ci")
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
        """URL for the ``app`` user, its password correctly escaped."""
        return URL.create("mysql+pymysql", username=APP_USER, password=self.app_password,
                          host=self.host, port=self.port, database=database,
                          ).render_as_string(hide_password=False)


def _check_name(name: str) -> None:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"unsafe database name for the throwaway server: {name!r}")


def find_binary(*candidates: str) -> str | None:
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
    """Poll ``SELECT 1`` over TCP; None when ready, else why not."""
    last_error = "timed out"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"mariadbd exited with code {proc.returncode}"
        try:
            conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="",
                                   connect_timeout=2)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            finally:
                conn.close()
            return None
        except pymysql.err.MySQLError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    return f"not ready after {STARTUP_TIMEOUT:.0f}s ({last_error})"


def _create_app_user(port: int) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password="",
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            for host in APP_HOSTS:  # parameters, not formatting: the password has a '%'
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (APP_USER, host, APP_PASSWORD))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION",
                            (APP_USER, host))
    finally:
        conn.close()


@contextmanager
def throwaway_server(buffer_pool: str = "64M") -> Iterator[MariaDBServer]:
    """Start a private MariaDB on 127.0.0.1, yield it, stop it and delete its files."""
    server_bin = find_binary("mariadbd", "mysqld")
    install_bin = find_binary("mariadb-install-db", "mysql_install_db")
    if server_bin is None or install_bin is None:
        missing = "mariadbd" if server_bin is None else "mariadb-install-db"
        raise MissingServer(f"{missing} not found: {INSTALL_HINT}")
    user = getpass.getuser()
    tmpdir = Path(tempfile.mkdtemp(prefix="mariadb-"))  # short: socket paths are limited
    datadir, err_log, console_log = tmpdir / "data", tmpdir / "err.log", tmpdir / "console.log"
    proc: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        install = subprocess.run(
            [install_bin, "--no-defaults", f"--datadir={datadir}",
             "--auth-root-authentication-method=normal", "--skip-test-db", f"--user={user}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
        if install.returncode != 0:
            output = install.stdout.decode(errors="replace")[-4000:]
            raise RuntimeError(f"{install_bin} failed with code {install.returncode}:\n{output}")
        # A private tmpdir: large information_schema queries spill to on-disk temporary
        # tables, and a shared /tmp may be cleaned under the server's feet.
        (tmpdir / "tmp").mkdir()
        failure = ""
        for _attempt in range(3):  # retry only if the free port got taken meanwhile
            port = _free_port()
            with console_log.open("ab") as console:
                proc = subprocess.Popen(
                    [server_bin, "--no-defaults", f"--datadir={datadir}",
                     f"--socket={tmpdir / 'sock'}", f"--port={port}",
                     "--bind-address=127.0.0.1", f"--user={user}", "--skip-name-resolve",
                     f"--innodb-buffer-pool-size={buffer_pool}", f"--tmpdir={tmpdir / 'tmp'}",
                     f"--log-error={err_log}",
                     f"--pid-file={tmpdir / 'mariadbd.pid'}"],
                    stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT)
            reason = _wait_ready(proc, port, time.monotonic() + STARTUP_TIMEOUT)
            if reason is None:
                break
            _stop(proc)
            proc, failure = None, reason
            if "Address already in use" not in _tail(err_log, 20):
                break
        if proc is None:
            raise RuntimeError(
                f"MariaDB throwaway server did not start: {failure}\n"
                f"--- tail of {err_log} ---\n{_tail(err_log)}\n"
                f"--- tail of {console_log} ---\n{_tail(console_log, 10)}")
        _create_app_user(port)
        yield MariaDBServer("127.0.0.1", port, f"mysql+pymysql://root@127.0.0.1:{port}",
                            started_in=time.monotonic() - started)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmpdir, ignore_errors=True)
