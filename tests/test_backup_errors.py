"""Bad input to backup/verify/restore: one clear line, the right error class, nothing changed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, execute, table_digest, write_project

from alembic_repair import AlembicRepairError, BackupCorrupt, Project, RefusedUnsafe
from alembic_repair.data import backups as backups_module
from alembic_repair.data.backups import (
    manifest,
    restore,
    sqlite_method,
    verify,
)
from alembic_repair.data.backups.manifest import file_sha256, seal_of

SCHEMA = [
    "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)",
    "CREATE TABLE post (id INTEGER PRIMARY KEY, title VARCHAR(200), author_id INTEGER)",
]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    method: str


@pytest.fixture(params=["sqlite", pytest.param("mariadb-python", marks=pytest.mark.mariadb),
                        pytest.param("mariadb-dump", marks=pytest.mark.mariadb)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", request.getfixturevalue("sqlite_url"), "python")
    return Backend("mariadb", request.getfixturevalue("mariadb_url"),
                   request.param.split("-")[1])


METHOD = "python"


def backup(project: Project, dest: Path | None = None) -> backups_module.Manifest:
    return backups_module.backup(project, dest, method=METHOD)


@pytest.fixture(autouse=True)
def use_method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "backend" in request.fixturenames:
        monkeypatch.setattr(sys.modules[__name__], "METHOD",
                            request.getfixturevalue("backend").method)


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _setup(tmp_path: Path, url: str, rows: int = 50) -> Project:
    execute(url, *SCHEMA,
            "INSERT INTO author VALUES " + ", ".join(f"({i}, 'name {i}')"
                                                     for i in range(1, rows + 1)),
            "INSERT INTO post VALUES (1, 'hello', 1), (2, 'again', 1)")
    return Project.discover(write_project(tmp_path / "proj"), url=url)


def _empty_tables(url: str) -> None:
    execute(url, "DELETE FROM post", "DELETE FROM author")


def _one_line(err: pytest.ExceptionInfo[Any]) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def _data_file(path: Path) -> Path:
    return next(p for p in sorted(path.iterdir())
                if p.name.startswith(("database", "data.", "author.")))


def test_truncated_data_file(tmp_path: Path, backend) -> None:
    project = _setup(tmp_path, backend.url)
    manifest = backup(project)
    assert manifest.method == backend.method
    _empty_tables(backend.url)
    before = table_digest(backend.url)
    file = _data_file(manifest.path)
    raw = file.read_bytes()
    file.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BackupCorrupt) as err:
        restore(project, manifest.path, yes=True)
    assert file.name in _one_line(err)
    assert table_digest(backend.url) == before
    # even with a manifest that agrees with the truncated file's sha256, the data is refused
    doc = json.loads((manifest.path / "manifest.json").read_text())
    doc["files"][file.name] = file_sha256(file)
    doc["seal"] = seal_of(doc)
    (manifest.path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BackupCorrupt) as err:
        restore(project, manifest.path, yes=True)
    assert file.name in _one_line(err) or "manifest.json" in _one_line(err)
    assert table_digest(backend.url) == before


@pytest.mark.parametrize("garbage", [
    b"\x00\xff garbage", b"", b"[1, 2, 3]", b'"text"', b'{"tables": 5}',
    b'{"format": 1, "dialect": "sqlite", "url": "x", "created_at": "x", "tables": [], '
    b'"files": {"../../etc/passwd": "00"}}',
    b'{"format": 1, "dialect": "oracle", "url": "x", "created_at": "x", "tables": [], '
    b'"files": {}}',
])
def test_garbage_manifest(tmp_path: Path, sqlite_url: str, garbage: bytes) -> None:
    project = _setup(tmp_path, sqlite_url)
    manifest = backup(project)
    _empty_tables(sqlite_url)
    before = table_digest(sqlite_url)
    (manifest.path / "manifest.json").write_bytes(garbage)
    with pytest.raises(BackupCorrupt) as err:
        restore(project, manifest.path, yes=True)
    assert "manifest.json" in _one_line(err)
    with pytest.raises(BackupCorrupt):
        verify(manifest.path)
    assert table_digest(sqlite_url) == before
    run = cli("restore", str(manifest.path), "--yes", cwd=project.root, url=sqlite_url)
    assert run.code == 1 and "manifest.json" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_manifest_checksum_does_not_match_data(tmp_path: Path, backend) -> None:
    project = _setup(tmp_path, backend.url)
    manifest = backup(project)
    _empty_tables(backend.url)
    before = table_digest(backend.url)
    doc = json.loads((manifest.path / "manifest.json").read_text())
    for entry in doc["tables"]:
        if entry["name"] == "author":
            entry["rows"] += 1
    (manifest.path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BackupCorrupt) as err:
        restore(project, manifest.path, yes=True)
    assert "author" in _one_line(err) and "manifest.json" in _one_line(err)
    assert table_digest(backend.url) == before


def test_backup_of_another_database_is_refused(tmp_path: Path, backend, request) -> None:
    project = _setup(tmp_path, backend.url)
    manifest = backup(project)
    assert manifest.database is not None and manifest.database["dialect"] in ("sqlite", "mysql")
    assert "password" not in json.dumps(manifest.database)
    if backend.name == "sqlite":
        other_url = f"sqlite:///{tmp_path / 'other.db'}"
    else:
        other_url = request.getfixturevalue("mariadb_server").create_database("t_other_db")
    try:
        execute(other_url, *SCHEMA)
        other = Project.discover(project.root, url=other_url)
        before = table_digest(other_url)
        with pytest.raises(RefusedUnsafe) as err:
            restore(other, manifest.path, yes=True)
        message = _one_line(err)
        assert "--other-database" in message and "nothing changed" in message
        if backend.name == "sqlite":
            assert "app.db" in message
        else:
            assert manifest.database["database"] in message  # type: ignore[index]
            from sqlalchemy.engine import make_url
            password = make_url(other_url).password
            assert not password or password not in message
        assert table_digest(other_url) == before
        run = cli("restore", str(manifest.path), "--yes", cwd=project.root, url=other_url)
        assert run.code == 4 and "--other-database" in run.stderr
        assert table_digest(other_url) == before
        run = cli("restore", str(manifest.path), "--yes", "--other-database",
                  cwd=project.root, url=other_url)
        assert run.code == 0 and "restored  author: 50 rows" in run.stdout, run.output
        again = cli("restore", str(manifest.path), "--yes", "--other-database",
                    cwd=project.root, url=other_url)
        assert again.code == 0 and "already  author: holds the backup's 50 rows" in \
            again.stdout, again.output
    finally:
        if backend.name == "mariadb":
            request.getfixturevalue("mariadb_server").drop_database("t_other_db")


class _FullDisk:
    """A writer that raises ENOSPC once `limit` bytes went through it."""

    def __init__(self, handle: Any, budget: list[int]) -> None:
        self.handle, self.budget = handle, budget

    def write(self, data: Any) -> int:
        self.budget[0] -= len(data)
        if self.budget[0] < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(self.handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def test_disk_full_during_backup(tmp_path: Path, backend,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project = _setup(tmp_path, backend.url, rows=3000)
    before = table_digest(backend.url)
    if backend.name == "sqlite":
        def copy(source: Any, target: Path, source_path: Path) -> None:
            target.write_bytes(b"partial")
            raise __import__("sqlite3").OperationalError("database or disk is full")
        monkeypatch.setattr(sqlite_method, "sqlite_copy", copy)
    else:
        opener = manifest.open_private  # every writer opens its files through it
        budget = [3_000]
        monkeypatch.setattr(manifest, "open_private",
                            lambda path: _FullDisk(opener(path), budget))
    dest = tmp_path / "backups" / "b1"
    with pytest.raises(AlembicRepairError) as err:
        backup(project, dest)
    message = _one_line(err)
    assert "disk full" in message and str(dest) in message
    assert not dest.exists()
    assert table_digest(backend.url) == before


KILLED_BACKUP = """
import os, signal, sys
from alembic_repair import Project
from alembic_repair.data.backups import backup

def progress(table, done, total):
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 would, once data is being written

backup(Project.discover(sys.argv[1], url=sys.argv[2]), method=sys.argv[3], progress=progress)
"""


@pytest.mark.crash
def test_a_killed_backup_leaves_no_backup_and_the_next_one_cleans_up(tmp_path: Path,
                                                                     backend) -> None:
    """The final folder appears only once its manifest is sealed; a kill -9 leaves a
    ``.partial-<pid>`` folder that the next backup removes (one of a live process stays)."""
    project = _setup(tmp_path, backend.url)
    killed = subprocess.run([sys.executable, "-c", KILLED_BACKUP, str(project.root), backend.url,
                             backend.method], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    root = project.state_dir / "backups"
    (left,) = root.iterdir()
    assert ".partial-" in left.name and _pid_of(left) > 0
    assert not (left / backups_module.MANIFEST).exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = root / f"20990101T000000Z.partial-{sleeper.pid}"
        alive.mkdir()
        manifest = backup(project)
        assert not left.exists() and alive.exists()
        assert sorted(p.name for p in root.iterdir()) == sorted([manifest.path.name, alive.name])
        assert ".partial" not in manifest.path.name
        assert (manifest.path / backups_module.MANIFEST).is_file()
        assert manifest.path.stat().st_mode & 0o777 == 0o700
        assert verify(manifest.path).tables == manifest.tables
    finally:
        sleeper.kill()
        sleeper.wait()


def _pid_of(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])


def test_a_named_destination_appears_only_when_sealed(tmp_path: Path, sqlite_url: str) -> None:
    project = _setup(tmp_path, sqlite_url)
    dest = tmp_path / "out" / "b1"
    seen: list[list[str]] = []

    def progress(_table: str, _done: int, _total: int | None) -> None:
        seen.append(sorted(p.name for p in dest.parent.iterdir()))

    manifest = backups_module.backup(project, dest, method="python", progress=progress)
    assert manifest.path == dest and (dest / backups_module.MANIFEST).is_file()
    assert seen and all(names == [f"b1.partial-{os.getpid()}"] for names in seen), seen
    assert sorted(p.name for p in dest.parent.iterdir()) == ["b1"]
