"""Every failure to read the database shows in doctor's report and JSON (issue 16): the text
says the database was not read and why, in one line with the password masked, never "healthy"
or a bare "0 error(s)"; the JSON's ``state.unread`` says what and why, ``healthy`` is false;
the exit code stays the error's own (3 unreachable or refused login, 2 not a database)."""

from __future__ import annotations

import json
import secrets
import socket
from pathlib import Path

import pytest
from helpers import cli

from alembic_repair.testing.mariadb import MariaDBServer
from alembic_repair.testing.scenarios import build, execute


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One healthy SQLite project, pointed at each broken database by DATABASE_URL."""
    base = tmp_path_factory.mktemp("read_failures")
    root = base / "proj"
    build("healthy", root, f"sqlite:///{base / 'app.db'}")
    return root


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check(root: Path, url: str, *, code: int, kind: str, where: str, says: str,
           secret: str | None) -> None:
    env = {"XDG_CACHE_HOME": str(root.parent / "cache")}
    text = cli("doctor", cwd=root, url=url, env=env, timeout=60)
    assert text.code == code, text
    lines = text.stdout.splitlines()
    error = next(line for line in lines if line.lstrip().startswith("error  "))
    assert says in error, text
    assert "database not read" in lines[-1] and "not checked" in lines[-1], text
    assert "healthy" not in text.stdout and "problems found" not in text.stdout, text
    assert text.stderr.splitlines() == [f"error: {error.split('error  ', 1)[1]}"], text
    as_json = cli("doctor", "--format", "json", cwd=root, url=url, env=env, timeout=60)
    assert as_json.code == code, as_json
    data = json.loads(as_json.stdout)
    assert data["healthy"] is False
    (unread,) = data["state"]["unread"]
    assert unread == {"what": "database", "where": where, "kind": kind,
                      "error": error.split("error  ", 1)[1], "exit_code": code}
    assert data["state"]["database"] == ("unreadable" if kind == "unusable" else "unreachable")
    if secret is not None:
        assert secret not in text.output and secret not in as_json.output


def test_unreachable_port(project: Path) -> None:
    port = _closed_port()
    _check(project, f"mysql+pymysql://app:s3cret-pw@127.0.0.1:{port}/app", code=3,
           kind="unreachable", where=f"127.0.0.1:{port}",
           says=f"cannot reach the database at 127.0.0.1:{port} (connection refused",
           secret="s3cret-pw")


def test_sqlite_file_that_is_not_a_database(project: Path) -> None:
    bad = project.parent / "notes.db"
    bad.write_text("this is a text file, not a database\n")
    _check(project, f"sqlite:///{bad}", code=2, kind="unusable", where=f"SQLite file {bad}",
           says=f"{bad} is not an SQLite database (file is not a database;", secret=None)


def test_wrong_password(project: Path, mariadb_url: str, mariadb_server: MariaDBServer) -> None:
    user, password = "ar_" + secrets.token_hex(4), "right-" + secrets.token_hex(4)
    execute(mariadb_url, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    try:
        wrong = "wrong-" + secrets.token_hex(4)
        database = mariadb_url.rsplit("/", 1)[1]
        where = f"{mariadb_server.host}:{mariadb_server.port}"
        _check(project, f"mysql+pymysql://{user}:{wrong}@{where}/{database}", code=3,
               kind="login_refused", where=where, says=user, secret=wrong)
    finally:
        execute(mariadb_url, f"DROP USER '{user}'@'%'")
