"""doctor reports problems in the user's project as findings with exit 1; exit 2 is for the
tool's own usage errors; SQLite without batch mode is a note until a pending revision needs
it (issue 13, item 8)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.operations import ops
from helpers import cli
from sqlalchemy import Column, Integer
from state_builders import C, config, healthy, revision, with_pending

from alembic_repair.diagnose.diagnosis import diagnose
from alembic_repair.errors import ConfigError, IniError, UrlError
from alembic_repair.testing.scenarios import build


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _severity(state: object, code: str) -> str:
    (found,) = [f for f in diagnose(state).findings if f.code == code]  # type: ignore[arg-type]
    return found.severity


# -- exit codes --------------------------------------------------------------------------------


def test_target_metadata_none_is_an_ar106_finding_with_exit_1(tmp_path: Path) -> None:
    """The stock `alembic init` env.py: reported, not a usage error (it exited 2)."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    root = tmp_path / "proj"
    build("fm23_target_metadata_none", root, url)
    run = cli("doctor", cwd=root)  # the URL is alembic.ini's
    assert run.code == 1, run.output
    assert "AR106 error alembic/env.py: target_metadata is None: alembic/env.py passes " \
           "target_metadata=None" in run.stdout
    assert "AR108 info alembic/env.py" in run.stdout  # nothing pending needs batch mode
    as_json = cli("doctor", "--format", "json", cwd=root)
    assert as_json.code == 1
    data = json.loads(as_json.stdout)
    assert data["healthy"] is False
    assert {(f["code"], f["severity"]) for f in data["findings"]} >= {
        ("AR106", "error"), ("AR108", "info")}


def test_target_metadata_none_without_any_models_is_still_a_finding(tmp_path: Path) -> None:
    """No models anywhere to fall back on: still AR106 and exit 1, and fix says what to pass."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    root = tmp_path / "proj"
    build("fm23_target_metadata_none", root, url)
    shutil.rmtree(root / "app")
    (root / "pyproject.toml").unlink()  # it named app.models:Base
    run = cli("doctor", cwd=root)
    assert run.code == 1, run.output
    assert "AR106 error" in run.stdout and "Traceback" not in run.output
    assert "AR105" not in run.stdout
    fixing = cli("fix", "--yes", cwd=root)
    assert fixing.code == 1, fixing.output
    assert "left  AR106 alembic/env.py: the models cannot be found: pass --models " \
           "module:Base" in fixing.stdout


def test_project_configuration_findings_exit_1() -> None:
    missing_ini = healthy(config=config(ini_exists=False))
    assert [f.code for f in diagnose(missing_ini).findings] == ["AR101"]
    assert diagnose(missing_ini).exit_code == 1
    unreadable = healthy(problems=(IniError("/x/alembic.ini:3: cannot be parsed"),),
                         config=config(prepend_sys_path=False, script_location_raw=None))
    assert diagnose(unreadable).exit_code == 1
    assert diagnose(healthy(models_none=True, models=None)).exit_code == 1


def test_an_unusable_url_or_models_given_on_the_command_line_is_a_usage_error() -> None:
    bad = UrlError("--url: 'nope' is not a database URL")
    from_ini = healthy(problems=(bad,))
    assert diagnose(from_ini).exit_code == 1
    state = healthy(problems=(bad,))
    from_cli = replace(state, project=replace(state.project, url_source="--url"))
    assert diagnose(from_cli).exit_code == 2
    env_fails = ConfigError("alembic/env.py:7: running alembic/env.py failed with "
                            "ModuleNotFoundError: No module named 'app'; fix the import")
    assert diagnose(healthy(models_error=env_fails)).exit_code == 1  # the project's env.py
    wrong_option = ConfigError("--models app.models:Nope: app.models has no attribute 'Nope'; "
                               "name the declarative Base or its MetaData")
    assert diagnose(healthy(models_error=wrong_option)).exit_code == 2  # the command line's


def test_the_cli_still_exits_2_on_its_own_usage_errors(tmp_path: Path) -> None:
    run = cli("--url", "not a url", "doctor", cwd=tmp_path)
    assert run.code == 2, run.output
    assert "--url: 'not a url' is not a database URL" in run.stderr
    assert cli("doctor", "--format", "yaml", cwd=tmp_path).code == 2


def test_an_unreadable_alembic_ini_is_a_finding_with_exit_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    root = tmp_path / "proj"
    build("healthy", root, url)
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", "[alembic]\nthis is not ini\n", 1))
    run = cli("doctor", cwd=root, url=url)
    assert run.code == 1, run.output
    assert "AR102 error alembic.ini:5: alembic.ini cannot be read" in run.stdout


# -- AR108: a note until a pending revision needs batch mode -----------------------------------


def test_sqlite_without_batch_mode_is_a_note_on_a_healthy_project(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    root = tmp_path / "proj"
    build("fm42_sqlite_without_batch", root, url)
    run = cli("doctor", cwd=root)
    assert run.code == 0, run.output
    assert "AR108 info alembic/env.py: SQLite without batch mode" in run.stdout
    assert "0 errors, 0 warnings, 1 note" in run.stdout


def test_sqlite_without_batch_mode_warns_once_a_pending_revision_needs_it() -> None:
    alter = ops.AlterColumnOp("post", "title", modify_nullable=True)
    no_batch = config(render_as_batch=False)
    needs = with_pending(revision(C, alter), config=no_batch)
    assert _severity(needs, "AR108") == "warning"
    assert {"AR507", "AR108"} <= {f.code for f in diagnose(needs).findings}
    in_batch = with_pending(revision(C, alter, batch=True), config=no_batch)
    assert _severity(in_batch, "AR108") == "info"
    adds = with_pending(revision(C, ops.AddColumnOp("post", Column("views", Integer()))),
                        config=no_batch)
    assert _severity(adds, "AR108") == "info"  # SQLite adds a column in place
    assert _severity(healthy(config=no_batch), "AR108") == "info"
    assert diagnose(healthy(config=no_batch)).healthy
