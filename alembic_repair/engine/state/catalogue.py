"""Catalogue signatures: one cheap query that changes whenever a table's definition does.

Used to tell which tables a revision changed during a replay, which tables changed since the
last doctor, and whether anything changed at all. Imports only SQLAlchemy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from .schema import is_user_table


def table_signatures(conn: Connection, only: Iterable[str] | None = None) -> dict[str, str]:
    """One hash per table from the catalogue: changes whenever the table's definition does.
    `only` restricts the query to those tables (a cheap check after a known change)."""
    rows: list[tuple[Any, ...]]
    names = sorted(only) if only is not None else None
    if names is not None and not names:
        return {}
    if conn.dialect.name == "sqlite":
        where = " AND tbl_name IN :names" if names is not None else ""
        query = text("SELECT tbl_name, type, name, sql FROM sqlite_master "
                     f"WHERE tbl_name NOT LIKE 'sqlite_%'{where} ORDER BY tbl_name, type, name")
        if names is not None:
            query = query.bindparams(bindparam("names", expanding=True))
        rows = [tuple(r) for r in conn.execute(query, {"names": names} if names else {})]
    elif conn.dialect.name in ("mysql", "mariadb"):
        table_filter = " AND TABLE_NAME IN :names" if names is not None else ""
        rows = [tuple(r) for r in conn.execute(_mysql_signature_query(table_filter),
                                               {"names": names} if names else {})]
        rows.sort(key=lambda r: tuple(str(v) for v in r))
    else:  # no cheap catalogue query: every table counts as changed
        return {}
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(str(row[0]), []).append(row[1:])
    return {table: hashlib.sha256(repr(items).encode()).hexdigest()
            for table, items in grouped.items() if is_user_table(table)}


def _mysql_signature_query(table_filter: str) -> Any:
    """Columns, index parts, foreign key columns and rules of the current schema's tables."""
    schema = "TABLE_SCHEMA = DATABASE()" + table_filter
    query = text(
        "SELECT TABLE_NAME, 'c', COLUMN_NAME, CONCAT_WS('|', ORDINAL_POSITION, COLUMN_TYPE, "
        f"IS_NULLABLE, COLUMN_DEFAULT) FROM information_schema.COLUMNS WHERE {schema} "
        "UNION ALL SELECT TABLE_NAME, 'i', INDEX_NAME, CONCAT_WS('|', SEQ_IN_INDEX, "
        f"COLUMN_NAME, NON_UNIQUE) FROM information_schema.STATISTICS WHERE {schema} "
        "UNION ALL SELECT TABLE_NAME, 'f', CONSTRAINT_NAME, CONCAT_WS('|', COLUMN_NAME, "
        "REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME) FROM information_schema.KEY_COLUMN_USAGE "
        f"WHERE {schema} AND REFERENCED_TABLE_NAME IS NOT NULL "
        "UNION ALL SELECT TABLE_NAME, 'r', CONSTRAINT_NAME, CONCAT_WS('|', DELETE_RULE, "
        "UPDATE_RULE) FROM information_schema.REFERENTIAL_CONSTRAINTS "
        f"WHERE CONSTRAINT_SCHEMA = DATABASE(){table_filter}")
    if table_filter:
        query = query.bindparams(bindparam("names", expanding=True))
    return query
