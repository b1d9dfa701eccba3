"""The safe reset (safe_reset.py, journal.py): every row kept, a plan first, and crash-safe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MODELS_V1, cli, execute, table_digest, tree_digest, write_project
from sqlalchemy import create_engine, inspect, text

from alembic_repair import Project, RefusedUnsafe, bootstrap, doctor, plan_reset, reset
from alembic_repair.repair.journal import CRASH_ENV, JOURNAL, Journal
from alembic_repair.repair.reset import STEPS

ROWS = [
    "INSERT INTO author (id, name) VALUES (1, 'Ann'), (2, 'Bo\u00e9'), (3, 'Cy')",
    "INSERT INTO post (id, title, body, author_id) VALUES (1, 'hello', 'a\nb', 1), "
    "(2, 'again', NULL, 1), (3, 'x', '', 2)",
]
#: Every point the journal offers a crash at: after each step, and inside the drop.
CRASH_POINTS = [name for name, _ in STEPS] + ["drop.1"]


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(CRASH_ENV, raising=False)


def _broken_project(tmp_path: Path, url: str) -> Path:
    """A bootstrapped project with rows whose alembic/ folder and alembic.ini were then lost,
    and regenerated on another clone: the database is at a revision no file defines."""
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=url))
    execute(url, *ROWS)
    shutil.rmtree(root / "alembic")
    (root / "alembic.ini").unlink()
    execute(url, "UPDATE alembic_version SET version_num = 'feedfacecafe'")
    return root


def _user_rows(url: str) -> dict[str, tuple[int, str]]:
    return {t: d for t, d in table_digest(url).items() if t != "alembic_version"}


def _version(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def test_reset_keeps_every_row_and_leaves_a_healthy_project(tmp_path: Path, backend) -> None:
    root = _broken_project(tmp_path, backend.url)
    before = _user_rows(backend.url)
    assert before["author"][0] == 3 and before["post"][0] == 3
    project = Project.discover(root, url=backend.url)

    result = reset(project, yes=True)

    assert _user_rows(backend.url) == before
    assert result.complete and result.resumed_after is None
    assert set(result.dropped) == {"author", "post"}
    assert _version(backend.url) == [result.head]
    assert len(list((root / "alembic" / "versions").glob(f"{result.head}_*.py"))) == 1
    assert not (project.state_dir / JOURNAL).exists()
    assert (result.backup / "manifest.json").is_file()
    diagnosis = doctor(Project.discover(root, url=backend.url))
    assert diagnosis.healthy, [f.code for f in diagnosis.findings]
    # The regenerated setup works with plain Alembic too.
    check = subprocess.run([sys.executable, "-m", "alembic", "check"], cwd=root,
                           env={**os.environ, "DATABASE_URL": backend.url},
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert bootstrap(Project.discover(root, url=backend.url)).changed is False


def test_reset_moves_the_old_files_into_the_backup_and_keeps_the_ini_url(
        tmp_path: Path, sqlite_url: str) -> None:
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=sqlite_url))
    execute(sqlite_url, *ROWS)
    old_revisions = sorted(p.name for p in (root / "alembic" / "versions").glob("*.py"))
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", f"[alembic]\nsqlalchemy.url = "
                                           f"{sqlite_url}\n# edited by hand\n"))
    old_ini = ini.read_text()
    project = Project.discover(root)  # the URL comes from alembic.ini
    assert project.url == sqlite_url

    result = reset(project, yes=True)

    moved = result.backup / "project-files"
    assert (moved / "alembic.ini").read_text() == old_ini
    assert sorted(p.name for p in (moved / "alembic" / "versions").glob("*.py")) == old_revisions
    assert f"sqlalchemy.url = {sqlite_url}" in ini.read_text()
    assert "# edited by hand" not in ini.read_text()
    assert Project.discover(root).url == sqlite_url
    assert _user_rows(sqlite_url)["author"][0] == 3


def test_reset_keeps_tables_the_models_do_not_define(tmp_path: Path, backend) -> None:
    root = _broken_project(tmp_path, backend.url)
    execute(backend.url, "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, what VARCHAR(50))",
            "INSERT INTO audit_log VALUES (1, 'kept'), (2, 'also kept')")
    before = _user_rows(backend.url)
    project = Project.discover(root, url=backend.url)

    plan = plan_reset(project)
    assert ("audit_log", 2) in plan.kept and "audit_log" not in dict(plan.drop)
    result = reset(project, yes=True)

    assert result.kept == ("audit_log",)
    assert _user_rows(backend.url) == before


def test_reset_discard_data_empties_the_tables_but_keeps_the_backup(
        tmp_path: Path, sqlite_url: str) -> None:
    root = _broken_project(tmp_path, sqlite_url)
    result = reset(Project.discover(root, url=sqlite_url), yes=True, discard_data=True)
    assert result.restore is None
    assert {t: n for t, (n, _) in _user_rows(sqlite_url).items()} == {"author": 0, "post": 0}
    manifest = json.loads((result.backup / "manifest.json").read_text())
    assert {t["name"]: t["rows"] for t in manifest["tables"]}["post"] == 3


def test_reset_without_yes_prints_the_plan_and_changes_nothing(tmp_path: Path, backend) -> None:
    root = _broken_project(tmp_path, backend.url)
    files, rows = tree_digest(root), table_digest(backend.url)

    run = cli("reset", cwd=root, url=backend.url)

    assert run.code == 5 and run.stderr == "", run.output  # a dry run: the plan, on stdout
    assert run.stdout.startswith("Plan (dry run, nothing changed):\n"), run.stdout
    assert "1. backup:" in run.stdout and "DROP post (3 rows), author (3 rows)" in run.stdout
    assert "[destructive]" in run.stdout
    assert run.stdout.endswith("Run again with --yes to apply it.\n"), run.stdout
    assert tree_digest(root) == files and table_digest(backend.url) == rows
    assert not (root / ".alembic_repair" / "backups").exists()


def test_reset_refuses_a_remote_database_before_connecting(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    url = "mysql+pymysql://app:s3cret-pw@db.example.com:3306/app"
    with pytest.raises(RefusedUnsafe, match="--allow-remote"):
        reset(Project.discover(root, url=url), yes=True)
    run = cli("reset", "--yes", cwd=root, url=url)
    assert run.code == 4 and "s3cret-pw" not in run.output


def test_reset_cli_reports_the_steps(tmp_path: Path, sqlite_url: str) -> None:
    root = _broken_project(tmp_path, sqlite_url)
    before = _user_rows(sqlite_url)
    run = cli("reset", "--yes", cwd=root, url=sqlite_url)
    assert run.code == 0, run.output
    for kind in ("backup", "drop", "scaffold", "baseline", "upgrade", "restore", "verify"):
        assert f"{kind}  " in run.stdout, (kind, run.stdout)
    assert _user_rows(sqlite_url) == before


@pytest.mark.crash
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_any_step_then_rerun_loses_no_row(tmp_path: Path, backend, point: str) -> None:
    root = _broken_project(tmp_path, backend.url)
    before = _user_rows(backend.url)

    crashed = cli("reset", "--yes", cwd=root, url=backend.url, env={CRASH_ENV: point})
    assert crashed.code == -signal.SIGKILL, crashed.output
    journal = Journal.load(root / ".alembic_repair")
    assert journal is not None and journal.command == "reset"

    plan = cli("reset", cwd=root, url=backend.url)  # says what the rerun will do
    assert plan.code == 5, plan.output
    if journal.changed_anything:
        assert "(done by the interrupted run)" in plan.stdout
    rerun = cli("reset", "--yes", cwd=root, url=backend.url)
    assert rerun.code == 0, rerun.output
    assert ("finishing it" if journal.changed_anything else "starting over") in rerun.stdout

    assert _user_rows(backend.url) == before
    assert Journal.load(root / ".alembic_repair") is None
    assert len(_version(backend.url)) == 1
    assert doctor(Project.discover(root, url=backend.url)).healthy


@pytest.mark.crash
def test_a_crash_inside_the_upgrade_is_finished_on_mariadb(tmp_path: Path, backend) -> None:
    """MySQL commits DDL statement by statement: a crash during the upgrade leaves some tables
    created and no version row. The rerun drops those (empty, ours) tables and upgrades."""
    root = _broken_project(tmp_path, backend.url)
    before = _user_rows(backend.url)
    crashed = cli("reset", "--yes", cwd=root, url=backend.url, env={CRASH_ENV: "baseline"})
    assert crashed.code == -signal.SIGKILL
    execute(backend.url, "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(100) "
                         "NOT NULL)")
    journal = Journal.load(root / ".alembic_repair")
    assert journal is not None
    journal.mark("upgrade", "started")

    project = Project.discover(root, url=backend.url)
    result = reset(project, yes=True)

    assert result.resumed_after == "baseline"
    assert _user_rows(backend.url) == before


@pytest.mark.crash
def test_a_table_written_to_after_the_crash_stops_the_rerun(tmp_path: Path, sqlite_url: str
                                                            ) -> None:
    root = _broken_project(tmp_path, sqlite_url)
    cli("reset", "--yes", cwd=root, url=sqlite_url, env={CRASH_ENV: "restore"})
    execute(sqlite_url, "INSERT INTO author (id, name) VALUES (99, 'written meanwhile')")
    rows = table_digest(sqlite_url)
    run = cli("reset", "--yes", cwd=root, url=sqlite_url)
    assert run.code == 1, run.output
    assert "author" in run.stderr and "backup" in run.stderr
    assert table_digest(sqlite_url) == rows


def test_another_commands_journal_blocks_reset(tmp_path: Path, sqlite_url: str) -> None:
    root = _broken_project(tmp_path, sqlite_url)
    Journal.begin(root / ".alembic_repair", "fix", [("stamp", True)]).mark("stamp", "started")
    run = cli("reset", "--yes", cwd=root, url=sqlite_url)
    assert run.code == 1 and "fix --yes" in run.stderr
    assert inspect(create_engine(sqlite_url)).has_table("author")


def test_a_corrupt_journal_is_a_clear_error(tmp_path: Path, sqlite_url: str) -> None:
    root = _broken_project(tmp_path, sqlite_url)
    (root / ".alembic_repair").mkdir(exist_ok=True)
    (root / ".alembic_repair" / JOURNAL).write_text("{not json")
    run = cli("reset", "--yes", cwd=root, url=sqlite_url)
    assert run.code == 2 and "journal.json" in run.stderr and "Traceback" not in run.output


MODELS_V2 = MODELS_V1.replace('''    body: Mapped[str | None] = mapped_column(Text)
''', '')


def test_reset_to_models_without_a_column_reports_the_values_left_in_the_backup(
        tmp_path: Path, sqlite_url: str) -> None:
    root = _broken_project(tmp_path, sqlite_url)
    (root / "app" / "models.py").write_text(MODELS_V2)
    run = cli("reset", "--yes", cwd=root, url=sqlite_url)
    assert run.code == 1, run.output
    assert "post.body" in run.stdout
    assert _user_rows(sqlite_url)["author"][0] == 3


@pytest.mark.crash
def test_the_old_ini_url_is_carried_after_a_crash_and_never_written_to_the_journal(
        tmp_path: Path, sqlite_url: str) -> None:
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=sqlite_url))
    execute(sqlite_url, *ROWS)
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", f"[alembic]\nsqlalchemy.url = "
                                           f"{sqlite_url}\n# edited by hand\n"))
    before = _user_rows(sqlite_url)
    seen: list[str] = []
    for point in ("drop", "scaffold"):
        crashed = cli("reset", "--yes", cwd=root, env={CRASH_ENV: point})
        assert crashed.code == -signal.SIGKILL, crashed.output
        seen.append((root / ".alembic_repair" / JOURNAL).read_text())
    assert all(sqlite_url not in text for text in seen)
    rerun = cli("reset", "--yes", cwd=root)
    assert rerun.code == 0, rerun.output
    assert f"sqlalchemy.url = {sqlite_url}" in ini.read_text()
    assert _user_rows(sqlite_url) == before


def test_a_revision_cut_short_is_kept_private_in_the_backup(tmp_path: Path,
                                                           sqlite_url: str) -> None:
    """A baseline revision a crash cut short goes into the backup as 0600 (it was 0644)."""
    root = _broken_project(tmp_path, sqlite_url)
    crashed = cli("reset", "--yes", cwd=root, url=sqlite_url, env={CRASH_ENV: "baseline"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    (written,) = (root / "alembic" / "versions").glob("*.py")
    text = written.read_text()
    written.write_text(text[: len(text) // 2])  # as if killed while Alembic wrote it
    written.chmod(0o644)
    journal = root / ".alembic_repair" / JOURNAL
    data = json.loads(journal.read_text())
    for step in data["steps"]:
        if step["name"] == "baseline":
            step["state"] = "started"
    journal.write_text(json.dumps(data))
    rerun = cli("reset", "--yes", cwd=root, url=sqlite_url)
    assert rerun.code == 0, rerun.output
    (kept,) = (root / ".alembic_repair").rglob(f"{written.name}.partial")
    assert kept.read_text() == text[: len(text) // 2]
    assert kept.stat().st_mode & 0o777 == 0o600
    assert kept.parent.stat().st_mode & 0o777 == 0o700


@pytest.mark.crash
def test_a_resumed_reset_does_what_its_printed_plan_says_not_what_the_killed_run_was_asked(
        tmp_path: Path, sqlite_url: str) -> None:
    """Killed during `reset --discard-data`, then rerun without it: the plan printed says the
    rows are restored, and they are (a resumed run never discards on an old flag)."""
    root = _broken_project(tmp_path, sqlite_url)
    before = _user_rows(sqlite_url)
    crashed = cli("reset", "--discard-data", "--yes", cwd=root, url=sqlite_url,
                  env={CRASH_ENV: "scaffold"})
    assert crashed.code == -signal.SIGKILL, crashed.output

    plan = cli("reset", cwd=root, url=sqlite_url)
    assert plan.code == 5 and "restore the rows" in plan.stdout, plan.output
    rerun = cli("reset", "--yes", cwd=root, url=sqlite_url)

    assert rerun.code == 0, rerun.output
    assert _user_rows(sqlite_url) == before


@pytest.mark.parametrize("point", ["drop", "scaffold", "upgrade", "restore"])
def test_a_reset_journal_of_the_earlier_format_is_finished(tmp_path: Path, sqlite_url: str,
                                                          point: str) -> None:
    """Journals written before runs stored their steps (the same step names; the backup folder
    under "backup", the files' checksums under "sha256"): a reset killed before alembic-repair
    was upgraded is finished by the new version, every row back."""
    root = _broken_project(tmp_path, sqlite_url)
    before = _user_rows(sqlite_url)
    crashed = cli("reset", "--yes", cwd=root, url=sqlite_url, env={CRASH_ENV: point})
    assert crashed.code == -signal.SIGKILL, crashed.output
    path = root / ".alembic_repair" / JOURNAL
    data = json.loads(path.read_text())
    context = data["context"]
    scaffold = next(s for s in context["steps"] if s["kind"] == "reset-scaffold")
    data["context"] = {"backup": context["folder"], "drop": context["drop"],
                       "files": context["files"], "sha256": scaffold["sha256"]}
    path.write_text(json.dumps(data))

    rerun = cli("reset", "--yes", cwd=root, url=sqlite_url)

    assert rerun.code == 0, rerun.output
    assert "finishing it" in rerun.stdout
    assert _user_rows(sqlite_url) == before
    assert Journal.load(root / ".alembic_repair") is None
    assert doctor(Project.discover(root, url=sqlite_url)).healthy
