"""The step that changes row values: `ClearJunk` (AR407, only on request)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy import inspect

from ... import private
from ...errors import NeedsRepair
from ...wording import counted
from .base import (
    Context,
    Step,
    register,
)


@register
@dataclass(frozen=True)
class ClearJunk(Step):
    """Set the values of an SQLite column that do not fit its declared type to NULL. Only on
    request (``fix --only AR407``): the old values stay in the backup, and are also written,
    with their primary keys, to ``cleared-values.jsonl`` in the run's backup folder."""

    kind: ClassVar[str] = "clear-junk"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    keeps_history: ClassVar[bool] = True
    table: str
    column: str
    declared: str
    count: int

    def describe(self) -> str:
        return (f"set the {counted(self.count, 'value')} of {self.table}.{self.column} that "
                f"{'is' if self.count == 1 else 'are'} not "
                f"{self.declared} to NULL (kept in the backup and in cleared-values.jsonl)")

    def rewrites(self) -> tuple[tuple[str, str], ...]:
        return ((self.table, self.column),)

    def alters(self, ctx: Context) -> frozenset[str] | None:
        return frozenset()  # an UPDATE of the rewritten column

    def apply(self, ctx: Context) -> None:
        from ...engine.state.junk import predicate

        conn = ctx.conn
        insp = inspect(conn)
        column = next((c for c in insp.get_columns(self.table) if c["name"] == self.column),
                      None)
        if column is None:
            return
        if not column.get("nullable", True):
            raise NeedsRepair(f"{self.table}.{self.column} is NOT NULL, so its junk values "
                              "cannot be cleared; correct them by hand (doctor lists them)")
        quote = conn.dialect.identifier_preparer.quote
        where = predicate(self.declared, quote(self.column))
        if where is None:
            return
        key = insp.get_pk_constraint(self.table).get("constrained_columns") or ["rowid"]
        keys = ", ".join(quote(k) if k != "rowid" else k for k in key)
        found = conn.exec_driver_sql(f"SELECT {keys}, CAST({quote(self.column)} AS TEXT) FROM "
                                     f"{quote(self.table)} WHERE {where}").all()
        log = ctx.folder / "cleared-values.jsonl"
        private.private_dir(ctx.folder)
        with open(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a",
                  encoding="utf-8") as handle:
            for row in found:
                handle.write(json.dumps({"table": self.table, "column": self.column,
                                         "key": dict(zip(key, row[:-1], strict=True)),
                                         "value": row[-1]}, default=str) + "\n")
        log.chmod(0o600)
        conn.exec_driver_sql(f"UPDATE {quote(self.table)} SET {quote(self.column)} = NULL "
                             f"WHERE {where}")
        conn.commit()
        ctx.say("clear", f"set {counted(len(found), 'value')} of {self.table}.{self.column} "
                "to NULL")


