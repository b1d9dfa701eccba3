"""A repeated doctor on an unchanged, healthy project, answered from its cached verdict.

A full doctor imports Alembic, runs env.py, reflects and replays. When nothing it reads has
changed since a healthy verdict (the project's files, by size and modification time; the
resolved URL; the alembic_version rows; the catalogue signature of every table) the verdict
cannot differ, and this module gives it after one catalogue query, without importing Alembic
or Typer. Anything unusual (other options, an error, no verdict) means: run the full doctor.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from ..engine.database import connect_readonly
from ..engine.project import Project
from ..engine.state.catalogue import table_signatures
from ..engine.state.recorder import recorded_rows

CACHE_VERSION = 1
_SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", ".alembic_repair", ".tox",
         ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "build", "dist"}
#: The global options of cli.py this path understands (anything else: the full CLI).
_GLOBAL = {"--project": "project", "-p": "project", "--config": "config", "-c": "config",
           "--url": "url"}


def _verdict_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alembic-repair" / "verdicts"


def _files(project: Project) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of everything doctor reads from the project folder."""
    found = []
    for folder, dirs, names in os.walk(project.root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("."))
        for name in sorted(names):
            if name.endswith((".py", ".ini", ".toml", ".mako", ".yml", ".yaml", ".env")):
                try:
                    stat = os.stat(os.path.join(folder, name))
                except OSError:  # a dangling link or a symlink loop: doctor reports it
                    found.append((os.path.join(folder, name), -1, -1))
                    continue
                found.append((os.path.join(folder, name), stat.st_size, stat.st_mtime_ns))
    if not project.script_location.is_relative_to(project.root):
        for path in sorted(project.script_location.rglob("*.py")):
            stat = path.stat()
            found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return found


def fingerprint(project: Project) -> str | None:
    """Everything a doctor verdict depends on, hashed; None when it cannot be read cheaply."""
    try:
        engine = connect_readonly(project)
        if engine is None:
            return None
        try:
            with engine.connect() as conn:
                recorded = recorded_rows(conn)
                if recorded is None:
                    return None
                rows = sorted(recorded)
                signatures = sorted(table_signatures(conn).items())
        finally:
            engine.dispose()
    except Exception:  # no version table, unreachable, ...: the full doctor will say what
        return None
    from ..version import __version__

    data_file = _sqlite_file(project)  # SQLite findings look at values (AR407): any write counts
    digest = hashlib.sha256(repr((CACHE_VERSION, __version__, sys.version, data_file,
                                  str(project.url),  # the text: the repr hides the password
                                  project.url_source, project.models, str(project.ini_path),
                                  _files(project), rows, signatures)).encode())
    return digest.hexdigest()


def _sqlite_file(project: Project) -> tuple[int, int] | None:
    url = project.url.parsed
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    try:
        stat = os.stat(url.database)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def remember(key: str, answers: dict[str, str]) -> None:
    path = _verdict_dir() / f"{key}.marshal"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(marshal.dumps(answers))
        tmp.replace(path)
    except OSError:
        pass


def _recall(key: str) -> dict[str, str] | None:
    try:
        data: Any = marshal.loads((_verdict_dir() / f"{key}.marshal").read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def parse(argv: list[str]) -> tuple[dict[str, str], str] | None:
    """(global options, format) for a plain ``doctor`` call; None for anything else."""
    options: dict[str, str] = {}
    fmt, args, i = "text", list(argv), 0
    while i < len(args) and args[i] != "doctor":
        name = args[i]
        if name not in _GLOBAL or i + 1 >= len(args):
            return None
        options[_GLOBAL[name]] = args[i + 1]
        i += 2
    rest = args[i + 1:]
    if i >= len(args):
        return None
    if rest in (["--format", "json"], ["--format", "text"]):
        fmt = rest[1]
    elif rest:
        return None
    return options, fmt


def cached_answer(argv: list[str]) -> str | None:
    """The stored healthy verdict for this doctor command line (text or JSON, as printed the
    first time), or None to run the full doctor. The console script prints it."""
    parsed = parse(argv)
    if parsed is None:
        return None
    options, fmt = parsed
    try:
        project = Project.discover(options.get("project"), config=options.get("config"),
                                   url=options.get("url"), strict=False)
    except Exception:
        return None
    if project.problems:
        return None
    key = fingerprint(project)
    verdict = _recall(key) if key else None
    if verdict is None or fmt not in verdict:
        return None
    return str(verdict[fmt])
