"""The runner's row check (repair/row_check.py; issue 14, item 4).

On MySQL/MariaDB a table no step rewrites nor alters is summed by ``CHECKSUM TABLE`` (with its
column definitions), the others by `server_checksum` over the columns no step rewrites. A table
whose definitions changed behind a step's declaration fails the check; a value changed behind
the runner's back in an unaltered table is caught; a resumed run reuses the sums taken before
its first step; SQLite keeps its streamed checksums.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import cli, execute
from sqlalchemy import create_engine

from alembic_repair import Project
from alembic_repair import fix as run_fix
from alembic_repair.data.backups import checksums
from alembic_repair.errors import MigrationFailed
from alembic_repair.repair import runner
from alembic_repair.repair.journal import CRASH_ENV, Journal
from alembic_repair.repair.row_check import FAST, check_rows, row_sums, tables_to_sum
from alembic_repair.repair.steps import (
    Context,
    FillCommitted,
    Stamp,
    Step,
    Upgrade,
    register,
)
from alembic_repair.repair.steps.schema import CompleteRevision
from alembic_repair.testing.scenarios.builders import base_project, revision_py, write_revisions

FILE = "ddd444_pending.py"
ADD_COLUMN = "op.add_column('post', sa.Column('extra', sa.String(10)))"


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(CRASH_ENV, raising=False)


def _build(root: Path, url: str, upgrade_body: str) -> None:
    """The base project at head with rows (author, post), and one pending revision."""
    base_project(root, url)
    write_revisions(root, {FILE: revision_py(
        "ddd444", "ccc333", "pending", upgrade_body, "pass", date="2024-02-01 10:00:00.000000")})


def _recording(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """A spy that records which tables `checksums.<name>` summed, and still sums them."""
    seen: list[str] = []
    real = getattr(checksums, name)

    def recorded(conn: object, table: str, *args: object, **kwargs: object) -> object:
        seen.append(table)
        return real(conn, table, *args, **kwargs)

    monkeypatch.setattr(checksums, name, recorded)
    return seen


# -- which tables a step may alter -------------------------------------------------------------


def test_an_upgrade_alters_the_tables_its_pending_revisions_name(tmp_path: Path,
                                                                 sqlite_url: str) -> None:
    _build(tmp_path, sqlite_url, f"{ADD_COLUMN}\nop.create_index('ix_author_name', 'author', "
           "['name'])")
    project = Project.discover(tmp_path, url=sqlite_url)
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            ctx = Context(project, conn, tmp_path / "folder")
            assert Upgrade().alters(ctx) == frozenset({"post"})  # an index keeps the columns
            assert CompleteRevision("ddd444", ()).alters(ctx) == frozenset({"post"})
            (tmp_path / "alembic" / "versions" / FILE).write_text(revision_py(
                "ddd444", "ccc333", "pending", f"{ADD_COLUMN}\nop.execute('UPDATE author "
                "SET name = name')", "pass"), encoding="utf-8")
            assert Upgrade().alters(ctx) is None  # its own SQL: any table
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_an_upgrade_after_a_restamp_cannot_tell_so_every_table_is_summed_per_row(
        tmp_path: Path, mariadb_url: str) -> None:
    """Its pending revisions are read before the run: a stamp before it changes them."""
    _build(tmp_path, mariadb_url, ADD_COLUMN)
    project = Project.discover(tmp_path, url=mariadb_url)
    engine = create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            ctx = Context(project, conn, tmp_path / "folder")
            assert tables_to_sum(conn, (Upgrade(),), ctx)[1] == {"author"}
            restamp = Stamp(("bbb222",), ("ccc333",))
            assert tables_to_sum(conn, (restamp, Upgrade()), ctx)[1] == frozenset()
            fill = FillCommitted("ddd444", f"alembic/versions/{FILE}", "post", "extra")
            assert tables_to_sum(conn, (fill, CompleteRevision("ddd444", ())), ctx)[1] == {
                "author"}
    finally:
        engine.dispose()


# -- end to end on MariaDB -------------------------------------------------------------------


@pytest.mark.mariadb
def test_fix_sums_a_table_no_step_alters_by_checksum_table(
        tmp_path: Path, mariadb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _build(tmp_path, mariadb_url, ADD_COLUMN)
    fast = _recording(monkeypatch, "table_checksum_sql")
    slow = _recording(monkeypatch, "server_checksum")
    done = run_fix(Project.discover(tmp_path, url=mariadb_url), yes=True)
    assert done is not None
    # author: before and after by CHECKSUM TABLE (and once more by the backup, if it uses it);
    # post, whose columns the upgrade alters: by the per-row server checksum, twice
    assert fast.count("author") >= 2 and "post" not in fast, fast
    assert slow.count("post") == 2 and "author" not in slow, slow


@dataclass(frozen=True)
class _SilentAlter(Step):
    """A step that alters a table it does not declare (`alters` says none)."""

    kind: ClassVar[str] = "test-silent-alter"
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    sql: str = ""
    rewritten: tuple[str, ...] = ()

    def describe(self) -> str:
        return "a test step"

    def alters(self, ctx: Context) -> frozenset[str] | None:
        return frozenset()

    def rewrites(self) -> tuple[tuple[str, str], ...]:
        return tuple((r.split(".")[0], r.split(".")[1]) for r in self.rewritten)

    def apply(self, ctx: Context) -> None:
        ctx.conn.exec_driver_sql(self.sql)


register(_SilentAlter)


def _run(root: Path, url: str, step: Step) -> Journal:
    """`step` through the runner, with the row check (no backup: the test needs none)."""
    project = Project.discover(root, url=url)
    journal = runner.begin(project, runner.Run("fix", (step,)), root / "folder")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return runner.execute(project, conn, journal, Context(project, conn, root / "folder"))
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_a_step_that_alters_a_table_it_did_not_declare_fails_the_check(
        tmp_path: Path, mariadb_url: str) -> None:
    base_project(tmp_path, mariadb_url)
    step = _SilentAlter(sql="ALTER TABLE author MODIFY name VARCHAR(300)")
    with pytest.raises(MigrationFailed, match=r"fix: table author: its column definitions "
                       r"changed although no step of the run said it would .*the backup is"):
        _run(tmp_path, mariadb_url, step)


@pytest.mark.mariadb
def test_a_rewritten_column_is_left_out_and_the_rest_summed_per_row(
        tmp_path: Path, mariadb_url: str) -> None:
    base_project(tmp_path, mariadb_url)
    step = _SilentAlter(sql="UPDATE post SET title = CONCAT(title, '!')",
                        rewritten=("post.title",))
    journal = _run(tmp_path, mariadb_url, step)
    rows = journal.context["rows"]
    assert "title" not in rows["post"]["columns"] and "id" in rows["post"]["columns"]
    assert checksums.kind_of(rows["post"]["checksum"]) in ("crc64c", "md5sum64")
    assert rows["author"]["checksum"].startswith(FAST) and rows["author"]["signature"]
    assert "signature" not in rows["post"]


@pytest.mark.mariadb
def test_checksum_table_catches_a_value_changed_behind_the_runners_back(
        tmp_path: Path, mariadb_url: str) -> None:
    base_project(tmp_path, mariadb_url)
    engine = create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            before = row_sums(conn, {"author": checksums.table_columns(conn, "author")},
                              fast={"author"})
            assert str(before["author"]["checksum"]).startswith(FAST)
            assert check_rows(conn, before) == []
            conn.exec_driver_sql("UPDATE author SET name = CONCAT(name, 'x') WHERE id = 1")
            conn.commit()
            rows = before["author"]["rows"]
            assert check_rows(conn, before) == [
                f"table author held {rows} rows and now holds {rows} (or their values changed)"]
            assert check_rows(conn, before, values_may_change=True) == []
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_a_journal_without_signatures_is_still_checked(tmp_path: Path, mariadb_url: str) -> None:
    """The `rows` note of a run begun by an earlier version: md5sum64 checksums only."""
    base_project(tmp_path, mariadb_url)
    engine = create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            columns = checksums.table_columns(conn, "post")
            found = checksums.server_checksum(conn, "post", columns)
            before = json.loads(json.dumps({"post": {
                "columns": columns, "rows": found.rows, "checksum": found.checksum}}))
            assert check_rows(conn, before) == []
            conn.exec_driver_sql("DELETE FROM post WHERE id = (SELECT MIN(id) FROM post)")
            conn.commit()
            assert check_rows(conn, before) == [
                f"table post held {found.rows} rows and now holds {found.rows - 1} "
                "(or their values changed)"]
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_a_resumed_fix_reuses_the_sums_taken_before_its_first_step(
        tmp_path: Path, mariadb_url: str) -> None:
    _build(tmp_path, mariadb_url, ADD_COLUMN)
    crashed = cli("fix", "--yes", cwd=tmp_path, url=mariadb_url,
                  env={CRASH_ENV: "upgrade.started"})
    assert crashed.code == -signal.SIGKILL, crashed.output
    journal = Journal.load(tmp_path / ".alembic_repair")
    assert journal is not None
    rows = journal.context["rows"]
    assert rows["author"]["checksum"].startswith(FAST), rows
    assert not rows["post"]["checksum"].startswith(FAST), rows
    # behind the runner's back, in a table no step touches: the resumed run must see it
    execute(mariadb_url, "UPDATE author SET name = CONCAT(name, 'x') WHERE id = 1")

    again = cli("fix", "--yes", cwd=tmp_path, url=mariadb_url)

    assert again.code != 0, again.output
    assert "table author held" in again.output and "(or their values changed)" in again.output
    assert "Traceback" not in again.output
