"""`testing.through_env`: Alembic through the project's env.py on a scratch database, guarded so
that no statement reaches another database, forked where the process has one thread.

(The pytest plugin's and the data-survival check's own tests run it too: an env.py with a
hard-coded database in tests/test_pytest_plugin.py and tests/test_survival.py.)
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from alembic_repair.engine.project import Project
from alembic_repair.testing.mariadb import MariaDBServer
from alembic_repair.testing.scenarios import builders as b
from alembic_repair.testing.through_env import Elsewhere, migrate

RUN_WITH = "def run_with(connection):\n"


def project_at(root: Path, extra: dict[str, str] | None = None) -> Project:
    b.write_app(root)
    b.write_scaffold(root, "sqlite:///app.db")
    b.write_revisions(root, {**b.base_revisions(), **(extra or {})})
    return Project.discover(root, url="sqlite://")


def tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_env_py_swallowing_the_stop_runs_nothing_elsewhere(tmp_path: Path) -> None:
    """The stop is a BaseException: an env.py that catches Exception around its own database
    still gets nothing run there, and the run is refused."""
    root = tmp_path / "project"
    project = project_at(root)
    live = tmp_path / "live.db"
    b.edit(root / "alembic" / "env.py", RUN_WITH, RUN_WITH + (
        "    try:\n"
        f"        with create_engine({f'sqlite:///{live}'!r}).connect() as other:\n"
        "            other.exec_driver_sql('CREATE TABLE hijacked (id INTEGER)')\n"
        "    except Exception:\n"
        "        pass\n"))
    scratch = f"sqlite:///{tmp_path / 'scratch.db'}"
    with pytest.raises(Elsewhere) as refused:
        migrate(project, scratch, "heads")
    assert refused.value.line == (f"env.py connected to sqlite:///{live}, not the scratch "
                                  "database (nothing ran there)")
    assert tables(f"sqlite:///{live}") == []


@pytest.mark.mariadb
@pytest.mark.parametrize("how", ["use", "version_table_schema"])
def test_another_schema_is_stopped(tmp_path: Path, mariadb_url: str,
                                   mariadb_server: MariaDBServer, how: str) -> None:
    """Same server, same connection, another schema (after ``USE``, or alembic_version kept
    there): stopped before the statement that would have run there."""
    other = "t_other_" + secrets.token_hex(4)
    mariadb_server.create_database(other)
    try:
        root = tmp_path / "project"
        project = project_at(root)
        if how == "use":
            b.edit(root / "alembic" / "env.py", RUN_WITH,
                   RUN_WITH + f"    connection.exec_driver_sql('USE `{other}`')\n")
        else:
            b.edit(root / "alembic" / "env.py", "configure(connection=connection, ",
                   f"configure(connection=connection, version_table_schema={other!r}, ")
        with pytest.raises(Elsewhere, match="not the scratch database"):
            migrate(project, mariadb_url, "heads")
        assert tables(f"{mariadb_server.root_url}/{other}") == []
        assert "author" not in tables(mariadb_url)
    finally:
        mariadb_server.drop_database(other)


APP_DB = '''
import os
from sqlalchemy import create_engine
engine = create_engine(os.environ["DATABASE_URL"])  # read at import, as many apps do
'''

FORKED = '''
import os, sys, threading
from alembic_repair.engine.project import Project
from alembic_repair.testing import through_env
root, live, scratch, again = sys.argv[1:5]
os.environ["DATABASE_URL"] = live
sys.path.insert(0, root)
import app.db  # the caller's tests imported the application under the real URL
project = Project.discover(root, url="sqlite://")
assert threading.active_count() == 1 and through_env.FORK
through_env.migrate(project, scratch, "heads")
print("check", through_env.check(project, scratch))
try:
    through_env.migrate(project, scratch, "ccc333", down=True)
except through_env.Irreversible as err:
    print("irreversible", str(err).partition("; ")[0])
through_env.FORK = False  # in process the caller's app.db (the live URL) is what env.py gets
try:
    through_env.migrate(project, again, "heads")
except through_env.Elsewhere as err:
    print("in process:", err.line)
'''


def test_forked_run_imports_the_app_under_the_scratch_url(tmp_path: Path) -> None:
    """An application whose engine reads DATABASE_URL at import, used by env.py: forked, the
    app is imported afresh under the scratch URL (the live database is never touched); the
    result of `alembic check` and a downgrade() that raises NotImplementedError come back
    from the child as values and errors of their own class."""
    root = tmp_path / "project"
    project_at(root, {"ddd444_next.py": b.revision_py(
        "ddd444", "ccc333", "next", 'op.execute("UPDATE author SET name = name")',
        'raise NotImplementedError("irreversible")')})
    (root / "app" / "db.py").write_text(APP_DB, encoding="utf-8")
    b.edit(root / "alembic" / "env.py", '    engine = create_engine(database_url(), '
           'poolclass=pool.NullPool)\n', "    from app.db import engine\n")
    b.edit(root / "alembic" / "env.py", 'connection = config.attributes.get("connection")',
           "connection = None")
    live, scratch, again = (f"sqlite:///{tmp_path / name}.db" for name in
                            ("live", "scratch", "again"))
    done = subprocess.run([sys.executable, "-c", FORKED, str(root), live, scratch, again],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "check ()",
        "irreversible alembic/versions/ddd444_next.py:28: downgrade to ccc333 failed: "
        "NotImplementedError: irreversible",
        f"in process: env.py connected to {live}, not the scratch database (nothing ran there)"]
    assert "author" in tables(scratch)
    assert tables(live) == [] and tables(again) == []


def test_irreversible_downgrade_leaves_data_survival_to_the_upgrade(tmp_path: Path) -> None:
    """A downgrade() raising NotImplementedError is `Irreversible`: the data-survival check
    compares the upgrade only (and still finds its losses), instead of failing on it."""
    from test_survival import project_with

    from alembic_repair.testing.survival import check_survival

    made: list[str] = []

    @contextmanager
    def fresh() -> Iterator[str]:
        made.append(f"sqlite:///{tmp_path / f's{len(made)}.db'}")
        yield made[-1]
    irreversible = 'raise NotImplementedError("irreversible")'
    keeps = project_with(tmp_path / "keeps", 'op.execute("UPDATE post SET views = views")',
                         irreversible)
    assert check_survival(keeps, fresh, released="ccc333", max_examples=1, seed=0,
                          shrink_runs=0) == ()
    loses = project_with(tmp_path / "loses", 'op.execute("DELETE FROM post")', irreversible)
    (loss,) = check_survival(loses, fresh, released="ccc333", max_examples=1, seed=0,
                             shrink_runs=0)
    assert loss.table == "post" and loss.after == 0 and not loss.downgrade


BLOCKS = '''
import os, sys, threading, time
from alembic_repair.engine.project import Project
from alembic_repair.errors import MigrationFailed
from alembic_repair.testing import through_env
root, scratch = sys.argv[1:3]
os.environ["ALEMBIC_REPAIR_MIGRATION_TIMEOUT"] = "1"
project = Project.discover(root, url="sqlite://")
assert threading.active_count() == 1 and through_env.FORK
started = time.monotonic()
try:
    through_env.migrate(project, scratch, "ccc333")
except MigrationFailed as err:
    print(err)
print(time.monotonic() - started < 20)
'''


def test_forked_migration_that_blocks_is_killed(tmp_path: Path) -> None:
    """An env.py that never returns: past ALEMBIC_REPAIR_MIGRATION_TIMEOUT the forked child is
    killed and the migration fails with one line naming its target, instead of hanging."""
    root = tmp_path / "project"
    project_at(root)
    b.edit(root / "alembic" / "env.py", RUN_WITH,
           RUN_WITH + "    import time\n    time.sleep(120)\n")
    done = subprocess.run([sys.executable, "-c", BLOCKS, str(root),
                           f"sqlite:///{tmp_path / 'scratch.db'}"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "alembic upgrade ccc333 did not finish within 1 s (env.py or a revision blocks?): "
        "the migration process was killed; ALEMBIC_REPAIR_MIGRATION_TIMEOUT sets the limit",
        "True"]
