"""`drop` (api.drop, cli.py) over the rewrite engine: plan first, soft by default, hard after a
backup; the written revision upgrades and downgrades with every row back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, execute, table_digest, tree_digest, write_project

from alembic_repair import Project, bootstrap
from alembic_repair.data.trash import list_trash

ROWS = [
    "INSERT INTO author (id, name) VALUES (1, 'Ann'), (2, 'Bo')",
    "INSERT INTO post (id, title, body, author_id) VALUES (1, 'hello', 'x', 1), "
    "(2, 'again', NULL, 2)",
]


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _project(tmp_path: Path, url: str) -> Path:
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=url))
    execute(url, *ROWS)
    return root


def _alembic(root: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_drop_without_yes_shows_the_revision_and_writes_nothing(tmp_path: Path,
                                                                sqlite_url: str) -> None:
    root = _project(tmp_path, sqlite_url)
    files, rows = tree_digest(root), table_digest(sqlite_url)
    run = cli("drop", "post", cwd=root, url=sqlite_url)
    assert run.code == 5 and run.stderr == "", run.output  # a dry run: the plan, on stdout
    assert run.stdout.startswith("Plan (dry run, nothing changed):\n")
    assert "+def upgrade" in run.stdout and "rename_table" in run.stdout
    assert "  drop: would write alembic/versions/" in run.stdout
    assert run.stdout.endswith("Run again with --yes to apply it.\n")
    assert tree_digest(root) == files and table_digest(sqlite_url) == rows


def test_soft_drop_revision_upgrades_into_the_trash_and_downgrades_back(tmp_path: Path,
                                                                        backend) -> None:
    root = _project(tmp_path, backend.url)
    before = table_digest(backend.url)["post"]
    run = cli("drop", "post", "--yes", cwd=root, url=backend.url)
    assert run.code == 0, run.output
    assert "wrote alembic/versions/" in run.stdout

    up = _alembic(root, backend.url, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert "post" not in table_digest(backend.url)
    (entry,) = list_trash(Project.discover(root, url=backend.url))
    assert entry.table == "post" and entry.rows == 2

    down = _alembic(root, backend.url, "downgrade", "-1")
    assert down.returncode == 0, down.stderr
    assert table_digest(backend.url)["post"] == before


def test_hard_drop_takes_a_backup_first(tmp_path: Path, backend) -> None:
    root = _project(tmp_path, backend.url)
    refused = cli("drop", "post", "--hard", cwd=root, url=backend.url)
    assert refused.code == 5 and not (root / ".alembic_repair" / "backups").exists()
    assert "drop --hard post: would back up the tables" in refused.stdout
    run = cli("drop", "post", "--hard", "--yes", cwd=root, url=backend.url)
    assert run.code == 0, run.output
    (backup,) = (root / ".alembic_repair" / "backups").iterdir()
    assert (backup / "manifest.json").is_file() and "backup  " in run.stdout
    assert _alembic(root, backend.url, "upgrade", "head").returncode == 0
    assert "post" not in table_digest(backend.url)


def test_drop_into_an_applied_revision_is_refused(tmp_path: Path, backend) -> None:
    root = _project(tmp_path, backend.url)
    (head,) = [p.name.split("_", 1)[0] for p in (root / "alembic" / "versions").glob("*.py")]
    files = tree_digest(root)
    run = cli("drop", "post", "--into", head, "--yes", cwd=root, url=backend.url)
    assert run.code == 1 and "applied" in run.stderr, run.output
    assert tree_digest(root) == files


def test_drop_of_a_table_still_referenced_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    root = _project(tmp_path, sqlite_url)
    files = tree_digest(root)
    run = cli("drop", "author", "--yes", cwd=root, url=sqlite_url)
    assert run.code != 0 and "post" in run.stderr, run.output
    assert "Traceback" not in run.output and tree_digest(root) == files
