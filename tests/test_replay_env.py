"""The replay through the project's own env.py (engine/replay_env.py, engine/replay_child.py):
revisions that need Alembic's runtime build, env.py that connects elsewhere runs nothing, the
declared set-up runs first, and neither stdout nor the password leak."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import cli
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from alembic_repair import Project, doctor
from alembic_repair.engine import replay_env
from alembic_repair.engine.migrations import scripts
from alembic_repair.engine.models import project_on_path
from alembic_repair.engine.replay import run_replay
from alembic_repair.engine.state.read import read_state

if TYPE_CHECKING:  # tests/realworld has a conftest module of its own
    from conftest import Backend

ENV_PY = """\
import os
from alembic import context
from sqlalchemy import create_engine
{prelude}
config = context.config
url = {url}
connectable = create_engine(url)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None{options})
    with context.begin_transaction():
        context.run_migrations()
"""

FIRST = """\
revision = "a1"
down_revision = None
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.create_table("author", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(50)))

def downgrade():
    op.drop_table("author")
"""

#: needs Alembic's runtime: `context.get_bind()` and `context.config` (the bare replay stops)
SECOND = """\
revision = "b2"
down_revision = "a1"
from alembic import context, op
import sqlalchemy as sa

def upgrade():
    bind = context.get_bind()
    assert context.config.get_main_option("script_location")
    op.add_column("author", sa.Column("nickname", sa.String(20)))
    bind.execute(sa.text("UPDATE author SET nickname = name"))

def downgrade():
    op.drop_column("author", "nickname")
"""

#: a history that starts after the application's own create_all (like mlflow's)
ON_SET_UP = """\
revision = "a1"
down_revision = None
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.add_column("base_t", sa.Column("extra", sa.Integer))

def downgrade():
    op.drop_column("base_t", "extra")
"""

APP_MODELS = """\
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

class Base(DeclarativeBase):
    pass

class BaseT(Base):
    __tablename__ = "base_t"
    id = sa.Column(sa.Integer, primary_key=True)

def make(url):
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
"""


def make_project(root: Path, url: str, revisions: dict[str, str], *,
                 env_url: str = 'os.environ.get("DATABASE_URL") or '
                                'config.get_main_option("sqlalchemy.url")', prelude: str = "",
                 options: str = ", render_as_batch=True") -> Project:
    (root / "alembic" / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/alembic\n")
    (root / "alembic" / "env.py").write_text(
        ENV_PY.format(url=env_url, prelude=prelude, options=options))
    for name, text in revisions.items():
        (root / "alembic" / "versions" / f"{name}.py").write_text(text)
    return Project.discover(root, url=url, strict=False)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_a_revision_using_the_runtime_replays_through_env_py(backend: Backend,
                                                             tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", backend.url, {"a1": FIRST, "b2": SECOND})
    with project_on_path(project.root):
        bare = run_replay(project, scripts(project), create_engine(backend.url))
    assert bare.mode == "bare" and bare.failed_at == "b2"  # what doctor saw before

    state = read_state(project)
    replay = state.replay
    assert replay is not None and replay.mode == "env" and replay.fallback is None
    assert replay.failed_at is None and replay.order == ("a1", "b2")
    assert ("column", "author", "nickname") in {f[:3] for f in replay.snapshots["b2"].facts}
    assert ("column", "author", "nickname") not in {f[:3] for f in
                                                    replay.snapshots["a1"].facts}
    assert replay.env_options["render_as_batch"] is True
    assert replay.env_options["include_object"] is False
    codes = {f.code for f in doctor(project).findings}
    assert not codes & {"AR404", "AR409", "AR105"}
    assert _tables(backend.url) == []  # the live database was only read
    assert read_state(project).replay.cached  # type: ignore[union-attr]


def test_env_py_connecting_elsewhere_runs_nothing_and_falls_back(backend: Backend,
                                                                 tmp_path: Path) -> None:
    # the most dangerous "elsewhere": the live database itself, named in env.py
    other = backend.url
    project = make_project(tmp_path / "p", backend.url, {"a1": FIRST},
                           env_url=repr(other))
    diagnosis = doctor(project)
    found = {f.code: f for f in diagnosis.findings}
    assert found["AR409"].severity == "info"
    assert found["AR409"].detail.startswith(
        "the history was replayed without env.py: env.py connects to another database than")
    assert found["AR409"].location == "alembic/env.py"
    assert _tables(other) == []  # not even alembic_version: no revision ran there
    state = read_state(project)
    assert state.replay is not None and state.replay.mode == "bare"
    assert state.replay.order == ("a1",) and state.replay.fallback is not None
    assert _tables(other) == []


def test_url_only_configure_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    project = make_project(tmp_path / "p", sqlite_url, {"a1": FIRST},
                           options=", url=url")
    text = (project.env_py.read_text().replace("with connectable.connect() as connection:",
                                               "if True:")
            .replace("connection=connection, ", ""))
    project.env_py.write_text(text)
    replay = read_state(project).replay
    assert replay is not None and replay.mode == "bare" and replay.order == ("a1",)
    assert replay.fallback is not None and "configured no connection" in replay.fallback


def test_declared_set_up_builds_the_history(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "p"
    project = make_project(root, sqlite_url, {"a1": ON_SET_UP})
    (root / "app_models.py").write_text(APP_MODELS)

    (finding,) = [f for f in doctor(project).findings if f.code == "AR404"]
    assert finding.detail.startswith("`alembic upgrade heads` on an empty database fails at "
                                     "revision a1 (alembic/versions/a1.py:7): ")
    assert "base_t" in finding.detail
    failed = read_state(project).replay
    assert failed is not None and failed.mode == "env" and failed.failed_at == "a1"
    assert failed.order == () and failed.partial is not None  # read before the rollback

    for setup in ("app_models:Base", "app_models:make"):
        (root / "pyproject.toml").write_text(f'[tool.alembic_repair]\nsetup = "{setup}"\n')
        project = Project.discover(root, url=sqlite_url, strict=False)
        assert project.setup == setup
        replay = read_state(project).replay
        assert replay is not None and replay.mode == "env" and replay.failed_at is None
        assert ("column", "base_t", "extra") in {f[:3] for f in replay.snapshots["a1"].facts}
        assert "AR404" not in {f.code for f in doctor(project).findings}


def test_a_bad_set_up_value_names_the_file(tmp_path: Path, sqlite_url: str) -> None:
    from alembic_repair.errors import PyprojectError

    root = tmp_path / "p"
    make_project(root, sqlite_url, {"a1": FIRST})
    (root / "pyproject.toml").write_text('[tool.alembic_repair]\nsetup = "no colon"\n')
    with pytest.raises(PyprojectError, match=r"pyproject\.toml: \[tool\.alembic_repair\] setup"):
        Project.discover(root, url=sqlite_url)


def test_json_stdout_stays_json_when_env_py_prints(tmp_path: Path, sqlite_url: str) -> None:
    project = make_project(tmp_path / "p", sqlite_url, {"a1": FIRST, "b2": SECOND},
                           prelude='print("hello from env.py")\n'
                                   'import sys; sys.stderr.write("to stderr\\n")\n')
    run = cli("doctor", "--format", "json", cwd=project.root, url=sqlite_url,
              env={"XDG_CACHE_HOME": str(tmp_path / "cache2")})
    data = json.loads(run.stdout)
    assert "AR404" not in {f["code"] for f in data["findings"]}
    assert "AR409" not in {f["code"] for f in data["findings"]}


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "exec"])
def test_the_password_never_reaches_argv_or_output(backend: Backend, tmp_path: Path, fork: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Forked, the child's argv is the parent's; started fresh, the orders (URL, password)
    go over its standard input: Popen's argv holds neither."""
    seen: list[Any] = []
    real = subprocess.Popen

    def spying(args: Any, *rest: Any, **kw: Any) -> Any:
        seen.append(args)
        return real(args, *rest, **kw)

    monkeypatch.setattr(replay_env, "FORK", fork)
    monkeypatch.setattr(replay_env.subprocess, "Popen", spying)
    url = make_url(backend.url)
    # SQLite: the scratch URL has no password; argv is still checked for its folder
    secret = str(tmp_path) if url.password is None else url.password
    # env.py prints the URL it is given, then fails with it in the message
    project = make_project(tmp_path / "p", backend.url, {"a1": FIRST},
                           prelude='print(os.environ.get("DATABASE_URL"))\n'
                                   "if not context.is_offline_mode(): "
                                   'raise RuntimeError("cannot use " + os.environ["DATABASE_URL"])'
                                   "\n")
    diagnosis = doctor(project)
    assert len(seen) == (0 if fork else 1)
    assert all(secret not in " ".join(map(str, args)) for args in seen)
    (finding,) = [f for f in diagnosis.findings if f.code == "AR409"]
    assert finding.detail.startswith("the history was replayed without env.py: env.py fails "
                                     "before the first revision (alembic/env.py:5): "
                                     "RuntimeError: cannot use ")
    if url.password is not None:
        assert all(url.password not in f.detail for f in diagnosis.findings)
        run = cli("doctor", "--format", "json", cwd=project.root, url=backend.url,
                  env={"XDG_CACHE_HOME": str(tmp_path / "cache2")})
        assert url.password not in run.stdout + run.stderr
        assert "AR409" in {f["code"] for f in json.loads(run.stdout)["findings"]}


def test_the_fresh_interpreter_child_replays_too(tmp_path: Path, sqlite_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there is no fork: ``python -m alembic_repair.engine.replay_child``."""
    monkeypatch.setattr(replay_env, "FORK", False)
    project = make_project(tmp_path / "p", sqlite_url, {"a1": FIRST, "b2": SECOND})
    replay = read_state(project).replay
    assert replay is not None and replay.mode == "env" and replay.order == ("a1", "b2")
    assert replay.fallback is None and replay.failed_at is None


@pytest.mark.mariadb
def test_a_version_table_kept_in_another_schema_is_refused(mariadb_url: str,
                                                            tmp_path: Path) -> None:
    """env.py connects to the scratch schema but would stamp alembic_version into the live one
    (version_table_schema): nothing runs."""
    live = make_url(mariadb_url).database
    project = make_project(tmp_path / "p", mariadb_url, {"a1": FIRST},
                           options=f", version_table_schema={live!r}")
    replay = read_state(project).replay
    assert replay is not None and replay.mode == "bare" and replay.order == ("a1",)
    assert replay.fallback == (f"env.py keeps alembic_version in schema {live}, outside the "
                               "scratch database; nothing was run through it")
    assert _tables(mariadb_url) == []


def test_the_cache_key_holds_env_py_and_the_ini(tmp_path: Path, sqlite_url: str) -> None:
    project = make_project(tmp_path / "p", sqlite_url, {"a1": FIRST})
    assert not read_state(project).replay.cached  # type: ignore[union-attr]
    assert read_state(project).replay.cached  # type: ignore[union-attr]
    for path in (project.ini_path, project.env_py):
        path.write_text(path.read_text() + "\n# changed\n")
        assert not read_state(project).replay.cached, path  # type: ignore[union-attr]


#: an application that builds a NEW database with create_all + `alembic stamp head` (like
#: JupyterHub and optuna): no revision ever runs on it
PLAIN_SECOND = """\
revision = "b2"
down_revision = "a1"
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.add_column("author", sa.Column("nickname", sa.String(20)))

def downgrade():
    op.drop_column("author", "nickname")
"""

STAMPING_APP = """\
import os
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

metadata = sa.MetaData()
sa.Table("author", metadata, sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("name", sa.String(50)), sa.Column("nickname", sa.String(20)))

def make(url):
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    config = Config()
    config.set_main_option("script_location", os.path.join(os.path.dirname(__file__), "alembic"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.stamp(config, "head")
"""


def _stamped_by_set_up(root: Path, url: str) -> Project:
    make_project(root, url, {"a1": FIRST, "b2": PLAIN_SECOND},
                 prelude="import stamping_app")
    env_py = root / "alembic" / "env.py"
    env_py.write_text(env_py.read_text().replace("target_metadata=None",
                                                 "target_metadata=stamping_app.metadata"))
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/alembic\n"
                                      "prepend_sys_path = %(here)s\n")
    (root / "stamping_app.py").write_text(STAMPING_APP)
    (root / "pyproject.toml").write_text('[tool.alembic_repair]\nsetup = "stamping_app:make"\n')
    project = Project.discover(root, url=url, strict=False)
    with project_on_path(root):
        import stamping_app

        stamping_app.make(url)
    return project


def _versions_and_rows(url: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            from sqlalchemy import text

            versions = [r[0] for r in conn.execute(text("SELECT version_num FROM "
                                                        "alembic_version"))]
            rows = [tuple(r) for r in conn.execute(text("SELECT * FROM author ORDER BY id"))]
            return versions, rows
    finally:
        engine.dispose()


def _execute(url: str, sql: str) -> None:
    from sqlalchemy import text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def test_a_set_up_that_stamps_head_gives_head_its_snapshot(backend: Backend,
                                                           tmp_path: Path) -> None:
    import sys

    sys.modules.pop("stamping_app", None)
    project = _stamped_by_set_up(tmp_path / "p", backend.url)
    replay = read_state(project).replay
    assert replay is not None and replay.mode == "env" and replay.failed_at is None
    assert replay.order == ("a1", "b2") and set(replay.snapshots) == {"b2"}  # a1: unknown
    assert ("column", "author", "nickname") in {f[:3] for f in replay.snapshots["b2"].facts}
    codes = {f.code for f in doctor(project).findings if f.severity in ("error", "warning")}
    assert not codes, codes


@pytest.mark.parametrize("breakage", [
    "DELETE FROM alembic_version",
    "UPDATE alembic_version SET version_num = 'fe11c0ffee00'",
    "UPDATE alembic_version SET version_num = 'a1'",
], ids=["deleted_row", "unknown_id", "older_stamp"])
def test_a_broken_row_after_a_stamping_set_up_is_restamped_to_head(
        backend: Backend, tmp_path: Path, breakage: str) -> None:
    import sys

    from helpers import tree_digest

    sys.modules.pop("stamping_app", None)
    root = tmp_path / "p"
    _stamped_by_set_up(root, backend.url)
    _execute(backend.url, "INSERT INTO author (id, name, nickname) VALUES (1, 'a', 'b'), "
                          "(2, 'c', NULL)")
    files = tree_digest(root / "alembic" / "versions")
    _execute(backend.url, breakage)

    done = cli("fix", "--yes", cwd=root, url=backend.url)

    assert done.code == 0, done.stdout + done.stderr
    assert _versions_and_rows(backend.url) == (["b2"], [(1, "a", "b"), (2, "c", None)])
    assert tree_digest(root / "alembic" / "versions") == files
    assert "stamp" in done.stdout and "upgrade" not in done.stdout.lower().split("stamp")[0]


#: JupyterHub's env.py: written for an Engine in config.attributes['connection']
ENGINE_ENV_PY = """\
from alembic import context
from sqlalchemy import create_engine
config = context.config
connectable = config.attributes.get("connection", None)
if connectable is None:
    connectable = create_engine(config.get_main_option("sqlalchemy.url"))
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=None,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
"""


def test_an_env_py_calling_connect_on_our_connection_runs_on_it(backend: Backend,
                                                                tmp_path: Path) -> None:
    from alembic_repair.engine import migrations

    project = make_project(tmp_path / "p", backend.url, {"a1": FIRST, "b2": PLAIN_SECOND})
    project.env_py.write_text(ENGINE_ENV_PY)
    engine = create_engine(backend.url)
    try:
        with engine.connect() as conn:
            migrations.upgrade(project, conn, "a1")
            conn.commit()
            migrations.stamp(project, conn, "b2")
            conn.commit()
            assert not conn.closed and not hasattr(conn, "connect")  # lent, then taken back
            assert set(inspect(conn).get_table_names()) == {"author", "alembic_version"}
            assert migrations.current_heads(conn) == ("b2",)
    finally:
        engine.dispose()


def test_no_bridge_is_replayed_bare_when_the_history_follows_a_set_up(
        tmp_path: Path, sqlite_url: str) -> None:
    import sys

    from helpers import tree_digest

    sys.modules.pop("stamping_app", None)
    root = tmp_path / "p"
    _stamped_by_set_up(root, sqlite_url)
    _execute(sqlite_url, "INSERT INTO author (id, name) VALUES (1, 'a')")
    _execute(sqlite_url, "ALTER TABLE author ADD COLUMN extra INTEGER")  # equals no revision
    _execute(sqlite_url, "UPDATE alembic_version SET version_num = 'fe11c0ffee00'")
    files = tree_digest(root / "alembic" / "versions")

    done = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert done.code not in (0, 70) and "Traceback" not in done.output, done.output
    assert "declared set-up stamping_app:make" in done.output, done.output
    assert _versions_and_rows(sqlite_url) == (["fe11c0ffee00"], [(1, "a", None, None)])
    assert tree_digest(root / "alembic" / "versions") == files
