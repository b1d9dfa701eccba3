"""plan: a Diagnosis -> the ordered steps that repair it, decided before anything runs.

Repairs come in layers, and a plan covers one layer at a time, because each layer can only be
judged once the one below it is sound: the setup files (a broken alembic.ini hides the
revisions), then the revision files (a graph with two heads has no single "head" to stamp),
then the pending revisions that would lose data (rewritten into their safe form, or held:
no upgrade runs through them), then the database against the history (stamp, adopt,
complete, upgrade), then the models against the database (autogenerate), then, only when
asked, the values. `fix` plans, applies, diagnoses again and plans the next layer, until
nothing repairable is left.

What a dry run prints is the whole projection (`project_plans`): the first layer's plan, exact,
then every later layer planned over the findings at hand, marked as depending on the results
of the earlier ones (they are planned again after each round, and `fix --yes` stops before a
round whose kind of step the projection did not show).

Which layer a code belongs to and what resolves it is declared once per code in
`repair/repairs/` (`registry.repairs`, `refuses`, `reports`); this module only walks that
registry. What no rule can decide safely (a revision file that does not parse, a cycle, a
column only the database has) is not guessed: it is listed in `Plan.unrepairable` with what
to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..diagnose.diagnosis import Diagnosis
from ..diagnose.findings import Finding
from . import repairs  # noqa: F401  (fills the registry)
from .registry import BY_CODE, GRAPH, LAYERS, PENDING, VERSIONS, Draft, Refusal, Repair, in_layer
from .steps import MoveToBackup, RemoveHiddenDrops, Step, Upgrade

__all__ = ["Plan", "make_plan", "project_plans", "shown_kinds"]


@dataclass(frozen=True)
class Plan:
    """Steps in the order they run, and the findings this plan leaves for a human."""

    layer: str
    steps: tuple[Step, ...]
    unrepairable: tuple[tuple[Finding, str], ...] = ()
    addressed: tuple[str, ...] = ()  # the finding codes the steps repair
    projected: bool = False  # a later layer: depends on the results of the earlier ones

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(s.kind for s in self.steps)

    @property
    def needs_backup(self) -> bool:
        return any(s.needs_backup for s in self.steps)

    def lines(self) -> list[str]:
        out = []
        for number, step in enumerate(self.steps, start=1):
            flag = " [destructive]" if step.destructive else ""
            out.append(f"{number}. {step.describe()}{flag}")
        return out

    def as_dict(self) -> dict[str, object]:
        return {"layer": self.layer, "steps": [s.as_dict() for s in self.steps],
                "addressed": list(self.addressed),
                "unrepairable": [{"code": f.code, "location": f.location, "reason": why}
                                 for f, why in self.unrepairable]}


def _draft_layer(draft: Draft, layer: str, findings: list[Finding]) -> None:
    """Per-finding entries in doctor's order, then the per-layer ones in registration order
    (a refusal that leaves the rest unjudgeable stops the layer)."""
    for finding in findings:
        entry = BY_CODE[finding.code]
        if isinstance(entry, (Repair, Refusal)) and entry.each:
            entry.apply(draft, [finding])
    for entry in in_layer(layer):
        if draft.stopped:
            break
        if entry.each:
            continue
        mine = [f for f in findings if f.code in entry.codes]
        if mine or entry.always:
            entry.apply(draft, mine)


def _draft(diagnosis: Diagnosis, layer: str, findings: list[Finding], wanted: frozenset[str],
           models: str | None) -> Draft:
    draft = Draft(diagnosis.state, models, wanted)
    _draft_layer(draft, layer, findings)
    return draft


def _wanted(diagnosis: Diagnosis, only: Iterable[str]) -> tuple[frozenset[str], list[Finding]]:
    wanted = frozenset(c.upper() for c in only)
    return wanted, [f for f in diagnosis.findings
                    if not wanted or f.code in wanted or f.code[:3] + "XX" in wanted]


def make_plan(diagnosis: Diagnosis, *, only: Iterable[str] = (), models: str | None = None
              ) -> Plan:
    """The steps for the lowest layer that has findings (see the module docstring)."""
    wanted, findings = _wanted(diagnosis, only)
    refused: list[tuple[Finding, str]] = []
    for layer in LAYERS:
        mine = [f for f in findings if BY_CODE[f.code].layer == layer]
        if not mine:
            continue
        draft = _draft(diagnosis, layer, mine, wanted, models)
        refused += draft.unrepairable
        if draft.steps:
            return Plan(layer, tuple(draft.steps), tuple(refused), tuple(draft.addressed))
        if draft.unrepairable:
            # A layer that cannot be repaired blocks the ones above it.
            return Plan(layer, (), tuple(refused))
    return Plan("none", (), tuple(refused))


def project_plans(diagnosis: Diagnosis, *, only: Iterable[str] = (),
                  models: str | None = None) -> tuple[Plan, ...]:
    """`make_plan`'s plan, then each later layer's plan over the same findings (`projected`):
    what the later rounds are expected to do. They are judged on a state the earlier rounds
    change, so each is planned again when its turn comes; a layer that would only refuse, or
    cannot be judged yet, ends the projection (it would block the ones above it)."""
    first = make_plan(diagnosis, only=only, models=models)
    if not first.steps:
        return (first,)
    wanted, findings = _wanted(diagnosis, only)
    plans = [first]
    for layer in LAYERS[LAYERS.index(first.layer) + 1:]:
        mine = [f for f in findings if BY_CODE[f.code].layer == layer]
        if not mine:
            continue
        try:
            draft = _draft(diagnosis, layer, mine, wanted, models)
        except Exception:  # judged on a state the earlier rounds change: not projected
            break
        if draft.steps:
            plans.append(Plan(layer, tuple(draft.steps), tuple(draft.unrepairable),
                              tuple(draft.addressed), projected=True))
        elif draft.unrepairable:
            break
    ordered = sorted(_upgrade_after(diagnosis, plans), key=lambda p: LAYERS.index(p.layer))
    return tuple(_emptied_after(diagnosis, ordered))


def _emptied_after(diagnosis: Diagnosis, plans: list[Plan]) -> list[Plan]:
    """`plans`, showing after the pending round the move of a revision it leaves empty (all
    it did was drop tables the tool owns or keeps): the revision files round that follows
    moves an empty revision no database applied (AR207), which no finding shows yet."""
    pending = diagnosis.state.pending
    moves = tuple(
        MoveToBackup(step.path, why="an empty revision no database here applied")
        for plan in plans if plan.layer == PENDING for step in plan.steps
        if isinstance(step, RemoveHiddenDrops) and pending is not None
        and any(r.path == step.path and r.ops and all(
            getattr(o.operation, "table_name", None) in step.tables for o in r.ops)
            for r in pending.revisions))
    if not moves:
        return plans
    at = next(i for i, p in enumerate(plans) if p.layer == PENDING) + 1
    return [*plans[:at], Plan(GRAPH, moves, (), ("AR207",), projected=True), *plans[at:]]


#: Kinds of step that write a new head below the database layer: the database has not
#: applied it, so the round of the database layer will upgrade to it.
NEW_HEAD = frozenset({"merge"})


def _upgrade_after(diagnosis: Diagnosis, plans: list[Plan]) -> list[Plan]:
    """`plans`, showing the upgrade that follows a new head written below the database
    layer (`NEW_HEAD`), which the findings at hand cannot show yet."""
    writes = any(p.layer in (GRAPH, PENDING) and p.kinds & NEW_HEAD for p in plans)
    if not writes or diagnosis.state.versions is None or any("upgrade" in p.kinds
                                                              for p in plans):
        return plans
    later = next((p for p in plans if p.layer == VERSIONS), None)
    if later is None:
        return [*plans, Plan(VERSIONS, (Upgrade(),), (), ("AR304",), projected=True)]
    grown = replace(later, steps=(*later.steps, Upgrade()))
    return [grown if p is later else p for p in plans]


def shown_kinds(plans: Iterable[Plan]) -> frozenset[str]:
    """Every kind of step the plans show (what `fix --yes` may run without showing more)."""
    return frozenset(kind for plan in plans for kind in plan.kinds)
