"""AR4xx: the live schema against the replayed history and the models."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ...engine.state.read import State
from ...engine.state.schema import Fact, SchemaSnapshot, describe
from ..findings import AR401, AR402, AR403, AR404, AR405, AR406, AR407, AR408, Finding
from ..subjects import (
    Column,
    RevisionFile,
    SchemaEquals,
    Table,
    VersionsDir,
    VersionTable,
    split_location,
)
from . import rule

MAX_LISTED = 8


def _listing(facts: Iterable[Fact]) -> str:
    items = sorted(describe(f) for f in facts)
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def history_view(state: State) -> SchemaSnapshot | None:
    """The live schema without the tables no revision ever creates (they are AR406's), which
    would otherwise make every comparison with the history fail."""
    if state.replay is None or state.live is None:
        return None
    known: set[str] = set().union(*(s.tables for s in state.replay.snapshots.values()))
    if state.replay.partial is not None:
        known |= state.replay.partial.tables
    return state.live.only(known)


def equal_revisions(state: State) -> list[str]:
    """The revisions whose replayed schema equals the live one (a range when several)."""
    live = history_view(state)
    if state.replay is None or live is None:
        return []
    return state.replay.equal_to(live)


@rule("AR408")
def replay_unavailable(state: State) -> Iterator[Finding]:
    if state.replay_skipped is not None:
        yield AR408.finding(f"the replay could not start: {state.replay_skipped}",
                            VersionsDir(state.project.rel(state.project.versions_dir)))


@rule("AR404")
def history_builds(state: State) -> Iterator[Finding]:
    replay = state.replay
    if replay is not None and replay.failed_at is not None:
        where = split_location(replay.error_location) if replay.error_location else (None, None)
        yield AR404.finding(
            f"replaying from an empty database fails at revision {replay.failed_at}: "
            f"{replay.error}", RevisionFile(where[0], replay.failed_at, where[1]))


@dataclass(frozen=True)
class HalfApplied:
    """A child of the recorded revision whose changes are in the schema only in part."""

    revision: str
    done: frozenset[Fact]
    left: frozenset[Fact]  # empty when `failed`: the replay itself stops in this revision
    failed: bool


def half_applied(state: State) -> HalfApplied | None:
    """The revision a failed upgrade left half-applied (MySQL commits DDL one statement at a
    time), recognised by set algebra on the replayed schemas; None when there is none."""
    replay, live, versions = state.replay, history_view(state), state.versions
    if replay is None or live is None or versions is None or len(versions.heads) != 1:
        return None
    (recorded,) = versions.heads
    expected = replay.snapshots.get(recorded)
    if expected is None or live == expected or replay.equal_to(live):
        return None
    extra, missing = live - expected, expected - live
    if replay.partial is not None and live == replay.partial and replay.failed_at in \
            state.graph.children(recorded):
        return HalfApplied(replay.failed_at, frozenset(extra | missing), frozenset(), True)
    for child in state.graph.children(recorded):
        after = replay.snapshots.get(child)
        if after is None:
            continue
        added, removed = after - expected, expected - after
        if extra <= added and missing <= removed:
            return HalfApplied(child, frozenset(extra | missing),
                               frozenset((added - extra) | (removed - missing)), False)
    return None


@rule("AR401", "AR402", "AR405")
def live_against_history(state: State) -> Iterator[Finding]:
    replay, live, versions = state.replay, history_view(state), state.versions
    if replay is None or live is None or versions is None or len(versions.heads) != 1:
        return
    (recorded,) = versions.heads
    expected = replay.snapshots.get(recorded)
    if expected is None or live == expected:
        return
    equal = replay.equal_to(live)
    if equal:
        span = equal[0] if len(equal) == 1 else f"{equal[0]} .. {equal[-1]}"
        yield AR401.finding(f"alembic_version records {recorded}, but the schema equals "
                            f"revision {span}", VersionTable(), SchemaEquals(tuple(equal)),
                            fix=f"alembic stamp {equal[-1]} (after checking that the data "
                                "revisions in between ran)" if len(equal) > 1 else
                                f"alembic stamp {equal[0]}")
        return
    half = half_applied(state)
    if half is not None:
        if half.failed:
            yield AR402.finding(
                f"revision {half.revision} is half-applied: done: {_listing(half.done)}; not "
                f"done: the rest of the revision, which fails at {replay.error_location}: "
                f"{replay.error}", RevisionFile(state.revision_file(half.revision),
                                                half.revision), half)
        else:
            yield AR402.finding(
                f"revision {half.revision} is half-applied: done: {_listing(half.done)}; not "
                f"done: {_listing(half.left)}", RevisionFile(state.revision_file(half.revision),
                                                             half.revision), half)
        return
    extra, missing = live - expected, expected - live
    yield AR405.finding(
        f"the schema is not the one of {recorded} (nor of any other revision): in the "
        f"database only: {_listing(extra) or 'nothing'}; missing from it: "
        f"{_listing(missing) or 'nothing'}", VersionTable())


@rule("AR403")
def models_against_live(state: State) -> Iterator[Finding]:
    models, live = state.models, state.live
    if models is None or live is None:
        return
    if not live.tables:
        if models.tables and not [s for s in state.scripts if s.revision]:
            # Nothing would ever create the models' tables: no table, no revision file.
            yield AR403.finding(f"the database has no table and no revision creates one; the "
                                f"models define {len(models.tables)}: "
                                f"{', '.join(sorted(models.tables)[:MAX_LISTED])}",
                                VersionsDir(state.project.rel(state.project.versions_dir)))
        return
    only_models, only_live = models - live, live - models
    orphans = _orphans(state)
    tables = sorted({f[1] for f in only_models | only_live} - orphans)
    for table in tables:
        mine = {f for f in only_models if f[1] == table}
        theirs = {f for f in only_live if f[1] == table}
        parts = []
        if mine:
            parts.append(f"in the models only: {_listing(mine)}")
        if theirs:
            parts.append(f"in the database only: {_listing(theirs)}")
        yield AR403.finding("; ".join(parts), Table(table))


def _orphans(state: State) -> set[str]:
    if state.live is None or state.models is None or state.replay is None:
        return set()
    history = set().union(*(s.tables for s in state.replay.snapshots.values()))
    return set(state.live.tables) - set(state.models.tables) - history


@rule("AR406")
def orphan_tables(state: State) -> Iterator[Finding]:
    for table in sorted(_orphans(state)):
        yield AR406.finding(f"table {table} is created by no revision and no model",
                            Table(table))


@rule("AR407")
def junk_values(state: State) -> Iterator[Finding]:
    for junk in state.junk:
        yield AR407.finding(
            f"{junk.count} value(s) in {junk.table}.{junk.column} ({junk.declared}) do not fit "
            f"the type, e.g. {junk.sample!r}", Column(junk.table, junk.column), junk)
