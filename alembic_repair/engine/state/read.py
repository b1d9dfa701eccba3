"""State: the four sources of truth read once, read-only, damage recorded rather than raised.

1. the revision files (`scripts`, parsed with ast; Alembic's own loading where that works),
2. the ``alembic_version`` rows (`versions`),
3. the live schema (`live`, a `SchemaSnapshot`),
4. the models (`models`, the same form, for the database's dialect),

plus the replayed schema after every revision (`replay`) and what the configuration files say.
`diagnose` runs pure rules over this; nothing here decides what is wrong.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ...errors import AlembicRepairError, ConfigError, DatabaseUnreachable
from ...masking import redact
from ..database import connect_readonly
from ..driver_errors import driver_message
from ..migrations import alembic_config
from ..models import capture_from_env_py, load_target_metadata, project_on_path
from ..project import Project
from ..replay import Replay, reflect_cached, run_replay
from .config import ConfigState, read_config
from .graph import RevisionGraph
from .junk import Junk, find_junk
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
    db_error: DatabaseUnreachable | None = None
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


def read_state(project: Project, *, models: str | None = None, replay: bool = True,
               use_cache: bool = True) -> State:
    """Read everything doctor looks at. Raises only DatabaseUnreachable... never: an
    unreachable database is recorded in `db_error` too (doctor decides the exit code)."""
    config = read_config(project)
    scripts = read_scripts(project.versions_dir)
    graph = RevisionGraph.of(scripts)
    state: dict[str, object] = {}
    with project_on_path(project.root):
        metadata = None
        try:
            if config.env_py_exists:
                metadata = capture_from_env_py(project)
                state["models_none"] = metadata is None
            if models or metadata is None:
                metadata = load_target_metadata(project, explicit=models, use_env_py=False)
        except ConfigError as err:
            state["models_error"] = err
        model_files = project_module_files(project)
        directory = None
        if graph.ok and config.script_location_exists:
            directory, state["import_error"] = _load_directory(project)
        try:
            engine = connect_readonly(project)
        except DatabaseUnreachable as err:
            engine, state["db_error"] = None, err
        if engine is None and "db_error" not in state:
            state["database_missing"] = True
        if engine is not None:
            try:
                if directory is not None and replay:
                    try:
                        state["replay"] = run_replay(project, directory, engine,
                                                     use_cache=use_cache)
                    except SQLAlchemyError as err:  # e.g. no right to create a scratch schema
                        state["replay_skipped"] = redact(driver_message(err), project.url)
                with engine.connect() as conn:
                    state["versions"] = versions = read_versions(conn)
                    state["live"] = reflect_cached(conn, project, use_cache=use_cache,
                                                   baseline=state.get("replay"))  # type: ignore[arg-type]
                    state["junk"] = find_junk(conn)
                    if metadata is not None:
                        state["models"] = from_metadata(metadata, conn.dialect)
                    _hide_kept(state, conn, project, config)
                    if directory is not None:
                        state["pending"] = read_pending(
                            project, directory, scripts, versions.heads, conn,
                            state["live"], model_files)  # type: ignore[arg-type]
            except AlembicRepairError as err:
                if isinstance(err, DatabaseUnreachable):
                    state["db_error"] = err
                else:
                    raise
            finally:
                engine.dispose()
        elif directory is not None and replay and project.dialect == "sqlite":
            state["replay"] = run_replay(project, directory, None, use_cache=use_cache)
    return State(project, config, scripts, graph.heads(), metadata=metadata,
                 **state)  # type: ignore[arg-type]
