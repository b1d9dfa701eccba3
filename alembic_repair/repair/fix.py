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

from .. import private
from ..data import backups, guards
from ..diagnose.diagnosis import Diagnosis, diagnose
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.project import Project
from ..engine.state.read import read_state
from ..engine.state.schema import TRASH_PREFIX, is_user_table
from ..errors import AlembicRepairError, MigrationFailed, NeedsRepair, RefusedUnsafe
from .journal import Journal
from .plan import Plan, make_plan
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


def row_sums(conn: Connection, tables: dict[str, list[str]] | None = None
             ) -> dict[str, dict[str, object]]:
    """Row count and content checksum of every user table (or of `tables`, over the columns
    given): computed by the server on MySQL/MariaDB (one scan, nothing leaves it), streamed
    in primary-key order on SQLite. Taken before the steps and compared after them."""
    if tables is None:
        tables = {t: backups.table_columns(conn, t) for t in inspect(conn).get_table_names()
                  if is_user_table(t)}
    sums: dict[str, dict[str, object]] = {}
    for name, columns in tables.items():
        if conn.dialect.name in ("mysql", "mariadb"):
            found = backups.server_checksum(conn, name, columns)
        else:
            found = backups.table_checksum(conn, name, columns)
        sums[name] = {"columns": list(columns), "rows": found.rows, "checksum": found.checksum}
    conn.rollback()
    return sums


def _check_rows(conn: Connection, before: dict[str, dict[str, object]]) -> list[str]:
    """Tables whose rows are not all still there, over the columns recorded before."""
    problems = []
    existing = set(inspect(conn).get_table_names())
    wanted: dict[str, list[str]] = {}
    for name, info in before.items():
        columns = [str(c) for c in info["columns"]]  # type: ignore[attr-defined]
        if name not in existing:
            if not _in_trash(conn, name, info, existing):
                problems.append(f"table {name} ({info['rows']} rows) is gone")
            continue
        gone = [c for c in columns if c not in backups.table_columns(conn, name)]
        if gone:
            problems.append(f"column(s) {', '.join(f'{name}.{c}' for c in gone)} are gone")
            continue
        wanted[name] = columns
    after = row_sums(conn, wanted)
    for name, info in after.items():
        old = before[name]
        if (info["rows"], info["checksum"]) != (old["rows"], old["checksum"]):
            problems.append(f"table {name} held {old['rows']} rows and now holds "
                            f"{info['rows']} (or their values changed)")
    return problems


def _in_trash(conn: Connection, name: str, info: dict[str, object], existing: set[str]) -> bool:
    """True when `name` was soft-dropped (a revision renamed it into the trash) with its rows."""
    columns = [str(c) for c in info["columns"]]  # type: ignore[attr-defined]
    for candidate in sorted(existing):
        if candidate.startswith(TRASH_PREFIX) and candidate.endswith(f"_{name}"):
            found = row_sums(conn, {candidate: columns})[candidate]
            if (found["rows"], found["checksum"]) == (info["rows"], info["checksum"]):
                return True
    return False


def apply_plan(project: Project, conn: Connection | None, steps: tuple[Step, ...], journal: Journal,
               ctx: Context) -> Journal:
    """Run the steps not yet done (a resumed journal skips those), then verify the rows."""
    folder = Path(journal.context["folder"])
    if journal.context.get("backup") and not journal.is_done("backup"):
        assert conn is not None
        journal = journal.mark("backup", "started")
        if folder.exists() and not (folder / backups.MANIFEST).exists():
            shutil.rmtree(folder)  # a crash during the backup: ours, incomplete
        manifest = backups.backup_locked(project, conn, folder)
        ctx.say("backup", f"backed up {len(manifest.tables)} tables "
                f"({sum(t.rows for t in manifest.tables)} rows) into {project.rel(folder)}, "
                "verified")
        journal = journal.mark("backup", "done")
    if conn is not None and "rows" not in journal.context:
        rewritten = {pair for step in steps for pair in step.rewrites()}
        tables = {t: [c for c in backups.table_columns(conn, t) if (t, c) not in rewritten]
                  for t in inspect(conn).get_table_names() if is_user_table(t)}
        journal = journal.note(rows=row_sums(conn, tables))
    private.private_dir(folder)  # .alembic_repair/backups/<stamp>/: 0700 each
    for number, step in enumerate(steps, start=1):
        name = f"{number}.{step.kind}"
        if journal.is_done(name):
            continue
        journal = ctx.journal = journal.mark(name, "started")
        try:
            step.apply(ctx)
        except AlembicRepairError as err:
            if conn is not None:
                conn.rollback()
            if _take_back(ctx.journal or journal, steps[:number], ctx):
                raise StepRefused(str(err)) from err
            raise
        if conn is not None:
            conn.commit()
        journal = (ctx.journal or journal).mark(name, "done")  # with what the step noted
        ctx.journal = journal
    if conn is not None:
        problems = _check_rows(conn, journal.context["rows"])
        if problems:
            raise MigrationFailed(
                "fix: " + "; ".join(problems) + f"; the backup is {project.rel(folder)} "
                "(alembic-repair restore puts the rows back)")
        ctx.say("verify", "every table holds the rows it held before (counts and checksums)")
    journal = ctx.journal = journal.mark("verify", "done")
    return journal


class StepRefused(NeedsRepair):
    """A step refused and the run was taken back: the project is as it was before the run."""


def _take_back(journal: Journal, steps: tuple[Step, ...], ctx: Context) -> bool:
    """A step refused (one clear error, raised before it changed anything): when every step of
    the run so far can be undone, undo them and close the journal, so the project is as it was
    and the next fix plans afresh (True); otherwise the journal stays for `fix --yes` or
    `--rollback` (False)."""
    if not all(step.reversible and step.undo_refusal(ctx) is None for step in steps):
        return False
    for step in reversed(steps):
        step.undo(ctx)
    journal.finish()
    return True


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
    ctx.journal = journal
    stuck = [f"{n}. {s.describe()}" for n, s in done if not s.reversible]
    stuck += [f"{n}. {s.describe()} ({why})" for n, s in done
              if s.reversible and (why := s.undo_refusal(ctx)) is not None]
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


def _rediscover(project: Project, models: str | None) -> Project:
    """The project again, after its setup files changed (the URL may come from alembic.ini)."""
    explicit = project.url if project.url_source == "--url" else None
    return Project.discover(project.root, config=project.ini_path, url=explicit, models=models)


def _setup_round(project: Project, *, yes: bool, only: tuple[str, ...], models: str | None,
                 say: Say) -> Plan | None:
    """Repair the setup files without touching a database: while alembic.ini is broken, the
    URL in hand may be a stand-in (the SQLite default), and no database should be opened."""
    diagnosis = diagnose(read_state(project, models=models, replay=False))
    plan = make_plan(diagnosis, only=only, models=models)
    if plan.layer != "setup files" or not plan.steps:
        return None
    guards.require(yes, True, project, f"fix: would run {len(plan.steps)} steps (setup files)")
    journal = _begin(project, plan)
    ctx = Context(project, None, Path(journal.context["folder"]), models, say)
    say("plan", f"{plan.layer}: {len(plan.steps)} steps")
    apply_plan(project, None, plan.steps, journal, ctx).finish()
    return plan


def fix(project: Project, *, yes: bool, allow_remote: bool = False, only: tuple[str, ...] = (),
        models: str | None = None, rollback: bool = False,
        say: Say = lambda kind, message: None) -> FixResult:
    """Plan, back up, repair, verify, diagnose again; layer after layer (module docstring)."""
    plans: list[Plan] = []
    folders: list[Path] = []
    if project.problems and Journal.load(project.state_dir) is None:
        first = _setup_round(project, yes=yes, only=only, models=models, say=say)
        if first is not None:
            plans.append(first)
        project = _rediscover(project, models)  # raises (one clear line) if still broken
    guards.require_local(allow_remote, project, "fix")
    engine = connect(project)
    resumed = rolled_back = False
    refused: list[tuple[str, str | None, str]] = []
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
                if journal.context.get("layer") == "setup files":
                    project = _rediscover(project, models)
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
                try:
                    apply_plan(project, conn, plan.steps, journal, ctx).finish()
                except StepRefused as err:
                    say("refused", f"{plan.layer}: {err}; the round was taken back")
                    refused.append((", ".join(plan.addressed), None, str(err)))
                    break
                plans.append(plan)
                folders.append(ctx.folder)
                if plan.layer == "setup files":
                    project = _rediscover(project, models)
                    ctx.project = project
            final = _diagnose(project, models)
            said = {code for codes, _, _ in refused for code in codes.split(", ")}
            left = tuple(e for e in _left(final, only, models) if e[0] not in said)
            return FixResult(tuple(plans), tuple(folders), final, resumed, rolled_back,
                             tuple(refused) + left)
    finally:
        engine.dispose()


def _left(final: Diagnosis, only: tuple[str, ...], models: str | None
          ) -> tuple[tuple[str, str | None, str], ...]:
    """What remains, each with what to do: the planner's reason, else the finding's own fix."""
    plan = make_plan(final, only=only, models=models)
    left = [(f.code, f.location, why) for f, why in plan.unrepairable]
    named = {(code, location) for code, location, _ in left}
    left += [(f.code, f.location, f.fix) for f in final.findings
             if f.severity != "info" and (f.code, f.location) not in named]
    return tuple(left)
