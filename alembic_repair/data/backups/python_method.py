"""The Python method for MySQL/MariaDB: rows streamed from one consistent snapshot into
canonical ``<table>.jsonl.gz`` files; needs no client tools."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from . import manifest
from .checksums import Progress, decode_value, row_count
from .manifest import TableInfo, corrupt
from .tables import info, mysql_schema, write_schema


def backup_mysql(conn: Connection, path: Path, progress: Progress | None
                  ) -> tuple[TableInfo, ...]:
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
