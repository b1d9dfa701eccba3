"""Benchmark: ``alembic-repair doctor`` on a long history vs one ``alembic upgrade head``.

Requirement: on a generated history of 300 revisions over 100 tables, ``doctor`` (including the
replay of the history on a scratch database) costs at most 1.5x one ``alembic upgrade head`` of
the same history on the same backend, measured side by side in one run; and on a database at
head with nothing wrong, the cache makes the second ``doctor`` at least 5x faster than the first.

Usage::

    python benchmarks/bench_doctor.py [--backend sqlite|mariadb|both] [--runs N]
        [--revisions 300] [--tables 100] [--warmup N] [--bytecode cached|as-is] [--profile]

Run it with the interpreter of the venv under test: ``alembic`` and ``alembic-repair`` are taken
from the bin directory of ``sys.executable``. The script generates a project in a temp dir:
``app/models.py`` (the tables at the head of the history), ``[tool.alembic_repair] models`` in
pyproject.toml, alembic.ini / env.py / script.py.mako from
``alembic_repair.engine.scaffold``, and the revision files as literal Python text with fixed
ids. The first ``--tables`` revisions create one table each (a few columns; more than half
have a foreign key to an earlier table); the rest add
columns, create indexes and add unique constraints, spread over the tables (unique constraints in
``batch_alter_table``, which SQLite needs for them; add_column and create_index run plain).

Each run uses a FRESH empty database (a new SQLite file, or a new database on a throwaway
MariaDB server started in a temp dir on a free loopback port) and times, as fresh processes
started from the project folder with ``DATABASE_URL`` set:

- A ``alembic upgrade head`` (empty database -> head);
- B ``alembic-repair doctor --no-cache --format json`` on that database (full replay);
- C1, C2 ``alembic-repair doctor --format json`` twice with ``XDG_CACHE_HOME`` pointing to a new
  empty folder: C1 replays and fills the replay cache, C2 is the cached run.

Every upgrade must exit 0; every doctor must exit 0 and report ``healthy: true``, the head as
the recorded revision, every table, a replay of the whole history that did not fail, and
``cached`` false for B and C1, true for C2. Budgets: median(B) / median(A) <= 1.5 and
median(C1) / median(C2) >= 5.

``--profile`` adds, per backend, on one more database at head: the wall time of fresh processes
that do no replay (the floor under a cached doctor), a breakdown of in-process
``alembic_repair.doctor`` calls by step (uncached, first, cached), a cProfile of the in-process
``alembic_repair.doctor(project, use_cache=False)`` (top 30 by cumulative time, top 15 by own
time), and a cProfile of a fresh cached ``alembic-repair doctor`` process (top 30 cumulative).

Exit code: 0 when every run behaved, 1 otherwise. Being over a budget is reported, not an error.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from _processes import (
    Run,
    child_env,
    describe,
    environment,
    load,
    machine_facts,
    run,
    shorten_paths,
)

REPO = Path(__file__).resolve().parent.parent
# Not resolved: in a venv, bin/python is a symlink to the base interpreter, and the scripts we
# want live beside the symlink.
BIN = Path(sys.executable).parent
ALEMBIC = BIN / "alembic"
ALEMBIC_REPAIR = BIN / "alembic-repair"

REPLAY_BUDGET = 1.5  # doctor --no-cache / alembic upgrade head, at most
CACHE_BUDGET = 5.0  # first doctor / second (cached) doctor, at least
MODELS = "app.models:Base"

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
RUN_TIMEOUT = 1800.0


class BenchError(Exception):
    """A run did not behave as required (wrong output, non-zero exit, server did not start)."""


# ---------------------------------------------------------------------------------------
# The generated history
# ---------------------------------------------------------------------------------------

# kind -> (the type as a revision file writes it, the type as the models write it)
TYPES = {
    "int": ("sa.Integer()", "Integer"),
    "str100": ("sa.String(length=100)", "String(100)"),
    "str50": ("sa.String(length=50)", "String(50)"),
    "text": ("sa.Text()", "Text"),
    "num": ("sa.Numeric(precision=10, scale=2)", "Numeric(10, 2)"),
    "bool": ("sa.Boolean()", "Boolean"),
    "dt": ("sa.DateTime()", "DateTime"),
}
INDEXABLE = {"int", "str100", "str50", "num", "bool", "dt"}  # TEXT needs a prefix on MySQL
# What the added columns cycle through: (kind, nullable, server default)
ADDED: list[tuple[str, bool, str | None]] = [
    ("str50", True, None), ("int", True, None), ("int", False, "0"), ("bool", True, None),
    ("dt", True, None), ("num", True, None),
]


@dataclass
class Column:
    name: str
    kind: str
    nullable: bool = True
    default: str | None = None  # server default, SQL text
    references: str | None = None  # a foreign key to <table>.id

    def revision_text(self, table: str) -> str:
        default = f", server_default=sa.text({self.default!r})" if self.default else ""
        return (f"sa.Column({self.name!r}, {TYPES[self.kind][0]}{default}, "
                f"nullable={self.nullable})")

    def model_text(self, table: str) -> str:
        args = [TYPES[self.kind][1]]
        if self.references:
            args.append(f"ForeignKey({self.references + '.id'!r}, "
                        f"name={fk_name(table, self.name)!r})")
        args.append(f"nullable={self.nullable}")
        if self.default:
            args.append(f"server_default=text({self.default!r})")
        return f"{self.name} = mapped_column({', '.join(args)})"


@dataclass
class Table:
    name: str
    columns: list[Column]
    indexes: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    uniques: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def free_columns(self) -> list[Column]:
        """Columns an index or unique constraint may take: not the key, no foreign key, not
        already covered by one."""
        taken = {c for _, cols in self.indexes + self.uniques for c in cols}
        return [c for c in self.columns if c.kind in INDEXABLE and c.references is None
                and c.name != "id" and c.name not in taken]


@dataclass(frozen=True)
class Revision:
    number: int
    rev_id: str
    down: str | None
    slug: str
    message: str
    upgrade: tuple[str, ...]
    downgrade: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"{self.rev_id}_r{self.number:03d}_{self.slug}.py"


def rev_id(number: int) -> str:
    """rev001 -> 'de0000000001': fixed, 12 hex digits, sorted like the history."""
    return f"de0000000{number:03d}"


def fk_name(table: str, column: str) -> str:
    return f"fk_{table}_{column}"


def _create_table(number: int) -> tuple[Table, list[str], list[str]]:
    name = f"t{number:03d}"
    columns = [Column("id", "int", nullable=False), Column("name", "str100", nullable=False)]
    if number % 3 == 0:
        columns.append(Column("note", "text"))
    if number % 4 == 1:
        columns.append(Column("amount", "num"))
    if number % 5 == 2:
        columns.append(Column("created_at", "dt"))
    if number % 6 == 3:
        columns.append(Column("active", "bool", nullable=False, default="0"))
    refs: list[int] = []
    if number > 2 and number % 2 == 0:  # about half the tables point to an earlier one
        refs.append(1 + (number * 37) % (number - 1))
    if number > 10 and number % 10 == 7:  # and a few odd-numbered ones
        refs.append(1 + (number * 11) % (number - 1))
    for ref in refs:
        columns.append(Column(f"t{ref:03d}_id", "int", references=f"t{ref:03d}"))
    table = Table(name, columns)
    up = ["op.create_table(", f"    {name!r},"]
    up += [f"    {c.revision_text(name)}," for c in columns]
    up += [f"    sa.ForeignKeyConstraint([{c.name!r}], [{c.references + '.id'!r}], "
           f"name={fk_name(name, c.name)!r})," for c in columns if c.references]
    up += ["    sa.PrimaryKeyConstraint('id'),", ")"]
    return table, up, [f"op.drop_table({name!r})"]


def _pick(tables: list[Table], start: int) -> tuple[Table, list[Column]] | None:
    for step in range(len(tables)):
        table = tables[(start + step) % len(tables)]
        free = table.free_columns()
        if free:
            return table, free
    return None


def build_history(revisions: int, tables: int) -> tuple[list[Revision], list[Table]]:
    """The revisions, oldest first, and the tables at head (what the models must say)."""
    if revisions < tables or tables < 1:
        raise ValueError("--revisions must be at least --tables, and --tables at least 1")
    result: list[Revision] = []
    schema: list[Table] = []
    for number in range(1, revisions + 1):
        j = number - tables - 1  # index among the alterations
        if number <= tables:
            table, up, down = _create_table(number)
            schema.append(table)
            slug, message = f"create_{table.name}", f"create table {table.name}"
        else:
            op = ("add_column", "index", "add_column", "unique")[j % 4]
            picked = None
            if op == "index":
                picked = _pick(schema, (j * 29) % len(schema))
            elif op == "unique":
                picked = _pick(schema, (j * 31 + 7) % len(schema))
            if picked is not None and op == "index":
                table, free = picked
                cols = tuple(c.name for c in free[:2]) if j % 8 == 5 and len(free) > 1 else (
                    free[0].name,)
                index = f"ix_{table.name}_{'_'.join(cols)}"
                table.indexes.append((index, cols))
                up = [f"op.create_index({index!r}, {table.name!r}, {list(cols)!r}, "
                      "unique=False)"]
                down = [f"op.drop_index({index!r}, table_name={table.name!r})"]
                slug, message = f"index_{table.name}", f"index {table.name}({', '.join(cols)})"
            elif picked is not None and op == "unique":
                table, free = picked
                # a code-like column if there is one: str/int, else the name
                likely = ([c for c in free if c.kind in ("str50", "int")]
                          or [c for c in free if c.kind == "str100"] or free)
                cols = (likely[-1].name,)
                unique = f"uq_{table.name}_{cols[0]}"
                table.uniques.append((unique, cols))
                batch = f"with op.batch_alter_table({table.name!r}, schema=None) as batch_op:"
                up = [batch, f"    batch_op.create_unique_constraint({unique!r}, {list(cols)!r})"]
                down = [batch, f"    batch_op.drop_constraint({unique!r}, type_='unique')"]
                slug, message = f"unique_{table.name}", f"unique {table.name}({cols[0]})"
            else:
                table = schema[(j * 53) % len(schema)]
                kind, nullable, default = ADDED[(j // 2) % len(ADDED)]
                column = Column(f"c{number:03d}", kind, nullable, default)
                table.columns.append(column)
                up = [f"op.add_column({table.name!r}, {column.revision_text(table.name)})"]
                down = [f"op.drop_column({table.name!r}, {column.name!r})"]
                slug, message = f"add_{table.name}_{column.name}", \
                    f"add column {table.name}.{column.name}"
        previous = result[-1].rev_id if result else None
        result.append(Revision(number, rev_id(number), previous, slug, message, tuple(up),
                               tuple(down)))
    return result, schema


def render_revision(rev: Revision) -> str:
    def body(lines: Sequence[str]) -> str:
        return "\n".join(f"    {line}" for line in lines)

    revises = rev.down or ""
    return f'''"""{rev.message}

Revision ID: {rev.rev_id}
Revises: {revises}
Create Date: 2024-01-01 00:00:{rev.number % 60:02d}.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {rev.rev_id!r}
down_revision: Union[str, Sequence[str], None] = {rev.down!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
{body(rev.upgrade)}


def downgrade() -> None:
    """Downgrade schema."""
{body(rev.downgrade)}
'''


def render_models(tables: Sequence[Table]) -> str:
    out = [
        '"""The models at the head of the generated history (written by bench_doctor.py)."""',
        "",
        "from sqlalchemy import (",
        "    Boolean, DateTime, ForeignKey, Index, Integer, Numeric, String, Text,",
        "    UniqueConstraint, text,",
        ")",
        "from sqlalchemy.orm import DeclarativeBase, mapped_column",
        "",
        "",
        "class Base(DeclarativeBase):",
        "    pass",
    ]
    for table in tables:
        out += ["", "", f"class {table.name.upper()}(Base):",
                f"    __tablename__ = {table.name!r}"]
        args = [f"Index({name!r}, {', '.join(map(repr, cols))})" for name, cols in table.indexes]
        args += [f"UniqueConstraint({', '.join(map(repr, cols))}, name={name!r})"
                 for name, cols in table.uniques]
        if args:
            out += ["    __table_args__ = (", *[f"        {a}," for a in args], "    )"]
        out.append("")
        out.append("    id = mapped_column(Integer, primary_key=True)")
        out += [f"    {c.model_text(table.name)}" for c in table.columns if c.name != "id"]
    return "\n".join(out) + "\n"


def write_project(root: Path, revisions: int, tables: int) -> tuple[str, int]:
    """The generated project under `root`; returns the head and the number of tables."""
    from alembic_repair import Project
    from alembic_repair.engine import scaffold

    history, schema = build_history(revisions, tables)
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("", encoding="utf-8")
    (root / "app" / "models.py").write_text(render_models(schema), encoding="utf-8")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "bench-doctor-app"\nversion = "0"\n\n'
        f'[tool.alembic_repair]\nmodels = "{MODELS}"\n', encoding="utf-8")
    project = Project.discover(root, environ={})
    for write in (scaffold.write_alembic_ini, scaffold.write_script_template):
        write(project)
    scaffold.write_env_py(project, MODELS)
    project = Project.discover(root, environ={})  # alembic.ini now names script_location
    scaffold.ensure_versions_dir(project)
    for rev in history:
        (project.versions_dir / rev.filename).write_text(render_revision(rev), encoding="utf-8")
    kinds: dict[str, int] = {}
    for rev in history:
        kind = rev.slug.split("_")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    columns = sum(len(t.columns) for t in schema)
    fks = sum(1 for t in schema for c in t.columns if c.references)
    print(f"  generated {len(history)} revisions ({', '.join(f'{v} {k}' for k, v in kinds.items())}"
          f") over {len(schema)} tables: at head {columns} columns, {fks} foreign keys, "
          f"{sum(len(t.indexes) for t in schema)} indexes, "
          f"{sum(len(t.uniques) for t in schema)} unique constraints")
    return history[-1].rev_id, len(schema)


# ---------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------


def check_upgrade(result: Run) -> None:
    if result.returncode != 0:
        raise BenchError(describe("alembic upgrade head failed", result))


def check_doctor(result: Run, head: str, revisions: int, tables: int,
                 cached: bool) -> dict[str, Any]:
    """The JSON of a healthy doctor on a database at head, or BenchError."""
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise BenchError(describe("doctor did not print JSON", result)) from None
    state = report.get("state", {})
    replay = state.get("replay") or {}
    problems = []
    if result.returncode != 0:
        problems.append(f"exit {result.returncode}")
    if report.get("healthy") is not True:
        problems.append("healthy is not true")
    if state.get("recorded") != [head]:
        problems.append(f"recorded {state.get('recorded')}, expected [{head!r}]")
    if len(state.get("tables") or ()) != tables:
        problems.append(f"{len(state.get('tables') or ())} tables, expected {tables}")
    if replay.get("revisions") != revisions or replay.get("failed_at") is not None:
        problems.append(f"replay {replay}, expected {revisions} revisions, not failed")
    # A cached doctor is answered either from its verdict (the quick path: the stored JSON of
    # the first run) or, when the verdict cannot be used, from the replay cache.
    reused = bool(state.get("verdict_from_cache")) or replay.get("cached") is True
    if reused is not cached:
        problems.append(f"reused cache={reused} (verdict {state.get('verdict_from_cache')}, "
                        f"replay {replay.get('cached')}), expected {cached}")
    if head not in (state.get("schema_equals_revisions") or ()):
        problems.append(f"the schema does not equal the replayed {head}")
    if problems:
        raise BenchError(describe(f"doctor misbehaved ({'; '.join(problems)})", result))
    return dict(report)


# ---------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------


class Databases(Protocol):
    name: str

    def create(self, label: str) -> str: ...

    def drop(self, label: str) -> None: ...

    def leftovers(self) -> list[str]: ...


class SQLiteDatabases:
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, label: str) -> Path:
        return self.folder / f"{label}.db"

    def create(self, label: str) -> str:
        path = self.path(label)
        if path.exists():
            raise BenchError(f"{path} exists already")
        return f"sqlite:///{path}"

    def drop(self, label: str) -> None:
        self.path(label).unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        return []  # the replay runs in memory


class MariaDBDatabases:
    name = "mariadb"

    def __init__(self, port: int) -> None:
        self.port = port

    def _execute(self, sql: str) -> list[tuple[Any, ...]]:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="",
                               autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def create(self, label: str) -> str:
        self._execute(f"CREATE DATABASE `{label}` CHARACTER SET utf8mb4 "
                      "COLLATE utf8mb4_unicode_ci")
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{label}"

    def drop(self, label: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS `{label}`")

    def leftovers(self) -> list[str]:
        """Scratch databases of the replay that were not dropped."""
        return [str(row[0]) for row in self._execute("SHOW DATABASES LIKE '\\_ar\\_replay\\_%'")]


@contextmanager
def mariadb_server() -> Iterator[MariaDBDatabases]:
    """The project's throwaway MariaDB server (own data dir and tmpdir, a free loopback port)."""
    from alembic_repair.testing.mariadb import MissingServer, throwaway_server

    try:
        with throwaway_server() as server:
            yield MariaDBDatabases(server.port)
    except MissingServer as err:
        raise BenchError(str(err)) from err


@contextmanager
def sqlite_files(workdir: Path) -> Iterator[SQLiteDatabases]:
    yield SQLiteDatabases(workdir / "db")


# ---------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    project: Path
    workdir: Path
    head: str
    revisions: int
    tables: int
    bytecode: str


@dataclass(frozen=True)
class RunResult:
    upgrade: Run
    nocache: Run
    first: Run
    cached: Run
    info: tuple[str, ...]  # findings of severity info, if any


def one_run(setup: Setup, databases: Databases, label: str) -> RunResult:
    """A -> B -> C1 -> C2 on a fresh empty database, which is dropped afterwards."""
    url = databases.create(label)
    pycache = setup.workdir / "pycache"
    cache_b, cache_c = (setup.workdir / "xdg" / f"{label}-{x}" for x in ("b", "c"))
    env_b = child_env(url, setup.bytecode, pycache, XDG_CACHE_HOME=str(cache_b))
    env_c = child_env(url, setup.bytecode, pycache, XDG_CACHE_HOME=str(cache_c))
    doctor = [ALEMBIC_REPAIR, "doctor", "--format", "json"]
    args = setup.head, setup.revisions, setup.tables
    try:
        a = run([ALEMBIC, "upgrade", "head"], setup.project, env_b, RUN_TIMEOUT)
        check_upgrade(a)
        b = run([*doctor, "--no-cache"], setup.project, env_b, RUN_TIMEOUT)
        report = check_doctor(b, *args, cached=False)
        if any(cache_b.rglob("*.json")):
            raise BenchError(f"doctor --no-cache wrote a replay cache in {cache_b}")
        c1 = run(doctor, setup.project, env_c, RUN_TIMEOUT)
        check_doctor(c1, *args, cached=False)
        c2 = run(doctor, setup.project, env_c, RUN_TIMEOUT)
        check_doctor(c2, *args, cached=True)
        left = databases.leftovers()
        if left:
            raise BenchError(f"scratch databases left behind by the replay: {left}")
    finally:
        databases.drop(label)
    info = tuple(f"{f.get('code')} {f.get('message')}" for f in report.get("findings", ()))
    return RunResult(a, b, c1, c2, info)


@dataclass(frozen=True)
class Figures:
    backend: str
    results: tuple[RunResult, ...]

    def wall(self, what: str) -> list[float]:
        return [getattr(r, what).seconds for r in self.results]

    def cpu(self, what: str) -> list[float]:
        return [getattr(r, what).cpu_seconds for r in self.results]

    def median(self, what: str) -> float:
        return statistics.median(self.wall(what))

    def ratio(self, top: str, bottom: str) -> float:
        return self.median(top) / self.median(bottom)

    def paired(self, top: str, bottom: str) -> float:
        """Median of the run-by-run ratios: each pair ran on the same database, back to back."""
        return statistics.median(t / b for t, b in zip(self.wall(top), self.wall(bottom),
                                                       strict=True))


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def print_table(all_figures: Sequence[Figures], revisions: int, tables: int) -> None:
    print(f"\n{revisions} revisions over {tables} tables. Wall time of fresh processes, median "
          "(min-max); CPU = user + system time of the process (not the database server), "
          "median.\n")
    print("| backend | runs | A `alembic upgrade head` | B `doctor --no-cache` | B/A | budget "
          "<= 1.5x | C1 first `doctor` | C2 cached `doctor` | C1/C2 | budget >= 5x |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for f in all_figures:
        def cell(what: str, figures: Figures = f) -> str:
            values = figures.wall(what)
            return (f"{seconds(statistics.median(values))} ({min(values):.2f}-"
                    f"{max(values):.2f})")

        replay_ok = f.ratio("nocache", "upgrade") <= REPLAY_BUDGET
        cache_ok = f.ratio("first", "cached") >= CACHE_BUDGET
        print(f"| {f.backend} | {len(f.results)} | {cell('upgrade')} | {cell('nocache')} "
              f"| {f.ratio('nocache', 'upgrade'):.2f}x "
              f"| {'within' if replay_ok else '**missed**'} | {cell('first')} | {cell('cached')} "
              f"| {f.ratio('first', 'cached'):.2f}x | {'within' if cache_ok else '**missed**'} |")
    print("\n| backend | paired B/A | paired C1/C2 | CPU A | CPU B | CPU C1 | CPU C2 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for f in all_figures:
        cpus = " | ".join(seconds(statistics.median(f.cpu(w)))
                          for w in ("upgrade", "nocache", "first", "cached"))
        print(f"| {f.backend} | {f.paired('nocache', 'upgrade'):.2f}x "
              f"| {f.paired('first', 'cached'):.2f}x | {cpus} |")
    print()
    for f in all_figures:
        replay = f.ratio("nocache", "upgrade")
        allowed = f.median("upgrade") * REPLAY_BUDGET
        verdict = (f"within budget ({allowed - f.median('nocache'):.2f} s under the "
                   f"{allowed:.2f} s allowed)" if replay <= REPLAY_BUDGET else
                   f"MISSED by {f.median('nocache') - allowed:.2f} s (the budget allows "
                   f"{allowed:.2f} s)")
        print(f"{f.backend}: doctor --no-cache / upgrade = {replay:.2f}x: {verdict}")
        speedup = f.ratio("first", "cached")
        needed = f.median("first") / CACHE_BUDGET
        verdict = ("within budget" if speedup >= CACHE_BUDGET else
                   f"MISSED: the cached doctor would have to take {needed:.2f} s, it takes "
                   f"{f.median('cached'):.2f} s")
        print(f"{f.backend}: first doctor / cached doctor = {speedup:.2f}x: {verdict}")


# ---------------------------------------------------------------------------------------
# Profiling (--profile)
# ---------------------------------------------------------------------------------------


# (module, function, label): the steps of api.doctor timed by `breakdown`, each where its
# caller looks it up. A step is shown under the steps it ran inside (e.g. table_signatures
# under run_replay and under reflect_cached); steps this version of the package lacks are
# skipped.
STEPS = [
    ("alembic_repair.api", "read_state", "read_state (everything read)"),
    ("alembic_repair.engine.state.read", "read_config", "read_config (alembic.ini, env.py flags)"),
    ("alembic_repair.engine.state.read", "read_scripts", "read_scripts (revision files, ast)"),
    ("alembic_repair.engine.state.read", "capture_from_env_py",
     "capture_from_env_py (env.py offline, models import)"),
    ("alembic_repair.engine.state.read", "load_target_metadata", "load_target_metadata (models)"),
    ("alembic_repair.engine.state.read", "_load_directory",
     "_load_directory (Alembic imports every revision file)"),
    ("alembic_repair.engine.state.read", "connect_readonly", "connect_readonly"),
    ("alembic_repair.engine.state.read", "read_versions", "read_versions (alembic_version)"),
    ("alembic_repair.engine.state.read", "reflect", "reflect (the live schema)"),
    ("alembic_repair.engine.state.read", "reflect_cached", "reflect_cached (the live schema)"),
    ("alembic_repair.engine.state.read", "find_junk",
     "find_junk (SQLite: a query per typed column)"),
    ("alembic_repair.engine.state.read", "from_metadata", "from_metadata (the models' snapshot)"),
    ("alembic_repair.engine.state.read", "run_replay", "run_replay"),
    ("alembic_repair.engine.replay", "history_order", "history_order"),
    ("alembic_repair.engine.replay", "cache_key", "cache_key (sha256 of every revision file)"),
    ("alembic_repair.engine.replay", "_load_cache", "_load_cache"),
    ("alembic_repair.engine.replay", "apply_revision", "apply_revision (the revisions' DDL)"),
    ("alembic_repair.engine.replay", "table_signatures", "table_signatures (catalogue query)"),
    ("alembic_repair.engine.replay", "reflect_tables", "reflect_tables (the tables that changed)"),
    ("alembic_repair.engine.replay", "_save_cache", "_save_cache"),
    ("alembic_repair.api", "diagnose", "diagnose (the rules)"),
]
Path_ = tuple[str, ...]  # the labels of the timed steps a call ran inside, its own last


@contextmanager
def timed_steps(totals: dict[Path_, list[float]]) -> Iterator[None]:
    """Wrap the functions of STEPS; totals[path] = [seconds, calls]."""
    import importlib

    saved: list[tuple[Any, str, Any]] = []
    active: list[str] = []

    def wrap(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            active.append(label)
            entry = totals.setdefault(tuple(active), [0.0, 0])
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                entry[0] += time.perf_counter() - started
                entry[1] += 1
                active.pop()
        return timed

    for module_name, name, label in STEPS:
        module = importlib.import_module(module_name)
        original = getattr(module, name, None)
        if original is None:
            continue
        saved.append((module, name, original))
        setattr(module, name, wrap(original, label))
    try:
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def breakdown(project: Path, env: dict[str, str]) -> None:
    """api.doctor in this process, by step: uncached, first (fills the cache) and cached, after
    one uncounted call (this process's first-time imports)."""
    import alembic_repair

    columns: list[tuple[str, float, dict[Path_, list[float]]]] = []
    with environment(project, env):
        plan = (("warm-up", False), ("uncached", False), ("first", True), ("cached", True))
        for title, use_cache in plan:
            totals: dict[Path_, list[float]] = {}
            with timed_steps(totals):
                started = time.perf_counter()
                diagnosis = alembic_repair.doctor(project, use_cache=use_cache)
                elapsed = time.perf_counter() - started
            if not diagnosis.healthy:
                raise BenchError(f"in-process doctor ({title}) was not healthy: "
                                 f"{diagnosis.findings}")
            if title != "warm-up":
                columns.append((title, elapsed, totals))
    order = {label: i for i, (_m, _n, label) in enumerate(STEPS)}
    paths = sorted({p for c in columns for p in c[2]}, key=lambda p: [order[x] for x in p])
    print("\n  In-process alembic_repair.doctor(project) by step, seconds and calls (no profiler; "
          "after one uncounted call; each call imports the models and the revision files "
          "again):")
    width = 62
    print(f"    {'step':<{width}} " + " ".join(f"{c[0]:>14}" for c in columns))
    print(f"    {'api.doctor total':<{width}} " + " ".join(f"{c[1]:>14.3f}" for c in columns))
    for path in paths:
        cells = []
        for _title, _elapsed, totals in columns:
            spent, calls = totals.get(path, [0.0, 0])
            cells.append(f"{spent:8.3f} x{int(calls):<4}" if calls else f"{'-':>14}")
        print(f"    {'  ' * len(path) + path[-1]:<{width}} " + " ".join(cells))
    rest = [c[1] - sum(v[0] for p, v in c[2].items() if len(p) == 1) for c in columns]
    print(f"    {'  (Project.discover and the rest)':<{width}} "
          + " ".join(f"{d:>14.3f}" for d in rest))


def print_stats(profiler: cProfile.Profile | str, sort: str, limit: int) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats(sort).print_stats(limit)
    for line in shorten_paths(stream.getvalue()).strip("\n").splitlines():
        print(f"    {line}" if line.strip() else "")


def profile_call(project: Path, env: dict[str, str], limit: int = 30) -> None:
    import alembic_repair  # imported outside the profile

    with environment(project, env):
        profiler = cProfile.Profile()
        diagnosis = profiler.runcall(alembic_repair.doctor, project, use_cache=False)
    if not diagnosis.healthy:
        raise BenchError(f"in-process doctor was not healthy: {diagnosis.findings}")
    print(f"\n  cProfile of the in-process alembic_repair.doctor(project, use_cache=False), top "
          f"{limit} by cumulative time:")
    print_stats(profiler, "cumulative", limit)
    print("\n  the same, top 15 by own time:")
    print_stats(profiler, "tottime", 15)


def profile_cached_process(project: Path, env: dict[str, str], workdir: Path,
                           limit: int = 30) -> None:
    """A fresh cached `alembic-repair doctor` process under cProfile (imports included)."""
    out = workdir / "cached.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", out, "-m", "alembic_repair", "doctor",
            "--format", "json"]
    result = run(argv, project, env, RUN_TIMEOUT)
    report = json.loads(result.stdout or "{}")
    if result.returncode != 0 or not (report.get("state", {}).get("replay") or {}).get("cached"):
        raise BenchError(describe("the profiled cached doctor misbehaved", result))
    print(f"\n  cProfile of a fresh cached `alembic-repair doctor` process ({result.seconds:.2f} s "
          f"under the profiler), top {limit} by cumulative time:")
    print_stats(str(out), "cumulative", limit)


def floors(project: Path, env: dict[str, str], tries: int = 3) -> None:
    """What a fresh process costs before any replay: the floor under the cached doctor."""
    print(f"\n  Fresh processes without the replay (median of {tries}; the database is at head):")
    commands: list[tuple[str, list[str | Path]]] = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("python -c 'import alembic_repair.cli.app'",
         [sys.executable, "-c", "import alembic_repair.cli.app"]),
        ("alembic-repair --help", [ALEMBIC_REPAIR, "--help"]),
        ("alembic current", [ALEMBIC, "current"]),
        ("alembic-repair doctor --no-replay --format json",
         [ALEMBIC_REPAIR, "doctor", "--no-replay", "--format", "json"]),
    ]
    for label, argv in commands:
        results = [run(argv, project, env, RUN_TIMEOUT) for _ in range(tries)]
        codes = sorted({r.returncode for r in results})
        print(f"    {statistics.median(r.seconds for r in results):6.2f} s  {label}  "
              f"(exit {', '.join(map(str, codes))})")


def profile(setup: Setup, databases: Databases) -> None:
    url = databases.create("profiled")
    try:
        cache_home = setup.workdir / "xdg" / "profiled"
        env = child_env(url, setup.bytecode, setup.workdir / "pycache",
                        XDG_CACHE_HOME=str(cache_home))
        check_upgrade(run([ALEMBIC, "upgrade", "head"], setup.project, env, RUN_TIMEOUT))
        floors(setup.project, env)
        breakdown(setup.project, env)
        profile_call(setup.project, env)
        # the cache was filled by breakdown's cached calls
        profile_cached_process(setup.project, env, setup.workdir)
    finally:
        databases.drop("profiled")


# ---------------------------------------------------------------------------------------
# Per backend
# ---------------------------------------------------------------------------------------


def bench_backend(backend: str, args: argparse.Namespace) -> Figures:
    print(f"\n== {backend} ==")
    with tempfile.TemporaryDirectory(prefix=f"bench-doctor-{backend}-") as tmp:
        workdir = Path(tmp)
        head, tables = write_project(workdir / "p", args.revisions, args.tables)
        setup = Setup(workdir / "p", workdir, head, args.revisions, tables, args.bytecode)
        servers = sqlite_files(workdir) if backend == "sqlite" else mariadb_server()
        with servers as databases:
            for i in range(args.warmup):  # page cache, bytecode of the revision files
                one_run(setup, databases, f"warmup{i + 1}")
            results = []
            for i in range(args.runs):
                result = one_run(setup, databases, f"run{i + 1}")
                results.append(result)
                print(f"  run {i + 1}/{args.runs}: A upgrade {result.upgrade.seconds:6.2f} s  "
                      f"B doctor --no-cache {result.nocache.seconds:6.2f} s  "
                      f"C1 first {result.first.seconds:6.2f} s  "
                      f"C2 cached {result.cached.seconds:6.2f} s   ({load()})")
            if results[0].info:
                print("  findings (info) of the healthy doctor: " + "; ".join(results[0].info))
            if args.profile:
                profile(setup, databases)
    return Figures(backend, tuple(results))


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def package_state() -> str:
    """Where alembic_repair is imported from (here and in the children), and its git state."""
    import alembic_repair

    source = Path(alembic_repair.__file__).resolve().parent
    git = ["git", "-C", str(source)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True,
                           text=True, check=False).stdout.split("\n")
    changed = [line[3:] for line in dirty if line.strip()]
    state = f"uncommitted changes in {', '.join(changed)}" if changed else "clean"
    with tempfile.TemporaryDirectory() as neutral:  # like the measured children: not the repo
        child = subprocess.run(
            [sys.executable, "-c", "import alembic_repair as a; print(a.__file__)"],
            cwd=neutral, capture_output=True, text=True, check=False).stdout.strip()
    if Path(child).resolve().parent != source:
        raise BenchError(f"child processes import alembic_repair from {child}, this one from "
                         f"{source}")
    return f"alembic_repair {alembic_repair.__version__} from {source} (git {head or '?'}, {state})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "mariadb", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    parser.add_argument("--revisions", type=int, default=300, help="default 300")
    parser.add_argument("--tables", type=int, default=100, help="default 100")
    parser.add_argument("--warmup", type=int, default=1,
                        help="uncounted runs before measuring (default 1)")
    parser.add_argument("--bytecode", choices=["cached", "as-is"], default="cached",
                        help="cached: private PYTHONPYCACHEPREFIX, nothing compiled after the "
                        "warm-up (default); as-is: inherit PYTHONDONTWRITEBYTECODE etc.")
    parser.add_argument("--profile", action="store_true",
                        help="also break down and cProfile doctor, per backend")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.tables < 1 or args.revisions < args.tables or args.revisions > 999:
        parser.error("need 1 <= --tables <= --revisions <= 999")
    for script in (ALEMBIC, ALEMBIC_REPAIR):
        if not script.is_file():
            parser.error(f"{script} not found: run this with the venv's python")

    print("doctor (with the replay) vs alembic upgrade head; first vs cached doctor")
    print(f"command: {Path(sys.executable)} {' '.join(sys.argv)}")
    try:
        for fact in machine_facts(package_state()):
            print(f"  {fact}")
        print(f"  bytecode: {args.bytecode}; PYTHONDONTWRITEBYTECODE in this environment: "
              f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}")
        backends = ["sqlite", "mariadb"] if args.backend == "both" else [args.backend]
        all_figures = [bench_backend(name, args) for name in backends]
    except BenchError as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        return 1
    print_table(all_figures, args.revisions, args.tables)
    print(f"\nat end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
