"""env.py's own options honoured (issue 12, item 4): ``version_table`` (where the stamps live),
``include_object`` (tables autogenerate leaves out are no drift, no orphan), and AR208 on a
published-style history (an empty downgrade below the current revision is a fact, not a
warning)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect, text

from alembic_repair.engine.project import Project
from alembic_repair.engine.revisions import reflect_user_tables
from alembic_repair.engine.state.config import configure_option, version_table
from alembic_repair.engine.state.excluded import excluded_tables
from alembic_repair.engine.state.recorder import (
    bind_version_table,
    read_versions,
    version_table_of,
    write_version_rows,
)
from alembic_repair.engine.url import DatabaseUrl
from alembic_repair.testing.scenarios import base_revisions, execute
from alembic_repair.testing.scenarios.builders import (
    aaa111,
    bbb222,
    ccc333,
    edit,
    insert_rows,
    upgrade,
    write_app,
    write_revisions,
    write_scaffold,
)
from tests.helpers import Run, cli, table_digest

ENV = "alembic/env.py"


def _env(root: Path, old: str, new: str) -> None:
    edit(root / ENV, old, new)


def _project(root: Path, url: str, revisions: dict[str, str] | None = None,
             to: str = "head", name: str = '"my_versions"') -> None:
    """The base project whose env.py keeps its stamps in ``my_versions``, upgraded, rows in."""
    write_app(root)
    write_scaffold(root, url)
    _env(root, "        **kwargs,\n", f"        version_table={name},\n        **kwargs,\n")
    write_revisions(root, revisions or base_revisions())
    upgrade(root, url, to)
    insert_rows(url, email=to == "head")


def _stamps(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            return {t: sorted(r[0] for r in conn.execute(text(f"SELECT version_num FROM {t}")))
                    for t in ("my_versions", "alembic_version") if t in names}
    finally:
        engine.dispose()


def _doctor(root: Path, url: str) -> list[dict[str, object]]:
    run = cli("doctor", "--format", "json", cwd=root, url=url, timeout=300)
    assert "Traceback" not in run.output, run.output
    return json.loads(run.stdout)["findings"]


def _alembic(root: Path, url: str, *args: str) -> Run:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr)


def test_the_version_table_is_read_from_env_py(tmp_path: Path) -> None:
    source = (tmp_path / "env.py")
    source.write_text('from alembic import context\nNAME = "my_versions"\n'
                      'def offline():\n    context.configure(url="x")\n'
                      'def online(c):\n    context.configure(connection=c, version_table=NAME,'
                      ' version_table_schema=None)\n')
    project = Project(root=tmp_path, ini_path=tmp_path / "alembic.ini",
                      script_location=tmp_path, url=DatabaseUrl("sqlite://"), url_source="t")
    assert version_table(project) == ("my_versions", None)
    assert version_table(project, {"version_table": "captured"}) == ("captured", None)
    dynamic = configure_option("from alembic import context\n"
                               "context.configure(version_table=make())\n", "version_table")
    assert dynamic.value is None and "cannot be read" in str(dynamic.note)
    wrapped = configure_option(
        "from alembic import context\ndef configure(**kwargs):\n"
        "    context.configure(target_metadata=None, **kwargs)\n"
        "def offline():\n    configure(url='x')\n"
        "def online(c):\n    configure(connection=c, version_table='mine')\n", "version_table")
    assert (wrapped.value, wrapped.note) == ("mine", None)  # alembic-repair's own env.py
    opts = configure_option("from alembic import context\nOPTS = {'version_table': 'v'}\n"
                            "context.configure(**OPTS)\n", "version_table")
    assert opts.value == "v" and opts.note is None


def test_doctor_reads_the_stamp_where_env_py_keeps_it(tmp_path: Path, backend) -> None:
    _project(tmp_path, backend.url)
    assert _stamps(backend.url) == {"my_versions": ["ccc333"]}
    codes = {(f["code"], str(f.get("subject"))) for f in _doctor(tmp_path, backend.url)}
    assert not [c for c, _ in codes if c.startswith("AR30") or c in ("AR401", "AR406")], codes
    assert not [s for _, s in codes if "my_versions" in s], codes


def test_fix_stamps_my_versions_and_alembic_agrees(tmp_path: Path, backend) -> None:
    _project(tmp_path, backend.url)
    execute(backend.url, "DELETE FROM my_versions")
    assert "AR306" in {f["code"] for f in _doctor(tmp_path, backend.url)}
    rows = {t: v for t, v in table_digest(backend.url).items() if t != "my_versions"}
    run = cli("fix", "--yes", cwd=tmp_path, url=backend.url, timeout=300)
    assert run.code == 0, run.output
    assert _stamps(backend.url) == {"my_versions": ["ccc333"]}  # no alembic_version made
    assert {t: v for t, v in table_digest(backend.url).items() if t != "my_versions"} == rows
    again = _alembic(tmp_path, backend.url, "upgrade", "head")
    assert again.code == 0, again.output
    assert _stamps(backend.url) == {"my_versions": ["ccc333"]}
    assert {t: v for t, v in table_digest(backend.url).items() if t != "my_versions"} == rows
    assert not [f for f in _doctor(tmp_path, backend.url) if f["severity"] == "error"]


def test_a_version_table_ast_cannot_read_is_the_one_env_py_passes(tmp_path: Path,
                                                                  sqlite_url: str) -> None:
    """``version_table="my_" + "versions"``: what env.py passed when doctor ran it is read,
    and the stamp goes through Alembic's own command: no stray alembic_version."""
    _project(tmp_path, sqlite_url, name='"my_" + "versions"')
    findings = _doctor(tmp_path, sqlite_url)
    assert not [f for f in findings if f["severity"] != "info" or "versions" in json.dumps(f)
                ], findings
    execute(sqlite_url, "DELETE FROM my_versions")
    run = cli("fix", "--yes", cwd=tmp_path, url=sqlite_url, timeout=300)
    assert run.code == 0, run.output
    assert _stamps(sqlite_url) == {"my_versions": ["ccc333"]}


INCLUDE_OBJECT = '''

def include_object(obj, name, type_, reflected, compare_to):
    """Tables another tool owns: autogenerate leaves them alone."""
    return not (type_ == "table" and name.startswith(LEGACY))


LEGACY = "legacy_"
'''


def test_a_table_env_py_excludes_is_no_drift_and_no_orphan(tmp_path: Path,
                                                           sqlite_url: str) -> None:
    _project(tmp_path, sqlite_url)
    _env(tmp_path, "include_object=_ar_include_object(),",
         "include_object=_ar_include_object(include_object),")
    _env(tmp_path, "\ndef configure(**kwargs):", INCLUDE_OBJECT + "\n\ndef configure(**kwargs):")
    execute(sqlite_url, "CREATE TABLE legacy_audit (id INTEGER PRIMARY KEY, what TEXT)",
            "INSERT INTO legacy_audit (what) VALUES ('kept')")
    findings = _doctor(tmp_path, sqlite_url)
    assert not [f for f in findings if f["severity"] != "info" or "legacy" in json.dumps(f)
                ], findings
    execute(sqlite_url, "CREATE TABLE other_audit (id INTEGER PRIMARY KEY)")
    assert [f for f in _doctor(tmp_path, sqlite_url) if f["code"] == "AR406"
            and "other_audit" in json.dumps(f)]  # the filter decides, not any extra table


def test_a_filter_only_the_online_path_passes_is_read_from_env_py(tmp_path: Path) -> None:
    (tmp_path / "env.py").write_text(
        "from alembic import context\nimport app_not_importable_here\n" + INCLUDE_OBJECT
        + "def run_migrations_offline():\n    context.configure(url='x')\n"
        "def run_migrations_online(connection):\n"
        "    context.configure(connection=connection, include_object=include_object)\n")
    project = Project(root=tmp_path, ini_path=tmp_path / "alembic.ini",
                      script_location=tmp_path, url=DatabaseUrl("sqlite://"), url_source="t")
    models = MetaData()
    Table("legacy_report", models, Column("id", Integer, primary_key=True))
    Table("post", models, Column("id", Integer, primary_key=True))
    found = excluded_tables(project, ["legacy_audit", "post", "author"], models)
    assert (found.live, found.models) == ({"legacy_audit"}, {"legacy_report"})


def test_an_empty_downgrade_below_the_current_revision_is_not_a_warning(
        tmp_path: Path, sqlite_url: str) -> None:
    released = {"aaa111_create_author.py": aaa111(),
                "bbb222_create_post.py": bbb222(downgrade="pass"),
                "ccc333_add_author_email.py": ccc333()}
    _project(tmp_path, sqlite_url, released)
    ar208 = [f for f in _doctor(tmp_path, sqlite_url) if f["code"] == "AR208"]
    assert [f["severity"] for f in ar208] == ["info"], ar208
    execute(sqlite_url, "UPDATE my_versions SET version_num = 'bbb222'",
            "ALTER TABLE author DROP COLUMN email")
    ar208 = [f for f in _doctor(tmp_path, sqlite_url) if f["code"] == "AR208"]
    assert [f["severity"] for f in ar208] == ["warning"], ar208  # the current one: -1 undoes it


def test_the_recorder_reads_and_stamps_a_table_in_a_named_schema(tmp_path: Path) -> None:
    """``version_table_schema``: the table is qualified (SQLite's own schema is ``main``)."""
    project = Project(root=tmp_path, ini_path=tmp_path / "alembic.ini",
                      script_location=tmp_path, url=DatabaseUrl("sqlite://"), url_source="t")
    (tmp_path / "env.py").write_text(
        "from alembic import context\ncontext.configure(version_table='my versions', "
        "version_table_schema='main')\n")
    engine = bind_version_table(create_engine(f"sqlite:///{tmp_path / 'app.db'}"), project)
    try:
        with engine.connect() as conn:
            assert version_table_of(conn) == ("my versions", "main")  # the engine's project's
            write_version_rows(project, conn, ("abc123",))
            assert read_versions(conn).rows == ("abc123",)
            assert read_versions(conn, "my versions", schema="main").rows == ("abc123",)
            assert read_versions(conn, "alembic_version").exists is False
    finally:
        engine.dispose()


def test_an_adopted_schema_never_holds_the_version_table(tmp_path: Path,
                                                        sqlite_url: str) -> None:
    """What a baseline or bridge revision is written from (`reflect_user_tables`): the
    application's tables; my_versions is Alembic's bookkeeping, not one of them."""
    _project(tmp_path, sqlite_url)
    project = Project(root=tmp_path, ini_path=tmp_path / "alembic.ini",
                      script_location=tmp_path / "alembic", url=DatabaseUrl(sqlite_url),
                      url_source="t")
    engine = bind_version_table(create_engine(sqlite_url), project)
    try:
        with engine.connect() as conn:
            assert set(reflect_user_tables(conn).tables) == {"author", "post"}
    finally:
        engine.dispose()
