"""The Python method for MySQL/MariaDB: inside one consistent snapshot, per table its
``CHECKSUM TABLE`` and its rows as ``<table>.tsv`` (`tsv_format`), each line built by the
server and read as raw bytes; needs no client tools. Older backups hold canonical
``<table>.jsonl.gz`` files instead: they are still read here (`jsonl_rows`)."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from contextlib import suppress
from operator import itemgetter
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
from sqlalchemy.engine import Connection

from ...errors import AlembicRepairError
from . import manifest
from .checksums import (
    Progress,
    decode_value,
    driver_failure,
    row_count,
    table_checksum_sql,
    utc_session,
)
from .manifest import TableInfo, corrupt
from .tables import info, mysql_schema, write_schema
from .tsv_format import TSV_SUFFIX, select_sql, tsv_columns

#: rows per fetch at most: enough that Python's per-fetch cost vanishes
FETCH = 10_000
#: bytes per fetch, about: the next fetch's rows follow the last one's line length, so wide
#: rows (blobs) keep memory flat too
FETCH_BYTES = 4 << 20


def backup_mysql(conn: Connection, path: Path, progress: Progress | None
                  ) -> tuple[tuple[TableInfo, ...], dict[str, str]]:
    """Write every table's ``<table>.tsv`` and ``schema.json`` into `path`, all from one
    ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (writers are not blocked; ``CHECKSUM
    TABLE`` reads that snapshot too). Returns the tables and the sha256 of each data file
    as written."""
    conn.rollback()
    infos, digests = [], {}
    with utc_session(conn):
        conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        try:
            names, schema, _ = mysql_schema(conn)
            write_schema(path, schema)
            engines: dict[str, str | None] = dict(conn.exec_driver_sql(
                "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE()").all())
            for name in names:
                table, digests[name + TSV_SUFFIX] = _write_table(conn, path, name, progress,
                                                                 engines.get(name))
                infos.append(table)
        except BaseException:
            with suppress(Exception):  # a dead connection: the first error is the one to tell
                conn.rollback()
            raise
        conn.rollback()
    return tuple(infos), digests


#: engines whose rows the consistent snapshot holds still; a table of any other (MyISAM, Aria,
#: MEMORY, MRG_MyISAM, ...) can change between its CHECKSUM TABLE and the read of its rows
TRANSACTIONAL = frozenset({"InnoDB"})


class _CountChanged(AlembicRepairError):
    """The rows read are not as many as the server counted."""


def _write_table(conn: Connection, path: Path, name: str, progress: Progress | None,
                 engine: str | None) -> tuple[TableInfo, str]:
    """A table outside the snapshot's reach (not `TRANSACTIONAL`) has its ``CHECKSUM TABLE``
    taken again once its rows are read: if a write came in between, the rows match no
    checksum (the backup would verify and never restore), so the table is read once more,
    then the backup fails."""
    if engine in TRANSACTIONAL:
        return _read_table(conn, path, name, progress)
    for _attempt in range(2):
        (path / (name + TSV_SUFFIX)).unlink(missing_ok=True)
        try:
            table, digest = _read_table(conn, path, name, progress)
        except _CountChanged:
            continue
        after = table_checksum_sql(conn, name)
        if (after.rows, after.checksum) == (table.rows, table.checksum):
            return table, digest
    raise AlembicRepairError(f"backup: table {name} ({engine}) changed while it was backed "
                             "up; stop the application's writes and run the backup again")


def _read_table(conn: Connection, path: Path, name: str, progress: Progress | None
                ) -> tuple[TableInfo, str]:
    columns = tsv_columns(conn, name)
    expected = table_checksum_sql(conn, name)  # the snapshot's, like the rows below
    file = name + TSV_SUFFIX
    if progress is not None:
        progress(name, 0, expected.rows)
    digest, done = hashlib.sha256(), 0
    first = itemgetter(0)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with manifest.open_private(path / file) as out:
        cursor = _streaming_cursor(raw)
        try:
            cursor.execute(select_sql(name, columns))
            size = 1  # then as many as fit FETCH_BYTES
            while rows := cursor.fetchmany(size):
                data = b"\n".join(map(first, rows)) + b"\n"
                out.write(data)
                digest.update(data)
                done += len(rows)
                size = max(1, min(FETCH, FETCH_BYTES * len(rows) // len(data)))
                if progress is not None:
                    progress(name, done, expected.rows)
        except pymysql.MySQLError as err:  # the raw cursor's: SQLAlchemy does not see them
            raise driver_failure(f"backup: table {name}", err) from None
        finally:
            with suppress(Exception):  # closed already, or a dead connection
                cursor.close()
    if done != expected.rows:
        raise _CountChanged(f"backup: table {name}: the server counted {expected.rows} "
                                 f"rows, {done} were read; run the backup again")
    table = TableInfo(name, tuple(c.name for c in columns), expected.rows, expected.checksum,
                      file, tuple(c.name for c in columns if c.hex))
    return table, digest.hexdigest()


def _streaming_cursor(raw: Any) -> Any:
    """An unbuffered cursor (rows read from the socket as fetched, never a whole table in
    memory) on the driver's connection, raw values (bytes for our binary column)."""
    if type(raw).__module__.startswith("MySQLdb"):  # mysqlclient
        from MySQLdb.cursors import SSCursor

        return raw.cursor(SSCursor)
    return raw.cursor(pymysql.cursors.SSCursor)


def backup_mysql_jsonl(conn: Connection, path: Path, progress: Progress | None
                        ) -> tuple[TableInfo, ...]:
    """The format before tsv (canonical JSON lines, gzipped, sha256 checksums): no longer
    written by `backup`; kept so that tests can write one and show that such backups still
    verify and restore."""
    conn.rollback()
    conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    names, schema, _ = mysql_schema(conn)
    write_schema(path, schema)
    infos = []
    for name in names:
        file = f"{name}.jsonl.gz"
        total = row_count(conn, name) if progress is not None else None
        with manifest.open_private(path / file) as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            infos.append(info(conn, name, out, file, progress, total))  # type: ignore[arg-type]
    return tuple(infos)


def jsonl_rows(file: Path) -> Iterator[list[Any]]:
    try:
        with gzip.open(file, "rb") as handle:
            for line in handle:
                yield [decode_value(v) for v in json.loads(line)]
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError,
            UnicodeDecodeError) as err:
        raise corrupt(file, f"the data does not read ({type(err).__name__})") from None
