"""AR1xx: the project's files and configuration."""

from __future__ import annotations

import configparser
from collections.abc import Iterator

from ...engine.state.read import State
from ...errors import IniError, PyprojectError, UrlError
from ..findings import (
    AR101,
    AR102,
    AR103,
    AR104,
    AR105,
    AR106,
    AR107,
    AR108,
    AR109,
    AR110,
    AR111,
    AR112,
    AR114,
    Finding,
)
from ..subjects import (
    DatabaseUrl,
    IniSetting,
    SetupFile,
    SourceFile,
    Subject,
    UrlProblem,
    VersionsDir,
    split_location,
)
from . import rule


def _file(message: str, state: State) -> tuple[str, int | None] | None:
    """The file (and line) a configuration error names in its first words, if any."""
    head = message.split(": ", 1)[0]
    root = str(state.project.root) + "/"
    return split_location(head.removeprefix(root)) if (
        "/" in head or head.endswith(".ini")) else None


def _problem(problem: Exception, state: State) -> tuple[Subject | None, object]:
    where = _file(str(problem), state)
    if isinstance(problem, UrlError):
        # ConfigParser's InterpolationError is the context of the one UrlError it causes
        interpolation = isinstance(problem.__context__, configparser.InterpolationError)
        return DatabaseUrl(*where) if where else DatabaseUrl(), UrlProblem(interpolation)
    return (SetupFile(*where) if where else None), None


@rule("AR101", "AR102", "AR103", "AR104", "AR107", "AR110", "AR111", "AR112", "AR114")
def config_files(state: State) -> Iterator[Finding]:
    project, config = state.project, state.config
    for problem in project.problems:
        code = AR107 if isinstance(problem, UrlError) else AR114 if isinstance(
            problem, PyprojectError) else AR102
        message = str(problem).replace(f"{project.root}/", "")
        yield code.finding(message, *_problem(problem, state))
    if not config.ini_exists:
        yield AR101.finding(f"no {project.rel(project.ini_path)} in {project.root}",
                            SetupFile(project.rel(project.ini_path)))
        return
    if not config.script_location_exists:
        yield AR103.finding(
            f"script_location {config.script_location_raw!r} resolves to "
            f"{project.script_location}, which does not exist",
            IniSetting("alembic.ini", "script_location"))
        return
    if any(isinstance(problem, IniError) for problem in project.problems):
        return  # nothing more can be read from it
    raw = config.script_location_raw or ""
    if raw and not raw.startswith(("%(here)s", "/")) and ":" not in raw:
        yield AR110.finding(f"script_location = {raw} is resolved against the working "
                            "directory by Alembic", IniSetting("alembic.ini", "script_location"))
    if not config.prepend_sys_path:
        yield AR111.finding("alembic.ini has no prepend_sys_path",
                            IniSetting("alembic.ini", "prepend_sys_path"))
    if not config.env_py_exists:
        yield AR104.finding(f"{project.rel(project.env_py)} does not exist",
                            SetupFile(project.rel(project.env_py)))
    if not config.versions_dir_exists:
        yield AR112.finding(f"{project.rel(project.versions_dir)}/ does not exist",
                            VersionsDir(project.rel(project.versions_dir)))


@rule("AR105", "AR106", "AR108", "AR109")
def environment(state: State) -> Iterator[Finding]:
    project, config = state.project, state.config
    env_py = SetupFile(project.rel(project.env_py))
    if state.models_error is not None:
        message = str(state.models_error)
        head = message.split(": ", 1)[0]
        yield AR105.finding(message, SourceFile(*split_location(head)) if ".py" in head
                            else env_py)
    if state.models_none:
        yield AR106.finding(f"{project.rel(project.env_py)} passes target_metadata=None", env_py)
    if config.env_py_exists and project.dialect == "sqlite" and not config.render_as_batch:
        yield AR108.finding(f"{project.rel(project.env_py)} never sets render_as_batch", env_py,
                            severity=None if _batch_needed(state) else "info")
    if config.env_py_exists and config.compare_type_off:
        yield AR109.finding(f"{project.rel(project.env_py)} passes compare_type=False", env_py)


def _batch_needed(state: State) -> bool:
    """Whether a pending revision needs batch mode (an ALTER SQLite cannot do in place: what
    AR507 reports). Until then AR108 is a note: a healthy project without it stays healthy."""
    from .safety import sqlite_outside_batch  # local: safety's rules register after ours

    return next(iter(sqlite_outside_batch(state)), None) is not None
