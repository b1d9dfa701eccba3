"""The version table (``alembic_version``): every read and every stamp goes through here.

Values are normalised to text here, once: a ``version_num`` made INT by hand reads as ``"12"``
(the rules then report an unknown revision) instead of crashing whoever compares it with a
revision id. Rows are read as they are, duplicates kept (a table without a primary key may hold
any), NULLs left out. The table name is a parameter, defaulting to Alembic's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ...errors import RefusedUnsafe
from ...private import private_dir
from ..project import Project
from .schema import VERSION_TABLE

#: The width Alembic gives ``version_num`` when it creates ``alembic_version`` itself.
DEFAULT_VERSION_WIDTH = 32


@dataclass(frozen=True)
class VersionTable:
    """The version table as it is: rows (duplicates kept), column length, primary key."""

    exists: bool
    rows: tuple[str, ...] = ()
    length: int | None = None
    has_pk: bool = True

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.rows)))


def recorded_rows(conn: Connection, table: str = VERSION_TABLE) -> tuple[str, ...] | None:
    """The rows of the version table as text, in table order (None when it does not exist)."""
    if not inspect(conn).has_table(table):
        return None
    return tuple(str(r[0]) for r in conn.exec_driver_sql(f"SELECT version_num FROM {table}")
                 if r[0] is not None)


def version_rows(conn: Connection, table: str = VERSION_TABLE) -> tuple[str, ...]:
    """The rows of the version table as text, duplicates kept (empty when it is missing)."""
    return recorded_rows(conn, table) or ()


def current_heads(connection: Connection, table: str = VERSION_TABLE) -> tuple[str, ...]:
    """The revision ids in the version table (empty when the table is missing or empty)."""
    return version_rows(connection, table)


def read_versions(conn: Connection, table: str = VERSION_TABLE) -> VersionTable:
    """The version table's rows and shape, for the rules."""
    rows = recorded_rows(conn, table)
    if rows is None:
        return VersionTable(exists=False)
    insp = inspect(conn)
    length = None
    for column in insp.get_columns(table):
        if column["name"] == "version_num":
            length = getattr(column["type"], "length", None)
    has_pk = bool(insp.get_pk_constraint(table).get("constrained_columns"))
    return VersionTable(True, rows, length, has_pk)


def check_version_column(connection: Connection, table: str = VERSION_TABLE) -> None:
    """Refuse a ``version_num`` that cannot hold a revision id (an INT made by hand): Alembic
    would fail on its UPDATE after the revision's DDL ran."""
    insp = inspect(connection)
    if not insp.has_table(table):
        return
    kind = next((c["type"] for c in insp.get_columns(table) if c["name"] == "version_num"), None)
    try:
        text_column = kind is None or kind.python_type is str
    except NotImplementedError:
        text_column = True
    if not text_column:
        raise RefusedUnsafe(
            f"{table}.version_num is {kind}, but revision ids are text; nothing "
            f"changed; make it a string column (ALTER TABLE {table} MODIFY "
            f"version_num VARCHAR({DEFAULT_VERSION_WIDTH}) NOT NULL), then run again")


def log_stamp(project: Project, before: Sequence[str], after: Sequence[str]) -> None:
    """Keep what the version table said before we restamped it, one JSON line per restamp in
    ``.alembic_repair/stamps.jsonl`` (``after`` is the new rows, comma-separated; ``base``
    when none)."""
    private_dir(project.state_dir)
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "before": list(before), "after": ", ".join(after) or "base"}
    with (project.state_dir / "stamps.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def write_version_rows(project: Project, conn: Connection, rows: tuple[str, ...],
                       table: str = VERSION_TABLE) -> None:
    """Make the version table hold exactly `rows`, in Alembic's own shape (a VARCHAR(32)
    primary key); a table of another shape (no key, too short, not text) is rebuilt. The old
    rows are logged in ``.alembic_repair/stamps.jsonl``."""
    before = version_rows(conn, table)
    insp = inspect(conn)
    rebuild = False
    if insp.has_table(table):
        column = next(c for c in insp.get_columns(table) if c["name"] == "version_num")
        length = getattr(column["type"], "length", None)
        try:
            text_column = column["type"].python_type is str
        except NotImplementedError:
            text_column = True
        has_pk = bool(insp.get_pk_constraint(table).get("constrained_columns"))
        rebuild = not has_pk or not text_column or (length is not None
                                                    and length < DEFAULT_VERSION_WIDTH)
    if rebuild:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    if rebuild or not insp.has_table(table):
        conn.exec_driver_sql(f"CREATE TABLE {table} (version_num "
                             f"VARCHAR({DEFAULT_VERSION_WIDTH}) NOT NULL, "
                             f"CONSTRAINT {table}_pkc PRIMARY KEY (version_num))")
    conn.exec_driver_sql(f"DELETE FROM {table}")
    for rev in dict.fromkeys(rows):
        conn.exec_driver_sql(f"INSERT INTO {table} (version_num) VALUES (%s)"
                             if conn.dialect.paramstyle in ("format", "pyformat") else
                             f"INSERT INTO {table} (version_num) VALUES (?)", (rev,))
    conn.commit()
    if set(before) != set(rows):
        log_stamp(project, before, rows)
