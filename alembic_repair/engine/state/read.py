"""State: the four sources of truth read once, read-only, damage recorded rather than raised.

1. the revision files (`scripts`, parsed with ast; Alembic's own loading where that works),
2. the ``alembic_version`` rows (`versions`),
3. the live schema (`live`, a `SchemaSnapshot`),
4. the models (`models`, the same form, for the database's dialect),

plus the replayed schema after every revision (`replay`, through the project's env.py when it
can: `engine.replay_env`) and what the configuration files say.
`diagnose` runs pure rules over this; nothing here decides what is wrong.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ...errors import AlembicRepairError, ConfigError, DatabaseUnreachable
from ...masking import redact
from ..database import connect_readonly
from ..driver_errors import driver_message
from ..migrations import alembic_config
from ..models import (
    ModelsOwner,
    capture_from_env_py,
    load_target_metadata,
    models_owner,
    project_on_path,
)
from ..project import Project
from ..replay import EnvStart, Replay, begin, reflect_cached, run_replay
from .config import ConfigState, read_config, remember_options
from .drift import ModelDrift, compare_options, read_drift
from .graph import RevisionGraph
from .junk import Junk, find_junk
from .locate import Location, locate_live
from .pending import Pending, project_module_files, read_pending
from .recorder import VersionTable, read_versions
from .schema import SchemaSnapshot, from_metadata, is_user_table
from .scripts import ScriptFile, read_scripts


@dataclass(frozen=True)
class State:
    project: Project
    config: ConfigState
    scripts: tuple[ScriptFile, ...]
    script_heads: tuple[str, ...]
    import_error: tuple[str, str] | None = None  # (location, message) from Alembic's loading
    models_error: ConfigError | None = None
    models_none: bool = False
    versions: VersionTable | None = None
    live: SchemaSnapshot | None = None
    models: SchemaSnapshot | None = None
    replay: Replay | None = None
    replay_skipped: str | None = None
    junk: tuple[Junk, ...] = ()
    pending: Pending | None = None  # revisions not applied yet, as operations (AR5xx)
    database_missing: bool = False  # an SQLite file that does not exist (yet)
    hidden_tables: tuple[str, ...] = ()  # live tables autogenerate must not see (_ar_*, kept)
    kept_models: tuple[str, ...] = ()  # kept tables the models define after all (AR113)
    left_out: tuple[str, ...] = ()  # the version table, tables env.py's own filters exclude
    drift: ModelDrift | None = None  # the models against the database, as `alembic check`
    models_owner: ModelsOwner | None = None  # an installed package defines the models
    location: Location | None = None  # where the revisions' effects place it (replay stopped)
    #: why the database could not be read (unreachable, login refused, locked, not an SQLite
    #: database, no driver): doctor reports it and exits with its code, never "healthy"
    db_error: AlembicRepairError | None = None
    metadata: MetaData | None = field(default=None, compare=False, repr=False)

    @property
    def kept_tables(self) -> frozenset[str]:
        """``[tool.alembic_repair] ignore_tables`` and the names env.py's filter keeps."""
        env = self.config.env_filter
        return frozenset(self.project.ignore_tables) | (env.kept if env else frozenset())

    @cached_property
    def graph(self) -> RevisionGraph:
        """The revision files as a graph (built once per state)."""
        return RevisionGraph.of(self.scripts)

    @cached_property
    def mixed_snapshots(self) -> frozenset[str]:
        """Replayed revisions whose snapshot holds another branch's revisions too: the replay
        runs the history in one line (``upgrade heads``), so with branches a revision replayed
        after a sibling branch's one is seen with that branch's changes, which are not part of
        its schema. What a database at such a revision looks like is unknown: never compared."""
        if self.replay is None:
            return frozenset()
        mixed: set[str] = set()
        before: set[str] = set()
        for rev in self.replay.order:
            if before - self.graph.ancestors(rev):
                mixed.add(rev)
            before.add(rev)
        return frozenset(mixed)

    @property
    def graph_ok(self) -> bool:
        return self.graph.ok

    def revision_file(self, revision: str) -> str | None:
        for script in self.scripts:
            if script.revision == revision:
                return self.project.rel(script.path)
        return None


def _load_directory(project: Project) -> tuple[ScriptDirectory | None, tuple[str, str] | None]:
    directory = ScriptDirectory.from_config(alembic_config(project))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            directory.revision_map.heads  # noqa: B018  (imports every revision file)
    except Exception as err:  # the revision files are the user's code
        import traceback

        place = project.rel(project.versions_dir)
        for frame, line in traceback.walk_tb(err.__traceback__):
            path = frame.f_code.co_filename
            if path.startswith(str(project.versions_dir)):
                place = f"{project.rel(path)}:{line}"
        return None, (place, f"{type(err).__name__}: {err}".splitlines()[0])
    return directory, None


def _hide_kept(state: dict[str, object], conn: Connection, project: Project,
               config: ConfigState) -> None:
    """Note the live tables autogenerate must not see (the tool's ``_ar_*`` tables, the kept
    ones), and take the kept ones out of the comparisons: they are nobody's (AR113)."""
    from ..env_filter import OWN_PREFIX

    kept = State(project, config, (), ()).kept_tables
    names = inspect(conn).get_table_names()
    state["hidden_tables"] = tuple(sorted(t for t in names
                                          if t.startswith(OWN_PREFIX) or t in kept))
    models = state.get("models")
    if isinstance(models, SchemaSnapshot):  # a model for a kept table: it would go unseen
        state["kept_models"] = tuple(sorted(t for t in models.tables if t in kept))
    for key in ("live", "models"):
        snapshot = state.get(key)
        if kept and isinstance(snapshot, SchemaSnapshot):
            state[key] = snapshot.only(t for t in snapshot.tables if is_user_table(t, kept))


def _leave_out(state: dict[str, object], project: Project, config: ConfigState,
               metadata: MetaData | None, options: dict[str, object]) -> None:
    """Take env.py's version table and the tables its include_name/include_object exclude
    out of the comparisons, as `alembic check` does (`state.excluded`; `options`: what env.py's
    offline path passed, captured while reading the models). The replayed snapshots lose them
    too, with the kept tables: the history rules compare the live schema on the same tables."""
    from .config import version_table
    from .excluded import excluded_tables

    live, models, replay = state.get("live"), state.get("models"), state.get("replay")
    names = sorted(live.tables) if isinstance(live, SchemaSnapshot) else []
    history: set[str] = set()
    if isinstance(replay, Replay):  # the history's tables are asked about too
        history.update(*(s.tables for s in replay.snapshots.values()))
        history.update(replay.partial.tables if replay.partial is not None else ())
    gone = excluded_tables(project, names, metadata, options, sorted(history))
    table, schema = version_table(project)  # what the engine reads and stamps
    version = {table} if schema is None else set()
    state["left_out"] = tuple(sorted(gone.live | gone.models | version))
    out = gone.live | version
    if isinstance(live, SchemaSnapshot):
        state["live"] = live.only(t for t in live.tables if t not in out)
    if isinstance(models, SchemaSnapshot):
        state["models"] = models.only(t for t in models.tables if t not in gone.models)
    hidden = out | State(project, config, (), ()).kept_tables  # kept: _hide_kept's
    if isinstance(replay, Replay) and hidden:  # the history rules compare the same tables
        state["replay"] = replace(replay, snapshots={
            rev: snap.only(t for t in snap.tables if t not in hidden)
            for rev, snap in replay.snapshots.items()}, partial=None if replay.partial is None
            else replay.partial.only(t for t in replay.partial.tables if t not in hidden))


def _live_options(online: dict[str, Any], offline: dict[str, Any]) -> dict[str, Any]:
    """The version-table options env.py passed in the replay (the online path: it stamps),
    as they name the live database: a schema env.py derived from its connection is the
    scratch schema's name there (``_ar_replay_...``), which means the live one's, Alembic's
    default (None), unless the offline path named one."""
    from ..env_filter import OWN_PREFIX

    found = {**offline, **online}
    schema = found.get("version_table_schema")
    if isinstance(schema, str) and schema.startswith(OWN_PREFIX):
        found["version_table_schema"] = offline.get("version_table_schema")
    return found


def _begin_replay(project: Project, scripts: tuple[ScriptFile, ...], graph: RevisionGraph,
                  config: ConfigState, cleanup: ExitStack, *,
                  use_cache: bool = True) -> EnvStart | None:
    """Start the replay through env.py early: the child process runs the history while this
    one reads the revision files and the database (`cleanup` stops it if it is not used)."""
    if not (graph.ok and config.script_location_exists):
        return None
    live = None
    if project.dialect != "sqlite":  # the scratch schema is made on the project's server
        try:
            live = connect_readonly(project)
        except (DatabaseUnreachable, ConfigError):
            return None  # read_state records it
        if live is None:
            return None
        cleanup.callback(live.dispose)
    try:
        started = begin(project, live, [s.path for s in scripts if s.revision],
                        use_cache=use_cache)
    except SQLAlchemyError:  # e.g. no right to create a scratch schema: said by the replay
        return None
    if started is not None:
        cleanup.callback(started.close)
    return started


def read_state(project: Project, *, models: str | None = None, replay: bool = True,
               use_cache: bool = True) -> State:
    """Read everything doctor looks at. A database that cannot be read (unreachable, login
    refused, not an SQLite database, no driver) is recorded in `db_error`, not raised: doctor
    reports it and decides the exit code."""
    config = read_config(project)
    scripts = read_scripts(project.versions_dir)
    graph = RevisionGraph.of(scripts)
    state: dict[str, object] = {}
    offline_options: dict[str, object] = {}  # what env.py's offline path passes to configure()
    with project_on_path(project.root), ExitStack() as cleanup:
        metadata = None
        try:
            if config.env_py_exists:
                metadata = capture_from_env_py(project, offline_options)
                state["models_none"] = metadata is None
            if models or metadata is None:
                metadata = load_target_metadata(project, explicit=models, use_env_py=False)
        except ConfigError as err:
            state["models_error"] = err
        if metadata is not None:  # whose models: the project's, or an installed package's
            state["models_owner"] = models_owner(metadata, project.root)
        # after the models: the forked replay shares the application's modules just imported
        started = _begin_replay(project, scripts, graph, config, cleanup,
                                use_cache=use_cache) if replay else None
        model_files = project_module_files(project)
        directory = None
        if graph.ok and config.script_location_exists:
            directory, state["import_error"] = _load_directory(project)
        try:
            engine = connect_readonly(project)
        except (DatabaseUnreachable, ConfigError) as err:  # not a database, no driver: too
            engine, state["db_error"] = None, err
        if engine is None and "db_error" not in state:
            state["database_missing"] = True
        if engine is not None:
            try:
                if directory is not None and replay:
                    try:
                        state["replay"] = run_replay(project, directory, engine,
                                                     use_cache=use_cache, env=True,
                                                     started=started)
                    except SQLAlchemyError as err:  # e.g. no right to create a scratch schema
                        state["replay_skipped"] = redact(driver_message(err), project.url)
                if options := getattr(state.get("replay"), "env_options", None):
                    remember_options(project, _live_options(options, offline_options))
                with engine.connect() as conn:
                    state["versions"] = versions = read_versions(conn)
                    state["live"] = reflect_cached(conn, project, use_cache=use_cache,
                                                   baseline=state.get("replay"))  # type: ignore[arg-type]
                    state["junk"] = find_junk(conn)
                    if metadata is not None:
                        state["models"] = from_metadata(metadata, conn.dialect)
                    _hide_kept(state, conn, project, config)
                    _leave_out(state, project, config, metadata, offline_options)
                    if metadata is not None:  # AR403: what `alembic check` reports
                        state["drift"] = read_drift(
                            conn, metadata, state["models"], state["live"],  # type: ignore[arg-type]
                            {*state["hidden_tables"], *state.get("kept_models", ()),  # type: ignore[misc]
                             *state["left_out"]},
                            compare_options(offline_options,
                                            getattr(state.get("replay"), "env_options", None),
                                            types_on=config.compare_type_off))
                    if directory is not None:
                        state["pending"] = read_pending(
                            project, directory, scripts, versions.heads, conn,
                            state["live"], model_files)  # type: ignore[arg-type]
                        state["location"] = locate_live(
                            directory, state.get("replay"), state["live"], conn.dialect,  # type: ignore[arg-type]
                            {*state["hidden_tables"], *state["left_out"],  # type: ignore[misc]
                             *State(project, config, (), ()).kept_tables})
            except AlembicRepairError as err:
                if isinstance(err, DatabaseUnreachable):
                    state["db_error"] = err
                else:
                    raise
            finally:
                engine.dispose()
        elif directory is not None and replay and project.dialect == "sqlite":
            state["replay"] = run_replay(project, directory, None, use_cache=use_cache,
                                         env=True, started=started)
    return State(project, config, scripts, graph.heads(), metadata=metadata,
                 **state)  # type: ignore[arg-type]
