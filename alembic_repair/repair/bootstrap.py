"""bootstrap: the container start-up flow, and Alembic's own autogenerate and upgrade with our
guarantees (the migration lock, one connection, no empty revision, no drop).

Scaffold what is missing, adopt an existing database the revision files do not know (a
baseline written and stamped, no table touched), apply pending revisions, autogenerate a
revision only when the models really differ, and apply it. Every command reports what it did
as `Action` values, in order (`_Recorder`), and bootstrap returns them in a `BootstrapResult`.
Run at every container start, so it imports nothing it does not need.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Engine

from ..engine import migrations, replay, revisions, scaffold
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.models import discover_models, import_models, load_target_metadata, project_on_path
from ..engine.project import Project
from ..engine.state.graph import history_order
from ..engine.state.schema import is_user_table
from ..errors import ConfigError, NeedsRepair
from .journal import crash_point

if TYPE_CHECKING:
    from alembic.operations.ops import UpgradeOps

__all__ = ["Action", "BootstrapResult", "OnAction", "bootstrap", "upgrade_to",
           "write_models_revision"]

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


class _Recorder:
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
        for script in history_order(directory):
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


def bootstrap(project: Project, *, models: str | None = None, upgrade: bool = True,
              lock_timeout: float = 600.0, on_action: OnAction | None = None
              ) -> BootstrapResult:
    """`alembic_repair.bootstrap` (api.py) on a resolved project: holds the database's
    migration lock throughout, and works on the one connection that holds it; each step is
    committed as it completes."""
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
    from ..engine.env_filter_install import protect

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
