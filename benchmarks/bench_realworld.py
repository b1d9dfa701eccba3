"""Benchmark: ``alembic-repair doctor`` with a cold cache vs building the database, on the
published histories of ``tests/realworld`` (optuna, MLflow, JupyterHub).

Requirement (issue 12): per history and backend, doctor with a cold cache costs at most 1.5x one
``alembic upgrade head`` from empty of the same history.

Usage::

    python benchmarks/bench_realworld.py [--history optuna,mlflow,jupyterhub]
        [--backend sqlite|mariadb|both] [--runs 5]

The venvs are the tier's cached ones (``tests/realworld/realworld_venvs.py``: built on first
use, which takes minutes). Each run makes a project in a temp dir on a FRESH empty database (a
new SQLite file, or a new database on a throwaway MariaDB server) and times, as fresh
processes of the venv started from the project folder:

- A: the build of a new database the way the application does it (``tests/realworld``'s
  ``build_fresh``): plain ``alembic upgrade head`` for optuna on SQLite; MLflow's create_all of
  its initial models, then ``alembic upgrade head``; optuna on MariaDB and JupyterHub build with
  create_all + stamp head (their history does not build from empty there), so A is that;
- B: ``alembic-repair doctor --format json`` on that database with ``XDG_CACHE_HOME`` set to a
  new empty folder (cold replay cache).

Every A must succeed and every B must exit 0 or 1 with JSON on stdout. Prints the medians and
median(B) / median(A) per history and backend (budget 1.5x). Exit code 0 when every run
behaved, 1 otherwise; being over budget is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "realworld"), str(REPO / "tests")]

from realworld_projects import HISTORIES, Project, build_fresh, make_project  # noqa: E402
from realworld_venvs import Venv, VenvBuildError, ensure_venvs  # noqa: E402

from alembic_repair.testing.mariadb import throwaway_server  # noqa: E402

BUDGET = 1.5


def _one(history_name: str, venv: Venv, backend: str, root: Path, url: str
         ) -> tuple[float, float]:
    history = next(h for h in HISTORIES if h.name == history_name)
    project: Project = make_project(history, venv, root / "project", url)
    started = time.perf_counter()
    build_fresh(project, backend)
    build = time.perf_counter() - started
    cache = root / "xdg-cache"
    cache.mkdir()
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        started = time.perf_counter()
        doctor = project.repair("doctor", "--format", "json")
        seconds = time.perf_counter() - started
    finally:
        if before is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = before
    if doctor.code not in (0, 1):
        raise RuntimeError(f"doctor: {doctor.brief()}")
    json.loads(doctor.stdout)
    return build, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", default=",".join(h.name for h in HISTORIES))
    parser.add_argument("--backend", choices=["sqlite", "mariadb", "both"], default="both")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    names = args.history.split(",")
    backends = ["sqlite", "mariadb"] if args.backend == "both" else [args.backend]
    wanted = {h.venv for h in HISTORIES if h.name in names}
    venvs = ensure_venvs(sorted(wanted))
    for name, venv in venvs.items():
        if isinstance(venv, VenvBuildError):
            print(f"venv {name}: {venv}")
            return 1
        print(f"venv {name}: {venv.root} (built now in {venv.built_in:.0f}s)"  # type: ignore
              if venv.built_in else f"venv {name}: {venv.root}")  # type: ignore[union-attr]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ok = True
    server_cm = throwaway_server() if "mariadb" in backends else None
    server = server_cm.__enter__() if server_cm else None
    try:
        print("| history | backend | runs | build (A) median | doctor cold (B) median | B/A |")
        print("|---|---|---:|---:|---:|---:|")
        for name in names:
            history = next(h for h in HISTORIES if h.name == name)
            for backend in backends:
                builds, doctors = [], []
                for _ in range(args.runs):
                    with tempfile.TemporaryDirectory(prefix="bench-rw-") as tmp:
                        root = Path(tmp)
                        database = f"bench_{secrets.token_hex(4)}"
                        url = (f"sqlite:///{root / 'app.db'}" if backend == "sqlite"
                               else server.create_database(database))  # type: ignore[union-attr]
                        try:
                            a, b = _one(name, venvs[history.venv], backend,  # type: ignore
                                        root, url)
                            builds.append(a)
                            doctors.append(b)
                        except (RuntimeError, AssertionError, ValueError) as err:
                            ok = False
                            print(f"{name} {backend}: {str(err).splitlines()[0]}")
                        finally:
                            if backend == "mariadb":
                                server.drop_database(database)  # type: ignore[union-attr]
                if builds:
                    a, b = statistics.median(builds), statistics.median(doctors)
                    flag = "" if b / a <= BUDGET else " (over budget)"
                    print(f"| {name} | {backend} | {len(builds)} | {a * 1000:.0f} ms | "
                          f"{b * 1000:.0f} ms | {b / a:.2f}x{flag} |", flush=True)
    finally:
        if server_cm:
            server_cm.__exit__(None, None, None)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
