"""Replay: the schema after every revision, from running the history once on a scratch database.

The history runs on a throwaway database of the project's own dialect (in-memory SQLite; a
temporary ``_ar_replay_*`` schema on the same MySQL/MariaDB server, dropped afterwards), calling
each revision's ``upgrade()`` through Alembic's `Operations`. After each revision one cheap
catalogue query per table tells which tables changed, and only those are reflected again: a
history of hundreds of revisions costs about what ``alembic upgrade head`` costs.

The result maps each revision to a `SchemaSnapshot`, so "which revision does this database
equal?" is a lookup. It is cached by the content of the revision files (outside the project:
doctor writes nothing there), so a second doctor on an unchanged history skips the replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .database import driver_message
from .masking import redact
from .project import Project
from .state.schema import Fact, SchemaSnapshot, is_user_table, reflect_tables

CACHE_VERSION = 2


@dataclass(frozen=True)
class Replay:
    """Snapshots after each replayed revision, in order; where and why the replay stopped."""

    order: tuple[str, ...]
    snapshots: dict[str, SchemaSnapshot] = field(default_factory=dict)
    failed_at: str | None = None
    error: str | None = None
    error_location: str | None = None
    cached: bool = False
    #: The scratch schema after `failed_at` failed: on MySQL/MariaDB the DDL before the failing
    #: statement stays, exactly as it did on a live database that hit the same failure.
    partial: SchemaSnapshot | None = None

    def equal_to(self, snapshot: SchemaSnapshot) -> list[str]:
        """Every revision whose schema equals `snapshot`, oldest first (often a range)."""
        return [rev for rev in self.order if self.snapshots.get(rev) == snapshot]


def history_order(directory: ScriptDirectory) -> list[Script]:
    """Every revision, parents before children (Alembic's own walk, reversed)."""
    return list(reversed(list(directory.walk_revisions("base", "heads"))))


def cache_key(project: Project, order: list[Script]) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}:{project.dialect}".encode())
    for script in order:
        digest.update(script.revision.encode())
        digest.update(Path(script.path).read_bytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alembic-repair" / "replay"


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _load_cache(key: str) -> Replay | None:
    path = cache_dir() / f"{key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    snapshots = {rev: SchemaSnapshot(frozenset(_tuples(f) for f in facts))
                 for rev, facts in data["snapshots"].items()}
    partial = data.get("partial")
    return Replay(tuple(data["order"]), snapshots, data["failed_at"], data["error"],
                  data["error_location"], cached=True,
                  partial=None if partial is None else SchemaSnapshot(
                      frozenset(_tuples(f) for f in partial)))


def _save_cache(key: str, replay: Replay) -> None:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps({
            "order": replay.order,
            "snapshots": {rev: sorted(s.facts, key=repr) for rev, s in replay.snapshots.items()},
            "failed_at": replay.failed_at, "error": replay.error,
            "error_location": replay.error_location,
            "partial": None if replay.partial is None else sorted(replay.partial.facts, key=repr),
        }), encoding="utf-8")
        tmp.replace(folder / f"{key}.json")
    except OSError:
        pass  # a cache that cannot be written only costs time


@contextmanager
def scratch_database(project: Project, live: Engine | None) -> Iterator[Connection]:
    """A connection to an empty database of the project's dialect, gone afterwards."""
    url = make_url(project.url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine("sqlite://", poolclass=StaticPool)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()
        return
    if live is None:
        raise ValueError("a scratch database on a server needs a connection to that server")
    name = f"_ar_replay_{uuid.uuid4().hex[:12]}"
    with live.connect() as admin:
        admin.execute(text(f"CREATE DATABASE `{name}`"))
        admin.commit()
    engine = create_engine(url.set(database=name))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
        with live.connect() as admin:
            admin.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            admin.commit()


def reflect_cached(conn: Connection, project: Project, *, use_cache: bool = True
                   ) -> SchemaSnapshot:
    """The live schema, re-reflecting only the tables whose catalogue signature changed since
    the last doctor on this database (one catalogue query when nothing changed)."""
    signatures = table_signatures(conn)
    if not signatures and conn.dialect.name not in ("sqlite", "mysql", "mariadb"):
        return reflect_tables(conn, sorted(_all_user_tables(conn)))
    key = hashlib.sha256(f"live:{CACHE_VERSION}:{make_url(project.url).render_as_string()}"
                         .encode()).hexdigest()
    path = cache_dir().parent / "live" / f"{key}.json"
    old_signatures: dict[str, str] = {}
    snapshot = SchemaSnapshot(frozenset())
    if use_cache:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            old_signatures = data["signatures"]
            snapshot = SchemaSnapshot(frozenset(_tuples(f) for f in data["facts"]))
        except (OSError, ValueError, KeyError):
            pass
    changed = {t for t in set(signatures) | set(old_signatures)
               if signatures.get(t) != old_signatures.get(t)}
    if changed:
        fresh = reflect_tables(conn, sorted(t for t in changed if t in signatures))
        snapshot = snapshot.replace_tables(fresh, changed)
    if use_cache and changed:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps({"signatures": signatures,
                                       "facts": sorted(snapshot.facts, key=repr)}),
                           encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass
    return snapshot


def table_signatures(conn: Connection) -> dict[str, str]:
    """One hash per table from the catalogue: changes whenever the table's definition does."""
    rows: list[tuple[Any, ...]]
    if conn.dialect.name == "sqlite":
        rows = [tuple(r) for r in conn.execute(text(
            "SELECT tbl_name, type, name, sql FROM sqlite_master "
            "WHERE tbl_name NOT LIKE 'sqlite_%' ORDER BY tbl_name, type, name"))]
    elif conn.dialect.name in ("mysql", "mariadb"):
        rows = [tuple(r) for r in conn.execute(text(
            "SELECT TABLE_NAME, 'c', COLUMN_NAME, CONCAT_WS('|', ORDINAL_POSITION, COLUMN_TYPE, "
            "IS_NULLABLE, COLUMN_DEFAULT) FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() "
            "UNION ALL SELECT TABLE_NAME, 'i', INDEX_NAME, CONCAT_WS('|', SEQ_IN_INDEX, "
            "COLUMN_NAME, NON_UNIQUE) FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() "
            "UNION ALL SELECT TABLE_NAME, 'f', CONSTRAINT_NAME, CONCAT_WS('|', COLUMN_NAME, "
            "REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME) "
            "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
            "AND REFERENCED_TABLE_NAME IS NOT NULL "
            "UNION ALL SELECT TABLE_NAME, 'r', CONSTRAINT_NAME, CONCAT_WS('|', DELETE_RULE, "
            "UPDATE_RULE) FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE()"))]
        rows.sort(key=lambda r: tuple(str(v) for v in r))
    else:  # no cheap catalogue query: every table counts as changed
        return {}
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(str(row[0]), []).append(row[1:])
    return {table: hashlib.sha256(repr(items).encode()).hexdigest()
            for table, items in grouped.items() if is_user_table(table)}


def _location(err: BaseException, script: Script, project: Project) -> str:
    path = Path(script.path)
    line = None
    for frame, number in traceback.walk_tb(err.__traceback__):
        if Path(frame.f_code.co_filename) == path:
            line = number
    try:
        rel = str(path.resolve().relative_to(project.root))
    except ValueError:
        rel = str(path)
    return f"{rel}:{line}" if line else rel


def apply_revision(conn: Connection, script: Script) -> None:
    """Run one revision's upgrade() on `conn` with Alembic's operations (no env.py, no
    alembic_version): the scratch database only ever sees the revision's own DDL."""
    with Operations.context(MigrationContext.configure(conn)):
        script.module.upgrade()
    conn.commit()


def run_replay(project: Project, directory: ScriptDirectory, live: Engine | None, *,
               use_cache: bool = True) -> Replay:
    """Replay the whole history once (or take it from the cache)."""
    order = history_order(directory)
    key = cache_key(project, order)
    if use_cache and (cached := _load_cache(key)) is not None:
        return cached
    snapshots: dict[str, SchemaSnapshot] = {}
    applied: list[str] = []
    failed_at = error = location = None
    partial: SchemaSnapshot | None = None
    current = SchemaSnapshot(frozenset())
    with scratch_database(project, live) as conn:
        signatures: dict[str, str] = {}
        for script in order:
            try:
                apply_revision(conn, script)
            except Exception as err:  # the revision's own code, or the database refused it
                conn.rollback()
                failed_at = script.revision
                detail = (driver_message(err) if isinstance(err, (DBAPIError, SQLAlchemyError))
                          else f"{type(err).__name__}: {err}".splitlines()[0])
                error = redact(detail, project.url)
                location = _location(err, script, project)
                partial = current.replace_tables(
                    reflect_tables(conn, sorted(table_signatures(conn))),
                    set(current.tables) | set(table_signatures(conn)))
                conn.commit()
                break
            new_signatures = table_signatures(conn)
            if not new_signatures and conn.dialect.name not in ("sqlite", "mysql", "mariadb"):
                changed = set(current.tables) | _all_user_tables(conn)
            else:
                changed = {t for t in set(signatures) | set(new_signatures)
                           if signatures.get(t) != new_signatures.get(t)}
            if changed:
                present = [t for t in sorted(changed) if t in new_signatures]
                current = current.replace_tables(reflect_tables(conn, present), changed)
                conn.commit()
            signatures = new_signatures
            snapshots[script.revision] = current
            applied.append(script.revision)
    replay = Replay(tuple(applied), snapshots, failed_at, error, location, partial=partial)
    if use_cache:
        _save_cache(key, replay)
    return replay


def _all_user_tables(conn: Connection) -> set[str]:
    from sqlalchemy import inspect

    return {t for t in inspect(conn).get_table_names() if is_user_table(t)}


__all__ = ["Replay", "Fact", "run_replay", "history_order", "table_signatures"]
