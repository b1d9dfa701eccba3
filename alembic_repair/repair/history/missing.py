"""AR203: a deleted intermediate revision recreated as a bridge between its parent's schema
and the one its children start from (or the children relinked when nothing is missing),
proved, or taken back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from alembic.operations import ops
from alembic.runtime.migration import MigrationContext

from ...diagnose.findings import Finding
from ...diagnose.subjects import MissingParent, RevisionFile
from ...engine.models import project_on_path
from ...engine.replay import scratch_database
from ...engine.state.graph import RevisionGraph
from ...engine.state.read import State
from ...engine.state.schema import is_user_table
from ...engine.state.scripts import ScriptFile
from ...errors import NeedsRepair
from ..journal import crash_point
from ..steps.base import Context, Step, move, register
from .files import relink_file, render_revision
from .proof import by_revision, kept_tables, load, prove, run, schema_after_downgrades


@register
@dataclass(frozen=True)
class RecreateMissing(Step):
    """Recreate the deleted revision `missing` as a bridge from `parent`'s schema to the one
    its children start from (rebuilt from the live schema and their downgrades); or relink
    the children onto `parent` when the schemas show nothing is missing."""

    kind: ClassVar[str] = "recreate-missing"
    missing: str
    parent: str | None
    children: tuple[str, ...]
    recorded: str

    def describe(self) -> str:
        return (f"recreate revision {self.missing} (deleted) as a bridge from "
                f"{self.parent or 'an empty database'} to the schema "
                f"{', '.join(self.children)} start from (the live schema with the downgrades "
                f"of {self.recorded} back to {', '.join(self.children)}); relink instead when "
                "nothing is missing; prove an empty database builds")

    def _operations(self, ctx: Context, files: dict[str, ScriptFile]) -> ops.UpgradeOps:
        from alembic.autogenerate import produce_migrations

        project, conn = ctx.project, ctx.conn
        graph = RevisionGraph.of(files.values())
        if self.recorded == self.missing:
            downgrades: list[Path] = []
        else:
            downgrades = [files[r].path for r in graph.between(self.recorded, self.children)]
        after = schema_after_downgrades(project, conn, kept_tables(project, conn, ctx.models),
                                        downgrades)
        chain = graph.chain(self.parent) if self.parent else []
        with project_on_path(project.root), scratch_database(project, conn.engine) as scratch:
            for rev in chain:
                run(scratch, load(files[rev].path).upgrade)
            context = MigrationContext.configure(scratch, opts={
                "compare_type": True, "target_metadata": after,
                "include_name": lambda name, type_, _: type_ != "table" or is_user_table(
                    name or "")})
            upgrade_ops = produce_migrations(context, after).upgrade_ops
            scratch.rollback()
        assert upgrade_ops is not None
        return upgrade_ops

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        files = by_revision(project)
        relinked = all(files[c].down_revisions == ((self.parent,) if self.parent else ())
                       for c in self.children if c in files)
        if self.missing not in files and not relinked:
            operations = self._operations(ctx, files)
            if operations.is_empty():
                for child in self.children:
                    relink_file(files[child].path, self.missing, self.parent)
                    ctx.say("relink", f"{project.rel(files[child].path)} now revises "
                            f"{self.parent or 'nothing'} (nothing was missing)")
            else:
                path = render_revision(project, ctx.conn.dialect, self.missing, self.parent,
                                       "bridge (recreated)", operations)
                ctx.say("bridge", f"recreated revision {self.missing} ({project.rel(path)})")
                crash_point("recreate-missing.written")
        files = by_revision(project)
        target = self.recorded
        if self.recorded == self.missing and self.missing not in files:
            target = self.parent or ""  # relinked: the version rows are restamped next round
        problem = prove(project, ctx.conn, target) if target else None
        if problem is not None:
            self._take_back(ctx)
            raise NeedsRepair(f"recreating revision {self.missing} was taken back: {problem}; "
                              "restore the deleted file from git")
        ctx.say("verify", "an empty database builds from the history; its schema at "
                f"{target} equals this database's")

    def _take_back(self, ctx: Context) -> None:
        files = by_revision(ctx.project)
        written = files.get(self.missing)
        if written is not None:
            move(written.path, ctx.keep(written.path))
        for child in self.children:
            if child in files and self.missing not in files[child].down_revisions:
                relink_file(files[child].path, self.parent, self.missing)

    def undo(self, ctx: Context) -> None:
        self._take_back(ctx)


def missing_parent(scripts: Iterable[ScriptFile], missing: str
                   ) -> tuple[tuple[str, ...], list[str], set[str]]:
    """(the children naming `missing`, the candidates for its own parent: the heads of the
    part of the graph that does not descend from those children, and those descendants)."""
    graph = RevisionGraph.of(scripts)
    children = tuple(sorted(set(graph.children(missing))))
    descendants = graph.descendants(missing)
    others = set(graph.files) - descendants
    heads = sorted(r for r in others if not (set(graph.children(r)) & others))
    return children, heads, descendants



def plan_missing_revision(state: State, finding: Finding) -> Step | str:
    """The step repairing one AR203 finding, or why it cannot be repaired safely."""
    scripts, graph = state.scripts, state.graph
    if any(s.error or s.revision is None for s in scripts) or graph.duplicates() or \
            graph.cycle():
        return "repair the other revision-file findings first, then run fix again"
    subject, facts = finding.subject, finding.facts
    if not isinstance(subject, RevisionFile) or not isinstance(facts, MissingParent) or not any(
            s.revision == subject.revision and p == facts.parent for s, p in graph.dangling()):
        return "restore the deleted revision file from git, then run fix again"
    missing = facts.parent
    children, candidates, descendants = missing_parent(scripts, missing)
    restore = "restore the deleted revision file from git (or a teammate's clone)"
    if any(len(files.down_revisions) > 1 for files in scripts if files.revision in children):
        return f"a merge revision names the missing {missing}: {restore}"
    if len(candidates) > 1:
        return (f"the parent of the missing {missing} is ambiguous (it could revise "
                f"{', '.join(candidates)}): {restore}")
    versions = state.versions
    heads = versions.heads if versions is not None else ()
    if state.db_error is not None or len(heads) != 1:
        return (f"no database records one revision after {missing}, so the schema it left "
                f"cannot be rebuilt: {restore}")
    (recorded,) = heads
    if recorded != missing and recorded not in descendants:
        return (f"the database records {recorded}, before the missing {missing}, so the "
                f"schema {missing} left is unknown: {restore}")
    return RecreateMissing(missing, candidates[0] if candidates else None, children, recorded)


