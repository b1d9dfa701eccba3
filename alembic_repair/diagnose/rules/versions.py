"""AR3xx: the alembic_version rows against the revision files."""

from __future__ import annotations

from collections.abc import Iterator

from ...engine.state.locate import Location
from ...engine.state.read import State
from ...wording import counted
from ..findings import AR301, AR302, AR303, AR304, AR305, AR306, AR307, Finding
from ..subjects import SchemaEquals, VersionTable
from . import rule
from .schema import equal_revisions, placed


def _equals(state: State) -> SchemaEquals | Location:
    """The revisions the schema equals; when the replay stopped before some of them, where the
    revisions' effects place it instead (the replayed snapshots only see the tables the
    replay knew), unless the effects contradict each other and a snapshot does match. When a
    snapshot matches and the effects place it elsewhere: no location (fix refuses)."""
    equal = SchemaEquals(tuple(equal_revisions(state)))
    place = placed(state)
    if place is not None and (place.revisions or not equal.revisions):
        return place.against(equal.revisions)
    return equal


def _matches(facts: SchemaEquals | Location) -> str:
    if isinstance(facts, Location):
        return f"; {facts.describe()}"
    equal = facts.revisions
    if not equal:
        return ""
    span = equal[0] if len(equal) == 1 else f"{equal[0]} .. {equal[-1]} (the same schema)"
    return f"; the schema equals revision {span}"


@rule("AR301", "AR302", "AR303", "AR304", "AR305", "AR306", "AR307")
def version_table(state: State) -> Iterator[Finding]:
    versions, live = state.versions, state.live
    if versions is None or live is None:
        return
    where = VersionTable()
    if not versions.exists:
        if live.tables:
            equal = _equals(state)
            yield AR301.finding(f"{counted(len(live.tables), 'table')} and no alembic_version table"
                                f"{_matches(equal)}", where, equal)
        return
    if not versions.has_pk:
        yield AR307.finding("alembic_version has no primary key", where)
    if not versions.rows:
        if live.tables:
            equal = _equals(state)
            yield AR306.finding(f"{counted(len(live.tables), 'table')} and no alembic_version row"
                                f"{_matches(equal)}", where, equal)
        return
    known = {s.revision for s in state.scripts if s.revision is not None}
    unknown = [rev for rev in versions.heads if rev not in known]
    if unknown:
        equal = _equals(state)
        yield AR302.finding(f"alembic_version records {', '.join(unknown)}, which no revision "
                            f"file defines{_matches(equal)}", where, equal)
    if len(versions.rows) != len(set(versions.rows)):
        yield AR303.finding(f"{counted(len(versions.rows), 'row')} for "
                            f"{counted(len(set(versions.rows)), 'revision')}: "
                            f"{', '.join(versions.rows)}", where)
    for rev in versions.heads:
        older = [other for other in versions.heads if other in state.graph.ancestors(rev)]
        if older:
            yield AR303.finding(f"{', '.join(older)} recorded beside its descendant {rev}",
                                where)
    ids = [*known, *versions.rows]
    if versions.length and ids and max(len(i) for i in ids) > versions.length:
        yield AR305.finding(f"version_num is VARCHAR({versions.length}); the longest id has "
                            f"{max(len(i) for i in ids)} characters", where)
    if not unknown and state.graph_ok and set(versions.heads) != set(state.script_heads):
        pending = state.graph.lineage(state.script_heads)
        done = state.graph.applied(versions.heads)
        missing = pending - done
        if missing:
            yield AR304.finding(f"at {', '.join(versions.heads)}; "
                                f"{counted(len(missing), 'revision')} "
                                f"not applied, up to {', '.join(state.script_heads)}",
                                where)
