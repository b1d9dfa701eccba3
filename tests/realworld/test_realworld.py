"""Published packages' Alembic histories (optuna, MLflow, JupyterHub; pinned in
requirements/), each on SQLite and MariaDB, built the way the application builds a new
database, then doctor and fix run by the venv's own ``alembic-repair``.

What issue 12 demands of real histories: a fresh database gets no error and no warning except
model drift that ``alembic check`` reports too; a lost, unknown or older version row is fixed to
the original head with every row kept, nothing re-run and ``versions/`` unchanged, after which
plain ``alembic upgrade head`` has nothing to do; a half-applied revision is finished or refused
with no row lost.
"""

from __future__ import annotations

import json
import re

import pytest
from realworld_projects import (
    BACKENDS,
    HISTORIES,
    History,
    Project,
    execute,
    rows_digest,
    schema_digest,
    table_columns,
    tree_hashes,
    version_rows,
)

pytestmark = pytest.mark.realworld

by_history = pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.name)
by_backend = pytest.mark.parametrize("backend", BACKENDS)


def _in_check(table: str, check_output: str) -> bool:
    """Whether `alembic check`'s list of operations names `table` (``'t'`` or ``<t>``)."""
    return re.search(rf"['<]{re.escape(table)}['>]", check_output) is not None


def unexplained_findings(project: Project) -> list[str]:
    """doctor's errors and warnings but model drift (AR403) on a table that ``alembic check``,
    run in the same project, reports too."""
    doctor = project.repair("doctor", "--format", "json")
    try:
        report = json.loads(doctor.stdout)  # standard output holds the JSON alone
    except json.JSONDecodeError:
        pytest.fail(f"doctor's stdout is not JSON, {doctor.brief()}\nstdout: "
                    f"{doctor.stdout[:500]!r}")
    check = project.alembic("check")
    unexplained = [
        f"{f['code']} {f['severity']} {f.get('location')}: {f.get('detail')}"
        for f in report["findings"]
        if f["severity"] in ("error", "warning")
        and not (f["code"] == "AR403" and _in_check(str(f.get("location")), check.output))
    ]
    if unexplained:
        unexplained.append(f"--- alembic check: {check.brief()}")
    return unexplained


@by_history
@by_backend
def test_fresh_database_gets_no_error_or_warning_but_drift_alembic_check_reports(
        history: History, backend: str, fresh_factory) -> None:
    fresh = fresh_factory(history, backend)
    unexplained = unexplained_findings(fresh.project)
    assert not unexplained, (f"doctor on a fresh {history.name} database ({backend}):\n"
                             + "\n".join(unexplained))
    assert version_rows(fresh.project.url) == [fresh.head]  # doctor changed nothing


def _delete_row(project: Project) -> None:
    execute(project.url, "DELETE FROM alembic_version")


def _unknown_id(project: Project) -> None:
    execute(project.url, "UPDATE alembic_version SET version_num = 'fe11c0ffee00'")


def _older_stamp(project: Project) -> None:
    done = project.alembic("stamp", project.history.older)
    assert done.code == 0, done.brief()
    assert version_rows(project.url) == [project.history.older]


BREAKAGES = {"deleted_row": _delete_row, "unknown_id": _unknown_id, "older_stamp": _older_stamp}


@by_history
@by_backend
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_version_row_is_fixed_to_head_keeping_every_row(
        history: History, backend: str, breakage: str, fresh_factory) -> None:
    fresh = fresh_factory(history, backend)
    project = fresh.project
    execute(project.url, *history.rows)
    rows, schema = rows_digest(project.url), schema_digest(project.url)
    files = tree_hashes(project.versions)
    assert all(rows[t][0] > 0 for t in _inserted(history)), "the rows were not inserted"

    BREAKAGES[breakage](project)
    fix = project.repair("fix", "--yes")

    # Exit 1 is "problems remain": allowed only for what a fresh database reports too.
    assert fix.code in (0, 1), f"fix ({breakage}, {history.name}, {backend}): {fix.brief()}"
    assert version_rows(project.url) == [fresh.head], fix.brief()
    assert rows_digest(project.url) == rows, "rows changed"
    assert schema_digest(project.url) == schema, "the schema changed: something was re-run"
    assert tree_hashes(project.versions) == files, "versions/ changed"

    upgrade = project.alembic("upgrade", "head")
    assert upgrade.code == 0, upgrade.brief()
    assert version_rows(project.url) == [fresh.head]
    assert schema_digest(project.url) == schema and rows_digest(project.url) == rows, (
        "alembic upgrade head after fix was not a no-op")
    if fix.code == 1:
        remaining = unexplained_findings(project)
        assert not remaining, f"after fix: {fix.brief()}\n" + "\n".join(remaining)


def _inserted(history: History) -> list[str]:
    return [re.match(r"INSERT INTO (\w+)", sql).group(1) for sql in history.rows]  # type: ignore


FIRST_OPERATION = """\
from sqlalchemy import create_engine
from alembic.migration import MigrationContext
from alembic.operations import Operations
engine = create_engine(URL)
with engine.begin() as conn:
    op = Operations(MigrationContext.configure(conn))
    {operation}
engine.dispose()
"""


@pytest.mark.mariadb
@pytest.mark.parametrize("history", [h for h in HISTORIES if h.half_applied],
                         ids=lambda h: h.name)
def test_half_applied_head_revision_is_finished_or_refused_without_losing_rows(
        history: History, fresh_factory) -> None:
    fresh = fresh_factory(history, "mariadb")
    project = fresh.project
    parent, operation = history.half_applied  # type: ignore[misc]
    at_head = schema_digest(project.url)
    down = project.alembic("downgrade", parent)
    assert down.code == 0, down.brief()
    execute(project.url, *history.rows)
    at_parent = schema_digest(project.url)
    # The head revision's first operation by hand (MariaDB's DDL commits at once), the version
    # row still at the parent: what a deploy killed inside the revision leaves.
    done = project.python(FIRST_OPERATION.format(operation=operation))
    assert done.code == 0, done.brief()
    half = schema_digest(project.url)
    assert half not in (at_head, at_parent), "the first operation changed nothing"
    assert version_rows(project.url) == [parent]
    columns = table_columns(project.url)
    rows, files = rows_digest(project.url, columns), tree_hashes(project.versions)

    fix = project.repair("fix", "--yes")

    assert rows_digest(project.url, columns) == rows, f"rows lost or changed, {fix.brief()}"
    assert tree_hashes(project.versions) == files, "versions/ changed"
    print(f"half-applied {history.name}: fix {fix.brief()}")  # shown by -rP: which way
    if fix.code == 0:  # finished
        assert version_rows(project.url) == [fresh.head], fix.brief()
        assert schema_digest(project.url) == at_head, f"not the head's schema, {fix.brief()}"
    else:  # refused: one readable line, nothing changed
        assert "Traceback" not in fix.output and fix.code != 70, fix.brief()
        assert schema_digest(project.url) == half, f"refused but changed, {fix.brief()}"
        assert version_rows(project.url) == [parent], fix.brief()
