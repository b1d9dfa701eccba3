"""Scaffold files: idempotent, user edits kept, overwrite backs up, env.py really works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import write_project
from sqlalchemy import create_engine, inspect

from alembic_repair import Project, write_alembic_ini, write_env_py, write_script_template
from alembic_repair.engine.scaffold import is_generated


def scaffold_all(project: Project) -> list[str]:
    return [
        write_alembic_ini(project).status,
        write_env_py(project, "app.models:Base").status,
        write_script_template(project).status,
    ]


def test_regenerating_is_byte_identical(tmp_path: Path) -> None:
    project = Project.discover(write_project(tmp_path), environ={})
    assert scaffold_all(project) == ["created"] * 3
    before = {p: p.read_bytes() for p in (project.ini_path, project.env_py,
                                          project.script_template)}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    assert scaffold_all(project) == ["unchanged"] * 3
    assert {p: p.read_bytes() for p in before} == before
    assert {p: p.stat().st_mtime_ns for p in before} == mtimes


def test_user_edits_are_kept_unless_overwrite_and_then_backed_up(tmp_path: Path) -> None:
    project = Project.discover(write_project(tmp_path), environ={})
    scaffold_all(project)
    edited = project.env_py.read_text() + "\n# my own tweak\n"
    project.env_py.write_text(edited)
    assert not is_generated(project.env_py)
    assert write_env_py(project, "app.models:Base").status == "kept"
    assert project.env_py.read_text() == edited

    change = write_env_py(project, "app.models:Base", overwrite=True)
    assert change.status == "replaced" and change.backup is not None
    assert change.backup.read_text() == edited
    assert change.backup.stat().st_mode & 0o777 == 0o600
    assert change.backup.is_relative_to(project.state_dir)
    assert is_generated(project.env_py)


def test_our_untouched_file_is_refreshed_when_inputs_change(tmp_path: Path) -> None:
    project = Project.discover(write_project(tmp_path), environ={})
    scaffold_all(project)
    assert write_env_py(project, "app.models:Base.metadata").status == "updated"
    assert "from app.models import Base as _models" in project.env_py.read_text()
    assert "_models.metadata" in project.env_py.read_text()


def test_generated_ini_has_no_url_and_plain_alembic_works(tmp_path: Path, mariadb_server) -> None:
    """The password (with % and @) only ever travels in DATABASE_URL: the real `alembic`
    command upgrades with the generated files, and alembic.ini never holds the secret."""
    root = write_project(tmp_path)
    project = Project.discover(root, environ={})
    scaffold_all(project)
    project.versions_dir.mkdir()
    mariadb_server.create_database("scaffold_plain")
    url = mariadb_server.app_url("scaffold_plain")
    assert "%" in url
    env = {"DATABASE_URL": url, "PATH": str(Path(sys.executable).parent)}
    alembic = [sys.executable, "-m", "alembic"]
    made = subprocess.run([*alembic, "revision", "--autogenerate", "-m", "init"], cwd=root,
                          env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    done = subprocess.run([*alembic, "upgrade", "head"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)  # from another folder on purpose
    assert done.returncode == 0, done.stderr
    engine = create_engine(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"alembic_version", "author", "post"}
    engine.dispose()
    assert mariadb_server.app_password not in project.ini_path.read_text()
    assert "sqlalchemy.url =" not in project.ini_path.read_text()


def test_env_py_hides_trash_tables_and_uses_batch_mode_on_sqlite(tmp_path: Path) -> None:
    write_project(tmp_path)
    project = Project.discover(tmp_path, environ={})
    write_env_py(project, "app.models:Base")
    source = project.env_py.read_text()
    compile(source, str(project.env_py), "exec")
    namespace: dict[str, object] = {}
    start = source.index("_AR_KEPT_TABLES =")
    end = source.index("def database_url")
    exec(source[start:end], namespace)  # the autogenerate filter on its own (env_filter)
    include_name = namespace["_ar_include_name"]()  # type: ignore[operator]
    assert include_name("_ar_trash_20260101_post", "table", {}) is False
    assert include_name("_ar_trash_index", "table", {}) is False
    assert include_name("post", "table", {}) is True
    assert "include_object=_ar_include_object()" in source
    assert 'render_as_batch=connection.dialect.name == "sqlite"' in source
    assert "compare_type=True" in source
