"""The safe reset: what "delete alembic/, alembic.ini and the data folder" should have been.

Steps, each recorded in the journal (`journal.py`) before and after it runs, on the one
connection that holds the migration lock:

1. ``backup``: a verified backup of every user table (`backups.backup_locked`).
2. ``drop``: drop ``alembic_version`` and the tables the models define. Tables the models do
   not define are left where they are (a fresh baseline would not recreate them), and so is
   the trash.
3. ``scaffold``: move the old ``alembic.ini``, ``env.py``, ``script.py.mako`` and revision files
   into the backup folder (``project-files/``, never deleted), then write ours. A
   ``sqlalchemy.url`` line of the old alembic.ini is carried over, so the project keeps
   talking to the same database: into the new alembic.ini when it holds no password, else
   into ``.alembic_repair/database_url`` (0600; a URL source after alembic.ini).
4. ``baseline``: one revision that creates every table of the models.
5. ``upgrade``: apply it to the emptied database.
6. ``restore``: put the backup's rows into the tables and columns that still exist
   (skipped with ``discard_data``; the backup is kept either way).
7. ``verify``: every restored table holds the backup's row count and checksum.

The backup is the runner's (runner.py); steps 2-7 are `Step` objects journalled under those
names, run by the same runner as fix and squash. Every step can run again after a crash
part-way through it, so the next `reset` finishes the run from the journal (the old state is
gone once ``drop`` started, and the backup is complete and verified before that). A crash
before ``drop`` leaves the database as it was; the next run starts over with a fresh backup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from ..data import backups, guards
from ..engine import migrations
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.models import discover_models, load_target_metadata, project_on_path
from ..engine.project import Project
from ..engine.state.recorder import version_table_of
from ..engine.state.schema import is_user_table
from ..errors import ConfigError, RefusedUnsafe
from . import runner
from .journal import Journal
from .reset_steps import (
    ResetBaseline,
    ResetContext,
    ResetDrop,
    ResetRestore,
    ResetScaffold,
    ResetUpgrade,
    ResetVerify,
    count_rows,
    sha256_of,
)

__all__ = ["ResetPlan", "ResetResult", "STEPS", "plan_reset", "reset"]

COMMAND = "reset"
#: (step, destructive): the old state may be gone once a destructive step started.
STEPS: tuple[tuple[str, bool], ...] = (
    ("backup", False), ("drop", True), ("scaffold", True), ("baseline", True),
    ("upgrade", True), ("restore", True), ("verify", False),
)

Say = Callable[[str, str], None]


def _counted(count: int, noun: str) -> str:
    """``1 row``, ``2 rows``: a count that agrees in number with its noun."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class ResetPlan:
    """What `reset` would do, computed without changing anything."""

    url: str  # masked
    models: str
    drop: tuple[tuple[str, int], ...]  # (table, rows), children first
    kept: tuple[tuple[str, int], ...]  # user tables the models do not define: left in place
    files: tuple[str, ...]  # project files moved into the backup (relative to the root)
    discard_data: bool
    resume: tuple[str, ...] = ()  # steps already done by an interrupted run

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.drop)

    def lines(self) -> list[str]:
        """The numbered plan, one line per step (the destructive ones say so)."""
        drop = ", ".join(f"{t} ({_counted(n, 'row')})" for t, n in self.drop) or "no table"
        steps = [
            ("backup", f"back up every user table ({_counted(self.rows, 'row')} in the tables "
                       "to drop) "
                       "into .alembic_repair/backups/, verified (counts and checksums)"),
            ("drop", f"DROP {drop}, and alembic_version"),
            ("scaffold", f"move {_counted(len(self.files), 'project file')} into the backup "
                         f"({_short(self.files)}); write alembic.ini, env.py and "
                         "script.py.mako"),
            ("baseline", f"write one baseline revision from the models ({self.models})"),
            ("upgrade", "upgrade the emptied database to the baseline"),
            ("restore", "skip restoring the rows (--discard-data); the backup keeps them"
                        if self.discard_data else
                        "restore the rows into the tables and columns that still exist"),
            ("verify", "verify the restored row counts and checksums against the backup"),
        ]
        out = []
        for number, (name, text) in enumerate(steps, start=1):
            flag = " [destructive]" if dict(STEPS)[name] else ""
            done = " (done by the interrupted run)" if name in self.resume else ""
            out.append(f"{number}. {name}: {text}{flag}{done}")
        if self.kept:
            out.append("   kept as they are (the models do not define them): " + ", ".join(
                f"{t} ({_counted(n, 'row')})" for t, n in self.kept))
        return out


@dataclass(frozen=True)
class ResetResult:
    """What `reset` did. ``restore`` is None with ``discard_data``."""

    backup: Path
    head: str
    dropped: tuple[str, ...]
    kept: tuple[str, ...]
    moved: tuple[str, ...]
    restore: backups.RestoreReport | None
    resumed_after: str | None = None  # the last step an interrupted run had finished
    messages: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return self.restore is None or self.restore.complete


# -- planning ---------------------------------------------------------------------------------


def _models_spec(project: Project, models: str | None) -> str:
    spec = models or project.models or discover_models(project.root)
    if spec is None:
        raise ConfigError(
            f"reset: the models cannot be found under {project.root}; pass --models "
            "module:Base (the baseline is generated from them)"
        )
    return spec


def _metadata(project: Project, spec: str) -> MetaData:
    with project_on_path(project.root):
        metadata = load_target_metadata(project, explicit=spec, use_env_py=False)
    if metadata is None or not [t for t in metadata.tables if is_user_table(t)]:
        raise ConfigError(f"--models {spec}: the models define no table; name the module "
                          "that defines them, e.g. app.models:Base")
    return metadata


def _project_files(project: Project) -> list[Path]:
    files = [p for p in (project.ini_path, project.env_py, project.script_template) if p.is_file()]
    if project.versions_dir.is_dir():
        files += sorted(p for p in project.versions_dir.iterdir()
                        if p.is_file() and p.name != ".gitkeep")
    return files

def _short(files: tuple[str, ...]) -> str:
    return ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")


def _plan(project: Project, conn: Connection, spec: str, metadata: MetaData,
          discard_data: bool, journal: Journal | None) -> ResetPlan:
    existing = set(inspect(conn).get_table_names())
    ordered = [n for n, _ in inspect(conn).get_sorted_table_and_fkc_names() if n]
    if journal is not None and runner.started(journal):
        try:
            drop = tuple((str(t), 0) for t in journal.context["drop"])
            files = tuple(str(f) for f in journal.context["files"])
        except (KeyError, TypeError):
            raise runner.unreadable(journal) from None
        resume = tuple(s.name for s in journal.steps if s.state == "done")
    else:
        modelled = {t for t in metadata.tables if is_user_table(t)}
        drop = tuple((t, count_rows(conn, t)) for t in reversed(ordered)
                     if t in modelled and t in existing)
        files = tuple(project.rel(p) for p in _project_files(project))
        resume = ()
    dropping = {t for t, _ in drop}
    version = {version_table_of(conn, project)[0]}  # dropped with the tables, not kept
    kept = tuple((t, count_rows(conn, t)) for t in ordered
                 if is_user_table(t, version) and t in existing and t not in dropping)
    conn.rollback()
    return ResetPlan(project.masked_url, spec, drop, kept, files, discard_data, resume)


def plan_reset(project: Project, *, models: str | None = None, discard_data: bool = False
               ) -> ResetPlan:
    """The plan `reset` would run (or finish, after an interrupted run). Changes nothing."""
    spec = _models_spec(project, models)
    metadata = _metadata(project, spec)
    journal = runner.interrupted(project, COMMAND, _older(spec, discard_data))
    engine = connect(project)
    try:
        with engine.connect() as conn:
            return _plan(project, conn, spec, metadata, discard_data, journal)
    finally:
        engine.dispose()

def _older(spec: str, discard_data: bool) -> Callable[[Journal], Journal]:
    """Reads back a reset journal of an earlier version (the same step names, but its steps
    were not stored): its tables, files and backup folder become today's steps, so a reset
    interrupted before an upgrade of alembic-repair is still finished. Anything else is
    returned as it is (and refused as unreadable)."""

    def read(journal: Journal) -> Journal:
        context = journal.context
        try:
            drop = tuple(str(t) for t in context["drop"])
            files = tuple(str(f) for f in context["files"])
            sha256 = {str(k): str(v) for k, v in context["sha256"].items()}
            folder = str(context["backup"])
        except (KeyError, TypeError, AttributeError):
            return journal
        steps = (ResetDrop(drop), ResetScaffold(files, sha256, spec), ResetBaseline(),
                 ResetUpgrade(), ResetRestore(discard_data), ResetVerify(discard_data))
        return replace(journal, context={
            **context, "folder": folder, "backup": True, "check_rows": False,
            "steps": [s.as_dict() for s in steps]})

    return read


def _run(project: Project, plan: ResetPlan) -> runner.Run:
    """The plan as the runner's steps: the backup first (the runner's), then the reset's."""
    steps = (ResetDrop(tuple(t for t, _ in plan.drop)),
             ResetScaffold(plan.files, {f: sha256_of(project.root / f) for f in plan.files},
                           plan.models),
             ResetBaseline(), ResetUpgrade(), ResetRestore(plan.discard_data),
             ResetVerify(plan.discard_data))
    return runner.Run(COMMAND, steps, backup=True, check_rows=False, context={
        "drop": [t for t, _ in plan.drop], "files": list(plan.files)})


# -- running ----------------------------------------------------------------------------------


def reset(project: Project, *, yes: bool, allow_remote: bool = False,
          discard_data: bool = False, models: str | None = None, plan: ResetPlan | None = None,
          say: Say = lambda kind, message: None) -> ResetResult:
    """Run the plan of `plan_reset` (see the module docstring); refuses without `yes`. With
    `plan`, exactly that plan runs (refused when the project no longer plans the same)."""
    guards.require_local(allow_remote, project, "reset")
    spec = _models_spec(project, models)
    metadata = _metadata(project, spec)
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            journal = runner.interrupted(project, COMMAND, _older(spec, discard_data))
            if plan is None or yes:
                now = _plan(project, conn, spec, metadata, discard_data, journal)
                if plan is not None and now != plan:
                    raise RefusedUnsafe(
                        "reset: refused, the project changed since the plan was made; nothing "
                        "changed; run `alembic-repair reset` again to see the new plan")
                plan = now
            what = "finish the interrupted reset" if plan.resume else "reset"
            guards.require(yes, allow_remote, project,
                           f"reset: would {what} ({_counted(len(plan.drop), 'table')}, "
                           f"{_counted(plan.rows, 'row')} "
                           "backed up, dropped, recreated and restored)")
            resumed_after: str | None = None
            journal = runner.recover(project, COMMAND, say, "starting over",
                                     _older(spec, discard_data))
            if journal is not None:
                resumed_after = journal.last_done
                say("resume", f"an interrupted reset stopped after step {journal.last_done}; "
                    f"finishing it with the backup {journal.context['folder']}")
            else:
                journal = runner.begin(project, _run(project, plan))
            ctx = ResetContext(project, conn, runner.folder_of(journal), spec, say,
                               metadata=metadata, discard_data=plan.discard_data)
            runner.execute(project, conn, journal, ctx).finish()
            head = migrations.current_heads(conn)
            conn.rollback()
            return ResetResult(ctx.folder, ", ".join(head), tuple(t for t, _ in plan.drop),
                               tuple(t for t, _ in plan.kept), plan.files, ctx.report,
                               resumed_after)
    finally:
        engine.dispose()
