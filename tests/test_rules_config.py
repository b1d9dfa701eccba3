"""AR1xx codes that no failure-mode scenario builds: each triggered, and absent when healthy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alembic_repair import Project, doctor
from alembic_repair.testing.scenarios import build


@pytest.fixture
def healthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "proj"
    root.mkdir()
    url = f"sqlite:///{tmp_path}/app.db"
    build("healthy", root, url)
    return root, url


def codes(root: Path, url: str) -> dict[str, str | None]:
    diagnosis = doctor(Project.discover(root, url=url, strict=False))
    return {f.code: f.location for f in diagnosis.findings}


def test_healthy_project_has_none_of_them(healthy: tuple[Path, str]) -> None:
    assert codes(*healthy) == {}


def test_ar102_unreadable_ini(healthy: tuple[Path, str]) -> None:
    root, url = healthy
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]", "[alembic]\n= nothing", 1))
    assert codes(root, url).get("AR102") == "alembic.ini:5"


def test_ar103_script_location_missing(healthy: tuple[Path, str]) -> None:
    root, url = healthy
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace("%(here)s/alembic", "%(here)s/migrations", 1))
    found = codes(root, url)
    assert found.get("AR103") == "alembic.ini" and "AR104" not in found


def test_ar104_env_py_missing(healthy: tuple[Path, str]) -> None:
    root, url = healthy
    (root / "alembic" / "env.py").unlink()
    assert codes(root, url).get("AR104") == "alembic/env.py"


def test_ar111_prepend_sys_path_missing(healthy: tuple[Path, str]) -> None:
    root, url = healthy
    ini = root / "alembic.ini"
    ini.write_text("".join(line for line in ini.read_text().splitlines(keepends=True)
                           if not line.startswith("prepend_sys_path")))
    assert codes(root, url).get("AR111") == "alembic.ini"


def test_ar112_and_ar101_together_only_when_due(healthy: tuple[Path, str]) -> None:
    root, url = healthy
    shutil.rmtree(root / "alembic" / "versions")
    found = codes(root, url)
    assert "AR112" in found and "AR101" not in found


@pytest.mark.parametrize(("options", "reported"), [
    ("", True),  # never set anywhere: AR108
    ("opts = {'render_as_batch': True}\n", False),  # through a dict of options
    ("opts = dict(render_as_batch=True)\n", False),
    ("opts = {}\nopts['render_as_batch'] = True\n", False),
])
def test_ar108_only_when_render_as_batch_is_provably_missing(
        options: str, reported: bool, tmp_path: Path) -> None:
    """env.py's options passed through a variable, or a configure(**options) call that cannot be
    followed, never make a false AR108 (which fix could not repair either)."""
    from alembic_repair.engine.state.config import read_config

    root = tmp_path / "p"
    (root / "alembic").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/alembic\n")
    call = "context.configure(connection=connection, **opts)" if options else \
        "context.configure(connection=connection)"
    (root / "alembic" / "env.py").write_text(
        "from alembic import context\nconnection = None\n" + options + call + "\n")
    project = Project(root, root / "alembic.ini", root / "alembic", "sqlite:///app.db")

    assert read_config(project).render_as_batch is not reported


def test_ar108_not_claimed_through_an_unfollowed_kwargs_call(tmp_path: Path) -> None:
    from alembic_repair.engine.state.config import read_config

    root = tmp_path / "p"
    (root / "alembic").mkdir(parents=True)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/alembic\n")
    (root / "alembic" / "env.py").write_text(
        "from alembic import context\nfrom app.settings import ALEMBIC_OPTIONS\n"
        "context.configure(connection=None, **ALEMBIC_OPTIONS)\n")
    project = Project(root, root / "alembic.ini", root / "alembic", "sqlite:///app.db")

    assert read_config(project).render_as_batch
