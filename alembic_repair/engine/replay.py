"""Replay: the schema after every revision, from running the history once on a scratch database.

The history runs on a throwaway database of the project's own dialect (in-memory SQLite; a
temporary ``_ar_replay_*`` schema on the same MySQL/MariaDB server, dropped afterwards), calling
each revision's ``upgrade()`` through Alembic's `Operations`. After each revision one cheap
catalogue query per table tells which tables changed, and only those are reflected again: a
history of hundreds of revisions costs about what ``alembic upgrade head`` costs.

Doctor's replay (``run_replay(..., env=True)``) runs the history through the project's own
env.py instead, as ``alembic upgrade heads`` does (`replay_env`, in a child process), and falls
back to the bare replay above, saying why (`Replay.fallback`, AR409), when env.py cannot be
pointed at the scratch database. Other callers (squash, the proofs) keep the bare replay.

The result maps each revision to a `SchemaSnapshot`, so "which revision does this database
equal?" is a lookup. It is cached by the content of the revision files, env.py, alembic.ini and
the declared set-up (outside the project: doctor writes nothing there), so a second doctor on
an unchanged history skips the replay.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import traceback
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..masking import redact
from . import replay_env
from .database import engine_for
from .driver_errors import driver_message, environmental
from .project import Project
from .state.catalogue import table_signatures
from .state.graph import history_order
from .state.schema import Fact, SchemaSnapshot, is_user_table, reflect_tables

CACHE_VERSION = 6


@dataclass(frozen=True)
class Replay:
    """Snapshots after each replayed revision, in order; where and why the replay stopped."""

    #: the revisions applied, oldest first. A set-up that stamps (create_all + ``alembic
    #: stamp head``) gives the stamped revisions the set-up's schema and their ancestors NO
    #: snapshot (unknown, not equal): read `snapshots` with ``.get``.
    order: tuple[str, ...]
    snapshots: dict[str, SchemaSnapshot] = field(default_factory=dict)
    failed_at: str | None = None
    error: str | None = None
    error_location: str | None = None
    cached: bool = False
    #: The scratch schema after `failed_at` failed: on MySQL/MariaDB the DDL before the failing
    #: statement stays, exactly as it did on a live database that hit the same failure.
    partial: SchemaSnapshot | None = None
    #: Catalogue signatures of the scratch schema after the whole history: live tables with the
    #: same signature have the same facts, so they need not be reflected again.
    signatures: dict[str, str] = field(default_factory=dict)
    #: "env": ``alembic upgrade heads`` through env.py; "bare": each upgrade() on its own
    mode: str = "bare"
    #: why the replay through env.py could not be used (AR409); None when it was, or not asked
    fallback: str | None = None
    #: the options env.py passed to ``context.configure`` (mode "env"; see replay_child.OPTIONS)
    env_options: dict[str, Any] = field(default_factory=dict)
    #: the declared set-up (``[tool.alembic_repair] setup``) that ran before the history
    setup: str | None = None

    @property
    def final(self) -> SchemaSnapshot | None:
        return self.snapshots.get(self.order[-1]) if self.order else None

    def equal_to(self, snapshot: SchemaSnapshot) -> list[str]:
        """Every revision whose schema equals `snapshot`, oldest first (often a range)."""
        return [rev for rev in self.order if self.snapshots.get(rev) == snapshot]


def cache_key(project: Project, order: list[Script]) -> str:
    """The bare replay's key: the revision files' content, in history order."""
    digest = hashlib.sha256(f"{CACHE_VERSION}:{project.dialect}".encode())
    for script in order:
        digest.update(script.revision.encode())
        digest.update(Path(script.path).read_bytes())
    return digest.hexdigest()


def env_cache_key(project: Project, paths: Iterable[str | os.PathLike[str]]) -> str:
    """The replay through env.py's key: the revision files (`paths`, in any order), env.py,
    alembic.ini and the declared set-up: whatever decides what ``alembic upgrade`` does."""
    digest = hashlib.sha256(f"{CACHE_VERSION}:env:{project.dialect}:{project.setup}".encode())
    for path in (project.env_py, project.ini_path, *sorted(Path(p) for p in paths)):
        digest.update(str(path).encode())
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()


@dataclass
class EnvStart:
    """The replay through env.py, begun (`begin`): the cached result, or the running child."""

    key: str
    cached: Replay | None = None
    child: replay_env.Child | None = None

    def close(self) -> None:
        if self.child is not None:
            self.child.close()


def begin(project: Project, live: Engine | None, paths: Iterable[str | os.PathLike[str]], *,
          use_cache: bool = True) -> EnvStart | None:
    """Start the replay through env.py in the background (None: there is no env.py to run).
    Doctor calls it first and hands the result to `run_replay(started=...)`; close it when
    it is not used."""
    if not replay_env.usable(project):
        return None
    key = env_cache_key(project, paths)
    if use_cache and (cached := _load_cache(key)) is not None:
        return EnvStart(key, cached)
    return EnvStart(key, child=replay_env.Child(project, live, project.setup))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alembic-repair" / "replay"


def _read(path: Path) -> Any:
    """A cache file (marshal: fast, and unlike pickle it cannot run code), or None."""
    try:
        with path.open("rb") as handle:
            return marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None


def _write(path: Path, data: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(marshal.dumps(data))
        tmp.replace(path)
    except (OSError, ValueError):
        pass  # a cache that cannot be written only costs time


def _load_cache(key: str) -> Replay | None:
    data = _read(cache_dir() / f"{key}.marshal")
    if not isinstance(data, dict):
        return None
    partial = data["partial"]
    return Replay(data["order"], {rev: SchemaSnapshot(facts)
                                  for rev, facts in data["snapshots"].items()},
                  data["failed_at"], data["error"], data["error_location"], cached=True,
                  partial=None if partial is None else SchemaSnapshot(partial),
                  signatures=data["signatures"], mode=data["mode"],
                  fallback=data["fallback"], env_options=data["env_options"],
                  setup=data["setup"])


def _save_cache(key: str, replay: Replay) -> None:
    _write(cache_dir() / f"{key}.marshal", {
        "order": replay.order,
        "snapshots": {rev: snapshot.facts for rev, snapshot in replay.snapshots.items()},
        "failed_at": replay.failed_at, "error": replay.error,
        "error_location": replay.error_location,
        "partial": None if replay.partial is None else replay.partial.facts,
        "signatures": replay.signatures, "mode": replay.mode, "fallback": replay.fallback,
        "env_options": replay.env_options, "setup": replay.setup,
    })


@contextmanager
def scratch_database(project: Project, live: Engine | None) -> Iterator[Connection]:
    """A connection to an empty database of the project's dialect, gone afterwards."""
    url = project.url.parsed
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
    from . import scratch

    # the schema's lock is held while it exists (scratch.py): a run killed meanwhile leaves a
    # schema that the next run's sweep can prove stale and drop
    with scratch.held_schema(live, project) as (name, _holder):
        engine = engine_for(url.set(database=name))  # our connect args (password bytes)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()


def reflect_cached(conn: Connection, project: Project, *, use_cache: bool = True,
                   baseline: Replay | None = None) -> SchemaSnapshot:
    """The live schema, re-reflecting only the tables whose catalogue signature differs from
    what is already known: the last doctor's reading of this database, or else the replayed
    history's final schema (a database at head is then read with one catalogue query)."""
    signatures = table_signatures(conn)
    if not signatures and conn.dialect.name not in ("sqlite", "mysql", "mariadb"):
        return reflect_tables(conn, sorted(_all_user_tables(conn)))
    key = hashlib.sha256(f"live:{CACHE_VERSION}:{project.url.parsed.render_as_string()}"
                         .encode()).hexdigest()
    path = cache_dir().parent / "live" / f"{key}.marshal"
    old_signatures: dict[str, str] = {}
    snapshot = SchemaSnapshot(frozenset())
    data = _read(path) if use_cache else None
    if isinstance(data, dict):
        old_signatures, snapshot = data["signatures"], SchemaSnapshot(data["facts"])
    elif baseline is not None and baseline.signatures and baseline.final is not None:
        old_signatures, snapshot = baseline.signatures, baseline.final
    changed = {t for t in set(signatures) | set(old_signatures)
               if signatures.get(t) != old_signatures.get(t)}
    if changed:
        fresh = reflect_tables(conn, sorted(t for t in changed if t in signatures))
        snapshot = snapshot.replace_tables(fresh, changed)
        if use_cache:
            _write(path, {"signatures": signatures, "facts": snapshot.facts})
    return snapshot


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


_DML = re.compile(r"^\s*(UPDATE|INSERT|DELETE|SELECT|REPLACE|WITH)\b", re.IGNORECASE)


@dataclass
class Touched:
    """The tables one revision's operations named; `unknown` when it ran its own SQL."""

    tables: set[str] = field(default_factory=set)
    unknown: bool = False

    def note(self, operation: Any) -> None:
        if isinstance(operation, ops.ExecuteSQLOp):
            sql = operation.sqltext
            if not _DML.match(sql if isinstance(sql, str) else str(sql)):
                self.unknown = True
        elif not isinstance(operation, ops.BulkInsertOp):
            names = [getattr(operation, attr, None)
                     for attr in ("table_name", "source_table", "new_table_name")]
            found = {n for n in names if isinstance(n, str)}
            self.tables |= found
            self.unknown |= not found


def apply_revision(conn: Connection, script: Script) -> Touched:
    """Run one revision's upgrade() on `conn` with Alembic's operations (no env.py, no
    alembic_version): the scratch database only ever sees the revision's own DDL. Returns the
    tables it touched, noted as the operations pass through `Operations.invoke`."""
    touched = Touched()
    with Operations.context(MigrationContext.configure(conn)) as operations:
        invoke, batch, get_bind = (operations.invoke, operations.batch_alter_table,
                                   operations.get_bind)

        def noting_invoke(operation: Any) -> Any:
            touched.note(operation)
            return invoke(operation)

        def noting_batch(table_name: str, *args: Any, **kwargs: Any) -> Any:
            touched.tables.add(table_name)
            return batch(table_name, *args, **kwargs)

        def noting_bind() -> Connection:
            touched.unknown = True  # the revision runs its own SQL
            return get_bind()

        operations.invoke = noting_invoke  # type: ignore[method-assign]
        operations.batch_alter_table = noting_batch  # type: ignore[method-assign]
        operations.get_bind = noting_bind  # type: ignore[method-assign]
        script.module.upgrade()
    conn.commit()
    return touched


def run_replay(project: Project, directory: ScriptDirectory, live: Engine | None, *,
               use_cache: bool = True, env: bool = False,
               started: EnvStart | None = None) -> Replay:
    """Replay the whole history once (or take it from the cache). With `env` (or `started`,
    begun earlier), through the project's env.py first (doctor); the bare replay when that
    cannot be used."""
    order = history_order(directory)
    if started is None and env and \
            Path(directory.dir).resolve() == project.script_location.resolve():
        started = begin(project, live, [s.path for s in order], use_cache=use_cache)
    fallback = None
    if started is not None and started.cached is not None:
        return started.cached
    if started is not None and started.child is not None:
        run, setup = started.child.result(), project.setup
        if run.fallback is None:
            replay = Replay(
                run.applied, {rev: SchemaSnapshot(facts) for rev, facts in run.snapshots.items()},
                run.failed_at, run.error, run.error_location,
                partial=None if run.partial is None else SchemaSnapshot(run.partial),
                signatures=run.signatures, mode="env", env_options=run.options, setup=setup)
            if use_cache and not run.transient:
                _save_cache(started.key, replay)
            return replay
        fallback = run.fallback
    replay = _bare(project, order, live, use_cache)
    if fallback is None:
        return replay
    # not cached: why env.py could not be used may lie outside the history (its imports, the
    # environment's variables), and the next doctor must try again
    return replace(replay, fallback=redact(fallback, project.url))


def _bare(project: Project, order: list[Script], live: Engine | None, cache: bool) -> Replay:
    """Each revision's upgrade() through a bare `Operations`, without env.py."""
    key = cache_key(project, order)
    if cache and (cached := _load_cache(key)) is not None:
        return cached
    snapshots: dict[str, SchemaSnapshot] = {}
    applied: list[str] = []
    failed_at = error = location = None
    transient = False  # failed because of the server or account, not the history
    partial: SchemaSnapshot | None = None
    current = SchemaSnapshot(frozenset())
    with scratch_database(project, live) as conn:
        signatures: dict[str, str] = table_signatures(conn)
        for script in order:
            try:
                touched = apply_revision(conn, script)
            except Exception as err:  # the revision's own code, or the database refused it
                conn.rollback()
                failed_at = script.revision
                transient = environmental(err)
                detail = (driver_message(err) if isinstance(err, (DBAPIError, SQLAlchemyError))
                          else f"{type(err).__name__}: {err}".splitlines()[0])
                error = redact(detail, project.url)
                location = _location(err, script, project)
                after = table_signatures(conn)
                partial = current.replace_tables(reflect_tables(conn, sorted(after)),
                                                 set(current.tables) | set(after))
                conn.commit()
                break
            if touched.unknown:  # raw SQL: compare every table's catalogue signature
                new_signatures = table_signatures(conn)
                changed = {t for t in set(current.tables) | set(new_signatures)
                           if signatures.get(t) != new_signatures.get(t)}
                signatures = new_signatures
                present = sorted(t for t in changed if t in new_signatures)
            else:  # the operations named their tables: read just those (gone if dropped)
                changed = {t for t in touched.tables if is_user_table(t)}
                present = sorted(t for t in changed if _exists(conn, t))
                for table in changed:
                    signatures.pop(table, None)  # stale now; refreshed if raw SQL follows
            if changed:
                current = current.replace_tables(reflect_tables(conn, present), changed)
                conn.commit()
            snapshots[script.revision] = current
            applied.append(script.revision)
        final = table_signatures(conn) if failed_at is None else {}
    replay = Replay(tuple(applied), snapshots, failed_at, error, location, partial=partial,
                    signatures=final)
    if cache and not transient:
        _save_cache(key, replay)
    return replay


def _exists(conn: Connection, table: str) -> bool:
    from sqlalchemy import inspect

    return bool(inspect(conn).has_table(table))


def _all_user_tables(conn: Connection) -> set[str]:
    from sqlalchemy import inspect

    return {t for t in inspect(conn).get_table_names() if is_user_table(t)}


__all__ = ["Replay", "Fact", "run_replay", "table_signatures"]
