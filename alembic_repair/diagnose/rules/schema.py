"""AR4xx: the live schema against the replayed history and the models."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ...engine.state.locate import Location
from ...engine.state.read import State
from ...engine.state.schema import Fact, SchemaSnapshot, describe
from ...wording import counted
from ..findings import AR401, AR402, AR403, AR404, AR405, AR406, AR407, AR408, AR409, Finding
from ..subjects import (
    Column,
    RevisionFile,
    SchemaEquals,
    SetupFile,
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
    return [r for r in state.replay.equal_to(live) if r not in state.mixed_snapshots]


def snapshot_of(state: State, revision: str) -> SchemaSnapshot | None:
    """The replayed schema at `revision`; None when unknown (not replayed, or seen with a
    sibling branch's changes: `State.mixed_snapshots`)."""
    if state.replay is None or revision in state.mixed_snapshots:
        return None
    return state.replay.snapshots.get(revision)


@rule("AR408")
def replay_unavailable(state: State) -> Iterator[Finding]:
    if state.replay_skipped is not None:
        yield AR408.finding(f"the replay could not start: {state.replay_skipped}",
                            VersionsDir(state.project.rel(state.project.versions_dir)))


@rule("AR409")
def replayed_without_env(state: State) -> Iterator[Finding]:
    replay = state.replay
    # env.py failing offline too is AR105's already: the same failure, said once
    if replay is not None and replay.fallback is not None and state.models_error is None:
        yield AR409.finding(f"the history was replayed without env.py: {replay.fallback}",
                            SetupFile(state.project.rel(state.project.env_py)))


@rule("AR404")
def history_builds(state: State) -> Iterator[Finding]:
    replay = state.replay
    if replay is not None and replay.failed_at is not None:
        where = split_location(replay.error_location) if replay.error_location else (None, None)
        if replay.mode == "env":  # plain `alembic upgrade heads` fails too: say where and why
            after = f" after the declared set-up {replay.setup}" if replay.setup else ""
            detail = (f"`alembic upgrade heads` on an empty database{after} fails at revision "
                      f"{replay.failed_at} ({replay.error_location}): {replay.error}")
        else:
            detail = (f"replaying from an empty database fails at revision {replay.failed_at}: "
                      f"{replay.error}")
        yield AR404.finding(detail, RevisionFile(where[0], replay.failed_at, where[1]))


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
    expected = snapshot_of(state, recorded)
    if expected is None or live == expected or equal_revisions(state):
        return None
    extra, missing = live - expected, expected - live
    if replay.partial is not None and live == replay.partial and replay.failed_at in \
            state.graph.children(recorded):
        return HalfApplied(replay.failed_at, frozenset(extra | missing), frozenset(), True)
    for child in state.graph.children(recorded):
        after = snapshot_of(state, child)
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
    place = placed(state)
    if recorded in state.mixed_snapshots:  # its replayed schema holds another branch's too:
        if place is not None and recorded in state.graph.files:  # what it is, is unknown
            yield from _against_location(recorded, place)
        return
    if expected is None or live == expected:
        # no snapshot of `recorded` (the replay stopped before it), or one that sees only the
        # tables the replay knew: where the revisions' effects place it is the better answer
        # (an id no file defines is AR302's)
        if place is not None and recorded in state.graph.files and expected is None:
            yield from _against_location(recorded, place)
        elif place is not None and expected is not None and place.exact is not None and \
                place.exact not in replay.snapshots:  # the snapshot of `recorded` matches
            yield from _disputed(recorded, place.against((recorded,)))
        # no snapshot of `recorded` although the replay went on: the set-up stamped a later
        # revision (create_all + stamp head), so what the tables equal still tells
        if expected is not None or place is not None or recorded not in state.graph.files \
                or replay.failed_at is not None:
            return
    equal = equal_revisions(state)
    if equal and place is not None and not place.against(equal).revisions:
        yield from _disputed(recorded, place.against(equal))
        return
    if equal:
        span = equal[0] if len(equal) == 1 else f"{equal[0]} .. {equal[-1]}"
        yield AR401.finding(f"alembic_version records {recorded}, but the schema equals "
                            f"revision {span}", VersionTable(), SchemaEquals(tuple(equal)),
                            fix=f"alembic stamp {equal[-1]} (after checking that the data "
                                "revisions in between ran)" if len(equal) > 1 else
                                f"alembic stamp {equal[0]}")
        return
    if expected is None:
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
    if place is not None and place.revisions:
        yield from _against_location(recorded, place)
        return
    extra, missing = live - expected, expected - live
    yield AR405.finding(
        f"the schema is not the one of {recorded} (nor of any other revision): in the "
        f"database only: {_listing(extra) or 'nothing'}; missing from it: "
        f"{_listing(missing) or 'nothing'}", VersionTable())


def placed(state: State) -> Location | None:
    """Where the revisions' effects place the live schema (`engine.state.locate`): computed
    only when the replay from empty stopped, so some revisions have no snapshot."""
    return getattr(state, "location", None)


def _against_location(recorded: str, place: Location) -> Iterator[Finding]:
    """AR401 when the revisions' effects place the schema elsewhere than `recorded`;
    nothing when they cannot tell (no candidate) or `recorded` is one of the candidates."""
    if not place.revisions or recorded in place.revisions:
        return
    fix = (f"alembic stamp {place.exact}" if place.exact is not None else
           f"check which of {place.span} this database is at, then alembic stamp it")
    yield AR401.finding(f"alembic_version records {recorded}, but {place.describe()}",
                        VersionTable(), place, fix=fix)


def _disputed(recorded: str, place: Location) -> Iterator[Finding]:
    """AR401 when a replayed snapshot and the revisions' effects disagree (`place` says how):
    told, never stamped on (fix refuses a location without a candidate)."""
    if place.revisions:
        return
    yield AR401.finding(f"alembic_version records {recorded}, but {place.describe()}",
                        VersionTable(), place, fix="compare the tables with the revision "
                        "files, then alembic stamp the revision they are at")


@rule("AR403")
def models_against_live(state: State) -> Iterator[Finding]:
    models, live = state.models, state.live
    if models is None or live is None:
        return
    # models an installed package defines: its own history owns their drift (no revision here)
    fix = state.models_owner.advice if state.models_owner is not None else None
    if not live.tables:
        if models.tables and not [s for s in state.scripts if s.revision]:
            # Nothing would ever create the models' tables: no table, no revision file.
            yield AR403.finding(f"the database has no table and no revision creates one; the "
                                f"models define {len(models.tables)}: "
                                f"{', '.join(sorted(models.tables)[:MAX_LISTED])}",
                                VersionsDir(state.project.rel(state.project.versions_dir)),
                                fix=fix)
        return
    orphans = _orphans(state)
    for table, (mine, theirs) in sorted(_drifted(state, models, live).items()):
        if table in orphans:
            continue
        parts = []
        if mine:
            parts.append(f"in the models only: {_listing(mine)}")
        if theirs:
            parts.append(f"in the database only: {_listing(theirs)}")
        yield AR403.finding("; ".join(parts), Table(table), fix=fix)


def _drifted(state: State, models: SchemaSnapshot, live: SchemaSnapshot
             ) -> dict[str, tuple[frozenset[Fact], frozenset[Fact]]]:
    """Per drifted table, (models only, database only). The tables and differences are the ones
    `alembic check` reports (`state.drift`, issue 12): a primary key's column order, a CHECK
    or a server default it does not compare is no drift, an index renamed in the models is.
    Without Alembic's answer (a state built in memory, its comparison failed), the facts."""
    if state.drift is not None:
        return {t.table: (t.models_only, t.database_only) for t in state.drift.tables}
    only_models, only_live = models - live, live - models
    return {table: (frozenset(f for f in only_models if f[1] == table),
                    frozenset(f for f in only_live if f[1] == table))
            for table in {f[1] for f in only_models | only_live}}


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
            f"{counted(junk.count, 'value')} in {junk.table}.{junk.column} ({junk.declared}) "
            f"{'does' if junk.count == 1 else 'do'} not fit the type, e.g. {junk.sample!r}",
            Column(junk.table, junk.column), junk)
