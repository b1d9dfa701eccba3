"""Building real projects under tmp_path and running the real CLI on them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from alembic_repair.engine.project import Project
from alembic_repair.engine.state.schema import SchemaSnapshot, reflect
from alembic_repair.testing.scenarios import execute  # noqa: F401  (re-exported for tests)

MODELS_V1 = '''
from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class Post(Base):
    __tablename__ = "post"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"), index=True)
'''


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def write_project(root: Path, models: str = MODELS_V1, *, spec: str = "app.models:Base") -> Path:
    """A project folder with an ``app`` package and its models named in pyproject.toml."""
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "models.py").write_text(textwrap.dedent(models))
    (root / "pyproject.toml").write_text(f'[tool.alembic_repair]\nmodels = "{spec}"\n')
    return root


def cli(*args: str, cwd: Path, url: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> Run:
    """``python -m alembic_repair ARGS`` in a subprocess, as a user's shell would run it."""
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        full_env["DATABASE_URL"] = url
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", "alembic_repair", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (caches excluded): proves 'no file changed'."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(
            (".db", ".lock", ".db-journal")
        ):
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def table_digest(url: str) -> dict[str, tuple[int, str]]:
    """(row count, checksum of all rows in primary-key order) for every table: proves 'no row
    changed'. alembic_version is included, so a restamp shows up too."""
    engine = create_engine(url)
    result = {}
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            for table in sorted(insp.get_table_names()):
                pk = insp.get_pk_constraint(table).get("constrained_columns") or []
                order = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in pk) or "1"
                quoted = conn.dialect.identifier_preparer.quote(table)
                rows = conn.execute(text(f"SELECT * FROM {quoted} ORDER BY {order}")).all()
                digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
                result[table] = (len(rows), digest)
    finally:
        engine.dispose()
    return result


def columns(url: str, table: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [c["name"] for c in inspect(conn).get_columns(table)]
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    """The tables the database has now (trash and the tool's own included)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def version_rows(url: str) -> list[str]:
    """alembic_version's rows, sorted (an empty list when the row was deleted)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(text("SELECT version_num FROM "
                                                          "alembic_version")))
    finally:
        engine.dispose()


# -- rows kept (tests/test_kill_loop.py, tests/stories.py) -------------------------------------

Rows = dict[str, list[dict[str, str]]]


def user_rows(url: str) -> Rows:
    """Every user table's and trash table's rows (values as repr), in primary-key order; a
    table without a primary key in the order of all its columns (ties in its first column
    may come back in another order after a batch copy of the table)."""
    engine = create_engine(url)
    found: Rows = {}
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            quote = conn.dialect.identifier_preparer.quote
            for name in insp.get_table_names():
                if name in ("alembic_version", "_ar_trash_index"):
                    continue
                pk = insp.get_pk_constraint(name).get("constrained_columns") or [
                    c["name"] for c in insp.get_columns(name)]
                order = ", ".join(quote(c) for c in pk)
                found[name] = [{k: repr(v) for k, v in r._mapping.items()} for r in
                               conn.execute(text(f"SELECT * FROM {quote(name)} ORDER BY {order}"))]
    finally:
        engine.dispose()
    return found


def same_rows(old: list[dict[str, str]], new: list[dict[str, str]]) -> bool:
    """The same rows over the old columns (a column a repair added does not count; column
    order may change: reset recreates the tables from the models)."""
    if len(old) != len(new):
        return False
    columns = set(old[0]) if old else set()
    return [{c: r.get(c) for c in columns} for r in new] == old


def _first_difference(old: list[dict[str, str]], new: list[dict[str, str]]) -> str:
    columns = list(old[0]) if old else []
    for number, (was, now) in enumerate(zip(old, new, strict=False)):
        kept = {c: now.get(c) for c in columns}
        if kept != was:
            return f"; row {number + 1} was {was}, now {kept}"[:600]
    return ""


def rows_kept_problems(before: Rows, after: Rows, *, gone: tuple[str, ...] = ()) -> list[str]:
    """What is not kept, one line per table: each table of `before` holds, in `after`, the same
    rows over its old columns, under its own name or in the trash (``_ar_trash_<stamp>_<t>``;
    a trash table of `before` restored to its table); tables in `gone` may be gone."""
    problems = []
    for name, rows in before.items():
        if name.startswith("_ar_trash_") and name not in after:
            original = name.split("_", 4)[-1]  # _ar_trash_<stamp>_<table>: restored
            if not same_rows(rows, after.get(original, [])):
                problems.append(f"trash table {name} is gone")
            continue
        if name in after:
            if not same_rows(rows, after[name]):
                problems.append(f"table {name}: {len(rows)} rows before, {len(after[name])} "
                                f"after (or values changed)"
                                + _first_difference(rows, after[name]))
            continue
        trash = [t for t in after if t.startswith("_ar_trash_") and t.endswith(f"_{name}")
                 and same_rows(rows, after[t])]
        if not trash and name not in gone:
            problems.append(f"table {name} ({len(rows)} rows) is gone")
    return problems


def assert_rows_kept(before: Rows, after: Rows, *, gone: tuple[str, ...] = ()) -> None:
    problems = rows_kept_problems(before, after, gone=gone)
    assert not problems, "; ".join(problems)


def schema_snapshot(url: str) -> SchemaSnapshot:
    """The database's schema as doctor reflects it (tables, columns, keys, indexes)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return reflect(conn)
    finally:
        engine.dispose()


def old_jsonl_backup(project: Project, path: Path) -> Path:
    """A backup of `project`'s MySQL database in the format the python method wrote before
    issue 14 (``<table>.jsonl.gz``, sha256 over canonical JSON rows, an unsealed manifest):
    such backups must keep verifying and restoring."""
    import json

    from alembic_repair.data.backups.manifest import (
        MANIFEST,
        Manifest,
        database_identity,
        file_sha256,
    )
    from alembic_repair.data.backups.python_method import backup_mysql_jsonl
    from alembic_repair.engine.database import connect

    path.mkdir()
    engine = connect(project)
    try:
        with engine.connect() as conn:
            tables = backup_mysql_jsonl(conn, path, None)
            conn.rollback()
    finally:
        engine.dispose()
    files = {p.name: file_sha256(p) for p in sorted(path.iterdir())}
    old = Manifest(path, "mysql", project.masked_url, "2026-01-01T00:00:00+00:00", tables,
                   files, database_identity(project.url), "python")
    (path / MANIFEST).write_text(json.dumps(old.as_dict()))  # unsealed, as they were
    return path
