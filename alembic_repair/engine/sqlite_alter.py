"""Which ALTERs SQLite cannot run in place: one predicate for doctor's AR507
(`diagnose/rules/safety.py`, on the recorded operations) and fix's batch rewrite
(`rewrite/batch.py`, on the calls as written), so the rule never names a call the rewrite
leaves, nor the rewrite moves one more (each move turns an in-place ALTER into a copy of the
table, which drops its triggers and, with ``PRAGMA foreign_keys=ON``, may cascade deletes).
Here, not in `rewrite/`, so that doctor does not load libcst.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .state.pending import sqlite_drops_columns

__all__ = ["CHANGES", "CONSTRAINTS", "keyed_columns", "sqlite_cannot"]

#: Constraint calls SQLite can never run in place -> the constraint kind AR507 names.
CONSTRAINTS = {"create_unique_constraint": "unique", "create_foreign_key": "foreignkey",
               "create_check_constraint": "check", "create_primary_key": "primarykey"}
#: alter_column keywords that change the column -> (the change's name, the "no change" value).
#: A rename alone SQLite does in place; ``autoincrement`` changes nothing SQLite stores.
CHANGES = {"type_": ("type", None), "nullable": ("nullable", None),
           "server_default": ("server_default", False), "comment": ("comment", False)}


def sqlite_cannot(method: str, *, changes: Sequence[str] = (), unique: bool = False,
                  keyed: bool = False) -> str | None:
    """Why SQLite cannot run ``op.<method>`` in place (None: it can). `changes`: what an
    alter_column changes (names of `CHANGES`); `unique`: an add_column's column is unique;
    `keyed`: a drop_column's column is in a key or an index. AR507's predicate and this
    rewrite's: one function, so doctor never names a call fix leaves, nor fix moves one more."""
    if method == "alter_column":
        return f"alter_column ({', '.join(changes)})" if changes else None
    if method in CONSTRAINTS or method == "create_constraint":
        kind = CONSTRAINTS.get(method)
        return f"create {kind} constraint" if kind else "create constraint"
    if method == "drop_constraint":
        return "drop_constraint"
    if method == "add_column" and unique:
        return "add_column(unique=True)"
    if method == "drop_column":
        if not sqlite_drops_columns():
            return "drop_column (SQLite < 3.35)"
        if keyed:
            return "drop_column (the column is in a key or an index)"
    return None


def keyed_columns(facts: Iterable[tuple[Any, ...]]) -> frozenset[tuple[str, str]]:
    """(table, column) of every column in a primary key, unique constraint, index or foreign
    key among schema `facts`: SQLite refuses to drop those in place."""
    return frozenset((fact[1], column) for fact in facts
                     if fact[0] in ("pk", "unique", "index", "fk") for column in fact[2])
