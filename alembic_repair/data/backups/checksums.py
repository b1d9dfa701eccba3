"""Row and table checksums: one canonical definition (in Python, and on the server for
MySQL/MariaDB) so that backup, verify and restore compare like with like."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import column, func, inspect, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ...errors import AlembicRepairError, ConfigError, DatabaseUnreachable

BATCH = 1000
Row = Sequence[Any]


#: progress(table, rows done, rows in the table or None when unknown)
Progress = Callable[[str, int, "int | None"], None]


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


def stream(conn: Connection, name: str, columns: Sequence[str]) -> Iterator[Row]:
    """The rows of `name`, raw driver values, in primary-key order, streamed."""
    order = _order(conn, name, columns)
    query: Any = (select(*[column(c) for c in columns]).select_from(table(name))
             .order_by(*[column(c) for c in order]))
    result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
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
    return rows_checksum(stream(conn, name, cols), each_row)


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
                    schema: str | None = None, kind: str = "md5sum64",
                    as_text: Collection[str] = ()) -> TableSum:
    """Row count and an order-independent content checksum computed by the server, over
    `columns`: each row's values as the hex of their text (NULL as ``N``), comma-separated;
    per row a 64-bit hash (``crc64c``: CRC32 and CRC32C side by side; ``md5sum64``: the first
    64 bits of MD5), summed mod 2**64. One scan, no sort, no row leaves the server. The
    session's time zone should be UTC (TIMESTAMP values are compared as text). The columns
    in `as_text` are hashed as their text in utf8mb4, not their stored bytes: a column whose
    character set differs between the two tables compared (latin1 -> utf8mb4)."""
    quote = conn.dialect.identifier_preparer.quote
    values = ", ".join(
        f"IFNULL(HEX(CONVERT({quote(c)} USING utf8mb4)), 'N')" if c in as_text else
        f"IFNULL(HEX(CAST({quote(c)} AS BINARY)), 'N')" for c in columns) or "''"
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


def kind_of(checksum: str) -> str:
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


def columns_signature(conn: Connection, name: str, schema: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.exec_driver_sql(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLLATION_NAME FROM "
        "information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION", (schema, name)).all()]


def charset_changed(conn: Connection, name: str, schema: str, other: str) -> set[str]:
    """The columns of table `name` whose character set differs between `schema` and `other`
    (their stored bytes differ for the same text)."""
    sets: list[dict[str, Any]] = [dict(conn.exec_driver_sql(
        "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE "
        "TABLE_SCHEMA = %s AND TABLE_NAME = %s", (s, name)).all()) for s in (schema, other)]
    return {c for c, charset in sets[0].items() if c in sets[1] and sets[1][c] != charset}


@contextmanager
def utc_session(conn: Connection) -> Iterator[None]:
    before = conn.exec_driver_sql("SELECT @@session.time_zone").scalar()
    conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
    try:
        yield
    except BaseException:
        with suppress(Exception):  # the connection may be dead: the first error is the one
            conn.exec_driver_sql("SET SESSION time_zone = %s", (before,))
        raise
    conn.exec_driver_sql("SET SESSION time_zone = %s", (before,))


def driver_failure(action: str, err: Exception) -> AlembicRepairError:
    """A driver error met on a raw (PyMySQL) cursor as one line: a lost connection (MySQL
    2006/2013, PyMySQL's InterfaceError) as `DatabaseUnreachable`. Callers redact it."""
    args = err.args
    code = args[0] if args and isinstance(args[0], int) else None
    text = str(args[1]) if len(args) > 1 else str(err)
    detail = (text.strip().splitlines() or [f"{type(err).__name__} {code or ''}".strip()])[0]
    if code in (2006, 2013) or type(err).__name__ == "InterfaceError":
        return DatabaseUnreachable(f"{action}: the connection to the server was lost "
                                   f"({detail}); run it again")
    return AlembicRepairError(f"{action}: {detail}")


def row_count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
