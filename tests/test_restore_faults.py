"""Restore and backup faults found in review (issue 14): a failed check leaves the table empty
for the next run; a column whose character set a migration changed still restores; the server
may not make PyMySQL send a file our LOAD DATA does not name; a connection killed mid-way
ends in one line, not a traceback."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pymysql
import pytest
from helpers import execute, table_digest, write_project
from sqlalchemy import create_engine
from test_restore_methods import PAIRS, _setup

from alembic_repair import Project
from alembic_repair.data.backups import backup, loaders, restore
from alembic_repair.errors import BackupCorrupt, DatabaseUnreachable

pytestmark = pytest.mark.mariadb


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.mark.parametrize(("made", "method"), PAIRS)
@pytest.mark.parametrize("way", ["direct", "through"])
def test_failed_check_leaves_the_table_empty_for_the_next_run(
        tmp_path: Path, mariadb_url: str, made: str, method: str, way: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    manifest = backup(project, method=made)
    execute(mariadb_url, "DELETE FROM post", "DELETE FROM author",
            "DELETE FROM alembic_version",
            # a trigger changes the rows as they are loaded: the check must fail
            "CREATE TRIGGER bad BEFORE INSERT ON post FOR EACH ROW "
            "SET NEW.title = CONCAT(NEW.title, '!')")
    if way == "through":  # a column type changed: loaded into the scratch schema, copied
        execute(mariadb_url, "ALTER TABLE post MODIFY title VARCHAR(300)")
    with pytest.raises(BackupCorrupt, match="table post .*post.* deleted again") as err:
        restore(project, manifest.path, yes=True, method=method)
    assert "\n" not in str(err.value)
    assert table_digest(mariadb_url)["post"][0] == 0  # not left holding unchecked rows
    execute(mariadb_url, "DROP TRIGGER bad")
    again = restore(project, manifest.path, yes=True, method=method)
    assert again.complete and again.restored.get("post") == 4


@pytest.mark.parametrize(("made", "method"), PAIRS)
def test_column_whose_character_set_changed_restores(tmp_path: Path, mariadb_url: str,
                                                    made: str, method: str) -> None:
    execute(mariadb_url, "CREATE TABLE t (id INT PRIMARY KEY, "
            "name VARCHAR(20) CHARACTER SET latin1, other VARCHAR(20))",
            "INSERT INTO t VALUES (1, CONVERT(_utf8mb4'caf\u00e9' USING latin1), 'x\u00e9'), "
            "(2, 'plain', NULL), (3, NULL, 'y')")
    project = Project.discover(write_project(tmp_path / "proj"), url=mariadb_url)
    rows = _text_rows(mariadb_url)
    manifest = backup(project, method=made)
    execute(mariadb_url, "DELETE FROM t",  # a migration converted the column
            "ALTER TABLE t MODIFY name VARCHAR(20) CHARACTER SET utf8mb4")
    report = restore(project, manifest.path, yes=True, method=method)
    assert report.complete and report.restored == {"t": 3}
    assert _text_rows(mariadb_url) == rows
    # run again (a resumed restore): the converted table holds the backup's rows, although its
    # CHECKSUM TABLE differs from the backup's; compared through the scratch schema
    again = restore(project, manifest.path, yes=True, method=method)
    assert again.complete and again.already == {"t": 3} and again.restored == {}
    execute(mariadb_url, "UPDATE t SET other = 'changed' WHERE id = 3")
    other = restore(project, manifest.path, yes=True, method=method)
    assert other.not_empty == {"t": 3} and not other.complete


def _text_rows(url: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT id, name, other FROM t ORDER BY id")]
    finally:
        engine.dispose()


# -- a server asking for a file no LOAD DATA of ours names ------------------------------------

def _packet(seq: int, body: bytes) -> bytes:
    return struct.pack("<I", len(body))[:3] + bytes([seq]) + body


def _read(sock: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 4:
        if not (more := sock.recv(4 - len(head))):
            raise EOFError
        head += more
    size, body = int.from_bytes(head[:3], "little"), b""
    while len(body) < size:
        if not (more := sock.recv(size - len(body))):
            raise EOFError
        body += more
    return head[3], body


class _Rogue:
    """A fake MySQL server on loopback that answers every query (but SET NAMES and SET
    AUTOCOMMIT) with a LOCAL INFILE request for `wanted`; what it got back is in `got`."""

    def __init__(self, wanted: bytes) -> None:
        self.wanted = wanted
        self.got: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        caps = 0xFFFFF7FF & ~(1 << 24) & ~(1 << 16)  # no SSL, no DEPRECATE_EOF, no multi
        ok = b"\x00\x00\x00\x02\x00\x00\x00"
        try:
            client.sendall(_packet(0, b"\x0a10.11.0-rogue\x00" + struct.pack("<I", 1)
                                   + b"abcdefgh\x00" + struct.pack("<H", caps & 0xFFFF)
                                   + b"\x21" + struct.pack("<H", 2)
                                   + struct.pack("<H", caps >> 16) + b"\x15" + b"\x00" * 10
                                   + b"ijklmnopqrst\x00mysql_native_password\x00"))
            seq, _ = _read(client)
            client.sendall(_packet(seq + 1, ok))
            while True:
                seq, query = _read(client)
                if not query or query[0] == 1:
                    return
                if query[1:].upper().startswith((b"SET NAMES", b"SET AUTOCOMMIT")):
                    client.sendall(_packet(1, ok))
                    continue
                client.sendall(_packet(1, b"\xfb" + self.wanted))
                data = b""
                while True:
                    seq, body = _read(client)
                    if not body:
                        break
                    data += body
                self.got.append(data)
                client.sendall(_packet(seq + 1, ok))
        except (OSError, EOFError):
            return
        finally:
            client.close()

    def close(self) -> None:
        self.sock.close()


def test_server_cannot_make_the_restore_send_another_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET\n")
    rogue = _Rogue(os.fsencode(secret))
    try:
        url = f"mysql+pymysql://app:pw@127.0.0.1:{rogue.port}/app"
        project = Project.discover(write_project(tmp_path / "proj"), url=url)
        with pytest.raises(Exception), loaders._raw_connection(  # noqa: B017,PT011
                project, local=True) as raw:  # refused: the query fails
            raw.cursor().execute(loaders._SESSION)
        assert rogue.got and all(data == b"" for data in rogue.got)  # asked, never sent
        # a LOAD DATA of ours allows its own file only
        token = loaders._ALLOWED.set(os.fsencode(str(tmp_path / "post.tsv")))
        try:
            with pytest.raises(loaders.LocalFileRefused):
                loaders._check_local_file(os.fsencode(secret))
            loaders._check_local_file(os.fsencode(str(tmp_path / "post.tsv")))
        finally:
            loaders._ALLOWED.reset(token)
        # outside our loaders PyMySQL behaves as it always did (its other users unchanged)
        plain = pymysql.connect(host="127.0.0.1", port=rogue.port, user="app", password="pw",
                                local_infile=True, autocommit=True)
        try:
            plain.cursor().execute("SELECT 1")
        finally:
            plain.close()
        assert rogue.got[-1] == b"TOP-SECRET\n"
    finally:
        rogue.close()


# -- a connection killed part-way ---------------------------------------------------------------

_KILL_BACKUP = """
import sys
import pymysql
from alembic_repair.cli import app as cli
from alembic_repair.data.backups import python_method

host, port, user, password, database = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
counted = python_method.table_checksum_sql

def then_kill(conn, name, schema=None):  # the backup's connection, killed from another
    found = counted(conn, name, schema)
    other = pymysql.connect(host=host, port=port, user=user, password=password,
                            autocommit=True)
    with other.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s", (database,))
        for (i,) in cur.fetchall():
            cur.execute(f"KILL CONNECTION {i}")
    other.close()
    return found

python_method.table_checksum_sql = then_kill
cli.main(["backup", "--method", "python"])
"""


def test_connection_killed_during_python_backup_is_one_line(tmp_path: Path,
                                                            mariadb_url: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    url = project.url.parsed
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILL_BACKUP), str(url.host), str(url.port),
         str(url.username), url.password or "", str(url.database)],
        capture_output=True, text=True, timeout=120, cwd=project.root,
        env={**os.environ, "DATABASE_URL": mariadb_url,
             "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode not in (0, 70), run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, \
        run.stderr
    assert "lost" in run.stderr or "gone away" in run.stderr, run.stderr


@pytest.mark.parametrize("made", ["python", "dump"])
def test_connection_killed_during_python_restore_is_one_line(tmp_path: Path, mariadb_url: str,
                                                             made: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    manifest = backup(project, method=made)
    execute(mariadb_url, "DELETE FROM post", "DELETE FROM author", "DELETE FROM alembic_version")
    url = project.url.parsed

    def kill(name: str, done: int, total: int | None) -> None:  # every connection of ours
        other = pymysql.connect(host=url.host, port=url.port, user=url.username,
                                password=url.password or "", autocommit=True)
        with other.cursor() as cur:
            cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s "
                        "AND ID <> CONNECTION_ID()", (url.database,))
            for (i,) in cur.fetchall():
                cur.execute(f"KILL CONNECTION {i}")
        other.close()

    with pytest.raises(DatabaseUnreachable, match="connection to the server was lost") as err:
        restore(project, manifest.path, yes=True, method="python", progress=kill)
    assert "\n" not in str(err.value)
    assert restore(project, manifest.path, yes=True, method="python").complete  # rerun
    assert table_digest(mariadb_url)["post"][0] == 4


def test_driver_message_of_an_empty_error() -> None:
    from sqlalchemy.exc import InterfaceError

    from alembic_repair.engine.driver_errors import driver_message

    err = InterfaceError("ROLLBACK", None, pymysql.err.InterfaceError(0, ""))
    assert driver_message(err) == "InterfaceError 0"
