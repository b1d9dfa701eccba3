"""bootstrap: the container start-up flow, and Alembic's own autogenerate and upgrade with our
guarantees (the migration lock, one connection, no empty revision, no drop).

Scaffold what is missing, adopt an existing database the revision files do not know (a
baseline written and stamped, no table touched), apply pending revisions, autogenerate a
revision only when the models really differ, and apply it. Every command reports what it did
as `Action` values, in order (`Recorder`), and bootstrap returns them in a `BootstrapResult`.

Bootstrap reads the state and decides; what changes the database or the history runs as steps
(`bootstrap_steps`) through the one runner (runner.py), journalled like fix or reset, so a
killed bootstrap is finished by the next one. The setup files are written before (atomically,
from templates, idempotent: the models must be loadable to plan anything). At head nothing is
journalled: run at every container start, bootstrap imports neither the runner nor the steps
unless something must change (`_MustChange`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from ..engine import migrations, revisions, scaffold
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.models import discover_models, import_models, load_target_metadata, project_on_path
from ..engine.project import Project, models_from_pyproject, tool_settings
from ..engine.state.schema import is_user_table
from ..errors import AlembicRepairError, ConfigError, NeedsRepair
from .journal import Journal

if TYPE_CHECKING:
    from .steps import Context, Step

__all__ = ["Action", "BootstrapResult", "OnAction", "bootstrap", "nothing_to_do", "upgrade_to",
           "write_models_revision"]

OnAction = Callable[["Action"], None]
COMMAND = "bootstrap"
_STEPS, _RUNNER = f"{__package__}.bootstrap_steps", f"{__package__}.runner"


@dataclass(frozen=True)
class Action:
    """One thing a command did (or waited for), in the order it happened."""

    kind: str
    message: str
    path: str | None = None
    revision: str | None = None


_UNCHANGED = ("wait", "note", "kept", "bootstrap")  # "bootstrap": only `nothing_to_do`'s


@dataclass(frozen=True)
class BootstrapResult:
    """What `bootstrap` did; `changed` is False when the run touched no file and no row."""

    root: Path
    url: str
    url_source: str
    head: tuple[str, ...]
    actions: tuple[Action, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return any(a.kind not in _UNCHANGED for a in self.actions)


def nothing_to_do(result: BootstrapResult) -> BootstrapResult:
    """`result`, ending with an `Action` saying nothing changed when nothing did, so a caller
    printing the actions prints what the CLI says (``bootstrap  nothing to do: database at
    HEAD``). Not passed to `on_action`: it is the outcome, not a step (the CLI prints its own)."""
    if result.changed:
        return result
    head = ", ".join(result.head) if result.head else "no revision"
    said = Action("bootstrap", f"nothing to do: database at {head}")
    return replace(result, actions=(*result.actions, said))


class Recorder:
    """Records each `Action` a command reports, in order, and passes it to `on_action`."""

    def __init__(self, project: Project, on_action: OnAction | None) -> None:
        self.project = project
        self.actions: list[Action] = []
        self.on_action = on_action

    def __call__(self, kind: str, message: str, path: Path | None = None,
                 revision: str | None = None) -> None:
        rel = self.project.rel(path) if path is not None else None
        action = Action(kind, message, rel, revision)
        self.actions.append(action)
        if self.on_action is not None:
            self.on_action(action)


def _scaffold(project: Project, models: str | None, say: Recorder) -> None:
    for change in (scaffold.write_alembic_ini(project), scaffold.write_script_template(project)):
        if change.changed:
            say("scaffold", f"{change.status} {project.rel(change.path)}", change.path)
    env_is_ours = not project.env_py.exists() or scaffold.is_generated(project.env_py)
    if env_is_ours:
        spec = models or project.models or discover_models(project.root)
        if spec is None:
            raise ConfigError(
                f"{project.env_py}: missing, and the models cannot be found; pass --models "
                "module:Base, or add [tool.alembic_repair] models = \"module:Base\" to "
                "pyproject.toml"
            )
        change = scaffold.write_env_py(project, spec)
        if change.changed:
            say("scaffold", f"{change.status} {project.rel(change.path)} (models: {spec})",
                change.path)
    keep = scaffold.ensure_versions_dir(project)
    if keep is not None:
        say("scaffold", f"created {project.rel(project.versions_dir)}/", keep.path)


def bootstrap(project: Project, *, models: str | None = None, upgrade: bool = True,
              lock_timeout: float = 600.0, on_action: OnAction | None = None
              ) -> BootstrapResult:
    """`alembic_repair.bootstrap` (api.py) on a resolved project: holds the database's
    migration lock throughout, and works on the one connection that holds it; each step is
    committed as it completes."""
    say = Recorder(project, on_action)
    for note in project.notes:
        say("note", note)
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir, timeout=lock_timeout,
                            notify=lambda message: say("wait", message)) as conn:
            try:
                with project_on_path(project.root):
                    return nothing_to_do(_bootstrap_locked(project, conn, models, upgrade, say))
            except _MustChange:
                conn.rollback()
                from . import bootstrap_steps, runner  # noqa: F401  (see _MustChange)
            with project_on_path(project.root):
                return nothing_to_do(_bootstrap_locked(project, conn, models, upgrade, say))
    finally:
        engine.dispose()


class _MustChange(Exception):
    """Something must change and the runner and the step kinds are not imported yet (the
    fast path needs neither). They are imported outside `project_on_path`, which takes every
    module first imported inside it for the project's and re-imports it on its next use (a
    second step registry), and bootstrap reads the state again."""


def _kinds() -> Any:
    """The step kinds (`bootstrap_steps`), once `bootstrap` imported them and the runner."""
    if _STEPS not in sys.modules or _RUNNER not in sys.modules:
        raise _MustChange
    return sys.modules[_STEPS]


def _models(project: Project, models: str | None) -> MetaData:
    metadata = load_target_metadata(project, explicit=models)
    if metadata is None:
        raise ConfigError(
            f"{project.rel(project.env_py)}: target_metadata is None, so autogenerate "
            "cannot compare anything; set it to your models' MetaData, or pass --models module:Base"
        )
    if not [t for t in metadata.tables.values() if is_user_table(t.name)]:
        source = models or project.models or project.rel(project.env_py)
        raise ConfigError(
            f"{source}: the models define no table (the module with Base may not import the "
            "model classes); pass --models naming the module that defines them, e.g. "
            "app.models:Base"
        )
    return metadata


def _remember_models(project: Project, spec: str, say: Recorder) -> None:
    """`--models` that loaded tables goes into ``[tool.alembic_repair] models`` of
    pyproject.toml, so the next plain bootstrap writes env.py with the same models instead of
    the ones it would discover (the FastAPI layout: `Base` in database.py, the classes in
    models.py, where discovery finds a Base without tables). Called once bootstrap's steps
    succeeded (a bootstrap that refuses or fails remembers nothing); the file is edited line by
    line (comments, layout and line endings kept), read back, and replaced atomically; nothing
    is written when that fails."""
    path = project.root / "pyproject.toml"
    if models_from_pyproject(project.root) == spec:
        return
    data = path.read_bytes() if path.is_file() else b""
    text = data.decode("utf-8")  # (models_from_pyproject read it as UTF-8 already)
    updated = _with_models(text, spec)
    try:
        section = tool_settings(updated)
    except ValueError:  # TOMLDecodeError
        section = {}
    if not isinstance(section, dict) or section.get("models") != spec:
        say("note", f"pass --models {spec} on every run, or add [tool.alembic_repair] models = "
            f"{json.dumps(spec)} to {project.rel(path)} (it could not be edited safely)")
        return
    temporary = path.with_name(f".{path.name}.ar-tmp")
    temporary.write_bytes(updated.encode("utf-8"))
    if path.exists():
        shutil.copymode(path, temporary)
    os.replace(temporary, path)  # a kill never leaves half a pyproject.toml
    say("scaffold", f"{'updated' if text else 'created'} {project.rel(path)} ([tool.alembic_repair]"
        f" models = {json.dumps(spec)}: the next run uses it without --models)", path)


def _with_models(text: str, spec: str) -> str:
    """`text` (a pyproject.toml) with ``models = spec`` in its [tool.alembic_repair] table:
    the key's line replaced, else added under the header, else the table appended; in the
    file's own line ending (CRLF stays CRLF)."""
    nl = "\r\n" if "\r\n" in text else "\n"
    line = f"models = {json.dumps(spec)}"
    lines = text.splitlines()
    header = next((n for n, raw in enumerate(lines)
                   if raw.split("#", 1)[0].strip() == "[tool.alembic_repair]"), None)
    if header is None:
        gap = "" if not text.strip() else (nl if text.endswith("\n") else nl * 2)
        return f"{text}{gap}[tool.alembic_repair]{nl}{line}{nl}"
    end = next((n for n in range(header + 1, len(lines))
                if lines[n].lstrip().startswith("[")), len(lines))
    key = next((n for n in range(header + 1, end)
                if lines[n].split("=", 1)[0].strip() == "models"), None)
    if key is None:
        lines.insert(header + 1, line)
    else:
        lines[key] = line
    return nl.join(lines) + nl


def _check_layout(project: Project) -> None:
    """A folder where bootstrap expects a file (or a file where it expects a folder) is
    refused before anything is written."""
    for path, folder in ((project.script_location, True), (project.versions_dir, True),
                         (project.env_py, False), (project.script_template, False)):
        if path.exists() and path.is_dir() != folder:
            what = "a file" if folder else "a folder"
            raise ConfigError(
                f"{project.rel(path)}: {what} where alembic-repair expects "
                f"{'a folder' if folder else 'a file'}; nothing changed; move it away, then run "
                "bootstrap again")


def _check_script_location(project: Project, conn: Connection) -> None:
    """A mistyped script_location must not make bootstrap scaffold a second history and
    restamp the database away from the real one: refuse while the database records revisions
    and the folder alembic.ini names does not exist."""
    if not project.ini_path.is_file() or project.script_location.exists():
        return
    recorded = migrations.current_heads(conn)
    conn.rollback()
    if not recorded:
        return
    lines = project.ini_path.read_text(encoding="utf-8", errors="replace").splitlines()
    number = next((n for n, line in enumerate(lines, 1)
                   if line.split("=", 1)[0].strip() == "script_location"), None)
    where = project.rel(project.ini_path) + (f":{number}" if number else "")
    raise ConfigError(
        f"{where}: script_location names {project.rel(project.script_location)}, which does "
        f"not exist, while the database records revision {', '.join(recorded)}; nothing "
        "changed; fix script_location (or restore that folder: git checkout), then run "
        "bootstrap again")


def _protect(project: Project, say: Recorder) -> None:
    """Trash or kept tables exist: make sure plain autogenerate cannot see them (env_filter:
    reads env.py with ast; libcst is loaded only when env.py must change)."""
    from ..engine.env_filter_install import protect

    done = protect(project)
    if done is not None:
        say(done[0], done[1], project.env_py)


@dataclass(frozen=True)
class _State:
    """What bootstrap decides from: the revision files, what alembic_version records, the
    tables (user tables apart)."""

    local: dict[str, Any]
    recorded: tuple[str, ...]
    names: list[str]
    tables: list[str]


def _read(project: Project, conn: Connection) -> _State:
    local = migrations.revisions(project)
    recorded = migrations.current_heads(conn)
    names = inspect(conn).get_table_names()
    conn.commit()
    return _State(local, recorded, names, [t for t in names if is_user_table(t)])


def _bootstrap_locked(project: Project, conn: Connection, models: str | None,
                      upgrade: bool, say: Recorder) -> BootstrapResult:
    """`_plan_and_run`; then, only once it succeeded, `--models` is remembered."""
    result = _plan_and_run(project, conn, models, upgrade, say)
    if not models:
        return result
    _remember_models(project, models, say)
    return replace(result, actions=tuple(say.actions))


def _plan_and_run(project: Project, conn: Connection, models: str | None,
                  upgrade: bool, say: Recorder) -> BootstrapResult:
    """Check, scaffold, finish an interrupted bootstrap, read the state; then, only when
    something must change, plan the steps and run them through the runner (`_run`)."""
    _check_layout(project)
    _check_script_location(project, conn)
    migrations.check_version_column(conn)
    conn.rollback()
    if models:
        import_models(models, project)  # a wrong --models refuses before env.py is rewritten
    _scaffold(project, models, say)
    metadata = _models(project, models)
    state = _read(project, conn)
    if project.ignore_tables or any(t.startswith("_ar_") for t in state.names):
        _protect(project, say)
    journal = Journal.load(project.state_dir)
    if journal is not None and journal.command == COMMAND:
        _resume(project, conn, models, metadata, say)
        state = _read(project, conn)
    local, recorded, tables = state.local, state.recorded, state.tables
    steps: list[Step] = []
    unknown = [rev for rev in recorded if rev not in local]
    heads = sorted(rev for rev, script in local.items() if script.is_head)
    if unknown and not tables:
        steps.append(_kinds().ClearVersions(recorded, tuple(unknown)))
        recorded = ()
    elif unknown and local and len(unknown) == 1:
        steps.append(_kinds().RecreateLost(unknown[0], len(tables)))
        heads = list(unknown)  # written on our head: the one head
    elif unknown or (not recorded and tables):
        if local:
            raise _kinds().unknown_refusal(project, unknown, len(tables))
        steps.append(_kinds().AdoptDatabase(recorded, len(tables)))
        heads = []  # the baseline: recorded as it is written
    branches = len(heads) > 1 and all(local[h].branch_labels for h in heads)
    if len(heads) > 1 and not branches:
        raise NeedsRepair(
            f"{project.rel(project.versions_dir)}: {len(heads)} heads ({', '.join(heads)}); "
            "merge them with `alembic merge heads -m merge`, then run bootstrap again"
        )
    if upgrade and heads and set(recorded) != set(heads):
        steps.append(_kinds().UpgradeHeads(recorded, tuple(heads)))
        recorded = tuple(heads)
    if branches:
        if steps:
            _run(project, conn, steps, models, metadata, say)
        say("note", f"{len(heads)} labelled branches ({', '.join(heads)}): upgraded each; "
            "autogenerate skipped (it needs one head)")
        return BootstrapResult(project.root, project.masked_url, project.url_source, recorded,
                               tuple(say.actions))
    has_revisions = bool(local) or any(s.kind == "bootstrap-adopt" for s in steps)
    if not steps and has_revisions:
        # At head (the fast path): the models are compared; a run starts only when they differ.
        pending, held = revisions.pending_model_changes(conn, metadata)
        conn.rollback()
        if pending.is_empty() or not upgrade:
            for reason in held:
                say("kept", reason)
            return BootstrapResult(project.root, project.masked_url, project.url_source,
                                   recorded, tuple(say.actions))
    autogenerate = None
    if upgrade or not has_revisions:  # (it then says what it holds back itself)
        autogenerate = _kinds().AutogenerateModels(upgrade)
        steps.append(autogenerate)
    ctx = _run(project, conn, steps, models, metadata, say)
    if steps[0].kind == "bootstrap-adopt":
        recorded = migrations.current_heads(conn)
    if autogenerate is None:
        for reason in revisions.pending_model_changes(conn, metadata)[1]:
            say("kept", reason)
    elif upgrade and (written := ctx.recall(autogenerate).get("revision")):
        recorded = (written,)
    conn.commit()
    return BootstrapResult(project.root, project.masked_url, project.url_source, recorded,
                           tuple(say.actions))


def _run(project: Project, conn: Connection, steps: list[Step], models: str | None,
         metadata: MetaData, say: Recorder) -> Context:
    """Journal `steps` and run them through the runner (no backup, no row check: bootstrap
    only adds; another command's interrupted run is finished first)."""
    _kinds()  # (the runner is imported: see _MustChange)
    from . import runner

    runner.interrupted(project, COMMAND)
    fresh = not project.state_dir.exists()
    run = runner.Run(COMMAND, tuple(steps), check_rows=False,
                     context={"again": f"alembic-repair {COMMAND}", "lazy_folder": True})
    journal = runner.begin(project, run)
    try:
        return _execute(project, conn, journal, models, metadata, say)
    finally:
        if fresh:
            _leave_no_trace(project.state_dir)


def _leave_no_trace(state: Path) -> None:
    """A bootstrap that made `.alembic_repair/` only for its journal removes it again: a first
    start in a fresh clone leaves no folder behind unless it keeps something there."""
    try:
        files = [p.relative_to(state).as_posix() for p in state.rglob("*") if not p.is_dir()]
    except OSError:
        return
    if files in ([], [".gitignore"]):
        shutil.rmtree(state, ignore_errors=True)


def _resume(project: Project, conn: Connection, models: str | None, metadata: MetaData,
            say: Recorder) -> None:
    """Finish the bootstrap a kill interrupted (its journal): the same crash-resume path as
    every journalled command."""
    _kinds()  # (the runner is imported: see _MustChange)
    from . import runner

    journal = runner.recover(project, COMMAND, say, "planning again")
    if journal is not None:
        left = [s.name for s in journal.steps if s.state != "done"]
        say("resume", f"an interrupted bootstrap stopped at step {left[0]}; finishing it"
            if left else "an interrupted bootstrap stopped after its last step; closing it")
        _execute(project, conn, journal, models, metadata, say)


def _execute(project: Project, conn: Connection, journal: Journal, models: str | None,
             metadata: MetaData, say: Recorder) -> Context:
    """`runner.execute`, then the journal goes. A step that fails with a clear error closes
    the run too (the next bootstrap plans from the state it finds, as a failed revision is
    for `fix`), unless what it wrote must be finished rather than planned again
    (`kept_after_error`: an adopted baseline not yet stamped)."""
    kinds = _kinds()
    from . import runner

    ctx: Context = kinds.BootstrapContext(project, conn, runner.folder_of(journal), models,
                                          say=say, metadata=metadata)
    try:
        journal = runner.execute(project, conn, journal, ctx)
    except AlembicRepairError:
        current = ctx.journal or journal
        started: list[Any] = [s for n, s in enumerate(runner.steps_of(current), start=1)
                              if current.state(runner.step_name(n, s)) == "started"]
        if not any(s.kept_after_error(ctx) for s in started):
            current.finish()
        raise
    journal.finish()
    return ctx


def write_models_revision(project: Project, message: str, models: str | None = None
                          ) -> Path | None:
    """`alembic_repair.autogenerate` (api.py): a revision for what the models add or widen
    (never empty, never a drop), under the migration lock; None when nothing differs."""
    engine = connect(project)
    try:
        with project_on_path(project.root), \
                migration_lock(engine, project.state_dir) as conn:
            pending, _held = revisions.pending_model_changes(conn, _models(project, models))
            written = revisions.write_revision(project, conn, message, pending)
            conn.commit()
    finally:
        engine.dispose()
    return written.path


def upgrade_to(project: Project, target: str = "head") -> tuple[str, ...]:
    """`alembic_repair.upgrade` (api.py): apply revisions up to `target` under the migration
    lock; returns the new heads."""
    engine = connect(project)
    try:
        with project_on_path(project.root), \
                migration_lock(engine, project.state_dir) as conn:
            migrations.upgrade(project, conn, target)
            conn.commit()
            return migrations.current_heads(conn)
    finally:
        engine.dispose()
