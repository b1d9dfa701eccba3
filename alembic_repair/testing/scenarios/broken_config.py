"""Scenarios whose Alembic setup is broken: alembic.ini and env.py missing, misconfigured or
unable to import."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import make_url

from .builders import (
    AUTHOR,
    base_project,
    edit,
    models_py,
    percent_encoded,
    set_ini_url,
    stock_env_py,
)

#: Where fm17 can be built: SQLAlchemy before 2.1 decodes no ``%XX`` in a URL's database part,
#: so an SQLite URL (no password to escape) then has no spelling with a '%' naming the same file.
FM17_BACKENDS = (("sqlite", "mariadb") if make_url("sqlite:///a%62").database == "ab"
                 else ("mariadb",))


def fm17_percent_in_ini_url(root: Path, url: str) -> None:
    """alembic.ini gets the database's URL with a '%' that is not doubled. Run doctor on it
    without --url and without DATABASE_URL (see `URL_FROM_INI`): the URL in the ini is the one
    to diagnose. Written as ``%%`` the same line works and names the scenario's database."""
    base_project(root, url)
    set_ini_url(root, percent_encoded(url))


def fm20_env_import_error(root: Path, url: str) -> None:
    base_project(root, url)
    edit(root / "alembic" / "env.py", "from app.models import Base as _models\n",
         "from app.models import Base as _models\nfrom app.settings import settings\n")


def fm21_relative_script_location(root: Path, url: str) -> None:
    base_project(root, url)
    edit(root / "alembic.ini", "script_location = %(here)s/alembic\n",
         "script_location = alembic\n")


def fm21_missing_alembic_ini(root: Path, url: str) -> None:
    base_project(root, url)
    (root / "alembic.ini").unlink()


def fm23_target_metadata_none(root: Path, url: str) -> None:
    base_project(root, url)
    (root / "alembic" / "env.py").write_text(stock_env_py(), encoding="utf-8")
    set_ini_url(root, url.replace("%", "%%"))


def fm32_compare_type_off(root: Path, url: str) -> None:
    wider = (AUTHOR[0], "name: Mapped[str] = mapped_column(String(150))", AUTHOR[2])
    base_project(root, url, models=models_py(wider))
    edit(root / "alembic" / "env.py", "compare_type=True,", "compare_type=False,")


def fm42_sqlite_without_batch(root: Path, url: str) -> None:
    base_project(root, url)
    env = stock_env_py().replace(
        "target_metadata = None", "from app.models import Base\ntarget_metadata = Base.metadata")
    (root / "alembic" / "env.py").write_text(env, encoding="utf-8")
    set_ini_url(root, url.replace("%", "%%"))
