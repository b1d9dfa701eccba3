"""Story: a '%' (and '@') in the password, written by ``sed`` into alembic.ini (issue 13).

The user's env.py reads ``sqlalchemy.url`` from alembic.ini (as ``alembic init`` writes it),
taking DATABASE_URL over it when set, so plain ``alembic`` crashes on ConfigParser's
interpolation of the '%' whatever the environment says, and without DATABASE_URL the raw '@' in
the password makes SQLAlchemy read another host. doctor reports the ini's URL even when
DATABASE_URL is set; without it, doctor diagnoses the database the ini means (MariaDB, never the
SQLite default, so no batch mode is written into a MySQL project); ``fix --yes`` rewrites the
line so plain Alembic reads that URL (password percent-encoded, each '%' doubled). The password
is never printed.

On SQLite there is no password: the SQLite case is the same line with a ``%XX`` escape in the
database's path (what ``URL.render_as_string`` writes), which SQLAlchemy decodes only from 2.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from helpers import Run, cli
from sqlalchemy import make_url
from stories import Story, check_story

from alembic_repair.testing.mariadb import APP_PASSWORD, APP_USER
from alembic_repair.testing.scenarios.builders import base_project, set_ini_url, stock_env_py

#: The user's env.py: alembic init's, with the models, reading the ini's URL first (a default
#: that DATABASE_URL overrides): ConfigParser interpolates it on every command.
ENV_URL = """config = context.config
url = config.get_main_option("sqlalchemy.url")
if os.environ.get("DATABASE_URL"):
    config.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"].replace("%", "%%"))
"""
SQLITE_ESCAPES = make_url("sqlite:///a%62").database == "ab"  # SQLAlchemy 2.1+


def sed_url(url: str) -> str:
    """What ``sed`` writes: the app user's password as it is (MariaDB), or the path with a
    ``%XX`` escape (SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        base = url[:-1]
        return f"{base}%{ord(url[-1]):02X}"
    return (f"mysql+pymysql://{APP_USER}:{APP_PASSWORD}@{parsed.host}:{parsed.port}/"
            f"{parsed.database}")


def build_ini_url_story(root: Path, url: str) -> None:
    base_project(root, url)
    env = stock_env_py().replace(
        "target_metadata = None", "from app.models import Base\ntarget_metadata = Base.metadata"
    ).replace("config = context.config\n", ENV_URL)
    (root / "alembic" / "env.py").write_text("import os\n" + env, encoding="utf-8")
    set_ini_url(root, sed_url(url))


def _skip_sqlite(backend) -> None:
    if backend.name == "sqlite" and not SQLITE_ESCAPES:
        pytest.skip("SQLAlchemy before 2.1 decodes no %XX in an SQLite path: no spelling of "
                    "the path with a '%' names the same file (the story is MariaDB's)")


def _no_password(*runs: Run) -> None:
    for run in runs:
        for spelling in (APP_PASSWORD, quote(APP_PASSWORD, safe=""),
                         APP_PASSWORD.replace("%", "%%")):
            assert spelling not in run.output, run.output


WITH_ENV = Story("ini_url", build=build_ini_url_story)
#: alembic.ini is the only URL: every command (and plain alembic) reads it
WITHOUT_ENV = Story("ini_url_only", build=build_ini_url_story, cli_env={"DATABASE_URL": ""},
                    fresh=False)


def test_ini_url_story_with_database_url(backend, request, tmp_path: Path) -> None:
    _skip_sqlite(backend)
    check_story(WITH_ENV, backend, request, tmp_path)


def test_ini_url_story_without_database_url(backend, request, tmp_path: Path) -> None:
    """Kills run here too: each kill round builds its own folder, whose alembic.ini (written by
    the build) names that round's new database, so with DATABASE_URL empty every command still
    reaches the database in hand. Only step 5 is off (`fresh=False`): no URL but the ini's."""
    _skip_sqlite(backend)
    check_story(WITHOUT_ENV, backend, request, tmp_path)


def _ini_line(root: Path) -> str:
    (line,) = [ln for ln in (root / "alembic.ini").read_text().splitlines()
               if ln.startswith("sqlalchemy.url")]
    return line


def test_doctor_reports_the_ini_url_whatever_the_environment(mariadb_url: str,
                                                              tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build_ini_url_story(root, mariadb_url)
    with_env = cli("doctor", "--format", "json", cwd=root, url=mariadb_url)
    assert with_env.code == 1, with_env.output
    found = {f["code"]: f for f in json.loads(with_env.stdout)["findings"]}
    assert list(found) == ["AR107"] and found["AR107"]["location"].startswith("alembic.ini:")

    alone = cli("doctor", "--format", "json", cwd=root)  # no DATABASE_URL: the ini's URL
    report = json.loads(alone.stdout)
    assert alone.code == 1, alone.output
    assert [f["code"] for f in report["findings"]] == ["AR107"]  # no AR108: not SQLite
    assert report["state"]["url"].startswith(f"mysql+pymysql://{APP_USER}:***@")
    assert report["state"]["database"] == "read" and "author" in report["state"]["tables"]

    planned = cli("fix", cwd=root)
    assert planned.code == 5, planned.output
    assert "percent-encode the password" in planned.stdout
    assert "render_as_batch" not in planned.output
    fixed = cli("fix", "--yes", cwd=root)
    assert fixed.code == 0, fixed.output
    assert "render_as_batch" not in (root / "alembic" / "env.py").read_text()
    encoded = quote(APP_PASSWORD, safe="").replace("%", "%%")
    assert _ini_line(root).startswith(f"sqlalchemy.url = mysql+pymysql://{APP_USER}:{encoded}@")
    _no_password(with_env, alone, planned, fixed, cli("doctor", cwd=root))


def test_ini_url_already_right_is_left_alone(mariadb_server, mariadb_url: str,
                                             tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build_ini_url_story(root, mariadb_url)
    parsed = make_url(mariadb_url)
    right = mariadb_server.app_url(parsed.database).replace("%", "%%")
    text = (root / "alembic.ini").read_text().replace(_ini_line(root), f"sqlalchemy.url = {right}")
    (root / "alembic.ini").write_text(text)
    run = cli("doctor", cwd=root)
    assert run.code == 0, run.output
    assert cli("doctor", cwd=root, url=mariadb_url).code == 0
    _no_password(run)


@pytest.mark.parametrize(("raw", "fixed"), [
    # a password written by sed: encoded, then each '%' doubled for ConfigParser
    ("mysql+pymysql://app:p%ss@w:rd/#?@db:3306/app",
     "mysql+pymysql://app:p%%25ss%%40w%%3Ard%%2F%%23%%3F@db:3306/app"),
    ("mysql+pymysql://app:p@ss@db/app?charset=utf8mb4",
     "mysql+pymysql://app:p%%40ss@db/app?charset=utf8mb4"),
    # encoded already: only the '%' doubled (fm17)
    ("mysql+pymysql://app:p%40ss@db/app", "mysql+pymysql://app:p%%40ss@db/app"),
    ("sqlite:////srv/a%b/app.db", "sqlite:////srv/a%%b/app.db"),
    # right as it is: left alone
    ("mysql+pymysql://app:plain@db/app", None),
    ("mysql+pymysql://root@db/app", None),
    ("sqlite:////srv/a@b/app.db", None),
    ("sqlite:///%(here)s/app.db", None),
    ("mysql+pymysql://app:pw@localhost/app?unix_socket=/run/a@b.sock", None),
])
def test_ini_url_fix(raw: str, fixed: str | None) -> None:
    from alembic_repair.engine.url import ini_url_fix

    assert ini_url_fix(raw) == fixed
    if fixed is not None and raw.startswith("mysql"):  # ConfigParser, then SQLAlchemy
        password = raw.partition("app:")[2].rpartition("@")[0]
        read = make_url(fixed.replace("%%", "%"))
        assert (read.host, read.password) == ("db", unquote(password) if "%40" in raw
                                              else password)


# -- review: interpolation that is no stray '%', '@' outside the credentials --------------------

#: ConfigParser interpolation the user meant (options env.py sets from the environment)
INTERPOLATED = "mysql+pymysql://%(DB_USER)s:%(DB_PASS)s@db/app"


def _backups(root: Path) -> list[Path]:
    state = root / ".alembic_repair"
    return sorted(p for p in state.rglob("*") if p.is_dir()) if state.is_dir() else []


def test_interpolated_ini_url_is_no_stray_percent(sqlite_url: str, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    base_project(root, sqlite_url)
    set_ini_url(root, INTERPOLATED)
    doctor = cli("doctor", "--format", "json", cwd=root, url=sqlite_url)
    assert doctor.code == 0, doctor.output
    assert "AR107" not in [f["code"] for f in json.loads(doctor.stdout)["findings"]]
    before, folders = (root / "alembic.ini").read_text(), _backups(root)
    fixed = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert fixed.code == 0, fixed.output
    assert "setup files" not in fixed.output and _backups(root) == folders
    # without DATABASE_URL the URL is unknown (env.py may set DB_USER): said, never "edited"
    alone = cli("fix", "--yes", cwd=root)
    assert alone.code not in (0, 4), alone.output
    assert "setup files" not in alone.output and "DB_USER" in alone.output
    assert (root / "alembic.ini").read_text() == before and _backups(root) == folders


def test_fix_stops_on_an_ini_url_it_cannot_edit(sqlite_url: str,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    base_project(root, sqlite_url)
    set_ini_url(root, "mysql+pymysql://app:%(pw@db/app")  # no '%' to double: no edit helps
    doctor = cli("doctor", "--format", "json", cwd=root, url=sqlite_url)
    assert doctor.code == 1, doctor.output
    assert [f["code"] for f in json.loads(doctor.stdout)["findings"]] == ["AR107"]
    before, folders = (root / "alembic.ini").read_text(), _backups(root)
    fixed = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert fixed.code != 0 and "healthy" not in fixed.output, fixed.output
    assert "sqlalchemy.url" in fixed.output and "setup files" not in fixed.output
    assert (root / "alembic.ini").read_text() == before and _backups(root) == folders


@pytest.mark.parametrize("raw", [
    INTERPOLATED, "mysql+pymysql://%(DB_USER)s:pw@db/app", "sqlite:///%(root)s/app.db"])
def test_ini_url_as_meant_never_keeps_an_interpolation(tmp_path: Path, raw: str) -> None:
    from alembic_repair.engine.project import ini_url_as_meant, read_ini

    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nsqlalchemy.url = {raw}\n")
    assert ini_url_as_meant(ini, read_ini(ini)) is None
    ini.write_text("[alembic]\nsqlalchemy.url = sqlite:///%(here)s/app.db\n")
    assert ini_url_as_meant(ini, read_ini(ini)) == f"sqlite:///{tmp_path}/app.db"


@pytest.mark.parametrize("raw", [
    "mysql+pymysql://app:pw@db/a@b",
    "mysql+pymysql://app:pw@db:3306/a@b?charset=utf8mb4",
    "mysql+pymysql://app:pw@db/app?init=x@y",
])
def test_an_at_after_the_host_is_no_password(raw: str, tmp_path: Path) -> None:
    from alembic_repair.engine.project import Project
    from alembic_repair.engine.url import encode_credentials, ini_url_fix

    assert make_url(raw).host == "db"
    assert encode_credentials(raw) is None and ini_url_fix(raw) is None
    (tmp_path / "alembic.ini").write_text(f"[alembic]\nscript_location = alembic\n"
                                          f"sqlalchemy.url = {raw}\n")
    project = Project.discover(tmp_path, environ={})
    assert project.url.parsed.host == "db" and not project.problems
