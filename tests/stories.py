"""The end-to-end story harness (issue 13): one broken project, repaired as a new user would.

A `Story` builds a project under a folder and breaks the database at a URL, with rows in every
table. `check_story` then runs the real CLIs in subprocesses (``python -m alembic_repair``,
``python -m alembic``) and checks issue 13's "Done when", in this order (a failure names the
step, and the crash point, and shows the command's output tail):

1. build; every table must hold rows; record them (values, primary-key order);
2. ``alembic-repair fix --yes`` exits 0 and runs at least one step (traced:
   ``ALEMBIC_REPAIR_CRASH_TRACE`` lists the crash points it passes);
3. ``alembic heads`` shows one head, ``alembic current`` is that head, a plain ``alembic upgrade
   head`` exits 0 and moves no row, ``alembic check`` exits 0;
4. every row is kept (over the columns that existed before: a column a repair added does not
   count, nor the story's `Story.rewritten` columns);
5. with ``story.fresh``: on a new empty database, the same project's ``alembic upgrade head`` and
   ``alembic check`` exit 0;
6. a second ``fix --yes`` has nothing to do (exit 0, "nothing to do", and it passes no crash
   point: no step ran), and ``doctor`` exits 0;
7. with ``kills``: for each distinct step boundary the traced fix passed (``backup``,
   ``<n>.<kind>``, ``verify``: the points `Journal.mark` passes when a step is done, named by
   `runner.step_name`; inner points such as ``adopt.written`` are tests/test_kill_loop.py's),
   the story is built again in a new folder and database, ``fix --yes`` is killed there
   (SIGKILL, by ``ALEMBIC_REPAIR_CRASH_AFTER``), and ``fix --yes`` again must converge: exit 0,
   no journal left, the database at the one head, ``alembic check`` clean, every row kept, and
   one more ``fix --yes`` has nothing to do (as in step 6: a resumed run that stops short, or
   leaves work behind, fails here). No new empty database is built per kill (step 5's check
   does not depend on where fix was killed, and CI's budget is near its limit).
   (A name passed in two rounds, such as ``verify``, is killed at its first passing only.)
   ``STORY_KILL_ONLY=<point>`` kills at that point only (a failure prints the line to replay);
   pytest's ``--floor-stories`` runs steps 1-4 only (the dependency-floor run in .ci/run:
   steps 5-7 exercise our journal and planner, the same at every Alembic release).

No alembic-repair command may print a traceback (errors are one readable line).

Usage, in ``tests/test_story_<name>.py``::

    from stories import Story, check_story

    STORY = Story("my_story", build=my_builder)

    def test_my_story(backend, request, tmp_path):
        check_story(STORY, backend, request, tmp_path)

One `check_story` per test: it writes ``story/``, ``kill-<n>/`` and SQLite files under
`tmp_path`. `Story.cli_env`: extra environment for every command (``DATABASE_URL`` is the
database's URL unless it says otherwise; ``{url}`` in a value is replaced by the URL of the
database in hand, so ``{"DATABASE_URL": ""}`` leaves the URL to alembic.ini).

Cost: every alembic-repair command is its own process, as a user runs it (about 1.2 CPU
seconds each, most of it Python starting and importing); the alembic commands of one check run
in one process (`_alembic`: Alembic's own command line, ``alembic.config.main``, once per
command, each command's output and exit code kept apart). A story is 3 alembic-repair runs and
one alembic process, then per crash point a build, 3 fix runs and one alembic process: with two
crash points about 12 CPU seconds on SQLite, 15 on MariaDB (plus the server's). `check_story`
records ``story_seconds``, ``story_cpu_seconds`` (its own and its commands', whatever the
machine's load) and ``story_kills`` in the test's ``user_properties``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from helpers import Rows, Run, cli, rows_kept_problems, user_rows

from alembic_repair.repair.journal import CRASH_ENV, JOURNAL, TRACE_ENV

if TYPE_CHECKING:
    from conftest import Backend

__all__ = ["Story", "StoryFailed", "check_story", "step_points"]

TIMEOUT = 240
#: Kill only at this crash point (steps 1-6 still run): replays one failing point of step 7.
ONLY_ENV = "STORY_KILL_ONLY"
#: pytest option (tests/conftest.py): steps 1-4 only (.ci/run's dependency-floor run).
FLOOR = "--floor-stories"
STATE_DIR = ".alembic_repair"


@dataclass(frozen=True)
class Story:
    """One broken project: `build(root, url)` writes it under `root` and breaks the database at
    `url`, with rows in every table. `fresh`: whether its repaired project must also build a
    new empty database (step 5). `rewritten`: columns (``"table.column"``) whose values the
    repair is meant to replace (a half-applied column's placeholder values): left out of the
    row check, which still counts their rows and compares every other column."""

    name: str
    build: Callable[[Path, str], None]
    cli_env: Mapping[str, str] = field(default_factory=dict)
    fresh: bool = True
    rewritten: tuple[str, ...] = ()


# -- running the commands ----------------------------------------------------------------------


def _env(story: Story, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one command (over os.environ, which `cli` adds): no crash point and
    no trace unless asked for (an empty value turns an inherited one off)."""
    env = {"DATABASE_URL": url, CRASH_ENV: "", TRACE_ENV: ""}
    env.update({k: v.replace("{url}", url) for k, v in story.cli_env.items()})
    return {**env, **(extra or {})}


def _tail(run: Run, limit: int = 3000) -> str:
    text = run.output.strip("\n")
    return text if len(text) <= limit else "..." + text[-limit:]


class StoryFailed(AssertionError):
    """One check of a story failed: the message names the story, step and command."""


def _fail(where: str, what: str, command: str | None = None, run: Run | None = None,
          before: Run | None = None) -> NoReturn:
    """Raise `StoryFailed`: where, what, and the output tails of the command (and of the
    killed run `before` it, in step 7)."""
    message = f"{where}: {what}"
    if before is not None:
        message += f"\n--- the killed `fix --yes` printed:\n{_tail(before, 1000)}"
    if run is not None:
        message += f"\n--- `{command}` exited {run.code}; output tail:\n{_tail(run)}"
    raise StoryFailed(message)


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def _timed_out(where: str, command: str, err: subprocess.TimeoutExpired) -> NoReturn:
    _fail(where, f"timed out after {TIMEOUT}s", command,
          Run(-1, _text(err.stdout), _text(err.stderr)))


def _repair(where: str, story: Story, root: Path, url: str, *args: str, **extra: str) -> Run:
    """``alembic-repair ARGS`` in its own process, as a user runs it."""
    try:
        run = cli(*args, cwd=root, env=_env(story, url, extra), timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        _timed_out(where, f"alembic-repair {' '.join(args)}", err)
    if "Traceback (most recent call last)" in run.output:
        _fail(where, "a traceback: errors are one readable line",
              f"alembic-repair {' '.join(args)}", run)
    return run


#: Runs ``alembic <argv>`` for each (argv, environment) of sys.argv[1] (JSON) in this one
#: process, as the `alembic` script does (``alembic.config.main``); each command's output
#: starts with a marker line on both streams, and its exit code (as a process's) ends stdout.
_DRIVER = r"""
import json, os, sys, traceback
from alembic.config import main
for number, (argv, env) in enumerate(json.loads(sys.argv[1])):
    os.environ.update(env)
    for stream in (sys.stdout, sys.stderr):
        stream.write(f"~~story-driver {number}\n")
        stream.flush()
    try:
        main(argv=argv, prog="alembic")
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else int(done.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    sys.stdout.write(f"~~story-driver {number} exit {code % 256}\n")
    sys.stdout.flush()
"""
_MARKER = re.compile(r"~~story-driver (\d+)( exit (\d+))?\n?")


def _split(stream: str, count: int) -> tuple[list[str], dict[int, int]]:
    """Each command's part of `stream`, and the exit codes its end markers give."""
    parts, codes = [""] * count, {}
    number = None
    for line in stream.splitlines(keepends=True):
        marker = _MARKER.fullmatch(line)
        if marker is None:
            if number is not None:
                parts[number] += line
        elif marker.group(3) is None:
            number = int(marker.group(1))
        else:
            codes[int(marker.group(1))] = int(marker.group(3))
    return parts, codes


def _alembic(where: str, story: Story, root: Path, *commands: tuple[str, str]) -> list[Run]:
    """``alembic <command>`` on the database at `url`, for each (url, command), in turn in
    one subprocess (see the module docstring); one `Run` each."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", CRASH_ENV,
                                                              TRACE_ENV)}
    calls = [(command.split(), _env(story, url)) for url, command in commands]
    try:
        done = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(calls)], cwd=root,
                              env={**base, **calls[0][1]}, capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        _timed_out(where, "; ".join(f"alembic {c}" for _, c in commands), err)
    outs, codes = _split(done.stdout, len(commands))
    errs, _ = _split(done.stderr, len(commands))
    runs = []
    for number in range(len(commands)):
        if number in codes:
            runs.append(Run(codes[number], outs[number], errs[number]))
        else:  # the process died in this command (or before it): its own exit code
            runs.append(Run(done.returncode or 1, outs[number] or done.stdout,
                            errs[number] or done.stderr))
    return runs


def _revisions(run: Run) -> list[str]:
    """The revision ids `alembic heads` / `alembic current` print, one a line."""
    return [m.group(1) for line in run.stdout.splitlines()
            if (m := re.match(r"\s*([0-9A-Za-z_]+)\b", line))]


# -- what to check -----------------------------------------------------------------------------


#: The journal names of steps (runner.step_name: ``<n>.<kind>``) and the runner's own steps;
#: the inner points (``adopt.written``, ``upgrade.started``, ``drop.1``) never start with a digit.
_STEP_POINT = re.compile(r"backup|verify|\d+\.[a-z][a-z0-9-]*")


def step_points(trace: str) -> list[str]:
    """The distinct step boundaries among the crash points of a trace, in the order passed."""
    points: list[str] = []
    for point in trace.split():
        if _STEP_POINT.fullmatch(point) and point not in points:
            points.append(point)
    return points


def _check_rows(where: str, before: Rows, after: Rows, rewritten: tuple[str, ...] = ()) -> None:
    """Every row of `before` kept in `after` (helpers.rows_kept_problems), over the columns
    that existed before except the `rewritten` ones."""
    for table, column in (name.split(".", 1) for name in rewritten):
        before = {**before, table: [{k: v for k, v in row.items() if k != column}
                                    for row in before.get(table, [])]}
    problems = rows_kept_problems(before, after)
    if problems:
        _fail(where, "rows not kept: " + "; ".join(problems))


def _at_one_head(where: str, story: Story, root: Path, url: str, *, upgrade: bool,
                 fresh: tuple[str, str] | None = None) -> None:
    """`alembic heads`: one head; `alembic current`: that head; with `upgrade`, a plain
    `alembic upgrade head` exits 0 and moves no row; `alembic check` exits 0. With `fresh`
    (a new empty database's URL, and its step's name), step 5 in the same process: upgrade
    head and check there."""
    commands = [(url, "heads"), (url, "current")]
    commands += [(url, "upgrade head")] if upgrade else []
    commands.append((url, "check"))
    commands += [(fresh[0], "upgrade head"), (fresh[0], "check")] if fresh else []
    before = user_rows(url) if upgrade else {}
    runs = _alembic(where, story, root, *commands)
    heads, current, *rest = runs
    if heads.code != 0 or len(_revisions(heads)) != 1:
        _fail(where, f"expected exactly one head, got {_revisions(heads)}", "alembic heads",
              heads)
    if current.code != 0 or _revisions(current) != _revisions(heads):
        _fail(where, f"the database is at {_revisions(current)}, not at the head "
              f"{_revisions(heads)}", "alembic current", current)
    if upgrade:
        upgraded, *rest = rest
        if upgraded.code != 0:
            _fail(where, "plain `alembic upgrade head` failed", "alembic upgrade head", upgraded)
        after = user_rows(url)
        if after != before:
            moved = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
            _fail(where, f"plain `alembic upgrade head` moved rows in {moved}",
                  "alembic upgrade head", upgraded)
    checked, *rest = rest
    if checked.code != 0:
        _fail(where, "`alembic check` is not clean", "alembic check", checked)
    for command, run in zip(("alembic upgrade head", "alembic check"), rest, strict=False):
        if fresh and run.code != 0:
            _fail(fresh[1], f"`{command}` failed on a new empty database", command, run)


class _Databases:
    """New databases for one story: files under tmp_path on SQLite; on MariaDB, databases of
    the test server, dropped when the test ends."""

    def __init__(self, backend: Backend, request: pytest.FixtureRequest, tmp_path: Path):
        self.backend, self.request, self.tmp_path = backend, request, tmp_path

    def new(self, label: str) -> str:
        if self.backend.name == "sqlite":
            return f"sqlite:///{self.tmp_path / f'{label}.db'}"
        server = self.request.getfixturevalue("mariadb_server")
        name = f"s_{secrets.token_hex(5)}_{re.sub(r'[^a-z0-9]', '_', label.lower())[:30]}"
        url = str(server.create_database(name))
        self.request.addfinalizer(lambda: server.drop_database(name))
        return url


def _build(where: str, story: Story, root: Path, url: str) -> Rows:
    if root.exists():
        _fail(where, f"{root} exists: one check_story per test (per tmp_path)")
    root.mkdir(parents=True)
    try:
        story.build(root, url)
    except Exception as err:
        raise StoryFailed(f"{where}: the story's build raised {err!r}") from err
    rows = user_rows(url)
    empty = sorted(t for t, r in rows.items() if not r and not t.startswith("_ar_"))
    if not rows or empty:
        _fail(where, f"the story must leave rows in every table; empty: {empty or 'no table'}")
    return rows


def check_story(story: Story, backend: Backend, request: pytest.FixtureRequest,
                tmp_path: Path, *, kills: bool = True) -> None:
    """Steps 1-7 of the module docstring on `backend` (its URL is the story's database).
    Raises `StoryFailed` (an AssertionError) naming the step; records ``story_seconds``,
    ``story_cpu_seconds`` and ``story_kills`` in the test's user_properties."""
    started, cpu = time.monotonic(), _cpu_seconds()
    floor = bool(request.config.getoption(FLOOR, default=False))
    kills = kills and not floor
    label = f"story {story.name} on {backend.name}"
    databases = _Databases(backend, request, tmp_path)
    root, url, trace = tmp_path / "story", backend.url, tmp_path / "trace.txt"
    before = _build(f"{label}, step 1 (build)", story, root, url)

    where = f"{label}, step 2"
    fixed = _repair(where, story, root, url, "fix", "--yes", **{TRACE_ENV: str(trace)})
    if fixed.code != 0:
        _fail(where, "`fix --yes` did not exit 0", "alembic-repair fix --yes", fixed)
    points = step_points(trace.read_text() if trace.exists() else "")
    if not points:
        _fail(where, "`fix --yes` ran no step: the story is not broken, or fix does not see it",
              "alembic-repair fix --yes", fixed)

    _check_rows(f"{label}, step 4", before, user_rows(url), story.rewritten)
    fresh = databases.new("fresh") if story.fresh and not floor else None
    if fresh is not None and _env(story, fresh)["DATABASE_URL"] != fresh:
        _fail(f"{label}, step 5", "the story's cli_env sets DATABASE_URL without {url}, so "
              "alembic cannot be pointed at a new database: use {url}, or fresh=False")
    _at_one_head(f"{label}, step 3", story, root, url, upgrade=True,
                 fresh=(fresh, f"{label}, step 5") if fresh and not floor else None)
    if floor:
        request.node.user_properties += [("story_kills", 0)]
        return

    where = f"{label}, step 6"
    _nothing_to_do(where, story, root, url, tmp_path / "trace-again.txt")
    doctor = _repair(where, story, root, url, "doctor")
    if doctor.code != 0:
        _fail(where, "`doctor` is not healthy after fix", "alembic-repair doctor", doctor)

    only = os.environ.get(ONLY_ENV)
    for number, point in enumerate(points if kills else [], start=1):
        if only not in (None, point):
            continue
        try:
            _killed_then_fixed(f"{label}, step 7 (kill -9 at crash point {point!r})", story,
                               tmp_path / f"kill-{number}", databases.new(f"kill{number}"),
                               point)
        except StoryFailed as err:
            raise StoryFailed(f"{err}\n--- replay this point alone: {ONLY_ENV}={point} "
                              f"pytest '{request.node.nodeid}'") from None
    request.node.user_properties += [
        ("story_seconds", time.monotonic() - started), ("story_cpu_seconds", _cpu_seconds() - cpu),
        ("story_kills", len(points) if kills else 0)]


def _nothing_to_do(where: str, story: Story, root: Path, url: str, trace: Path,
                   killed: Run | None = None) -> None:
    """One more ``fix --yes``: exit 0, "nothing to do", and no crash point passed (no step
    ran; `trace` receives the points)."""
    again = _repair(where, story, root, url, "fix", "--yes", **{TRACE_ENV: str(trace)})
    passed = trace.read_text().split() if trace.exists() else []
    if again.code != 0 or passed or "nothing to do" not in again.stdout:
        _fail(where, f"a further `fix --yes` still had something to do (crash points passed: "
              f"{passed})", "alembic-repair fix --yes", again, killed)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: a story's cost, whatever the load."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _killed_then_fixed(where: str, story: Story, root: Path, url: str, point: str) -> None:
    """Step 7 at one crash point, on a new folder and database."""
    before = _build(f"{where}, build", story, root, url)
    killed = _repair(where, story, root, url, "fix", "--yes", **{CRASH_ENV: point})
    if killed.code != -signal.SIGKILL:
        _fail(where, "`fix --yes` did not die at the crash point", "alembic-repair fix --yes",
              killed)
    again = _repair(where, story, root, url, "fix", "--yes")
    if again.code != 0:
        _fail(where, "`fix --yes` after the kill did not exit 0", "alembic-repair fix --yes",
              again, killed)
    if (root / STATE_DIR / JOURNAL).exists():
        _fail(where, "the journal is left after `fix --yes` finished",
              "alembic-repair fix --yes", again, killed)
    _at_one_head(where, story, root, url, upgrade=False)
    _check_rows(where, before, user_rows(url), story.rewritten)
    _nothing_to_do(where, story, root, url, root.parent / f"trace-{root.name}.txt", killed)
