"""Connection-level faults: each is one line with its exit code, no traceback, no password,
and the project's files and database are byte-identical afterwards.

SQLite: a file another writer keeps locked (bounded wait, then who holds it), a file that is no
database, a folder that is missing, a file, or not writable. MariaDB: a user without grants on
the database (1044), a database that does not exist (1049), a password outside latin-1, a
loopback port where nothing listens. URL options that fail before any socket (an option file
without a header, a repeated key, a bad number, a missing CA file) and an unreadable or invalid
pyproject.toml: exit 2, never exit 70, never a line of the file read. Only loopback is ever
contacted.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pymysql
import pytest
from helpers import Run, cli, table_digest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from alembic_repair.data.backups.sqlite_method import sqlite_copy
from alembic_repair.engine.endpoint import BUSY_TIMEOUT_ENV
from alembic_repair.engine.privileges import missing_grant
from alembic_repair.errors import LockTimeout

from .conftest import Fault

#: A short bounded wait keeps the lock cases fast; the default is 5 s.
FAST = {BUSY_TIMEOUT_ENV: "0.5"}

SQLITE = pytest.mark.parametrize("fault", ["sqlite"], indirect=True)
MARIADB = pytest.mark.parametrize("fault", [pytest.param("mariadb", marks=pytest.mark.mariadb)],
                                  indirect=True)


Secrets = set[str] | frozenset[str]


def state(root: Path) -> dict[str, str]:
    """Every path under `root` with the sha256 of its bytes (databases included)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        rel = str(path.relative_to(root))
        found[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def spellings(url: str) -> set[str]:
    password = make_url(url).password
    if not password:
        return set()
    return {password, quote(password, safe=""), quote_plus(password)}


def one_error_line(run: Run, code: int, *parts: str, secrets: Secrets = frozenset()) -> str:
    """The run failed with `code` and exactly one line on stderr holding `parts` in order."""
    assert run.code == code, run
    assert "Traceback" not in run.output, run
    assert not any(s in run.output for s in secrets), run
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run
    position = 0
    for part in parts:
        found = lines[0].find(part, position)
        assert found >= 0, (part, lines[0])
        position = found + len(part)
    return lines[0]


def doctor_line(run: Run, code: int, *parts: str, secrets: Secrets = frozenset()) -> None:
    """doctor reports a database it cannot use as one line of its report, with its code."""
    assert run.code == code, run
    assert "Traceback" not in run.output and len(run.stderr.splitlines()) <= 1, run
    assert not any(s in run.output for s in secrets), run
    assert any(all(p in line for p in parts) for line in run.output.splitlines()), run


# -- SQLite: another writer holds the file -------------------------------------------------------

Holder = Callable[[str], "subprocess.Popen[str]"]

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute(sys.argv[2])
conn.execute("UPDATE author SET name = 'held' WHERE id = 1")
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(fault: Fault) -> Iterator[Holder]:
    """Start a process that holds the case's SQLite file in a write transaction."""
    started: list[subprocess.Popen[str]] = []

    def start(begin: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(fault.root / "app.db"), begin],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)
    # the killed writer's hot journal is rolled back by the next reader
    table_digest(fault.url)


def _held(fault: Fault, holder: Holder, begin: str
          ) -> tuple[subprocess.Popen[str], dict[str, tuple[int, str]], dict[str, str]]:
    """The rows before the holder starts, and the files (its journal included) once it holds."""
    rows = table_digest(fault.url)
    proc = holder(begin)
    return proc, rows, state(fault.root)


def _released(fault: Fault, proc: subprocess.Popen[str]) -> dict[str, tuple[int, str]]:
    """The rows once the holder is gone (its uncommitted change never reached the file)."""
    proc.kill()
    proc.wait(timeout=10)
    return table_digest(fault.url)


@SQLITE
@pytest.mark.parametrize("command", ["fix --yes", "backup"])
def test_sqlite_locked_by_another_writer(fault: Fault, holder: Holder,
                                        command: str) -> None:
    proc, rows, files = _held(fault, holder, "BEGIN EXCLUSIVE")
    started = time.monotonic()
    run = cli(*command.split(), cwd=fault.root, url=fault.url, env=FAST, timeout=60)
    elapsed = time.monotonic() - started
    path = (fault.root / "app.db").resolve()
    one_error_line(run, 3, f"SQLite file {path} is locked by another writer (held by pid "
                   f"{proc.pid} (", "waited 0.5 s; URL from DATABASE_URL): stop that process "
                   "or let it finish, then run again (", BUSY_TIMEOUT_ENV, " sets the wait)")
    assert elapsed < 30
    assert state(fault.root) == files
    assert _released(fault, proc) == rows


@SQLITE
def test_sqlite_locked_doctor_reports_it(fault: Fault, holder: Holder) -> None:
    proc, rows, files = _held(fault, holder, "BEGIN EXCLUSIVE")
    run = cli("doctor", cwd=fault.root, url=fault.url, env=FAST, timeout=60)
    doctor_line(run, 3, "is locked by another writer", f"held by pid {proc.pid} (")
    assert state(fault.root) == files
    assert _released(fault, proc) == rows


@SQLITE
def test_sqlite_write_lock_met_mid_run(fault: Fault, holder: Holder) -> None:
    """A writer holding RESERVED lets us read but not write: the write (met after
    connecting) waits its bounded time, then gives the same line."""
    proc, rows, files = _held(fault, holder, "BEGIN IMMEDIATE")
    run = cli("trash", "drop", "post", "--yes", cwd=fault.root, url=fault.url, env=FAST)
    one_error_line(run, 3, "is locked by another writer (held by pid", f"{proc.pid} (")
    assert state(fault.root) == files
    assert _released(fault, proc) == rows


@SQLITE
def test_sqlite_backup_copy_is_bounded(fault: Fault, holder: Holder,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's `Connection.backup` retries a busy source forever; ours gives up."""
    monkeypatch.setenv(BUSY_TIMEOUT_ENV, "0.3")
    path = (fault.root / "app.db").resolve()
    # connected before the lock (only the copy can wait), with the busy wait backups.py sets
    source = sqlite3.connect(str(path), timeout=0.3)
    proc = holder("BEGIN EXCLUSIVE")
    started = time.monotonic()
    try:
        with pytest.raises(LockTimeout, match=f"held by pid {proc.pid} "):
            sqlite_copy(source, fault.root / "copy.db", path)
    finally:
        source.close()
    assert time.monotonic() - started < 10


# -- SQLite: the file or its folder is wrong ----------------------------------------------------


@SQLITE
@pytest.mark.parametrize("command", ["doctor", "bootstrap"])
def test_sqlite_file_is_not_a_database(fault: Fault, command: str) -> None:
    db = fault.root / "app.db"
    db.write_text("this is a text file, not a database\n")
    files = state(fault.root)
    run = cli(*command.split(), cwd=fault.root, url=fault.url, timeout=60)
    one_error_line(run, 2, f"{db.resolve()} is not an SQLite database (file is not a database;",
                   "URL from DATABASE_URL): fix the path in the URL, or move that file away")
    assert state(fault.root) == files


@SQLITE
def test_sqlite_folder_missing(fault: Fault) -> None:
    files = state(fault.root)
    url = f"sqlite:///{fault.root / 'missing' / 'app.db'}"
    run = cli("bootstrap", cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 3, f"folder {fault.root / 'missing'} does not exist; create it or fix "
                   "the path (URL from DATABASE_URL)")
    assert state(fault.root) == files


@SQLITE
def test_sqlite_folder_is_a_file(fault: Fault) -> None:
    files = state(fault.root)
    url = f"sqlite:///{fault.root / 'pyproject.toml' / 'app.db'}"
    run = cli("trash", "drop", "post", "--yes", cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 3, f"folder {fault.root / 'pyproject.toml'} is a file, not a folder; "
                   "fix the path")
    assert state(fault.root) == files


@SQLITE
def test_sqlite_folder_not_writable(fault: Fault) -> None:
    """/proc takes no new file, even for root: bootstrap must create the database there."""
    files = state(fault.root)
    run = cli("bootstrap", cwd=fault.root, url="sqlite:////proc/alembic-repair.db", timeout=60)
    one_error_line(run, 3, "cannot create SQLite file /proc/alembic-repair.db: folder /proc is "
                   "not writable here")
    assert state(fault.root) == files
    assert not Path("/proc/alembic-repair.db").exists()


# -- MariaDB: grants, databases, passwords, a closed port ---------------------------------------


@MARIADB
@pytest.mark.parametrize("command", ["bootstrap", "fix --yes", "backup"])
def test_mariadb_user_without_grants_on_the_database(fault: Fault, command: str) -> None:
    url = fault.user("nogrant", "n0-Grant%pw", "USAGE")
    before = state(fault.root), table_digest(fault.admin_url)
    run = cli(*command.split(), cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 3, f"user 'nogrant'@'127.0.0.1' may not use database '{fault.database}'",
                   f"GRANT ALL PRIVILEGES ON `{fault.database}`.* TO 'nogrant'@'127.0.0.1'",
                   secrets=spellings(url))
    assert "wrong password" not in run.stderr
    assert (state(fault.root), table_digest(fault.admin_url)) == before


@MARIADB
def test_mariadb_user_without_grants_doctor(fault: Fault) -> None:
    url = fault.user("nogrant", "n0-Grant%pw", "USAGE")
    before = state(fault.root), table_digest(fault.admin_url)
    run = cli("doctor", cwd=fault.root, url=url, timeout=60)
    doctor_line(run, 3, "may not use database", "GRANT ALL PRIVILEGES ON", secrets=spellings(url))
    assert (state(fault.root), table_digest(fault.admin_url)) == before


@MARIADB
def test_mariadb_limited_user_unknown_database(fault: Fault) -> None:
    """A user without global rights cannot even learn the database is missing: 1044 again,
    and the line names both ways out."""
    url = fault.user("limited", "l1mited-pw", "ALL PRIVILEGES")
    url = make_url(url).set(database="no_such_db").render_as_string(hide_password=False)
    before = state(fault.root)
    run = cli("trash", "list", cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 3, "user 'limited'@'127.0.0.1' may not use database 'no_such_db', or it "
                   "does not exist", "GRANT ALL PRIVILEGES ON `no_such_db`.*",
                   "CREATE DATABASE `no_such_db` if it is missing", secrets=spellings(url))
    assert state(fault.root) == before


@MARIADB
def test_mariadb_unknown_database(fault: Fault) -> None:
    url = make_url(fault.url).set(database="no_such_db").render_as_string(hide_password=False)
    before = state(fault.root)
    run = cli("bootstrap", cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 3, "has no database 'no_such_db' (URL from DATABASE_URL): create it with "
                   "CREATE DATABASE `no_such_db`", secrets=spellings(url))
    assert state(fault.root) == before
    assert fault.scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = "
                        "'no_such_db'") == 0


PASSWORD_OUTSIDE_LATIN1 = "pä€ss-✓"


@MARIADB
@pytest.mark.parametrize("command", ["bootstrap", "trash list"])
def test_mariadb_password_outside_latin1_works(fault: Fault, command: str) -> None:
    """PyMySQL encodes a password as latin-1; ours reaches it as UTF-8 bytes, which is what
    an account created over a utf8mb4 session was hashed from."""
    url = fault.user("unicode", PASSWORD_OUTSIDE_LATIN1, "ALL PRIVILEGES")
    before = state(fault.root), table_digest(fault.admin_url)
    run = cli(*command.split(), cwd=fault.root, url=url, timeout=60)
    assert run.code == 0, run
    assert not any(s in run.output for s in spellings(url))
    assert (state(fault.root), table_digest(fault.admin_url)) == before


@MARIADB
def test_mariadb_wrong_password_outside_latin1(fault: Fault) -> None:
    url = fault.user("unicode", PASSWORD_OUTSIDE_LATIN1, "ALL PRIVILEGES")
    wrong = make_url(url).set(password="wrong-€-pw").render_as_string(hide_password=False)
    before = state(fault.root), table_digest(fault.admin_url)
    run = cli("fix", "--yes", cwd=fault.root, url=wrong, timeout=60)
    one_error_line(run, 3, "refused the login for user 'unicode' (wrong password",
                   secrets=spellings(wrong) | spellings(url))
    assert (state(fault.root), table_digest(fault.admin_url)) == before


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


@MARIADB
@pytest.mark.parametrize("command", ["backup", "trash drop post --yes"])
def test_mariadb_nothing_listens_on_the_port(fault: Fault, command: str) -> None:
    port = _closed_port()
    url = make_url(fault.url).set(port=port).render_as_string(hide_password=False)
    before = state(fault.root), table_digest(fault.admin_url)
    run = cli(*command.split(), cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 3, f"cannot reach the database at 127.0.0.1:{port} (connection refused; "
                   "URL from DATABASE_URL): start the server", secrets=spellings(url))
    assert (state(fault.root), table_digest(fault.admin_url)) == before


# -- URL options that fail before any socket: exit 2, one line, nothing read shown ---------------

SECRET_IN_FILE = "S3cretXYZ"
#: Only localhost on port 1 is named: every case fails before a socket is opened.
URL_BASE = "mysql+pymysql://app:Url-Pw-9q@localhost:1/db"


@pytest.fixture
def nohead(tmp_path: Path) -> Path:
    """A MySQL option file without a [client] header: configparser's message quotes line 1."""
    path = tmp_path / "opts" / "my.cnf"
    path.parent.mkdir()
    path.write_text(f"password={SECRET_IN_FILE}\nuser=app\n")
    return path


@SQLITE
@pytest.mark.parametrize("command", ["doctor", "backup", "trash drop post --yes"])
def test_option_file_without_header_never_shows_its_lines(fault: Fault, nohead: Path,
                                                          command: str) -> None:
    url = f"{URL_BASE}?read_default_file={nohead}"
    files = state(fault.root)
    run = cli(*command.split(), cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 2, f"cannot read option file {nohead} (MissingSectionHeaderError)",
                   secrets={SECRET_IN_FILE, "password=", *spellings(url)})
    assert state(fault.root) == files


@SQLITE
def test_option_file_that_is_not_one_never_shows_its_lines(fault: Fault) -> None:
    url = f"{URL_BASE}?read_default_file=/etc/passwd"
    first = Path("/etc/passwd").read_text().splitlines()[0]
    files = state(fault.root)
    run = cli("doctor", cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 2, "cannot read option file /etc/passwd (MissingSectionHeaderError)",
                   secrets={first, "root:", *spellings(url)})
    assert state(fault.root) == files


URL_MISTAKES = [
    ("host=127.0.0.1&host=10.0.0.1", "the URL gives host= more than once"),
    ("connect_timeout=abc", "SQLAlchemy cannot read the URL's options (invalid literal"),
    ("ssl_ca=/nonexistent/ca.pem", "cannot read file /nonexistent/ca.pem (ssl_ca=) named in "
     "the URL's options (FileNotFoundError), connecting to localhost:1"),
]


@SQLITE
@pytest.mark.parametrize(("query", "says"), URL_MISTAKES, ids=[q for q, _ in URL_MISTAKES])
@pytest.mark.parametrize("command", ["doctor", "fix --yes"])
def test_url_mistakes_are_exit_2_not_70(fault: Fault, query: str, says: str,
                                        command: str) -> None:
    url = f"{URL_BASE}?{query}"
    files = state(fault.root)
    run = cli(*command.split(), cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 2, says, secrets=spellings(url))
    assert "internal error" not in run.output
    assert state(fault.root) == files


@SQLITE
@pytest.mark.parametrize("backend_name", ["mysql", "mariadb"])
def test_a_url_without_a_driver_points_at_pymysql(fault: Fault, backend_name: str) -> None:
    """`mysql://` means mysqlclient (a C build, not installed): the line says what to write."""
    url = f"{backend_name}://app:S3cret@127.0.0.1:1/app"
    files = state(fault.root)
    run = cli("doctor", cwd=fault.root, url=url, timeout=60)
    one_error_line(run, 2, f"DATABASE_URL: the driver for '{backend_name}' is not installed "
                   f"(MySQLdb); write the URL as {backend_name}+pymysql://... (PyMySQL is "
                   "installed with alembic-repair)", secrets=spellings(url))
    assert state(fault.root) == files


# -- pyproject.toml: one reader, one line ------------------------------------------------------


@SQLITE
@pytest.mark.parametrize("command", ["doctor", "trash drop post --yes", "trash list"])
def test_pyproject_not_utf8(fault: Fault, command: str) -> None:
    path = fault.root / "pyproject.toml"
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    files, rows = state(fault.root), table_digest(fault.url)
    run = cli(*command.split(), cwd=fault.root, url=fault.url, timeout=60)
    if command == "doctor":  # a problem in the user's project: a finding, exit 1
        doctor_line(run, 1, "AR114", "pyproject.toml: not UTF-8 text (byte ", "); save it as UTF-8")
    else:
        one_error_line(run, 2, f"{path}: not UTF-8 text (byte ", "); save it as UTF-8")
    assert state(fault.root) == files
    assert table_digest(fault.url) == rows


@SQLITE
def test_invalid_ignore_tables_is_a_doctor_finding(fault: Fault) -> None:
    """doctor reported healthy (exit 0) while every other command stopped on it: now a
    finding, exit 1 (a problem in the user's project, not in doctor's command line)."""
    path = fault.root / "pyproject.toml"
    path.write_text(path.read_text() + 'ignore_tables = "legacy"\n')
    files, rows = state(fault.root), table_digest(fault.url)
    run = cli("doctor", cwd=fault.root, url=fault.url, timeout=60)
    doctor_line(run, 1, "AR114", "ignore_tables must be a list of table names")
    other = cli("trash", "list", cwd=fault.root, url=fault.url, timeout=60)
    one_error_line(other, 2, "pyproject.toml: [tool.alembic_repair] ignore_tables must be a list")
    assert state(fault.root) == files
    assert table_digest(fault.url) == rows


@MARIADB
def test_privilege_message_never_repeats_the_password(fault: Fault) -> None:
    """A driver text that quotes the password (as some do with their options) is redacted in
    the GRANT line, like every message built from a driver's exception."""
    password = make_url(fault.url).password
    assert password
    orig = pymysql.err.OperationalError(1142, f"DROP command denied (auth {password})\nmore")
    err = DBAPIError.instance("DROP TABLE post", {}, orig, pymysql.err.Error)
    engine = create_engine(fault.url)
    try:
        with engine.connect() as conn:
            message = str(missing_grant(conn, "trash drop post", err, "DROP", "`db`.*", "why"))
    finally:
        engine.dispose()
    assert password not in message and "\n" not in message
    assert "GRANT DROP ON `db`.* TO 'app'@" in message
