"""Writing a backup under the migration lock: the method chosen, a ``.partial-<pid>`` folder
renamed into place only once sealed and verified, so a failed or killed backup never looks whole."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import Connection

from ...engine.database import connect
from ...engine.locking import migration_lock
from ...engine.project import Project
from ...errors import AlembicRepairError, ConfigError
from . import manifest as manifest_file
from .checksums import Progress
from .dump_format import DUMP_FILE, DUMP_GZ, DUMP_OPTIONS
from .dump_method import backup_mysql_dump, dump_tools, float_columns
from .manifest import (
    MANIFEST,
    Manifest,
    check_dialect,
    database_identity,
    file_sha256,
    mkdir_private,
    seal_of,
)
from .python_method import backup_mysql
from .sqlite_method import backup_sqlite
from .verifying import verify_backup

#: A backup being written: ``<final name>.partial-<pid>`` beside where it will be renamed.
_PARTIAL = re.compile(r"^.+\.partial-(\d+)$")


def _new_dir(project: Project, dest: Path | None) -> tuple[Path, Path]:
    """(the backup's final folder, not yet there; the folder to write it in, created 0700).
    The final name appears only once the manifest is sealed (`_place`), so a killed backup
    leaves only a ``.partial-<pid>`` folder, which the next backup removes."""
    try:
        final = _final_dir(project, dest)
        _remove_stale_partials(final.parent)
        work = final.with_name(f"{final.name}.partial-{os.getpid()}")
        _discard(work)  # an earlier failed attempt of this very process
        mkdir_private(work)
        return final, work
    except OSError as err:  # before anything is written: a bad destination is a usage error
        where = err.filename or dest or project.state_dir
        raise ConfigError(f"backup: cannot create the backup folder {where} "
                          f"({err.strerror}); name a folder you may write to") from None


def _final_dir(project: Project, dest: Path | None) -> Path:
    if dest is not None:
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise ConfigError(f"backup: {dest} is not empty; name a new folder")
        mkdir_private(dest.parent)
        return dest
    root = project.state_dir / "backups"
    mkdir_private(project.state_dir)
    mkdir_private(root)
    return _free_name(root)


def _free_name(root: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, counter = root / stamp, 1
    while path.exists():
        counter += 1
        path = root / f"{stamp}-{counter}"
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process, alive
        return True
    return True


def _remove_stale_partials(folder: Path) -> None:
    """Remove what killed backups left in `folder`: ``*.partial-<pid>`` folders whose process
    is gone (a live pid, even a reused one, keeps its folder)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        found = _PARTIAL.match(entry.name)
        if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))) \
                and entry.is_dir() and not entry.is_symlink():
            _discard(entry)


def _place(work: Path, final: Path, named: bool) -> Path:
    """Rename the sealed backup into place; an automatic name taken meanwhile by another
    backup moves on to the next free one (a named, empty destination is replaced)."""
    while True:
        try:
            os.rename(work, final)
            return final
        except OSError as err:
            if named or err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            final = _free_name(final.parent)


def backup(project: Project, dest: Path | None = None, *, method: str = "auto",
           progress: Progress | None = None, compress: bool = False) -> Manifest:
    """Write a verified backup of the project's database; returns its manifest.

    `method`: ``"dump"`` (MySQL/MariaDB: mariadb-dump or mysqldump for the data),
    ``"python"`` (no client program: tsv files the server formats), ``"auto"`` (dump when
    the tools are on PATH and no table has a FLOAT column, which mariadb-dump would round).
    `progress(table, rows_done, rows_total)` is called per table and per batch of rows.
    `compress`: the dump method's data gzipped (level 1; about 3.5x smaller, and on a busy
    machine about 2x slower)."""
    check_dialect(project, "backup")
    _method(project, method)
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            return backup_locked(project, conn, dest, method=method, progress=progress,
                                 compress=compress)
    finally:
        engine.dispose()


def backup_locked(project: Project, conn: Connection, dest: Path | None = None, *,
                  method: str = "auto", progress: Progress | None = None,
                  compress: bool = False) -> Manifest:
    """`backup` for a caller that already holds the migration lock on `conn` (as
    `migration_lock` yields it): no lock taken, no guard. Any transaction open on `conn` is
    ended (rolled back) first, so commit your own changes before; `conn` is left without an
    open transaction. Returns the verified manifest."""
    dialect = check_dialect(project, "backup")
    chosen = _method(project, method)
    if conn.in_transaction():
        conn.rollback()
    if chosen == "dump":
        chosen = _dump_unless_floats(conn, explicit=method == "dump")
    method = chosen
    final, path = _new_dir(project, dest)
    try:
        try:
            if dialect == "sqlite":
                tables = backup_sqlite(project, path, progress)
            elif method == "dump":
                data = DUMP_GZ if compress else DUMP_FILE
                tables, written = backup_mysql_dump(project, conn, path / data, progress)
            else:
                tables, digests = backup_mysql(conn, path, progress)  # sha256 as written
        finally:
            if conn.in_transaction():
                conn.rollback()
        if dialect == "mysql" and method == "python":
            files = {p.name: digests.get(p.name) or file_sha256(p)
                     for p in sorted(path.iterdir())}
        else:
            files = {p.name: written[0] if method == "dump" and p.name == data
                     else file_sha256(p) for p in sorted(path.iterdir())}
        manifest = Manifest(path, dialect, project.masked_url,
                            datetime.now(timezone.utc).isoformat(timespec="seconds"), tables,
                            files, database_identity(project.url), method,
                            DUMP_OPTIONS if method == "dump" else ())
        doc = manifest.as_dict()
        doc["seal"] = seal_of(doc)
        with manifest_file.open_private(path / MANIFEST) as handle:
            handle.write(json.dumps(doc, indent=2).encode("utf-8") + b"\n")
        path = _place(path, final, named=dest is not None)
        # the dump was verified once written (completion trailer, rows per table counted in
        # the file against the server's counts, sha256 of the file): not read back again
        return verify_backup(path, deep=method != "dump")
    except BaseException as err:
        _discard(path)
        if _disk_full(err):
            raise AlembicRepairError(
                f"backup: disk full while writing {final}; the partial backup was removed and "
                "the database is unchanged; free some space (or write the backup elsewhere) "
                "and run it again") from None
        raise


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    # A file size limit (EFBIG) reaches SQLite's backup as an I/O error on the copy we write.
    return isinstance(err, sqlite3.OperationalError) and (
        "disk is full" in str(err) or "disk I/O error" in str(err))


def _discard(path: Path) -> None:
    """Remove a partial backup folder."""
    shutil.rmtree(path, ignore_errors=True)


def _dump_unless_floats(conn: Connection, *, explicit: bool) -> str:
    """"dump", or "python" when a table has a FLOAT column (`float_columns`): fix, reset and
    drop back up with the default method, so "auto" must not lose those values; an explicit
    "dump" is refused before anything is written."""
    floats = float_columns(conn)
    conn.rollback()
    if floats and explicit:
        more = f" (and {len(floats) - 1} more)" if len(floats) > 1 else ""
        raise ConfigError(f"backup: method 'dump' cannot keep the FLOAT column {floats[0]}{more} "
                          "exactly (mariadb-dump writes 6 significant digits); use method "
                          "'python' or 'auto'")
    return "python" if floats else "dump"


def _method(project: Project, method: str) -> str:
    if method not in ("auto", "dump", "python"):
        raise ConfigError(f"backup: unknown method {method!r}; use auto, dump or python")
    if project.dialect == "sqlite":
        if method == "dump":
            raise ConfigError("backup: method 'dump' needs MySQL or MariaDB; SQLite is copied "
                              "with its online backup API (use method 'auto')")
        return "python"
    if method == "python":
        return "python"
    if dump_tools() is None:
        if method == "dump":
            raise ConfigError("backup: method 'dump' needs mariadb-dump (or mysqldump) and the "
                              "mariadb (or mysql) client on PATH; install them, or use "
                              "method 'python'")
        return "python"
    return "dump"
