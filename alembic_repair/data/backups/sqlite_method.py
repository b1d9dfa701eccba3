"""The SQLite method: the online backup API copies the file, which is then opened read-only for
its checksums, for verify and for restore."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from ...engine.driver_errors import sqlite_backup_progress
from ...engine.endpoint import busy_timeout
from ...engine.project import Project
from ...engine.url import parse_url
from ...errors import ConfigError
from . import manifest
from .checksums import Progress
from .manifest import SQLITE_FILE, TableInfo
from .tables import fk_order, info


def _sqlite_path(url: str) -> Path:
    database = parse_url(url).database
    if not database or database == ":memory:":
        raise ConfigError("backup: an in-memory SQLite database cannot be backed up")
    return Path(database).expanduser().resolve()


def backup_sqlite(project: Project, path: Path, progress: Progress | None
                   ) -> tuple[TableInfo, ...]:
    target = path / SQLITE_FILE
    manifest.open_private(target).close()
    source_path = _sqlite_path(project.url)
    source = sqlite3.connect(str(source_path), timeout=busy_timeout())
    try:
        sqlite_copy(source, target, source_path)
    finally:
        source.close()
    os.chmod(target, 0o600)
    with readonly_sqlite(target) as conn:
        return tuple(info(conn, name, progress=progress) for name in fk_order(conn))


def sqlite_copy(source: sqlite3.Connection, target: Path, source_path: Path) -> None:
    copy = sqlite3.connect(str(target))
    try:
        # bounded: Python retries a source another writer keeps locked forever otherwise
        source.backup(copy, progress=sqlite_backup_progress(source_path))
    finally:
        copy.close()


class _ReadonlySqlite:
    def __init__(self, path: Path) -> None:
        self.engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
        self.engine.dispose()


def readonly_sqlite(path: Path) -> _ReadonlySqlite:
    return _ReadonlySqlite(path)


def schema_sqlite(path: Path, name: str) -> list[str]:
    with readonly_sqlite(path / SQLITE_FILE) as conn:
        rows = conn.execute(text("SELECT type, sql FROM sqlite_master WHERE tbl_name = :t AND "
                                 "sql IS NOT NULL"), {"t": name}).all()
    return [r.sql for r in rows if r.type == "table"] + [r.sql for r in rows if r.type != "table"]
