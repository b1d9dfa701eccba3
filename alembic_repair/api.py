"""The commands, as Python functions: Project first, data back, nothing printed, no exit.

The CLI (`cli.py`) is a thin layer over these; a ``backend.sh`` or a Dev Container hook can call
them directly::

    from alembic_repair import bootstrap
    result = bootstrap("path/to/project")        # raises AlembicRepairError subclasses
    for action in result.actions:
        print(action.message)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Engine

from .data import trash
from .engine import migrations, replay, revisions, scaffold
from .engine.database import connect
from .engine.locking import migration_lock
from .engine.models import discover_models, import_models, load_target_metadata, project_on_path
from .engine.project import Project
from .engine.state.schema import is_user_table
from .errors import ConfigError, NeedsRepair, RefusedUnsafe
from .repair.journal import crash_point

if TYPE_CHECKING:  # imported when used: bootstrap, run at every container start, needs none
    from alembic.operations.ops import UpgradeOps

    from .data.backups import Manifest, Progress, RestoreReport
    from .diagnose.diagnosis import Diagnosis
    from .repair import reset as _reset
    from .repair.fix import FixResult
    from .repair.plan import Plan
    from .repair.squash import SquashPlan, SquashResult

OnAction = Callable[["Action"], None]


@dataclass(frozen=True)
class Action:
    """One thing a command did (or waited for), in the order it happened."""

    kind: str
    message: str
    path: str | None = None
    revision: str | None = None


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
        return any(a.kind not in ("wait", "note", "kept") for a in self.actions)


ProjectLike = Project | str | os.PathLike[str] | None


def as_project(project: ProjectLike, **discover: object) -> Project:
    if isinstance(project, Project):
        return project
    return Project.discover(project, **discover)  # type: ignore[arg-type]


class _Recorder:
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


def _scaffold(project: Project, models: str | None, say: _Recorder) -> None:
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


ADOPTING = "bootstrap-adopt.json"


def _adopt(project: Project, conn: Connection, metadata: MetaData, tables: list[str],
           recorded: tuple[str, ...], say: _Recorder) -> None:
    """Make the revision files describe the existing database, then stamp it. Drops nothing.
    The revision is recorded (``.alembic_repair/bootstrap-adopt.json``) before it is written
    and the record goes once it is stamped, so a bootstrap killed in between stamps the file
    it wrote instead of refusing it as a history it does not know (`_own_baseline`)."""
    ops, message = _adoption(conn, metadata)
    revision = revisions.stable_revision_id([], ops)
    local = migrations.revisions(project)
    note = project.state_dir / ADOPTING
    if revision in local:
        written = revisions.Written(revision, Path(local[revision].path))
    else:
        _write_note(note, {"revision": revision, "recorded": list(recorded)})
        written = revisions.write_revision(project, conn, message, ops, rev_id=revision)
        crash_point("bootstrap.adopt.written")
    if written.revision is None or written.path is None:
        raise NeedsRepair(f"{project.masked_url}: nothing to adopt as a baseline; run "
                          "`alembic-repair doctor`")
    if recorded != (written.revision,):
        migrations.log_stamp(project, recorded, (written.revision,))
    migrations.stamp(project, conn, written.revision)
    conn.commit()
    note.unlink(missing_ok=True)
    where = project.rel(written.path)
    if recorded == (written.revision,):
        message = (f"recreated revision {written.revision} ({where}), which the database "
                   f"({len(tables)} tables) already records; no table touched")
    else:
        before = f"was at {', '.join(recorded)}" if recorded else "had no alembic_version row"
        message = (f"adopted the existing database ({len(tables)} tables, {before}) as "
                   f"revision {written.revision} ({where}); no table touched")
    say("adopt", message, written.path, written.revision)


def _write_note(path: Path, data: dict[str, object]) -> None:
    import json

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)


def _adoption(conn: Connection, metadata: MetaData) -> tuple[UpgradeOps, str]:
    """The baseline bootstrap adopts a database with (its operations, its message)."""
    upgrade_ops, held = revisions.pending_model_changes(conn, metadata)
    conn.rollback()
    if upgrade_ops.is_empty() and not held:
        # The database is exactly the models: the same initial revision a fresh database
        # gets, with the same content-derived id.
        return revisions.create_ops(metadata), "initial schema"
    return (revisions.create_ops(revisions.reflect_user_tables(conn)),
            "baseline: the existing database, adopted")


def _own_baseline(project: Project, recorded: tuple[str, ...], local: Iterable[str]) -> bool:
    """True when the only revision file is the baseline an interrupted bootstrap recorded
    writing (`_adopt`) while the database still records what it recorded then."""
    import json

    try:
        note = json.loads((project.state_dir / ADOPTING).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(note, dict) and list(local) == [note.get("revision")]
            and note.get("recorded") == list(recorded))


def _recreate_lost_child(project: Project, engine: Engine, conn: Connection,
                         metadata: MetaData, recorded: str, say: _Recorder) -> bool:
    """The database is at a revision bootstrap wrote on top of our head in another container
    (and that never reached this folder). Autogenerating from the same models on top of the
    same head gives the same content-derived id: if it does, write that file back."""
    directory = migrations.scripts(project)
    with replay.scratch_database(project, engine) as scratch:
        for script in replay.history_order(directory):
            replay.apply_revision(scratch, script)
        ops, held = revisions.pending_model_changes(scratch, metadata)
    if held or ops.is_empty():
        return False
    candidate = revisions.stable_revision_id(directory.get_heads(), ops)
    if candidate != recorded:
        return False
    written = revisions.write_revision(project, conn, "models changed", ops)
    conn.commit()
    if written.path is not None:
        say("adopt", f"recreated revision {recorded} ({project.rel(written.path)}), which the "
            "database records but this folder had lost; no table touched", written.path,
            recorded)
    return True


def bootstrap(
    project: ProjectLike = None,
    *,
    models: str | None = None,
    upgrade: bool = True,
    lock_timeout: float = 600.0,
    on_action: OnAction | None = None,
) -> BootstrapResult:
    """The container start-up flow, safe to run on every start and from several replicas.

    Scaffold what is missing, adopt an existing database the revision files do not know, apply
    pending revisions, autogenerate a revision only when the models really differ (never a
    drop, never a change that could cut data), and apply it. Holds the database's migration
    lock throughout, and works on the one connection that holds it; each step is committed as
    it completes.
    """
    project = as_project(project, models=models)
    say = _Recorder(project, on_action)
    for note in project.notes:
        say("note", note)
    engine = connect(project)
    try:
        with project_on_path(project.root), migration_lock(
            engine, project.state_dir, timeout=lock_timeout,
            notify=lambda message: say("wait", message),
        ) as conn:
            return _bootstrap_locked(project, engine, conn, models, upgrade, say)
    finally:
        engine.dispose()


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


def _protect(project: Project, say: _Recorder) -> None:
    """Trash or kept tables exist: make sure plain autogenerate cannot see them (env_filter:
    reads env.py with ast; libcst is loaded only when env.py must change)."""
    from .engine.env_filter import protect

    done = protect(project)
    if done is not None:
        say(done[0], done[1], project.env_py)


def _bootstrap_locked(project: Project, engine: Engine, conn: Connection, models: str | None,
                      upgrade: bool, say: _Recorder) -> BootstrapResult:
    _check_layout(project)
    _check_script_location(project, conn)
    migrations.check_version_column(conn)
    conn.rollback()
    if models:
        import_models(models, project)  # a wrong --models refuses before env.py is rewritten
    _scaffold(project, models, say)
    metadata = _models(project, models)
    local = migrations.revisions(project)
    recorded = migrations.current_heads(conn)
    names = inspect(conn).get_table_names()
    tables = [t for t in names if is_user_table(t)]
    conn.commit()
    if project.ignore_tables or any(t.startswith("_ar_") for t in names):
        _protect(project, say)
    unknown = [rev for rev in recorded if rev not in local]
    if unknown and not tables:
        migrations.stamp(project, conn, "base")
        conn.commit()
        migrations.log_stamp(project, recorded, ())
        say("adopt", f"cleared alembic_version: it recorded {', '.join(unknown)}, but the "
            "database has no tables")
        recorded, unknown = (), []
    if unknown and local and len(unknown) == 1 and _recreate_lost_child(
            project, engine, conn, metadata, unknown[0], say):
        local = migrations.revisions(project)
        unknown = []
    if unknown or (not recorded and tables):
        if local and not _own_baseline(project, recorded, local):
            what = (f"is at revision {', '.join(unknown)}, which no file in "
                    f"{project.rel(project.versions_dir)} defines" if unknown else
                    f"has {len(tables)} tables but no alembic_version row")
            raise NeedsRepair(
                f"{project.masked_url}: the database {what}, while revision files exist; "
                "bootstrap will not guess which one the schema matches: restore the file "
                "(git checkout), or run `alembic-repair doctor` to find the revision to stamp"
            )
        _adopt(project, conn, metadata, tables, recorded, say)
        local = migrations.revisions(project)
        recorded = migrations.current_heads(conn)
    heads = sorted(rev for rev, script in local.items() if script.is_head)
    branches = len(heads) > 1 and all(local[h].branch_labels for h in heads)
    if len(heads) > 1 and not branches:
        raise NeedsRepair(
            f"{project.rel(project.versions_dir)}: {len(heads)} heads ({', '.join(heads)}); "
            "merge them with `alembic merge heads -m merge`, then run bootstrap again"
        )
    if upgrade and set(recorded) != set(heads):
        recorded = _upgrade(project, conn, recorded, tuple(heads), say)
    if branches:
        say("note", f"{len(heads)} labelled branches ({', '.join(heads)}): upgraded each; "
            "autogenerate skipped (it needs one head)")
        return BootstrapResult(project.root, project.masked_url, project.url_source, recorded,
                               tuple(say.actions))
    held: tuple[str, ...] = ()
    if not local and not tables:
        pending, message = revisions.create_ops(metadata), "initial schema"
    else:
        pending, held = revisions.pending_model_changes(conn, metadata)
        message = "models changed"
    for reason in held:
        say("kept", reason)
    if not pending.is_empty() and (upgrade or not local):
        written = revisions.write_revision(project, conn, message, pending)
        conn.commit()
        crash_point("bootstrap.autogenerate.written")
        if written.revision is not None and written.path is not None:
            say("autogenerate", f"wrote revision {written.revision} "
                f"({project.rel(written.path)}): {message}", written.path, written.revision)
            if upgrade:
                recorded = _upgrade(project, conn, recorded, (written.revision,), say)
    conn.commit()
    return BootstrapResult(project.root, project.masked_url, project.url_source, recorded,
                           tuple(say.actions))


def _upgrade(project: Project, conn: Connection, before: tuple[str, ...],
             target: tuple[str, ...], say: _Recorder) -> tuple[str, ...]:
    migrations.upgrade(project, conn, "heads")
    conn.commit()
    start = ", ".join(before) if before else "an empty database"
    say("upgrade", f"upgraded {start} to {', '.join(target)}", revision=", ".join(target))
    return target


def autogenerate(project: ProjectLike, message: str, *, models: str | None = None) -> Path | None:
    """Write a revision for the difference between the models and the database, or nothing.

    Returns None (and writes no file) when the models equal the database; never an empty
    revision, never a drop or a change that could cut data. The database must be at head.
    """
    project = as_project(project, models=models)
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


def upgrade(project: ProjectLike, target: str = "head") -> tuple[str, ...]:
    """Apply revisions up to `target` under the migration lock; returns the new heads."""
    project = as_project(project)
    engine = connect(project)
    try:
        with project_on_path(project.root), \
                migration_lock(engine, project.state_dir) as conn:
            migrations.upgrade(project, conn, target)
            conn.commit()
            return migrations.current_heads(conn)
    finally:
        engine.dispose()


def doctor(project: ProjectLike = None, *, models: str | None = None, replay: bool = True,
           use_cache: bool = True) -> Diagnosis:
    """Read the four sources of truth and say what is wrong. Never writes to the project's
    files or database (the replay runs on a scratch database; its cache lives outside)."""
    if not isinstance(project, Project):
        project = Project.discover(project, models=models, strict=False)
    from .diagnose.diagnosis import diagnose
    from .engine.state.read import read_state

    return diagnose(read_state(project, models=models, replay=replay, use_cache=use_cache))


# -- the trash (soft-dropped tables; trash.py) -------------------------------------------------


def trash_drop(project: ProjectLike, table: str, *, yes: bool = False,
               allow_remote: bool = False, on_action: OnAction | None = None
               ) -> trash.TrashEntry:
    """Soft-drop `table`: rename it into the trash (O(1)); needs `yes` (and `allow_remote` for a
    database that is not local), else `RefusedUnsafe` and nothing changes. env.py then gets
    the autogenerate filter (env_filter), reported through `on_action`, so the user's plain
    ``alembic revision --autogenerate`` does not drop the trash; an env.py the filter cannot
    go into refuses first (`RefusedUnsafe`, what to write by hand), nothing renamed."""
    project = as_project(project)
    _env_filter_or_refuse(project, f"trash drop {table}")
    entry = trash.soft_drop(project, table, yes=yes, allow_remote=allow_remote)
    from .engine.env_filter import protect

    done = protect(project)
    if done is not None and on_action is not None:
        on_action(Action(done[0], done[1], project.rel(project.env_py)))
    return entry


def _env_filter_or_refuse(project: Project, command: str) -> None:
    """A soft drop is only safe when env.py can hide the trash from plain autogenerate:
    otherwise `RefusedUnsafe` before anything changes, saying what to write by hand."""
    from .engine.env_filter import UnsafeEnv, check

    try:
        check(project)
    except UnsafeEnv as err:
        raise RefusedUnsafe(f"{command}: {project.rel(project.env_py)}: {err}; nothing "
                            "changed") from None


def trash_list(project: ProjectLike = None) -> tuple[trash.TrashEntry, ...]:
    """The soft-dropped tables, oldest first. Read-only."""
    return trash.list_trash(as_project(project))


def trash_restore(project: ProjectLike, name: str, *, yes: bool = False,
                  allow_remote: bool = False) -> trash.TrashEntry:
    """Rename a soft-dropped table (its trash name, or its original name: the newest) back;
    `NeedsRepair` when the original name is taken (nothing changes)."""
    return trash.restore(as_project(project), name, yes=yes, allow_remote=allow_remote)


def trash_purge(project: ProjectLike, *, older_than: timedelta, yes: bool = False,
                allow_remote: bool = False) -> tuple[trash.TrashEntry, ...]:
    """DROP the soft-dropped tables older than `older_than`, for good; returns them."""
    return trash.purge(as_project(project), older_than=older_than, yes=yes,
                       allow_remote=allow_remote)


# -- backups (backup.py) -----------------------------------------------------------------------


def backup(project: ProjectLike, dest: Path | None = None, *, method: str = "auto",
           compress: bool = False, progress: Progress | None = None) -> Manifest:
    """Write a verified logical backup (default: ``.alembic_repair/backups/<UTC stamp>/``);
    returns its manifest. Read-only on the database. `method`: ``dump`` (mariadb-dump /
    mysqldump, MySQL-family only), ``python`` (streamed by us), ``auto`` (dump when there)."""
    from .data.backups import backup as _backup

    return _backup(as_project(project), dest, method=method, compress=compress,
                   progress=progress)


def restore(project: ProjectLike, src: Path, *, yes: bool = False,
            allow_remote: bool = False, other_database: bool = False,
            progress: Progress | None = None) -> RestoreReport:
    """Verify the backup at `src`, then put its rows back into empty tables (creating the
    tables in an empty database); what does not fit is reported and stays in the backup.
    Needs `yes` (and `allow_remote` off this machine), else `RefusedUnsafe`, nothing changed;
    a backup of another database also needs `other_database`."""
    from .data.backups import restore as _restore

    return _restore(as_project(project), Path(src), yes=yes, allow_remote=allow_remote,
                    other_database=other_database, progress=progress)


# -- the safe reset (safe_reset.py) ----------------------------------------------------------------


def plan_reset(project: ProjectLike = None, *, models: str | None = None,
               discard_data: bool = False) -> _reset.ResetPlan:
    """What `reset` would do (or finish, after an interrupted run); changes nothing."""
    from .repair import reset as _reset

    return _reset.plan_reset(as_project(project, models=models), models=models,
                             discard_data=discard_data)


def reset(project: ProjectLike = None, *, yes: bool = False, allow_remote: bool = False,
          discard_data: bool = False, models: str | None = None,
          on_action: OnAction | None = None) -> _reset.ResetResult:
    """Backup, drop the models' tables, regenerate alembic.ini, env.py and one baseline,
    upgrade, restore the rows and verify them; a run killed part-way is finished by the next
    call. Needs `yes` (and `allow_remote` off this machine), else `RefusedUnsafe`."""
    project = as_project(project, models=models)
    say = _Recorder(project, on_action)
    from .repair import reset as _reset

    return _reset.reset(project, yes=yes, allow_remote=allow_remote, discard_data=discard_data,
                        models=models, say=lambda kind, message: say(kind, message))


# -- fix (plan.py, steps.py, apply.py) ---------------------------------------------------------


def plan_fix(project: ProjectLike = None, *, only: tuple[str, ...] = (),
             models: str | None = None) -> Plan:
    from .repair import fix as _apply

    """The first round of repairs `fix` would run, without running anything."""
    return _apply.plan_fix(as_project(project, models=models, strict=False), only=only,
                           models=models)[1]


def fix(project: ProjectLike = None, *, yes: bool = False, allow_remote: bool = False,
        only: tuple[str, ...] = (), models: str | None = None, rollback: bool = False,
        on_action: OnAction | None = None) -> FixResult:
    """Repair what doctor finds, layer by layer: each round backs up, runs its steps
    (journalled: a killed run is finished, or with `rollback` undone, by the next call) and
    verifies every row is still there. Needs `yes`, else `RefusedUnsafe` and nothing changes.
    `result.healthy` says whether doctor is satisfied afterwards."""
    from .repair import fix as _apply

    project = as_project(project, models=models, strict=False)
    say = _Recorder(project, on_action)
    return _apply.fix(project, yes=yes, allow_remote=allow_remote, only=only, models=models,
                      rollback=rollback, say=lambda kind, message: say(kind, message))


# -- squash (squashing.py) -------------------------------------------------------------------------


def plan_squash(project: ProjectLike = None, *, to: str | None = None) -> SquashPlan:
    """What `squash` would do (proved on scratch databases); changes nothing."""
    from .repair.squash import plan_squash as _plan_squash

    return _plan_squash(as_project(project), to=to)


def squash(project: ProjectLike = None, *, to: str | None = None, yes: bool = False,
           allow_remote: bool = False, on_action: OnAction | None = None
           ) -> SquashResult:
    """Collapse the history up to `to` (default: the head) into one baseline revision: later
    revisions are relinked onto it, the squashed files move into the backup folder, a database
    at `to` is restamped. An empty database built from the new history is proved equal to one
    built from the old (fingerprints). Needs `yes` (and `allow_remote` off this machine), else
    `RefusedUnsafe` and nothing changes; a run killed part-way is finished by the next call."""
    project = as_project(project)
    say = _Recorder(project, on_action)
    from .repair.squash import squash as _run_squash

    return _run_squash(project, to=to, yes=yes, allow_remote=allow_remote,
                       say=lambda kind, message: say(kind, message))


# -- drop (rewrite/drops.py) -------------------------------------------------------------------


@dataclass(frozen=True)
class DropResult:
    """The revision `drop` wrote (or rewrote), its diff, and the backup a hard drop took."""

    path: Path
    revision: str | None
    diff: str
    written: bool
    backup: Path | None = None
    already: tuple[str, ...] = ()  # specs a revision not yet applied drops already: not written
    env_filter: tuple[str, str] | None = None  # (kind, message): env.py now hides the trash


def drop(project: ProjectLike, specs: list[str] | tuple[str, ...], *, hard: bool = False,
         into: str | None = None, message: str | None = None, yes: bool = False,
         allow_remote: bool = False) -> DropResult:
    """`_drop` (below); a soft drop written installs env.py's autogenerate filter, so the
    user's plain autogenerate never drops the trash the revision fills (env_filter)."""
    project = as_project(project)
    if yes and not hard:
        _env_filter_or_refuse(project, f"drop {' '.join(specs)}")
    result = _drop(project, specs, hard=hard, into=into, message=message, yes=yes,
                   allow_remote=allow_remote)
    if result.written and not hard:
        from dataclasses import replace

        from .engine.env_filter import protect

        result = replace(result, env_filter=protect(project))
    return result


def _drop(project: ProjectLike, specs: list[str] | tuple[str, ...], *, hard: bool = False,
          into: str | None = None, message: str | None = None, yes: bool = False,
          allow_remote: bool = False) -> DropResult:
    """A revision that drops tables/columns (``table`` or ``table.column``) safely: by default
    a soft drop whose downgrade() brings the rows back; `hard` drops for real after a verified
    backup (its downgrade() recreates them empty). A new revision on the head, or, with
    `into`, a rewrite of that revision's upgrade()/downgrade() (only if this database has not
    applied it). Without `yes`: a dry run (the diff; nothing written, no backup); the
    revision itself runs at the next upgrade."""
    from .data import guards
    from .diagnose.rules.versions import ancestors
    from .engine.state.scripts import read_scripts
    from .rewrite import rewrite_upgrade_drops, write_drop_revision
    from .rewrite.drops import Drop, pending_drops

    project = as_project(project)
    guards.require_local(allow_remote, project, "drop")
    if hard and not yes:
        guards.require(yes, allow_remote, project, f"drop --hard {' '.join(specs)}: would back "
                       "up the tables, then write a revision that drops them for real")
    engine = connect(project)
    try:
        with project_on_path(project.root), migration_lock(engine, project.state_dir) as conn:
            if into is None:
                # a drop already written (an earlier run, maybe killed before it said so) is
                # not chained a second time: the history could no longer build a database
                written = pending_drops(project, conn)
                names = [str(Drop.parse(spec)) for spec in specs]
                if names and all(name in written for name in names):
                    rev, path = written[names[0]]
                    return DropResult(path, rev, "", False, None, tuple(names))
            manifest = _backup_locked(project, conn) if hard else None
            if manifest is not None:
                crash_point("drop.backup")
            if into is None:
                new = write_drop_revision(project, conn, list(specs), hard=hard,
                                          backup=manifest, message=message, dry_run=not yes)
                return DropResult(new.path, new.revision, new.rewrite.diff, yes,
                                  manifest.path if manifest else None)
            local = migrations.revisions(project)
            script = local.get(into)
            if script is None:
                raise ConfigError(f"drop --into {into}: no such revision in "
                                  f"{project.rel(project.versions_dir)}")
            recorded = migrations.current_heads(conn)
            scripts = read_scripts(project.versions_dir)
            applied = set(recorded).union(*(ancestors(scripts, r) for r in recorded))
            if into in applied:
                raise NeedsRepair(f"drop --into {into}: this database applied {into} already, so "
                                  "its upgrade() will not run here again; drop in a new revision "
                                  "(without --into)")
            conn.rollback()
            done = rewrite_upgrade_drops(Path(script.path), list(specs),
                                         schema=revisions.reflect_user_tables(conn),
                                         hard=hard, backup=manifest, dry_run=not yes,
                                         dialect=conn.dialect)
            return DropResult(done.path, into, done.diff, yes and done.changed,
                              manifest.path if manifest else None)
    finally:
        engine.dispose()


def _backup_locked(project: Project, conn: Connection) -> Manifest:
    from .data.backups import backup_locked

    return backup_locked(project, conn)
