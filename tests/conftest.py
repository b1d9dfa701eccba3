"""Pytest fixtures for real database backends.

* ``mariadb_server`` (session): a throwaway MariaDB server on a free TCP port of 127.0.0.1,
  with its own data directory in a temp dir, started once per test session and stopped at
  the end. Tests that need it are skipped when ``mariadbd`` is not installed, except under
  ``CI=true`` where a missing server fails the run.
* ``mariadb_url`` (function): URL of a fresh, empty utf8mb4 database, dropped afterwards.
* ``sqlite_url`` (function): URL of a SQLite file in ``tmp_path`` (not created).
* ``backend`` (function, parametrized ``sqlite``/``mariadb``): a :class:`Backend`.
  The MariaDB server is only started when a ``mariadb`` parameter actually runs, so
  ``-m "not mariadb"`` or ``-k sqlite`` never start it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, settings

from alembic_repair.testing.mariadb import MariaDBServer, MissingServer, throwaway_server

IN_CI = os.environ.get("CI", "").strip().lower() == "true"

# ---------------------------------------------------------------------------------------
# Hypothesis profiles
# ---------------------------------------------------------------------------------------

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if IN_CI else "dev")

# ---------------------------------------------------------------------------------------
# Markers and reporting
# ---------------------------------------------------------------------------------------

_STARTUP_SECONDS = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--floor-stories", action="store_true", default=False,
        help="tests/stories.py: check each story's steps 1-4 only (build, fix, plain alembic "
             "upgrade and check at one head, rows kept), not the new empty database, the "
             "second fix, doctor, nor the kill -9 replays (the dependency-floor run in .ci/run: "
             "those exercise our own journal and planner, which do not depend on the Alembic "
             "release, and run at the latest releases)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mariadb: the test needs the throwaway MariaDB server (fixture mariadb_server)",
    )


REALWORLD = Path(__file__).parent / "realworld"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that request the server directly (or through mariadb_url) get the marker, so
    # `-m "not mariadb"` selects the SQLite-only part of the suite.
    for item in items:
        if "mariadb_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mariadb)
    # The realworld tier last: its venvs build in the background meanwhile (sessionstart).
    items.sort(key=lambda item: item.path.is_relative_to(REALWORLD))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start building the realworld tier's venvs (pip installs of published packages, minutes
    on a fresh machine) in the background while the rest of the suite runs; the tier's
    fixture waits on the same per-venv file lock, and finds them built or half-built."""
    if os.environ.get("PYTEST_XDIST_WORKER") or "not realworld" in str(
            session.config.getoption("markexpr", "")):
        return
    tier = REALWORLD.resolve()
    for arg in session.config.args or ["."]:
        given = Path(arg.split("::")[0]).resolve()
        if tier.is_relative_to(given) or given.is_relative_to(tier):
            break
    else:
        return
    names = sorted(p.stem for p in (tier / "requirements").glob("*.txt"))
    cache = Path(os.environ.get("ALEMBIC_REPAIR_REALWORLD_CACHE")
                 or tier.parent.parent / ".cache" / "realworld")
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "prebuild.log").open("wb") as out:
        subprocess.Popen([sys.executable, str(tier / "realworld_venvs.py"), *names],
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    seconds = terminalreporter.config.stash.get(_STARTUP_SECONDS, None)
    if seconds is not None:
        terminalreporter.write_line(f"MariaDB test server: started in {seconds:.2f}s")
    # tests/test_kill_loop.py: each backend's loop records its kills (also from xdist workers)
    for report in terminalreporter.stats.get("passed", []):
        found = dict(getattr(report, "user_properties", ()))
        if "kill_loop_kills" in found:
            terminalreporter.write_line(
                f"kill loop {report.nodeid.rsplit('[', 1)[-1].rstrip(']')}: "
                f"{found['kill_loop_kills']} kills in {found['kill_loop_cases']} cases, all "
                f"converged, {found['kill_loop_seconds']:.0f}s "
                f"(KILL_LOOP_SEED={found['kill_loop_seed']})")


# ---------------------------------------------------------------------------------------
# The suite's own cache folder
# ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Replay caches and quick verdicts go to a temp folder, never the user's ~/.cache; the
    CLI subprocesses inherit it. Tests that study the cache set their own per test."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


# ---------------------------------------------------------------------------------------
# MariaDB server
# ---------------------------------------------------------------------------------------

MISSING_SERVER = (
    "mariadbd not found: install it with `apt-get install mariadb-server` "
    "(under CI=true this is a failure)"
)


def _missing(message: str) -> NoReturn:
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)  # only outside CI: under CI=true the pytest.fail above fires


@pytest.fixture(scope="session")
def mariadb_server(pytestconfig: pytest.Config) -> Iterator[MariaDBServer]:
    try:
        with throwaway_server() as server:
            pytestconfig.stash[_STARTUP_SECONDS] = server.started_in
            yield server
    except MissingServer as err:
        _missing(f"{err} (under CI=true this is a failure)")


@pytest.fixture
def mariadb_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    name = "t_" + secrets.token_hex(5)
    url = mariadb_server.create_database(name)
    try:
        yield url
    finally:
        mariadb_server.drop_database(name)


# ---------------------------------------------------------------------------------------
# SQLite and the parametrized backend
# ---------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@dataclass(frozen=True)
class Backend:
    name: str
    url: str


@pytest.fixture(
    params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)],
    ids=["sqlite", "mariadb"],
)
def backend(request: pytest.FixtureRequest) -> Backend:
    # getfixturevalue: the server is only started when a mariadb case actually runs.
    if request.param == "sqlite":
        return Backend("sqlite", request.getfixturevalue("sqlite_url"))
    return Backend("mariadb", request.getfixturevalue("mariadb_url"))
