"""SQLite values that do not fit their column's declared type (SQLite stores anything)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from .schema import user_tables


@dataclass(frozen=True)
class Junk:
    table: str
    column: str
    declared: str
    count: int
    sample: str


def predicate(declared: str, column: str) -> str | None:
    """SQL true for a value that does not fit `declared` (None: anything fits)."""
    kind = declared.upper()
    if "INT" in kind or kind.startswith("BOOL"):
        return f"typeof({column}) NOT IN ('integer', 'null')"
    if any(word in kind for word in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return f"typeof({column}) NOT IN ('integer', 'real', 'null')"
    if kind.startswith(("DATETIME", "TIMESTAMP", "DATE")):
        return (f"typeof({column}) = 'text' AND {column} NOT GLOB "
                "'[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]*'")
    return None


def find_junk(conn: Connection) -> tuple[Junk, ...]:
    if conn.dialect.name != "sqlite":
        return ()
    quote = conn.dialect.identifier_preparer.quote
    found = []
    insp = inspect(conn)
    for table in user_tables(conn):
        for col in insp.get_columns(table):
            declared = str(col["type"])
            where = predicate(declared, quote(col["name"]))
            if where is None:
                continue
            rows = conn.execute(text(
                f"SELECT COUNT(*), MIN(CAST({quote(col['name'])} AS TEXT)) FROM {quote(table)} "
                f"WHERE {where}")).one()
            if rows[0]:
                found.append(Junk(table, col["name"], declared, int(rows[0]), str(rows[1])))
    return tuple(found)
