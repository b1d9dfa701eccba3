"""What the project's files say about themselves, read without running them (AR1xx)."""

from __future__ import annotations

import ast
import configparser
from dataclasses import dataclass
from pathlib import Path

from ..env_filter import EnvFilter, UnsafeEnv, read_filter, read_source
from ..project import Project


@dataclass(frozen=True)
class ConfigState:
    ini_exists: bool
    script_location_raw: str | None  # as written in alembic.ini
    prepend_sys_path: bool
    script_location_exists: bool
    env_py_exists: bool
    versions_dir_exists: bool
    render_as_batch: bool  # env.py passes render_as_batch somewhere
    compare_type_off: bool  # env.py passes compare_type=False
    env_filter: EnvFilter | None = None  # what env.py hides from autogenerate (None: no env.py)


def _env_flags(env_py: Path) -> tuple[bool, bool]:
    try:
        tree = ast.parse(env_py.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return True, False  # unreadable: AR105 speaks for it
    batch = off = False
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "render_as_batch":
            batch = True
        # passed through a variable ({"render_as_batch": ...}, opts["render_as_batch"]) or a
        # configure(**options) we cannot follow: not provably missing, so never reported
        if isinstance(node, ast.Constant) and node.value == "render_as_batch":
            batch = True
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "configure"
                and any(k.arg is None for k in node.keywords)):
            batch = True
        if (isinstance(node, ast.keyword) and node.arg == "compare_type"
                and isinstance(node.value, ast.Constant) and node.value.value is False):
            off = True
    return batch, off


def read_config(project: Project) -> ConfigState:
    raw, prepend = None, False
    if project.ini_path.is_file():
        parser = configparser.RawConfigParser()
        try:
            parser.read(project.ini_path, encoding="utf-8")
            raw = parser.get("alembic", "script_location", fallback=None)
            prepend = parser.has_option("alembic", "prepend_sys_path")
        except (configparser.Error, UnicodeDecodeError):
            pass
    batch, off = _env_flags(project.env_py) if project.env_py.is_file() else (True, False)
    return ConfigState(
        ini_exists=project.ini_path.is_file(),
        script_location_raw=raw,
        prepend_sys_path=prepend,
        script_location_exists=project.script_location.is_dir(),
        env_py_exists=project.env_py.is_file(),
        versions_dir_exists=project.versions_dir.is_dir(),
        render_as_batch=batch,
        compare_type_off=off,
        env_filter=_env_filter(project.env_py),
    )


def _env_filter(env_py: Path) -> EnvFilter | None:
    try:
        return read_filter(read_source(env_py)[0])
    except UnsafeEnv:
        return None
