"""The "tsv" data format of the Python method for MySQL/MariaDB: one ``<table>.tsv`` per table,
exactly what ``LOAD DATA ... CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\'
LINES TERMINATED BY '\\n'`` reads. One line per row; NULL as ``\\N``; in a value ``\\`` is
written ``\\\\``, TAB ``\\t``, LF ``\\n`` and NUL ``\\0``, so a raw LF only ever ends a row.

Values are each column's stored bytes (``CAST(col AS BINARY)``, the session in UTC), formatted
by the server in one SELECT expression per row (`select_sql`), so Python only moves bytes.
Binary-like columns are written as upper-case hex and loaded with ``SET col = UNHEX(@v)``
(a raw byte string would be reinterpreted; hex is plain ASCII); generated columns are neither
written nor loaded; FLOAT is written as its double (see `TsvColumn`). Every literal is a hex
literal, so the SQL reads the same whatever the session's ``NO_BACKSLASH_ESCAPES``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

TSV_SUFFIX = ".tsv"
NULL = b"\\N"
#: written as hex: the bytes are not text in any character set
HEX_TYPES = frozenset({
    "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit",
    "geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
    "multipolygon", "geometrycollection", "geomcollection"})
#: text columns that may hold more bytes than this are written as hex too: the server's
#: REPLACE moves the rest of the value for every byte it escapes (quadratic: 200,000
#: backslashes in one value take 27 s on MariaDB 10.11), HEX is linear
PLAIN_MAX_BYTES = 4096
_GENERATED = ("VIRTUAL GENERATED", "STORED GENERATED", "PERSISTENT GENERATED")
#: (raw byte, its escape) in the order the server applies them (backslash first)
_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\x00", b"\\0"))
_TAB, _LF, _BACKSLASH = "X'09'", "X'0A'", "X'5C'"
#: what LOAD DATA makes of a backslash and the next byte (any other byte: itself)
_UNESCAPE = {b"t": b"\t", b"n": b"\n", b"0": b"\x00", b"r": b"\r", b"b": b"\b", b"Z": b"\x1a"}


@dataclass(frozen=True)
class TsvColumn:
    name: str
    hex: bool  # written as HEX(col), loaded with UNHEX
    #: FLOAT: written as its double (``col + 0E0``): its own text has 6 digits, too few to
    #: load back the same value; the double's digits round back to exactly the stored float
    float: bool = False


def tsv_columns(conn: Connection, name: str, schema: str | None = None
                ) -> tuple[TsvColumn, ...]:
    """The columns a tsv file of table `name` holds, in table order: every column that is not
    generated (``information_schema.COLUMNS.EXTRA``), hex for the binary-like types and for
    text longer than `PLAIN_MAX_BYTES`."""
    rows = conn.exec_driver_sql(
        "SELECT COLUMN_NAME, DATA_TYPE, EXTRA, CHARACTER_OCTET_LENGTH FROM "
        "information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND "
        "TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (schema, name)).all()
    return tuple(TsvColumn(str(c), str(t).lower() in HEX_TYPES or int(size or 0)
                           > PLAIN_MAX_BYTES, str(t).lower() == "float")
                 for c, t, extra, size in rows
                 if not any(g in str(extra or "").upper() for g in _GENERATED))


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _hex(data: bytes) -> str:
    return "X'" + data.hex().upper() + "'"


def _value_sql(column: TsvColumn) -> str:
    if column.hex:
        return f"HEX({quote_name(column.name)})"
    value = f"CAST({quote_name(column.name)}{' + 0E0' if column.float else ''} AS BINARY)"
    for raw, escaped in _ESCAPES:
        value = f"REPLACE({value}, {_hex(raw)}, {_hex(escaped)})"
    return value


def select_sql(name: str, columns: Sequence[TsvColumn], schema: str | None = None) -> str:
    """One SELECT whose single (binary) column is each row's whole line, without the LF."""
    values = ", ".join(f"IFNULL({_value_sql(c)}, {_hex(NULL)})" for c in columns)
    source = (quote_name(schema) + "." if schema else "") + quote_name(name)
    return f"SELECT CONCAT_WS({_TAB}, {values}) FROM {source}"


def load_data_sql(table: str, columns: Sequence[str], hex_columns: Sequence[str], path: str,
                  schema: str | None = None) -> str:
    """The ``LOAD DATA LOCAL INFILE`` statement that reads the tsv file at `path` into `table`
    (in `schema`, default the current database): `columns` as the manifest's
    ``TableInfo.columns`` (file order), `hex_columns` as its ``hex``. Run it on a session in
    time zone UTC (``checksums.utc_session``; TIMESTAMP values are UTC text), with
    ``local_infile`` allowed (PyMySQL ``local_infile=True``; the client ``--local-infile=1``)
    and, for a plain string literal path, without ``NO_BACKSLASH_ESCAPES`` in sql_mode when
    the path holds a backslash."""
    hexed = set(hex_columns)
    targets, sets = [], []
    for i, column in enumerate(columns):
        if column in hexed:
            targets.append(f"@h{i}")
            sets.append(f"{quote_name(column)} = UNHEX(@h{i})")
        else:
            targets.append(quote_name(column))
    literal = "'" + path.replace("\\", "\\\\").replace("'", "''") + "'"
    where = (quote_name(schema) + "." if schema else "") + quote_name(table)
    sql = (f"LOAD DATA LOCAL INFILE {literal} INTO TABLE {where} CHARACTER SET binary "
           f"FIELDS TERMINATED BY {_TAB} ESCAPED BY {_BACKSLASH} "
           f"LINES TERMINATED BY {_LF} ({', '.join(targets)})")
    return sql + (" SET " + ", ".join(sets) if sets else "")


def encode_line(values: Sequence[bytes | None]) -> bytes:
    """A row's line (without the LF) as the server writes it: for tests and tools."""
    fields = []
    for value in values:
        if value is None:
            fields.append(NULL)
            continue
        for raw, escaped in _ESCAPES:
            value = value.replace(raw, escaped)
        fields.append(value)
    return b"\t".join(fields)


def decode_line(line: bytes) -> list[bytes | None]:
    """The values of one line (without the LF), as LOAD DATA reads them (hex columns still
    hex): the inverse of `encode_line`."""
    values: list[bytes | None] = []
    for field in line.split(b"\t"):
        if field == NULL:
            values.append(None)
            continue
        out, i = bytearray(), 0
        while (j := field.find(b"\\", i)) >= 0:
            out += field[i:j]
            code = field[j + 1:j + 2]
            out += _UNESCAPE.get(code, code)
            i = j + 2
        out += field[i:]
        values.append(bytes(out))
    return values
