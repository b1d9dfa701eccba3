"""fix (plan.py, steps.py, apply.py): every repairable scenario, end to end through the CLI.

After `fix --yes` each project must pass what a user would check by hand: one head, the
database at it, `alembic upgrade head` and `alembic check` clean, doctor healthy, every row
that existed before still there with the same values in every column that still exists, and a
brand-new empty database that builds with `alembic upgrade head` and passes `alembic check`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, table_digest, tree_digest
from sqlalchemy import create_engine, inspect, text

from alembic_repair import Project, doctor, plan_fix
from alembic_repair.repair.journal import CRASH_ENV, Journal
from alembic_repair.testing.scenarios import SCENARIOS, URL_FROM_INI, build

#: Scenarios fix must leave healthy (the others need a human decision; see NOT_REPAIRABLE).
NOT_REPAIRABLE = {
    "fm06_revision_cycle": "AR204",  # which link is wrong is not in the files
    "fm13_half_applied_revision": "AR402",  # the revision itself fails: it must be corrected
    "fm15_manual_alter": "AR405",  # a column only the database has: keep it or drop it?
    "fm24_model_class_removed": "AR403",  # a table with rows the models lost: never dropped
    "fm27_revision_syntax_error": "AR201",  # the project's code
    "fm27_revision_import_error": "AR209",
    "fm45_sqlite_junk_values": "AR407",  # values to clear: `fix --only AR407` (rewrite issue)
    "fm47_noop_downgrade": "AR208",  # a downgrade to write: the rewrite engine's job
    # pending revisions that would lose data: no upgrade runs through them
    "fm34_not_null_column_on_rows": "AR502",  # no value can be chosen for the rows
    "fm35_unique_on_duplicates": "AR503",  # which duplicate wins?
    "fm35_default_evaluated_once": "AR504",  # the models' code
    "fm32_type_change_too_short": "AR505",  # the data does not fit the new type
    "fm26_rename_as_drop_add": "AR508",  # a rename, or really a drop?
    "fm39_string_without_length": "AR510",  # the revision fails on MySQL
}
#: Repaired by the history steps (tests/test_history_repairs.py).
ELSEWHERE = {"fm05_deleted_intermediate_revision", "fm46_history_cannot_build_empty_db"}
ALREADY_HEALTHY = {"healthy", "fm25_empty_revision"}  # fm24_orphan_table: fix keeps it out
REPAIRABLE = sorted(set(SCENARIOS) - set(NOT_REPAIRABLE) - ELSEWHERE - ALREADY_HEALTHY)

ALEMBIC_CHECKS = r'''
import json, os, sys
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

root, fresh = sys.argv[1], sys.argv[2]
config = Config(os.path.join(root, "alembic.ini"))
heads = ScriptDirectory.from_config(config).get_heads()
out = {"heads": heads}
url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
engine = create_engine(url)
with engine.connect() as conn:
    out["current"] = list(MigrationContext.configure(conn).get_current_heads())
engine.dispose()
for name, target in (("live", url), ("fresh", fresh)):
    os.environ["DATABASE_URL"] = target
    for what in ("upgrade", "check"):
        try:
            command.upgrade(config, "head") if what == "upgrade" else command.check(config)
            out[f"{name}_{what}"] = "ok"
        except Exception as err:
            out[f"{name}_{what}"] = f"{type(err).__name__}: {err}"
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(CRASH_ENV, raising=False)


def _cases(names: Iterator[str] | list[str]) -> list[Any]:
    cases = []
    for name in names:
        for backend in SCENARIOS[name].backends:
            marks = [pytest.mark.mariadb] if backend == "mariadb" else []
            cases.append(pytest.param(name, backend, id=f"{name}-{backend}", marks=marks))
    return cases


def _db(request: pytest.FixtureRequest, backend: str, tmp_path: Path, label: str) -> str:
    """A new empty database of `backend` (dropped after the test)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{label}.db'}"
    server = request.getfixturevalue("mariadb_server")
    name = f"{label}_{secrets.token_hex(4)}"
    url = server.create_database(name)
    request.addfinalizer(lambda: server.drop_database(name))
    return str(url)


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every user table's rows as dicts, in primary-key order (trash tables included)."""
    engine = create_engine(url)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            for name in insp.get_table_names():
                if name == "alembic_version" or name == "_ar_trash_index":
                    continue
                pk = insp.get_pk_constraint(name).get("constrained_columns") or []
                quote = conn.dialect.identifier_preparer.quote
                order = ", ".join(quote(c) for c in pk) or "1"
                result = conn.execute(text(f"SELECT * FROM {quote(name)} ORDER BY {order}"))
                out[name] = [dict(r._mapping) for r in result]
    finally:
        engine.dispose()
    return out


def assert_rows_kept(before: dict[str, list[dict[str, Any]]],
                     after: dict[str, list[dict[str, Any]]]) -> None:
    """Every table still there with the same rows, compared over the columns both have; a
    table a revision soft-dropped counts when its trash table holds its rows."""
    for table, rows in before.items():
        if table not in after:
            trash = [n for n in after if n.startswith("_ar_trash_") and n.endswith(f"_{table}")]
            assert len(trash) == 1, f"table {table} is gone"
            assert after[trash[0]] == rows, table
            continue
        now = after[table]
        assert len(now) == len(rows), (table, len(rows), len(now))
        common = set(rows[0]) & set(now[0]) if rows else set()
        assert [{k: r[k] for k in common} for r in now] == \
            [{k: r[k] for k in common} for r in rows], table


def _url_for_cli(name: str, url: str) -> str | None:
    return None if name in URL_FROM_INI else url


def _alembic_checks(root: Path, url: str | None, fresh: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    done = subprocess.run([sys.executable, "-c", ALEMBIC_CHECKS, str(root), fresh], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, done.stdout + done.stderr
    return dict(json.loads(line[len("RESULT "):]))


def _build(name: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest,
           label: str = "live") -> tuple[Path, str]:
    url = _db(request, backend, tmp_path, label)
    root = tmp_path / f"project_{label}"
    build(name, root, url)
    return root, url


@pytest.mark.parametrize(("name", "backend"), _cases(REPAIRABLE))
def test_fix_repairs_the_scenario(name: str, backend: str, tmp_path: Path,
                                  request: pytest.FixtureRequest) -> None:
    root, url = _build(name, backend, tmp_path, request)
    before = _rows(url)
    assert before or name == "fm11_versions_dir_missing_fresh_db"  # the one empty database

    run = cli("fix", "--yes", cwd=root, url=_url_for_cli(name, url), timeout=300)

    assert run.code == 0, run.output
    assert "healthy" in run.stdout
    assert_rows_kept(before, _rows(url))
    checks = _alembic_checks(root, _url_for_cli(name, url), _db(request, backend, tmp_path,
                                                                 "fresh"))
    assert len(checks["heads"]) == 1, checks
    assert checks["current"] == checks["heads"], checks
    for key in ("live_upgrade", "live_check", "fresh_upgrade", "fresh_check"):
        assert checks[key] == "ok", (key, checks[key])
    project = Project.discover(root, url=_url_for_cli(name, url))
    diagnosis = doctor(project)
    assert diagnosis.healthy, [(f.code, f.detail) for f in diagnosis.findings]
    assert Journal.load(project.state_dir) is None
    again = cli("fix", "--yes", cwd=root, url=_url_for_cli(name, url), timeout=300)
    assert again.code == 0 and "nothing to do" in again.stdout, again.output


@pytest.mark.parametrize(("name", "backend"), _cases(sorted(NOT_REPAIRABLE)))
def test_fix_leaves_what_needs_a_decision_and_says_what_to_do(
        name: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root, url = _build(name, backend, tmp_path, request)
    before = _rows(url)
    run = cli("fix", "--yes", cwd=root, url=_url_for_cli(name, url), timeout=300)
    assert run.code == 1, run.output
    assert f"left  {NOT_REPAIRABLE[name]}" in run.stdout, run.output
    assert "Traceback" not in run.output
    assert_rows_kept(before, _rows(url))
    assert Journal.load(root / ".alembic_repair") is None


@pytest.mark.parametrize(("name", "backend"), _cases(sorted(ALREADY_HEALTHY)))
def test_fix_on_a_healthy_project_changes_nothing(name: str, backend: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    root, url = _build(name, backend, tmp_path, request)
    files, rows = tree_digest(root), table_digest(url)
    run = cli("fix", "--yes", cwd=root, url=url)
    assert run.code == 0 and "nothing to do" in run.stdout, run.output
    assert tree_digest(root) == files and table_digest(url) == rows
    assert not (root / ".alembic_repair" / "backups").exists()


@pytest.mark.parametrize(("name", "backend"), _cases(
    ["fm01_deleted_head_revision", "fm02_two_heads", "fm04_duplicate_revision_id",
     "fm08_version_rows_without_pk", "fm13_half_applied_then_corrected",
     "fm17_percent_in_ini_url", "fm21_missing_alembic_ini", "fm32_compare_type_off"]))
def test_fix_without_yes_prints_the_plan_and_changes_nothing(
        name: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root, url = _build(name, backend, tmp_path, request)
    files, rows = tree_digest(root), table_digest(url)
    run = cli("fix", cwd=root, url=_url_for_cli(name, url), timeout=300)
    assert run.code == 5 and run.stderr == "", run.output  # a dry run: the plan, on stdout
    assert "fix plan" in run.stdout and "1. " in run.stdout
    assert run.stdout.startswith("Plan (dry run, nothing changed):\n")
    assert run.stdout.endswith("Run again with --yes to apply it.\n")
    assert tree_digest(root) == files and table_digest(url) == rows
    assert not (root / ".alembic_repair").exists()


#: One scenario per kind of step; the crash is injected after every step of its first plan.
CRASHED = ["fm01_deleted_head_revision", "fm02_two_heads", "fm04_stray_file_in_versions",
           "fm24_pending_drop_table",
           "fm08_version_rows_without_pk", "fm13_half_applied_then_corrected",
           "fm21_missing_alembic_ini", "fm32_compare_type_off"]


def _crash_cases() -> list[Any]:
    on_mariadb = {"fm01_deleted_head_revision", "fm02_two_heads",
                  "fm13_half_applied_then_corrected"}
    return [case for case in _cases(CRASHED)
            if case.values[1] == "sqlite" or case.values[0] in on_mariadb]


@pytest.mark.crash
@pytest.mark.parametrize(("name", "backend"), _crash_cases())
def test_kill_9_after_each_step_then_fix_again_loses_no_row(
        name: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root, url = _build(name, backend, tmp_path, request, "probe")
    plan = plan_fix(Project.discover(root, url=_url_for_cli(name, url), strict=False))
    points = (["backup"] if plan.needs_backup else []) + [
        f"{n}.{step.kind}" for n, step in enumerate(plan.steps, start=1)] + ["verify"]
    assert points
    for number, point in enumerate(points):
        root, url = _build(name, backend, tmp_path, request, f"k{number}")
        before = _rows(url)
        crashed = cli("fix", "--yes", cwd=root, url=_url_for_cli(name, url),
                      env={CRASH_ENV: point}, timeout=300)
        assert crashed.code == -signal.SIGKILL, (point, crashed.output)
        assert Journal.load(root / ".alembic_repair") is not None
        assert_rows_kept(before, _rows(url))
        rerun = cli("fix", "--yes", cwd=root, url=_url_for_cli(name, url), timeout=300)
        assert rerun.code == 0, (point, rerun.output)
        assert_rows_kept(before, _rows(url))
        project = Project.discover(root, url=_url_for_cli(name, url))
        assert doctor(project).healthy, point
        assert Journal.load(project.state_dir) is None


def test_a_fix_journal_blocks_reset_and_rollback_undoes_reversible_steps(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root, url = _build("fm04_stray_file_in_versions", "sqlite", tmp_path, request)
    files = tree_digest(root)
    crashed = cli("fix", "--yes", cwd=root, url=url, env={CRASH_ENV: "1.move"})
    assert crashed.code == -signal.SIGKILL
    assert not (root / "alembic" / "versions" / "helpers.py").exists()
    blocked = cli("reset", "--yes", cwd=root, url=url)
    assert blocked.code == 1 and "fix --yes" in blocked.stderr
    undone = cli("fix", "--rollback", "--yes", cwd=root, url=url)
    assert undone.code == 1, undone.output  # rolled back: the stray file is a finding again
    assert {k: v for k, v in tree_digest(root).items() if not k.startswith(".alembic_repair")
            } == files
    assert Journal.load(root / ".alembic_repair") is None


def test_an_empty_revision_no_database_applied_is_moved_out(tmp_path: Path,
                                                             request: pytest.FixtureRequest
                                                             ) -> None:
    from alembic_repair.testing.scenarios import revision_py

    root, url = _build("healthy", "sqlite", tmp_path, request)
    versions = root / "alembic" / "versions"
    head = next(p for p in versions.glob("ccc333_*.py"))
    empty = versions / "eee555_sync_models.py"
    empty.write_text(revision_py("eee555", "ccc333", "sync models", "pass", "pass"))
    before = _rows(url)
    run = cli("fix", "--yes", cwd=root, url=url)
    assert run.code == 0, run.output
    assert not empty.exists() and head.exists()
    kept = list((root / ".alembic_repair" / "backups").glob(
        "*-fix/project-files/alembic/versions/eee555_sync_models.py"))
    assert len(kept) == 1
    assert_rows_kept(before, _rows(url))


@pytest.mark.parametrize("only", ["AR407", "AR4xx"])
def test_fix_only_ar407_clears_sqlite_junk_values_and_keeps_them(
        only: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root, url = _build("fm45_sqlite_junk_values", "sqlite", tmp_path, request)
    before = _rows(url)
    assert "yesterday" in [r["created_at"] for r in before["post"]]
    assert "abc" in [r["views"] for r in before["post"]]

    run = cli("fix", "--only", only, "--yes", cwd=root, url=url)

    # created_at is nullable: cleared. views is NOT NULL: left, with what to do.
    assert run.code == 1, run.output
    assert "left  AR407 post.views" in run.stdout and "NOT NULL" in run.stdout
    after = _rows(url)
    assert "yesterday" not in [r["created_at"] for r in after["post"]]
    assert [r["views"] for r in after["post"]] == [r["views"] for r in before["post"]]
    untouched = [{k: v for k, v in r.items() if k != "created_at"} for r in before["post"]]
    assert [{k: v for k, v in r.items() if k != "created_at"} for r in after["post"]] == \
        untouched
    (log,) = (root / ".alembic_repair" / "backups").glob("*-fix/cleared-values.jsonl")
    cleared = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c["column"], c["value"]) for c in cleared] == [("created_at", "yesterday")]
    assert oct(log.stat().st_mode & 0o777) == "0o600"
