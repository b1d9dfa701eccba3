"""Benchmark: ``alembic-repair bootstrap`` on a database already at head vs ``alembic current``.

Requirement: bootstrap at head costs at most 1.5x a plain ``alembic current``, because it runs
at every container start. Both commands are timed as fresh processes started from the project
folder (interpreter start-up and imports count, as they do when a container starts), side by
side and interleaved (A B A B ...) so that drift on the machine hits both alike.

Usage::

    python benchmarks/bench_bootstrap.py [--runs N] [--backend sqlite|mariadb|both] [--profile]
        [--warmup N] [--bytecode cached|as-is]

Run it with the interpreter of the venv under test: ``alembic`` and ``alembic-repair`` are taken
from the bin directory of ``sys.executable``. For each backend the script copies
``examples/fastapi_mysql`` (without alembic/, alembic.ini, app.db and caches) to a temp dir,
brings the database to head with one ``alembic-repair bootstrap``, then measures. MariaDB runs on
a throwaway server (own data dir in a temp dir, free port on 127.0.0.1), stopped at the end.

``--profile`` adds, per backend, one ``python -X importtime -m alembic_repair bootstrap`` (the
largest cumulative imports, and those that ``alembic current`` does not pay at all) and one
cProfile of the in-process ``alembic_repair.bootstrap(project)``.

Exit code: 0 when every run behaved (bootstrap said "nothing to do" and exited 0, alembic current
printed the head), 1 otherwise. Being over the time budget is reported, not an error.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from _processes import (
    Run,
    child_env,
    describe,
    environment,
    load,
    machine_facts,
    run,
    shorten_paths,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "fastapi_mysql"
# Not resolved: in a venv, bin/python is a symlink to the base interpreter, and the scripts we
# want live beside the symlink.
BIN = Path(sys.executable).parent
ALEMBIC = BIN / "alembic"
ALEMBIC_REPAIR = BIN / "alembic-repair"

BUDGET = 1.5
# Only at the top of the example: what bootstrap generates, and what a checkout must not bring.
ROOT_IGNORED = {"alembic", "alembic.ini", "app.db", ".alembic_repair"}
CACHES = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}

HEAD_IN_BOOTSTRAP = re.compile(r"database at ([0-9a-f]+)\s*$", re.MULTILINE)

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
RUN_TIMEOUT = 300.0


class BenchError(Exception):
    """A run did not behave as required (wrong output, non-zero exit, server did not start)."""


# ---------------------------------------------------------------------------------------
# The project copy and the commands
# ---------------------------------------------------------------------------------------


def copy_example(dest: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in CACHES or n.endswith(".pyc")}
        if Path(directory).resolve() == EXAMPLE.resolve():
            skipped |= {n for n in names if n in ROOT_IGNORED}
        return skipped

    shutil.copytree(EXAMPLE, dest, ignore=ignore)
    return dest


def check_bootstrap(result: Run, head: str) -> None:
    last = result.stdout.strip().splitlines()[-1:] or [""]
    if result.returncode != 0 or "nothing to do" not in last[0] or head not in last[0]:
        raise BenchError(describe("bootstrap at head did not say 'nothing to do'", result))


def check_current(result: Run, head: str) -> None:
    if result.returncode != 0 or f"{head} (head)" not in result.stdout:
        raise BenchError(describe(f"alembic current did not print {head} (head)", result))


def reach_head(project: Path, env: dict[str, str]) -> str:
    """The first bootstrap: scaffold, write the initial revision, upgrade. Returns the head."""
    first = run([ALEMBIC_REPAIR, "bootstrap"], project, env, RUN_TIMEOUT)
    found = HEAD_IN_BOOTSTRAP.findall(first.stdout)
    if first.returncode != 0 or not found:
        raise BenchError(describe("the first bootstrap failed", first))
    revisions = sorted((project / "alembic" / "versions").glob("*.py"))
    if len(revisions) != 1:
        raise BenchError(f"expected one revision file after the first bootstrap: {revisions}")
    print(f"  first bootstrap: {first.seconds:.3f} s, head {found[-1]} ({revisions[0].name})")
    return str(found[-1])


# ---------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------


def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile (with 15 runs: the 14th fastest)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class Figures:
    backend: str
    runs: int
    current: tuple[float, ...]
    bootstrap: tuple[float, ...]
    current_cpu: tuple[float, ...]
    bootstrap_cpu: tuple[float, ...]

    @property
    def ratio(self) -> float:
        return statistics.median(self.bootstrap) / statistics.median(self.current)

    @property
    def paired_ratio(self) -> float:
        """Median of bootstrap_i / current_i: each pair ran back to back, so drift cancels."""
        return statistics.median(b / a for a, b in zip(self.current, self.bootstrap, strict=True))

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(self.bootstrap_cpu) / statistics.median(self.current_cpu)


def measure(backend: str, project: Path, env: dict[str, str], head: str, runs: int,
            warmup: int) -> Figures:
    current_argv: list[str | Path] = [ALEMBIC, "-c", "alembic.ini", "current"]
    bootstrap_argv: list[str | Path] = [ALEMBIC_REPAIR, "bootstrap"]
    # Warm-up (not counted): page cache, and the __pycache__ of the project's own modules.
    for _ in range(warmup):
        check_current(run(current_argv, project, env, RUN_TIMEOUT), head)
        check_bootstrap(run(bootstrap_argv, project, env, RUN_TIMEOUT), head)
    current: list[Run] = []
    bootstrap: list[Run] = []
    for i in range(runs):
        a = run(current_argv, project, env, RUN_TIMEOUT)
        check_current(a, head)
        b = run(bootstrap_argv, project, env, RUN_TIMEOUT)
        check_bootstrap(b, head)
        current.append(a)
        bootstrap.append(b)
        print(f"  run {i + 1:>2}/{runs}: alembic current {a.seconds * 1000:6.0f} ms "
              f"(cpu {a.cpu_seconds * 1000:4.0f})   bootstrap {b.seconds * 1000:6.0f} ms "
              f"(cpu {b.cpu_seconds * 1000:4.0f})")
    return Figures(backend, runs, tuple(r.seconds for r in current),
                   tuple(r.seconds for r in bootstrap), tuple(r.cpu_seconds for r in current),
                   tuple(r.cpu_seconds for r in bootstrap))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def print_table(all_figures: Sequence[Figures]) -> None:
    print("\nWall time, fresh processes (median, nearest-rank p90); ratio = bootstrap / current "
          "of the medians; paired = median of the run-by-run ratios. CPU = user + system time "
          "of the process, median.\n")
    print("| backend | runs | `alembic current` median | p90 | `bootstrap` median | p90 "
          "| ratio | budget 1.5x | paired ratio | CPU current | CPU bootstrap | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for f in all_figures:
        verdict = "within" if f.ratio <= BUDGET else "**over**"
        print(f"| {f.backend} | {f.runs} | {ms(statistics.median(f.current))} "
              f"| {ms(p90(f.current))} | {ms(statistics.median(f.bootstrap))} "
              f"| {ms(p90(f.bootstrap))} | {f.ratio:.2f}x | {verdict} | {f.paired_ratio:.2f}x "
              f"| {ms(statistics.median(f.current_cpu))} "
              f"| {ms(statistics.median(f.bootstrap_cpu))} | {f.cpu_ratio:.2f}x |")
    print()
    for f in all_figures:
        extra = (statistics.median(f.bootstrap) - statistics.median(f.current)) * 1000
        if f.ratio <= BUDGET:
            print(f"{f.backend}: ratio {f.ratio:.2f}x <= {BUDGET}x: within budget "
                  f"(bootstrap costs {extra:+.0f} ms more than alembic current)")
        else:
            allowed = statistics.median(f.current) * BUDGET * 1000
            over = statistics.median(f.bootstrap) * 1000 - allowed
            print(f"{f.backend}: ratio {f.ratio:.2f}x > {BUDGET}x: OVER budget by {over:.0f} ms "
                  f"(bootstrap costs {extra:+.0f} ms more than alembic current; the budget "
                  f"allows {allowed:.0f} ms)")


# ---------------------------------------------------------------------------------------
# Profiling (--profile)
# ---------------------------------------------------------------------------------------


@dataclass
class Import:
    name: str
    self_us: int
    cumulative_us: int
    depth: int
    children: list[Import]


def parse_importtime(stderr: str) -> list[Import]:
    """Every import, in completion order, each with the imports it triggered (``children``).

    ``-X importtime`` prints a module after the modules it imported, indented one step less.
    """
    imports: list[Import] = []
    pending: dict[int, list[Import]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, self_us, cumulative_us, name = re.split(r":|\|", line, maxsplit=3)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        node = Import(name.strip(), int(self_us), int(cumulative_us), depth,
                      pending.pop(depth + 1, []))
        pending.setdefault(depth, []).append(node)
        imports.append(node)
    return imports


def importtime(argv: Sequence[str | Path], project: Path, env: dict[str, str],
               tries: int = 3) -> list[Import]:
    """The least disturbed of `tries` runs (smallest total), after one uncounted run."""
    best: list[Import] = []
    for attempt in range(tries + 1):
        result = run([sys.executable, "-X", "importtime", *argv], project, env, RUN_TIMEOUT)
        if result.returncode != 0:
            raise BenchError(describe("the -X importtime run failed", result))
        imports = parse_importtime(result.stderr)
        if attempt and (not best or sum(i.self_us for i in imports)
                        < sum(i.self_us for i in best)):
            best = imports
    return best


def print_imports(title: str, imports: Sequence[Import], limit: int = 10) -> None:
    print(f"  {title}")
    print(f"    {'cumulative':>10}  {'self':>8}  depth  module")
    for imp in sorted(imports, key=lambda i: i.cumulative_us, reverse=True)[:limit]:
        print(f"    {imp.cumulative_us / 1000:8.1f}ms  {imp.self_us / 1000:6.1f}ms  "
              f"{imp.depth:>5}  {imp.name}")


def profile_imports(project: Path, env: dict[str, str]) -> None:
    boot = importtime(["-m", "alembic_repair", "bootstrap"], project, env)
    current = importtime(["-m", "alembic", "-c", "alembic.ini", "current"], project, env)
    total_boot = sum(i.self_us for i in boot) / 1000
    total_current = sum(i.self_us for i in current) / 1000
    print(f"\n  -X importtime (best of 3 runs each; importtime inflates the figures): bootstrap "
          f"imports {len(boot)} modules, {total_boot:.0f} ms in all; alembic current "
          f"{len(current)} modules, {total_current:.0f} ms")
    print_imports("bootstrap, 10 largest cumulative imports:", boot)

    # What alembic current never imports, the cost bootstrap pays on top. "only-bootstrap time"
    # of a module = the self time of it and of everything below it that alembic current lacks.
    known = {i.name for i in current}

    def extra_us(node: Import) -> int:
        own = node.self_us if node.name not in known else 0
        return own + sum(extra_us(child) for child in node.children)

    extra = [i for i in boot if i.name not in known]
    print(f"\n  {len(extra)} modules are imported by bootstrap only, "
          f"{sum(i.self_us for i in extra) / 1000:.0f} ms of self time; by top-level package:")
    packages: dict[str, list[Import]] = {}
    for imp in extra:
        packages.setdefault(imp.name.split(".")[0], []).append(imp)
    ranked = sorted(packages.items(), key=lambda kv: -sum(i.self_us for i in kv[1]))
    for package, members in ranked[:10]:
        print(f"    {sum(i.self_us for i in members) / 1000:8.1f}ms  {len(members):>4} modules  "
              f"{package}")
    print("  the largest subtrees of only-bootstrap imports (module: only-bootstrap time below "
          "it, who imported it):")
    parents = {id(child): node for node in boot for child in node.children}
    roots = [i for i in extra if id(i) not in parents or parents[id(i)].name in known
             or parents[id(i)].name.split(".")[0] == "alembic_repair"]
    roots = [i for i in roots if not i.name.startswith("alembic_repair")]
    for imp in sorted(roots, key=extra_us, reverse=True)[:10]:
        parent = parents.get(id(imp))
        print(f"    {extra_us(imp) / 1000:8.1f}ms  {imp.name}  "
              f"(from {parent.name if parent else 'the top level'})")


def profile_call(project: Path, env: dict[str, str], head: str, limit: int = 25) -> None:
    import alembic_repair  # imported outside the profile: -X importtime covers imports

    with environment(project, env):
        profiler = cProfile.Profile()
        result = profiler.runcall(alembic_repair.bootstrap, project)
    if result.changed or result.head != (head,):
        raise BenchError(f"in-process bootstrap was not a no-op at head: {result}")
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(limit)
    print(f"\n  cProfile of the in-process alembic_repair.bootstrap(project), top {limit} by "
          "cumulative time (first call in this process: the user's models and the driver are "
          "imported inside it):")
    for line in shorten_paths(stream.getvalue()).strip("\n").splitlines():
        print(f"    {line}" if line.strip() else "")


# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------


@contextmanager
def mariadb_database(name: str = "bench") -> Iterator[str]:
    """A throwaway MariaDB server with one empty utf8mb4 database; yields its URL (root)."""
    from alembic_repair.testing.mariadb import MissingServer, throwaway_server

    try:
        with throwaway_server() as server:
            yield server.create_database(name)
    except MissingServer as err:
        raise BenchError(str(err)) from err


@contextmanager
def sqlite_database(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / 'p' / 'app.db'}"


def bench_backend(backend: str, url_of: Callable[[Path], AbstractContextManager[str]],
                  args: argparse.Namespace) -> Figures:
    print(f"\n== {backend} ==")
    runs, warmup, profile = args.runs, args.warmup, args.profile
    with tempfile.TemporaryDirectory(prefix=f"bench-bootstrap-{backend}-") as tmp:
        workdir = Path(tmp)
        project = copy_example(workdir / "p")
        with url_of(workdir) as url:
            env = child_env(url, args.bytecode, workdir / "pycache")
            head = reach_head(project, env)
            figures = measure(backend, project, env, head, runs, warmup)
            if profile:
                profile_imports(project, env)
                profile_call(project, env, head)
    return figures


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def package_state() -> str:
    """Where alembic_repair is imported from, and the git state of its source."""
    import alembic_repair

    source = Path(alembic_repair.__file__).resolve().parent
    git = ["git", "-C", str(source)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True,
                           text=True, check=False).stdout.split("\n")
    changed = [line[3:] for line in dirty if line.strip()]
    state = f"uncommitted changes in {', '.join(changed)}" if changed else "clean"
    return f"alembic_repair {alembic_repair.__version__} from {source} (git {head or '?'}, {state})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs of each (default 15)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="uncounted runs of each before measuring (default 1)")
    parser.add_argument("--backend", choices=["sqlite", "mariadb", "both"], default="both")
    parser.add_argument("--bytecode", choices=["cached", "as-is"], default="cached",
                        help="cached: private PYTHONPYCACHEPREFIX, nothing compiled after the "
                        "warm-up (default); as-is: inherit PYTHONDONTWRITEBYTECODE etc.")
    parser.add_argument("--profile", action="store_true",
                        help="also -X importtime and cProfile one bootstrap per backend")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for script in (ALEMBIC, ALEMBIC_REPAIR):
        if not script.is_file():
            parser.error(f"{script} not found: run this with the venv's python")

    print("bootstrap at head vs alembic current")
    print(f"command: {Path(sys.executable)} {' '.join(sys.argv)}")
    for fact in machine_facts(package_state()):
        print(f"  {fact}")
    print(f"  bytecode: {args.bytecode}; PYTHONDONTWRITEBYTECODE in this environment: "
          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}")
    backends: list[tuple[str, Callable[[Path], AbstractContextManager[str]]]] = []
    if args.backend in ("sqlite", "both"):
        backends.append(("sqlite", sqlite_database))
    if args.backend in ("mariadb", "both"):
        backends.append(("mariadb", lambda _workdir: mariadb_database()))
    all_figures: list[Figures] = []
    try:
        for name, url_of in backends:
            all_figures.append(bench_backend(name, url_of, args))
    except BenchError as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        return 1
    print_table(all_figures)
    print(f"\nat end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
