"""Every step is idempotent against its own partial result (issue 10, item 3).

A step that wrote a file before it was killed must recognise that file on the next run (not
write a second one on top of it), and its undo must work from what it recorded before it acted,
never from state it may have changed half-way. `drop` recognises a drop it already wrote.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, table_digest
from sqlalchemy import create_engine, inspect

from alembic_repair import Project, doctor
from alembic_repair.repair.journal import CRASH_ENV, Journal
from alembic_repair.testing.scenarios import build, execute


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(CRASH_ENV, raising=False)


def _versions(root: Path) -> set[str]:
    return {p.name for p in (root / "alembic" / "versions").glob("*.py")}


def _user_rows(url: str) -> dict[str, tuple[int, str]]:
    return {t: d for t, d in table_digest(url).items() if t != "alembic_version"}


def _fresh_build(root: Path, fresh: str) -> subprocess.CompletedProcess[str]:
    """Plain `alembic upgrade head` on an empty database: the history must build it."""
    env = {**os.environ, "DATABASE_URL": fresh}
    return subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)


def _fresh_url(request: pytest.FixtureRequest, backend_name: str, tmp_path: Path) -> str:
    """A new empty database of the backend (a revision is written for its dialect)."""
    if backend_name == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    server = request.getfixturevalue("mariadb_server")
    name = f"fresh_{secrets.token_hex(4)}"
    request.addfinalizer(lambda: server.drop_database(name))
    return str(server.create_database(name))


def _healthy(root: Path, url: str) -> None:
    project = Project.discover(root, url=url)
    diagnosis = doctor(project)
    assert diagnosis.healthy, [(f.code, f.detail) for f in diagnosis.findings]
    assert Journal.load(project.state_dir) is None


def _cut_short(path: Path) -> None:
    """What kill -9 leaves when it lands while the file is being written."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")


# -- a. autogenerate killed right after it wrote its revision ------------------------------------


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    return str(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "mariadb_url"))


MARIADB = pytest.mark.mariadb


@pytest.mark.crash
@pytest.mark.parametrize(("recovery", "backend"), [
    ("fix", "sqlite"), ("rollback", "sqlite"), ("cut-short", "sqlite"),
    pytest.param("fix", "mariadb", marks=MARIADB)])
def test_autogenerate_killed_after_writing_is_finished_not_written_twice(
        recovery: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root, url = tmp_path / "project", _url(request, backend)
    build("fm32_compare_type_off", root, url)
    rows, files = _user_rows(url), _versions(root)
    crashed = cli("fix", "--yes", cwd=root, url=url, env={CRASH_ENV: "autogenerate.written"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    written = _versions(root) - files
    assert len(written) == 1
    if recovery == "cut-short":
        _cut_short(root / "alembic" / "versions" / next(iter(written)))
    if recovery == "rollback":
        undone = cli("fix", "--rollback", "--yes", cwd=root, url=url)
        assert undone.code == 1, undone.output  # rolled back: AR403 is a finding again
        assert "Traceback" not in undone.output
        assert _versions(root) == files
        assert Journal.load(root / ".alembic_repair") is None
    again = cli("fix", "--yes", cwd=root, url=url)
    assert again.code == 0, again.output
    assert len(_versions(root) - files) == 1, sorted(_versions(root) - files)
    assert _user_rows(url) == rows
    _healthy(root, url)
    fresh = _fresh_build(root, _fresh_url(request, backend, tmp_path))
    assert fresh.returncode == 0, fresh.stderr[-2000:]


def test_autogenerate_rollback_after_its_upgrade_refuses_in_one_line(sqlite_url: str,
                                                                     tmp_path: Path) -> None:
    root = tmp_path / "project"
    build("fm32_compare_type_off", root, sqlite_url)
    crashed = cli("fix", "--yes", cwd=root, url=sqlite_url, env={CRASH_ENV: "1.autogenerate"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    refused = cli("fix", "--rollback", "--yes", cwd=root, url=sqlite_url)
    assert refused.code == 4, refused.output
    assert "applied already" in refused.stderr and "Traceback" not in refused.output
    assert Journal.load(root / ".alembic_repair") is not None
    finished = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert finished.code == 0, finished.output
    _healthy(root, sqlite_url)


# -- c. an adoption step that fails mid-run ------------------------------------------------------


@pytest.mark.crash
@pytest.mark.parametrize("recovery", ["fix", "rollback"])
def test_adoption_cut_short_is_finished_or_rolled_back(recovery: str, sqlite_url: str,
                                                       tmp_path: Path) -> None:
    root = tmp_path / "project"
    build("fm01_deleted_head_revision", root, sqlite_url)
    rows, files = _user_rows(sqlite_url), _versions(root)
    crashed = cli("fix", "--yes", cwd=root, url=sqlite_url, env={CRASH_ENV: "adopt.written"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    (written,) = _versions(root) - files
    _cut_short(root / "alembic" / "versions" / written)
    if recovery == "rollback":
        undone = cli("fix", "--rollback", "--yes", cwd=root, url=sqlite_url)
        assert undone.code == 1, undone.output  # AR302 again, as before the run
        assert "Traceback" not in undone.output and "AR302" in undone.output
        assert _versions(root) == files
        assert Journal.load(root / ".alembic_repair") is None
    again = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert again.code == 0, again.output
    assert len(_versions(root) - files) == 1
    assert _user_rows(sqlite_url) == rows
    _healthy(root, sqlite_url)


def test_adoption_whose_stamp_failed_is_rolled_back_once_the_fault_is_gone(
        sqlite_url: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    build("fm01_deleted_head_revision", root, sqlite_url)
    rows, files = _user_rows(sqlite_url), _versions(root)
    execute(sqlite_url, "CREATE TRIGGER injected BEFORE INSERT ON alembic_version "
                        "BEGIN SELECT RAISE(ABORT, 'injected fault'); END")
    failed = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert failed.code != 0
    assert Journal.load(root / ".alembic_repair") is not None
    execute(sqlite_url, "DROP TRIGGER injected")
    undone = cli("fix", "--rollback", "--yes", cwd=root, url=sqlite_url)
    assert undone.code == 1, undone.output
    assert _versions(root) == files
    assert table_digest(sqlite_url)["alembic_version"][0] == 1
    again = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert again.code == 0, again.output
    assert _user_rows(sqlite_url) == rows
    _healthy(root, sqlite_url)


# -- b. drop run twice ---------------------------------------------------------------------------


@pytest.mark.parametrize(("hard", "backend"), [
    (True, "sqlite"), (False, "sqlite"), pytest.param(True, "mariadb", marks=MARIADB)],
    ids=["hard-sqlite", "soft-sqlite", "hard-mariadb"])
def test_drop_twice_writes_one_revision(hard: bool, backend: str, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    root, url = tmp_path / "project", _url(request, backend)
    build("healthy", root, url)
    flags = ["--hard"] if hard else []
    files = _versions(root)
    first = cli("drop", "post", *flags, "--yes", cwd=root, url=url)
    assert first.code == 0, first.output
    assert len(_versions(root) - files) == 1
    after_first = _versions(root)
    rows = table_digest(url)
    second = cli("drop", "post", *flags, "--yes", cwd=root, url=url)
    assert second.code == 0, second.output
    assert "already" in second.stdout, second.output
    assert _versions(root) == after_first
    assert table_digest(url) == rows
    fresh = _fresh_build(root, _fresh_url(request, backend, tmp_path))
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    upgraded = _fresh_build(root, url)
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert "post" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


# -- an upgrade killed half-way (MariaDB commits each DDL statement) ------------------------------


@pytest.mark.crash
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mariadb", marks=MARIADB)])
def test_upgrade_killed_half_way_is_finished_not_failed_forever(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root, url = tmp_path / "project", _url(request, backend)
    build("fm03_behind_head", root, url)  # at bbb222; ccc333 (add author.email) pending
    rows = _user_rows(url)
    crashed = cli("fix", "--yes", cwd=root, url=url, env={CRASH_ENV: "upgrade.started"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    # what the kill leaves on MariaDB when it lands after ccc333's DDL, before the stamp
    execute(url, "ALTER TABLE author ADD COLUMN email VARCHAR(200)")
    again = cli("fix", "--yes", cwd=root, url=url)
    assert again.code == 0, again.output
    assert {t: d[0] for t, d in _user_rows(url).items()} == {t: d[0] for t, d in rows.items()}
    _healthy(root, url)
