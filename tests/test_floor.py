"""The dependency floor: pyproject.toml's minimums are what .ci/floor-constraints.txt pins (the
versions the floor run of .ci/run installs), and the alembic.ini we generate is read the same,
without a warning, by every Alembic from the floor on (CI runs this file at both ends)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import alembic
from alembic.config import Config
from alembic.script import ScriptDirectory
from helpers import write_project
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from alembic_repair import Project, write_alembic_ini

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "floor-constraints.txt").read_text(encoding="utf-8").splitlines()
    found = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    assert all(str(r.specifier).startswith("==") for r in found), found
    return {canonicalize_name(r.name): str(r.specifier)[2:] for r in found}


def _minimums() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    minimums = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                minimums[canonicalize_name(requirement.name)] = spec.version
    return minimums


def test_the_floor_pins_are_the_declared_minimums() -> None:
    pins = _pins()
    assert set(pins) == {"sqlalchemy", "alembic"}
    # "1.13" and "1.13.0" are the same floor
    assert {n: v.removesuffix(".0") for n, v in pins.items()} == \
           {n: _minimums()[n].removesuffix(".0") for n in pins}


def test_generated_alembic_ini_is_read_without_warnings(tmp_path: Path) -> None:
    """`path_separator = os` is what Alembic 1.16+ needs (without it: a DeprecationWarning on
    every command, and prepend_sys_path split on ':' and spaces); 1.13 to 1.15 ignore the key."""
    project = Project.discover(write_project(tmp_path), environ={})
    write_alembic_ini(project)
    (project.script_location / "versions").mkdir(parents=True)
    assert "\npath_separator = os\n" in project.ini_path.read_text()
    saved = list(sys.path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            script = ScriptDirectory.from_config(Config(str(project.ini_path)))
        assert str(project.root) in sys.path, alembic.__version__  # prepend_sys_path = %(here)s
    finally:
        sys.path[:] = saved
    assert Path(script.dir) == project.script_location
