"""Layer 4, the database against the history (AR3xx, AR401/402/404/405): stamp, adopt,
complete, upgrade. Rules: `diagnose/rules/versions.py` (AR3xx), `diagnose/rules/schema.py`
(AR4xx); the baseline step is `history/baseline.py`'s.

The repairs here run once per layer, in this module's order, and share `Draft.heads` (what
alembic_version will record after the steps before them): the upgrade comes last.
"""

from __future__ import annotations

from ...diagnose.findings import Finding
from ...diagnose.rules.schema import HalfApplied
from ...diagnose.subjects import SchemaEquals
from ..history import plan_baseline
from ..registry import VERSIONS, Draft, refuses, repairs, reports
from ..steps import AdoptSchema, CompleteRevision, Stamp, Upgrade

#: the version table names the wrong revision (or none): stamp what the schema equals
WRONG = ("AR301", "AR306", "AR302", "AR401")
#: the version table is not in Alembic's own shape
SHAPE = ("AR303", "AR305", "AR307")

reports("AR408", why="the replay needs rights only the database administrator can grant")


@repairs(*WRONG, *SHAPE, layer=VERSIONS, each=False)
def version_rows(draft: Draft, findings: list[Finding]) -> None:
    """Stamp the revision the schema equals (or adopt the schema when none does); else put
    alembic_version into Alembic's shape, keeping its heads."""
    state = draft.state
    versions = state.versions
    before = versions.rows if versions is not None else ()
    local = {s.revision for s in state.scripts if s.revision}
    wrong = [f for f in findings if f.code in WRONG]
    if wrong:
        finding, code = wrong[0], wrong[0].code
        equal = finding.facts.revisions if isinstance(finding.facts, SchemaEquals) else ()
        if equal:
            target = equal[-1]
            draft.add(code, Stamp((target,), before, why=f"the tables equal revision {target}"))
            draft.heads = (target,)
        elif not local:
            draft.add(code, AdoptSchema(None, before, why="no revision file describes it"))
            draft.heads = ()  # a new revision, not one of today's heads: upgrade afterwards
        elif code == "AR302" and len(state.script_heads) == 1:
            head = state.script_heads[0]
            draft.add(code, AdoptSchema(head, before, why=f"{', '.join(before)} is lost; the "
                                        f"bridge takes {head}'s schema to this database's"))
            draft.heads = ()  # a new revision, not one of today's heads: upgrade afterwards
        else:
            draft.refuse(finding, "the tables equal no revision of the history: compare them "
                         "with `alembic-repair doctor`, then stamp the closest revision and "
                         "autogenerate the difference")
            draft.stop()
        return
    recorded = draft.recorded
    tidy = tuple(r for r in dict.fromkeys(recorded) if r in local) or recorded
    for code in sorted({f.code for f in findings}):
        draft.add(code, Stamp(tidy, before, why="alembic_version in Alembic's own shape "
                              "(VARCHAR(32) primary key, one row per head)"))
    draft.heads = tidy


@repairs("AR402", layer=VERSIONS, each=False)
def complete_revision(draft: Draft, findings: list[Finding]) -> None:
    half = findings[0].facts
    if not isinstance(half, HalfApplied):
        return
    if half.failed:
        draft.refuse(findings[0], f"revision {half.revision} fails on an empty database too, "
                     "so running its missing operations would fail again: correct the "
                     "revision, then run fix again (the operations that did take effect are "
                     "kept)")
        draft.stop()
        return
    versions = draft.state.versions
    draft.add("AR402", CompleteRevision(half.revision, versions.rows if versions else ()))
    draft.heads = (half.revision,)


@repairs("AR404", layer=VERSIONS, each=False)
def baseline(draft: Draft, findings: list[Finding]) -> None:
    step = plan_baseline(draft.state, findings[0])
    if isinstance(step, str):
        draft.refuse(findings[0], step)
    else:
        draft.add("AR404", step)


refuses("AR405", layer=VERSIONS, each=False,
        why="the tables were changed by hand: put the change into the models and autogenerate "
            "it, or undo it")


@repairs("AR304", layer=VERSIONS, each=False, always=True)
def upgrade(draft: Draft, findings: list[Finding]) -> None:
    """Last: upgrade when the steps before (or the database itself) leave it behind head."""
    if (draft.steps or findings) and set(draft.recorded) != set(draft.state.script_heads):
        draft.add("AR304", Upgrade())
