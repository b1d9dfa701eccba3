"""AR2xx: the revision graph, from the files read with ast (and Alembic's import of them)."""

from __future__ import annotations

from collections.abc import Iterator

from ...engine.state.read import State
from ...engine.state.scripts import cycle, dangling, duplicates
from ..findings import AR201, AR202, AR203, AR204, AR205, AR206, AR207, AR208, AR209, Finding
from . import rule


@rule
def files(state: State) -> Iterator[Finding]:
    rel = state.project.rel
    for script in state.scripts:
        where = rel(script.path)
        if script.error is not None:
            line = f":{script.error_line}" if script.error_line else ""
            yield AR201.finding(f"{where}{line}: {script.error}", location=f"{where}{line}")
        elif script.revision is None:
            yield AR206.finding(f"{where} has no `revision = '...'` line", location=where)
        elif script.upgrade == "empty" and not script.is_merge:
            yield AR207.finding(f"revision {script.revision}: upgrade() does nothing",
                                location=where)
        elif script.upgrade == "code" and script.downgrade != "code":
            yield AR208.finding(f"revision {script.revision}: downgrade() is "
                                f"{script.downgrade}", location=where)


@rule
def graph(state: State) -> Iterator[Finding]:
    rel = state.project.rel
    for rev, same in duplicates(state.scripts).items():
        names = ", ".join(rel(s.path) for s in same)
        yield AR202.finding(f"revision {rev!r} is defined in {names}", location=names)
    for script, parent in dangling(state.scripts):
        yield AR203.finding(f"revision {script.revision!r} has down_revision {parent!r}, which "
                            "no file defines", location=rel(script.path))
    members = cycle(state.scripts)
    if members:
        ids = " -> ".join(str(s.revision) for s in members)
        yield AR204.finding(f"revisions {ids} form a cycle",
                            location=", ".join(rel(s.path) for s in members))
    if state.graph_ok and len(state.script_heads) > 1:
        yield AR205.finding(f"{len(state.script_heads)} heads: {', '.join(state.script_heads)}",
                            location=rel(state.project.versions_dir))
    if state.import_error is not None:
        where, message = state.import_error
        yield AR209.finding(f"{where}: {message}", location=where)
