"""Project discovery: URL precedence, docker-compose variables, masking, models spec."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import URL, make_url

from alembic_repair import ConfigError, Project, mask_url
from alembic_repair.errors import PyprojectError
from alembic_repair.masking import redact

COMPOSE = """
services:
  {service}:
    image: mariadb:10.11
    environment:
      MYSQL_DATABASE: ${{MYSQL_DATABASE}}
      MYSQL_USER: app
      MYSQL_PASSWORD: ${{MYSQL_PASSWORD:-fallback}}
      MYSQL_ROOT_PASSWORD: rootpw
  backend:
    build: .
    environment:
      MYSQL_HOST: mysql
"""


def ini(root: Path, url: str | None) -> None:
    lines = ["[alembic]", "script_location = %(here)s/alembic"]
    if url is not None:
        lines.append(f"sqlalchemy.url = {url}")
    (root / "alembic.ini").write_text("\n".join(lines) + "\n")


def test_precedence_explicit_then_env_then_ini_then_default(tmp_path: Path) -> None:
    ini(tmp_path, "sqlite:///%(here)s/from_ini.db")
    env = {"DATABASE_URL": "sqlite:///from_env.db"}
    assert Project.discover(tmp_path, url="sqlite:///x.db", environ=env).url_source == "--url"
    project = Project.discover(tmp_path, environ=env)
    assert (project.url, project.url_source) == ("sqlite:///from_env.db", "DATABASE_URL")
    project = Project.discover(tmp_path, environ={})
    assert project.url == f"sqlite:///{tmp_path}/from_ini.db"
    assert project.url_source == "alembic.ini"
    ini(tmp_path, "driver://user:pass@localhost/dbname")  # alembic init's placeholder
    project = Project.discover(tmp_path, environ={})
    assert project.url == f"sqlite:///{tmp_path}/app.db"
    assert project.url_source.startswith("default")


def test_script_location_is_resolved_beside_the_ini(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "proj" / "migrations").mkdir(parents=True)
    (tmp_path / "proj" / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    monkeypatch.chdir(tmp_path)  # Alembic itself would look in ./migrations and fail
    project = Project.discover(tmp_path / "proj", environ={})
    assert project.script_location == tmp_path / "proj" / "migrations"


def test_compose_service_used_only_when_its_name_resolves(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(service="localhost"))
    (tmp_path / ".env").write_text("MYSQL_DATABASE=shop\nMYSQL_PASSWORD='p%ss@w:rd'\n")
    project = Project.discover(tmp_path, environ={})
    url = make_url(project.url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app", "p%ss@w:rd", "localhost", 3306, "shop")
    assert project.url_source == "docker-compose.yml (service localhost)"
    assert "p%ss" not in project.masked_url

    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(service="mysql-nowhere"))
    project = Project.discover(tmp_path, environ={})
    assert project.url_source.startswith("default")
    assert any("mysql-nowhere" in note and "DATABASE_URL" in note for note in project.notes)


def test_compose_default_and_environment_override(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE.format(service="localhost"))
    project = Project.discover(tmp_path, environ={"MYSQL_DATABASE": "envdb"})
    url = make_url(project.url)
    assert (url.password, url.database) == ("fallback", "envdb")


def test_broken_compose_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services:\n  db: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        Project.discover(tmp_path, environ={})
    assert str(err.value).startswith(f"{tmp_path}/docker-compose.yml:")
    assert err.value.exit_code == 2


def test_models_spec_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.alembic_repair]\nmodels = "a.b:Base"\n')
    assert Project.discover(tmp_path, environ={}).models == "a.b:Base"
    assert Project.discover(tmp_path, models="c:M", environ={}).models == "c:M"


def test_a_bad_ignore_tables_is_a_problem_doctor_keeps(tmp_path: Path) -> None:
    """Strict discovery (every command but doctor) raises; doctor's keeps it in `problems`."""
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.alembic_repair]\nignore_tables = "legacy"\n')
    with pytest.raises(PyprojectError, match="ignore_tables must be a list of table names"):
        Project.discover(tmp_path, environ={})
    project = Project.discover(tmp_path, environ={}, strict=False)
    assert project.ignore_tables == ()
    assert [type(p) for p in project.problems] == [PyprojectError]
    assert str(project.problems[0]).startswith(f"{path}: [tool.alembic_repair] ignore_tables")


@pytest.mark.parametrize(("body", "says"), [
    (b'[tool.alembic_repair]\nmodels = "caf\xe9:Base"\n', "not UTF-8 text (byte 35)"),
    (b"[tool.alembic_repair\nmodels = 1\n", "not valid TOML ("),
    (b'[tool]\nalembic_repair = "x"\n', "[tool.alembic_repair] must be a table"),
])
def test_an_unreadable_pyproject_is_one_config_error(tmp_path: Path, body: bytes,
                                                     says: str) -> None:
    """models and ignore_tables share one reader: each failure names the file, in one line;
    doctor (strict=False) gets it once, as a problem it reports (AR114), not an error."""
    path = tmp_path / "pyproject.toml"
    path.write_bytes(body)
    with pytest.raises(ConfigError) as bad:
        Project.discover(tmp_path, environ={}, strict=True)
    assert str(bad.value).startswith(f"{path}: {says}")
    assert "\n" not in str(bad.value) and bad.value.exit_code == 2
    (problem,) = Project.discover(tmp_path, environ={}, strict=False).problems
    assert str(problem) == str(bad.value)


passwords = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=4, max_size=24
).filter(lambda p: p.strip() == p and "***" not in p)


@given(password=passwords)
def test_masking_never_shows_the_password(password: str) -> None:
    url = URL.create("mysql+pymysql", username="app", password=password, host="db",
                     database="app").render_as_string(hide_password=False)
    masked = mask_url(url)
    assert password not in masked and quote(password, safe="") not in masked
    assert masked == "mysql+pymysql://app:***@db/app"
    message = f"(1045, \"Access denied for {url}\") with raw {password}"
    scrubbed = redact(message, url)
    assert password not in scrubbed and quote(password, safe="") not in scrubbed


@given(password=passwords)
def test_ini_url_with_escaped_percent_round_trips(password: str, tmp_path_factory) -> None:
    root = tmp_path_factory.mktemp("p")
    url = URL.create("mysql+pymysql", username="app", password=password, host="db",
                     database="app").render_as_string(hide_password=False)
    ini(root, url.replace("%", "%%"))
    assert make_url(Project.discover(root, environ={}).url).password == password


def test_project_on_path_forgets_the_projects_modules_but_never_its_own(tmp_path: Path) -> None:
    """Modules first imported while the project is on sys.path are re-imported fresh next
    time (a long-lived process sees edited models), except alembic_repair's own lazy imports:
    dropping those would leave two copies of a registry (of step kinds) in one process."""
    import importlib
    import sys

    from alembic_repair.engine.models import project_on_path

    (tmp_path / "appmod_for_path_test.py").write_text("VALUE = 1\n")
    saved = sys.modules.pop("alembic_repair.version")
    try:
        with project_on_path(tmp_path):
            ours = importlib.import_module("alembic_repair.version")
            theirs = importlib.import_module("appmod_for_path_test")
        with project_on_path(tmp_path):
            assert "appmod_for_path_test" not in sys.modules  # forgotten: imported afresh
            assert sys.modules["alembic_repair.version"] is ours  # kept
        assert theirs.VALUE == 1
    finally:
        sys.modules["alembic_repair.version"] = saved
        sys.modules.pop("appmod_for_path_test", None)
