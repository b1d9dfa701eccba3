"""The one runner (repair/runner.py) and plans made once (issue 11, item 3).

A dry run diagnoses (or, for squash, proves) once: the CLI prints the plan object and hands
that very object to the API, which refuses it without planning again. `fix(plan=p)` runs
exactly `p`, and refuses, nothing changed, a plan the project no longer matches. And the two
crash states the issue names (fix killed right after its autogenerate step; `drop --hard`
killed, then run again) converge.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import cli, table_digest, tree_digest

from alembic_repair import Project, RefusedUnsafe, doctor, fix, plan_fix, plan_reset, reset
from alembic_repair import squash as run_squash
from alembic_repair.cli import app
from alembic_repair.repair import fix as fix_module
from alembic_repair.repair import squash as squash_module
from alembic_repair.repair.journal import CRASH_ENV, Journal
from alembic_repair.testing.scenarios import build, execute


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(CRASH_ENV, raising=False)


def _counting(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def _main(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        app.main(list(args))
    return int(done.value.code or 0)


def _user_rows(url: str) -> dict[str, tuple[int, str]]:
    return {t: d for t, d in table_digest(url).items() if t != "alembic_version"}


def test_a_fix_dry_run_diagnoses_once_and_refuses_the_plan_it_printed(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "project"
    build("fm04_stray_file_in_versions", root, sqlite_url)
    files, rows = tree_digest(root), table_digest(sqlite_url)
    diagnosed = _counting(monkeypatch, fix_module, "diagnose")

    code = _main("--project", str(root), "--url", sqlite_url, "fix")

    out = capsys.readouterr()
    assert code == 5 and out.err == "", out  # a dry run: the plan, on stdout
    assert len(diagnosed) == 1
    assert "fix plan" in out.out and "1. " in out.out
    assert out.out.endswith("Run again with --yes to apply it.\n"), out
    assert tree_digest(root) == files and table_digest(sqlite_url) == rows


def test_fix_runs_the_plan_it_is_given(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "project"
    build("fm04_stray_file_in_versions", root, sqlite_url)
    project = Project.discover(root, url=sqlite_url, strict=False)
    plan = plan_fix(project)
    assert plan.steps

    result = fix(project, yes=True, plan=plan)

    assert result.plans[0] is plan
    assert result.healthy and Journal.load(project.state_dir) is None


def test_fix_refuses_a_plan_the_project_no_longer_matches(tmp_path: Path,
                                                          sqlite_url: str) -> None:
    root = tmp_path / "project"
    build("fm04_stray_file_in_versions", root, sqlite_url)
    project = Project.discover(root, url=sqlite_url, strict=False)
    plan = plan_fix(project)
    (root / "alembic" / "versions" / "notes.py").write_text("x = 1\n")  # a second stray file
    files, rows = tree_digest(root), table_digest(sqlite_url)

    with pytest.raises(RefusedUnsafe, match="changed since the plan was made"):
        fix(project, yes=True, plan=plan)

    assert tree_digest(root) == files and table_digest(sqlite_url) == rows


def test_a_squash_dry_run_proves_once_and_a_changed_history_refuses_its_plan(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "project"
    build("healthy", root, sqlite_url)
    planned = _counting(monkeypatch, squash_module, "_build_plan")
    code = _main("--project", str(root), "--url", sqlite_url, "squash")
    out = capsys.readouterr()
    assert code == 5 and "squash plan" in out.out, out
    assert len(planned) == 1

    project = Project.discover(root, url=sqlite_url)
    plan = squash_module.plan_squash(project)
    head = next((root / "alembic" / "versions").glob("ccc333_*.py"))
    head.write_text(head.read_text() + "\n# edited since the plan\n")
    files = tree_digest(root)
    with pytest.raises(RefusedUnsafe, match="changed since the plan was made"):
        run_squash(project, yes=True, plan=plan)
    assert tree_digest(root) == files


def test_reset_refuses_a_plan_the_database_no_longer_matches(tmp_path: Path,
                                                              sqlite_url: str) -> None:
    root = tmp_path / "project"
    build("fm05_deleted_intermediate_revision", root, sqlite_url)
    project = Project.discover(root, url=sqlite_url)
    plan = plan_reset(project)
    execute(sqlite_url, "INSERT INTO author (id, name) VALUES (99, 'written meanwhile')")
    files, rows = tree_digest(root), table_digest(sqlite_url)

    with pytest.raises(RefusedUnsafe, match="changed since the plan was made"):
        reset(project, yes=True, plan=plan)

    assert tree_digest(root) == files and table_digest(sqlite_url) == rows


@pytest.mark.crash
def test_fix_killed_right_after_its_autogenerate_step_is_finished(tmp_path: Path,
                                                                  sqlite_url: str) -> None:
    root = tmp_path / "project"
    build("fm32_compare_type_off", root, sqlite_url)
    rows = _user_rows(sqlite_url)
    versions = {p.name for p in (root / "alembic" / "versions").glob("*.py")}
    crashed = cli("fix", "--yes", cwd=root, url=sqlite_url, env={CRASH_ENV: "1.autogenerate"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    assert Journal.load(root / ".alembic_repair") is not None

    again = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert again.code == 0, again.output
    assert "finishing it" in again.stdout
    written = {p.name for p in (root / "alembic" / "versions").glob("*.py")} - versions
    assert len(written) == 1, written
    assert _user_rows(sqlite_url) == rows
    project = Project.discover(root, url=sqlite_url)
    assert doctor(project).healthy and Journal.load(project.state_dir) is None


@pytest.mark.crash
@pytest.mark.parametrize("point", ["drop.backup", "drop.revision"])
def test_a_second_hard_drop_after_a_kill_writes_one_revision(point: str, tmp_path: Path,
                                                             sqlite_url: str) -> None:
    root = tmp_path / "project"
    build("healthy", root, sqlite_url)
    versions = {p.name for p in (root / "alembic" / "versions").glob("*.py")}
    rows = table_digest(sqlite_url)
    crashed = cli("drop", "post", "--hard", "--yes", cwd=root, url=sqlite_url,
                  env={CRASH_ENV: point})
    assert crashed.code == -signal.SIGKILL, crashed.output
    blocked = cli("fix", "--yes", cwd=root, url=sqlite_url)  # the drop's journal names it
    assert blocked.code == 1 and "`alembic-repair drop post --hard --yes`" in blocked.stderr

    again = cli("drop", "post", "--hard", "--yes", cwd=root, url=sqlite_url)

    assert again.code == 0, again.output
    written = {p.name for p in (root / "alembic" / "versions").glob("*.py")} - versions
    assert len(written) == 1, written
    assert "op.drop_table('post')" in next(
        (root / "alembic" / "versions").glob(f"{next(iter(written))}")).read_text()
    assert table_digest(sqlite_url) == rows  # written, not applied
    assert Journal.load(root / ".alembic_repair") is None
    manifests = list((root / ".alembic_repair" / "backups").glob("*/manifest.json"))
    assert manifests and "post" in manifests[-1].read_text()
    third = cli("drop", "post", "--hard", "--yes", cwd=root, url=sqlite_url)
    assert third.code == 0 and "already" in third.stdout, third.output


@pytest.mark.parametrize("context", [
    {"backup": ".alembic_repair/backups/20261201T000000Z", "drop": ["post"], "files": []},
    {"folder": ".alembic_repair/backups/x", "steps": [{"kind": "NoSuchStep"}]},
], ids=["reset-before-steps-were-stored", "unknown-step-kind"])
def test_a_journal_this_version_cannot_read_back_is_one_line_and_kept(
        context: dict[str, object], tmp_path: Path, sqlite_url: str) -> None:
    """A journal from an earlier version (reset did not store its steps) or with a step kind
    this version does not know: the run refuses in one line, changes nothing, keeps the
    journal (it is the only record of what the interrupted run did)."""
    import json

    root = tmp_path / "project"
    build("healthy", root, sqlite_url)
    state = root / ".alembic_repair"
    state.mkdir(exist_ok=True)
    journal = state / "journal.json"
    journal.write_text(json.dumps({
        "format": 1, "command": "reset", "started_at": "2026-12-01T00:00:00+00:00",
        "steps": [{"name": "backup", "state": "done", "destructive": False},
                  {"name": "drop", "state": "started", "destructive": True}],
        "context": context}))
    before, rows = tree_digest(root), table_digest(sqlite_url)

    done = cli("reset", "--yes", cwd=root, url=sqlite_url)

    assert done.code in (1, 2), done.output
    assert "Traceback" not in done.output and len(done.stderr.strip().splitlines()) == 1
    assert "journal.json" in done.stderr and "reset" in done.stderr
    assert tree_digest(root) == before and table_digest(sqlite_url) == rows
    assert journal.exists()


@pytest.mark.crash
def test_a_different_drop_does_not_finish_a_killed_one_behind_its_back(
        tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "project"
    build("healthy", root, sqlite_url)
    crashed = cli("drop", "post", "--hard", "--yes", cwd=root, url=sqlite_url,
                  env={CRASH_ENV: "drop.backup"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    before = tree_digest(root)

    other = cli("drop", "author", "--yes", cwd=root, url=sqlite_url)

    assert other.code == 1, other.output
    assert "`alembic-repair drop post --hard --yes`" in other.stderr
    assert tree_digest(root) == before and Journal.load(root / ".alembic_repair") is not None
