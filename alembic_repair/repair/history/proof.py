"""Scratch databases for the history repairs: the schema before a revision (the live tables
rebuilt, then the downgrades of what ran after it) and the proof that a repaired history
builds an empty database whose schema at the recorded revision equals the live one."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from ...engine import migrations, revisions
from ...engine.models import load_target_metadata, project_on_path
from ...engine.project import Project
from ...engine.replay import run_replay, scratch_database
from ...engine.state.schema import SchemaSnapshot, describe, is_user_table, reflect_tables
from ...engine.state.scripts import ScriptFile, read_scripts
from ...errors import AlembicRepairError, NeedsRepair


def run(conn: Connection, fn: Callable[[], Any]) -> None:
    """One revision function (upgrade or downgrade) through Alembic's operations."""
    with Operations.context(MigrationContext.configure(conn)):
        fn()
    conn.commit()


def invoke_ops(conn: Connection, upgrade_ops: ops.UpgradeOps) -> None:
    with Operations.context(MigrationContext.configure(conn)) as operations:
        for operation in upgrade_ops.ops:
            operations.invoke(operation)
    conn.commit()


def reflect_metadata(conn: Connection, tables: Iterable[str] | None = None) -> MetaData:
    names = [t for t in inspect(conn).get_table_names() if is_user_table(t)]
    if tables is not None:
        wanted = set(tables)
        names = [t for t in names if t in wanted]
    metadata = MetaData()
    metadata.reflect(conn, only=names)
    conn.rollback()
    return metadata


def load(path: Path) -> ModuleType:
    from alembic.util import load_python_file

    return load_python_file(str(path.parent), path.name)


def words(text: str) -> set[str]:
    """The identifier-like words of `text` (table names inside SQL or an error message)."""
    return set("".join(c if c.isalnum() or c in "_$" else " " for c in text).split())


def file_names(path: Path) -> set[str]:
    """Every string constant of a revision file, and each one's words: the names of the
    tables it may touch (whole, or inside SQL)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names |= {node.value} | words(node.value)
    return names


def _history_names(project: Project) -> set[str]:
    """`file_names` of every revision file."""
    return set().union(*(file_names(s.path) for s in read_scripts(project.versions_dir)))


def kept_tables(project: Project, conn: Connection, models: str | None) -> list[str]:
    """The live tables a rebuilt revision may describe: those the models or the revision
    files name. A table neither knows (AR406) stays in the database and out of the history."""
    live = [t for t in inspect(conn).get_table_names() if is_user_table(t)]
    conn.rollback()
    try:
        with project_on_path(project.root):
            metadata = load_target_metadata(project, explicit=models)
    except AlembicRepairError:
        metadata = None
    if metadata is None:
        return sorted(live)
    known = set(metadata.tables) | _history_names(project)
    return sorted(t for t in live if t in known)


def schema_after_downgrades(project: Project, conn: Connection, tables: list[str],
                            downgrades: list[Path],
                            advice: str = "restore the missing revision from git") -> MetaData:
    """The live `tables` rebuilt on a scratch database, then the downgrade() of each file in
    `downgrades` (newest first) run there: the schema before those revisions ran. A failing
    downgrade is refused with `advice` (what the caller's user can do instead)."""
    live = reflect_metadata(conn, tables)
    with project_on_path(project.root), scratch_database(project, conn.engine) as scratch:
        invoke_ops(scratch, revisions.create_ops(live))
        for path in downgrades:
            try:
                run(scratch, load(path).downgrade)
            except Exception as err:  # the revision's own code
                scratch.rollback()
                said = (str(err).splitlines() or [""])[0][:200]  # NotImplementedError(): ""
                raise NeedsRepair(
                    f"{project.rel(path)}: its downgrade() fails on a copy of the live schema "
                    f"({type(err).__name__}{': ' + said if said else ''}), so the schema "
                    f"before it cannot be rebuilt; {advice}"
                ) from None
        return reflect_metadata(scratch)


def prove(project: Project, conn: Connection, recorded: str) -> str | None:
    """Replay the history now in versions/ from an empty database; None when it builds and
    its schema at `recorded` equals the live one, else what differs."""
    with project_on_path(project.root):
        directory = migrations.scripts(project)
        replay = run_replay(project, directory, conn.engine)
    if replay.failed_at is not None:
        return f"replaying from an empty database fails at {replay.failed_at}: {replay.error}"
    expected = replay.snapshots.get(recorded)
    if expected is None:
        return f"revision {recorded} is not in the replayed history"
    known: set[str] = set().union(*(s.tables for s in replay.snapshots.values()))
    live_names = [t for t in inspect(conn).get_table_names() if t in known]
    live = reflect_tables(conn, live_names)
    conn.rollback()
    if live == expected:
        return None
    return _difference(live, expected, recorded)


def _difference(live: SchemaSnapshot, expected: SchemaSnapshot, recorded: str) -> str:
    extra = sorted(describe(f) for f in live - expected)[:6]
    missing = sorted(describe(f) for f in expected - live)[:6]
    return (f"the rebuilt history's schema at {recorded} differs from the database: in the "
            f"database only: {', '.join(extra) or 'nothing'}; in the history only: "
            f"{', '.join(missing) or 'nothing'}")


def by_revision(project: Project) -> dict[str, ScriptFile]:
    return {s.revision: s for s in read_scripts(project.versions_dir) if s.revision}


