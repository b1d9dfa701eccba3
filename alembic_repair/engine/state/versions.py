"""The ``alembic_version`` table as it is: rows (duplicates kept), column length, primary key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from .schema import VERSION_TABLE


@dataclass(frozen=True)
class VersionTable:
    exists: bool
    rows: tuple[str, ...] = ()
    length: int | None = None
    has_pk: bool = True

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.rows)))


def read_versions(conn: Connection) -> VersionTable:
    insp = inspect(conn)
    if not insp.has_table(VERSION_TABLE):
        return VersionTable(exists=False)
    # str(): an INT version_num (made by hand) must become a finding, not a TypeError later.
    rows = tuple(str(r[0]) for r in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
                 if r[0] is not None)
    length = None
    for column in insp.get_columns(VERSION_TABLE):
        if column["name"] == "version_num":
            length = getattr(column["type"], "length", None)
    has_pk = bool(insp.get_pk_constraint(VERSION_TABLE).get("constrained_columns"))
    return VersionTable(True, rows, length, has_pk)
