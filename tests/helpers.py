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
