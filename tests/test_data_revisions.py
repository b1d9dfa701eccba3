"""A pending data migration run by `fix`'s upgrade: its rows and values are the user's.

The runner's row check (repair/runner.py) proves that no repair step lost a row. When the
upgrade runs a revision that writes rows itself (``op.execute``, ``op.bulk_insert``, code that
asks for the connection), the new rows and changed values are what the user wrote: the check
then accepts them, and still fails a table that holds fewer rows than before (the backup holds
them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from helpers import cli
from sqlalchemy import create_engine, text

from alembic_repair.testing.scenarios.builders import (
    base_project,
    revision_py,
    write_revisions,
)

if TYPE_CHECKING:
    from conftest import Backend

FILE = "ddd444_data_migration.py"


def _build(root: Path, url: str, upgrade_body: str) -> None:
    """The base project at head with rows, and a pending data revision."""
    base_project(root, url)
    write_revisions(root, {FILE: revision_py(
        "ddd444", "ccc333", "data migration", upgrade_body, 'op.execute("SELECT 1")',
        date="2024-02-01 10:00:00.000000")})


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_fix_runs_a_data_migration_that_adds_and_changes_rows(backend: Backend,
                                                               tmp_path: Path) -> None:
    _build(tmp_path, backend.url,
           'op.execute("UPDATE post SET title = UPPER(title)")\n'
           'op.execute("INSERT INTO author (id, name, email) VALUES (99, \'new\', NULL)")')
    titles = [t.upper() for (t,) in _rows(backend.url, "SELECT title FROM post ORDER BY id")]
    done = cli("fix", "--yes", cwd=tmp_path, url=backend.url)
    assert done.code == 0, done.output
    assert _rows(backend.url, "SELECT version_num FROM alembic_version") == [("ddd444",)]
    assert [t for (t,) in _rows(backend.url, "SELECT title FROM post ORDER BY id")] == titles
    assert ("new",) in _rows(backend.url, "SELECT name FROM author WHERE id = 99")


def test_fix_fails_a_data_migration_that_loses_rows(backend: Backend, tmp_path: Path) -> None:
    _build(tmp_path, backend.url, 'op.execute("DELETE FROM post WHERE id = 1")')
    done = cli("fix", "--yes", cwd=tmp_path, url=backend.url)
    assert done.code != 0, done.output
    assert "table post held 3 rows and now holds 2" in done.output
    assert "Traceback" not in done.output


def test_the_check_is_exact_unless_a_data_migration_ran(tmp_path: Path) -> None:
    """Without a data migration a changed value fails the check; with one, only fewer rows
    do."""
    from alembic_repair.repair.runner import _check_rows, row_sums

    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
            conn.execute(text("INSERT INTO t VALUES (1, 'a'), (2, 'b')"))
            conn.commit()
            before = row_sums(conn, {"t": ["id", "v"]})
            conn.execute(text("UPDATE t SET v = 'c' WHERE id = 1"))
            conn.execute(text("INSERT INTO t VALUES (3, 'd')"))
            conn.commit()
            assert _check_rows(conn, before) == [
                "table t held 2 rows and now holds 3 (or their values changed)"]
            assert _check_rows(conn, before, values_may_change=True) == []
            conn.execute(text("DELETE FROM t WHERE id IN (2, 3)"))
            conn.commit()
            assert _check_rows(conn, before, values_may_change=True) == [
                "table t held 2 rows and now holds 1"]
    finally:
        engine.dispose()
