"""Layer 2, the revision files (AR2xx): a graph with two heads has no single "head" to stamp.

Rules: `diagnose/rules/graph.py`. A recreated missing parent is `history/missing.py`'s step.
"""

from __future__ import annotations

import ast

from ...diagnose.findings import Finding
from ...engine.state.read import State
from ...engine.state.scripts import ScriptFile
from ..history import plan_missing_revision
from ..registry import GRAPH, Draft, refuses, repairs, reports
from ..steps import MoveToBackup, WriteMerge

refuses("AR201", "AR209", layer=GRAPH,
        why="a revision file that does not load is the project's code: fix it (or restore it "
            "from git), then run fix again")
refuses("AR204", layer=GRAPH,
        why="which link of the cycle is wrong cannot be told from the files: correct the "
            "down_revision you edited by hand")
reports("AR208", why="only the author knows how to undo a revision")


def _imported_names(state: State) -> set[str]:
    """Module names the revision files import (a helper module in versions/ is not stray)."""
    names: set[str] = set()
    for script in state.scripts:
        try:
            tree = ast.parse(script.path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def _same_code(a: ScriptFile, b: ScriptFile) -> bool:
    try:
        return ast.dump(ast.parse(a.path.read_text(encoding="utf-8"))) == ast.dump(
            ast.parse(b.path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return False


def _file(state: State, finding: Finding) -> ScriptFile | None:
    path = getattr(finding.subject, "path", None)
    return next((s for s in state.scripts if state.project.rel(s.path) == path), None)


@repairs("AR203", layer=GRAPH)
def recreate_missing(draft: Draft, finding: Finding) -> None:
    step = plan_missing_revision(draft.state, finding)
    if isinstance(step, str):
        draft.refuse(finding, step)
    else:
        draft.add(finding.code, step)


@repairs("AR207", layer=GRAPH)
def move_empty(draft: Draft, finding: Finding) -> None:
    state = draft.state
    empty = _file(state, finding)
    if (empty is not None and empty.revision is not None and draft.applied_is_known
            and not state.graph.named_as_parent(empty.revision) and state.versions is not None
            and empty.revision not in state.graph.applied(state.versions.heads)):
        draft.add(finding.code, MoveToBackup(state.project.rel(empty.path),
                                             why="an empty revision no database here applied"))


@repairs("AR206", layer=GRAPH)
def move_stray(draft: Draft, finding: Finding) -> None:
    state = draft.state
    stray = _file(state, finding)
    if stray is None or stray.revision is not None or stray.error is not None:
        return
    if stray.path.stem in _imported_names(state):
        draft.refuse(finding, f"{stray.path.name} is imported by a revision: keep it")
    else:
        draft.add(finding.code, MoveToBackup(state.project.rel(stray.path),
                                             why="not a revision (no revision id)"))


@repairs("AR202", layer=GRAPH, each=False)
def move_copies(draft: Draft, findings: list[Finding]) -> None:
    """Identical copies of one revision go to the backup; copies that differ are refused."""
    state, duplicate = draft.state, findings[0]
    for revision, copies in state.graph.duplicates().items():
        ordered = sorted(copies, key=lambda s: (len(s.path.name), s.path.name))
        if all(_same_code(ordered[0], other) for other in ordered[1:]):
            for other in ordered[1:]:
                draft.add("AR202", MoveToBackup(state.project.rel(other.path),
                                                why=f"a copy of {ordered[0].path.name}"))
        else:
            draft.refuse(duplicate, f"the files defining {revision} differ: keep the right one "
                         "(git log), move the other out of versions/")


@repairs("AR205", layer=GRAPH, each=False)
def merge_heads(draft: Draft, findings: list[Finding]) -> None:
    state = draft.state
    if state.graph_ok:
        heads = tuple(sorted(state.script_heads))
        draft.add("AR205", WriteMerge(heads, WriteMerge.revision_for(heads)))
