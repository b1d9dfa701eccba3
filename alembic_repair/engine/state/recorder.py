"""The version table (``alembic_version``): every read and every stamp goes through here.

Values are normalised to text here, once: a ``version_num`` made INT by hand reads as ``"12"``
(the rules then report an unknown revision) instead of crashing whoever compares it with a
revision id. Rows are read as they are, duplicates kept (a table without a primary key may hold
any), NULLs left out.

Which table: env.py may pass ``version_table`` / ``version_table_schema`` to
``context.configure``. The engine opened for a project carries the project's choice
(`bind_version_table`, done by `engine.database`), so every reader and writer here finds the
right table from the connection alone, without threading the project through every caller;
a connection without it (a scratch database, a test's own engine) means Alembic's default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from ...errors import RefusedUnsafe
from ...private import private_dir
from ..project import Project
from .config import version_table
from .schema import VERSION_TABLE

#: The width Alembic gives ``version_num`` when it creates ``alembic_version`` itself.
DEFAULT_VERSION_WIDTH = 32
#: The execution option that carries the project on its engines (see the module's doc).
OPTION = "alembic_repair_project"


def bind_version_table(engine: Engine, project: Project) -> Engine:
    """Make every connection of `engine` read and stamp `project`'s version table (decided at
    each use by `state.config.version_table`: what env.py passed when it ran in this process
    may settle it after the engine was opened)."""
    engine.update_execution_options(**{OPTION: project})
    return engine


def version_table_of(conn: Connection, project: Project | None = None
                     ) -> tuple[str, str | None]:
    """(table, schema) of the version table of `conn`'s database: its engine's project's, else
    `project`'s, else Alembic's default."""
    bound = conn.get_execution_options().get(OPTION, project)
    return version_table(bound) if bound is not None else (VERSION_TABLE, None)


def _resolve(conn: Connection, table: str | None, schema: str | None = None
             ) -> tuple[str, str | None, str]:
    """(table, schema, the name to write in SQL, quoted where needed)."""
    if table is None:
        table, schema = version_table_of(conn)
    prep = conn.dialect.identifier_preparer
    sql = prep.quote(table)
    if schema is not None:
        sql = f"{prep.quote_schema(schema)}.{sql}"
    return table, schema, sql


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


def recorded_rows(conn: Connection, table: str | None = None, *, schema: str | None = None
                  ) -> tuple[str, ...] | None:
    """The rows of the version table as text, in table order (None when it does not exist);
    `table` None: the one `conn`'s project uses (`version_table_of`)."""
    table, schema, sql = _resolve(conn, table, schema)
    if not inspect(conn).has_table(table, schema=schema):
        return None
    return tuple(str(r[0]) for r in conn.exec_driver_sql(f"SELECT version_num FROM {sql}")
                 if r[0] is not None)


def version_rows(conn: Connection, table: str | None = None, *, schema: str | None = None
                 ) -> tuple[str, ...]:
    """The rows of the version table as text, duplicates kept (empty when it is missing)."""
    return recorded_rows(conn, table, schema=schema) or ()


def current_heads(connection: Connection, table: str | None = None, *,
                  schema: str | None = None) -> tuple[str, ...]:
    """The revision ids in the version table (empty when the table is missing or empty)."""
    return version_rows(connection, table, schema=schema)


def read_versions(conn: Connection, table: str | None = None, *, schema: str | None = None
                  ) -> VersionTable:
    """The version table's rows and shape, for the rules."""
    table, schema, _ = _resolve(conn, table, schema)
    rows = recorded_rows(conn, table, schema=schema)
    if rows is None:
        return VersionTable(exists=False)
    insp = inspect(conn)
    length = None
    for column in insp.get_columns(table, schema=schema):
        if column["name"] == "version_num":
            length = getattr(column["type"], "length", None)
    has_pk = bool(insp.get_pk_constraint(table, schema=schema).get("constrained_columns"))
    return VersionTable(True, rows, length, has_pk)


def check_version_column(connection: Connection, table: str | None = None, *,
                         schema: str | None = None) -> None:
    """Refuse a ``version_num`` that cannot hold a revision id (an INT made by hand): Alembic
    would fail on its UPDATE after the revision's DDL ran."""
    table, schema, sql = _resolve(connection, table, schema)
    insp = inspect(connection)
    if not insp.has_table(table, schema=schema):
        return
    kind = next((c["type"] for c in insp.get_columns(table, schema=schema)
                 if c["name"] == "version_num"), None)
    try:
        text_column = kind is None or kind.python_type is str
    except NotImplementedError:
        text_column = True
    if not text_column:
        raise RefusedUnsafe(
            f"{table}.version_num is {kind}, but revision ids are text; nothing "
            f"changed; make it a string column (ALTER TABLE {sql} MODIFY "
            f"version_num VARCHAR({DEFAULT_VERSION_WIDTH}) NOT NULL), then run again")


def log_stamp(project: Project, before: Sequence[str], after: Sequence[str]) -> None:
    """Keep what the version table said before we restamped it, one JSON line per restamp in
    ``.alembic_repair/stamps.jsonl`` (``after`` is the new rows, comma-separated; ``base``
    when none)."""
    private_dir(project.state_dir)
    entry = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "before": list(before), "after": ", ".join(after) or "base"}
    # 0600 like every file in the folder (os.open's mode applies only when it creates; a log
    # an earlier version wrote 0644 is tightened too).
    fd = os.open(project.state_dir / "stamps.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def write_version_rows(project: Project, conn: Connection, rows: tuple[str, ...],
                       table: str | None = None, *, schema: str | None = None) -> None:
    """Make the version table (`table` None: the project's, `version_table_of`) hold exactly
    `rows`, in Alembic's own shape (a VARCHAR(32) primary key); a table of another shape (no
    key, too short, not text) is rebuilt. The old rows are logged in
    ``.alembic_repair/stamps.jsonl``."""
    if table is None:
        table, schema = version_table_of(conn, project)
    table, schema, sql = _resolve(conn, table, schema)
    before = version_rows(conn, table, schema=schema)
    insp = inspect(conn)
    rebuild = False
    if insp.has_table(table, schema=schema):
        column = next(c for c in insp.get_columns(table, schema=schema)
                      if c["name"] == "version_num")
        length = getattr(column["type"], "length", None)
        try:
            text_column = column["type"].python_type is str
        except NotImplementedError:
            text_column = True
        has_pk = bool(insp.get_pk_constraint(table, schema=schema).get("constrained_columns"))
        rebuild = not has_pk or not text_column or (length is not None
                                                    and length < DEFAULT_VERSION_WIDTH)
    if rebuild:
        conn.exec_driver_sql(f"DROP TABLE {sql}")
    if rebuild or not insp.has_table(table, schema=schema):
        key = conn.dialect.identifier_preparer.quote(f"{table}_pkc")
        conn.exec_driver_sql(f"CREATE TABLE {sql} (version_num "
                             f"VARCHAR({DEFAULT_VERSION_WIDTH}) NOT NULL, "
                             f"CONSTRAINT {key} PRIMARY KEY (version_num))")
    conn.exec_driver_sql(f"DELETE FROM {sql}")
    for rev in dict.fromkeys(rows):
        conn.exec_driver_sql(f"INSERT INTO {sql} (version_num) VALUES (%s)"
                             if conn.dialect.paramstyle in ("format", "pyformat") else
                             f"INSERT INTO {sql} (version_num) VALUES (?)", (rev,))
    conn.commit()
    if set(before) != set(rows):
        log_stamp(project, before, rows)
