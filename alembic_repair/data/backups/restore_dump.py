"""Restoring a dump or tsv backup: loaded (by a `loaders` loader) directly or through a scratch
schema, and checked against the backup's counts and server checksums."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ...engine import scratch as scratch_schemas
from ...engine.privileges import missing_grant
from ...engine.project import Project
from ...errors import BackupCorrupt
from ...wording import counted
from .checksums import (
    Progress,
    TableSum,
    charset_changed,
    checksum_kind,
    columns_signature,
    kind_of,
    server_checksum,
    table_checksum_sql,
    table_columns,
    utc_session,
)
from .loaders import Loader
from .manifest import SCHEMA_FILE, Manifest
from .restore_plan import RestorePlan, RestoreReport
from .tsv_format import tsv_columns


def apply_dump(project: Project, conn: Connection, manifest: Manifest, plan: RestorePlan,
                progress: Progress | None, load: Loader) -> RestoreReport:
    """Restore a mariadb-dump or tsv backup, its rows loaded by `load` (`loaders`). The
    backup's tables are first created, empty, in a scratch schema ``_ar_restore_<stamp>``
    (dropped afterwards). A table whose columns are defined exactly as in the backup is
    loaded directly and its ``CHECKSUM TABLE`` compared with the backup's; any other is
    loaded into the scratch schema, checked there against the backup, and copied by INSERT
    ... SELECT over the columns it still has, then the server checksum over those columns
    is compared between scratch and target."""
    ddl = json.loads((manifest.path / SCHEMA_FILE).read_text(encoding="utf-8"))
    quote = conn.dialect.identifier_preparer.quote
    database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
    already, not_empty = dict(plan.already), dict(plan.not_empty)
    dropped = dict(plan.dropped)
    restored: dict[str, int] = {}
    wanted = list(plan.fill) + list(plan.check)
    if wanted:
        _check_scratch_grant(conn, manifest, project)
    mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()
    # the INSERT ... SELECT from the scratch schema keeps a 0 in an AUTO_INCREMENT column
    conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0, sql_mode = CONCAT_WS(',', "
                         "@@sql_mode, 'NO_AUTO_VALUE_ON_ZERO')")
    try:
        for name in plan.create:
            conn.exec_driver_sql(ddl[name])
            conn.commit()
        if not wanted:
            _end(conn, mode)
            return RestoreReport(manifest.path, tuple(plan.create), restored,
                                 dict(plan.missing), dropped, not_empty, already)
        scratch = scratch_schemas.new_name("restore")
        scratch_schemas.sweep(conn)  # those a killed run left (scratch.py)
        with utc_session(conn), scratch_schemas.created(conn, project, scratch):
            try:
                conn.exec_driver_sql(f"USE {quote(scratch)}")
                try:
                    for name in wanted:
                        conn.exec_driver_sql(ddl[name])
                finally:
                    conn.exec_driver_sql(f"USE {quote(database)}")
                conn.commit()
                direct = [t for t in plan.fill if t not in dropped and
                          columns_signature(conn, t, database)
                          == columns_signature(conn, t, scratch)]
                through = [t for t in wanted if t not in direct]
                if direct:
                    load(project, manifest, direct, database, progress)
                if through:
                    load(project, manifest, through, scratch, progress)
                for i, name in enumerate(direct):
                    try:
                        restored[name] = _check_loaded(conn, manifest, name, None).rows
                    except BackupCorrupt as err:  # it and those loaded but not yet checked
                        raise _emptied(conn, direct[i:], err) from None
                kind = checksum_kind(conn)
                for name in through:
                    info = manifest.table(name)
                    assert info is not None
                    _check_loaded(conn, manifest, name, scratch)
                    present = set(table_columns(conn, name))
                    columns = [c for c in info.columns if c in present]
                    text = charset_changed(conn, name, scratch, database)
                    if name in plan.check:
                        if (server_checksum(conn, name, columns, scratch, kind, text)
                                == server_checksum(conn, name, columns, kind=kind,
                                                   as_text=text)):
                            already[name] = plan.check[name]
                        else:
                            not_empty[name] = plan.check[name]
                            dropped.pop(name, None)
                        continue
                    stored = {c.name for c in tsv_columns(conn, name)}  # not generated
                    names = ", ".join(quote(c) for c in columns if c in stored)
                    conn.exec_driver_sql(
                        f"INSERT INTO {quote(name)} ({names}) SELECT {names} FROM "
                        f"{quote(scratch)}.{quote(name)}")
                    conn.commit()
                    expected = server_checksum(conn, name, columns, scratch, kind, text)
                    found = server_checksum(conn, name, columns, kind=kind, as_text=text)
                    if found != expected:
                        raise _emptied(conn, [name], _not_restored(
                            manifest, name, found.rows, expected.rows))
                    restored[name] = found.rows
            except BaseException:
                with suppress(Exception):  # a dead connection: a later run sweeps it
                    _drop(conn, scratch)
                raise
            _drop(conn, scratch)
    except BaseException:
        with suppress(Exception):  # the connection may be dead: the first error is the one
            _end(conn, mode)
        raise
    _end(conn, mode)
    restored = {t: restored[t] for t in plan.fill}  # foreign-key order
    return RestoreReport(manifest.path, tuple(plan.create), restored, dict(plan.missing),
                         dropped, not_empty, already)


def _drop(conn: Connection, scratch: str) -> None:
    conn.rollback()
    quote = conn.dialect.identifier_preparer.quote
    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(scratch)}")
    conn.commit()


def _end(conn: Connection, mode: object) -> None:
    conn.rollback()
    conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1, sql_mode = %s", (mode,))
    conn.commit()


def _check_scratch_grant(conn: Connection, manifest: Manifest, project: Project) -> None:
    """Create and drop a scratch schema before anything changes (scratch.created: root's from
    the compose file if need be): a user who may not create one is told the GRANT instead of
    meeting 'Access denied' half-way through the restore."""
    def refused(err: DBAPIError, why: str) -> Exception:
        return missing_grant(
            conn, f"restore {manifest.path}", err, "ALL PRIVILEGES", r"`\_ar\_%`.*",
            "a restore loads the backup into a scratch schema _ar_restore_* first (doctor "
            "replays into _ar_replay_*)", also=why)

    with scratch_schemas.created(conn, project, scratch_schemas.new_name("restore"), refused):
        pass


def _not_restored(manifest: Manifest, name: str, found: int, expected: int) -> BackupCorrupt:
    return BackupCorrupt(
        f"restore {manifest.path}: table {name} holds {counted(found, 'row')} after the restore "
        "where "
        f"the backup has {expected} (or their checksums differ); check the table's column "
        "types")


def _emptied(conn: Connection, names: Sequence[str], err: BackupCorrupt) -> BackupCorrupt:
    """`err`, once the rows just loaded (committed) into `names` (empty before: the plan
    filled them) are deleted again: left there, a rerun would find them not empty and skip
    them for good."""
    quote = conn.dialect.identifier_preparer.quote
    conn.rollback()
    for name in names:
        conn.exec_driver_sql(f"DELETE FROM {quote(name)}")
    conn.commit()
    return BackupCorrupt(f"{err}; the rows loaded into {', '.join(names)} were deleted "
                         "again, so that the next restore loads them anew")


def _check_loaded(conn: Connection, manifest: Manifest, name: str, schema: str | None
                  ) -> TableSum:
    """The loaded table against the backup: its count, and its CHECKSUM TABLE when the
    server version is the one that wrote the backup (the table's columns are defined as in
    the backup: the caller made sure)."""
    info = manifest.table(name)
    assert info is not None
    found = table_checksum_sql(conn, name, schema)
    same_server = kind_of(found.checksum) == kind_of(info.checksum)
    if found.rows != info.rows or (same_server and found.checksum != info.checksum):
        raise _not_restored(manifest, name, found.rows, info.rows)
    return found
