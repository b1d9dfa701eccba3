"""fix shows its whole projected plan and never runs a kind of step it did not show; every
hint that names a command names one that does the thing (issue 13, item 7).

The projection (`repair.plan.project_plans`) is checked in memory, as the planner's unit
tests are; the dry run, the stop before an unshown round and the hints through the CLI, the
API and the registry.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from helpers import cli, table_digest, tree_digest

import alembic_repair
from alembic_repair import Project, doctor, fix, plan_fix
from alembic_repair.cli.app import app
from alembic_repair.diagnose import findings as F
from alembic_repair.diagnose.diagnosis import Diagnosis
from alembic_repair.diagnose.findings import CATALOGUE, sort_key
from alembic_repair.diagnose.subjects import SetupFile, VersionsDir, VersionTable
from alembic_repair.engine.env_filter import EnvFilter
from alembic_repair.engine.project import Project as ProjectData
from alembic_repair.engine.state.config import ConfigState
from alembic_repair.engine.state.read import State
from alembic_repair.engine.state.recorder import VersionTable as Rows
from alembic_repair.engine.state.scripts import ScriptFile
from alembic_repair.repair.plan import project_plans, shown_kinds
from alembic_repair.repair.registry import BY_CODE, Refusal, Repair, ReportOnly
from alembic_repair.repair.steps import Autogenerate, SetEnvOption, Upgrade, WriteMerge
from alembic_repair.testing.scenarios import build

ROOT = Path("/nonexistent-ar-projection/proj")
ENV_PY = SetupFile("alembic/env.py")
SOURCE = Path(alembic_repair.__file__).parent


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _script(revision: str, *parents: str) -> ScriptFile:
    return ScriptFile(ROOT / "alembic" / "versions" / f"{revision}.py", revision,
                      tuple(parents), upgrade="code", downgrade="code")


def _state(*scripts: ScriptFile, rows: tuple[str, ...] | None = ("a1",)) -> State:
    project = ProjectData(ROOT, ROOT / "alembic.ini", ROOT / "alembic", "sqlite:///app.db",
                          models="app.models:Base")
    config = ConfigState(ini_exists=True, script_location_raw="%(here)s/alembic",
                         prepend_sys_path=True, script_location_exists=True,
                         env_py_exists=True, versions_dir_exists=True, render_as_batch=True,
                         compare_type_off=False,
                         env_filter=EnvFilter(current=True, kept=frozenset(), unwired=(),
                                              unsafe=()))
    heads = tuple(sorted({s.revision for s in scripts if s.revision} -
                         {p for s in scripts for p in s.down_revisions}))
    versions = None if rows is None else Rows(exists=True, rows=rows, length=32)
    return State(project, config, scripts, heads, versions=versions)


def _diagnosis(st: State, *found: F.Finding) -> Diagnosis:
    return Diagnosis(tuple(sorted(found, key=sort_key)), st)


# -- the projection, in memory ---------------------------------------------------------------


def test_every_layer_is_projected_the_later_ones_marked() -> None:
    st = _state(_script("a1"), _script("b2", "a1"), rows=("a1",))
    found = (F.AR108.finding("x", ENV_PY), F.AR304.finding("x", VersionTable()),
             F.AR403.finding("x", None))
    first, *later = project_plans(_diagnosis(st, *found))
    assert (first.layer, first.projected) == ("setup files", False)
    assert first.steps == (SetEnvOption("render_as_batch", why="SQLite can only ALTER a table "
                                        "by copying it (batch mode)"),)
    assert [(p.layer, p.steps, p.projected) for p in later] == [
        ("database and history", (Upgrade(),), True),
        ("models and database", (Autogenerate(),), True)]
    assert shown_kinds((first, *later)) == {"env-option", "upgrade", "autogenerate"}


def test_a_merge_projects_the_upgrade_to_the_head_it_writes() -> None:
    """Two heads: no AR304 yet (no single head to be behind), but the merge writes a head
    the database has not applied, so the upgrade to it is shown too."""
    st = _state(_script("a1"), _script("b2", "a1"), _script("c3", "a1"), rows=("b2",))
    first, *later = project_plans(_diagnosis(st, F.AR205.finding("x", VersionsDir("v"))))
    assert first.layer == "revision files" and isinstance(first.steps[0], WriteMerge)
    assert [(p.layer, p.steps, p.projected) for p in later] == [
        ("database and history", (Upgrade(),), True)]


def test_a_layer_that_would_only_refuse_ends_the_projection() -> None:
    st = _state(_script("a1"), _script("b2", "a1"), rows=("a1",))
    found = (F.AR108.finding("x", ENV_PY), F.AR405.finding("x", None),
             F.AR403.finding("x", None))
    plans = project_plans(_diagnosis(st, *found))
    assert [p.layer for p in plans] == ["setup files"]  # the models are judged after AR405
    assert project_plans(_diagnosis(st)) == (project_plans(_diagnosis(st))[0],)


# -- the dry run prints it; --yes runs nothing it did not show ---------------------------------


def test_the_dry_run_prints_every_layer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    build("fm02_two_heads", tmp_path / "proj", url)
    files, rows = tree_digest(tmp_path / "proj"), table_digest(url)
    run = cli("fix", cwd=tmp_path / "proj", url=url)
    assert run.code == 5 and run.stderr == "", run.output  # a dry run: the plan, on stdout
    lines = run.stdout.splitlines()
    assert lines[0] == "Plan (dry run, nothing changed):"
    assert lines[1] == "fix plan (revision files):"
    assert lines[2].startswith("  1. write merge revision ")
    assert lines[3].startswith("then, depending on the results of the layers before")
    assert lines[4:6] == ["  database and history:",
                          "    1. upgrade the database to heads [destructive]"]
    assert lines[-1] == "Run again with --yes to apply it."
    assert tree_digest(tmp_path / "proj") == files and table_digest(url) == rows


def test_fix_yes_stops_before_a_kind_of_step_the_plan_did_not_show(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    root = tmp_path / "proj"
    build("fm02_two_heads", root, url)
    project = Project.discover(root, url=url)
    shown = plan_fix(project)
    assert [p.layer for p in shown.later] == ["database and history"]
    narrowed = replace(shown, later=())  # as if the upgrade had not been shown

    result = fix(project, yes=True, plan=narrowed)

    assert [p.layer for p in result.plans] == ["revision files"]  # the merge, and no more
    assert not result.healthy
    (stop,) = [why for _, _, why in result.unrepairable if "stopped" in why]
    assert stop == ("fix stopped before the database and history round: it would upgrade the "
                    "database to heads, which the plan shown did not include; run "
                    "`alembic-repair fix` to see the new plan, then `alembic-repair fix --yes`")
    assert "AR304" in {f.code for f in doctor(project).findings}  # nothing was upgraded
    again = cli("fix", cwd=root, url=url)  # `fix` shows it now
    assert again.code == 5 and "upgrade the database to heads" in again.stdout, again.output
    done = fix(project, yes=True)
    assert done.healthy and [p.layer for p in done.plans] == ["database and history"]


# -- every hint names a command that does the thing ------------------------------------------


def _strings(path: Path) -> list[str]:
    """The string literals of a module (an f-string as its literal parts joined)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append("".join(v.value for v in node.values
                               if isinstance(v, ast.Constant) and isinstance(v.value, str)))
    return out


def _hints() -> list[tuple[str, str]]:
    """(where, text) for every text a user reads as what to do: the catalogue's fixes, the
    registry's reasons, and every string of the rules, the repairs, their steps and fix."""
    hints = [(f"{code} fix", entry.fix) for code, entry in CATALOGUE.items()]
    hints += [(f"{code} why", entry.why) for code, entry in BY_CODE.items()
              if isinstance(entry, (Refusal, ReportOnly)) and isinstance(entry.why, str)]
    for folder in ("diagnose", "repair/repairs", "repair/steps", "repair/history"):
        for path in sorted((SOURCE / folder).rglob("*.py")):
            hints += [(str(path.relative_to(SOURCE)), s) for s in _strings(path)]
    for name in ("plan.py", "fix.py", "registry.py", "runner.py"):
        hints += [(f"repair/{name}", s) for s in _strings(SOURCE / "repair" / name)]
    return hints


ONLY = re.compile(r"\bfix\b[^`]*?--only\s+(AR\d{3})", re.IGNORECASE)


def test_every_hint_naming_fix_only_a_code_is_backed_by_a_repair_of_it() -> None:
    named = [(where, code.upper()) for where, text in _hints() for code in ONLY.findall(text)]
    assert ("AR407 fix", "AR407") in named  # the scan sees the hints it is meant to check
    for where, code in named:
        assert isinstance(BY_CODE[code], Repair), f"{where}: `fix --only {code}` repairs nothing"


def test_a_code_fix_cannot_repair_never_sends_the_user_to_fix() -> None:
    for code, entry in BY_CODE.items():
        if isinstance(entry, Repair):
            continue
        text = CATALOGUE[code].fix
        assert "fix --yes" not in text and f"--only {code}" not in text, (code, text)


def test_every_alembic_repair_command_a_hint_names_exists() -> None:
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    pattern = re.compile(r"[`(]alembic-repair\s+([a-z][a-z-]*)")  # a command, not prose
    named = {(where, cmd) for where, text in _hints() for cmd in pattern.findall(text)}
    assert {cmd for _, cmd in named} >= {"bootstrap", "fix", "drop", "doctor"}
    assert [(where, cmd) for where, cmd in sorted(named) if cmd not in commands] == []


def test_the_target_metadata_hint_names_what_repairs_it() -> None:
    """AR106 used to say `bootstrap --models`, which leaves target_metadata = None alone;
    fix writes env.py (test_fix: fm23_target_metadata_none), so the hint names fix."""
    assert "`alembic-repair fix --yes`" in F.AR106.fix and "bootstrap" not in F.AR106.fix
    assert isinstance(BY_CODE["AR106"], Repair)
    assert "bootstrap" not in F.AR403.fix and "`alembic-repair drop" in F.AR403.fix
