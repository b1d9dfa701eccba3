"""Layer 4, the database against the history (AR3xx, AR401/402/404/405): stamp, adopt,
complete, upgrade. Rules: `diagnose/rules/versions.py` (AR3xx), `diagnose/rules/schema.py`
(AR4xx); the baseline and bridge steps are `history/baseline.py`'s and `history/bridge.py`'s.

The repairs here run once per layer, in this module's order, and share `Draft.heads` (what
alembic_version will record after the steps before them): the upgrade comes last.
"""

from __future__ import annotations

from ...diagnose.findings import Finding
from ...diagnose.rules.schema import HalfApplied
from ...diagnose.subjects import SchemaEquals
from ...engine.state.locate import BASE, Location
from ..history import plan_baseline
from ..history.absorb import AbsorbDrift, absorb_refusal, absorbed
from ..registry import VERSIONS, Draft, repairs, reports
from ..steps import AdoptSchema, CompleteRevision, Stamp, Upgrade, fills_for
from .pending import batch_cures

#: the version table names the wrong revision (or none): stamp what the schema equals
WRONG = ("AR301", "AR306", "AR302", "AR401")
#: the version table is not in Alembic's own shape
SHAPE = ("AR303", "AR305", "AR307")

reports("AR408", why="the replay needs rights only the database administrator can grant")
reports("AR409", why="how env.py connects is the project's code: make it use the URL it is "
                    "given, or declare the application's set-up in pyproject.toml")


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
        if isinstance(finding.facts, Location):
            _stamp_located(draft, finding, finding.facts, before)
        elif equal:
            target = equal[-1]
            draft.add(code, Stamp((target,), before, why=f"the tables equal revision {target}"))
            draft.heads = (target,)
        elif not local:
            draft.add(code, AdoptSchema(None, before, why="no revision file describes it"))
            draft.heads = ()  # a new revision, not one of today's heads: upgrade afterwards
        elif code == "AR302" and len(state.script_heads) == 1 and \
                (no_bridge := _no_bare_replay(draft)) is not None:
            draft.refuse(finding, no_bridge)
            draft.stop()
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
    known = [r for r in dict.fromkeys(recorded) if r in local]
    # only the heads among them: a row beside its own descendant makes Alembic's upgrade fail
    # ("overlaps"), and the descendant's row already says the ancestor ran
    older = {a for r in known for a in state.graph.ancestors(r)}
    tidy = tuple(r for r in known if r not in older) or recorded
    for code in sorted({f.code for f in findings}):
        draft.add(code, Stamp(tidy, before, why="alembic_version in Alembic's own shape "
                              "(VARCHAR(32) primary key, one row per head)"))
    draft.heads = tidy


def _no_bare_replay(draft: Draft) -> str | None:
    """Why a bridge cannot be written: it replays the history bare from empty (no env.py, no
    set-up), which fails when the replay stops, or builds the wrong tables when the history
    follows the application's declared set-up. None: it can."""
    replay = draft.state.replay
    stopped, setup = getattr(replay, "failed_at", None), getattr(replay, "setup", None)
    if stopped is not None:
        return (f"the tables equal no revision, and the replay from empty stops at {stopped}, "
                "so no bridge revision can be written: stamp the revision the tables are at "
                "(`alembic-repair doctor` compares them), then autogenerate the difference")
    if setup is not None:
        return (f"the tables equal no revision, and the history follows the declared set-up "
                f"{setup}, so a bridge revision (a replay from empty) would not describe them: "
                "stamp the revision the tables are at, then autogenerate the difference")
    return None


def _stamp_located(draft: Draft, finding: Finding, place: Location,
                   before: tuple[str, ...]) -> None:
    """Stamp where the revisions' effects place the schema: only an exact location, never a
    point guessed inside a range (which of its revisions ran, only the data can tell)."""
    if place.exact is not None:
        draft.add(finding.code, Stamp((place.exact,), before, why=(
            f"the revisions' effects place the tables at revision {place.exact} (their "
            f"operations read offline; the replay from empty stops at {place.stopped_at})")))
        draft.heads = (place.exact,)
        return
    if place.revisions == (BASE,):
        why = ("the revisions' effects place the tables before the first revision: if none "
               "ran, leave alembic_version empty and run `alembic upgrade head`")
    elif place.revisions:
        kind = ("data-only, empty or unreadable revisions change nothing they can tell apart"
                if place.run else "revisions that leave the same schema")
        why = (f"the revisions' effects fit each of {place.span} ({kind}): check which of "
               "them ran, then `alembic stamp` it")
    else:
        why = (f"no revision's effects fit the tables ({place.problem}): compare them with the "
               "revision files, then stamp the closest revision and autogenerate the difference")
    draft.refuse(finding, why)
    draft.stop()


@repairs("AR402", layer=VERSIONS, each=False)
def complete_revision(draft: Draft, findings: list[Finding]) -> None:
    half = findings[0].facts
    if not isinstance(half, HalfApplied):
        return
    if half.failed and not batch_cures(draft, half.revision):  # else rewritten first (AR507)
        draft.refuse(findings[0], f"revision {half.revision} fails on an empty database too, "
                     "so running its missing operations would fail again: correct the "
                     "revision, then run fix again (the operations that did take effect are "
                     "kept)")
        draft.stop()
        return
    versions = draft.state.versions
    # a column it committed whose unique constraint failed (every row got '' or 0): distinct
    # values first, or completing it fails the same way again
    fills = fills_for(half.revision, getattr(findings[0].subject, "path", None), half.done,
                      half.left)
    draft.add("AR402", *fills, CompleteRevision(half.revision, versions.rows if versions else ()))
    draft.heads = (half.revision,)


@repairs("AR404", layer=VERSIONS, each=False)
def baseline(draft: Draft, findings: list[Finding]) -> None:
    step = plan_baseline(draft.state, findings[0])
    if isinstance(step, str):
        draft.refuse(findings[0], step)
    else:
        draft.add("AR404", step)


@repairs("AR405", layer=VERSIONS, each=False)
def absorb(draft: Draft, findings: list[Finding]) -> None:
    """A change made by hand that the models now describe: the revision the history lacks is
    written and stamped (`history/absorb.py`); anything else is refused, as before."""
    why = absorb_refusal(draft, findings[0])
    if why is not None:
        draft.refuse(findings[0], f"the tables were changed by hand: {why}")
        return
    heads = draft.state.versions.heads if draft.state.versions is not None else ()
    draft.add("AR405", AbsorbDrift(heads[0], heads, what=absorbed(draft)))
    draft.heads = tuple(draft.state.script_heads)  # the new head, stamped: nothing to upgrade


@repairs("AR304", layer=VERSIONS, each=False, always=True)
def upgrade(draft: Draft, findings: list[Finding]) -> None:
    """Last: upgrade when the steps before (or the database itself) leave it behind head."""
    if (draft.steps or findings) and set(draft.recorded) != set(draft.state.script_heads):
        draft.add("AR304", Upgrade())
