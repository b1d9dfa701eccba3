"""What a restore will do, decided before anything changes (tables to create, fill or skip),
and the backup's own rows and checksums that the result is compared with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ...wording import counted
from .checksums import (
    Row,
    TableSum,
    row_count,
    rows_checksum,
    stream,
    table_checksum,
    table_checksum_sql,
    table_columns,
)
from .manifest import SQLITE_FILE, Manifest, TableInfo, is_tsv
from .python_method import jsonl_rows
from .sqlite_method import readonly_sqlite


@dataclass(frozen=True)
class RestoreReport:
    """What `restore` did. Rows it could not place stay in the backup at `source`."""

    source: Path
    created: tuple[str, ...] = ()
    restored: dict[str, int] = field(default_factory=dict)  # table -> rows inserted
    missing_tables: dict[str, int] = field(default_factory=dict)  # table -> rows left behind
    dropped_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_empty: dict[str, int] = field(default_factory=dict)  # table -> rows already there
    #: tables that already held exactly the backup's rows (a resumed restore): complete
    already: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.missing_tables or self.dropped_columns or self.not_empty)


@dataclass
class RestorePlan:
    create: list[str] = field(default_factory=list)
    fill: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, tuple[str, ...]] = field(default_factory=dict)
    not_empty: dict[str, int] = field(default_factory=dict)
    already: dict[str, int] = field(default_factory=dict)
    check: dict[str, int] = field(default_factory=dict)  # dump/tsv: decided while applying

    def describe(self, manifest: Manifest) -> str:
        parts = []
        if self.create:
            parts.append("create tables " + ", ".join(self.create))
        fills = [f"{t} ({counted(manifest.table(t).rows, 'row')})"  # type: ignore[union-attr]
                 for t in self.fill]
        parts.append("insert into " + (", ".join(fills) or "no table"))
        if self.missing:
            parts.append("leave in the backup the rows of missing tables " + ", ".join(
                f"{t} ({counted(n, 'row')})" for t, n in self.missing.items()))
        if self.dropped:
            parts.append("leave in the backup the values of missing columns " + ", ".join(
                f"{t}.{c}" for t, cols in self.dropped.items() for c in cols))
        if self.already:
            parts.append("skip tables that already hold the backup's rows " + ", ".join(
                f"{t} ({counted(n, 'row')})" for t, n in self.already.items()))
        if self.check:
            parts.append("compare with the backup (and otherwise skip) the non-empty tables "
                         + ", ".join(f"{t} ({counted(n, 'row')})" for t, n in self.check.items()))
        if self.not_empty:
            parts.append("skip non-empty tables " + ", ".join(
                f"{t} ({counted(n, 'row')})" for t, n in self.not_empty.items()))
        return "; ".join(parts)


def plan_restore(conn: Connection, manifest: Manifest) -> RestorePlan:
    plan = RestorePlan()
    existing = set(inspect(conn).get_table_names())
    fresh = not any(t.name in existing for t in manifest.tables)
    for info in manifest.tables:
        if info.name not in existing:
            if not fresh:
                plan.missing[info.name] = info.rows
                continue
            plan.create.append(info.name)
            plan.fill[info.name] = list(info.columns)
            continue
        present = set(table_columns(conn, info.name))
        columns = [c for c in info.columns if c in present]
        gone = tuple(c for c in info.columns if c not in present)
        rows = row_count(conn, info.name)
        if rows:
            if rows != info.rows or not columns:
                plan.not_empty[info.name] = rows
            elif server_checked(manifest) and gone:
                plan.check[info.name] = rows  # the backup's checksum over fewer columns
                plan.dropped[info.name] = gone  # needs the rows loaded: done by apply_dump
            elif _same_rows(conn, manifest, info, columns):
                plan.already[info.name] = rows
                if gone:
                    plan.dropped[info.name] = gone
            elif server_checked(manifest):
                # CHECKSUM TABLE differs whenever the column definitions do (a restore into a
                # converted table, resumed): apply_dump compares it through the scratch schema
                plan.check[info.name] = rows
            else:
                plan.not_empty[info.name] = rows
            continue
        plan.fill[info.name] = columns
        if gone:
            plan.dropped[info.name] = gone
    return plan


def _same_rows(conn: Connection, manifest: Manifest, info: TableInfo, columns: list[str]
               ) -> bool:
    if server_checked(manifest):
        return table_checksum_sql(conn, info.name) == TableSum(info.rows, info.checksum)
    return table_checksum(conn, info.name, columns) == backup_checksum(manifest, info, columns)


def server_checked(manifest: Manifest) -> bool:
    """A dump or tsv backup: its checksums are the server's (``CHECKSUM TABLE``), compared
    by the server; a jsonl or SQLite backup's are ours, over rows read back."""
    return manifest.method == "dump" or is_tsv(manifest)


def source_rows(manifest: Manifest, info: TableInfo, columns: Sequence[str]
                 ) -> Iterator[Iterator[Row]]:
    """Yields one iterator over the backup's rows of `info`, projected onto `columns`."""
    index = [info.columns.index(c) for c in columns]
    if manifest.dialect == "sqlite":
        with readonly_sqlite(manifest.path / SQLITE_FILE) as conn:
            yield ([row[i] for i in index] for row in stream(conn, info.name, info.columns))
    else:
        assert info.file is not None
        yield ([row[i] for i in index] for row in jsonl_rows(manifest.path / info.file))


def backup_checksum(manifest: Manifest, info: TableInfo, columns: Sequence[str]) -> TableSum:
    for rows in source_rows(manifest, info, columns):
        return rows_checksum(rows)
    raise AssertionError("unreachable")
