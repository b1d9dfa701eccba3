"""What the tool writes into a user's project stays out of version control (issue 16): the
SQLite lock file beside the database exists only while a run holds it, and everything else
lives in ``.alembic_repair/``, which ignores itself."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import cli, write_project
from sqlalchemy import create_engine

from alembic_repair.engine.locking import migration_lock, sqlite_lock_path


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t",
                           *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout


def test_bootstrap_and_fix_leave_nothing_unignored_in_git(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "the user's project")
    url = f"sqlite:///{root / 'app.db'}"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    assert cli("bootstrap", cwd=root, url=url, env=env).code == 0
    with sqlite3.connect(root / "app.db") as conn:  # rows, and a lost version table: fix
        conn.execute("INSERT INTO author (name) VALUES ('kept')")  # backs up, then stamps
        conn.execute("DROP TABLE alembic_version")
    fixed = cli("fix", "--yes", cwd=root, url=url, env=env)
    assert fixed.code == 0 and "stamp" in fixed.stdout, fixed
    assert any((root / ".alembic_repair" / "backups").iterdir())  # written, and ignored
    status = _git(root, "status", "--porcelain", "--untracked-files=all").splitlines()
    paths = {line[3:] for line in status}
    (revision,) = [p for p in paths if p.startswith("alembic/versions/") and p.endswith(".py")]
    assert paths == {"alembic.ini", "alembic/env.py", "alembic/script.py.mako",
                     "alembic/versions/.gitkeep", revision, "app.db"}, status
    assert not list(root.glob("*.lock")) and not sqlite_lock_path(root / "app.db").exists()
    own = sorted(str(p.relative_to(root)) for p in (root / ".alembic_repair").rglob("*")
                 if p.is_file())
    assert ".alembic_repair/.gitignore" in own
    assert _git(root, "check-ignore", *own).split() == own


def test_the_lock_file_exists_only_while_held_and_a_waiter_locks_the_new_one(
        tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    sqlite3.connect(database).close()
    lock = sqlite_lock_path(database)
    assert lock == tmp_path / "app.db.alembic-repair.lock"
    engine = create_engine(f"sqlite:///{database}")
    held, release, said = threading.Event(), threading.Event(), []

    def first() -> None:
        with migration_lock(engine, tmp_path / ".alembic_repair"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert held.wait(10) and lock.exists()
        threading.Timer(0.3, release.set).start()  # the waiter opened the file the first run
        started = time.monotonic()                 # then deletes
        with migration_lock(engine, tmp_path / ".alembic_repair", timeout=10,
                            notify=said.append):
            assert time.monotonic() - started < 10 and lock.exists()
            fd = os.open(lock, os.O_RDWR)  # the file at the path is the one held now
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
    finally:
        release.set()
        thread.join(10)
        engine.dispose()
    assert len(said) == 1 and "waiting for another alembic-repair run" in said[0]
    assert not lock.exists() and not (tmp_path / ".alembic_repair").exists()
