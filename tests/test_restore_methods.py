"""Restore by either method (issue 14): a mariadb-dump backup restores with the mariadb
client and with PyMySQL alone, a tsv backup (Python) with PyMySQL (never the client: it would
send any file the server asks for), directly and through the scratch schema, resumed, and
into non-empty tables; a server without LOCAL INFILE; a killed load."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import cli, execute, old_jsonl_backup, table_digest, table_names, write_project
from sqlalchemy import create_engine, inspect

from alembic_repair import Project
from alembic_repair.data.backups import backup, restore
from alembic_repair.data.backups.checksums import table_checksum_sql
from alembic_repair.data.backups.loaders import load_tsv_python
from alembic_repair.errors import ConfigError

pytestmark = pytest.mark.mariadb

SCHEMA = [
    "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, photo BLOB, "
    "rating DECIMAL(8,3), born DATE, seen DATETIME(6), at_time TIME, score DOUBLE, "
    "flags BIT(5), stamp TIMESTAMP NULL, note TEXT, "
    "up VARCHAR(200) AS (UPPER(name)) VIRTUAL)",
    "CREATE TABLE post (id INTEGER AUTO_INCREMENT PRIMARY KEY, title VARCHAR(200), "
    "author_id INTEGER, FOREIGN KEY (author_id) REFERENCES author(id))",
    "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
]
ROWS = [
    "INSERT INTO author (id, name, photo, rating, born, seen, at_time, score, flags, stamp, "
    "note) VALUES (1, 'Ann', X'00FF0A095C', 12.500, '2001-02-03', "
    "'2020-01-02 03:04:05.123456', '-12:30:01', 0.1, b'10101', '2021-05-06 07:08:09', "
    "'tab\\there\\nnew line \\\\ back\\\\N \\0 nul'), "
    "(2, 'Bo\u00e9 \U0001F600', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '\\\\N')",
    "INSERT INTO post VALUES (0, 'zero id', 1), (1, 'hello', 1), (2, 'again', 1), "
    "(3, '50% off; \\'quoted\\'', 2)",
    "INSERT INTO alembic_version VALUES ('abc123')",
]
PAIRS = [("dump", "client"), ("dump", "python"), ("python", "python")]


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _setup(tmp_path: Path, url: str) -> Project:
    execute(url, "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'", *SCHEMA, *ROWS)
    return Project.discover(write_project(tmp_path / "proj"), url=url)


def _drop_all(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            for name in inspect(conn).get_table_names():
                conn.exec_driver_sql(f"DROP TABLE {name}")
    finally:
        engine.dispose()


def _server_sums(url: str) -> dict[str, tuple[int, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {n: (s.rows, s.checksum) for n in ("author", "post", "alembic_version")
                    for s in [table_checksum_sql(conn, n)]}
    finally:
        engine.dispose()


@pytest.mark.parametrize(("made", "method"), PAIRS)
def test_restore_into_empty_database(tmp_path: Path, mariadb_url: str, made: str,
                                     method: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    before, sums = table_digest(mariadb_url), _server_sums(mariadb_url)
    manifest = backup(project, method=made)
    assert manifest.method == made
    if made == "python":
        assert {t.file for t in manifest.tables} == {"author.tsv", "post.tsv",
                                                      "alembic_version.tsv"}
    _drop_all(mariadb_url)
    report = restore(project, manifest.path, yes=True, method=method)
    assert report.complete and report.restored == {"author": 2, "post": 4,
                                                   "alembic_version": 1}
    assert table_digest(mariadb_url) == before
    assert _server_sums(mariadb_url) == sums  # CHECKSUM TABLE: every stored byte equal


@pytest.mark.parametrize(("made", "method"), PAIRS)
def test_restore_through_scratch_resumed_and_not_empty(tmp_path: Path, mariadb_url: str,
                                                       made: str, method: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    manifest = backup(project, method=made)
    whole = table_digest(mariadb_url)
    # the table lost a column: loaded into the scratch schema, checked, copied
    execute(mariadb_url, "DELETE FROM post", "DELETE FROM author",
            "DELETE FROM alembic_version", "ALTER TABLE author DROP COLUMN note")
    report = restore(project, manifest.path, yes=True, method=method)
    assert report.restored == {"author": 2, "post": 4, "alembic_version": 1}
    assert report.dropped_columns == {"author": ("note",)}
    after = table_digest(mariadb_url)
    assert after["post"] == whole["post"] and after["author"][0] == 2
    assert not any(n.startswith("_ar_restore") for n in _schemas(mariadb_url))

    # resumed: the tables already restored are recognised, one emptied is filled again
    execute(mariadb_url, "DELETE FROM alembic_version")
    again = restore(project, manifest.path, yes=True, method=method)
    assert again.already == {"author": 2, "post": 4}
    assert again.restored == {"alembic_version": 1}
    assert table_digest(mariadb_url) == after

    # a table holding other rows is refused and left as it is
    execute(mariadb_url, "DELETE FROM alembic_version",
            "INSERT INTO alembic_version VALUES ('other')")
    held = table_digest(mariadb_url)
    third = restore(project, manifest.path, yes=True, method=method)
    assert third.not_empty == {"alembic_version": 1} and not third.complete
    assert table_digest(mariadb_url) == held


def _schemas(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.exec_driver_sql("SHOW DATABASES")]
    finally:
        engine.dispose()


@pytest.mark.parametrize("made", ["python", "dump"])
def test_server_without_local_infile(tmp_path: Path, mariadb_url: str, made: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    before = table_digest(mariadb_url)
    manifest = backup(project, method=made)
    _drop_all(mariadb_url)
    execute(mariadb_url, "SET GLOBAL local_infile = 0")
    try:
        report = restore(project, manifest.path, yes=True, method="python")  # INSERTs
        assert report.complete
        assert table_digest(mariadb_url) == before
    finally:
        execute(mariadb_url, "SET GLOBAL local_infile = 1")


def test_tsv_backup_is_never_loaded_by_the_client(tmp_path: Path, mariadb_url: str) -> None:
    """The mariadb client sends any local file the server asks for: a tsv backup is loaded
    through PyMySQL only (its guard allows the one file named), the client refused up front."""
    project = _setup(tmp_path, mariadb_url)
    manifest = backup(project, method="python")
    _drop_all(mariadb_url)
    with pytest.raises(ConfigError, match="through PyMySQL; use method 'python'") as err:
        restore(project, manifest.path, yes=True, method="client")
    assert "\n" not in str(err.value) and not table_names(mariadb_url)
    run = cli("restore", str(manifest.path), "--yes", "--method", "client", cwd=project.root,
              url=mariadb_url)
    assert run.code == ConfigError.exit_code and "through PyMySQL" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not table_names(mariadb_url)


def test_method_is_checked(tmp_path: Path, mariadb_url: str, monkeypatch) -> None:
    project = _setup(tmp_path, mariadb_url)
    manifest = backup(project, method="dump")  # the client loads dumps only
    bad = cli("restore", str(manifest.path), "--yes", "--method", "fast", cwd=project.root,
              url=mariadb_url)
    assert bad.code == 2 and "--method" in bad.output
    with pytest.raises(ConfigError, match="unknown method"):
        restore(project, manifest.path, yes=True, method="fast")
    _drop_all(mariadb_url)
    bare = {"PATH": str(Path(sys.executable).parent)}  # Python, no mariadb client
    run = cli("restore", str(manifest.path), "--yes", "--method", "client", cwd=project.root,
              url=mariadb_url, env=bare)
    assert run.code == ConfigError.exit_code and "method 'python'" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not table_names(mariadb_url)
    run = cli("restore", str(manifest.path), "--yes", "--method", "python", cwd=project.root,
              url=mariadb_url, env=bare)
    assert run.code == 0, run.output
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    _drop_all(mariadb_url)
    with pytest.raises(ConfigError, match="install it.*method 'python'") as err:
        restore(project, manifest.path, yes=True, method="client")
    assert "\n" not in str(err.value)
    assert restore(project, manifest.path, yes=True).complete  # auto: Python, no client


_KILLER = """
import os, sys
from pathlib import Path
import pymysql.connections as connections
import pymysql.cursors as cursors
from alembic_repair import Project
from alembic_repair.data.backups import restore

send, execute = connections._send_local_file, cursors.Cursor.execute

def half_then_die(filename, conn):  # the second table: half its file sent, then killed
    if filename.endswith(b"post.tsv"):
        data = open(filename, "rb").read()
        conn.write_packet(data[: len(data) // 2])
        os.kill(os.getpid(), 9)
    return send(filename, conn)

def insert_then_die(self, query, args=None):  # the dump: after post's first INSERT ran
    done = execute(self, query, args)
    if isinstance(query, bytes) and query.startswith(b"INSERT INTO `post`"):
        os.kill(os.getpid(), 9)
    return done

connections._send_local_file = half_then_die
cursors.Cursor.execute = insert_then_die
project = Project.discover(Path(sys.argv[1]), url=sys.argv[2])
restore(project, Path(sys.argv[3]), yes=True, method="python")
"""


@pytest.mark.parametrize("made", ["python", "dump"])
def test_killed_python_restore_leaves_tables_empty_or_whole(tmp_path: Path, mariadb_url: str,
                                                            made: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    execute(mariadb_url, "INSERT INTO post (title, author_id) SELECT CONCAT('p', seq), 1 "
            "FROM seq_1_to_3000")
    before = table_digest(mariadb_url)
    manifest = backup(project, method=made)
    _drop_all(mariadb_url)
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLER), str(project.root),
                          mariadb_url, str(manifest.path)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             sys.path)})
    assert run.returncode == -9, run.stderr
    killed = table_digest(mariadb_url)
    for name in ("alembic_version", "author"):  # loaded before post (foreign-key order)
        assert killed[name] == before[name]  # whole
    assert killed["post"][0] == 0  # killed part-way through: empty
    report = restore(project, manifest.path, yes=True, method="python")
    assert report.complete and report.already == {"alembic_version": 1, "author": 2}
    assert table_digest(mariadb_url) == before


def test_older_jsonl_backup_restores_by_python_only(tmp_path: Path, mariadb_url: str) -> None:
    project = _setup(tmp_path, mariadb_url)
    before = table_digest(mariadb_url)
    path = old_jsonl_backup(project, tmp_path / "old")
    _drop_all(mariadb_url)
    with pytest.raises(ConfigError, match="only Python restores") as err:
        restore(project, path, yes=True, method="client")
    assert "\n" not in str(err.value) and not table_names(mariadb_url)
    assert restore(project, path, yes=True, method="python").complete
    assert table_digest(mariadb_url) == before


def test_python_load_falls_back_when_the_server_turns_local_infile_off(
        tmp_path: Path, mariadb_url: str) -> None:
    """`load_tsv_python` itself, chosen while LOCAL INFILE was on: a refusal at the first
    LOAD DATA sends every table as INSERTs instead."""
    project = _setup(tmp_path, mariadb_url)
    before = table_digest(mariadb_url)
    manifest = backup(project, method="python")
    execute(mariadb_url, "DELETE FROM post", "DELETE FROM author",
            "DELETE FROM alembic_version", "SET GLOBAL local_infile = 0")
    try:
        database = mariadb_url.rsplit("/", 1)[1]
        load_tsv_python(project, manifest, [t.name for t in manifest.tables], database, None)
    finally:
        execute(mariadb_url, "SET GLOBAL local_infile = 1")
    assert table_digest(mariadb_url) == before
