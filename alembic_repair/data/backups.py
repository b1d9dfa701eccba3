"""Verified logical backups (design section 5): back up, verify, restore without losing a row.

``backup`` writes ``.alembic_repair/backups/<UTC stamp>/`` (folders 0700, files 0600), under the
migration lock so no migration runs meanwhile (`backup_locked` / `restore_locked` for a caller
that already holds it). Two methods:

* SQLite: the online backup API (`sqlite3.Connection.backup`) into ``database.sqlite``.
* MySQL/MariaDB, ``method="python"``: inside one consistent snapshot, per user table
  (`is_user_table`, plus ``alembic_version``) its ``SHOW CREATE TABLE`` (in ``schema.json``) and
  its rows, streamed with a server-side cursor (never a whole table in memory), into
  ``<table>.jsonl.gz``: one JSON array per row, values canonically encoded (`encode_value`:
  bytes as base64, Decimal, datetime, date, time and timedelta as tagged strings), so they
  decode to the same values. The content checksum (`table_checksum`) is sha256 over the
  canonically encoded rows in primary-key order; it is the same function on the live database,
  on the SQLite backup file and (via `rows_checksum`) on the jsonl files, so ``verify``
  recomputes exactly what ``backup`` recorded.
* MySQL/MariaDB, ``method="dump"`` (``"auto"`` picks it when `dump_tools` finds mariadb-dump or
  mysqldump and the mariadb or mysql client on PATH): the DDL in ``schema.json`` as above, the
  data by ``mariadb-dump --no-create-info --hex-blob --complete-insert --tz-utc`` into
  ``data.sql`` (``compress=True``: ``data.sql.gz``, gzip level 1), written by a thread that
  reads the dump's pipe. The password never goes on a command line nor into a file: the
  connection settings reach the tool through an inherited pipe named as
  ``--defaults-extra-file=/dev/fd/N`` (`private.option_fd`); tool messages are redacted.
  *Consistency*: our session (the lock connection) takes ``LOCK TABLES ... READ`` on every
  table first, so no session can write them; then mariadb-dump runs with
  ``--single-transaction`` (its reads are not blocked by READ locks) while our session takes
  ``CHECKSUM TABLE`` and ``COUNT(*)`` per table (`table_checksum_sql`); the tables are unlocked
  only when both are done. So the dump and the recorded counts/checksums describe the same
  rows. The price is that writers wait for the duration of the backup (the Python method does
  not block writers: it reads one snapshot). *Verified as written*: the rows per table are
  counted in the dump stream (one row per line: a count of line starts; otherwise string
  literals are blanked by one C-speed regex and the tuples counted) and must equal the
  server's counts, the stream must end with mariadb-dump's completion trailer, and the sha256
  and size of the bytes written go into the manifest. ``verify`` (no server needed) checks the
  sha256, the gzip stream if any, the trailer, and recounts the rows per table.
  ``CHECKSUM TABLE`` is defined over the server's record format, so it is compared only for
  identical column definitions on the same server version; `server_checksum` (COUNT(*) and an
  order-independent sum of 64-bit row hashes over any chosen columns, computed in SQL) compares
  a subset of columns, for a restore into a changed schema.

``manifest.json`` records the method, the dialect, the masked URL, the database's identity
(`database_identity`: dialect plus host/port/database, or the resolved SQLite file), the tables
in foreign-key order with their row count and content checksum, the sha256 of every file, and a
seal (sha256 over the manifest itself). Files the manifest does not list (e.g. a
``project-files/`` folder added by ``reset``) are ignored. A backup that fails (disk full, a
tool's error) is removed.

``restore`` verifies first, refuses a backup of another database unless ``other_database``,
then (under the lock, behind `guards.require`) fills the tables in foreign-key order. Into a
database without any of the backup's tables it first creates them from the stored schema;
otherwise the schema there is authoritative: rows of tables it lacks, and values of columns it
lacks, are reported and stay in the backup. A table that already holds rows is not touched
(reported in ``not_empty``), unless it holds exactly the backup's rows (same count and checksum
over the restored columns: a resumed restore), then it is reported in ``already`` and counts as
complete. Each table is filled in one transaction. A dump backup is loaded by the mariadb client
(the dump filtered to the tables to fill, strict SQL mode): straight into tables whose columns
are defined exactly as in the backup (then their ``CHECKSUM TABLE`` is compared with the
backup's), and through a scratch schema ``_ar_restore_<stamp>`` into any other (checked there
against the backup, then INSERT ... SELECT of the columns the table still has, compared by
`server_checksum` over those columns); the scratch schema is dropped afterwards. A Python
backup is compared by count and checksum over the restored columns.
"""

from __future__ import annotations

import base64
import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, BinaryIO

from sqlalchemy import column, create_engine, func, insert, inspect, select, table, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from .. import private
from ..engine import scratch as scratch_schemas
from ..engine.database import busy_timeout, connect, sqlite_backup_progress, target
from ..engine.locking import migration_lock
from ..engine.privileges import denied, missing_grant
from ..engine.project import Project
from ..engine.state.schema import VERSION_TABLE, is_user_table
from ..errors import AlembicRepairError, BackupCorrupt, ConfigError, RefusedUnsafe
from ..masking import redact
from . import guards

__all__ = ["MANIFEST", "Manifest", "RestoreReport", "TableInfo", "backup", "backup_locked",
           "database_identity", "decode_value", "encode_value", "restore", "restore_locked",
           "rows_checksum", "table_checksum", "verify"]

MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
SCHEMA_FILE = "schema.json"
FORMAT = 1
_BATCH = 1000
_CHUNK = 1 << 20

Row = Sequence[Any]
#: progress(table, rows done, rows in the table or None when unknown)
Progress = Callable[[str, int, "int | None"], None]


# -- canonical values --------------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """A JSON value that `decode_value` turns back into an equal value of the same type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    return {"$str": str(value)}  # e.g. a driver's set type: kept as its text


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$b64": lambda v: base64.b64decode(v, validate=True),
    "$decimal": Decimal,
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "$str": str,
}


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        ((tag, raw),) = value.items()
        return _DECODERS[tag](raw)
    return value


def _line(row: Row) -> bytes:
    return json.dumps([encode_value(v) for v in row], separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class TableSum:
    rows: int
    checksum: str


def rows_checksum(rows: Iterable[Row], each_row: Callable[[bytes], None] | None = None
                  ) -> TableSum:
    """sha256 over the canonical lines of `rows`, in the order given; `each_row` sees each line."""
    digest = hashlib.sha256()
    count = 0
    for row in rows:
        line = _line(row)
        digest.update(line + b"\n")
        if each_row is not None:
            each_row(line)
        count += 1
    return TableSum(count, digest.hexdigest())


def _order(conn: Connection, name: str, columns: Sequence[str]) -> list[str]:
    pk = inspect(conn).get_pk_constraint(name).get("constrained_columns") or []
    return list(pk) or list(columns)


def _stream(conn: Connection, name: str, columns: Sequence[str]) -> Iterator[Row]:
    """The rows of `name`, raw driver values, in primary-key order, streamed."""
    order = _order(conn, name, columns)
    query: Any = (select(*[column(c) for c in columns]).select_from(table(name))
             .order_by(*[column(c) for c in order]))
    result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(query)
    try:
        yield from result
    finally:
        result.close()


def table_columns(conn: Connection, name: str) -> list[str]:
    return [c["name"] for c in inspect(conn).get_columns(name)]


def table_checksum(conn: Connection, name: str, columns: Sequence[str] | None = None, *,
                   each_row: Callable[[bytes], None] | None = None) -> TableSum:
    """Row count and content checksum of table `name` (over `columns`, default all, in that
    order), rows in primary-key order. The one definition used by backup, verify and restore."""
    cols = list(columns) if columns is not None else table_columns(conn, name)
    return rows_checksum(_stream(conn, name, cols), each_row)


# -- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    rows: int
    checksum: str
    file: str | None = None  # MySQL: <table>.jsonl.gz


@dataclass(frozen=True)
class Manifest:
    """What a backup holds; written as ``manifest.json`` beside the data."""

    path: Path
    dialect: str
    url: str  # masked
    created_at: str
    tables: tuple[TableInfo, ...]  # foreign-key order
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    #: which database this is a backup of (`database_identity`); None in older backups
    database: dict[str, Any] | None = None
    method: str = "python"  # "python": jsonl/sqlite files; "dump": mariadb-dump's SQL

    def table(self, name: str) -> TableInfo | None:
        return next((t for t in self.tables if t.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "dialect": self.dialect, "url": self.url,
                "created_at": self.created_at,
                "tables": [{"name": t.name, "columns": list(t.columns), "rows": t.rows,
                            "checksum": t.checksum, "file": t.file} for t in self.tables],
                "files": dict(sorted(self.files.items())), "database": self.database,
                "method": self.method}


def _seal(doc: dict[str, Any]) -> str:
    """sha256 over the manifest's own content: an edited or damaged manifest is caught even
    where the data cannot be checked without a server (the dump method's checksums)."""
    body = {k: v for k, v in doc.items() if k != "seal"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode("utf-8")).hexdigest()


def _check_seal(path: Path, manifest: Manifest) -> None:
    file = path / MANIFEST
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise _corrupt(file, "the manifest does not parse") from None
    seal = doc.get("seal")
    if seal is None and manifest.method == "python":
        return  # written before manifests were sealed: the data checks cover it
    if seal != _seal(doc):
        raise _corrupt(file, "the manifest's seal does not match its content (it was edited "
                       "or damaged)")


def _corrupt(path: Path, why: str) -> BackupCorrupt:
    return BackupCorrupt(f"backup {path}: {why}; the backup cannot be trusted, use another one")


def _read_manifest(path: Path) -> Manifest:
    file = path / MANIFEST
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        tables = tuple(TableInfo(str(t["name"]), tuple(str(c) for c in t["columns"]),
                                 int(t["rows"]), str(t["checksum"]),
                                 None if t.get("file") is None else str(t["file"]))
                       for t in data["tables"])
        database = data.get("database")
        if database is not None and not isinstance(database, dict):
            raise TypeError("database")
        manifest = Manifest(path, str(data["dialect"]), str(data["url"]),
                            str(data["created_at"]), tables,
                            {str(k): str(v) for k, v in data["files"].items()}, database,
                            str(data.get("method", "python")))
    except (FileNotFoundError, NotADirectoryError):  # a missing path, or a file
        raise ConfigError(f"{path}: no {MANIFEST} there; name a backup folder (under "
                          ".alembic_repair/backups/)") from None
    except OSError as err:  # manifest.json a folder, unreadable, ...
        raise ConfigError(f"{file}: cannot be read ({err.strerror}); name a backup folder "
                          "(under .alembic_repair/backups/)") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise _corrupt(file, "the manifest does not parse") from None
    if manifest.method not in ("python", "dump") or (
            manifest.method == "dump" and manifest.dialect != "mysql"):
        raise _corrupt(file, f"the manifest names an unknown method {manifest.method!r}")
    if manifest.dialect not in ("sqlite", "mysql"):
        raise _corrupt(file, f"the manifest names an unknown dialect {manifest.dialect!r}")
    for name in manifest.files:
        # a listed name must not reach outside the folder
        if not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
            raise _corrupt(file, f"the manifest lists a file {name!r} outside the backup")
    return manifest


_SAFE_NAME = re.compile(r"[^/\\\x00]+")


# -- which database ----------------------------------------------------------------------------

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "localhost.localdomain", "ip6-localhost"}


def database_identity(url: str) -> dict[str, Any]:
    """Which database `url` names, without credentials: the dialect plus host, port and
    database name (MySQL/MariaDB; loopback spellings are one host) or the resolved file
    (SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        where = (str(Path(database).expanduser().resolve())
                 if database and database != ":memory:" else ":memory:")
        return {"dialect": "sqlite", "path": where}
    host = (parsed.host or "localhost").strip("[]").lower()
    return {"dialect": "mysql", "host": "localhost" if host in _LOOPBACK else host,
            "port": int(parsed.port or 3306), "database": parsed.database or ""}


def _describe_identity(identity: dict[str, Any]) -> str:
    if identity.get("dialect") == "sqlite":
        return f"the SQLite file {identity.get('path')}"
    return (f"the {identity.get('dialect')} database {identity.get('database')!r} at "
            f"{identity.get('host')}:{identity.get('port')}")


# -- files -------------------------------------------------------------------------------------


def _mkdir_private(path: Path) -> None:
    private.private_dir(path)  # every folder it creates 0700, not only the last


def _open_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
        _mkdir_private(work)
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
        _mkdir_private(dest.parent)
        return dest
    root = project.state_dir / "backups"
    _mkdir_private(project.state_dir)
    _mkdir_private(root)
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


def _wanted(name: str) -> bool:
    return is_user_table(name) or name == VERSION_TABLE


def _fk_order(conn: Connection) -> list[str]:
    names = [n for n, _ in inspect(conn).get_sorted_table_and_fkc_names() if n is not None]
    return [n for n in names if _wanted(n)]


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ConfigError("backup: an in-memory SQLite database cannot be backed up")
    return Path(database).expanduser().resolve()


# -- backup ------------------------------------------------------------------------------------


def _check_dialect(project: Project, action: str) -> str:
    dialect = project.dialect
    if dialect not in ("sqlite", "mysql", "mariadb"):
        raise ConfigError(f"{action}: the {dialect} dialect is not supported (SQLite, MySQL and "
                          "MariaDB are)")
    return "sqlite" if dialect == "sqlite" else "mysql"


def backup(project: Project, dest: Path | None = None, *, method: str = "auto",
           progress: Progress | None = None, compress: bool = False) -> Manifest:
    """Write a verified backup of the project's database; returns its manifest.

    `method`: ``"dump"`` (MySQL/MariaDB: mariadb-dump or mysqldump for the data),
    ``"python"`` (rows streamed by SQLAlchemy), ``"auto"`` (dump when the tools are on PATH).
    `progress(table, rows_done, rows_total)` is called per table and per batch of rows.
    `compress`: the dump method's data gzipped (level 1; about 3.5x smaller, and on a busy
    machine about 2x slower)."""
    _check_dialect(project, "backup")
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
    dialect = _check_dialect(project, "backup")
    method = _method(project, method)
    if conn.in_transaction():
        conn.rollback()
    final, path = _new_dir(project, dest)
    try:
        try:
            if dialect == "sqlite":
                tables = _backup_sqlite(project, path, progress)
            elif method == "dump":
                data = DUMP_GZ if compress else DUMP_FILE
                tables, written = _backup_mysql_dump(project, conn, path / data, progress)
            else:
                tables = _backup_mysql(conn, path, progress)
        finally:
            if conn.in_transaction():
                conn.rollback()
        files = {p.name: written[0] if method == "dump" and p.name == data else _sha256(p)
                 for p in sorted(path.iterdir())}
        if method == "dump" and (path / data).stat().st_size != written[1]:
            raise BackupCorrupt(f"backup: {path / data} does not hold the bytes written "
                                "(a disk or file system error); run the backup again")
        manifest = Manifest(path, dialect, project.masked_url,
                            datetime.now(timezone.utc).isoformat(timespec="seconds"), tables,
                            files, database_identity(project.url), method)
        doc = manifest.as_dict()
        doc["seal"] = _seal(doc)
        with _open_private(path / MANIFEST) as handle:
            handle.write(json.dumps(doc, indent=2).encode("utf-8") + b"\n")
        path = _place(path, final, named=dest is not None)
        # the dump was verified as it was written (rows per table against the server's
        # counts, completion trailer, sha256 of the bytes written): not read back again
        return _verify(path, deep=method != "dump")
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


def _backup_sqlite(project: Project, path: Path, progress: Progress | None
                   ) -> tuple[TableInfo, ...]:
    target = path / SQLITE_FILE
    _open_private(target).close()
    source_path = _sqlite_path(project.url)
    source = sqlite3.connect(str(source_path), timeout=busy_timeout())
    try:
        _sqlite_copy(source, target, source_path)
    finally:
        source.close()
    os.chmod(target, 0o600)
    with _readonly_sqlite(target) as conn:
        return tuple(_info(conn, name, progress=progress) for name in _fk_order(conn))


def _sqlite_copy(source: sqlite3.Connection, target: Path, source_path: Path) -> None:
    copy = sqlite3.connect(str(target))
    try:
        # bounded: Python retries a source another writer keeps locked forever otherwise
        source.backup(copy, progress=sqlite_backup_progress(source_path))
    finally:
        copy.close()


def _info(conn: Connection, name: str, out: BinaryIO | None = None, file: str | None = None,
          progress: Progress | None = None, total: int | None = None) -> TableInfo:
    cols = table_columns(conn, name)
    done = 0
    if progress is not None:
        progress(name, 0, total)

    def each_row(line: bytes) -> None:
        nonlocal done
        if out is not None:
            out.write(line + b"\n")
        done += 1
        if progress is not None and done % _BATCH == 0:
            progress(name, done, total)

    found = table_checksum(conn, name, cols, each_row=each_row)
    if progress is not None:
        progress(name, found.rows, found.rows)
    return TableInfo(name, tuple(cols), found.rows, found.checksum, file)


def _backup_mysql(conn: Connection, path: Path, progress: Progress | None
                  ) -> tuple[TableInfo, ...]:
    conn.rollback()
    conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    names, schema, _ = _mysql_schema(conn)
    _write_schema(path, schema)
    infos = []
    for name in names:
        file = f"{name}.jsonl.gz"
        total = _count(conn, name) if progress is not None else None
        with _open_private(path / file) as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            infos.append(_info(conn, name, out, file, progress, total))  # type: ignore[arg-type]
    return tuple(infos)


# -- the MySQL/MariaDB fast path: mariadb-dump and the mariadb client ------------------------

DUMP_FILE = "data.sql"  # the dump method's data; "data.sql.gz" with compress=True
DUMP_GZ = "data.sql.gz"
_DUMP_TRAILER = b"-- Dump completed"
_STRINGS = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'|`[^`]*(?:``[^`]*)*`")
_INSERT_RAW = re.compile(rb"\nINSERT INTO `((?:[^`]|``)+)` ")  # literal prefix: a fast search
_INSERT_BLANK = re.compile(rb"^INSERT INTO '' \((?:''(?:, ?)?)*\) VALUES ", re.M)
_SECTION = re.compile(rb"^-- Dumping data for table `((?:[^`]|``)+)`$")


def _unquote(name: bytes) -> str:
    return name.replace(b"``", b"`").decode("utf-8")


def dump_tools() -> tuple[str, str] | None:
    """(dump program, client program) found on PATH, or None: mariadb-dump and mariadb are
    preferred to mysqldump and mysql."""
    dump = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    client = shutil.which("mariadb") or shutil.which("mysql")
    return (dump, client) if dump and client else None


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


def _option_value(value: str) -> str:
    text = value.replace("\\", "\\\\")
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    raise ConfigError("backup: the password holds both quote characters, which a client option "
                      "file cannot carry; use method 'python'")


@contextmanager
def _client_options(url: str) -> Iterator[tuple[str, int]]:
    """(``/dev/fd/N``, N): the connection settings and the password for
    ``--defaults-extra-file``, in a pipe the client inherits (``pass_fds=(N,)``): never on a
    command line, never in a file (`private.option_fd`)."""
    parsed = make_url(url)
    # The endpoint PyMySQL resolves (``?host=``, ``?unix_socket=``, option files), so the tool
    # reaches the very server our session and the remote guard judged, not the URL's netloc.
    found = target(parsed)
    lines = ["[client]"]
    socket = found.socket or parsed.query.get("unix_socket")
    if isinstance(socket, str):
        lines.append(f"socket={_option_value(socket)}")
    else:
        lines += [f"host={_option_value(found.host or parsed.host or 'localhost')}",
                  f"port={int(found.port or parsed.port or 3306)}", "protocol=TCP"]
    if parsed.username:
        lines.append(f"user={_option_value(parsed.username)}")
    if parsed.password is not None:
        lines.append(f"password={_option_value(str(parsed.password))}")
    private.sweep_temp()  # option files earlier versions left in /tmp when killed
    with private.option_fd("\n".join(lines) + "\n") as options:
        yield options


def _tool_error(what: str, stderr: bytes, url: str) -> AlembicRepairError:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()
             if line.strip() and "Warning" not in line]
    detail = redact(lines[-1] if lines else "no message", url)
    return AlembicRepairError(f"{what} failed: {detail}")


def checksum_kind(conn: Connection) -> str:
    """The server checksum this server computes fastest: ``crc64c`` (CRC32 and CRC32C, MariaDB
    10.8 and later) or ``md5sum64`` (a 64-bit slice of MD5, everywhere)."""
    try:
        conn.exec_driver_sql("SELECT CRC32C('')").scalar()
        return "crc64c"
    except DBAPIError:
        conn.rollback()
        return "md5sum64"


def server_checksum(conn: Connection, name: str, columns: Sequence[str],
                    schema: str | None = None, kind: str = "md5sum64") -> TableSum:
    """Row count and an order-independent content checksum computed by the server, over
    `columns`: each row's values as the hex of their text (NULL as ``N``), comma-separated;
    per row a 64-bit hash (``crc64c``: CRC32 and CRC32C side by side; ``md5sum64``: the first
    64 bits of MD5), summed mod 2**64. One scan, no sort, no row leaves the server. The
    session's time zone should be UTC (TIMESTAMP values are compared as text)."""
    quote = conn.dialect.identifier_preparer.quote
    values = ", ".join(f"IFNULL(HEX(CAST({quote(c)} AS BINARY)), 'N')" for c in columns) or "''"
    source = f"{quote(schema) + '.' if schema else ''}{quote(name)}"
    if kind == "crc64c":
        row = conn.exec_driver_sql(
            f"SELECT COUNT(*), SUM(CRC32(r)), SUM(CRC32C(r)) FROM (SELECT CONCAT_WS(',', "
            f"{values}) AS r FROM {source}) AS t").one()
        total = ((int(row[1] or 0) << 32) + int(row[2] or 0)) % (1 << 64)
    elif kind == "md5sum64":
        row = conn.exec_driver_sql(
            f"SELECT COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', {values})), 16), 16, 10) "
            f"AS UNSIGNED)) FROM {source}").one()
        total = int(row[1] or 0) % (1 << 64)
    else:
        raise ConfigError(f"unknown checksum kind {kind!r}")
    return TableSum(int(row[0]), f"{kind}:{total:016x}")


def _kind_of(checksum: str) -> str:
    return checksum.split(":", 1)[0]


_TABLE_KIND = "checksum-table/"


def _server_version(conn: Connection) -> str:
    return str(conn.exec_driver_sql("SELECT VERSION()").scalar())


def table_checksum_sql(conn: Connection, name: str, schema: str | None = None) -> TableSum:
    """``CHECKSUM TABLE`` (the server's own content checksum, one fast scan) and COUNT(*); the
    checksum is tagged with the server version, since it is defined over the server's record
    format: it equals another table's only for the same column definitions (names, types,
    order, nullability, collation) on the same server version."""
    quote = conn.dialect.identifier_preparer.quote
    source = f"{quote(schema) + '.' if schema else ''}{quote(name)}"
    value = conn.exec_driver_sql(f"CHECKSUM TABLE {source}").one()[1]
    rows = int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {source}").scalar_one())
    return TableSum(rows, f"{_TABLE_KIND}{_server_version(conn)}:{value}")


def _columns_signature(conn: Connection, name: str, schema: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.exec_driver_sql(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME FROM "
        "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION", (schema, name)).all()]


@contextmanager
def _utc_session(conn: Connection) -> Iterator[None]:
    before = conn.exec_driver_sql("SELECT @@session.time_zone").scalar()
    conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
    try:
        yield
    finally:
        conn.exec_driver_sql("SET SESSION time_zone = %s", (before,))


def _headers(chunk: bytes) -> list[tuple[int, str]]:
    """(offset, table) of every line of `chunk` that starts an INSERT."""
    return [(m.start(), _unquote(m.group(1))) for m in _INSERT_RAW.finditer(b"\n" + chunk)]


def _open_dump(file: Path) -> BinaryIO:
    if file.name.endswith(".gz"):
        return gzip.open(file, "rb")  # type: ignore[return-value]
    return file.open("rb")


class _DumpCounter:
    """Counts the rows per table in a mariadb-dump data stream fed in line-complete chunks.

    String literals and quoted names are blanked first (the dump escapes newlines inside
    strings, so no literal spans two lines; --hex-blob writes binary as 0x...), after which
    each ``(`` inside an INSERT's VALUES list starts one row."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.current: str | None = None  # the table of an INSERT still open at a chunk's end

    def feed(self, chunk: bytes) -> None:
        if b"),(" not in chunk:  # one row per line (mariadb-dump 10.11+): count line starts
            self._feed_lines(chunk)
            return
        names = [name for _, name in _headers(chunk)]
        blank = _STRINGS.sub(b"''", chunk)
        starts = list(_INSERT_BLANK.finditer(blank))
        if len(starts) != len(names):
            raise ValueError("an INSERT statement does not parse")
        pieces: list[tuple[str | None, int, int]] = []
        first = starts[0].start() if starts else len(blank)
        pieces.append((self.current, 0, first))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(blank)
            pieces.append((names[i], match.end(), end))
        self.current = None
        for name, start, end in pieces:
            if name is None:
                continue
            stop = blank.find(b";\n", start, end)
            self.rows[name] = self.rows.get(name, 0) + blank.count(
                b"(", start, end if stop < 0 else stop)
            self.current = name if stop < 0 else None

    def _feed_lines(self, chunk: bytes) -> None:
        """No ``),(`` anywhere: every row after an INSERT's first one starts a line with ``(``
        (a raw newline never occurs inside a string of the dump)."""
        headers = _headers(chunk)
        pieces: list[tuple[str | None, int, int, int]] = [
            (self.current, 0, headers[0][0] if headers else len(chunk), 0)]
        for i, (offset, table_name) in enumerate(headers):
            end = headers[i + 1][0] if i + 1 < len(headers) else len(chunk)
            pieces.append((table_name, offset, end, 1))
        self.current = None
        for name, start, end, first in pieces:
            if name is None:
                continue
            stop = chunk.find(b";\n", start, end)
            stop = end if stop < 0 else stop
            rows = first + chunk.count(b"\n(", start, stop)
            if not first and chunk.startswith(b"(", start):
                rows += 1
            self.rows[name] = self.rows.get(name, 0) + rows
            self.current = name if stop == end else None


def _read_lines(handle: BinaryIO, size: int = _CHUNK) -> Iterator[bytes]:
    """Chunks of about `size` bytes that end at a newline (the last one may not)."""
    rest = b""
    while block := handle.read(size):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        rest = block[cut:]
        yield block[:cut]
    if rest:
        yield rest


def _dump_counts(file: Path) -> dict[str, int]:
    """Rows per table in a dump file; `BackupCorrupt` if it does not decompress, does not
    parse, or lacks mariadb-dump's completion trailer."""
    counter = _DumpCounter()
    tail = b""
    try:
        with _open_dump(file) as handle:
            for chunk in _read_lines(handle):
                counter.feed(chunk)
                tail = (tail + chunk[-256:])[-256:]
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError) as err:
        raise _corrupt(file, f"the data does not read ({type(err).__name__})") from None
    if not tail.rstrip().splitlines() or not tail.rstrip().splitlines()[-1].startswith(
            _DUMP_TRAILER):
        raise _corrupt(file, "the dump is incomplete (no completion trailer)")
    return counter.rows


def _backup_mysql_dump(project: Project, conn: Connection, target: Path,
                       progress: Progress | None
                       ) -> tuple[tuple[TableInfo, ...], tuple[str, int]]:
    """mariadb-dump for the data, the server for counts and checksums, consistent because our
    session holds ``LOCK TABLES ... READ`` on every table from before the dump starts until
    the dump and the checksums are done (see the module docstring). Verified as it is
    written: the rows per table counted in the dump stream must equal the server's counts,
    and the stream must end with mariadb-dump's completion trailer. Returns the tables and the
    sha256 of the compressed bytes as written."""
    tools = dump_tools()
    assert tools is not None
    names, schema, columns = _mysql_schema(conn)
    _write_schema(target.parent, schema)
    database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
    quote = conn.dialect.identifier_preparer.quote
    sums: dict[str, TableSum] = {}
    stream = _Stream()
    with _utc_session(conn), _client_options(project.url) as (options, options_fd):
        conn.commit()
        if names:
            conn.exec_driver_sql("LOCK TABLES " + ", ".join(f"{quote(n)} READ" for n in names))
        try:
            totals: dict[str, int] = {}  # filled while the dump runs; progress reads it
            command = [tools[0], f"--defaults-extra-file={options}", "--single-transaction",
                       "--skip-lock-tables", "--no-create-info", "--skip-triggers",
                       "--hex-blob", "--complete-insert", "--skip-add-locks",
                       "--skip-disable-keys", "--skip-dump-date", "--tz-utc",
                       "--no-tablespaces", "--default-character-set=utf8mb4", "--quick",
                       "--extended-insert", "--", database, *names]
            with tempfile.TemporaryFile() as errors:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=errors,
                                           pass_fds=(options_fd,))
                writer = threading.Thread(target=_compress_dump, args=(
                    process, target, totals, progress, stream), daemon=True)
                writer.start()
                try:
                    for name in names:  # meanwhile, on the second core
                        sums[name] = table_checksum_sql(conn, name)
                        totals[name] = sums[name].rows
                finally:
                    writer.join()
                    code = process.wait()
                if stream.failure is not None:
                    raise stream.failure
                if code != 0:
                    errors.seek(0)
                    raise _tool_error(f"backup: {Path(tools[0]).name}", errors.read(),
                                      project.url)
        finally:
            if names:
                conn.exec_driver_sql("UNLOCK TABLES")
            conn.commit()
    lines = stream.tail.rstrip().splitlines()
    if not lines or not lines[-1].startswith(_DUMP_TRAILER):
        raise AlembicRepairError(f"backup: {Path(tools[0]).name} stopped before the end of its "
                                 "output; run the backup again")
    for name in names:
        dumped = stream.counter.rows.get(name, 0)
        if sums[name].rows != dumped:
            raise AlembicRepairError(
                f"backup: table {name}: the server counted {sums[name].rows} rows, the dump holds "
                f"{dumped}; run the backup again")
    tables = tuple(TableInfo(n, tuple(columns[n]), sums[n].rows, sums[n].checksum,
                             target.name) for n in names)
    return tables, (stream.digest.hexdigest(), stream.size)


class _Stream:
    """What the compressing thread saw: rows per table, the sha256 of the bytes it wrote, the
    end of the dump, and the exception that stopped it, if any."""

    def __init__(self) -> None:
        self.counter = _DumpCounter()
        self.digest = hashlib.sha256()
        self.size = 0  # bytes written
        self.tail = b""
        self.failure: BaseException | None = None


class _Hashing:
    """A file object that hashes and counts what is written through it."""

    def __init__(self, raw: BinaryIO, stream: _Stream) -> None:
        self.raw, self.stream = raw, stream

    def write(self, data: Any) -> int:
        self.stream.digest.update(data)
        self.stream.size += len(data)
        return int(self.raw.write(data))

    def flush(self) -> None:
        self.raw.flush()


@contextmanager
def _dump_writer(raw: BinaryIO, stream: _Stream, target: Path) -> Iterator[Any]:
    hashing = _Hashing(raw, stream)
    if not target.name.endswith(".gz"):
        yield hashing
        return
    with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0,
                       compresslevel=1) as out:
        yield out


def _compress_dump(process: subprocess.Popen[bytes], target: Path, totals: dict[str, int],
                   progress: Progress | None, stream: _Stream) -> None:
    """Thread: the dump's output into `target` (gzipped at level 1 when it ends in .gz),
    counting rows per table and reporting progress as rows go by."""
    assert process.stdout is not None
    counter = stream.counter
    try:
        with _open_private(target) as raw, _dump_writer(raw, stream, target) as out:
            for chunk in _read_lines(process.stdout):  # type: ignore[arg-type]
                out.write(chunk)
                counter.feed(chunk)
                stream.tail = (stream.tail + chunk[-256:])[-256:]
                if progress is not None and (counter.current is not None or counter.rows):
                    name = counter.current or next(reversed(counter.rows))
                    progress(name, counter.rows.get(name, 0), totals.get(name))
    except BaseException as err:  # noqa: BLE001 - handed to the main thread
        stream.failure = err
        process.kill()
    finally:
        process.stdout.close()


def _mysql_schema(conn: Connection) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    names = _fk_order(conn)
    quote = conn.dialect.identifier_preparer.quote
    schema = {name: str(conn.exec_driver_sql(f"SHOW CREATE TABLE {quote(name)}").one()[1])
              for name in names}
    return names, schema, {name: table_columns(conn, name) for name in names}


def _write_schema(path: Path, schema: dict[str, str]) -> None:
    with _open_private(path / SCHEMA_FILE) as handle:
        handle.write(json.dumps(schema, indent=2).encode("utf-8") + b"\n")


def _load_dump(project: Project, manifest: Manifest, tables: Sequence[str], database: str,
               progress: Progress | None) -> None:
    """Feed the dump's rows of `tables` to the mariadb client, into `database`; each table in
    one transaction (a killed load leaves a table empty or whole)."""
    tools = dump_tools()
    if tools is None:
        raise ConfigError(f"restore {manifest.path}: this backup was written by mariadb-dump "
                          "and needs the mariadb (or mysql) client on PATH; install it")
    wanted = set(tables)
    totals = {t.name: t.rows for t in manifest.tables}
    with _client_options(project.url) as (options, options_fd), \
            tempfile.TemporaryFile() as errors:
        command = [tools[1], f"--defaults-extra-file={options}",
                   "--default-character-set=utf8mb4", "--binary-mode", f"--database={database}"]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=errors, pass_fds=(options_fd,))
        assert process.stdin is not None
        broken = False
        try:
            _feed_dump(_dump_path(manifest), wanted, totals, process.stdin, progress)
        except BrokenPipeError:
            broken = True  # the client stopped: its message says why
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                broken = True
            code = process.wait()
        if code != 0 or broken:
            errors.seek(0)
            raise _tool_error(f"restore {manifest.path}: {Path(tools[1]).name}", errors.read(),
                              project.url)


_BOUNDARY = re.compile(rb"^(?:-- Dumping data for table `((?:[^`]|``)+)`|"
                       rb"/\*!40103 SET TIME_ZONE=@OLD_TIME_ZONE)", re.M)


def _feed_dump(file: Path, wanted: set[str], totals: dict[str, int], out: IO[bytes],
               progress: Progress | None) -> None:
    """Copy the dump to `out`, keeping the header and footer (session settings) and the data
    sections of the `wanted` tables only, each closed by a COMMIT."""
    current: str | None = None  # the table whose section is being read
    strict = False
    counter = _DumpCounter() if progress is not None else None

    def segment(data: bytes) -> None:
        if current is not None and current not in wanted:
            return
        out.write(data)
        if counter is not None and progress is not None and current is not None and data:
            counter.feed(data)
            progress(current, counter.rows.get(current, 0), totals.get(current))

    out.write(b"SET autocommit=0;\n")
    with _open_dump(file) as handle:
        for chunk in _read_lines(handle):
            start = 0
            for match in _BOUNDARY.finditer(chunk):
                segment(chunk[start:match.start()])
                start = match.start()
                if current is not None and current in wanted:
                    out.write(b"COMMIT;\n")
                if not strict:  # after the dump's own SQL_MODE: a value that does not fit fails
                    out.write(b"SET SESSION sql_mode = CONCAT_WS(',', @@sql_mode, "
                              b"'STRICT_ALL_TABLES');\n")
                    strict = True
                current = _unquote(match.group(1)) if match.group(1) else None
                if current in wanted and progress is not None:
                    progress(current, 0, totals.get(current))
            segment(chunk[start:])
    out.write(b"COMMIT;\n")


# -- verify ------------------------------------------------------------------------------------


class _ReadonlySqlite:
    def __init__(self, path: Path) -> None:
        self.engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
        self.engine.dispose()


def _readonly_sqlite(path: Path) -> _ReadonlySqlite:
    return _ReadonlySqlite(path)


def _jsonl_rows(file: Path) -> Iterator[list[Any]]:
    try:
        with gzip.open(file, "rb") as handle:
            for line in handle:
                yield [decode_value(v) for v in json.loads(line)]
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError,
            UnicodeDecodeError) as err:
        raise _corrupt(file, f"the data does not read ({type(err).__name__})") from None


def verify(path: Path) -> Manifest:
    """Check every file's sha256 and recompute every table's count and checksum from the
    backup itself (a dump backup: its row counts, gzip stream and completion trailer; its
    checksums need a server and are compared by restore); `BackupCorrupt` (one line, naming
    the file) on the first difference."""
    return _verify(Path(path), deep=True)


def _dump_path(manifest: Manifest) -> Path:
    """The dump file of a dump backup; `BackupCorrupt` unless every table is in the one file
    the manifest lists."""
    names = {info.file for info in manifest.tables}
    name = names.pop() if len(names) == 1 else None
    if manifest.tables and (name not in (DUMP_FILE, DUMP_GZ) or name not in manifest.files):
        raise _corrupt(manifest.path / MANIFEST, f"the tables are not all in one listed "
                       f"{DUMP_FILE} or {DUMP_GZ}")
    return manifest.path / (name or DUMP_FILE)


def _verify(path: Path, deep: bool) -> Manifest:
    manifest = _read_manifest(path)
    streamed = (None if deep or manifest.method != "dump" or not manifest.tables
                else manifest.tables[0].file)  # checked as it was written (backup_locked)
    for name, expected in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise _corrupt(file, "the file is missing")
        if name != streamed and _sha256(file) != expected:
            raise _corrupt(file, "the file's sha256 does not match the manifest")
    if manifest.dialect == "sqlite":
        file = path / SQLITE_FILE
        try:
            with _readonly_sqlite(file) as conn:
                for info in manifest.tables:
                    _compare(path, info, table_checksum(conn, info.name, info.columns))
        except BackupCorrupt:
            raise
        except Exception as err:  # a damaged database file fails as a driver error
            raise _corrupt(file, f"the database does not read ({type(err).__name__})") from None
    elif manifest.method == "dump":
        data = _dump_path(manifest)
        if manifest.tables and deep:
            counts = _dump_counts(data)
        else:
            counts = {t.name: t.rows for t in manifest.tables}
        for name in counts.keys() - {t.name for t in manifest.tables}:
            raise _corrupt(data, f"the dump holds rows of table {name}, which the "
                           "manifest does not list")
        for info in manifest.tables:
            if counts.get(info.name, 0) != info.rows:
                raise _corrupt(path / MANIFEST, f"table {info.name}: the dump holds "
                               f"{counts.get(info.name, 0)} rows, the manifest says {info.rows}")
    else:
        for info in manifest.tables:
            if info.file is None or info.file not in manifest.files:
                raise _corrupt(path / MANIFEST, f"table {info.name} has no data file listed")
            _compare(path, info, rows_checksum(_jsonl_rows(path / info.file)))
    _check_seal(path, manifest)
    return manifest


def _compare(path: Path, info: TableInfo, found: TableSum) -> None:
    if (found.rows, found.checksum) != (info.rows, info.checksum):
        raise _corrupt(path / MANIFEST, f"table {info.name}: the data holds {found.rows} rows "
                       f"with checksum {found.checksum[:12]}, the manifest says {info.rows} "
                       f"rows with checksum {info.checksum[:12]}")


# -- restore -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreReport:
    """What `restore` did. Rows it could not place stay in the backup at `source`."""

    source: Path
    created: tuple[str, ...] = ()
    restored: dict[str, int] = field(default_factory=dict)  # table -> rows inserted
    missing_tables: dict[str, int] = field(default_factory=dict)  # table -> rows left behind
    dropped_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_empty: dict[str, int] = field(default_factory=dict)  # table -> rows already there
    #: tables that already held exactly the backup's rows (a resumed restore): complete
    already: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.missing_tables or self.dropped_columns or self.not_empty)


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


@dataclass
class _Plan:
    create: list[str] = field(default_factory=list)
    fill: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_empty: dict[str, int] = field(default_factory=dict)
    already: dict[str, int] = field(default_factory=dict)
    check: dict[str, int] = field(default_factory=dict)  # dump backups: decided while applying

    def describe(self, manifest: Manifest) -> str:
        parts = []
        if self.create:
            parts.append("create tables " + ", ".join(self.create))
        fills = [f"{t} ({manifest.table(t).rows} rows)"  # type: ignore[union-attr]
                 for t in self.fill]
        parts.append("insert into " + (", ".join(fills) or "no table"))
        if self.missing:
            parts.append("leave in the backup the rows of missing tables " + ", ".join(
                f"{t} ({n} rows)" for t, n in self.missing.items()))
        if self.dropped:
            parts.append("leave in the backup the values of missing columns " + ", ".join(
                f"{t}.{c}" for t, cols in self.dropped.items() for c in cols))
        if self.already:
            parts.append("skip tables that already hold the backup's rows " + ", ".join(
                f"{t} ({n} rows)" for t, n in self.already.items()))
        if self.check:
            parts.append("compare with the backup (and otherwise skip) the non-empty tables "
                         + ", ".join(f"{t} ({n} rows)" for t, n in self.check.items()))
        if self.not_empty:
            parts.append("skip non-empty tables " + ", ".join(
                f"{t} ({n} rows)" for t, n in self.not_empty.items()))
        return "; ".join(parts)


def _plan(conn: Connection, manifest: Manifest) -> _Plan:
    plan = _Plan()
    existing = set(inspect(conn).get_table_names())
    fresh = not any(t.name in existing for t in manifest.tables)
    for info in manifest.tables:
        if info.name not in existing:
            if not fresh:
                plan.missing[info.name] = info.rows
                continue
            plan.create.append(info.name)
            plan.fill[info.name] = list(info.columns)
            continue
        present = set(table_columns(conn, info.name))
        columns = [c for c in info.columns if c in present]
        gone = tuple(c for c in info.columns if c not in present)
        rows = _count(conn, info.name)
        if rows:
            if rows != info.rows or not columns:
                plan.not_empty[info.name] = rows
            elif manifest.method == "dump" and gone:
                plan.check[info.name] = rows  # the backup's checksum over fewer columns
                plan.dropped[info.name] = gone  # needs the rows loaded: done by _apply_dump
            elif _same_rows(conn, manifest, info, columns):
                plan.already[info.name] = rows
                if gone:
                    plan.dropped[info.name] = gone
            else:
                plan.not_empty[info.name] = rows
            continue
        plan.fill[info.name] = columns
        if gone:
            plan.dropped[info.name] = gone
    return plan


def _same_rows(conn: Connection, manifest: Manifest, info: TableInfo, columns: list[str]
               ) -> bool:
    if manifest.method == "dump":
        return table_checksum_sql(conn, info.name) == TableSum(info.rows, info.checksum)
    return table_checksum(conn, info.name, columns) == _backup_checksum(manifest, info, columns)


def _schema_sqlite(path: Path, name: str) -> list[str]:
    with _readonly_sqlite(path / SQLITE_FILE) as conn:
        rows = conn.execute(text("SELECT type, sql FROM sqlite_master WHERE tbl_name = :t AND "
                                 "sql IS NOT NULL"), {"t": name}).all()
    return [r.sql for r in rows if r.type == "table"] + [r.sql for r in rows if r.type != "table"]


def _source_rows(manifest: Manifest, info: TableInfo, columns: Sequence[str]
                 ) -> Iterator[Iterator[Row]]:
    """Yields one iterator over the backup's rows of `info`, projected onto `columns`."""
    index = [info.columns.index(c) for c in columns]
    if manifest.dialect == "sqlite":
        with _readonly_sqlite(manifest.path / SQLITE_FILE) as conn:
            yield ([row[i] for i in index] for row in _stream(conn, info.name, info.columns))
    else:
        assert info.file is not None
        yield ([row[i] for i in index] for row in _jsonl_rows(manifest.path / info.file))


def _backup_checksum(manifest: Manifest, info: TableInfo, columns: Sequence[str]) -> TableSum:
    for rows in _source_rows(manifest, info, columns):
        return rows_checksum(rows)
    raise AssertionError("unreachable")


def _check_backup(project: Project, path: Path, action: str, other_database: bool
                  ) -> Manifest:
    """Verify the backup and check that it fits the project's database (no change made)."""
    manifest = verify(path)
    dialect = _check_dialect(project, action)
    if dialect != manifest.dialect:
        raise ConfigError(f"{action}: the backup is of a {manifest.dialect} database and "
                          f"{project.masked_url} is {project.dialect}; restore it into a "
                          f"{manifest.dialect} database")
    here = database_identity(project.url)
    if manifest.database is not None and manifest.database != here and not other_database:
        raise RefusedUnsafe(
            f"{action}: refused, the backup is of {_describe_identity(manifest.database)}, not "
            f"of {_describe_identity(here)}; nothing changed; pass --other-database "
            "(other_database=True) to restore it into this one")
    return manifest


def restore(project: Project, path: Path, *, yes: bool, allow_remote: bool = False,
            other_database: bool = False, progress: Progress | None = None) -> RestoreReport:
    """Put a backup's rows back (see the module docstring); verifies before and after.
    A backup of another database is refused unless `other_database`. `progress(table,
    rows_done, rows_total)` is called per table and per batch of rows."""
    path = Path(path)
    action = f"restore {path}"
    guards.require_local(allow_remote, project, action)
    manifest = _check_backup(project, path, action, other_database)
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            plan = _plan(conn, manifest)
            conn.rollback()
            guards.require(yes, allow_remote, project,
                           f"{action}: would {plan.describe(manifest)}")
            return _apply(project, conn, manifest, plan, progress)
    finally:
        engine.dispose()


def restore_locked(project: Project, conn: Connection, path: Path, *,
                   other_database: bool = False, progress: Progress | None = None
                   ) -> RestoreReport:
    """`restore` for a caller that already holds the migration lock on `conn` (as
    `migration_lock` yields it): no lock taken, no guard (the caller asked for confirmation).
    Verifies the backup first; any transaction open on `conn` is ended (rolled back) first.
    Idempotent: run again after an interrupted restore, the tables already restored are
    reported in `RestoreReport.already` and the rest is filled."""
    path = Path(path)
    manifest = _check_backup(project, path, f"restore {path}", other_database)
    if conn.in_transaction():
        conn.rollback()
    plan = _plan(conn, manifest)
    conn.rollback()
    return _apply(project, conn, manifest, plan, progress)


def _apply(project: Project, conn: Connection, manifest: Manifest, plan: _Plan,
           progress: Progress | None) -> RestoreReport:
    if manifest.method == "dump":
        return _apply_dump(project, conn, manifest, plan, progress)
    mysql = manifest.dialect == "mysql"
    if mysql:
        conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0")
        ddl = json.loads((manifest.path / SCHEMA_FILE).read_text(encoding="utf-8"))
    try:
        for name in plan.create:
            statements = [ddl[name]] if mysql else _schema_sqlite(manifest.path, name)
            for statement in statements:
                conn.exec_driver_sql(statement)
            conn.commit()
        restored: dict[str, int] = {}
        for name, columns in plan.fill.items():
            info = manifest.table(name)
            assert info is not None
            target = table(name, *[column(c) for c in columns])
            inserted = 0
            if progress is not None:
                progress(name, 0, info.rows)
            for rows in _source_rows(manifest, info, columns):
                batch: list[dict[str, Any]] = []
                for row in rows:
                    batch.append(dict(zip(columns, row, strict=True)))
                    if len(batch) >= _BATCH:
                        conn.execute(insert(target), batch)
                        inserted += len(batch)
                        batch = []
                        if progress is not None:
                            progress(name, inserted, info.rows)
                if batch:
                    conn.execute(insert(target), batch)
                    inserted += len(batch)
            conn.commit()
            if progress is not None:
                progress(name, inserted, info.rows)
            restored[name] = inserted
    finally:
        if mysql:
            conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1")
    for name, columns in plan.fill.items():
        info = manifest.table(name)
        assert info is not None
        expected = _backup_checksum(manifest, info, columns)
        found = table_checksum(conn, name, columns)
        if found != expected:
            raise BackupCorrupt(
                f"restore {manifest.path}: table {name} holds {found.rows} rows after the "
                f"restore where the backup has {expected.rows} (or their checksums differ); "
                "check the table's column types"
            )
    conn.rollback()
    return RestoreReport(manifest.path, tuple(plan.create), restored, dict(plan.missing),
                         dict(plan.dropped), dict(plan.not_empty), dict(plan.already))


def _apply_dump(project: Project, conn: Connection, manifest: Manifest, plan: _Plan,
                progress: Progress | None) -> RestoreReport:
    """Restore a mariadb-dump backup with the mariadb client. The backup's tables are first
    created, empty, in a scratch schema ``_ar_restore_<stamp>`` (dropped afterwards). A table
    whose columns are defined exactly as in the backup is loaded directly and its ``CHECKSUM
    TABLE`` compared with the backup's; any other is loaded into the scratch schema, checked
    there against the backup, and copied by INSERT ... SELECT over the columns it still has,
    then the server checksum over those columns is compared between scratch and target."""
    ddl = json.loads((manifest.path / SCHEMA_FILE).read_text(encoding="utf-8"))
    quote = conn.dialect.identifier_preparer.quote
    database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
    already, not_empty = dict(plan.already), dict(plan.not_empty)
    dropped = dict(plan.dropped)
    restored: dict[str, int] = {}
    wanted = list(plan.fill) + list(plan.check)
    if wanted:
        _check_scratch_grant(conn, manifest)
    conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0")
    try:
        for name in plan.create:
            conn.exec_driver_sql(ddl[name])
            conn.commit()
        if not wanted:
            return RestoreReport(manifest.path, tuple(plan.create), restored,
                                 dict(plan.missing), dropped, not_empty, already)
        scratch = scratch_schemas.new_name("restore")
        scratch_schemas.sweep(conn)  # those a killed run left (scratch.py)
        with _utc_session(conn), scratch_schemas.claim(conn, scratch):
            conn.exec_driver_sql(f"CREATE DATABASE {quote(scratch)}")
            try:
                conn.exec_driver_sql(f"USE {quote(scratch)}")
                try:
                    for name in wanted:
                        conn.exec_driver_sql(ddl[name])
                finally:
                    conn.exec_driver_sql(f"USE {quote(database)}")
                conn.commit()
                direct = [t for t in plan.fill if t not in dropped and
                          _columns_signature(conn, t, database)
                          == _columns_signature(conn, t, scratch)]
                through = [t for t in wanted if t not in direct]
                if direct:
                    _load_dump(project, manifest, direct, database, progress)
                if through:
                    _load_dump(project, manifest, through, scratch, progress)
                for name in direct:
                    restored[name] = _check_loaded(conn, manifest, name, None).rows
                kind = checksum_kind(conn)
                for name in through:
                    info = manifest.table(name)
                    assert info is not None
                    _check_loaded(conn, manifest, name, scratch)
                    present = set(table_columns(conn, name))
                    columns = [c for c in info.columns if c in present]
                    if name in plan.check:
                        if (server_checksum(conn, name, columns, scratch, kind)
                                == server_checksum(conn, name, columns, kind=kind)):
                            already[name] = plan.check[name]
                        else:
                            not_empty[name] = plan.check[name]
                            del dropped[name]
                        continue
                    names = ", ".join(quote(c) for c in columns)
                    conn.exec_driver_sql(
                        f"INSERT INTO {quote(name)} ({names}) SELECT {names} FROM "
                        f"{quote(scratch)}.{quote(name)}")
                    conn.commit()
                    expected = server_checksum(conn, name, columns, scratch, kind)
                    found = server_checksum(conn, name, columns, kind=kind)
                    if found != expected:
                        raise _not_restored(manifest, name, found.rows, expected.rows)
                    restored[name] = found.rows
            finally:
                conn.rollback()
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(scratch)}")
                conn.commit()
    finally:
        conn.rollback()
        conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1")
        conn.commit()
    restored = {t: restored[t] for t in plan.fill}  # foreign-key order
    return RestoreReport(manifest.path, tuple(plan.create), restored, dict(plan.missing),
                         dropped, not_empty, already)


def _check_scratch_grant(conn: Connection, manifest: Manifest) -> None:
    """Create and drop a scratch schema before anything changes: a user who may not create
    one is told the GRANT instead of meeting 'Access denied' half-way through the restore."""
    quote = conn.dialect.identifier_preparer.quote
    probe = scratch_schemas.new_name("restore")
    with scratch_schemas.claim(conn, probe):
        try:
            conn.exec_driver_sql(f"CREATE DATABASE {quote(probe)}")
        except DBAPIError as err:
            if not denied(err):
                raise
            raise missing_grant(
                conn, f"restore {manifest.path}", err, "ALL PRIVILEGES", r"`\_ar\_%`.*",
                "a restore loads the backup into a scratch schema _ar_restore_* first (doctor "
                "replays into _ar_replay_*)") from None
        conn.exec_driver_sql(f"DROP DATABASE {quote(probe)}")
        conn.commit()


def _not_restored(manifest: Manifest, name: str, found: int, expected: int) -> BackupCorrupt:
    return BackupCorrupt(
        f"restore {manifest.path}: table {name} holds {found} rows after the restore where "
        f"the backup has {expected} (or their checksums differ); check the table's column "
        "types")


def _check_loaded(conn: Connection, manifest: Manifest, name: str, schema: str | None
                  ) -> TableSum:
    """The loaded table against the backup: its count, and its CHECKSUM TABLE when the
    server version is the one that wrote the backup (the table's columns are defined as in
    the backup: the caller made sure)."""
    info = manifest.table(name)
    assert info is not None
    found = table_checksum_sql(conn, name, schema)
    same_server = _kind_of(found.checksum) == _kind_of(info.checksum)
    if found.rows != info.rows or (same_server and found.checksum != info.checksum):
        raise _not_restored(manifest, name, found.rows, info.rows)
    return found
