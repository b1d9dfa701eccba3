"""The MySQL/MariaDB fast path (mariadb-dump + mariadb client): secrets, verify, progress."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from helpers import cli, execute, table_digest, write_project
from sqlalchemy.engine import make_url

from alembic_repair import AlembicRepairError, BackupCorrupt, ConfigError, Project, bootstrap
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


def _connect(url: str) -> Any:
    import pymysql

    parsed = make_url(url)
    return pymysql.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                           password=parsed.password or "", database=parsed.database,
                           autocommit=True)


def _scalar(url: str, sql: str) -> Any:
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return None if row is None else row[0]
    finally:
        conn.close()


def test_mariadb_dump_writes_the_file_and_late_writers_wait(tmp_path: Path, mariadb_url: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """No Python in the byte stream: mariadb-dump's stdout is the backup file itself, written
    with a COMMIT per table; a row inserted meanwhile waits for our lock, so the backup holds
    exactly what the server counted and the row lands afterwards."""
    project = _setup(tmp_path, mariadb_url)
    outputs: list[Any] = []
    real_popen = subprocess.Popen

    def spy(args: list[str], *rest: Any, **kwargs: Any) -> Any:
        outputs.append(kwargs.get("stdout"))
        return real_popen(args, *rest, **kwargs)

    late: list[threading.Thread] = []
    real_sum = dump_method.table_checksum_sql

    def checksum_while_someone_writes(conn: Any, name: str, schema: str | None = None) -> Any:
        writer = threading.Thread(target=_scalar, args=(
            mariadb_url, "INSERT INTO author VALUES (99, 'late', NULL, NULL)"))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # waiting for our LOCK TABLES ... READ
        late.append(writer)
        return real_sum(conn, name, schema)

    monkeypatch.setattr(dump_method.subprocess, "Popen", spy)
    monkeypatch.setattr(dump_method, "table_checksum_sql", checksum_while_someone_writes)
    manifest = backup(project, method="dump")
    late[0].join(10)
    assert not late[0].is_alive() and _scalar(mariadb_url, "SELECT COUNT(*) FROM author") == 4
    assert len(outputs) == 1 and isinstance(outputs[0], io.BufferedWriter)  # the file itself
    assert "--no-autocommit" in manifest.dump_options
    assert manifest.table("author").rows == 3  # type: ignore[union-attr]
    data = (manifest.path / "data.sql").read_bytes()
    assert dump_counts(manifest.path / "data.sql") == {"author": 3}
    section = data.split(b"-- Dumping data for table `author`", 1)[1]
    assert section.index(b"@@AUTOCOMMIT=0;") < section.index(b"INSERT INTO `author`") \
        < section.index(b"\nCOMMIT;\n")
    assert file_sha256(manifest.path / "data.sql") == manifest.files["data.sql"]


_SLOW_BACKUP = """
import sys, time
from pathlib import Path
from alembic_repair import Project
from alembic_repair.data.backups import backup, dump_method
def stuck(conn, name, schema=None):
    print("locked", flush=True)
    time.sleep(120)
dump_method.table_checksum_sql = stuck
backup(Project.discover(Path(sys.argv[1]), url=sys.argv[2]), method="dump")
"""


def test_killed_backup_leaves_no_backup_and_no_lock(tmp_path: Path, mariadb_url: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    repo = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", _SLOW_BACKUP, str(project.root),
                              mariadb_url], stdout=subprocess.PIPE, cwd=project.root,
                             env=dict(os.environ, PYTHONPATH=str(repo)))
    try:
        assert child.stdout is not None and child.stdout.readline() == b"locked\n"
        os.kill(child.pid, signal.SIGKILL)  # while it holds LOCK TABLES ... READ
    finally:
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    folder = project.state_dir / "backups"
    assert [p.name for p in folder.iterdir() if ".partial-" not in p.name] == []
    conn = _connect(mariadb_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 10")
            cur.execute("INSERT INTO author VALUES (4, 'after', NULL, NULL)")  # no lock left
    finally:
        conn.close()
    manifest = backup(project, method="dump")
    assert manifest.table("author").rows == 4  # type: ignore[union-attr]
    assert [p.name for p in folder.iterdir()] == [manifest.path.name]  # the partial is gone


def test_truncated_dump_is_refused(tmp_path: Path, mariadb_url: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A dump that ends early without an error (no completion trailer) is no backup."""
    project = _setup(tmp_path, mariadb_url)
    tools = dump_tools()
    assert tools is not None
    fake = tmp_path / "short-dump"
    fake.write_text(f'#!/bin/sh\n"{tools[0]}" "$@" | head -c 400\n')
    fake.chmod(0o700)
    monkeypatch.setattr(dump_method, "dump_tools", lambda: (str(fake), tools[1]))
    with pytest.raises(AlembicRepairError, match="stopped before the end of its output"):
        backup(project, method="dump")
    assert list((project.state_dir / "backups").iterdir()) == []


def _two_tables(tmp_path: Path, url: str, rows: int) -> Project:
    values = ", ".join(f"({i}, 'row {i}')" for i in range(1, rows + 1))
    execute(url, "CREATE TABLE a (id INTEGER PRIMARY KEY, label VARCHAR(40))",
            "CREATE TABLE b (id INTEGER PRIMARY KEY, label VARCHAR(40))",
            f"INSERT INTO a VALUES {values}", f"INSERT INTO b VALUES {values}")
    return Project.discover(write_project(tmp_path / "proj"), url=url)


def test_fast_restore_when_every_table_is_loaded_filter_otherwise(
        tmp_path: Path, mariadb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _two_tables(tmp_path, mariadb_url, 50)
    before = table_digest(mariadb_url)
    manifest = backup(project, method="dump")
    inputs: list[Any] = []
    filtered: list[set[str]] = []
    real_popen, real_feed = subprocess.Popen, dump_method.feed_dump

    def spy(args: list[str], *rest: Any, **kwargs: Any) -> Any:
        inputs.append(kwargs.get("stdin"))
        return real_popen(args, *rest, **kwargs)

    def feed(file: Path, wanted: set[str], *rest: Any) -> None:
        filtered.append(set(wanted))
        real_feed(file, wanted, *rest)

    monkeypatch.setattr(dump_method.subprocess, "Popen", spy)
    monkeypatch.setattr(dump_method, "feed_dump", feed)
    execute(mariadb_url, "DELETE FROM a", "DELETE FROM b")
    report = restore(project, manifest.path, yes=True)
    assert report.complete and report.restored == {"a": 50, "b": 50}
    assert filtered == [] and len(inputs) == 1 and isinstance(inputs[0], io.BufferedReader)
    assert table_digest(mariadb_url) == before
    execute(mariadb_url, "DELETE FROM b")  # one table of two: the filter
    report = restore(project, manifest.path, yes=True)
    assert report.complete and report.restored == {"b": 50} and report.already == {"a": 50}
    assert filtered == [{"b"}] and inputs[1] is subprocess.PIPE
    assert table_digest(mariadb_url) == before


_RESTORE = """
import sys
from pathlib import Path
from alembic_repair import Project
from alembic_repair.data.backups import restore
restore(Project.discover(Path(sys.argv[1]), url=sys.argv[2]), Path(sys.argv[3]), yes=True)
"""


def test_killed_fast_restore_leaves_tables_empty_or_whole(tmp_path: Path,
                                                           mariadb_url: str) -> None:
    """The client reads the file itself; killed while loading table b (a holds its rows,
    committed), b stays empty and a second restore completes."""
    project = _two_tables(tmp_path, mariadb_url, 200)
    before = table_digest(mariadb_url)
    manifest = backup(project, method="dump")
    execute(mariadb_url, "DELETE FROM a", "DELETE FROM b")
    holder = _connect(mariadb_url)  # readers pass, the client's INSERT into b waits
    repo = Path(__file__).resolve().parent.parent
    waiting = "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO `b`%'"
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLES b READ")
        child = subprocess.Popen([sys.executable, "-c", _RESTORE, str(project.root),
                                  mariadb_url, str(manifest.path)], cwd=project.root,
                                 env=dict(os.environ, PYTHONPATH=str(repo)))
        try:
            deadline = time.monotonic() + 30
            while (loader := _scalar(mariadb_url, waiting)) is None:
                assert child.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait()
    finally:
        holder.close()  # UNLOCK: the dead client's connection ends, rolled back
    deadline = time.monotonic() + 30
    while _scalar(mariadb_url, f"SELECT ID FROM information_schema.PROCESSLIST "
                               f"WHERE ID = {int(loader)}") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _scalar(mariadb_url, "SELECT COUNT(*) FROM a") == 200  # whole
    assert _scalar(mariadb_url, "SELECT COUNT(*) FROM b") == 0  # empty
    report = restore(project, manifest.path, yes=True)
    assert report.complete and report.already == {"a": 200} and report.restored == {"b": 200}
    assert table_digest(mariadb_url) == before


def test_line_counts_agree_with_the_counter_or_step_aside(tmp_path: Path) -> None:
    """The C-speed count of a one-row-per-line dump (verify, restore) equals `DumpCounter`'s,
    and declines (None) any file of another shape, which `DumpCounter` then reads."""
    from alembic_repair.data.backups.dump_format import _line_counts

    head = b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n"
    def section(name: bytes, body: bytes) -> bytes:
        return (b"\n--\n-- Dumping data for table `" + name + b"`\n--\n\nSET @OLD_AUTOCOMMIT="
                b"@@AUTOCOMMIT, @@AUTOCOMMIT=0;\n" + body + b"COMMIT;\nSET AUTOCOMMIT="
                b"@OLD_AUTOCOMMIT;\n")
    tail = b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n\n-- Dump completed\n"
    good = head + section(b"a", b"INSERT INTO `a` (`id`, `s`) VALUES (1,'x\\n('),\n(2,';'),\n"
                          b"(3,NULL);\nINSERT INTO `a` (`id`, `s`) VALUES (4,'y');\n") \
        + section(b"empty", b"") + section(b"b``c", b"INSERT INTO `b``c` (`id`) VALUES (1),\n"
                                          b"(2);\n") + tail
    shapes = {
        "good": good,
        "old layout": good.replace(b"(1,'x\\n('),\n(2", b"(1,'x\\n('),(2"),
        "other table": good.replace(b"INSERT INTO `a` (`id`, `s`) VALUES (4",
                                    b"INSERT INTO `z` (`id`, `s`) VALUES (4"),
        "between": good.replace(b"(3,NULL);\nINSERT", b"(3,NULL);\n-- x\nINSERT"),
    }
    found = {}
    for label, data in shapes.items():
        file = tmp_path / f"{label}.sql"
        file.write_bytes(data)
        found[label] = _line_counts(file)
        counter = DumpCounter()
        counter.feed(data)
        assert dump_counts(file) == counter.rows, label
    assert found == {"good": {"a": 4, "b`c": 2}, "old layout": None, "other table": None,
                     "between": None}


_LIMITED_BACKUP = """
import resource, sys
from pathlib import Path
from alembic_repair import AlembicRepairError, Project
from alembic_repair.data.backups import backup
project = Project.discover(Path(sys.argv[1]), url=sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
try:
    backup(project, Path(sys.argv[4]), method="dump")
except AlembicRepairError as err:
    print(err)
"""


def test_a_file_mariadb_dump_cannot_finish_is_a_full_disk(tmp_path: Path,
                                                           mariadb_url: str) -> None:
    """mariadb-dump writes the file itself, so its own failure to write (here the file size
    limit, as a full disk would) reports a full disk and leaves no backup."""
    project = _two_tables(tmp_path, mariadb_url, 3000)
    dest = tmp_path / "backups" / "b1"
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _LIMITED_BACKUP, str(project.root),
                           mariadb_url, "20000", str(dest)], cwd=project.root,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(repo),
                                   PYTHONDONTWRITEBYTECODE="1"))
    assert "disk full" in done.stdout and str(dest) in done.stdout, done.stdout + done.stderr
    assert not dest.exists() and not list(dest.parent.iterdir())


def _floats(tmp_path: Path, url: str) -> Project:
    execute(url, "CREATE TABLE gauge (id INTEGER PRIMARY KEY, f FLOAT, d DOUBLE)",
            "INSERT INTO gauge VALUES (1, 1/3e0, 1/3e0), (2, 16777217, 0.1e0 + 0.2e0)")
    return Project.discover(write_project(tmp_path / "proj"), url=url)


def test_float_columns_take_the_python_method(tmp_path: Path, mariadb_url: str) -> None:
    """mariadb-dump writes FLOAT with 6 digits (1/3 comes back as 0.333333): auto takes the
    python method, which writes its double, and the restore gives back the very values."""
    project = _floats(tmp_path, mariadb_url)
    before = table_digest(mariadb_url)["gauge"]
    manifest = backup(project)
    assert manifest.method == "python" and (manifest.path / "gauge.tsv").is_file()
    execute(mariadb_url, "DELETE FROM gauge")
    restore(project, manifest.path, yes=True)
    assert table_digest(mariadb_url)["gauge"] == before


def test_dump_method_refuses_float_columns_before_writing(tmp_path: Path,
                                                          mariadb_url: str) -> None:
    project = _floats(tmp_path, mariadb_url)
    with pytest.raises(ConfigError, match=r"^backup: .*FLOAT column gauge\.f .*use method "
                       r"'python' or 'auto'$"):
        backup(project, method="dump")
    folder = project.state_dir / "backups"
    assert not folder.exists() or list(folder.iterdir()) == []
    run = cli("backup", "--method", "dump", cwd=project.root, url=mariadb_url)
    assert run.code == 2 and "gauge.f" in run.stderr and len(run.stderr.splitlines()) == 1
    assert not folder.exists() or list(folder.iterdir()) == []


def test_hard_drop_backs_up_a_float_database_by_the_python_method(tmp_path: Path,
                                                                  mariadb_url: str) -> None:
    """fix, reset and drop back up with the default method: it must not be the dump here."""
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=mariadb_url))
    execute(mariadb_url, "ALTER TABLE post ADD COLUMN score FLOAT",
            "INSERT INTO author (id, name) VALUES (1, 'Ann')",
            "INSERT INTO post (id, title, author_id, score) VALUES (1, 'x', 1, 1/3e0)")
    run = cli("drop", "post", "--hard", "--yes", cwd=root, url=mariadb_url)
    assert run.code == 0, run.output
    (folder,) = (root / ".alembic_repair" / "backups").iterdir()
    assert json.loads((folder / "manifest.json").read_text())["method"] == "python"
    assert (folder / "post.tsv").read_bytes().endswith(b"\t0.3333333432674408\n")


def test_a_table_mariadb_dump_writes_no_rows_of_fails_the_backup(tmp_path: Path,
                                                                 mariadb_url: str) -> None:
    """mariadb-dump writes no data for a MRG_MyISAM table: the rows counted in the file must
    equal the server's counts, else `backup` would call verified what `verify` rejects."""
    execute(mariadb_url, "CREATE TABLE a (id INTEGER PRIMARY KEY) ENGINE=MyISAM",
            "INSERT INTO a VALUES (1), (2)",
            "CREATE TABLE m (id INTEGER PRIMARY KEY) ENGINE=MRG_MyISAM UNION=(a)")
    project = Project.discover(write_project(tmp_path / "proj"), url=mariadb_url)
    with pytest.raises(AlembicRepairError, match=r"^backup: table m: the server counted 2 "
                       r"rows, the dump holds 0; run the backup again$"):
        backup(project, method="dump")
    assert list((project.state_dir / "backups").iterdir()) == []
