"""The MySQL/MariaDB fast path (mariadb-dump + mariadb client): secrets, verify, progress."""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from helpers import execute, table_digest, write_project
from sqlalchemy.engine import make_url

from alembic_repair import BackupCorrupt, Project
from alembic_repair.data.backups import backup, dump_method, dump_tools, restore, verify
from alembic_repair.data.backups.dump_format import DumpCounter, dump_counts
from alembic_repair.data.backups.manifest import file_sha256, seal_of

pytestmark = pytest.mark.skipif(dump_tools() is None, reason="mariadb-dump/mariadb not on PATH")

PASSWORD = 'p@ss w#rd%"x\\y'
SECRET = quote(PASSWORD, safe="")


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _setup(tmp_path: Path, url: str) -> Project:
    execute(url, "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(100), "
                 "photo BLOB, note TEXT)",
            "INSERT INTO author VALUES (1, 'it''s (a), test', X'00FF28292C', 'a\\nb;\\n'), "
            "(2, NULL, NULL, ''), (3, '`x`', X'', 'INSERT INTO `author` VALUES (9)')")
    return Project.discover(write_project(tmp_path / "proj"), url=url)


def _user_url(mariadb_url: str) -> str:
    """A user with a password full of characters that need quoting, on the test database."""
    url = make_url(mariadb_url)
    user = "ar_" + os.urandom(3).hex()
    escaped = PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    execute(mariadb_url, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{escaped}'",
            f"GRANT ALL ON `{url.database}`.* TO '{user}'@'%'",
            f"GRANT ALL ON `\\_ar\\_restore\\_%`.* TO '{user}'@'%'",
            "GRANT RELOAD, PROCESS ON *.* TO " f"'{user}'@'%'")
    secret = quote(PASSWORD, safe="")
    return f"mysql+pymysql://{user}:{secret}@{url.host}:{url.port}/{url.database}"


def test_password_never_on_a_command_line(tmp_path: Path, mariadb_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = _user_url(mariadb_url)
    project = _setup(tmp_path, url)
    seen: list[tuple[list[str], int, str]] = []
    real = subprocess.Popen

    def spy(args: list[str], *rest: Any, **kwargs: Any) -> Any:
        option = next(a for a in args if a.startswith("--defaults-extra-file="))
        path = option.split("=", 1)[1]
        assert path.startswith("/dev/fd/")  # an inherited pipe, never a file (private.py)
        fd = int(path.rsplit("/", 1)[1])
        assert fd in kwargs["pass_fds"] and stat.S_ISFIFO(os.fstat(fd).st_mode)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        content = b""
        while chunk := os.read(fd, 65536):  # the write end is closed: this ends
            content += chunk
        again, write = os.pipe()  # put the settings back for the tool
        os.write(write, content)
        os.close(write)
        os.dup2(again, fd)
        os.close(again)
        seen.append((list(args), mode, content.decode()))
        return real(args, *rest, **kwargs)

    monkeypatch.setattr(dump_method.subprocess, "Popen", spy)
    before = table_digest(mariadb_url)
    manifest = backup(project, method="dump")
    assert manifest.method == "dump" and manifest.table("author").rows == 3  # type: ignore
    execute(mariadb_url, "DELETE FROM author")
    report = restore(project, manifest.path, yes=True)
    assert report.restored == {"author": 3} and report.complete
    assert table_digest(mariadb_url) == before
    assert len(seen) == 2  # one dump, one client
    for args, mode, content in seen:
        assert args.index(next(a for a in args if a.startswith("--defaults-extra-file"))) == 1
        assert not any(PASSWORD in a or SECRET in a for a in args)
        assert mode == 0o600 and "password=" in content
    for file in manifest.path.iterdir():
        assert PASSWORD.encode() not in file.read_bytes()
        assert SECRET.encode() not in file.read_bytes()


def _rewrite(path: Path, data: bytes) -> None:
    """Replace the dump and reseal the manifest, as a careful forger would."""
    file = path / "data.sql.gz"
    file.write_bytes(gzip.compress(data))
    doc = json.loads((path / "manifest.json").read_text())
    doc["files"]["data.sql.gz"] = file_sha256(file)
    doc["files"].pop("data.sql", None)
    for table in doc["tables"]:
        table["file"] = "data.sql.gz"
    doc["seal"] = seal_of(doc)
    (path / "manifest.json").write_text(json.dumps(doc))


def test_verify_reads_the_dump_without_a_server(tmp_path: Path, mariadb_url: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    manifest = backup(project, method="dump")
    data = (manifest.path / "data.sql").read_bytes()
    assert b"-- Dump completed" in data and b"0x00FF28292C" in data  # --hex-blob
    assert dump_counts(manifest.path / "data.sql") == {"author": 3}
    (manifest.path / "data.sql").unlink()

    _rewrite(manifest.path, data.rsplit(b"-- Dump completed", 1)[0])
    with pytest.raises(BackupCorrupt, match="incomplete"):
        verify(manifest.path)
    one_less = data.replace(b",\n(2,NULL", b";\nINSERT INTO `x` (`id`) VALUES (2,NULL")
    _rewrite(manifest.path, one_less)
    with pytest.raises(BackupCorrupt, match="x"):
        verify(manifest.path)
    (manifest.path / "data.sql.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(BackupCorrupt, match="data.sql.gz"):
        verify(manifest.path)


def test_counter_on_both_dump_layouts() -> None:
    counter = DumpCounter()
    counter.feed(b"INSERT INTO `a` (`id`, `s`) VALUES (1,'x\\'),(y'),(2,'(')," + b"\n")
    counter.feed(b"(3,NULL);\n-- (comment) ),(\nINSERT INTO `b``c` (`id`) VALUES (1),(2);\n")
    assert counter.rows == {"a": 3, "b`c": 2}
    counter = DumpCounter()  # one row per line, no "),(" at all
    counter.feed(b"INSERT INTO `a` (`id`) VALUES (1,'x\\'y'),\n(2,'(a'),\n")
    counter.feed(b"(3,'\\n(');\n--\n-- Dumping data for table `b`\n--\n")
    counter.feed(b"INSERT INTO `b` (`id`) VALUES (1);\nINSERT INTO `b` (`id`) VALUES (2);\n")
    assert counter.rows == {"a": 3, "b": 2}


def test_compressed_dump_and_restore_into_other_column_order(tmp_path: Path,
                                                               mariadb_url: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    before = table_digest(mariadb_url)
    manifest = backup(project, method="dump", compress=True)
    assert manifest.table("author").file == "data.sql.gz"  # type: ignore[union-attr]
    assert verify(manifest.path).tables == manifest.tables
    execute(mariadb_url, "DROP TABLE author",
            "CREATE TABLE author (note TEXT, id INTEGER PRIMARY KEY, photo BLOB, "
            "name VARCHAR(200))")  # other order, a wider column: through the scratch schema
    report = restore(project, manifest.path, yes=True)
    assert report.restored == {"author": 3} and report.complete
    from sqlalchemy import create_engine, text

    engine = create_engine(mariadb_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, name, photo, note FROM author ORDER BY id")).all()
        leftovers = conn.execute(text("SHOW DATABASES LIKE '\\_ar\\_restore\\_%'")).all()
    engine.dispose()
    assert leftovers == []
    assert [tuple(r) for r in rows] == [
        (1, "it's (a), test", b"\x00\xff(),", "a\nb;\n"), (2, None, None, ""),
        (3, "`x`", b"", "INSERT INTO `author` VALUES (9)")]
    assert before["author"][0] == 3


def test_progress_is_reported(tmp_path: Path, backend) -> None:
    execute(backend.url, "CREATE TABLE big (id INTEGER PRIMARY KEY, label VARCHAR(40))",
            "INSERT INTO big VALUES " + ", ".join(f"({i}, 'row {i}')" for i in range(1, 5001)))
    project = Project.discover(write_project(tmp_path / "proj"), url=backend.url)
    methods = ["python"] if backend.name == "sqlite" else ["python", "dump"]
    for method in methods:
        calls: list[tuple[str, int, int | None]] = []

        def record(name: str, done: int, total: int | None,
                   calls: list[tuple[str, int, int | None]] = calls) -> None:
            calls.append((name, done, total))

        manifest = backup(project, tmp_path / method, method=method, progress=record)
        assert calls and all(name == "big" for name, _, _ in calls)
        assert calls[-1][1] == 5000
        assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)
        execute(backend.url, "DELETE FROM big")
        calls.clear()
        report = restore(project, manifest.path, yes=True, progress=record)
        assert report.restored == {"big": 5000}, (method, report)
        assert calls and calls[-1] == ("big", 5000, 5000), calls[-3:]


def test_writers_wait_while_the_dump_runs(tmp_path: Path, mariadb_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The consistency scheme: LOCK TABLES ... READ on our session while mariadb-dump and the
    checksums run, so no row can change between what is dumped and what is recorded."""
    import pymysql

    project = _setup(tmp_path, mariadb_url)
    url = make_url(mariadb_url)
    outcome: list[str] = []
    real = dump_method.table_checksum_sql

    def checksum_and_try_to_write(conn: Any, name: str, schema: str | None = None) -> Any:
        if name == "author" and not outcome:
            other = pymysql.connect(host=url.host, port=url.port, user=url.username,
                                    password=url.password or "", database=url.database)
            try:
                with other.cursor() as cur:
                    cur.execute("SET SESSION lock_wait_timeout = 1")
                    try:
                        cur.execute("INSERT INTO author VALUES (99, 'late', NULL, NULL)")
                        outcome.append("written")
                    except pymysql.err.OperationalError as err:
                        outcome.append(f"blocked {err.args[0]}")
                other.commit()
            finally:
                other.close()
        return real(conn, name, schema)

    monkeypatch.setattr(dump_method, "table_checksum_sql", checksum_and_try_to_write)
    manifest = backup(project, method="dump")
    assert outcome == ["blocked 1205"]  # lock wait timeout
    assert manifest.table("author").rows == 3  # type: ignore[union-attr]
    execute(mariadb_url, "INSERT INTO author VALUES (99, 'late', NULL, NULL)")  # free again
