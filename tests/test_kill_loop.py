"""A bounded random kill -9 loop over the commands that change things (issue 10, item 3).

Each case builds a scenario with rows, starts one command as a subprocess and kills it with
SIGKILL: at a crash point the command really passes (``ALEMBIC_REPAIR_CRASH_AFTER``, chosen
from the trace in `FAMILIES`; deterministic) or after a random delay (any moment at all).
Journalled commands are killed again while they recover (a later crash point, or a timer).
Then the recovery the docs promise runs (the same command again with ``--yes``; for ``fix``
on some seeds ``fix --rollback --yes`` first) and the project must converge: exit 0, doctor
healthy (or the documented end state of a command that only writes a revision), every user
row kept (counts and checksums; a table moved into the trash counts through its trash table),
no journal left, and a plain ``python -m alembic upgrade head`` afterwards moves no row.

Everything random comes from one seed: ``KILL_LOOP_SEED`` (default: new each run). One test
per backend runs its cases in turn (the suite runs on xdist workers, so the kill floor is
asserted where the kills are counted); a failing case names itself and its seed, and replays
alone with ``KILL_LOOP_SEED=<seed> KILL_LOOP_ONLY=<case> pytest tests/test_kill_loop.py``.
Each test records its kills (``user_properties``); conftest.py prints the summary line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import Rows, cli
from helpers import assert_rows_kept as _assert_rows_kept
from helpers import user_rows as _rows

from alembic_repair import Project, doctor
from alembic_repair.repair.journal import CRASH_ENV, TRACE_ENV, Journal
from alembic_repair.testing.scenarios import build, edit, execute

SEED = int(os.environ.get("KILL_LOOP_SEED") or random.SystemRandom().randrange(10**6))
TIMEOUT = 240
#: Kills each backend's loop must land (60 in all, at least 20 on MariaDB).
FLOOR = {"sqlite": 40, "mariadb": 20}


@dataclass(frozen=True)
class Family:
    """One command on one scenario. `points`: the crash points it passes, in order (its
    `ALEMBIC_REPAIR_CRASH_TRACE` on a clean run); `seconds`: about how long it runs, for
    the timers; `end`: what converged means beyond rows and journal (see `_converged`).
    A renamed step fails the first kill ("did not pass crash point"): list the points again
    with ``ALEMBIC_REPAIR_CRASH_TRACE=/tmp/trace alembic-repair ...`` on the scenario."""

    name: str
    scenario: str
    args: tuple[str, ...]
    points: tuple[str, ...]
    seconds: float
    end: str = "healthy"  # healthy | drop-soft | drop-hard | trashed | backup
    backends: tuple[str, ...] = ("sqlite", "mariadb")
    journalled: bool = False
    setup: Callable[[Path, str], tuple[str, ...]] | None = None  # -> extra args


def _add_slug(root: Path, url: str) -> tuple[str, ...]:
    edit(root / "app" / "models.py", "class Post(Base):\n",
         "class Post(Base):\n    slug: Mapped[str | None] = mapped_column(String(80))\n")
    return ()


def _emptied_after_backup(root: Path, url: str) -> tuple[str, ...]:
    done = cli("backup", cwd=root, url=url)
    assert done.code == 0, done.output
    (folder,) = (root / ".alembic_repair" / "backups").iterdir()
    execute(url, "DELETE FROM post", "DELETE FROM author")
    return (str(folder),)


def _trashed(root: Path, url: str) -> tuple[str, ...]:
    done = cli("trash", "drop", "post", "--yes", cwd=root, url=url)
    assert done.code == 0, done.output
    return ()


FAMILIES = (
    Family("fix-models", "fm32_compare_type_off", ("fix", "--yes"),
           ("1.env-option", "verify", "backup", "autogenerate.written", "1.autogenerate"),
           2.6, journalled=True),
    Family("fix-adopt", "fm01_deleted_head_revision", ("fix", "--yes"),
           ("backup", "adopt.written", "1.adopt", "upgrade.started", "2.upgrade", "verify"),
           2.3,
           journalled=True),
    Family("fix-pending-drop", "fm24_pending_drop_table", ("fix", "--yes"),
           ("1.hide-tables", "2.rewrite", "verify", "backup", "upgrade.started", "1.upgrade"),
           2.0, journalled=True),
    Family("fix-history", "fm05_deleted_intermediate_revision", ("fix", "--yes"),
           ("recreate-missing.written", "1.recreate-missing", "verify"), 2.1,
           journalled=True),
    Family("fix-half-applied", "fm13_half_applied_then_corrected", ("fix", "--yes"),
           ("backup", "1.complete", "verify"), 2.5, backends=("mariadb",), journalled=True),
    Family("reset", "fm05_deleted_intermediate_revision", ("reset", "--yes"),
           ("backup", "drop.1", "drop.2", "drop.3", "drop", "scaffold", "baseline",
            "upgrade", "restore"), 1.5, journalled=True),
    Family("squash", "healthy", ("squash", "--yes"),
           ("1.squash-baseline", "2.move", "3.move", "4.move", "5.stamp", "6.squash-verify"),
           1.6, journalled=True),
    Family("backup", "healthy", ("backup",), (), 1.2, end="backup"),
    Family("restore", "healthy", ("restore",), (), 1.5, setup=_emptied_after_backup),
    Family("drop-soft", "healthy", ("drop", "post", "--yes"), ("drop.revision",), 2.2,
           end="drop-soft"),
    Family("drop-hard", "healthy", ("drop", "post", "--hard", "--yes"),
           ("drop.backup", "drop.revision"), 3.2, end="drop-hard"),
    Family("bootstrap-adopt", "fm11_versions_dir_missing", ("bootstrap",),
           ("bootstrap.adopt.written",), 1.3),
    Family("bootstrap-models", "healthy", ("bootstrap",), ("bootstrap.autogenerate.written",),
           1.8, setup=_add_slug),
    Family("trash-drop", "healthy", ("trash", "drop", "post", "--yes"), (), 1.6, end="trashed"),
    Family("trash-restore", "healthy", ("trash", "restore", "post", "--yes"), (), 1.6,
           setup=_trashed),
)
BY_NAME = {f.name: f for f in FAMILIES}

#: (family, backend, cases): MariaDB gets the families with the most to lose per kill.
PLAN = [
    *[(f.name, "sqlite", (3 if f.name in ("fix-models", "fix-adopt", "reset", "squash") else 2)
       if f.journalled else 1) for f in FAMILIES if "sqlite" in f.backends],
    *[(name, "mariadb", 1) for name in (
        "fix-models", "fix-adopt", "fix-pending-drop", "fix-half-applied", "reset", "squash",
        "backup", "restore", "drop-hard", "bootstrap-adopt", "trash-drop")],
]


@dataclass(frozen=True)
class Case:
    family: Family
    backend: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.family.name}-{self.backend}-seed{SEED}.{self.seed % 1000}"


def _cases(backend: str) -> list[Case]:
    cases, index = [], 0
    for family, on, count in PLAN:
        for _ in range(count):
            index += 1
            if on == backend:
                cases.append(Case(BY_NAME[family], on, SEED * 1000 + index))
    only = os.environ.get("KILL_LOOP_ONLY")
    return [c for c in cases if only is None or only in c.name]


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(CRASH_ENV, raising=False)
    monkeypatch.delenv(TRACE_ENV, raising=False)


# -- running and killing -----------------------------------------------------------------------


def _env(url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", CRASH_ENV)}
    return {**env, "DATABASE_URL": url, **extra}


def _run(root: Path, url: str, args: tuple[str, ...], *, point: str | None = None,
         after: float | None = None) -> tuple[int, str]:
    """The command, killed at crash `point` or `after` seconds (whichever is given)."""
    extra = {CRASH_ENV: point} if point else {}
    process = subprocess.Popen([sys.executable, "-m", "alembic_repair", *args], cwd=root,
                               env=_env(url, extra), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if after is not None:
        try:
            out, _ = process.communicate(timeout=after)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the command and any child (mariadb-dump)
            out, _ = process.communicate(timeout=TIMEOUT)
        return process.returncode, out
    out, _ = process.communicate(timeout=TIMEOUT)
    return process.returncode, out


def _database(request: pytest.FixtureRequest, backend: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'app.db'}"
    server = request.getfixturevalue("mariadb_server")
    name = f"kill_{folder.name.replace('-', '_').replace('.', '_')[-40:]}"
    request.addfinalizer(lambda: server.drop_database(name))
    return str(server.create_database(name))


# -- what converged means ----------------------------------------------------------------------


def _backed_up(root: Path, table: str, rows: int) -> bool:
    for manifest in (root / ".alembic_repair" / "backups").glob("*/manifest.json"):
        tables = json.loads(manifest.read_text())["tables"]
        if any(t["name"] == table and t["rows"] == rows for t in tables):
            return True
    return False


def _alembic_upgrade(root: Path, url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=root,
                          env=_env(url, {}), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]


def _converged(family: Family, root: Path, url: str, before: Rows,
               versions_before: set[str], log: list[str]) -> None:
    assert Journal.load(root / ".alembic_repair") is None, log
    now = _rows(url)
    if family.end == "trashed":
        assert "post" not in now, log
    if family.end in ("drop-soft", "drop-hard"):
        written = {p.name for p in (root / "alembic" / "versions").glob("*.py")}
        assert len(written - versions_before) == 1, (sorted(written - versions_before), log)
        assert now == before, log  # written, not applied
    _assert_rows_kept(before, now)
    if family.end == "healthy":
        diagnosis = doctor(Project.discover(root, url=url))
        assert diagnosis.healthy, ([(f.code, f.detail) for f in diagnosis.findings], log)
    if family.end == "backup":
        folders = [p.parent for p in (root / ".alembic_repair" / "backups").glob(
            "*/manifest.json")]
        assert folders, log
    _alembic_upgrade(root, url)
    upgraded = _rows(url)
    if family.end == "drop-hard":
        assert "post" not in upgraded and _backed_up(root, "post", len(before["post"])), log
        _assert_rows_kept(before, upgraded, gone=("post",))
    else:
        _assert_rows_kept(before, upgraded)
        if family.end != "drop-soft":
            assert upgraded == now, log  # plain Alembic moved no row


# -- the loop ----------------------------------------------------------------------------------


def _kill_plan(family: Family, backend: str, rng: random.Random) -> list[tuple[str, Any]]:
    """The kills of one case: crash points in the order the command passes them (a rerun
    passes only the later ones), then maybe a timer (any moment). A journalled command is
    killed up to three times (twice while it recovers), any other twice (the second time
    while the same command runs again)."""
    kills = 3 if family.journalled else 2
    points = list(family.points)
    least = kills if backend == "mariadb" else 1  # MariaDB: fewer cases, so surer kills
    count = rng.randint(min(least, len(points)), min(len(points), kills)) if points else 0
    chosen = sorted(rng.sample(range(len(points)), count))
    plan: list[tuple[str, Any]] = [("point", points[i]) for i in chosen]
    while len(plan) < kills:
        plan.append(("timer", rng.uniform(0.3, family.seconds * 0.8)))
    return plan


def _one_case(case: Case, folder: Path, request: pytest.FixtureRequest) -> int:
    """Build, kill, recover, check; returns the number of kills that landed."""
    family, backend = case.family, case.backend
    rng = random.Random(case.seed)
    url = _database(request, backend, folder)
    root = folder / "project"
    build(family.scenario, root, url)
    before = _rows(url)  # (restore, trash restore: the rows their setup takes away)
    extra = family.setup(root, url) if family.setup else ()
    args = (*family.args, *extra) + (("--yes",) if family.name == "restore" else ())
    versions_before = {p.name for p in (root / "alembic" / "versions").glob("*.py")} \
        if (root / "alembic" / "versions").is_dir() else set()
    kills = 0
    log: list[str] = [case.name]
    for number, (how, value) in enumerate(_kill_plan(family, backend, rng)):
        code, out = _run(root, url, args, point=value if how == "point" else None,
                         after=value if how == "timer" else None)
        log.append(f"{how} {value}: exit {code}")
        assert "Traceback" not in out, (log, out)
        if code == -signal.SIGKILL:
            kills += 1
            continue
        if how == "point" and number == 0:
            pytest.fail(f"{case.name}: did not pass crash point {value}: exit {code}\n{out}")
        assert code == 0, (log, out)
        break  # it finished before the kill: nothing left to interrupt
    if family.name.startswith("fix") and rng.random() < 0.35:
        code, out = _run(root, url, ("fix", "--rollback", "--yes"))
        log.append(f"rollback: exit {code}")
        assert code in (0, 1, 4), (log, out)
        assert "Traceback" not in out, (log, out)
        if code == 4:
            assert "fix --yes" in out, (log, out)
    code, out = _run(root, url, args)
    log.append(f"recovery: exit {code}")
    assert code == 0, (log, out)
    assert "Traceback" not in out, (log, out)
    _converged(family, root, url, before, versions_before, log)
    return kills


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_kill_9_then_recover_converges(backend: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    started = time.monotonic()
    cases = _cases(backend)
    kills = 0
    for case in cases:
        folder = tmp_path / case.name
        folder.mkdir()
        try:
            kills += _one_case(case, folder, request)
        except BaseException as err:
            raise AssertionError(
                f"{case.name} did not converge; replay: KILL_LOOP_SEED={SEED} "
                f"KILL_LOOP_ONLY={case.name} pytest tests/test_kill_loop.py -k {backend}"
            ) from err
    seconds = time.monotonic() - started
    request.node.user_properties += [("kill_loop_kills", kills), ("kill_loop_cases", len(cases)),
                                     ("kill_loop_seed", SEED), ("kill_loop_seconds", seconds)]
    if os.environ.get("KILL_LOOP_ONLY") is None:
        assert kills >= FLOOR[backend], (f"only {kills} kills landed on {backend} "
                                         f"(KILL_LOOP_SEED={SEED})")
