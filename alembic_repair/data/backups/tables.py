"""Which tables a backup holds (user tables and ``alembic_version``, in foreign-key order), their
DDL, and each one's `TableInfo`, taken as its rows are read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ...engine.state.schema import VERSION_TABLE, is_user_table
from . import manifest
from .checksums import BATCH, Progress, table_checksum, table_columns
from .manifest import SCHEMA_FILE, TableInfo


def _wanted(name: str) -> bool:
    return is_user_table(name) or name == VERSION_TABLE


def fk_order(conn: Connection) -> list[str]:
    names = [n for n, _ in inspect(conn).get_sorted_table_and_fkc_names() if n is not None]
    return [n for n in names if _wanted(n)]


def info(conn: Connection, name: str, out: BinaryIO | None = None, file: str | None = None,
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
        if progress is not None and done % BATCH == 0:
            progress(name, done, total)

    found = table_checksum(conn, name, cols, each_row=each_row)
    if progress is not None:
        progress(name, found.rows, found.rows)
    return TableInfo(name, tuple(cols), found.rows, found.checksum, file)


def mysql_schema(conn: Connection) -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    names = fk_order(conn)
    quote = conn.dialect.identifier_preparer.quote
    schema = {name: str(conn.exec_driver_sql(f"SHOW CREATE TABLE {quote(name)}").one()[1])
              for name in names}
    return names, schema, {name: table_columns(conn, name) for name in names}


def write_schema(path: Path, schema: dict[str, str]) -> None:
    with manifest.open_private(path / SCHEMA_FILE) as handle:
        handle.write(json.dumps(schema, indent=2).encode("utf-8") + b"\n")
