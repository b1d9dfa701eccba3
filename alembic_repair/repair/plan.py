"""plan: a Diagnosis -> the ordered steps that repair it, decided before anything runs.

Repairs come in layers, and a plan covers one layer at a time, because each layer can only be
judged once the one below it is sound: the setup files (a broken alembic.ini hides the
revisions), then the revision files (a graph with two heads has no single "head" to stamp),
then the pending revisions that would lose data (rewritten into their safe form, or held:
no upgrade runs through them), then the database against the history (stamp, adopt,
complete, upgrade), then the models against the database (autogenerate), then, only when
asked, the values. `fix` plans, applies, diagnoses again and plans the next layer, until
nothing repairable is left.

Which layer a code belongs to and what resolves it is declared once per code in
`repair/repairs/` (`registry.repairs`, `refuses`, `reports`); this module only walks that
registry. What no rule can decide safely (a revision file that does not parse, a cycle, a
column only the database has) is not guessed: it is listed in `Plan.unrepairable` with what
to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..diagnose.diagnosis import Diagnosis
from ..diagnose.findings import Finding
from . import repairs  # noqa: F401  (fills the registry)
from .registry import BY_CODE, LAYERS, Draft, Refusal, Repair, in_layer
from .steps import Step

__all__ = ["Plan", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """Steps in the order they run, and the findings this plan leaves for a human."""

    layer: str
    steps: tuple[Step, ...]
    unrepairable: tuple[tuple[Finding, str], ...] = ()
    addressed: tuple[str, ...] = ()  # the finding codes the steps repair

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


def make_plan(diagnosis: Diagnosis, *, only: Iterable[str] = (), models: str | None = None
              ) -> Plan:
    """The steps for the lowest layer that has findings (see the module docstring)."""
    state = diagnosis.state
    wanted = frozenset(c.upper() for c in only)
    findings = [f for f in diagnosis.findings
                if not wanted or f.code in wanted or f.code[:3] + "XX" in wanted]
    refused: list[tuple[Finding, str]] = []
    for layer in LAYERS:
        mine = [f for f in findings if BY_CODE[f.code].layer == layer]
        if not mine:
            continue
        draft = Draft(state, models, wanted)
        _draft_layer(draft, layer, mine)
        refused += draft.unrepairable
        if draft.steps:
            return Plan(layer, tuple(draft.steps), tuple(refused), tuple(draft.addressed))
        if draft.unrepairable:
            # A layer that cannot be repaired blocks the ones above it.
            return Plan(layer, (), tuple(refused))
    return Plan("none", (), tuple(refused))
