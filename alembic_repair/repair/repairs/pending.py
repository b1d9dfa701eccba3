"""Layer 3, pending revisions that would lose data (AR5xx): rewritten into their safe form when
the revision is the next one to run (its starting schema is then the live one), or else held:
no upgrade runs through them. Rules: `diagnose/rules/safety.py`, `diagnose/rules/hidden.py`
(AR511); rewrites: `rewrite/`.
"""

from __future__ import annotations

from alembic.operations.ops import DropColumnOp, DropTableOp

from ...diagnose.findings import Finding
from ...diagnose.rules.hidden import hidden
from ...diagnose.rules.safety import sqlite_outside_batch
from ...diagnose.subjects import HiddenDrops, PendingChange, RevisionFile, split_location
from ...engine.state.pending import PendingRevision
from ..registry import PENDING, Draft, refuses, repairs, reports
from ..steps import HideFromAutogenerate, RemoveHiddenDrops, RewritePending, SetEnvOption

reports("AR504", "AR506", "AR509",
        why="loses no data by itself: the revision (or the model) is the author's to change")


def _revision(draft: Draft, finding: Finding) -> PendingRevision | None:
    pending = draft.state.pending
    path = getattr(finding.subject, "path", None)
    return next((r for r in (pending.revisions if pending else ()) if r.path == path), None)


def _not_next(draft: Draft, finding: Finding) -> str | None:
    """Why the finding's revision cannot be rewritten now (None: it is the next to run)."""
    revision = _revision(draft, finding)
    if revision is None:
        return "no upgrade runs until this revision is made safe"
    if (why := _unknown(draft, revision)) is not None:
        return why
    state = draft.state
    recorded = set(state.versions.heads) if state.versions is not None else set()
    script = next((s for s in state.scripts if s.revision == revision.revision), None)
    parents = set(script.down_revisions) if script is not None else {"?"}
    if not parents <= recorded:
        return (f"revision {revision.revision} is not the next one to run; upgrade to its "
                "parent, then run fix again")
    return None


def _unknown(draft: Draft, revision: PendingRevision) -> str | None:
    if draft.applied_is_known:
        return None
    return (f"alembic_version does not say whether revision {revision.revision} ran here (its "
            "rows are missing or unknown), so its file is not rewritten: repair alembic_version "
            "first (doctor's AR3xx findings say how), then run fix again")


def _held(draft: Draft, finding: Finding) -> str:
    return _not_next(draft, finding) or ("no upgrade runs until this revision is corrected: "
                                         + finding.fix)


refuses("AR505", "AR508", "AR510", layer=PENDING, why=_held)


@repairs("AR511", layer=PENDING)
def remove_hidden_drops(draft: Draft, finding: Finding) -> None:
    """Any pending revision may lose these lines: they only undo what the trash keeps."""
    revision = _revision(draft, finding)
    if revision is None or not isinstance(finding.facts, HiddenDrops):
        draft.refuse(finding, "no upgrade runs until this revision is made safe")
        return
    if (why := _unknown(draft, revision)) is not None:
        draft.refuse(finding, why)
        return
    draft.add(finding.code, RemoveHiddenDrops(revision.path, finding.facts.tables))


@repairs("AR501", layer=PENDING)
def soft_drops(draft: Draft, finding: Finding) -> None:
    why = _not_next(draft, finding)
    revision = _revision(draft, finding)
    if why is not None or revision is None:
        draft.refuse(finding, why or "")
        return
    state = draft.state
    drops = tuple(dict.fromkeys(
        f"{op.operation.table_name}.{op.operation.column_name}"
        if isinstance(op.operation, DropColumnOp) else op.operation.table_name
        for op in revision.ops if isinstance(op.operation, (DropColumnOp, DropTableOp))
        and not hidden(state, op.operation.table_name)))  # those are AR511's
    env = state.config.env_filter
    if state.config.env_py_exists and (env is None or env.unsafe):
        # the trash the soft drop fills would be dropped by the next plain autogenerate
        draft.refuse(finding, "the soft drop needs env.py's autogenerate filter: "
                     + (env.why if env is not None else "env.py cannot be read or does not "
                        "parse; fix it first"))
        return
    draft.add(finding.code, HideFromAutogenerate(why="the soft drop puts tables into the trash"),
              RewritePending(revision.path, "soft-drops", drops))


@repairs("AR502", "AR503", layer=PENDING)
def unique_columns(draft: Draft, finding: Finding) -> None:
    """A new column every existing row would get the same value in: add it nullable, fill it
    per row, then constrain it (`rewrite/unique_column.py`)."""
    why = _not_next(draft, finding)
    revision = _revision(draft, finding)
    if why is not None or revision is None:
        draft.refuse(finding, why or "")
    elif isinstance(finding.facts, PendingChange) and finding.facts.new_column:
        draft.add(finding.code, RewritePending(revision.path, "unique-columns"))
    else:
        draft.refuse(finding, _held(draft, finding))


@repairs("AR507", layer=PENDING)
def batch_mode(draft: Draft, finding: Finding) -> None:
    """SQLite cannot ALTER in place: the same calls inside ``batch_alter_table`` (copy and
    move; `rewrite/batch.py`), whichever pending revision it is (the rewrite does not depend
    on the live schema), and env.py renders batch mode from now on."""
    revision = _revision(draft, finding)
    why = "no upgrade runs until this revision is made safe" if revision is None \
        else _unknown(draft, revision)
    if why is not None or revision is None:
        draft.refuse(finding, why or "")
    elif _unique_add_column(draft, revision.path):
        # SQLite adds a column in place even in batch mode: the rewrite leaves the file alone
        draft.refuse(finding, _held(draft, finding))
    else:
        if not draft.state.config.render_as_batch:
            draft.add(finding.code, SetEnvOption(
                "render_as_batch", why="SQLite can only ALTER a table by copying it (batch "
                "mode)"))
        draft.add(finding.code, RewritePending(revision.path, "batch"))


def _ar507(draft: Draft, path: str) -> list[Finding]:
    """AR507's findings on the revision at `path` (a repair sees one finding): the rule runs
    once per draft, not once per finding."""
    if "AR507" not in draft.cache:
        found: dict[str, list[Finding]] = {}
        for f in sqlite_outside_batch(draft.state):
            if isinstance(f.subject, RevisionFile) and f.subject.path is not None:
                found.setdefault(f.subject.path, []).append(f)
        draft.cache["AR507"] = found
    return list(draft.cache["AR507"].get(path, ()))


def _unique_add_column(draft: Draft, path: str) -> bool:
    return any(isinstance(f.facts, PendingChange) and f.facts.operation == "AddColumnOp"
               for f in _ar507(draft, path))


def batch_cures(draft: Draft, revision: str) -> bool:
    """Whether `revision`, which fails on an empty database too, fails exactly at an ALTER
    the batch rewrite moves (AR507) and this fix rewrites it first: then the layers above
    are planned (and projected) as for a revision that runs, not refused as a broken one."""
    state = draft.state
    replay = state.replay
    if replay is None or replay.failed_at != revision or not replay.error_location:
        return False
    if draft.only and not {"AR507", "AR5XX"} & draft.only:
        return False  # the rewrite is not part of this fix
    path, line = split_location(replay.error_location)
    found = _ar507(draft, path)
    return not _unique_add_column(draft, path) and any(
        isinstance(f.subject, RevisionFile) and f.subject.line == line for f in found)
