"""In-memory `State` objects for the rules' unit tests: no file, no database, no Alembic run.

`healthy()` is a small project in good order: two revisions (aaa111 creates author, bbb222
creates post), the database at bbb222 with exactly that schema, the models equal to it, a
replay of both revisions, and no pending revision. Every test starts from it and changes the
one thing its rule looks at (`dataclasses.replace`-style keyword overrides), so a finding can
only come from that change. The project root does not exist: a rule that read a file would
find nothing there (the rules are meant to read only the State).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alembic_repair.engine.env_filter import EnvFilter
from alembic_repair.engine.project import Project
from alembic_repair.engine.replay import Replay
from alembic_repair.engine.state.config import ConfigState
from alembic_repair.engine.state.pending import Pending, PendingOp, PendingRevision
from alembic_repair.engine.state.read import State
from alembic_repair.engine.state.recorder import VersionTable
from alembic_repair.engine.state.schema import Fact, SchemaSnapshot
from alembic_repair.engine.state.scripts import ScriptFile
from alembic_repair.errors import ConfigError

ROOT = Path("/nonexistent-ar-unit/proj")
VERSIONS = "alembic/versions"
A, B, C = "aaa111", "bbb222", "ccc333"

#: table -> (column, type, nullable); the first column is the primary key.
Tables = Mapping[str, Iterable[tuple[str, str, bool]]]

AUTHOR: Tables = {"author": [("id", "INTEGER", False), ("name", "VARCHAR(100)", False)]}
POST: Tables = {"post": [("id", "INTEGER", False), ("title", "VARCHAR(200)", True),
                         ("author_id", "INTEGER", True)]}


def project(url: str = "sqlite:///app.db", *, problems: tuple[ConfigError, ...] = (),
            ignore_tables: tuple[str, ...] = ()) -> Project:
    return Project(ROOT, ROOT / "alembic.ini", ROOT / "alembic", url, "test",
                   problems=problems, ignore_tables=ignore_tables)


def config(**changes: Any) -> ConfigState:
    """A configuration in good order, with `changes`."""
    values: dict[str, Any] = dict(
        ini_exists=True, script_location_raw="%(here)s/alembic", prepend_sys_path=True,
        script_location_exists=True, env_py_exists=True, versions_dir_exists=True,
        render_as_batch=True, compare_type_off=False,
        env_filter=EnvFilter(current=True, kept=frozenset(), unwired=(), unsafe=()))
    values.update(changes)
    return ConfigState(**values)


def script(revision: str | None, *parents: str, name: str | None = None,
           upgrade: str = "code", downgrade: str = "code", error: str | None = None,
           error_line: int | None = None) -> ScriptFile:
    """One revision file of versions/ (named `name`.py, else after its revision)."""
    path = ROOT / VERSIONS / f"{name or revision}.py"
    return ScriptFile(path, revision, tuple(parents), error, error_line, upgrade, downgrade)


def chain(*revisions: str) -> tuple[ScriptFile, ...]:
    """Linear history: each revision's parent is the one before it."""
    return tuple(script(rev, *revisions[i - 1:i]) for i, rev in enumerate(revisions))


def schema(*parts: Tables, extra: Iterable[Fact] = ()) -> SchemaSnapshot:
    """A snapshot with the tables of `parts` (columns, primary key on the first) and `extra`."""
    facts: set[Fact] = set(extra)
    for tables in parts:
        for table, columns in tables.items():
            columns = list(columns)
            facts.add(("table", table))
            facts.update(("column", table, name, type_, nullable, None)
                         for name, type_, nullable in columns)
            facts.add(("pk", table, (columns[0][0],)))
    return SchemaSnapshot(frozenset(facts))


def heads(scripts: Iterable[ScriptFile]) -> tuple[str, ...]:
    """The ids no file names as its parent (computed here, not by the code under test)."""
    named = {s.revision for s in scripts if s.revision is not None}
    return tuple(sorted(named - {p for s in scripts for p in s.down_revisions}))


def replay(snapshots: Mapping[str, SchemaSnapshot], **changes: Any) -> Replay:
    return Replay(tuple(snapshots), dict(snapshots), **changes)


def revision(rev: str, *operations: Any, batch: bool = False,
             markers: Iterable[str] = ()) -> PendingRevision:
    """A pending revision issuing `operations` (alembic ``ops`` objects) from lines 20, 21..."""
    return PendingRevision(rev, f"{VERSIONS}/{rev}.py", tuple(
        PendingOp(op, 20 + i, batch) for i, op in enumerate(operations)), frozenset(markers))


_UNSET: Any = object()


def healthy(*, url: str = "sqlite:///app.db", problems: tuple[ConfigError, ...] = (),
            ignore_tables: tuple[str, ...] = (), scripts: tuple[ScriptFile, ...] | None = None,
            live: SchemaSnapshot | None = _UNSET, models: SchemaSnapshot | None = _UNSET,
            replay_: Replay | None = _UNSET, pending: Pending | None = _UNSET,
            **changes: Any) -> State:
    """The project in good order, with overrides (any other `State` field by keyword).

    `models` defaults to `live` (after overriding), `pending` to an empty Pending over it."""
    at_a, at_b = schema(AUTHOR), schema(AUTHOR, POST)
    scripts = chain(A, B) if scripts is None else scripts
    live = at_b if live is _UNSET else live
    values: dict[str, Any] = dict(
        import_error=None,
        versions=VersionTable(True, (B,), 32, True),
        live=live,
        models=live if models is _UNSET else models,
        replay=replay({A: at_a, B: at_b}) if replay_ is _UNSET else replay_,
        pending=Pending(dialect=url.split(":")[0].split("+")[0], live=live)
        if pending is _UNSET else pending,
    )
    values.update(changes)
    cfg = values.pop("config", None) or config()
    return State(project(url, problems=problems, ignore_tables=ignore_tables), cfg, scripts,
                 heads(scripts), **values)


def offline(scripts: tuple[ScriptFile, ...], **changes: Any) -> State:
    """Only the files: no database was read (what doctor has when it cannot connect)."""
    values: dict[str, Any] = dict(versions=None, live=None, models=None, replay_=None,
                                  pending=None)
    return healthy(scripts=scripts, **{**values, **changes})


def with_pending(*revisions: PendingRevision, dialect: str = "sqlite",
                 data: Mapping[tuple[Any, ...], Any] | None = None, **changes: Any) -> State:
    """The database at bbb222 with `revisions` (children of bbb222, in order) not applied yet,
    and `data`: the answers the row queries gave (`Pending.data`)."""
    live = changes.pop("live", schema(AUTHOR, POST))
    ids = [r.revision for r in revisions]
    scripts = chain(A, B, *ids)
    url = "sqlite:///app.db" if dialect == "sqlite" else f"{dialect}+pymysql://u@db/app"
    pending = Pending(tuple(revisions), (), dialect, live, dict(data or {}),
                      changes.pop("once_defaults", ()))
    return healthy(url=url, scripts=scripts, live=live, pending=pending, **changes)
