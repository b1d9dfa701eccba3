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
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .data import trash
from .engine.project import Project
from .repair import bootstrap as _bootstrap
from .repair.bootstrap import Action, BootstrapResult, OnAction, Recorder

if TYPE_CHECKING:  # imported when used: bootstrap, run at every container start, needs none
    from .data.backups import Manifest, Progress, RestoreReport
    from .diagnose.diagnosis import Diagnosis
    from .repair import reset as _reset
    from .repair.drop import DropResult
    from .repair.fix import FixResult
    from .repair.plan import Plan
    from .repair.squash import SquashPlan, SquashResult

__all__ = ["Action", "BootstrapResult", "OnAction", "ProjectLike", "as_project", "autogenerate",
           "backup", "bootstrap", "doctor", "drop", "fix", "plan_fix", "plan_reset",
           "plan_squash", "reset", "restore", "squash", "trash_drop", "trash_list",
           "trash_purge", "trash_restore", "upgrade"]


ProjectLike = Project | str | os.PathLike[str] | None


def as_project(project: ProjectLike, **discover: object) -> Project:
    if isinstance(project, Project):
        return project
    return Project.discover(project, **discover)  # type: ignore[arg-type]


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
    it completes (repair/bootstrap.py). A run that changed nothing ends its `actions` with
    ``Action("bootstrap", "nothing to do: database at HEAD")``, the CLI's own words.
    """
    return _bootstrap.bootstrap(as_project(project, models=models), models=models,
                                upgrade=upgrade, lock_timeout=lock_timeout, on_action=on_action)


def autogenerate(project: ProjectLike, message: str, *, models: str | None = None) -> Path | None:
    """Write a revision for the difference between the models and the database, or nothing.

    Returns None (and writes no file) when the models equal the database; never an empty
    revision, never a drop or a change that could cut data. The database must be at head.
    """
    return _bootstrap.write_models_revision(as_project(project, models=models), message,
                                            models=models)


def upgrade(project: ProjectLike, target: str = "head") -> tuple[str, ...]:
    """Apply revisions up to `target` under the migration lock; returns the new heads."""
    return _bootstrap.upgrade_to(as_project(project), target)


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
    from .repair.drop import trash_drop as _trash_drop

    project = as_project(project)
    return _trash_drop(project, table, yes=yes, allow_remote=allow_remote,
                       say=Recorder(project, on_action))


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
            progress: Progress | None = None, method: str = "auto") -> RestoreReport:
    """Verify the backup at `src`, then put its rows back into empty tables (creating the
    tables in an empty database); what does not fit is reported and stays in the backup.
    Needs `yes` (and `allow_remote` off this machine), else `RefusedUnsafe`, nothing changed;
    a backup of another database also needs `other_database`. `method`: ``client`` (the
    mariadb client loads a dump backup), ``python`` (PyMySQL only), ``auto``."""
    from .data.backups import restore as _restore

    return _restore(as_project(project), Path(src), yes=yes, allow_remote=allow_remote,
                    other_database=other_database, progress=progress, method=method)


# -- the safe reset (safe_reset.py) ----------------------------------------------------------------


def plan_reset(project: ProjectLike = None, *, models: str | None = None,
               discard_data: bool = False) -> _reset.ResetPlan:
    """What `reset` would do (or finish, after an interrupted run); changes nothing. Pass it
    to `reset(plan=...)` to run exactly that plan."""
    from .repair import reset as _reset

    return _reset.plan_reset(as_project(project, models=models), models=models,
                             discard_data=discard_data)


def reset(project: ProjectLike = None, *, yes: bool = False, allow_remote: bool = False,
          discard_data: bool = False, models: str | None = None,
          plan: _reset.ResetPlan | None = None,
          on_action: OnAction | None = None) -> _reset.ResetResult:
    """Backup, drop the models' tables, regenerate alembic.ini, env.py and one baseline,
    upgrade, restore the rows and verify them; a run killed part-way is finished by the next
    call. Needs `yes` (and `allow_remote` off this machine), else `RefusedUnsafe`. With `plan`
    (from `plan_reset`): exactly that plan, refused if the project changed since."""
    project = as_project(project, models=models)
    say = Recorder(project, on_action)
    from .repair import reset as _reset

    return _reset.reset(project, yes=yes, allow_remote=allow_remote, discard_data=discard_data,
                        models=models, plan=plan, say=lambda kind, message: say(kind, message))


# -- fix (plan.py, steps.py, apply.py) ---------------------------------------------------------


def plan_fix(project: ProjectLike = None, *, only: tuple[str, ...] = (),
             models: str | None = None) -> Plan:
    """The first round of repairs `fix` would run (a `FixPlan`: the plan and the diagnosis it
    was made from), without running anything. Pass it to `fix(plan=...)` to run exactly it."""
    from .repair import fix as _fix

    return _fix.plan_fix(as_project(project, models=models, strict=False), only=only,
                         models=models)


def fix(project: ProjectLike = None, *, yes: bool = False, allow_remote: bool = False,
        only: tuple[str, ...] = (), models: str | None = None, rollback: bool = False,
        plan: Plan | None = None, on_action: OnAction | None = None) -> FixResult:
    """Repair what doctor finds, layer by layer: each round backs up, runs its steps
    (journalled: a killed run is finished, or with `rollback` undone, by the next call) and
    verifies every row is still there. Needs `yes`, else `RefusedUnsafe` and nothing changes.
    With `plan` (from `plan_fix`), the first round is exactly that plan (refused, nothing
    changed, if the project no longer plans the same); without `yes` nothing is diagnosed
    again. `result.healthy` says whether doctor is satisfied afterwards."""
    from .repair import fix as _fix

    project = as_project(project, models=models, strict=False)
    say = Recorder(project, on_action)
    return _fix.fix(project, yes=yes, allow_remote=allow_remote, only=only, models=models,
                    rollback=rollback, plan=_fix.as_fix_plan(plan),
                    say=lambda kind, message: say(kind, message))


# -- squash (squashing.py) -------------------------------------------------------------------------


def plan_squash(project: ProjectLike = None, *, to: str | None = None) -> SquashPlan:
    """What `squash` would do (proved on scratch databases); changes nothing. Pass it to
    `squash(plan=...)` to run exactly that plan."""
    from .repair.squash import plan_squash as _plan_squash

    return _plan_squash(as_project(project), to=to)


def squash(project: ProjectLike = None, *, to: str | None = None, yes: bool = False,
           allow_remote: bool = False, plan: SquashPlan | None = None,
           on_action: OnAction | None = None) -> SquashResult:
    """Collapse the history up to `to` (default: the head) into one baseline revision: later
    revisions are relinked onto it, the squashed files move into the backup folder, a database
    at `to` is restamped. An empty database built from the new history is proved equal to one
    built from the old (fingerprints). Needs `yes` (and `allow_remote` off this machine), else
    `RefusedUnsafe` and nothing changes; a run killed part-way is finished by the next call.
    With `plan` (from `plan_squash`): exactly that plan, refused if the files or the version
    rows changed since."""
    project = as_project(project)
    say = Recorder(project, on_action)
    from .repair.squash import squash as _run_squash

    return _run_squash(project, to=to, yes=yes, allow_remote=allow_remote, plan=plan,
                       say=lambda kind, message: say(kind, message))


# -- drop (repair/drop.py, rewrite/drops.py) ----------------------------------------------------


def drop(project: ProjectLike, specs: list[str] | tuple[str, ...], *, hard: bool = False,
         into: str | None = None, message: str | None = None, yes: bool = False,
         allow_remote: bool = False) -> DropResult:
    """A revision that drops tables/columns (``table`` or ``table.column``) safely: by default
    a soft drop whose downgrade() brings the rows back; `hard` drops for real after a verified
    backup (its downgrade() recreates them empty). A new revision on the head, or, with
    `into`, a rewrite of that revision's upgrade()/downgrade() (only if this database has not
    applied it). Without `yes`: a dry run (the diff; nothing written, no backup). A soft drop
    written installs env.py's autogenerate filter, so plain autogenerate never drops the trash."""
    from .repair.drop import drop as _drop

    return _drop(as_project(project), specs, hard=hard, into=into, message=message, yes=yes,
                 allow_remote=allow_remote)
