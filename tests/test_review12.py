"""Issue 12's review (docs/design.md): each defect it found, mended, stays mended.

1. tables env.py's include_object excludes leave the history comparison (replay snapshots and
   locate) as they leave the live schema: no AR401 on a healthy database, no false location;
3. raw SQL is data-only only when it starts (after comments) with a data word;
4. a version_table_schema env.py derives from its connection is not the scratch schema's;
8. a replayed snapshot match and the revisions' effects that disagree: refused, not stamped;
10. a revision's own ``except Exception`` cannot swallow "this needs a database";
12b. a dropped index is matched by (table, name), as MySQL names indexes per table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import state_builders as sb
import test_locate as tl
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import sqlite

from alembic_repair import Project, api
from alembic_repair.engine.state.config import version_table
from alembic_repair.engine.state.locate import Location
from alembic_repair.engine.state.pending import (
    UnreadableRevision,
    data_only,
    read_operations,
)
from alembic_repair.engine.state.read import _live_options
from alembic_repair.engine.state.recorder import VersionTable
from alembic_repair.repair.fix import plan_fix
from alembic_repair.testing.scenarios import (
    AUTHOR,
    AUTHOR_BEFORE_EMAIL,
    aaa111,
    create_all,
    execute,
    insert_rows,
    models_py,
    revision_py,
    upgrade,
    write_app,
    write_revisions,
    write_scaffold,
)

if TYPE_CHECKING:
    from conftest import Backend

# -- 1. include_object ---------------------------------------------------------------------

#: the common "ignore tables the models do not define" filter
IGNORE_UNMODELLED = ("def include_object(obj, name, type_, reflected, compare_to):\n"
                     "    return not (type_ == 'table' and reflected and compare_to is None)\n")
AUDIT = revision_py("bbb222", "aaa111", "audit", 'op.create_table("audit_log", '
                    'sa.Column("id", sa.Integer(), primary_key=True))',
                    'op.drop_table("audit_log")', date="2024-01-02 10:00:00.000000")


def filter_env(root: Path, function: str) -> None:
    """env.py's include_object becomes `function` (kept by our own block around it)."""
    env = root / "alembic" / "env.py"
    source = env.read_text()
    assert "include_object=_ar_include_object()," in source
    env.write_text(source.replace("def run_migrations_offline",
                                  f"{function}\n\ndef run_migrations_offline").replace(
        "include_object=_ar_include_object(),",
        "include_object=_ar_include_object(include_object),"))


def test_a_history_table_env_py_excludes_leaves_the_history_comparison(
        tmp_path: Path, backend: Backend) -> None:
    """audit_log: created by bbb222, excluded by env.py. At head, healthy: no AR401 saying
    the schema equals aaa111, and nothing to fix (was: stamp aaa111, CREATE TABLE again)."""
    root = tmp_path / "proj"
    root.mkdir()
    write_app(root, models_py(AUTHOR, None))
    write_scaffold(root, backend.url)
    write_revisions(root, {
        "aaa111_author.py": revision_py(
            "aaa111", None, "author", 'op.create_table("author", sa.Column("id", sa.Integer(), '
            'primary_key=True), sa.Column("name", sa.String(100), nullable=False), '
            'sa.Column("email", sa.String(200), nullable=True))', 'op.drop_table("author")'),
        "bbb222_audit.py": AUDIT})
    filter_env(root, IGNORE_UNMODELLED)
    upgrade(root, backend.url, "head")
    project = Project.discover(root, url=backend.url)

    report = api.doctor(project, use_cache=False)
    assert [f.code for f in report.findings] == [], [f.detail for f in report.findings]
    assert report.exit_code == 0
    assert plan_fix(Project.discover(root, url=backend.url)).as_dict()["steps"] == []


def test_a_kept_history_table_leaves_the_history_comparison(tmp_path: Path,
                                                            sqlite_url: str) -> None:
    """The same with ``ignore_tables = ["audit_log"]``: AR113 (env.py does not hide it from
    plain autogenerate yet), no AR401 (was: the schema equals aaa111)."""
    root = tmp_path / "proj"
    root.mkdir()
    write_app(root, models_py(AUTHOR, None))
    write_scaffold(root, sqlite_url)
    write_revisions(root, {"aaa111_author.py": aaa111(), "bbb222_audit.py": AUDIT})
    (root / "pyproject.toml").write_text('[tool.alembic_repair]\nignore_tables = ["audit_log"]\n')
    upgrade(root, sqlite_url, "head")

    found = {f.code for f in api.doctor(Project.discover(root, url=sqlite_url),
                                        use_cache=False).findings}
    assert "AR401" not in found and "AR405" not in found, found


def test_an_excluded_history_table_is_not_used_to_locate(tmp_path: Path, sqlite_url: str
                                                          ) -> None:
    """The replay stops at ccc333; hhh888 creates audit_log, which env.py excludes. The row is
    lost at hhh888: without audit_log, eee555 and hhh888 look alike, a range (was: exactly
    eee555, and fix ran hhh888's CREATE TABLE on a database that had it)."""
    root = tmp_path / "proj"
    root.mkdir()
    files = tl.history()
    files["hhh888_audit.py"] = revision_py(
        "hhh888", "eee555", "audit log", 'op.create_table("audit_log", sa.Column("id", '
        'sa.Integer(), primary_key=True))', 'op.drop_table("audit_log")',
        date="2024-03-10 10:00:00.000000")
    write_app(root, models_py(AUTHOR_BEFORE_EMAIL))
    create_all(root, sqlite_url)
    insert_rows(sqlite_url, email=False)
    (root / "app" / "models.py").write_text(models_py(AUTHOR, tl.POST_AT_HEAD))
    write_scaffold(root, sqlite_url)
    write_revisions(root, files)
    filter_env(root, IGNORE_UNMODELLED)
    upgrade(root, sqlite_url, "head")
    execute(sqlite_url, "DELETE FROM alembic_version")

    said = tl.doctor(root, sqlite_url)["AR306"]
    assert "somewhere in eee555 .. hhh888" in said and "at revision eee555" not in said, said
    steps = plan_fix(Project.discover(root, url=sqlite_url)).as_dict()["steps"]
    assert not any(s["kind"] == "stamp" for s in steps), steps


# -- 3. raw SQL ------------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "data"), [
    ("UPDATE post SET views = views", True),
    ("/* tidy */ DELETE FROM post", True),
    ("-- seed\nINSERT INTO author (name) VALUES ('system');", True),
    ("WITH x AS (SELECT 1) DELETE FROM post", True),
    ("-- legacy is gone\nALTER TABLE post DROP COLUMN legacy", False),
    ("/* c */ DROP TABLE post", False),
    ("/*!40101 ALTER TABLE post ENGINE=InnoDB */", False),  # MySQL runs this "comment"
    ("SET foreign_key_checks = 0; DELETE FROM post", False),
    ("UPDATE post SET views = 0; ALTER TABLE post DROP COLUMN views", False),
    ("CALL tidy()", False),
    ("", False),
])
def test_raw_sql_is_data_only_only_when_each_statement_starts_with_a_data_word(
        sql: str, data: bool) -> None:
    assert data_only(sql) is data


def test_ddl_behind_a_comment_widens_the_location(tmp_path: Path) -> None:
    """b2 drops a1's column in raw SQL behind a comment: not data only, so unreadable (was:
    read as changing nothing, placing the database exactly before the first revision)."""
    history = [("a1", None, 'op.add_column("item", sa.Column("price", sa.Integer()))'),
               ("b2", "a1", 'op.execute("-- price is gone\\nALTER TABLE item DROP COLUMN '
                            'price")')]
    place = tl.located(tmp_path, history, [tl.APP])
    assert place is not None and place.revisions == ("base", "b2"), place
    assert place.unreadable == ("b2",) and place.exact is None


# -- 4. the version table's schema --------------------------------------------------------


def test_a_scratch_schema_name_is_never_remembered_as_the_version_tables() -> None:
    scratch = "_ar_replay_20261206T140709_1e1c42d2"
    assert _live_options({"version_table_schema": scratch}, {})["version_table_schema"] is None
    assert _live_options({"version_table_schema": scratch}, {"version_table_schema": "app"}
                         )["version_table_schema"] == "app"
    kept = _live_options({"version_table": "v", "version_table_schema": "audit"}, {})
    assert kept == {"version_table": "v", "version_table_schema": "audit"}


@pytest.mark.mariadb
def test_a_version_table_schema_from_the_connection_names_the_live_database(
        mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """env.py passes ``version_table_schema=connection.engine.url.database``: the scratch
    schema's name in the replay. Healthy at head: no AR301 (was: alembic_version looked for
    in the dropped scratch schema)."""
    from test_replay_env import FIRST, make_project

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    project = make_project(tmp_path / "p", mariadb_url, {"a1": FIRST},
                           options=", version_table_schema=connection.engine.url.database")
    config = Config(str(project.ini_path))
    config.set_main_option("sqlalchemy.url", mariadb_url.replace("%", "%%"))
    command.upgrade(config, "head")

    report = api.doctor(project, use_cache=False)
    assert "AR301" not in {f.code for f in report.findings}, [f.detail for f in report.findings]
    schema = version_table(project)[1]
    assert schema is None or not schema.startswith("_ar_"), schema


# -- 8. a snapshot match beside effects that disagree ---------------------------------------


def disputed(recorded: tuple[str, ...], *, stop: str = sb.B
             ) -> tuple[dict[str, str], list[str], list[str]]:
    """aaa111 -> bbb222 -> ccc333, the replay stopped at `stop`; the tables equal aaa111's
    snapshot, the effects (misread) place them at ccc333."""
    at_a, at_b = sb.schema(sb.AUTHOR), sb.schema(sb.AUTHOR, sb.POST)
    snapshots = {sb.A: at_a} if stop == sb.B else {sb.A: at_a, sb.B: at_b}
    state = sb.healthy(scripts=sb.chain(sb.A, sb.B, sb.C), live=at_a,
                       versions=VersionTable(True, recorded, 32, True),
                       replay_=sb.replay(snapshots, failed_at=stop, error="no such table"),
                       location=Location((sb.C,), stopped_at=stop))
    return tl.planned(state)


@pytest.mark.parametrize(("recorded", "stop", "code"), [
    ((), sb.B, "AR306"), ((sb.A,), sb.B, "AR401"), ((sb.B,), sb.C, "AR401")],
    ids=["row-lost", "recorded-matches", "older-matches"])
def test_a_snapshot_match_the_effects_contradict_is_refused(
        recorded: tuple[str, ...], stop: str, code: str) -> None:
    found, steps, refused = disputed(recorded, stop=stop)
    assert "the two disagree" in found[code], found
    assert not any(step.startswith("stamp") for step in steps), steps
    assert [r for r in refused if r.startswith(f"{code}: no revision's effects fit")] != [], \
        refused


# -- 10. a revision's own `except Exception` --------------------------------------------------

GUARDED = """try:
    op.get_bind().execute(sa.text("SELECT legacy FROM item"))
    has = True
except Exception:
    has = False
if not has:
    op.add_column("item", sa.Column("legacy", sa.Integer()))"""


def test_a_guarded_get_bind_is_unreadable_not_unconditional(tmp_path: Path) -> None:
    history = [("a1", None, 'op.add_column("item", sa.Column("price", sa.Integer()))'),
               ("b2", "a1", GUARDED)]
    place = tl.located(tmp_path, history, [tl.APP, "ALTER TABLE item ADD COLUMN price INTEGER"])
    assert place is not None and place.revisions == ("a1", "b2"), place
    assert place.unreadable == ("b2",)

    class Module:
        __file__ = "b2.py"

        @staticmethod
        def upgrade() -> None:
            from alembic import op
            try:
                op.get_bind().execute("SELECT 1")
            except Exception:  # noqa: BLE001  (what revisions write)
                op.create_table("guessed")

    with pytest.raises(UnreadableRevision):
        read_operations(Module, "b2.py", sqlite.dialect())


# -- 12b. index names per table ---------------------------------------------------------------


def test_a_dropped_index_is_matched_on_its_own_table(tmp_path: Path) -> None:
    """Two tables each have an index ix_x (MySQL allows it); c3 drops table a's."""
    history = [("a1", None, 'op.create_table("a", sa.Column("id", sa.Integer(), '
                            'primary_key=True), sa.Column("x", sa.Integer()))\n'
                            'op.create_index("ix_x", "a", ["x"])'),
               ("b2", "a1", 'op.create_table("b", sa.Column("id", sa.Integer(), '
                            'primary_key=True), sa.Column("y", sa.Integer()))\n'
                            'op.create_index("ix_x", "b", ["y"])'),
               ("c3", "b2", 'op.drop_index("ix_x", table_name="a")')]
    place = tl.located(tmp_path, history, [
        "CREATE TABLE a (id INTEGER NOT NULL PRIMARY KEY, x INTEGER)",
        "CREATE TABLE b (id INTEGER NOT NULL PRIMARY KEY, y INTEGER)",
        "CREATE INDEX ix_b_y ON b (y)"])
    assert place is not None and place.exact == "c3", place
