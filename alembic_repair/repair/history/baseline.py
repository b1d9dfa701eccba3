"""AR404: a history that cannot build an empty database gets a true baseline before its old
base (the live tables as they were before that base ran), proved, or taken back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from alembic.operations import ops

from ...diagnose.findings import Finding
from ...engine import migrations, revisions
from ...engine.models import project_on_path
from ...engine.state.graph import history_chain
from ...engine.state.read import State
from ...errors import NeedsRepair
from ..journal import crash_point
from ..steps.base import Context, Step, move, register
from .bridge import plan_bridge
from .files import relink_file, render_revision
from .proof import by_revision, kept_tables, prove, schema_after_downgrades

_MISSING_OBJECT = ("no such table", "no such column", "doesn't exist", "unknown column",
                   "unknown table", "can't drop", "check that column/key exists",
                   "no such index")



@register
@dataclass(frozen=True)
class InsertBaseline(Step):
    """Write a baseline revision holding what the history relies on but never creates (the
    live tables as they were before the old base ran), and make the old base revise it."""

    kind: ClassVar[str] = "insert-baseline"
    base: str  # the old base revision
    recorded: str  # the revision the database records

    def describe(self) -> str:
        return (f"write a baseline revision before {self.base} (the tables as they were "
                f"before {self.base} ran: the live schema with the downgrades of {self.recorded} "
                f"back to {self.base}), relink {self.base} onto it and prove an empty database "
                f"builds; databases at {self.recorded} count it as applied (no restamp)")

    def _baseline(self, ctx: Context) -> tuple[str, ops.UpgradeOps]:
        project = ctx.project
        with project_on_path(project.root):
            directory = migrations.scripts(project)
            chain = [Path(s.path) for s in history_chain(directory, self.recorded)]
        names = [Path(p).name for p in chain]
        # history_chain lists the base first; the downgrades run newest first
        if not chain or by_revision(project)[self.base].path.name != names[0]:
            raise NeedsRepair(f"revision {self.recorded} does not descend from {self.base}")
        before = schema_after_downgrades(project, ctx.conn,
                                         kept_tables(project, ctx.conn, ctx.models),
                                         chain[::-1])
        operations = revisions.create_ops(before)
        if operations.is_empty():
            raise NeedsRepair(f"before {self.base} ran the database held no table, so a "
                              "baseline cannot help: fix the revision named by doctor")
        return revisions.stable_revision_id([], operations), operations

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        files = by_revision(project)
        base = files.get(self.base)
        if base is None:
            raise NeedsRepair(f"revision {self.base} has no file any more")
        parent = base.down_revisions[0] if base.down_revisions else None
        if parent is None or parent not in files:
            revision, operations = self._baseline(ctx)
            if revision not in files:
                path = render_revision(project, ctx.conn.dialect, revision, None,
                                       f"baseline before {self.base}", operations)
                ctx.say("baseline", f"wrote revision {revision} ({project.rel(path)})")
            crash_point("insert-baseline.written")
            relink_file(base.path, None, revision)
            ctx.say("relink", f"{project.rel(base.path)} now revises {revision}")
        else:
            revision = parent
        problem = prove(project, ctx.conn, self.recorded)
        if problem is not None:
            self._take_back(ctx, revision)
            raise NeedsRepair(f"the baseline before {self.base} was taken back: {problem}; "
                              "write the baseline by hand")
        ctx.say("verify", "an empty database builds from the history; its schema at "
                f"{self.recorded} equals this database's")

    def _take_back(self, ctx: Context, revision: str) -> None:
        files = by_revision(ctx.project)
        base = files.get(self.base)
        if base is not None:
            relink_file(base.path, revision, None)
        written = files.get(revision)
        if written is not None:
            move(written.path, ctx.keep(written.path))

    def undo(self, ctx: Context) -> None:
        base = by_revision(ctx.project).get(self.base)
        if base is not None and base.down_revisions:
            self._take_back(ctx, base.down_revisions[0])



def plan_baseline(state: State, finding: Finding) -> Step | str:
    """The step repairing AR404 (a bridge before the first revision needing a table made
    outside the migrations; else a baseline before the old base), or why not."""
    bridge = plan_bridge(state, finding)
    if bridge is not None:
        return bridge
    roots = state.graph.bases()
    replay = state.replay
    versions = state.versions
    heads = versions.heads if versions is not None else ()
    known = {s.revision for s in state.scripts}
    if not state.graph_ok or len(roots) != 1:
        return ("the history has several bases: write a baseline revision before the first "
                "one by hand (or alembic-repair squash), then fix again")
    error = (replay.error or "").lower() if replay is not None else ""
    if not any(text in error for text in _MISSING_OBJECT):
        return ("the replay fails for another reason than a table or column no revision "
                "creates (rows, raw SQL): fix the revision named, then run fix again")
    if len(heads) != 1 or heads[0] not in known or not (state.live and state.live.tables):
        return ("no database at a revision of this history holds the tables the history "
                "relies on, so a baseline cannot be rebuilt from it: write the baseline "
                "revision by hand")
    return InsertBaseline(roots[0], heads[0])
