"""fix: repair what doctor finds, layer by layer, through the one runner (runner.py).

`fix` is layered (plan.py): plan the lowest broken layer, run it, diagnose again, plan the
next, until nothing repairable is left (at most `MAX_ROUNDS`). Each round is one `Run` of the
runner on the one connection that holds the migration lock: a verified backup when a step
changes the schema, the steps (journalled in ``.alembic_repair/journal.json``), and the row
check. A killed round is finished by the next `fix --yes`, or undone with ``rollback=True``.

`plan_fix` returns the first round's plan (a `FixPlan`: the `Plan`, and the diagnosis it was
made from); `fix(plan=...)` runs exactly that plan as its first round, after checking, under
the lock, that the project would still be planned the same (else `RefusedUnsafe`, nothing
changed). A dry run therefore diagnoses once: what it prints is what it was refused to run.

A `FixPlan` also carries the later layers, projected over the same findings
(`plan.project_plans`, `FixPlan.later`): they depend on the earlier rounds' results and
are planned again when their turn comes, but `fix --yes` never runs a kind of step the
projection did not show: it stops before that round and says to run `fix` again to see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from sqlalchemy.engine import Connection

from ..data import guards
from ..diagnose.diagnosis import Diagnosis, diagnose
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.project import Project, require_ini_url
from ..engine.state.read import read_state
from ..errors import NeedsRepair, RefusedUnsafe
from ..wording import counted
from . import runner
from .journal import Journal
from .plan import Plan, make_plan, project_plans, shown_kinds
from .runner import StepRefused
from .steps import Context

__all__ = ["FixPlan", "FixResult", "MAX_ROUNDS", "StepRefused", "as_fix_plan", "fix",
           "plan_fix"]

COMMAND = "fix"
MAX_ROUNDS = 6
SETUP = "setup files"
Say = Callable[[str, str], None]


@dataclass(frozen=True)
class FixPlan(Plan):
    """The first round's `Plan`, with the diagnosis it was made from and the journal of an
    interrupted fix (which `fix --yes` finishes before it plans anything)."""

    diagnosis: Diagnosis | None = field(default=None, repr=False, compare=False)
    interrupted: Journal | None = field(default=None, repr=False, compare=False)
    #: the later layers, projected over the same findings (planned again in their turn)
    later: tuple[Plan, ...] = field(default=(), repr=False, compare=False)

    @property
    def shown(self) -> frozenset[str]:
        """The kinds of step this plan and its projection show."""
        return shown_kinds((self, *self.later))


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


def _diagnose(project: Project, models: str | None, *, replay: bool = True) -> Diagnosis:
    return diagnose(read_state(project, models=models, replay=replay))


def _planned(plan: Plan, diagnosis: Diagnosis | None, journal: Journal | None,
             later: tuple[Plan, ...] = ()) -> FixPlan:
    own = {f.name: getattr(plan, f.name) for f in fields(Plan)}
    return FixPlan(**own, diagnosis=diagnosis, interrupted=journal, later=later)


def _projected(diagnosis: Diagnosis, only: tuple[str, ...], models: str | None) -> FixPlan:
    """The first round's plan, with the later layers projected over the same findings."""
    first, *later = project_plans(diagnosis, only=only, models=models)
    return _planned(first, diagnosis, None, tuple(later))


def plan_fix(project: Project, *, only: tuple[str, ...] = (), models: str | None = None
             ) -> FixPlan:
    """The first round's plan, diagnosed once, as the first round of `fix` would make it
    (setup files first, without a database, while alembic.ini is broken). Changes nothing."""
    journal = Journal.load(project.state_dir)
    if journal is not None and journal.command == COMMAND:
        return _planned(Plan("", ()), None, journal)  # `fix --yes` finishes that run first
    if project.problems and journal is None:
        setup = _projected(_diagnose(project, models, replay=False), only, models)
        if setup.layer == SETUP and setup.steps:
            return setup
    planned = _projected(_diagnose(project, models), only, models)
    return replace(planned, interrupted=journal)


def as_fix_plan(plan: Plan | None) -> FixPlan | None:
    """A plan from `plan_fix` as it is; a `Plan` built otherwise, as if planned with no
    interrupted run and no diagnosis in hand (a dry run then diagnoses to say what is left)."""
    if plan is None or isinstance(plan, FixPlan):
        return plan
    return _planned(plan, None, None)


def _same_plan(planned: Plan, diagnosis: Diagnosis, only: tuple[str, ...],
               models: str | None) -> Plan:
    """`planned`, once the project, diagnosed again under the lock, still plans the same."""
    if make_plan(diagnosis, only=only, models=models).as_dict() != planned.as_dict():
        raise RefusedUnsafe("fix: refused, the project changed since the plan was made; "
                            "nothing changed; run `alembic-repair fix` again to see the new plan")
    return planned


def _rediscover(project: Project, models: str | None) -> Project:
    """The project again, after its setup files changed (the URL may come from alembic.ini);
    raises, as doctor reports (AR107), while plain alembic still cannot read the ini's URL."""
    explicit = project.url if project.url_source == "--url" else None
    return require_ini_url(Project.discover(project.root, config=project.ini_path,
                                            url=explicit, models=models))


def _round(project: Project, conn: Connection | None, plan: Plan, models: str | None,
           say: Say) -> Path:
    """One layer's plan, journalled and run (setup files: no connection, no backup)."""
    journal = runner.begin(project, runner.Run(
        COMMAND, plan.steps, backup=plan.needs_backup, context={"layer": plan.layer}))
    ctx = Context(project, conn, runner.folder_of(journal), models, say)
    say("plan", f"{plan.layer}: {counted(len(plan.steps), 'step')}")
    runner.execute(project, ctx.connection, journal, ctx).finish()
    return ctx.folder


def _setup_round(project: Project, *, yes: bool, only: tuple[str, ...], models: str | None,
                 say: Say, planned: FixPlan | None) -> FixPlan | None:
    """Repair the setup files without touching a database: while alembic.ini is broken, the
    URL in hand may be a stand-in (the SQLite default), and no database should be opened."""
    if planned is not None and planned.layer != SETUP:
        return None  # plan_fix looked for a setup-files plan the same way, and found none
    if planned is not None and not yes:
        plan = planned  # refused below: nothing is diagnosed again
    else:
        diagnosis = _diagnose(project, models, replay=False)
        plan = _projected(diagnosis, only, models)
        if planned is not None:
            _same_plan(planned, diagnosis, only, models)
            plan = planned
    if plan.layer != SETUP or not plan.steps:
        return None
    if planned is None:
        _announce(plan, say)
    guards.require(yes, True, project,
                   f"fix: would run {counted(len(plan.steps), 'step')} (setup files)")
    _round(project, None, plan, models, say)
    return plan


def fix(project: Project, *, yes: bool, allow_remote: bool = False, only: tuple[str, ...] = (),
        models: str | None = None, rollback: bool = False, plan: FixPlan | None = None,
        say: Say = lambda kind, message: None) -> FixResult:
    """Plan, back up, repair, verify, diagnose again; layer after layer (module docstring).
    With `plan` (from `plan_fix`), the first round runs exactly that plan."""
    plans: list[Plan] = []
    folders: list[Path] = []
    if plan is not None and plan.interrupted is not None and not runner.started(
            plan.interrupted):
        plan = None  # planned over a run that is started over: plan again, as without one
    shown = plan.shown if plan is not None and plan.interrupted is None else None
    if project.problems and Journal.load(project.state_dir) is None:
        first = _setup_round(project, yes=yes, only=only, models=models, say=say, planned=plan)
        if first is not None:
            plans.append(first)
            shown = first.shown
            plan = None
        project = _rediscover(project, models)  # raises (one clear line) if still broken
    guards.require_local(allow_remote, project, "fix")
    engine = connect(project)
    resumed = rolled_back = False
    refused: list[tuple[str, str | None, str]] = []
    try:
        with migration_lock(engine, project.state_dir) as conn:
            journal = runner.recover(project, COMMAND, say, "planning again")
            if journal is not None:
                ctx = Context(project, conn, runner.folder_of(journal), models, say)
                steps = runner.steps_of(journal)
                action = "roll back" if rollback else "finish"
                guards.require(yes, allow_remote, project, f"fix: would {action} the "
                               f"interrupted run ({counted(len(steps), 'step')}, last done: "
                               f"{journal.last_done})")
                if rollback:
                    runner.rollback(project, conn, journal, ctx)
                    return FixResult((), (ctx.folder,), _diagnose(project, models),
                                     rolled_back=True)
                say("resume", f"an interrupted fix stopped after {journal.last_done}; "
                    "finishing it")
                runner.execute(project, conn, journal, ctx).finish()
                folders.append(ctx.folder)
                resumed = True
                plan = None  # planned before the interrupted run was finished
                if journal.context.get("layer") == SETUP:
                    project = _rediscover(project, models)
            elif rollback:
                raise NeedsRepair("fix --rollback: no interrupted fix run to roll back")
            elif plan is not None and plan.interrupted is not None:
                plan = None  # the interrupted run it was planned over is gone: plan again
            final: Diagnosis | None = None
            current: Plan
            for _ in range(MAX_ROUNDS):
                if plan is not None and not yes:
                    current, final = plan, plan.diagnosis  # refused below, or nothing to do
                else:
                    final = _diagnose(project, models)
                    if plan is not None:
                        current = _same_plan(plan, final, only, models)
                    elif shown is None:  # the first round: what it shows is the projection
                        current = _projected(final, only, models)
                        shown = current.shown
                        _announce(current, say)
                    else:
                        current = make_plan(final, only=only, models=models)
                plan = None
                if not current.steps or (plans and current.as_dict() == plans[-1].as_dict()):
                    break  # nothing to do, or the last round changed nothing
                if shown is not None and not current.kinds <= shown:
                    refused.append(_unshown(current, shown, say))
                    break
                final = None
                guards.require(yes, allow_remote, project,
                               f"fix: would run {counted(len(current.steps), 'step')} "
                               f"({current.layer})")
                try:
                    folders.append(_round(project, conn, current, models, say))
                except StepRefused as err:
                    say("refused", f"{current.layer}: {err}; the round was taken back")
                    refused.append((", ".join(current.addressed), None, str(err)))
                    break
                plans.append(current)
                if current.layer == SETUP:
                    project = _rediscover(project, models)
            if final is None:
                final = _diagnose(project, models)
            said = {code for codes, _, _ in refused for code in codes.split(", ")}
            left = tuple(e for e in _left(final, only, models) if e[0] not in said)
            return FixResult(tuple(plans), tuple(folders), final, resumed, rolled_back,
                             tuple(refused) + left)
    finally:
        engine.dispose()


def _announce(plan: FixPlan, say: Say) -> None:
    """The later layers, as projected when `fix --yes` made the first round's plan itself."""
    for later in plan.later:
        say("projected", f"then {later.layer} (depends on the rounds before): "
            + "; ".join(s.describe() for s in later.steps))


def _unshown(plan: Plan, shown: frozenset[str], say: Say) -> tuple[str, str | None, str]:
    """Why fix stops before `plan`: it holds a kind of step the projection did not show."""
    what = "; ".join(dict.fromkeys(s.describe() for s in plan.steps if s.kind not in shown))
    why = (f"fix stopped before the {plan.layer} round: it would {what}, which the plan "
           "shown did not include; run `alembic-repair fix` to see the new plan, then "
           "`alembic-repair fix --yes`")
    say("stopped", why)
    return ", ".join(plan.addressed), None, why


def _left(final: Diagnosis, only: tuple[str, ...], models: str | None
          ) -> tuple[tuple[str, str | None, str], ...]:
    """What remains, each with what to do: the planner's reason, else the finding's own fix."""
    plan = make_plan(final, only=only, models=models)
    left = [(f.code, f.location, why) for f, why in plan.unrepairable]
    named = {(code, location) for code, location, _ in left}
    left += [(f.code, f.location, f.fix) for f in final.findings
             if f.severity != "info" and (f.code, f.location) not in named]
    return tuple(left)
