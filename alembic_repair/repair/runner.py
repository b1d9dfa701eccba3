"""The one runner of every journalled command (fix, reset, squash, drop, bootstrap): plan ->
journal -> backup when a step needs it -> steps -> verify, on the one connection holding the
migration lock.

A command hands the runner a `Run`: its plan as `Step` objects. They are written into
``.alembic_repair/journal.json`` (`Journal`, with `as_dict`) before the first change, so the run
that finishes an interrupted one carries out exactly the plan that was printed, whichever
command wrote it. Journal names: ``backup``, then each step as ``<n>.<kind>`` (or its fixed
``label``: reset keeps ``drop``, ``scaffold``...), then ``verify`` when the rows are checked;
each name is also the crash point passed when the step is done (`journal.crash_point`).

One rule for a crash: a journal whose steps after the backup never started is started over
(an incomplete backup folder goes, nothing else had changed); otherwise its recorded steps
are finished (every step is safe to run again: what it could not recognise afterwards, it
recorded first with `Context.remember`).
One rollback: every step that ran is asked `undo_refusal` before any is undone, newest first.
One take-back: a step that refuses (one clear error, before it changed anything) while every
step so far can be undone undoes the round, so the project is as it was.
One row check (`row_check`): every user table holds, over the columns that still exist, the
rows it held before the steps (counts and checksums; a soft-dropped table counts through its
trash table); ``CHECKSUM TABLE`` for the tables no step rewrites nor alters.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from .. import private
from ..data import backups
from ..engine.project import Project
from ..errors import AlembicRepairError, ConfigError, MigrationFailed, NeedsRepair, RefusedUnsafe
from ..wording import counted
from .journal import Journal
from .row_check import check_rows, row_sums, tables_to_sum
from .steps import Context, Step, from_dict

__all__ = ["Run", "StepRefused", "begin", "execute", "interrupted", "new_folder", "recover",
           "rollback", "row_sums", "started", "step_name", "steps_of"]


@dataclass(frozen=True)
class Run:
    """What the runner journals: a command's steps, whether a verified backup of the database
    comes first, whether the rows are checked afterwards, and what else a resumed run needs."""

    command: str
    steps: tuple[Step, ...]
    backup: bool = False
    check_rows: bool = True
    context: dict[str, Any] = field(default_factory=dict)  # "again": the command that finishes it


class StepRefused(NeedsRepair):
    """A step refused and the run was taken back: the project is as it was before the run."""


def step_name(number: int, step: Step) -> str:
    """The step's journal name (and crash point): its fixed `label`, else ``<n>.<kind>``."""
    return getattr(step, "label", "") or f"{number}.{step.kind}"


def new_folder(project: Project, command: str) -> Path:
    """``.alembic_repair/backups/<UTC stamp>-<command>/``: the run's backup folder, where its
    database backup and every project file it moves or replaces are kept."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    root = project.state_dir / "backups"
    path, counter = root / f"{stamp}-{command}", 1
    while path.exists():
        counter += 1
        path = root / f"{stamp}-{command}-{counter}"
    return path


def begin(project: Project, run: Run, folder: Path | None = None) -> Journal:
    """Write the journal of a new run (before its first change)."""
    names: list[tuple[str, bool]] = [("backup", False)] if run.backup else []
    names += [(step_name(n, s), s.destructive or s.needs_backup)
              for n, s in enumerate(run.steps, start=1)]
    if run.check_rows:
        names.append(("verify", False))
    return Journal.begin(project.state_dir, run.command, names, {
        **run.context, "folder": str(folder or new_folder(project, run.command)),
        "backup": run.backup, "check_rows": run.check_rows,
        "steps": [s.as_dict() for s in run.steps]})


def steps_of(journal: Journal) -> tuple[Step, ...]:
    try:
        return tuple(from_dict(d) for d in journal.context["steps"])
    except (KeyError, TypeError, ValueError):
        raise unreadable(journal) from None


def unreadable(journal: Journal) -> ConfigError:
    """A journal whose record this version cannot read back (another version's, or edited)."""
    return ConfigError(
        f"{journal.path}: the steps of the interrupted `{journal.command}` run cannot be read "
        "back (written by another version of alembic-repair, or edited); look at it, then move "
        "it away to start over (the backups under .alembic_repair/backups/ are kept)")


def folder_of(journal: Journal) -> Path:
    return Path(journal.context["folder"])


def interrupted(project: Project, command: str,
                older: Callable[[Journal], Journal] | None = None) -> Journal | None:
    """The journal an interrupted run left; another command's refuses (it is finished first).
    `older` reads back a journal of this command written before runs stored their steps."""
    journal = Journal.load(project.state_dir)
    if (journal is not None and journal.command == command and older is not None
            and not isinstance(journal.context.get("steps"), list)):
        journal = older(journal)
    if journal is not None and journal.command != command:
        again = journal.context.get("again") or f"alembic-repair {journal.command} --yes"
        raise NeedsRepair(
            f"{project.rel(journal.path)}: an interrupted `{journal.command}` run is recorded; "
            f"run `{again}` to finish it first")
    if journal is not None and not isinstance(journal.context.get("steps"), list):
        # Written before runs stored their steps (an older reset): its steps cannot be rebuilt.
        backup = journal.context.get("folder") or journal.context.get("backup")
        raise NeedsRepair(
            f"{project.rel(journal.path)}: an interrupted `{journal.command}` run was recorded by "
            "an earlier version of alembic-repair and cannot be finished by this one; finish it "
            "with that version, or check the database against the backup"
            + (f" {backup} (`alembic-repair restore` puts rows back)" if backup else "")
            + " and then delete the journal")
    return journal


def started(journal: Journal) -> bool:
    """True once any step after the backup started: the run is finished, not started over."""
    return any(s.state != "pending" for s in journal.steps if s.name != "backup")


def recover(project: Project, command: str, say: Any, again: str,
            older: Callable[[Journal], Journal] | None = None) -> Journal | None:
    """The interrupted run to finish, or None. A run that stopped before changing anything
    is forgotten (with its incomplete backup) and `again` is said: the caller plans afresh."""
    journal = interrupted(project, command, older)
    if journal is None or started(journal):
        return journal
    say("restart", f"an interrupted {command} stopped before changing anything; {again}")
    folder = folder_of(journal)
    if folder.is_dir() and not any(s.name == "backup" and s.state == "done"
                                   for s in journal.steps):
        shutil.rmtree(folder)  # only an incomplete backup can be in it
    journal.finish()
    return None


def execute(project: Project, conn: Connection | None, journal: Journal, ctx: Context
            ) -> Journal:
    """Run the journal's steps not yet done (a resumed journal skips those): the backup
    first when the run asked for one, then each step, then the row check."""
    steps = steps_of(journal)
    folder = folder_of(journal)
    if journal.context.get("backup") and not journal.is_done("backup"):
        assert conn is not None
        journal = journal.mark("backup", "started")
        if folder.exists():
            shutil.rmtree(folder)  # a crash during the backup: ours, incomplete
        manifest = backups.backup_locked(project, conn, folder)
        ctx.say("backup", f"backed up {counted(len(manifest.tables), 'table')} "
                f"({counted(sum(t.rows for t in manifest.tables), 'row')}) into "
                f"{project.rel(folder)}, "
                "verified")
        journal = journal.mark("backup", "done")
    check = bool(journal.context.get("check_rows", True))
    # Rows are summed only when a step may change them: a round of file edits and stamps
    # (alembic_version is not a user table) would pay two full scans of every table for nothing.
    sums = check and any(s.needs_backup or s.destructive for s in steps)
    if sums and conn is not None and "rows" not in journal.context:
        tables, fast = tables_to_sum(conn, steps, ctx)  # (taken once: a resumed run reuses it)
        journal = journal.note(rows=row_sums(conn, tables, fast))
    if not journal.context.get("lazy_folder"):  # (bootstrap: made only when a file moves)
        private.private_dir(folder)  # .alembic_repair/backups/<stamp>/: 0700 each
    ctx.journal = journal
    for number, step in enumerate(steps, start=1):
        name = step_name(number, step)
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
        journal = ctx.journal = (ctx.journal or journal).mark(name, "done")  # with its notes
    if sums and conn is not None:
        # a user's data migration run by an upgrade adds rows and changes values on purpose
        grows = any(ctx.recall(s).get("writes_rows") for s in steps)
        problems = _check_rows(conn, journal.context["rows"], values_may_change=grows)
        if problems:
            raise MigrationFailed(
                f"{journal.command}: " + "; ".join(problems) + f"; the backup is "
                f"{project.rel(folder)} (alembic-repair restore puts the rows back)")
        ctx.say("verify", "no table holds fewer rows than before (the upgrade ran data "
                "migrations: the rows and values they wrote are theirs)" if grows else
                "every table holds the rows it held before (counts and checksums)")
    if check:  # (setup files only: no database to check, the point is passed all the same)
        journal = ctx.journal = journal.mark("verify", "done")
    return journal


def _take_back(journal: Journal, steps: tuple[Step, ...], ctx: Context) -> bool:
    """A step refused (one clear error, raised before it changed anything): when every step of
    the run so far can be undone, undo them and close the journal, so the project is as it was
    and the next run plans afresh (True); otherwise the journal stays to be finished or rolled
    back (False)."""
    if not all(step.reversible and step.undo_refusal(ctx) is None for step in steps):
        return False
    for step in reversed(steps):
        step.undo(ctx)
    journal.finish()
    return True


def rollback(project: Project, conn: Connection, journal: Journal, ctx: Context) -> None:
    """Undo the steps an interrupted run started, newest first, after asking every one of
    them whether it can be undone (a rollback never stops half-way)."""
    steps = steps_of(journal)
    ran = [(n, s) for n, s in enumerate(steps, start=1)
           if journal.state(step_name(n, s)) != "pending"]
    ctx.journal = journal
    stuck = [f"{n}. {s.describe()}" for n, s in ran if not s.reversible]
    stuck += [f"{n}. {s.describe()} ({why})" for n, s in ran
              if s.reversible and (why := s.undo_refusal(ctx)) is not None]
    if stuck:
        raise RefusedUnsafe(
            f"{journal.command} --rollback: these steps cannot be undone: " + "; ".join(stuck)
            + f"; finish the run with `alembic-repair {journal.command} --yes`, or put the "
            f"rows back with `alembic-repair restore {journal.context['folder']}`")
    for number, step in reversed(ran):
        step.undo(ctx)
        conn.commit()
        ctx.say("undo", f"undid step {number}: {step.describe()}")
    journal.finish()


def _check_rows(conn: Connection, before: dict[str, dict[str, object]], *,
                values_may_change: bool = False) -> list[str]:
    """`row_check.check_rows` (named here: the benchmarks and tests time and call it)."""
    return check_rows(conn, before, values_may_change=values_may_change)
