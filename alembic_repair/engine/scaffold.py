"""alembic.ini, env.py and script.py.mako, written from our templates, idempotently.

Each generated file carries a checksum line. That is how a rerun tells our own untouched output
(safe to refresh) from a file the user edited (kept, unless ``overwrite=True``, and then backed
up first). Rendering depends only on its inputs, so regenerating with the same inputs writes the
same bytes and touches nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template
from typing import Literal

from ..errors import ConfigError
from ..private import private_dir
from .project import Project

Status = Literal["created", "unchanged", "updated", "kept", "replaced"]
CHECKSUM_KEY = "alembic-repair-checksum:"


@dataclass(frozen=True)
class FileChange:
    """What writing one scaffold file did; `backup` is set when a user's file was replaced."""

    path: Path
    status: Status
    backup: Path | None = None

    @property
    def changed(self) -> bool:
        return self.status in ("created", "updated", "replaced")


def _template(name: str) -> str:
    return resources.files("alembic_repair").joinpath(f"templates/{name}").read_text("utf-8")


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def _with_header(body: str, comment: str) -> str:
    return f"{comment} {CHECKSUM_KEY} {_checksum(body)} (edit freely: edits are kept)\n{body}"


def restamp(header: str, body: str) -> str:
    """`body` under a fresh checksum line in `header`'s comment style: a generated file we
    edited ourselves (env_filter) stays ours, so bootstrap keeps refreshing it."""
    return _with_header(body, header.split(CHECKSUM_KEY, 1)[0].strip() or "#")


def _is_ours_untouched(text: str) -> bool:
    first, _, body = text.partition("\n")
    marker = first.split(CHECKSUM_KEY, 1)
    return len(marker) == 2 and marker[1].split()[:1] == [_checksum(body)]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        mode = path.stat().st_mode & 0o7777  # a refreshed file keeps its mode
    else:
        umask = os.umask(0o022)
        os.umask(umask)
        mode = 0o666 & ~umask  # as open() would; mkstemp's 0600 would lock the user out
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _backup(project: Project, path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    try:
        rel = path.resolve().relative_to(project.root)
    except ValueError:
        rel = Path(path.name)
    dest = project.state_dir / "backups" / "scaffold" / stamp / rel
    private_dir(project.state_dir)
    private_dir(dest.parent)
    dest.write_bytes(path.read_bytes())
    dest.chmod(0o600)
    return dest


def write_file(project: Project, path: Path, text: str, *, overwrite: bool = False) -> FileChange:
    """Write `text` to `path` unless it is already there or the user owns the file."""
    if not path.exists():
        _atomic_write(path, text)
        return FileChange(path, "created")
    current = path.read_text(encoding="utf-8", errors="replace")
    if current == text:
        return FileChange(path, "unchanged")
    if _is_ours_untouched(current):
        _atomic_write(path, text)
        return FileChange(path, "updated")
    if not overwrite:
        return FileChange(path, "kept")
    backup = _backup(project, path)
    _atomic_write(path, text)
    return FileChange(path, "replaced", backup)


def render_alembic_ini(project: Project) -> str:
    try:
        script_dir = project.script_location.relative_to(project.root).as_posix()
    except ValueError:
        script_dir = project.script_location.as_posix()
    body = Template(_template("alembic.ini.tmpl")).substitute(script_dir=script_dir)
    return _with_header(body, "#")


def render_env_py(models: str, kept: Iterable[str] = ()) -> str:
    """env.py for `models`, hiding the tool's tables and `kept` from autogenerate."""
    from .env_filter import render_block

    module, _, attr = models.partition(":")
    parts = (attr or "metadata").split(".")
    if not module or not all(p.isidentifier() for p in [*module.split("."), *parts]):
        raise ConfigError(f"--models {models!r}: expected module:attribute, e.g. app.models:Base")
    rest = "".join(f".{p}" for p in parts[1:])
    body = Template(_template("env.py.tmpl")).substitute(
        models_module=module, models_attr=parts[0], models_rest=rest,
        filter_block=render_block(kept).strip("\n"),
    )
    return _with_header(body, "#")


def render_script_template() -> str:
    return _with_header(_template("script.py.mako.tmpl"), "##")


def write_alembic_ini(project: Project, *, overwrite: bool = False) -> FileChange:
    return write_file(project, project.ini_path, render_alembic_ini(project), overwrite=overwrite)


def write_env_py(project: Project, models: str, *, overwrite: bool = False) -> FileChange:
    """The kept set is ``ignore_tables`` plus what the current env.py keeps (a table `fix`
    kept out of autogenerate stays out when the file is refreshed)."""
    from .env_filter import kept_in

    kept = set(project.ignore_tables)
    if project.env_py.is_file():
        kept |= kept_in(project.env_py.read_text(encoding="utf-8", errors="replace"))
    return write_file(project, project.env_py, render_env_py(models, kept), overwrite=overwrite)


def write_script_template(project: Project, *, overwrite: bool = False) -> FileChange:
    return write_file(project, project.script_template, render_script_template(),
                      overwrite=overwrite)


def ensure_versions_dir(project: Project) -> FileChange | None:
    """versions/ with a .gitkeep, so a clone without revisions still has the folder (git skips
    empty folders, and newer Alembic then silently upgrades nothing)."""
    if project.versions_dir.is_dir():
        return None
    project.versions_dir.mkdir(parents=True)
    keep = project.versions_dir / ".gitkeep"
    keep.touch()
    return FileChange(keep, "created")


def is_generated(path: Path) -> bool:
    """True when `path` is our output, untouched since (so refreshing it loses nothing)."""
    return _is_ours_untouched(path.read_text(encoding="utf-8", errors="replace"))
