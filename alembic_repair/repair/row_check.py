"""The runner's row check: every user table holds, over the columns that still exist, the rows
it held before the steps (counts and checksums; a soft-dropped table counts through its trash
table).

The sums are taken once, before the first step, into the journal's ``rows`` note (a resumed
run reuses them): per table ``{"columns", "rows", "checksum"}``, plus ``"signature"`` (its
column definitions, `columns_signature`) when the checksum is the server's ``CHECKSUM TABLE``.
How a table is summed, read back from its checksum's tag:

* MySQL/MariaDB, a table no step rewrites values of (`Step.rewrites`) nor may alter
  (`Step.alters`): ``CHECKSUM TABLE`` and COUNT(*) (`table_checksum_sql`, one fast scan in
  the storage engine). Afterwards it is compared only when the column definitions are the
  same; a table whose definitions changed although no step said it would cannot be compared,
  and fails the check (never passed unseen); its rows are in the backup.
* MySQL/MariaDB, any other table: `server_checksum` over its columns minus the rewritten ones
  (``crc64c`` where the server has CRC32C, else ``md5sum64``; per-row SQL, about 4x slower),
  compared over the same columns afterwards, whatever became of the others.
* SQLite: `table_checksum`, streamed in primary-key order.

A journal written before the ``"signature"`` key existed holds server checksums only, which
are read back by their tag as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ..data.backups import checksums
from ..data.backups.checksums import TableSum, kind_of
from ..engine.state.recorder import version_table_of
from ..engine.state.schema import TRASH_PREFIX, is_user_table
from ..wording import counted
from .steps import Context, Step

__all__ = ["FAST", "check_rows", "row_sums", "tables_to_sum"]

FAST = "checksum-table/"  # the tag of `table_checksum_sql`'s checksum
MYSQL = ("mysql", "mariadb")
Sums = dict[str, dict[str, object]]


def tables_to_sum(conn: Connection, steps: Iterable[Step], ctx: Context
                  ) -> tuple[dict[str, list[str]], frozenset[str]]:
    """The user tables to sum with the columns to sum them over (all but those a step
    rewrites), and those of them that ``CHECKSUM TABLE`` can sum: on MySQL/MariaDB, the
    tables no step rewrites values of nor may alter (none when a step cannot tell; `alters`
    is read before the first step, so an upgrade's only when history-keeping steps precede)."""
    steps = tuple(steps)
    rewritten = {pair for step in steps for pair in step.rewrites()}
    version = {version_table_of(conn)[0]}  # env.py's version_table: restamped, not data
    tables = {t: [c for c in checksums.table_columns(conn, t) if (t, c) not in rewritten]
              for t in inspect(conn).get_table_names() if is_user_table(t, version)}
    if conn.dialect.name not in MYSQL:
        return tables, frozenset()
    touched = {t for t, _ in rewritten}
    for number, step in enumerate(steps):
        # a step before it may restamp or write revisions: what an upgrade runs is not known
        unknown = step.reads_history and not all(s.keeps_history for s in steps[:number])
        altered = None if unknown else step.alters(ctx)
        if altered is None:
            conn.rollback()
            return tables, frozenset()
        touched |= altered
    conn.rollback()
    return tables, frozenset(t for t in tables if t not in touched)


def row_sums(conn: Connection, tables: dict[str, list[str]] | None = None,
             fast: Iterable[str] = ()) -> Sums:
    """Row count and content checksum of every user table (or of `tables`, over the columns
    given); the tables in `fast` by ``CHECKSUM TABLE`` (with their column definitions).
    Computed by the server on MySQL/MariaDB (nothing leaves it), streamed in primary-key
    order on SQLite. Taken before the steps and compared after them."""
    if tables is None:
        version = {version_table_of(conn)[0]}
        tables = {t: checksums.table_columns(conn, t) for t in inspect(conn).get_table_names()
                  if is_user_table(t, version)}
    fast = set(fast)
    mysql = conn.dialect.name in MYSQL
    kind = checksums.checksum_kind(conn) if mysql and set(tables) - fast else ""
    schema = _schema(conn) if mysql and fast else ""
    sums: Sums = {}
    for name, columns in tables.items():
        entry: dict[str, object] = {"columns": list(columns)}
        if mysql and name in fast:
            found = checksums.table_checksum_sql(conn, name)
            entry["signature"] = _signature(conn, name, schema)
        elif mysql:
            found = checksums.server_checksum(conn, name, columns, kind=kind)
        else:
            found = checksums.table_checksum(conn, name, columns)
        sums[name] = {**entry, "rows": found.rows, "checksum": found.checksum}
    conn.rollback()
    return sums


def check_rows(conn: Connection, before: Sums, *, values_may_change: bool = False
               ) -> list[str]:
    """Tables whose rows are not all still there, over the columns recorded before. With
    `values_may_change` (the steps ran the user's own data migrations) a table may gain rows
    and change values, but never hold fewer rows than before."""
    problems = []
    existing = set(inspect(conn).get_table_names())
    schema = _schema(conn) if conn.dialect.name in MYSQL else ""
    for name, old in before.items():
        columns = [str(c) for c in old["columns"]]  # type: ignore[attr-defined]
        if name not in existing:
            if not _in_trash(conn, name, old, existing):
                problems.append(f"table {name} ({_rows(old['rows'])}) is gone")
            continue
        gone = [c for c in columns if c not in checksums.table_columns(conn, name)]
        if gone:
            listed = ", ".join(f"{name}.{c}" for c in gone)
            problems.append(f"column {listed} is gone" if len(gone) == 1
                            else f"columns {listed} are gone")
            continue
        if values_may_change:
            rows = checksums.row_count(conn, name)
            if rows < int(old["rows"]):  # type: ignore[call-overload]
                problems.append(f"table {name} held {_rows(old['rows'])} and now holds {rows}")
            continue
        if _fast(old) and _signature(conn, name, schema) != old.get("signature"):
            problems.append(
                f"table {name}: its column definitions changed although no step of the run "
                "said it would change them, so its rows (summed by CHECKSUM TABLE before) "
                "cannot be compared; compare them with the backup")
            continue
        found = _measure(conn, name, old)
        if (found.rows, found.checksum) != (old["rows"], old["checksum"]):
            problems.append(f"table {name} held {_rows(old['rows'])} and now holds "
                            f"{found.rows} (or their values changed)")
    conn.rollback()
    return problems


def _rows(count: object) -> str:
    return counted(int(str(count)), "row")


def _fast(info: dict[str, object]) -> bool:
    return str(info["checksum"]).startswith(FAST)


def _measure(conn: Connection, name: str, info: dict[str, object]) -> TableSum:
    """The sum of `name` now, the way `info` (its sum before) was taken."""
    if _fast(info):
        return checksums.table_checksum_sql(conn, name)
    columns = [str(c) for c in info["columns"]]  # type: ignore[attr-defined]
    if conn.dialect.name in MYSQL:
        kind = kind_of(str(info["checksum"]))
        return checksums.server_checksum(conn, name, columns, kind=kind)
    return checksums.table_checksum(conn, name, columns)


def _in_trash(conn: Connection, name: str, info: dict[str, object], existing: set[str]) -> bool:
    """True when `name` was soft-dropped (a revision renamed it into the trash) with its rows."""
    columns = [str(c) for c in info["columns"]]  # type: ignore[attr-defined]
    for candidate in sorted(existing):
        if candidate.startswith(TRASH_PREFIX) and candidate.endswith(f"_{name}"):
            if any(c not in checksums.table_columns(conn, candidate) for c in columns):
                continue
            if _fast(info) and (_signature(conn, candidate, _schema(conn))
                                != info.get("signature")):
                continue
            found = _measure(conn, candidate, info)
            if (found.rows, found.checksum) == (info["rows"], info["checksum"]):
                return True
    return False


def _schema(conn: Connection) -> str:
    return str(conn.exec_driver_sql("SELECT DATABASE()").scalar())


def _signature(conn: Connection, name: str, schema: str) -> Any:
    """The column definitions, as the journal keeps them (JSON: lists, not tuples)."""
    return json.loads(json.dumps(checksums.columns_signature(conn, name, schema), default=str))
