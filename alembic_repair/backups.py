"""Verified logical backups (design section 5): back up, verify, restore without losing a row.

``backup`` writes ``.alembic_repair/backups/<UTC stamp>/`` (folders 0700, files 0600), under the
migration lock so no migration runs meanwhile:

* SQLite: the online backup API (`sqlite3.Connection.backup`) into ``database.sqlite``.
* MySQL/MariaDB: inside one consistent snapshot, per user table (`is_user_table`, plus
  ``alembic_version``) its ``SHOW CREATE TABLE`` (in ``schema.json``) and its rows, streamed
  with a server-side cursor (never a whole table in memory), into ``<table>.jsonl.gz``: one
  JSON array per row, values canonically encoded (`encode_value`: bytes as base64, Decimal,
  datetime, date, time and timedelta as tagged strings), so they decode to the same values.

``manifest.json`` records the dialect, the masked URL, the tables in foreign-key order with
their row count and content checksum, and the sha256 of every file. The content checksum
(`table_checksum`) is sha256 over the canonically encoded rows in primary-key order; it is the
same function on the live database, on the SQLite backup file and (via `rows_checksum`) on the
jsonl files, so ``verify`` recomputes exactly what ``backup`` recorded.

``restore`` verifies first, then (under the lock, behind `guards.require`) fills the tables in
foreign-key order. Into a database without any of the backup's tables it first creates them
from the stored schema; otherwise the schema there is authoritative: rows of tables it lacks,
and values of columns it lacks, are reported and stay in the backup. A table that already holds
rows is not touched (reported in ``not_empty``), unless it holds exactly the backup's rows (same
count and checksum over the restored columns: a resumed restore), then it is reported in
``already`` and counts as complete. Each table is filled in one transaction. Afterwards counts
and checksums over the restored columns are compared with the backup.
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
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import column, create_engine, func, insert, inspect, select, table, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from . import guards
from .database import connect
from .errors import AlembicRepairError, BackupCorrupt, ConfigError, RefusedUnsafe
from .locking import migration_lock
from .project import Project
from .state.schema import VERSION_TABLE, is_user_table

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

    def table(self, name: str) -> TableInfo | None:
        return next((t for t in self.tables if t.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "dialect": self.dialect, "url": self.url,
                "created_at": self.created_at,
                "tables": [{"name": t.name, "columns": list(t.columns), "rows": t.rows,
                            "checksum": t.checksum, "file": t.file} for t in self.tables],
                "files": dict(sorted(self.files.items())), "database": self.database}


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
                            {str(k): str(v) for k, v in data["files"].items()}, database)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no {MANIFEST} there; name a backup folder (under "
                          ".alembic_repair/backups/)") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise _corrupt(file, "the manifest does not parse") from None
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
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


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


def _new_dir(project: Project, dest: Path | None) -> Path:
    if dest is not None:
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise ConfigError(f"backup: {dest} is not empty; name a new folder")
        _mkdir_private(dest)
        return dest
    root = project.state_dir / "backups"
    _mkdir_private(project.state_dir)
    _mkdir_private(root)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, counter = root / stamp, 1
    while path.exists():
        counter += 1
        path = root / f"{stamp}-{counter}"
    _mkdir_private(path)
    return path


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


def backup(project: Project, dest: Path | None = None) -> Manifest:
    """Write a verified backup of the project's database; returns its manifest."""
    _check_dialect(project, "backup")
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            return backup_locked(project, conn, dest)
    finally:
        engine.dispose()


def backup_locked(project: Project, conn: Connection, dest: Path | None = None) -> Manifest:
    """`backup` for a caller that already holds the migration lock on `conn` (as
    `migration_lock` yields it): no lock taken, no guard. Any transaction open on `conn` is
    ended (rolled back) first, so commit your own changes before; `conn` is left without an
    open transaction. Returns the verified manifest."""
    dialect = _check_dialect(project, "backup")
    if conn.in_transaction():
        conn.rollback()
    path = _new_dir(project, dest)
    try:
        try:
            tables = (_backup_sqlite(project, path) if dialect == "sqlite"
                      else _backup_mysql(conn, path))
        finally:
            if conn.in_transaction():
                conn.rollback()
        files = {p.name: _sha256(p) for p in sorted(path.iterdir())}
        manifest = Manifest(path, dialect, project.masked_url,
                            datetime.now(timezone.utc).isoformat(timespec="seconds"), tables,
                            files, database_identity(project.url))
        with _open_private(path / MANIFEST) as handle:
            handle.write(json.dumps(manifest.as_dict(), indent=2).encode("utf-8") + b"\n")
        return verify(path)
    except BaseException as err:
        _discard(path)
        if _disk_full(err):
            raise AlembicRepairError(
                f"backup: disk full while writing {path}; the partial backup was removed and "
                "the database is unchanged; free some space (or write the backup elsewhere) "
                "and run it again") from None
        raise


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, sqlite3.OperationalError) and "disk is full" in str(err)


def _discard(path: Path) -> None:
    """Remove a partial backup folder."""
    shutil.rmtree(path, ignore_errors=True)


def _backup_sqlite(project: Project, path: Path) -> tuple[TableInfo, ...]:
    target = path / SQLITE_FILE
    _open_private(target).close()
    source = sqlite3.connect(str(_sqlite_path(project.url)))
    try:
        _sqlite_copy(source, target)
    finally:
        source.close()
    os.chmod(target, 0o600)
    with _readonly_sqlite(target) as conn:
        return tuple(_info(conn, name) for name in _fk_order(conn))


def _sqlite_copy(source: sqlite3.Connection, target: Path) -> None:
    copy = sqlite3.connect(str(target))
    try:
        source.backup(copy)
    finally:
        copy.close()


def _info(conn: Connection, name: str, each_row: Callable[[bytes], None] | None = None,
          file: str | None = None) -> TableInfo:
    cols = table_columns(conn, name)
    total = table_checksum(conn, name, cols, each_row=each_row)
    return TableInfo(name, tuple(cols), total.rows, total.checksum, file)


def _writer(out: gzip.GzipFile) -> Callable[[bytes], None]:
    def write(line: bytes) -> None:
        out.write(line + b"\n")
    return write


def _backup_mysql(conn: Connection, path: Path) -> tuple[TableInfo, ...]:
    conn.rollback()
    conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    names = _fk_order(conn)
    preparer = conn.dialect.identifier_preparer
    schema = {name: str(conn.exec_driver_sql(f"SHOW CREATE TABLE {preparer.quote(name)}")
                        .one()[1]) for name in names}
    with _open_private(path / SCHEMA_FILE) as handle:
        handle.write(json.dumps(schema, indent=2).encode("utf-8") + b"\n")
    infos = []
    for name in names:
        file = f"{name}.jsonl.gz"
        with _open_private(path / file) as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            infos.append(_info(conn, name, _writer(out), file))
    return tuple(infos)


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
    backup itself; `BackupCorrupt` (one line, naming the file) on the first difference."""
    path = Path(path)
    manifest = _read_manifest(path)
    for name, expected in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise _corrupt(file, "the file is missing")
        if _sha256(file) != expected:
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
    else:
        for info in manifest.tables:
            if info.file is None or info.file not in manifest.files:
                raise _corrupt(path / MANIFEST, f"table {info.name} has no data file listed")
            _compare(path, info, rows_checksum(_jsonl_rows(path / info.file)))
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
            if rows == info.rows and columns and (
                    table_checksum(conn, info.name, columns)
                    == _backup_checksum(manifest, info, columns)):
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
            other_database: bool = False) -> RestoreReport:
    """Put a backup's rows back (see the module docstring); verifies before and after.
    A backup of another database is refused unless `other_database`."""
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
            return _apply(conn, manifest, plan)
    finally:
        engine.dispose()


def restore_locked(project: Project, conn: Connection, path: Path, *,
                   other_database: bool = False) -> RestoreReport:
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
    return _apply(conn, manifest, plan)


def _apply(conn: Connection, manifest: Manifest, plan: _Plan) -> RestoreReport:
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
            for rows in _source_rows(manifest, info, columns):
                batch: list[dict[str, Any]] = []
                for row in rows:
                    batch.append(dict(zip(columns, row, strict=True)))
                    if len(batch) >= _BATCH:
                        conn.execute(insert(target), batch)
                        inserted += len(batch)
                        batch = []
                if batch:
                    conn.execute(insert(target), batch)
                    inserted += len(batch)
            conn.commit()
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
