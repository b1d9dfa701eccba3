"""AR3xx: the alembic_version rows against the revision files."""

from __future__ import annotations

from collections.abc import Iterator

from ...engine.state.read import State
from ...engine.state.scripts import ScriptFile
from ..findings import AR301, AR302, AR303, AR304, AR305, AR306, AR307, Finding
from . import rule
from .schema import equal_revisions


def ancestors(scripts: tuple[ScriptFile, ...], revision: str) -> set[str]:
    parents = {s.revision: s.down_revisions for s in scripts if s.revision is not None}
    seen: set[str] = set()
    todo = list(parents.get(revision, ()))
    while todo:
        rev = todo.pop()
        if rev not in seen:
            seen.add(rev)
            todo.extend(parents.get(rev, ()))
    return seen


def _matches(state: State) -> str:
    equal = equal_revisions(state)
    if not equal:
        return ""
    span = equal[0] if len(equal) == 1 else f"{equal[0]} .. {equal[-1]} (the same schema)"
    return f"; the schema equals revision {span}"


@rule
def version_table(state: State) -> Iterator[Finding]:
    versions, live = state.versions, state.live
    if versions is None or live is None:
        return
    where = "alembic_version"
    if not versions.exists:
        if live.tables:
            yield AR301.finding(f"{len(live.tables)} tables and no alembic_version table"
                                f"{_matches(state)}", location=where)
        return
    if not versions.has_pk:
        yield AR307.finding("alembic_version has no primary key", location=where)
    if not versions.rows:
        if live.tables:
            yield AR306.finding(f"{len(live.tables)} tables and no alembic_version row"
                                f"{_matches(state)}", location=where)
        return
    known = {s.revision for s in state.scripts if s.revision is not None}
    unknown = [rev for rev in versions.heads if rev not in known]
    if unknown:
        yield AR302.finding(f"alembic_version records {', '.join(unknown)}, which no revision "
                            f"file defines{_matches(state)}", location=where)
    if len(versions.rows) != len(set(versions.rows)):
        yield AR303.finding(f"{len(versions.rows)} rows for {len(set(versions.rows))} "
                            f"revision(s): {', '.join(versions.rows)}", location=where)
    for rev in versions.heads:
        older = [other for other in versions.heads if other in ancestors(state.scripts, rev)]
        if older:
            yield AR303.finding(f"{', '.join(older)} recorded beside its descendant {rev}",
                                location=where)
    ids = [*known, *versions.rows]
    if versions.length and ids and max(len(i) for i in ids) > versions.length:
        yield AR305.finding(f"version_num is VARCHAR({versions.length}); the longest id has "
                            f"{max(len(i) for i in ids)} characters", location=where)
    if not unknown and state.graph_ok and set(versions.heads) != set(state.script_heads):
        pending = set().union(*(ancestors(state.scripts, h) | {h} for h in state.script_heads))
        done = set().union(*(ancestors(state.scripts, h) | {h} for h in versions.heads))
        missing = pending - done
        if missing:
            yield AR304.finding(f"at {', '.join(versions.heads)}; {len(missing)} revision(s) "
                                f"not applied, up to {', '.join(state.script_heads)}",
                                location=where)
