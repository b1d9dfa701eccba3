"""The forked replay child behaves as a fresh `alembic upgrade` would: the project's own
modules, imported by doctor with the live URL, are imported again under the scratch URL; and
a process with other threads (Rich's progress display under fix) never forks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from test_replay_env import FIRST, SECOND, make_project

from alembic_repair import Project
from alembic_repair.engine import replay_env
from alembic_repair.engine.state.read import read_state


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def settings_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Project, str]:
    """env.py takes the URL from the application's settings, read from DATABASE_URL when
    the settings module is imported (pydantic-settings style)."""
    url = f"sqlite:///{tmp_path}/live.db"
    monkeypatch.setenv("DATABASE_URL", url)
    root = tmp_path / "p"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "settings.py").write_text(
        "import os\nDATABASE_URL = os.environ['DATABASE_URL']\n")
    make_project(root, url, {"a1": FIRST, "b2": SECOND}, env_url="settings.DATABASE_URL",
                 prelude="from app import settings")
    return Project.discover(root, url=url, strict=False), url


def live_tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("fork", [True, False])
def test_settings_read_at_import_point_at_the_scratch_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool) -> None:
    monkeypatch.setattr(replay_env, "FORK", fork)
    project, url = settings_project(tmp_path, monkeypatch)

    replay = read_state(project).replay

    assert replay is not None and replay.mode == "env", replay and replay.fallback
    assert replay.order == ("a1", "b2") and replay.failed_at is None
    assert live_tables(url) == []  # the replay ran on the scratch database only


def test_a_process_with_threads_starts_a_fresh_interpreter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project, _ = settings_project(tmp_path, monkeypatch)

    def no_fork(*args: object) -> None:
        raise AssertionError("forked while another thread ran")

    monkeypatch.setattr(replay_env, "_fork", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        replay = read_state(project).replay
    finally:
        stop.set()
        other.join()

    assert replay is not None and replay.mode == "env" and replay.order == ("a1", "b2")
