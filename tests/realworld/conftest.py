"""Fixtures of the realworld tier: the cached venvs, one template database per history and
backend (built once per session and worker), and a fresh copy of it per test.

The venvs are built once per machine (``realworld_venvs``); a failed build skips the tier on a
developer's machine and fails it under ``CI=true``. Each template database is built the way the
package's application builds a new one, then copied for each test (a SQLite file copy; on
MariaDB ``SHOW CREATE TABLE`` + ``INSERT ... SELECT`` into a new database).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from realworld_projects import (
    HISTORIES,
    History,
    Project,
    build_fresh,
    copy_mariadb,
    head_of,
    make_project,
    version_rows,
)
from realworld_venvs import Venv, VenvBuildError, cache_root, ensure_venvs, file_lock

from alembic_repair.testing.mariadb import MariaDBServer

IN_CI = os.environ.get("CI", "").strip().lower() == "true"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Each venv's record of how long its build took (pytest-xdist workers build them, so
    # the controller reads the markers they left).
    for marker in sorted(cache_root().glob("*/.complete")):
        terminalreporter.write_line(
            f"realworld venv {marker.parent.name}: {marker.read_text().strip()}")


@pytest.fixture(scope="session")
def realworld_venvs() -> dict[str, Venv]:
    built = ensure_venvs(sorted({h.venv for h in HISTORIES}))
    failed = {name: err for name, err in built.items() if isinstance(err, VenvBuildError)}
    if failed:
        message = "realworld venv build failed: " + "; ".join(
            f"{name}: {err}" for name, err in failed.items())
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)  # only outside CI
    return {name: venv for name, venv in built.items() if isinstance(venv, Venv)}


@dataclass(frozen=True)
class Template:
    url: str
    head: str
    seconds: float  # how long the application's build took


class Templates:
    """One database per (history, backend) built the application's way, built on first use."""

    def __init__(self, request: pytest.FixtureRequest, root: Path,
                 venvs: dict[str, Venv]) -> None:
        self._request, self._root, self._venvs = request, root, venvs
        self._shared = root.parent.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
        # The replay cache (written atomically) shared by the workers: one replay per history
        # and backend per session instead of one per worker.
        self.cache_home = str(self._shared / "realworld-xdg-cache")
        self._built: dict[tuple[str, str], Template] = {}

    def server(self) -> MariaDBServer:
        return self._request.getfixturevalue("mariadb_server")

    def get(self, history: History, backend: str) -> Template:
        key = (history.name, backend)
        if key not in self._built:
            self._built[key] = (self._sqlite(history) if backend == "sqlite"
                                else self._mariadb(history))
        return self._built[key]

    def _build(self, history: History, backend: str, folder: Path, url: str) -> Template:
        project = make_project(history, self._venvs[history.venv], folder, url)
        started = time.monotonic()
        build_fresh(project, backend)
        head = head_of(project)
        assert version_rows(url) == [head], f"{history.name}: built database not at head"
        return Template(url, head, time.monotonic() - started)

    def _sqlite(self, history: History) -> Template:
        # One file for all pytest-xdist workers (their temp folders share a parent).
        folder = self._shared / f"realworld-{history.name}-sqlite"
        done = folder / "head"
        with file_lock(self._shared / f"realworld-{history.name}-sqlite.lock"):
            url = f"sqlite:///{folder / 'template.db'}"
            if not done.exists():
                shutil.rmtree(folder, ignore_errors=True)
                template = self._build(history, "sqlite", folder, url)
                done.write_text(template.head)
                return template
            return Template(url, done.read_text(), 0.0)

    def _mariadb(self, history: History) -> Template:
        # Each worker has its own server, so its own template.
        url = self.server().create_database(f"rwt_{history.name}_{secrets.token_hex(3)}")
        return self._build(history, "mariadb", self._root / f"{history.name}-mariadb", url)


@pytest.fixture(scope="session")
def templates(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              realworld_venvs: dict[str, Venv]) -> Templates:
    return Templates(request, tmp_path_factory.mktemp("realworld-templates"), realworld_venvs)


@dataclass(frozen=True)
class Fresh:
    project: Project
    head: str


@pytest.fixture
def fresh_factory(request: pytest.FixtureRequest, tmp_path: Path, templates: Templates,
                  realworld_venvs: dict[str, Venv]) -> Iterator[object]:
    """``fresh(history, backend)``: a project in tmp_path on a copy of the template database."""
    dropped: list[str] = []

    def fresh(history: History, backend: str) -> Fresh:
        template = templates.get(history, backend)
        if backend == "sqlite":
            shutil.copyfile(template.url.removeprefix("sqlite:///"), tmp_path / "app.db")
            url = f"sqlite:///{tmp_path / 'app.db'}"
        else:
            name = f"rw_{secrets.token_hex(5)}"
            url = templates.server().create_database(name)
            dropped.append(name)
            copy_mariadb(template.url, url)
        project = make_project(history, realworld_venvs[history.venv], tmp_path / "project", url,
                               templates.cache_home)
        return Fresh(project, template.head)

    yield fresh
    for name in dropped:
        templates.server().drop_database(name)
