"""apply: run a Plan: backup, then the steps in order (journalled), then prove no row was lost.

`fix` is layered (plan.py): plan the lowest broken layer, apply it, diagnose again, plan the
next, until nothing repairable is left (at most `MAX_ROUNDS`). Each round is one journalled run
on the one connection that holds the migration lock:

1. a backup folder ``.alembic_repair/backups/<stamp>-fix/``: a verified backup of the
   database when any step changes the schema (`Step.needs_backup`), and always the place where
   moved or replaced project files are kept;
2. the steps, each marked started/done in ``.alembic_repair/journal.json`` (the steps
   themselves are stored there, so a resumed run finishes exactly the printed plan);
3. verification: every table of the backup still holds the backup's rows, compared over the
   columns that still exist (counts and checksums).

A killed round is finished by the next `fix --yes` (every step is safe to run again), or taken
back with ``rollback=True`` (undo of the done steps, newest first) when they are reversible.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from . import backups, guards
from .database import connect
from .diagnose import Diagnosis, diagnose
from .errors import MigrationFailed, NeedsRepair, RefusedUnsafe
from .journal import Journal
from .locking import migration_lock
from .plan import Plan, make_plan
from .project import Project
from .state.read import read_state
from .state.schema import VERSION_TABLE
from .steps import Context, Step, from_dict

__all__ = ["FixResult", "MAX_ROUNDS", "apply_plan", "fix", "plan_fix"]

COMMAND = "fix"
MAX_ROUNDS = 6
Say = Callable[[str, str], None]


@dataclass(frozen=True)
class FixResult:
    """The plans that ran, their backup folders, and the final diagnosis."""

    plans: tuple[Plan, ...]
    folders: tuple[Path, ...]
    final: Diagnosis = field(repr=False)
    resumed: bool = False
    rolled_back: bool = False
    unrepairable: tuple[tuple[str, str | None, str], ...] = ()  # (code, location, what to do)

    @property
    def healthy(self) -> bool:
        return self.final.healthy

    @property
    def changed(self) -> bool:
        return bool(self.plans) or self.resumed or self.rolled_back


def _diagnose(project: Project, models: str | None) -> Diagnosis:
    return diagnose(read_state(project, models=models))


def plan_fix(project: Project, *, only: tuple[str, ...] = (), models: str | None = None
             ) -> tuple[Diagnosis, Plan, Journal | None]:
    """The first round's plan (and a journal left by an interrupted run). Changes nothing."""
    journal = Journal.load(project.state_dir)
    diagnosis = _diagnose(project, models)
    return diagnosis, make_plan(diagnosis, only=only, models=models), journal


def _folder(project: Project) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return project.state_dir / "backups" / f"{stamp}-fix"


def _check_rows(conn: Connection, manifest: backups.Manifest) -> list[str]:
    """Tables of the backup whose rows are not all still there (over the surviving columns)."""
    problems = []
    existing = set(inspect(conn).get_table_names())
    for info in manifest.tables:
        if info.name == VERSION_TABLE:
            continue
        if info.name not in existing:
            problems.append(f"table {info.name} ({info.rows} rows) is gone")
            continue
        present = set(backups.table_columns(conn, info.name))
        columns = [c for c in info.columns if c in present]
        if not backups._same_rows(conn, manifest, info, columns):
            problems.append(f"table {info.name} no longer holds the backup's {info.rows} rows")
    conn.rollback()
    return problems


def apply_plan(project: Project, conn: Connection, steps: tuple[Step, ...], journal: Journal,
               ctx: Context) -> Journal:
    """Run the steps not yet done (a resumed journal skips those), then verify the rows."""
    folder = Path(journal.context["folder"])
    if journal.context.get("backup") and not journal.is_done("backup"):
        journal = journal.mark("backup", "started")
        if folder.exists() and not (folder / backups.MANIFEST).exists():
            shutil.rmtree(folder)  # a crash during the backup: ours, incomplete
        manifest = backups.backup_locked(project, conn, folder)
        ctx.say("backup", f"backed up {len(manifest.tables)} tables "
                f"({sum(t.rows for t in manifest.tables)} rows) into {project.rel(folder)}, "
                "verified")
        journal = journal.mark("backup", "done")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for number, step in enumerate(steps, start=1):
        name = f"{number}.{step.kind}"
        if journal.is_done(name):
            continue
        journal = journal.mark(name, "started")
        step.apply(ctx)
        conn.commit()
        journal = journal.mark(name, "done")
    if journal.context.get("backup"):
        manifest = backups.verify(folder)
        problems = _check_rows(conn, manifest)
        if problems:
            raise MigrationFailed(
                "fix: " + "; ".join(problems) + f"; the backup is {project.rel(folder)} "
                "(alembic-repair restore puts the rows back)")
        ctx.say("verify", "every table holds the rows it held before (counts and checksums)")
    journal = journal.mark("verify", "done")
    return journal


def _begin(project: Project, plan: Plan) -> Journal:
    names: list[tuple[str, bool]] = []
    if plan.needs_backup:
        names.append(("backup", False))
    names += [(f"{n}.{s.kind}", s.destructive or s.needs_backup)
              for n, s in enumerate(plan.steps, start=1)]
    names.append(("verify", False))
    return Journal.begin(project.state_dir, COMMAND, names, {
        "folder": str(_folder(project)), "backup": plan.needs_backup, "layer": plan.layer,
        "steps": [s.as_dict() for s in plan.steps],
    })


def _started(journal: Journal) -> bool:
    """True once any step after the backup started: the run is finished, not started over."""
    return any(s.state != "pending" for s in journal.steps if s.name != "backup")


def _steps(journal: Journal) -> tuple[Step, ...]:
    return tuple(from_dict(d) for d in journal.context["steps"])


def _rollback(project: Project, conn: Connection, journal: Journal, ctx: Context) -> None:
    steps = _steps(journal)
    done = [(n, s) for n, s in enumerate(steps, start=1)
            if journal.state(f"{n}.{s.kind}") != "pending"]
    stuck = [f"{n}. {s.describe()}" for n, s in done if not s.reversible]
    if stuck:
        raise RefusedUnsafe(
            "fix --rollback: these steps cannot be undone: " + "; ".join(stuck) + "; finish "
            "the run with `alembic-repair fix --yes`, or put the rows back with "
            f"`alembic-repair restore {journal.context['folder']}`")
    for number, step in reversed(done):
        step.undo(ctx)
        conn.commit()
        ctx.say("undo", f"undid step {number}: {step.describe()}")
    journal.finish()


def fix(project: Project, *, yes: bool, allow_remote: bool = False, only: tuple[str, ...] = (),
        models: str | None = None, rollback: bool = False,
        say: Say = lambda kind, message: None) -> FixResult:
    """Plan, back up, repair, verify, diagnose again; layer after layer (module docstring)."""
    guards.require_local(allow_remote, project, "fix")
    engine = connect(project)
    plans: list[Plan] = []
    folders: list[Path] = []
    resumed = rolled_back = False
    try:
        with migration_lock(engine, project.state_dir) as conn:
            journal = Journal.load(project.state_dir)
            if journal is not None and journal.command != COMMAND:
                raise NeedsRepair(
                    f"{project.rel(journal.path)}: an interrupted `{journal.command}` run is "
                    f"recorded; run `alembic-repair {journal.command} --yes` to finish it first")
            if journal is not None and not _started(journal):
                say("restart", "an interrupted fix stopped before changing anything; "
                    "planning again")
                folder = Path(journal.context["folder"])
                if folder.is_dir() and not journal.is_done("backup"):
                    shutil.rmtree(folder)  # only an incomplete backup can be in it
                journal.finish()
                journal = None
            if journal is not None:
                ctx = Context(project, conn, Path(journal.context["folder"]), models, say)
                steps = _steps(journal)
                action = "roll back" if rollback else "finish"
                guards.require(yes, allow_remote, project, f"fix: would {action} the "
                               f"interrupted run ({len(steps)} steps, last done: "
                               f"{journal.last_done})")
                if rollback:
                    _rollback(project, conn, journal, ctx)
                    return FixResult((), (Path(journal.context["folder"]),),
                                     _diagnose(project, models), rolled_back=True)
                say("resume", f"an interrupted fix stopped after {journal.last_done}; "
                    "finishing it")
                apply_plan(project, conn, steps, journal, ctx).finish()
                folders.append(ctx.folder)
                resumed = True
            elif rollback:
                raise NeedsRepair("fix --rollback: no interrupted fix run to roll back")
            for _ in range(MAX_ROUNDS):
                diagnosis = _diagnose(project, models)
                plan = make_plan(diagnosis, only=only, models=models)
                if not plan.steps or (plans and plan.as_dict() == plans[-1].as_dict()):
                    break  # nothing to do, or the last round changed nothing
                guards.require(yes, allow_remote, project,
                               f"fix: would run {len(plan.steps)} steps ({plan.layer})")
                journal = _begin(project, plan)
                ctx = Context(project, conn, Path(journal.context["folder"]), models, say)
                say("plan", f"{plan.layer}: {len(plan.steps)} steps")
                apply_plan(project, conn, plan.steps, journal, ctx).finish()
                plans.append(plan)
                folders.append(ctx.folder)
            final = _diagnose(project, models)
            left = make_plan(final, only=only, models=models)
            unrepairable = tuple((f.code, f.location, why) for f, why in left.unrepairable)
            return FixResult(tuple(plans), tuple(folders), final, resumed, rolled_back,
                             unrepairable)
    finally:
        engine.dispose()
