"""Verified logical backups (backup.py): backup, verify, restore, on SQLite and MariaDB."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import cli, execute, table_digest, write_project
from sqlalchemy import create_engine, inspect, text

from alembic_repair import BackupCorrupt, Project, RefusedUnsafe
from alembic_repair.data.backups import backup, backup_locked, restore, restore_locked, verify
from alembic_repair.engine.database import connect
from alembic_repair.engine.locking import migration_lock

SCHEMA = {
    "sqlite": [
        "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, "
        "photo BLOB, rating NUMERIC(8,3), born DATE, seen DATETIME)",
        "CREATE TABLE post (id INTEGER PRIMARY KEY, title VARCHAR(200), "
        "author_id INTEGER REFERENCES author(id))",
        "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
    ],
    "mariadb": [
        "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, "
        "photo BLOB, rating DECIMAL(8,3), born DATE, seen DATETIME(6), at_time TIME, "
        "score DOUBLE)",
        "CREATE TABLE post (id INTEGER PRIMARY KEY, title VARCHAR(200), author_id INTEGER, "
        "FOREIGN KEY (author_id) REFERENCES author(id))",
        "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
    ],
}
ROWS = {
    "sqlite": "INSERT INTO author VALUES (1, 'Ann', X'00FF10', 12.5, '2001-02-03', "
              "'2020-01-02 03:04:05'), (2, 'Bo\u00e9', NULL, NULL, NULL, NULL)",
    "mariadb": "INSERT INTO author VALUES (1, 'Ann', X'00FF10', 12.500, '2001-02-03', "
               "'2020-01-02 03:04:05.123456', '-12:30:01', 0.1), "
               "(2, 'Bo\u00e9', NULL, NULL, NULL, NULL, NULL, NULL)",
}


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    method: str


@pytest.fixture(params=["sqlite", pytest.param("mariadb-python", marks=pytest.mark.mariadb),
                        pytest.param("mariadb-dump", marks=pytest.mark.mariadb)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every test on SQLite and on MariaDB with both backup methods (mariadb-dump's fast
    path and the pure-Python one)."""
    if request.param == "sqlite":
        return Backend("sqlite", request.getfixturevalue("sqlite_url"), "python")
    return Backend("mariadb", request.getfixturevalue("mariadb_url"),
                   request.param.split("-")[1])


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _setup(tmp_path: Path, backend) -> Project:
    execute(backend.url, *SCHEMA[backend.name], ROWS[backend.name],
            "INSERT INTO post VALUES (1, 'hello', 1), (2, 'again', 1), (3, 'x', 2)",
            "INSERT INTO alembic_version VALUES ('abc123')")
    return Project.discover(write_project(tmp_path / "proj"), url=backend.url)


def _drop_all(url: str, backend) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if backend.name == "mariadb":
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            for name in inspect(conn).get_table_names():
                conn.exec_driver_sql(f"DROP TABLE {name}")
    finally:
        engine.dispose()


def test_backup_drop_restore_is_identical(tmp_path: Path, backend) -> None:
    project = _setup(tmp_path, backend)
    execute(backend.url, "CREATE TABLE big (id INTEGER PRIMARY KEY, label VARCHAR(40))")
    engine = create_engine(backend.url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO big VALUES (:i, :l)"),
                     [{"i": i, "l": f"row {i}"} for i in range(1, 20001)])
    engine.dispose()
    before = table_digest(backend.url)
    manifest = backup(project, method=backend.method)
    assert manifest.path.parent == project.state_dir / "backups"
    assert stat.S_IMODE(manifest.path.stat().st_mode) == 0o700
    for file in manifest.path.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    names = [t.name for t in manifest.tables]
    assert names.index("author") < names.index("post")
    assert {t.name: t.rows for t in manifest.tables}["big"] == 20000
    assert verify(manifest.path).tables == manifest.tables

    _drop_all(backend.url, backend)
    report = restore(project, manifest.path, yes=True)
    assert report.complete
    assert set(report.created) == set(names)
    assert table_digest(backend.url) == before


def test_restore_into_changed_schema_reports_the_rest(tmp_path: Path, backend) -> None:
    project = _setup(tmp_path, backend)
    manifest = backup(project, method=backend.method)
    _drop_all(backend.url, backend)
    schema = SCHEMA[backend.name]
    execute(backend.url, schema[0].replace(", photo BLOB", ""), schema[2])
    report = restore(project, manifest.path, yes=True)
    assert report.restored == {"author": 2, "alembic_version": 1}
    assert report.missing_tables == {"post": 3}
    assert report.dropped_columns == {"author": ("photo",)}
    assert not report.complete
    digest = table_digest(backend.url)
    assert digest["author"][0] == 2 and "post" not in digest
    # the rows that did not fit are still in the backup
    assert verify(manifest.path).table("post").rows == 3  # type: ignore[union-attr]
    # a second restore finds the backup's rows already there and touches nothing
    again = restore(project, manifest.path, yes=True)
    assert again.already == {"author": 2, "alembic_version": 1}
    assert again.not_empty == {} and again.restored == {}
    assert again.dropped_columns == {"author": ("photo",)}
    assert table_digest(backend.url) == digest


def _data_file(manifest_path: Path) -> Path:
    return next(p for p in sorted(manifest_path.iterdir())
                if p.name.startswith(("database", "data.", "author.")))


def test_corrupt_file_and_bad_manifest_change_nothing(tmp_path: Path, backend) -> None:
    project = _setup(tmp_path, backend)
    manifest = backup(project, method=backend.method)
    before = table_digest(backend.url)

    data = manifest.path / "manifest.json"
    saved = data.read_text()
    doc = json.loads(saved)
    doc["tables"][0]["checksum"] = "0" * 64
    data.write_text(json.dumps(doc))
    with pytest.raises(BackupCorrupt) as err:
        restore(project, manifest.path, yes=True)
    assert "\n" not in str(err.value) and "manifest.json" in str(err.value)
    data.write_text(saved)

    file = _data_file(manifest.path)
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    file.write_bytes(bytes(raw))
    with pytest.raises(BackupCorrupt) as err:
        restore(project, manifest.path, yes=True)
    assert "\n" not in str(err.value) and file.name in str(err.value)
    assert table_digest(backend.url) == before

    run = cli("restore", str(manifest.path), "--yes", cwd=project.root, url=backend.url)
    assert run.code == 1 and file.name in run.stderr
    assert table_digest(backend.url) == before


def test_cli_backup_and_restore_without_yes(tmp_path: Path, backend) -> None:
    project = _setup(tmp_path, backend)
    run = cli("backup", cwd=project.root, url=backend.url)
    assert run.code == 0, run.output
    assert "author: 2 rows" in run.stdout and "post: 3 rows" in run.stdout
    path = Path(run.stdout.split()[1])
    _drop_all(backend.url, backend)
    execute(backend.url, SCHEMA[backend.name][0])
    before = table_digest(backend.url)
    run = cli("restore", str(path), cwd=project.root, url=backend.url)
    assert run.code == 5 and run.stderr == "", run.output  # a dry run: the plan, on stdout
    assert "--yes" in run.stdout and "nothing changed" in run.stdout
    assert f"  restore {path}: would " in run.stdout
    assert table_digest(backend.url) == before
    with pytest.raises(RefusedUnsafe):
        restore(project, path, yes=False)
    assert table_digest(backend.url) == before


def test_other_dialect_refused(tmp_path: Path, sqlite_url: str) -> None:
    execute(sqlite_url, "CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    project = Project.discover(write_project(tmp_path / "proj"), url=sqlite_url)
    manifest = backup(project, tmp_path / "dest")
    assert manifest.path == tmp_path / "dest" and manifest.dialect == "sqlite"
    other = Project.discover(project.root, url="mysql+pymysql://u:p@localhost/x")
    with pytest.raises(Exception, match="sqlite"):
        restore(other, manifest.path, yes=True)


def test_locked_variants_resume_and_ignore_extra_files(tmp_path: Path, backend) -> None:
    project = _setup(tmp_path, backend)
    before = table_digest(backend.url)
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            manifest = backup_locked(project, conn, tmp_path / "b",
                                     method=backend.method)
    finally:
        engine.dispose()
    # a caller (reset) adds files the manifest does not list: verify ignores them
    extra = manifest.path / "project-files"
    extra.mkdir()
    (extra / "alembic.ini").write_text("[alembic]\n")
    (manifest.path / "notes.txt").write_text("x")
    assert verify(manifest.path).tables == manifest.tables

    # an interrupted restore: author is back, post holds other rows, the rest is empty
    _drop_all(backend.url, backend)
    execute(backend.url, *SCHEMA[backend.name], ROWS[backend.name],
            "INSERT INTO post VALUES (9, 'other', 1)")
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            report = restore_locked(project, conn, manifest.path)
    finally:
        engine.dispose()
    assert report.already == {"author": 2}
    assert report.not_empty == {"post": 1}
    assert report.restored == {"alembic_version": 1}
    assert not report.complete

    execute(backend.url, "DELETE FROM post")
    again = restore(project, manifest.path, yes=True)
    assert again.already == {"author": 2, "alembic_version": 1}
    assert again.restored == {"post": 3}
    assert again.complete
    assert table_digest(backend.url) == before


def test_cli_backup_method_is_checked_and_honoured(tmp_path: Path, mariadb_url: str) -> None:
    project = _setup(tmp_path, type("B", (), {"name": "mariadb", "url": mariadb_url})())
    bad = cli("backup", "--method", "fast", cwd=project.root, url=mariadb_url)
    assert bad.code == 2 and "--method" in bad.output
    run = cli("backup", str(tmp_path / "py"), "--method", "python", cwd=project.root,
              url=mariadb_url)
    assert run.code == 0, run.output
    assert json.loads((tmp_path / "py" / "manifest.json").read_text())["method"] == "python"
