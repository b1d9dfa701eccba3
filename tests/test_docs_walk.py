"""Walks README.md and docs/getting-started.md as a new user would: every shell line they show
runs, in order, in a copy of the example (on SQLite, and on MariaDB through DATABASE_URL), and
every exit code and output the docs promise is asserted, so a doc cannot drift from the CLI.

A block that cannot run in a test carries `<!-- walk: skip (why) -->` right before it; a line
the walk does not know fails `test_every_shell_line_is_walked`, so a new promise gets a check.
Install lines never reach the network: their form is checked and the import is proved instead.
Each CLI command runs once per backend; a command both documents show is checked against
both documents' promises on the same run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import table_digest, tree_digest, version_rows
from sqlalchemy import create_engine, text

from alembic_repair.cli import entry

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/getting-started.md")
SHELL_LANGS = {"bash", "sh", "shell", "console"}
SKIP = re.compile(r"<!--\s*walk:\s*skip\s*\((?P<why>.+)\)\s*-->")
FENCE = re.compile(r"^\s*```(?P<lang>[\w-]*)\s*$")
EXAMPLE_REVISION = "c534ab7308f5"
UNKNOWN_REVISION = "9f0dc674a524"  # the one README's AR302 sample names
MAX_SKIPPED_BLOCKS = 2
# Install lines the docs may show: from a checkout or a built wheel, never from an index.
ALLOWED_INSTALLS = (
    re.compile(r"^(python3? -m )?pip install (-e )?(\.|'\.\[dev\]'|/path/to/alembic-repair)$"),
    re.compile(r"^(python3? -m )?pip wheel --no-deps /path/to/alembic-repair -w dist$"),
    re.compile(r"^(python3? -m )?pip install dist/alembic_repair-\*\.whl$"),
)

def _dry_run_lines() -> tuple[str, str]:
    """The first and last line of a dry run, as README's paragraph on exit codes quotes them."""
    prose = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"`(Plan \(dry run[^`]*)` \.\.\. `([^`]*)`", prose)
    assert found, "README.md no longer quotes a dry run's first and last line"
    return found[1], found[2]


PLAN_FIRST, PLAN_LAST = _dry_run_lines()
ACTION_LINE = re.compile(r"^[ a-z-]{12}  \S")  # `  bootstrap  done: ...`, kind right-aligned


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str
    skip: str | None


@dataclass(frozen=True)
class Line:
    doc: str
    line: int
    command: str
    comment: str

    @property
    def promised_exits(self) -> set[int]:
        """Exit codes the comment promises: `exit 5`, `(exit 5)`, `exit 0 healthy, 1 problems`."""
        found = re.search(r"\bexit (\d)\b(?: [a-z ]+)?(?:, (\d) [a-z]+)?", self.comment)
        return {int(code) for code in found.groups() if code} if found else set()


def blocks(doc: str) -> list[Block]:
    """The fenced blocks of `doc`, each with the skip reason written right before it."""
    out, lines = [], (ROOT / doc).read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        before = [ln for ln in lines[:i] if ln.strip()][-1:] or [""]
        skip = SKIP.search(before[0])
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        out.append(Block(doc, i + 1, opening["lang"], "\n".join(lines[i + 1:end]),
                         skip["why"] if skip else None))
        i = end + 1
    return out


def shell_lines(doc: str) -> list[Line]:
    """The runnable lines of the doc's shell blocks (comments and shebangs left out)."""
    out = []
    for block in blocks(doc):
        if block.lang not in SHELL_LANGS or block.skip:
            continue
        for offset, raw in enumerate(block.text.splitlines(), start=1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            raw = raw.strip().removeprefix("$ ")  # a console block's prompt
            command, *comment = re.split(r"\s+#\s*", raw, maxsplit=1)
            out.append(Line(doc, block.line + offset, " ".join(command.split()), "".join(comment)))
    return out


def sample_after(doc: str, marker: str) -> list[str]:
    """The lines of the first ```text block of `doc` containing `marker` (a sample output)."""
    found = [b for b in blocks(doc) if b.lang == "text" and marker in b.text]
    assert found, f"{doc}: no sample output containing {marker!r}"
    return found[0].text.splitlines()


# ---------------------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    tree_changed: bool | None  # None: not watched (digests cost a second per command)
    rows_changed: bool | None


@dataclass
class Walk:
    root: Path
    url: str | None  # None: the docs' default, SQLite in the project folder
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    results: dict[str, Result] = field(default_factory=dict)
    broken: bool = False  # README's AR302 state was set up
    rows_before_reset: dict[str, list[object]] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)
    started: set[str] = field(default_factory=set)
    timings: list[str] = field(default_factory=list)

    @property
    def project(self) -> Path:
        return self.root / "examples" / "fastapi_mysql"

    @property
    def db_url(self) -> str:
        return self.url or f"sqlite:///{self.project / 'app.db'}"

    def run(self, command: str, cwd: Path, *, watch: bool = False) -> Result:
        """Runs `command` once, noting whether it changed a file of the project or a row of
        the database. The first `python3 -m alembic_repair` and the first `alembic-repair` run
        as real processes of this venv (the entry points as documented); later ones call the
        same console-script function in-process, which saves a second of start-up each."""
        if command in self.results:
            return self.results[command]
        files, rows = (tree_digest(self.project), self._rows()) if watch else ({}, {})
        started = time.monotonic()
        argv = shlex.split(command)
        if argv[0] in self.started:
            code, out, err = self._in_process(argv[1:], cwd)
        else:
            self.started.add(argv[0])
            code, out, err = self._subprocess(argv, cwd)
        self.timings.append(f"{time.monotonic() - started:5.2f}s  {command}")
        result = Result(code, out, err, *((tree_digest(self.project) != files,
                                             self._rows() != rows) if watch else (None, None)))
        self.results[command] = result
        return result

    def _subprocess(self, argv: list[str], cwd: Path) -> tuple[int, str, str]:
        if argv[0] == "alembic-repair":
            argv[0] = str(Path(sys.executable).parent / "alembic-repair")
        elif argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        if self.url:
            env["DATABASE_URL"] = self.url
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120)
        return done.returncode, done.stdout, done.stderr

    def _in_process(self, args: list[str], cwd: Path) -> tuple[int, str, str]:
        if args[:1] == ["-m"]:  # python -m alembic_repair ARGS
            args = args[2:]
        self.capsys.readouterr()
        code = 0
        with self.monkeypatch.context() as patch:
            patch.chdir(cwd)
            if self.url:
                patch.setenv("DATABASE_URL", self.url)
            else:
                patch.delenv("DATABASE_URL", raising=False)
            try:
                entry.main(args)
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
        out, err = self.capsys.readouterr()
        return code, out, err

    def _rows(self) -> dict[str, tuple[int, str]]:
        return table_digest(self.db_url) if self.url or (self.project / "app.db").exists() else {}

    def execute(self, sql: str) -> None:
        engine = create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()


def _install(walk: Walk, line: Line) -> None:
    assert any(form.match(line.command) for form in ALLOWED_INSTALLS), (
        f"{line.doc}:{line.line}: `{line.command}` is not an install from a checkout or a wheel")
    import alembic_repair

    assert Path(alembic_repair.__file__).resolve().is_relative_to(ROOT)
    if "alembic_repair-*.whl" in line.command:  # the glob matches the wheel pip builds
        name = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
        assert name and re.sub(r"[-_.]+", "_", name[1]) == "alembic_repair"


def _ci_run(walk: Walk, line: Line) -> None:
    """Not run (it is CI itself: the whole suite twice); what the comment says it runs is."""
    script = (ROOT / ".ci" / "run").read_text()
    for part in line.comment.removeprefix("runs:").split("&&"):
        assert part.strip() in script, f"{line.doc}:{line.line}: .ci/run does not run {part!r}"


def _first_bootstrap(walk: Walk, line: Line) -> None:
    result = walk.run(line.command, cwd=walk.root)
    lines = result.stdout.splitlines()
    assert result.code == 0, result.stdout + result.stderr
    if walk.url is None:  # "bootstrap the example app on SQLite; no server needed"
        assert re.match(r" +database  sqlite:///", lines[0]), lines[0]
    assert re.fullmatch(rf" +bootstrap  done: database at {EXAMPLE_REVISION}", lines[-1])
    # README's sample output has the same shape: one `kind  message` line per step.
    for shown in (*sample_after("README.md", "bootstrap  done"), *lines):
        assert ACTION_LINE.match(shown), shown


def _bootstrap_again(walk: Walk, line: Line) -> None:
    """README: "Running it twice changes no file and no row"; the CLI says "nothing to do"."""
    result = walk.run(line.command, cwd=walk.project, watch=True)
    assert result.code == 0, result.stdout + result.stderr
    assert re.search(rf"bootstrap  nothing to do: database at {EXAMPLE_REVISION}$", result.stdout)
    assert result.tree_changed is False and result.rows_changed is False


def _break(walk: Walk) -> None:
    """Puts the database in the state README's AR302 sample shows: a revision nobody defines."""
    if not walk.broken:
        walk.broken = True
        walk.execute(f"UPDATE alembic_version SET version_num = '{UNKNOWN_REVISION}'")


def _doctor(walk: Walk, line: Line) -> None:
    _break(walk)
    result = walk.run(line.command, cwd=walk.project, watch=True)
    assert result.code == 1
    for shown in sample_after("README.md", "AR302"):  # the sample, word for word
        assert " ".join(shown.split()) in " ".join(result.stdout.split()), shown
    assert result.tree_changed is False and result.rows_changed is False


def _doctor_json(walk: Walk, line: Line) -> None:
    result = walk.run(line.command, cwd=walk.project)
    report = json.loads(result.stdout)
    shown = set(re.findall(r'"(\w+)"', line.comment))  # {"healthy", "findings": [...], ...}
    assert len(shown) >= 3 and shown <= set(report), (shown, sorted(report))
    assert report["healthy"] is False
    assert [f["code"] for f in report["findings"]] == ["AR302"]
    assert result.code == 1


def _dry_run(walk: Walk, line: Line) -> None:
    """A plan on stdout between the documented first and last lines, numbered, nothing changed."""
    result = walk.run(line.command, cwd=walk.project, watch=True)
    lines = result.stdout.splitlines()
    assert result.code == 5, result.stdout + result.stderr
    assert lines[0] == PLAN_FIRST and lines[-1] == PLAN_LAST
    assert any(re.match(r" +1\. \S", ln) for ln in lines), "numbered steps"
    if "destructive" in line.comment:  # marked precisely: a drop is, a stamp is not
        steps = [ln for ln in lines if re.match(r" +\d+\. ", ln)]
        assert all(ln.endswith("[destructive]") for ln in steps if re.search(r"\bDROP\b", ln))
        assert not any(ln.endswith("[destructive]") for ln in steps if " stamp " in ln)
    assert result.tree_changed is False and result.rows_changed is False


def _fix_yes(walk: Walk, line: Line) -> None:
    result = walk.run(line.command, cwd=walk.project)
    assert result.code == 0, result.stdout + result.stderr
    assert re.search(r"^ +fix  healthy", result.stdout, re.M)
    assert version_rows(walk.db_url) == [EXAMPLE_REVISION]


def _fix_only(walk: Walk, line: Line) -> None:
    result = walk.run(line.command, cwd=walk.project)
    assert result.code == 0, result.stdout + result.stderr
    assert "healthy, nothing to do" in result.stdout


def _reset_plan(walk: Walk, line: Line) -> None:
    walk.execute("INSERT INTO author (id, name, email) VALUES (7, 'Ada', 'ada@example.org')")
    walk.execute("INSERT INTO article (id, title, body, author_id) VALUES (3, 'On', 'x', 7)")
    walk.rows_before_reset = _user_rows(walk)
    _dry_run(walk, line)


def _user_rows(walk: Walk) -> dict[str, list[object]]:
    return {t: list(v) for t, v in table_digest(walk.db_url).items() if t != "alembic_version"}


def _reset_yes(walk: Walk, line: Line) -> None:
    """Every row comes back; the old files stay in `.alembic_repair/backups/<time>-reset/`."""
    result = walk.run(line.command, cwd=walk.project)
    assert result.code == 0, result.stdout + result.stderr
    assert walk.rows_before_reset and _user_rows(walk) == walk.rows_before_reset
    (backup,) = (walk.project / ".alembic_repair" / "backups").glob("*-reset")
    kept = {p.name for p in backup.rglob("*") if p.is_file()}
    assert {"alembic.ini", "env.py", f"{EXAMPLE_REVISION}_initial_schema.py"} <= kept


def _what_it_keeps(walk: Walk) -> None:
    """README: everything it writes for itself is in `.alembic_repair/` (mode 0700, files 0600,
    with a `.gitignore` so `git add .` never commits it)."""
    state = walk.project / ".alembic_repair"
    assert state.stat().st_mode & 0o777 == 0o700
    assert "*" in (state / ".gitignore").read_text().splitlines()
    loose = [str(p.relative_to(state)) for p in state.rglob("*")
             if (p.stat().st_mode & 0o777) != (0o700 if p.is_dir() else 0o600)]
    assert not loose, f"README promises 0700/0600 in .alembic_repair/: {loose}"


def _python_example(walk: Walk) -> None:
    """README's "From Python" loop, on the walked project: it says what happened even when
    nothing did (the CLI's "nothing to do")."""
    (source,) = [b.text for b in blocks("README.md")
                 if b.lang == "python" and "bootstrap(" in b.text]
    assert source.count('"/app"') == 1
    walk.capsys.readouterr()
    with walk.monkeypatch.context() as patch:
        if walk.url:
            patch.setenv("DATABASE_URL", walk.url)
        else:
            patch.delenv("DATABASE_URL", raising=False)
        exec(source.replace('"/app"', repr(str(walk.project))), {})  # noqa: S102
    printed = walk.capsys.readouterr().out
    assert re.search(r"\bnothing to do\b", printed), printed


def _not_run(why: str) -> Callable[[Walk, Line], None]:
    def check(walk: Walk, line: Line) -> None:
        walk.not_run.append(f"{line.doc}:{line.line}: {line.command} ({why})")
    return check


# Every shell line of the docs -> its check, in the state the walk has reached by then.
WALK: dict[str, Callable[[Walk, Line], None]] = {
    "python3 -m alembic_repair --project examples/fastapi_mysql bootstrap": _first_bootstrap,
    "bash .ci/run": _ci_run,
    "alembic-repair bootstrap": _bootstrap_again,
    "alembic-repair doctor": _doctor,
    "alembic-repair doctor --format json": _doctor_json,
    "alembic-repair fix": _dry_run,
    "alembic-repair fix --yes": _fix_yes,
    "alembic-repair fix --yes --only AR3xx": _fix_only,
    "alembic-repair reset": _reset_plan,
    "alembic-repair reset --yes": _reset_yes,
    "set -euo pipefail": _not_run("a shell option of backend.sh"),
    "exec uvicorn server.main:app --host 0.0.0.0 --port 8000":
        _not_run("starts the web server; tests/test_example.py runs the example's backend.sh"),
}
EXITS = {  # the exit code each command gives at its point of the walk
    "alembic-repair doctor": 1, "alembic-repair doctor --format json": 1,
    "alembic-repair fix": 5, "alembic-repair reset": 5,
}


def _parts(line: Line) -> list[Line]:
    """`pip install . && python3 -m alembic_repair ...`: one Line per command, the comment
    (the promise) going with the last."""
    parts = [part.strip() for part in line.command.split("&&")]
    return [Line(line.doc, line.line, part, line.comment if part == parts[-1] else "")
            for part in parts]


def _check(walk: Walk, line: Line) -> None:
    check = _install if " pip " in f" {line.command} " else WALK[line.command]
    check(walk, line)
    if line.command in walk.results:
        code = walk.results[line.command].code
        assert code == EXITS.get(line.command, 0)
        assert not line.promised_exits or code in line.promised_exits, (
            f"{line.doc}:{line.line}: `{line.command}` promises exit "
            f"{sorted(line.promised_exits)}, got {code}")


def all_lines() -> list[Line]:
    return [part for doc in DOCS for line in shell_lines(doc) for part in _parts(line)]


def test_every_shell_line_is_walked() -> None:
    """A line the walk does not know (a new command or promise in the docs) fails here."""
    lines = all_lines()
    unknown = [f"{ln.doc}:{ln.line}: {ln.command}" for ln in lines
               if " pip " not in f" {ln.command} " and ln.command not in WALK]
    assert not unknown, "add a check to WALK for:\n" + "\n".join(unknown)
    skipped = [b for doc in DOCS for b in blocks(doc) if b.skip]
    assert len(skipped) <= MAX_SKIPPED_BLOCKS, [f"{b.doc}:{b.line}" for b in skipped]
    shown = {ln.command for ln in lines if " pip " not in f" {ln.command} "}
    assert shown == set(WALK), "a check for a line no doc shows"
    assert sum(" pip " in f" {ln.command} " for ln in lines) >= 2
    vague = [f"{ln.doc}:{ln.line}" for ln in lines if "exit" in ln.comment and not
             ln.promised_exits]
    assert not vague, f"an exit promise the walk cannot read: {vague}"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_walk_the_docs(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                       capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = request.getfixturevalue("mariadb_url") if backend == "mariadb" else None
    walk = Walk(tmp_path, url, capsys, monkeypatch)
    shutil.copytree(ROOT / "examples" / "fastapi_mysql", walk.project,
                    ignore=shutil.ignore_patterns("__pycache__", ".alembic_repair", "*.db"))
    for line in all_lines():
        _check(walk, line)
    assert walk.broken and len(walk.results) == 9 and len(walk.not_run) == 2
    _what_it_keeps(walk)
    _python_example(walk)
    request.node.user_properties.append(("timings", walk.timings))  # the cost of each line
