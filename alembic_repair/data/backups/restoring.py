"""Restore: verify, check that the backup fits this database, plan, confirm, fill the tables in
foreign-key order and compare them with the backup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import column, insert, table
from sqlalchemy.engine import Connection

from ...engine.database import connect
from ...engine.locking import migration_lock
from ...engine.project import Project
from ...errors import BackupCorrupt, ConfigError, RefusedUnsafe
from ...wording import counted
from .. import guards
from .checksums import BATCH, Progress, table_checksum
from .loaders import check_method, pick_loader
from .manifest import SCHEMA_FILE, Manifest, check_dialect, database_identity, describe_identity
from .restore_dump import apply_dump
from .restore_plan import (
    RestorePlan,
    RestoreReport,
    backup_checksum,
    plan_restore,
    server_checked,
    source_rows,
)
from .sqlite_method import schema_sqlite
from .tsv_format import tsv_columns
from .verifying import verify


def _check_backup(project: Project, path: Path, action: str, other_database: bool
                  ) -> Manifest:
    """Verify the backup and check that it fits the project's database (no change made)."""
    manifest = verify(path)
    dialect = check_dialect(project, action)
    if dialect != manifest.dialect:
        raise ConfigError(f"{action}: the backup is of a {manifest.dialect} database and "
                          f"{project.masked_url} is {project.dialect}; restore it into a "
                          f"{manifest.dialect} database")
    here = database_identity(project.url)
    if manifest.database is not None and manifest.database != here and not other_database:
        raise RefusedUnsafe(
            f"{action}: refused, the backup is of {describe_identity(manifest.database)}, not "
            f"of {describe_identity(here)}; nothing changed; pass --other-database "
            "(other_database=True) to restore it into this one")
    return manifest


def restore(project: Project, path: Path, *, yes: bool, allow_remote: bool = False,
            other_database: bool = False, progress: Progress | None = None,
            method: str = "auto") -> RestoreReport:
    """Put a backup's rows back (see the package docstring); verifies before and after.
    A backup of another database is refused unless `other_database`. `progress(table,
    rows_done, rows_total)` is called per table and per batch of rows. `method`: how a dump
    or tsv backup is loaded: ``"client"`` (the mariadb client; a dump only), ``"python"``
    (PyMySQL only), ``"auto"`` (a dump by the client when on PATH, a tsv backup by Python)."""
    path = Path(path)
    action = f"restore {path}"
    check_method(method, action)
    guards.require_local(allow_remote, project, action)
    manifest = _check_backup(project, path, action, other_database)
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            plan = plan_restore(conn, manifest)
            conn.rollback()
            guards.require(yes, allow_remote, project,
                           f"{action}: would {plan.describe(manifest)}")
            return _apply(project, conn, manifest, plan, progress, method)
    finally:
        engine.dispose()


def restore_locked(project: Project, conn: Connection, path: Path, *,
                   other_database: bool = False, progress: Progress | None = None,
                   method: str = "auto") -> RestoreReport:
    """`restore` for a caller that already holds the migration lock on `conn` (as
    `migration_lock` yields it): no lock taken, no guard (the caller asked for confirmation).
    Verifies the backup first; any transaction open on `conn` is ended (rolled back) first.
    Idempotent: run again after an interrupted restore, the tables already restored are
    reported in `RestoreReport.already` and the rest is filled."""
    path = Path(path)
    check_method(method, f"restore {path}")
    manifest = _check_backup(project, path, f"restore {path}", other_database)
    if conn.in_transaction():
        conn.rollback()
    plan = plan_restore(conn, manifest)
    conn.rollback()
    return _apply(project, conn, manifest, plan, progress, method)


def _apply(project: Project, conn: Connection, manifest: Manifest, plan: RestorePlan,
           progress: Progress | None, method: str) -> RestoreReport:
    if server_checked(manifest):  # a dump or tsv backup: loaded, then compared by the server
        load = pick_loader(conn, manifest, method)
        conn.rollback()
        return apply_dump(project, conn, manifest, plan, progress, load)
    if method == "client":
        raise ConfigError(f"restore {manifest.path}: this backup holds "
                          f"{'a SQLite file' if manifest.dialect == 'sqlite' else 'jsonl files'}"
                          ", which only Python restores; use method 'auto' or 'python'")
    mysql = manifest.dialect == "mysql"
    if mysql:  # a 0 in an AUTO_INCREMENT column stays 0
        mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
        conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0, sql_mode = CONCAT_WS(',', "
                             "@@sql_mode, 'NO_AUTO_VALUE_ON_ZERO')")
        ddl = json.loads((manifest.path / SCHEMA_FILE).read_text(encoding="utf-8"))
    try:
        for name in plan.create:
            statements = [ddl[name]] if mysql else schema_sqlite(manifest.path, name)
            for statement in statements:
                conn.exec_driver_sql(statement)
            conn.commit()
        restored: dict[str, int] = {}
        for name, restored_columns in plan.fill.items():
            info = manifest.table(name)
            assert info is not None
            columns = restored_columns
            if mysql:  # a generated column's value is the server's to compute (1906)
                stored = {c.name for c in tsv_columns(conn, name)}
                columns = [c for c in restored_columns if c in stored]
            target = table(name, *[column(c) for c in columns])
            inserted = 0
            if progress is not None:
                progress(name, 0, info.rows)
            for rows in source_rows(manifest, info, columns):
                batch: list[dict[str, Any]] = []
                for row in rows:
                    batch.append(dict(zip(columns, row, strict=True)))
                    if len(batch) >= BATCH:
                        conn.execute(insert(target), batch)
                        inserted += len(batch)
                        batch = []
                        if progress is not None:
                            progress(name, inserted, info.rows)
                if batch:
                    conn.execute(insert(target), batch)
                    inserted += len(batch)
            conn.commit()
            if progress is not None:
                progress(name, inserted, info.rows)
            restored[name] = inserted
    finally:
        if mysql:
            conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1, sql_mode = %s", (mode,))
    for name, columns in plan.fill.items():
        info = manifest.table(name)
        assert info is not None
        expected = backup_checksum(manifest, info, columns)
        found = table_checksum(conn, name, columns)
        if found != expected:
            raise BackupCorrupt(
                f"restore {manifest.path}: table {name} holds {counted(found.rows, 'row')} "
                "after the "
                f"restore where the backup has {expected.rows} (or their checksums differ); "
                "check the table's column types"
            )
    conn.rollback()
    return RestoreReport(manifest.path, tuple(plan.create), restored, dict(plan.missing),
                         dict(plan.dropped), dict(plan.not_empty), dict(plan.already))
