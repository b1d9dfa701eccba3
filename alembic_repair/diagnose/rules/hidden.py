"""AR113 / AR511: what plain Alembic would do to the tables the tool owns or was told to keep.

The user's own ``alembic revision --autogenerate`` compares the models with every table: a
soft-dropped table (``_ar_trash_*``), the trash index and a table kept on purpose get
``op.drop_table`` unless env.py hides them (`env_filter`). AR113 says env.py does not; AR511
finds a pending revision that such an autogenerate already wrote.
"""

from __future__ import annotations

from collections.abc import Iterator

from alembic.operations import ops

from ...engine.env_filter import OWN_PREFIX
from ...engine.state.pending import PendingOp, PendingRevision
from ...engine.state.read import State
from ..findings import AR113, AR511, Finding
from ..subjects import HiddenDrops, KeptModels, RevisionFile, SetupFile, Visible
from . import rule

#: What takes a table (or part of it) away: autogenerate's rendering of "not in the models".
DROPS = (ops.DropTableOp, ops.DropIndexOp, ops.DropConstraintOp, ops.DropColumnOp)


def hidden(state: State, table: object) -> bool:
    return isinstance(table, str) and (table.startswith(OWN_PREFIX)
                                       or table in state.kept_tables)


def hidden_drops(state: State) -> list[tuple[PendingRevision, list[PendingOp], list[str]]]:
    """(revision, its operations dropping hidden tables or their parts, those tables)."""
    found = []
    for revision in state.pending.revisions if state.pending is not None else ():
        items = [i for i in revision.ops if isinstance(i.operation, DROPS)
                 and hidden(state, getattr(i.operation, "table_name", None))]
        if items:
            tables = sorted({str(i.operation.table_name) for i in items})
            found.append((revision, items, tables))
    return found


@rule("AR113")
def visible_to_autogenerate(state: State) -> Iterator[Finding]:
    env, project = state.config.env_filter, state.project
    env_py = SetupFile(project.rel(project.env_py))
    if state.kept_models:
        names = ", ".join(state.kept_models)
        yield AR113.finding(
            f"kept table{'s' if len(state.kept_models) > 1 else ''} {names} now "
            f"{'have models' if len(state.kept_models) > 1 else 'has a model'}, yet doctor "
            "and autogenerate skip kept tables: changes to it go unseen",
            subject=env_py, facts=KeptModels(tuple(state.kept_models)),
            fix=f"remove {names} from [tool.alembic_repair] ignore_tables and from env.py's "
                "_AR_KEPT_TABLES")
    if not state.config.env_py_exists:
        return  # no env.py: AR104 speaks for it
    wanted = set(project.ignore_tables)
    if not state.hidden_tables and not wanted:
        return
    if env is None:
        yield AR113.finding(
            "cannot tell whether plain `alembic revision --autogenerate` would drop "
            f"{', '.join(state.hidden_tables) or ', '.join(sorted(wanted))}: env.py cannot be "
            "read, decoded or parsed",
            subject=env_py,
            facts=Visible(tuple(state.hidden_tables) or tuple(sorted(wanted)), readable=False),
            fix="fix env.py (its encoding: UTF-8 unless a coding line says otherwise), then run "
                "doctor again")
        return
    if env.complete and wanted <= env.kept:
        return
    seen = set(state.hidden_tables) if not env.complete else \
        {t for t in state.hidden_tables if not t.startswith(OWN_PREFIX) and t not in env.kept}
    seen |= wanted - (env.kept if env.complete else set())
    listing = sorted(seen)
    shown = ", ".join(listing[:8]) + (f" and {len(listing) - 8} more" if len(listing) > 8 else "")
    why = ("env.py has no autogenerate filter" if not env.current and not env.kept else
           "env.py's filter does not list them" if env.complete else
           "some context.configure(...) call does not pass the filter "
           f"(line {', '.join(str(n) for n in env.unwired)})" if env.current else
           "env.py's filter block is not the current one")
    dropped = {t for _, _, tables in hidden_drops(state) for t in tables}
    yield AR113.finding(
        f"{why}: plain `alembic revision --autogenerate` would drop {shown or 'them'}, and "
        "`alembic check` fails" + (f"; a pending revision already drops "
                                   f"{', '.join(sorted(dropped))} (AR511)" if dropped else ""),
        subject=env_py, facts=Visible(tuple(listing)),
        severity="error" if dropped else None,
        fix=env.why or None)


@rule("AR511")
def drops_hidden_tables(state: State) -> Iterator[Finding]:
    for revision, items, tables in hidden_drops(state):
        yield AR511.finding(
            f"revision {revision.revision} drops {', '.join(tables)} "
            f"({len(items)} operation{'s' if len(items) > 1 else ''}): "
            + ("the trash's rows would be lost" if any(t.startswith(OWN_PREFIX) for t in tables)
               else "tables kept out of autogenerate would be lost"),
            subject=RevisionFile(revision.path, revision.revision, items[0].line),
            facts=HiddenDrops(tuple(tables)))
