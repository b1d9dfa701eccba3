"""AR2xx: the revision graph, from the files read with ast (and Alembic's import of them)."""

from __future__ import annotations

from collections.abc import Iterator

from ...engine.state.read import State
from ..findings import AR201, AR202, AR203, AR204, AR205, AR206, AR207, AR208, AR209, Finding
from ..subjects import MissingParent, RevisionFile, RevisionFiles, VersionsDir, split_location
from . import rule


@rule("AR201", "AR206", "AR207", "AR208")
def files(state: State) -> Iterator[Finding]:
    rel = state.project.rel
    settled = _settled(state)
    for script in state.scripts:
        where = rel(script.path)
        if script.error is not None:
            line = f":{script.error_line}" if script.error_line else ""
            yield AR201.finding(f"{where}{line}: {script.error}",
                                RevisionFile(where, None, script.error_line))
        elif script.revision is None:
            yield AR206.finding(f"{where} has no `revision = '...'` line", RevisionFile(where))
        elif script.upgrade == "empty" and not script.is_merge:
            yield AR207.finding(f"revision {script.revision}: upgrade() does nothing",
                                RevisionFile(where, script.revision))
        elif script.upgrade == "code" and script.downgrade != "code":
            below = script.revision in settled
            yield AR208.finding(
                f"revision {script.revision}: downgrade() is {script.downgrade}"
                + (" (applied here, below the current revision: a fact of the history)"
                   if below else ""), RevisionFile(where, script.revision),
                severity="info" if below else None)


def _settled(state: State) -> set[str]:
    """Revisions this database applied before its current one(s): a downgrade only reaches
    them after the current revisions are undone, and a published history ships many release
    revisions that cannot be undone. An empty downgrade there is a fact of the history, not
    a problem (AR208 says so as info); on the current revisions (what ``alembic downgrade -1``
    undoes) and on pending ones, or when what the database applied is unknown, it warns."""
    versions = state.versions
    if versions is None or not versions.rows:
        return set()
    heads = set(versions.heads)
    return state.graph.applied(heads) - heads


@rule("AR202", "AR203", "AR204", "AR205", "AR209")
def graph(state: State) -> Iterator[Finding]:
    rel = state.project.rel
    for rev, same in state.graph.duplicates().items():
        names = ", ".join(rel(s.path) for s in same)
        yield AR202.finding(f"revision {rev!r} is defined in {names}",
                            RevisionFiles(tuple(rel(s.path) for s in same), (rev,)))
    for script, parent in state.graph.dangling():
        yield AR203.finding(f"revision {script.revision!r} has down_revision {parent!r}, which "
                            "no file defines", RevisionFile(rel(script.path), script.revision),
                            MissingParent(parent))
    members = state.graph.cycle()
    if members:
        ids = " -> ".join(str(s.revision) for s in members)
        yield AR204.finding(f"revisions {ids} form a cycle",
                            RevisionFiles(tuple(rel(s.path) for s in members),
                                          tuple(str(s.revision) for s in members)))
    if state.graph_ok and len(state.script_heads) > 1:
        yield AR205.finding(f"{len(state.script_heads)} heads: {', '.join(state.script_heads)}",
                            VersionsDir(rel(state.project.versions_dir)))
    if state.import_error is not None:
        where, message = state.import_error
        path, line = split_location(where)
        yield AR209.finding(f"{where}: {message}", RevisionFile(path, None, line))
