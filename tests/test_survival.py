"""The data-survival check (`testing.survival`): rows inserted at the released revision are
all there after the upgrade to head (and after the downgrade back), on SQLite and MariaDB."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from alembic_repair.engine.project import Project
from alembic_repair.engine.url import DatabaseUrl
from alembic_repair.testing.scenarios import builders
from alembic_repair.testing.survival import Loss, check_survival, normalise

Factory = Callable[[], AbstractContextManager[str]]

GOOD = '''
    op.create_table("tag", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("label", sa.String(length=40), nullable=True))
    op.add_column("author", sa.Column("nickname", sa.String(length=30), nullable=True))
'''
GOOD_DOWN = '''
    op.drop_column("author", "nickname")
    op.drop_table("tag")
'''
#: name -> (upgrade, downgrade, (table, what, downgrade?) expected, or None: no loss)
HISTORIES: dict[str, tuple[str, str, tuple[str, str, bool] | None]] = {
    "good": (GOOD, GOOD_DOWN, None),
    "deletes_rows": ('op.execute("DELETE FROM post")', "pass", ("post", " lost", False)),
    "changes_values": ('op.execute("UPDATE post SET views = views + 1")', "pass",
                       ("post", "column views:", False)),
    "drops_table": ('op.drop_table("post")', "pass", ("post", "table dropped", False)),
    "soft_drop": ('op.rename_table("post", "_ar_trash_20240101000000_post")',
                  'op.rename_table("_ar_trash_20240101000000_post", "post")', None),
    "renames_table": ('op.rename_table("post", "article")',
                      'op.rename_table("article", "post")', None),
    "widens_types": ('with op.batch_alter_table("post") as batch:\n'
                     '    batch.alter_column("views", type_=sa.BigInteger())\n'
                     '    batch.alter_column("title", type_=sa.Text())\n'
                     '    batch.alter_column("created_at", type_=sa.String(length=40))',
                     'pass', None),
    "downgrade_loses_rows": (
        'op.add_column("author", sa.Column("nickname", sa.String(length=30), nullable=True))',
        'op.execute("DELETE FROM post")\nop.drop_column("author", "nickname")',
        ("post", " lost", True)),
}


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory of fresh empty databases, as the plugin hands one to check_survival."""
    if request.param == "sqlite":
        @contextmanager
        def sqlite_db() -> Iterator[str]:
            path = tmp_path / f"scratch_{secrets.token_hex(4)}.db"
            try:
                yield f"sqlite:///{path}"
            finally:
                path.unlink(missing_ok=True)
        return sqlite_db
    server = request.getfixturevalue("mariadb_server")

    @contextmanager
    def mariadb_db() -> Iterator[str]:
        name = "s_" + secrets.token_hex(5)
        url = server.create_database(name)
        try:
            yield url
        finally:
            server.drop_database(name)
    return mariadb_db


def project_with(root: Path, upgrade: str, downgrade: str) -> Project:
    """The base project (author, post, author.email) plus revision ddd444."""
    url = f"sqlite:///{root / 'app.db'}"
    builders.write_app(root)
    builders.write_scaffold(root, url)
    files = builders.base_revisions()
    files["ddd444_under_review.py"] = builders.revision_py(
        "ddd444", "ccc333", "under review", upgrade, downgrade)
    builders.write_revisions(root, files)
    return Project(root=root, ini_path=root / "alembic.ini", script_location=root / "alembic",
                   url=DatabaseUrl(url), url_source="test", models=builders.MODELS_SPEC)


@pytest.mark.parametrize("name", list(HISTORIES))
def test_survival(name: str, scratch: Factory, tmp_path: Path) -> None:
    upgrade, downgrade, expected = HISTORIES[name]
    project = project_with(tmp_path / "project", upgrade, downgrade)
    losses = check_survival(project, scratch, released="ccc333", max_examples=2, seed=1,
                            shrink_runs=0)
    if expected is None:
        assert losses == ()
        return
    table, what, down = expected
    assert losses, f"{name}: no loss found"
    assert len({loss.line() for loss in losses}) == len(losses)
    loss = losses[0]
    assert (loss.table, loss.revision_from, loss.revision_to, loss.downgrade) == (
        table, "ccc333", "ddd444", down)
    assert what in loss.what and loss.before > 0
    line = loss.line()
    assert line.startswith(f"table {table}: {loss.before} row") and "at ccc333 (released), " in line
    assert ("downgrading back" in line) == down


def test_released_base_needs_no_database(tmp_path: Path) -> None:
    project = project_with(tmp_path, "pass", "pass")

    def never() -> AbstractContextManager[str]:
        raise AssertionError("no database is needed when nothing was released")
    assert check_survival(project, never, released="base") == ()


def test_loss_line() -> None:
    loss = Loss("user", "a1b2c3", "d4e5f6", 5, 3, "2 rows lost")
    assert loss.line() == ("table user: 5 rows at a1b2c3 (released), 3 after upgrading to "
                           "d4e5f6 (head): 2 rows lost")
    one = Loss("post", "a1", "d4", 1, 1, "column views: 1 value changed", downgrade=True)
    assert one.line() == ("table post: 1 row at a1 (released), 1 after upgrading to d4 (head) "
                          "and downgrading back: column views: 1 value changed")


def test_normalise_survives_type_round_trips() -> None:
    assert normalise(True) == normalise(1) == normalise("1") == normalise(Decimal("1.00"))
    assert normalise(1.5) == normalise(Decimal("1.50")) == normalise("1.5")
    assert normalise(datetime(2024, 1, 2, 3, 4, 5)) == normalise("2024-01-02 03:04:05.000000")
    assert normalise(date(2024, 1, 2)) == normalise("2024-01-02")
    assert normalise(None) != normalise("") and normalise(b"a") != normalise("a")


def test_shrinks_within_its_budget(tmp_path: Path) -> None:
    """With shrinking on, the failure is still reported, from at most max_examples +
    shrink_runs databases."""
    made: list[str] = []

    @contextmanager
    def counted() -> Iterator[str]:
        made.append(str(tmp_path / f"s{len(made)}.db"))
        yield f"sqlite:///{made[-1]}"
    upgrade, downgrade, _ = HISTORIES["changes_values"]
    project = project_with(tmp_path / "project", upgrade, downgrade)
    losses = check_survival(project, counted, released="ccc333", max_examples=2, seed=3,
                            shrink_runs=1)
    assert losses and losses[0].what.startswith("column views: ")
    assert 1 <= len(made) <= 3


def test_upgrade_failing_on_rows_is_a_loss(tmp_path: Path, scratch: Factory) -> None:
    """A pending revision that fails once rows are there (its data migration copies rows
    onto existing keys) is reported as such, with the database's own reason."""
    project = project_with(
        tmp_path / "project",
        'op.execute("INSERT INTO author (id, name) SELECT id, name FROM author")', "pass")
    losses = check_survival(project, scratch, released="ccc333", max_examples=1, seed=0,
                            shrink_runs=0)
    assert len(losses) == 1 and losses[0].table == ""
    assert losses[0].line().startswith("the database: ")
    assert "the upgrade fails with these rows: " in losses[0].what
    assert "ddd444" in losses[0].what, losses[0].what  # the revision file that failed


def test_forked_migrations_in_a_single_threaded_process(tmp_path: Path) -> None:
    """A plain pytest run has one thread: the migrations run in forked children (this test
    process has xdist's threads, so the check runs in a fresh interpreter here)."""
    upgrade, downgrade, _ = HISTORIES["deletes_rows"]
    root = tmp_path / "project"
    project_with(root, upgrade, downgrade)
    script = f'''
import sys, threading
from contextlib import contextmanager
from alembic_repair.engine.project import Project
from alembic_repair.testing import survival, through_env
root = {str(root)!r}
project = Project.discover(root, url="sqlite:///" + root + "/app.db")
@contextmanager
def fresh():
    yield "sqlite:///" + root + "/scratch.db"
losses = survival.check_survival(project, fresh, released="ccc333", max_examples=1,
                                 seed=0, shrink_runs=0)
assert threading.active_count() == 1 and through_env.FORK and "app" not in sys.modules
print(losses[0].line())
'''
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ("table post: 1 row at ccc333 (released), 0 after upgrading "
                                   "to ddd444 (head): 1 row lost")


def test_env_py_connecting_elsewhere_runs_nothing(tmp_path: Path) -> None:
    """An env.py that ignores the scratch URL (its own hard-coded database) is refused before
    any revision runs: the other database stays empty."""
    import sqlalchemy as sa

    from alembic_repair.errors import RefusedUnsafe
    from alembic_repair.testing.through_env import migrate

    root = tmp_path / "project"
    project = project_with(root, "pass", "pass")
    elsewhere = tmp_path / "live.db"
    builders.edit(root / "alembic" / "env.py", "def database_url():\n",
                  f"def database_url():\n    return {f'sqlite:///{elsewhere}'!r}\n")
    with pytest.raises(RefusedUnsafe, match="another database than the scratch database"):
        migrate(project, f"sqlite:///{tmp_path / 'scratch.db'}", "ccc333")
    engine = sa.create_engine(f"sqlite:///{elsewhere}")
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_upgrade_failing_on_an_empty_database_is_a_build_failure(tmp_path: Path,
                                                                 scratch: Factory) -> None:
    """The upgrade fails without any row too: the history does not build, no loss to blame on
    the rows."""
    from alembic_repair.testing.survival import BuildFailed

    project = project_with(tmp_path / "project", 'op.drop_column("author", "nickname")', "pass")
    with pytest.raises(BuildFailed) as failed:
        check_survival(project, scratch, released="ccc333", max_examples=1, seed=0,
                       shrink_runs=0)
    line = str(failed.value)
    assert line.startswith("the upgrade to ddd444 fails even on an empty database "
                           "(whatever the rows): "), line
    assert "ddd444" in line.partition("rows): ")[2] and "\n" not in line
