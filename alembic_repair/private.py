"""Keeping secrets and backed-up data private on disk (design section 7: "No secret on disk").

* Everything under the project's ``.alembic_repair/`` is private: folders 0700, files 0600
  (`private_dir`, `make_private`, `move_private`), whatever the umask; a backup holds rows and
  the old alembic.ini (with its URL), so it must not be readable by other local users.
* The client tools (mariadb-dump, mariadb) get their connection settings through an inherited
  pipe (`option_fd`: ``--defaults-extra-file=/dev/fd/N``), never a file: a kill -9 can leave
  nothing behind, and the password never goes on a command line.
* `sweep_temp` removes the ``alembic-repair-*/client.cnf`` folders that earlier versions wrote
  to the temp folder and a killed run left there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

__all__ = ["move_private", "make_private", "option_fd", "private_dir", "sweep_temp"]

#: The name prefix of the temporary folders earlier versions wrote ``client.cnf`` into.
LEGACY_TEMP_PREFIX = "alembic-repair-"
#: A legacy option folder younger than this may belong to a live run (its client reads the
#: file right after it is written, so a few seconds would do).
LEGACY_TEMP_AGE = 300.0


def private_dir(path: Path) -> Path:
    """``mkdir -p path`` where every folder created, and `path` itself, is 0700 (a plain
    ``mkdir(mode=0o700, parents=True)`` gives the parents the umask's mode)."""
    missing: list[Path] = []
    here = path
    while not here.is_dir():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise
        os.chmod(folder, 0o700)
    os.chmod(path, 0o700)
    _ignore_in_git(path)
    return path


#: The tool's own folder in a project.
STATE_DIR = ".alembic_repair"
GITIGNORE = ("# Written by alembic-repair: backups hold your rows, database_url your password.\n"
             "*\n")


def _ignore_in_git(path: Path) -> None:
    """The tool's folder ignores itself: backups hold the data and possibly the password, and a
    ``git add .`` must not commit them."""
    for folder in (path, *path.parents):
        if folder.name == STATE_DIR:
            marker = folder / ".gitignore"
            if not marker.exists():
                marker.write_text(GITIGNORE)
                os.chmod(marker, 0o600)
            return


def make_private(path: Path) -> None:
    """`path` 0600 (a file) or, for a folder, every folder in it 0700 and every file 0600."""
    if path.is_symlink():
        return
    if not path.is_dir():
        os.chmod(path, 0o600)
        return
    os.chmod(path, 0o700)
    for folder, dirs, files in os.walk(path):
        for name in dirs:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), 0o700)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), 0o600)


def move_private(source: Path, dest: Path) -> None:
    """Move `source` into a private folder (the backup): the parents of `dest` are created
    0700 and what was moved becomes 0600 (a moved file keeps its mode otherwise)."""
    private_dir(dest.parent)
    shutil.move(str(source), str(dest))
    make_private(dest)


def public_mode(path: Path) -> None:
    """A file moved back out of the backup gets a new file's mode (0666 less the umask)."""
    if path.is_file() and not path.is_symlink():
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(path, 0o666 & ~mask)


def _pipe_capacity(fd: int, wanted: int) -> None:
    """Grow the pipe to hold `wanted` bytes when the platform allows it (Linux)."""
    grow = getattr(fcntl, "F_SETPIPE_SZ", None)
    if grow is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, grow, wanted)


@contextlib.contextmanager
def option_fd(text: str) -> Iterator[tuple[str, int]]:
    """(``/dev/fd/N``, N): an option file that exists only as a pipe holding `text`, for a
    child started with ``pass_fds=(N,)``. The whole text is written (without blocking) and the
    write end closed before the child starts, so the child reads it, then end of file; the
    read end is closed when the block ends. Nothing touches the disk."""
    data = text.encode("utf-8")
    read, write = os.pipe()
    try:
        try:
            os.set_blocking(write, False)
            if len(data) > 4096:  # one page always fits; more may need a bigger pipe
                _pipe_capacity(write, len(data))
            done = 0
            while done < len(data):
                done += os.write(write, data[done:])
        except BlockingIOError:
            raise ConfigError("the database connection settings are too long to hand to the "
                              "client tools; use backup method 'python'") from None
        finally:
            os.close(write)
        yield f"/dev/fd/{read}", read
    finally:
        os.close(read)


def sweep_temp(now: float | None = None) -> list[Path]:
    """Remove the option folders (``alembic-repair-*`` holding only ``client.cnf``, owned by
    us, older than `LEGACY_TEMP_AGE`) that earlier versions left in the temp folder when they
    were killed; returns what was removed. Errors are ignored: this is housekeeping."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(LEGACY_TEMP_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
                    or now - info.st_mtime < LEGACY_TEMP_AGE):
                continue
            if set(os.listdir(entry.path)) - {"client.cnf"}:
                continue  # not one of ours
            shutil.rmtree(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed
