"""The revisions a database has not applied yet, read as operations without running them.

Each pending revision's ``upgrade()`` runs through Alembic's `Operations` on an *offline*
`MigrationContext` (``as_sql=True``, SQL written to a buffer nobody reads) with ``invoke`` and
``batch_alter_table`` replaced: the operation objects are recorded, with the line of the revision
file that issued them, and never executed. No database is touched by the reading; a revision
that needs one (``op.get_bind()``) or raises is skipped, with no finding.

For the rules that depend on the rows (AR5xx), a few small read-only queries are run on the live
database for exactly the tables and columns the pending operations touch: a capped row count,
whether a column holds values or NULLs, one duplicate sample, the longest value, one value that
a new type cannot take. Their answers are kept in `Pending.data`, keyed by `probe` tuples; a
question the database could not answer is simply absent.

The models' and revisions' ``default=`` arguments are read with `ast` for values computed once at
import (``uuid.uuid4()``, ``datetime.now()``) instead of once per row.
"""

from __future__ import annotations

import ast
import re
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from alembic.operations import BatchOperations, Operations, ops
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Date, DateTime, Float, Integer, Numeric, String, Text, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import SQLAlchemyError

from ..project import Project
from .graph import RevisionGraph, history_order
from .schema import SchemaSnapshot
from .scripts import ScriptFile

#: Row counts stop here (``SELECT COUNT(*) FROM (SELECT 1 ... LIMIT n)``): "at least n rows".
ROW_CAP = 1000
MARKER = "# alembic-repair: "


class Unreadable(BaseException):  # noqa: N818
    """The revision needs a database to say what it does (``op.get_bind()``). A
    BaseException, so a revision's own ``except Exception`` (a has_table idiom) lets it by
    instead of reading the guarded branch as unconditional; `read_operations` turns it into
    `UnreadableRevision` for its callers."""


class UnreadableRevision(Exception):
    """`read_operations` could not read a revision offline: it asks for a database."""


@dataclass(frozen=True)
class PendingOp:
    """One operation a pending revision would run, where it is written, and whether it is
    inside ``with op.batch_alter_table(...)``."""

    operation: Any = field(compare=False)
    line: int | None
    batch: bool = False


@dataclass(frozen=True)
class PendingRevision:
    revision: str
    path: str  # relative to the project root
    ops: tuple[PendingOp, ...]
    markers: frozenset[str] = frozenset()  # the ``# alembic-repair: ...`` comments in the file

    def where(self, item: PendingOp | None = None) -> str:
        line = item.line if item is not None else None
        return f"{self.path}:{line}" if line else self.path


@dataclass(frozen=True)
class OnceDefault:
    """A ``default=`` whose value is computed once, at import, for every row to come."""

    location: str
    keyword: str
    expression: str


@dataclass(frozen=True)
class Pending:
    revisions: tuple[PendingRevision, ...] = ()
    unreadable: tuple[str, ...] = ()  # pending revisions whose operations could not be read
    dialect: str = ""
    live: SchemaSnapshot | None = field(default=None, compare=False, repr=False)
    data: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False)
    once_defaults: tuple[OnceDefault, ...] = ()

    @property
    def mysql(self) -> bool:
        return self.dialect in ("mysql", "mariadb")

    def columns(self, table: str) -> dict[str, tuple[Any, ...]]:
        """The live columns of `table`: name -> column fact."""
        if self.live is None:
            return {}
        return {f[2]: f for f in self.live.facts if f[0] == "column" and f[1] == table}

    def has_table(self, table: str) -> bool:
        return self.live is not None and table in self.live.tables


# -- which revisions are pending -------------------------------------------------------------


def pending_ids(scripts: tuple[ScriptFile, ...], recorded: Iterable[str]) -> set[str] | None:
    """Revisions not applied: neither a recorded head nor one of their ancestors (every one when
    nothing is recorded); None when a recorded revision is unknown (nothing can be said)."""
    known = {s.revision for s in scripts if s.revision is not None}
    recorded = set(recorded)
    if not recorded <= known:
        return None
    return known - RevisionGraph.of(scripts).applied(recorded)


# -- reading operations offline ---------------------------------------------------------------


def _caller_line(files: set[str]) -> int | None:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename in files:
            return frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None


class DialectOnly:
    """What ``op.get_bind()`` returns when nothing runs: a revision may ask which dialect it
    runs on (``bind.dialect.name``, ``bind.engine.name``) and is read on; anything else it
    asks of the connection (a query, reflection) makes it `Unreadable`."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    @property
    def engine(self) -> DialectOnly:
        return self

    @property
    def name(self) -> str:
        return str(self.dialect.name)

    def __getattr__(self, attr: str) -> Any:
        raise Unreadable("the revision asks for a database connection (op.get_bind())")


def read_operations(module: Any, path: str, dialect: Dialect) -> tuple[PendingOp, ...]:
    """The operations `module.upgrade()` issues, recorded on an offline context (nothing runs).
    Raises `UnreadableRevision` (or whatever the revision's own code raises) when it cannot be
    read."""
    files = {path, str(getattr(module, "__file__", path))}
    recorded: list[PendingOp] = []
    context = MigrationContext.configure(dialect=dialect, opts={
        "as_sql": True, "output_buffer": StringIO()})

    def record(operation: Any, batch: bool = False) -> Any:
        recorded.append(PendingOp(operation, _caller_line(files), batch))
        if isinstance(operation, ops.CreateTableOp):
            return operation.to_table(context)  # `t = op.create_table(...)`, then bulk_insert(t)
        return None

    def no_bind() -> Any:
        return DialectOnly(dialect)

    with Operations.context(context) as operations:
        @contextmanager
        def recording_batch(table_name: str, schema: str | None = None,
                            *args: Any, **kwargs: Any) -> Iterator[BatchOperations]:
            batch_op = BatchOperations(context, impl=SimpleNamespace(  # type: ignore[arg-type]
                table_name=table_name, schema=schema))
            batch_op.invoke = lambda operation: record(operation, True)  # type: ignore[method-assign]
            yield batch_op

        operations.invoke = record  # type: ignore[method-assign]
        operations.batch_alter_table = recording_batch  # type: ignore[method-assign]
        operations.get_bind = no_bind  # type: ignore[method-assign]
        upgrade = getattr(module, "upgrade", None)
        if upgrade is None:
            return ()
        try:
            upgrade()
        except Unreadable as err:
            raise UnreadableRevision(str(err)) from None
    return tuple(recorded)


def _markers(path: Path) -> frozenset[str]:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return frozenset()
    return frozenset(line.strip()[len(MARKER):].strip() for line in source.splitlines()
                     if line.strip().startswith(MARKER))


# -- defaults computed once -------------------------------------------------------------------

#: Calls whose value is new each time: as a default= value they are computed once, at import.
ONCE_CALLS = frozenset({"uuid4", "uuid1", "now", "utcnow", "today", "token_hex",
                        "token_urlsafe"})
ONCE_KEYWORDS = ("default", "insert_default", "onupdate", "server_default")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_once(name: str) -> bool:
    parts = name.split(".")
    if not name or "func" in parts:  # sa.func.now(): SQL, evaluated by the database per row
        return False
    if parts[-1] in ONCE_CALLS:
        return True
    return len(parts) > 1 and (parts[-2], parts[-1]) in (("time", "time"), ("random", "random"))


def _once_call(node: ast.expr) -> ast.Call | None:
    """A call inside `node` that runs when it is evaluated (not one inside a lambda)."""
    todo: list[ast.AST] = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, ast.Lambda):
            continue
        if isinstance(item, ast.Call) and _is_once(_dotted(item.func)):
            return item
        todo.extend(ast.iter_child_nodes(item))
    return None


def once_defaults(files: Iterable[Path], root: Path) -> tuple[OnceDefault, ...]:
    """``default=uuid.uuid4()``-style arguments in `files` (read with ast, never imported)."""
    found: list[OnceDefault] = []
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "default" not in source and "onupdate" not in source:
            continue
        try:
            tree = ast.parse(source, filename=str(path))
        except (SyntaxError, ValueError):
            continue
        try:
            rel = str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            rel = str(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                call = _once_call(keyword.value) if keyword.arg in ONCE_KEYWORDS else None
                if call is not None:
                    found.append(OnceDefault(f"{rel}:{call.lineno}", str(keyword.arg),
                                             ast.unparse(keyword.value)))
    return tuple(sorted(set(found), key=lambda d: d.location))


def project_module_files(project: Project) -> list[Path]:
    """The files of the project's own modules imported so far (the models, via env.py or
    --models): under the project root, not the scripts folder, not alembic_repair itself."""
    root = project.root.resolve()
    prefixes = tuple({str(project.root), str(root)})
    scripts = project.script_location.resolve() if project.script_location else None
    own = Path(__file__).resolve().parent.parent
    files = set()
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if not isinstance(name, str) or not name.endswith(".py") or \
                not name.startswith(prefixes):  # cheap: most modules are installed ones
            continue
        path = Path(name).resolve()
        if not path.is_relative_to(root) or path.is_relative_to(own) or (
                scripts is not None and path.is_relative_to(scripts)) or any(
                part in ("site-packages", ".venv", "venv") for part in path.parts):
            continue
        files.add(path)
    return sorted(files)


# -- questions for the live database -----------------------------------------------------------

TEXT_TYPES = ("CHAR", "TEXT", "CLOB", "STRING")


def is_text(type_text: str) -> bool:
    return any(word in type_text.upper() for word in TEXT_TYPES)


def new_kind(type_: Any) -> str | None:
    """What a new column type asks of existing text values (None: nothing checked)."""
    if isinstance(type_, Integer):
        return "integer"
    if isinstance(type_, (Numeric, Float)):
        return "number"
    if isinstance(type_, (DateTime, Date)):
        return "date"
    return None


def string_length(type_: Any) -> int | None:
    if isinstance(type_, String) and not isinstance(type_, Text):
        return type_.length
    return None


def _misfit(dialect: str, column: str, kind: str) -> str:
    if dialect == "sqlite":
        value = f"trim(CAST({column} AS TEXT))"
        if kind == "integer":
            return f"({value} = '' OR ltrim({value}, '+-') GLOB '*[^0-9]*')"
        if kind == "number":
            return f"({value} = '' OR ltrim({value}, '+-') GLOB '*[^0-9.]*')"
        return f"NOT ({value} GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]*')"
    pattern = {"integer": "^[[:space:]]*[-+]?[0-9]+[[:space:]]*$",
               "number": "^[[:space:]]*[-+]?[0-9]*[.]?[0-9]+[[:space:]]*$"}.get(
        kind, "^[0-9]{4}-[0-1][0-9]-[0-3][0-9]")
    return f"NOT ({column} REGEXP '{pattern}')"


class _Asker:
    """Small read-only queries on the live database, each answered once (or not at all)."""

    def __init__(self, conn: Connection, pending: Pending) -> None:
        self.conn, self.pending = conn, pending
        self.quote = conn.dialect.identifier_preparer.quote

    def ask(self, key: tuple[Any, ...], sql: str, read: Any) -> None:
        if key in self.pending.data:
            return
        try:
            value = read(self.conn.execute(text(sql)))
        except SQLAlchemyError:
            self.conn.rollback()
            return
        self.pending.data[key] = value

    def rows(self, table: str) -> None:
        if self.pending.has_table(table):
            self.ask(("rows", table), f"SELECT COUNT(*) FROM (SELECT 1 AS one FROM "
                                      f"{self.quote(table)} LIMIT {ROW_CAP}) AS capped",
                     lambda result: int(result.scalar() or 0))

    def column(self, kind: str, table: str, column: str, extra: Any = None) -> None:
        if column not in self.pending.columns(table):
            return
        t, c = self.quote(table), self.quote(column)
        if kind == "values":
            self.ask((kind, table, column), f"SELECT 1 FROM {t} WHERE {c} IS NOT NULL LIMIT 1",
                     lambda result: result.first() is not None)
        elif kind == "nulls":
            self.ask((kind, table, column), f"SELECT 1 FROM {t} WHERE {c} IS NULL LIMIT 1",
                     lambda result: result.first() is not None)
        elif kind == "maxlen":
            length = "LENGTH" if self.pending.dialect == "sqlite" else "CHAR_LENGTH"
            self.ask((kind, table, column), f"SELECT MAX({length}({c})) FROM {t}",
                     lambda result: int(result.scalar() or 0))
        elif kind == "misfit":
            where = _misfit(self.pending.dialect, c, extra)
            self.ask((kind, table, column, extra),
                     f"SELECT {c} FROM {t} WHERE {c} IS NOT NULL AND {where} LIMIT 1",
                     lambda result: (lambda row: None if row is None else str(row[0]))(
                         result.first()))

    def duplicates(self, table: str, columns: tuple[str, ...]) -> None:
        live = self.pending.columns(table)
        if not columns or any(c not in live for c in columns):
            return
        t, cols = self.quote(table), ", ".join(self.quote(c) for c in columns)
        not_null = " AND ".join(f"{self.quote(c)} IS NOT NULL" for c in columns)
        self.ask(("dups", table, columns),
                 f"SELECT {cols}, COUNT(*) FROM {t} WHERE {not_null} GROUP BY {cols} "
                 f"HAVING COUNT(*) > 1 LIMIT 1",
                 lambda result: (lambda row: None if row is None else (
                     tuple(str(v) for v in row[:-1]), int(row[-1])))(result.first()))


def unique_columns(operation: Any) -> tuple[str, ...] | None:
    """The columns a unique constraint or unique index creates, or None."""
    if isinstance(operation, ops.CreateUniqueConstraintOp):
        return tuple(str(c) for c in operation.columns)
    if isinstance(operation, ops.CreateIndexOp) and operation.unique:
        names = tuple(c for c in operation.columns if isinstance(c, str))
        return names if len(names) == len(operation.columns) else None
    return None


def _ask_for(asker: _Asker, revision: PendingRevision) -> None:
    for item in revision.ops:
        op = item.operation
        table = getattr(op, "table_name", None)
        if isinstance(op, ops.DropTableOp):
            asker.rows(op.table_name)
        elif isinstance(op, ops.DropColumnOp):
            asker.rows(op.table_name)
            asker.column("values", op.table_name, op.column_name)
        elif isinstance(op, ops.AddColumnOp):
            asker.rows(op.table_name)
        elif isinstance(op, ops.AlterColumnOp):
            asker.rows(op.table_name)
            if op.modify_nullable is False:
                asker.column("nulls", op.table_name, op.column_name)
            if op.modify_type is not None:
                if string_length(op.modify_type) is not None:
                    asker.column("maxlen", op.table_name, op.column_name)
                kind = new_kind(op.modify_type)
                fact = asker.pending.columns(op.table_name).get(op.column_name)
                if kind is not None and fact is not None and is_text(str(fact[3])):
                    asker.column("misfit", op.table_name, op.column_name, kind)
        elif isinstance(table, str) and (columns := unique_columns(op)) is not None:
            asker.rows(table)
            asker.duplicates(table, columns)


def read_pending(project: Project, directory: ScriptDirectory, scripts: tuple[ScriptFile, ...],
                 recorded: Iterable[str], conn: Connection, live: SchemaSnapshot | None,
                 model_files: Iterable[Path] = ()) -> Pending:
    """The pending revisions' operations and what the live rows say about them."""
    dialect = conn.dialect
    name = "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name
    ids = pending_ids(scripts, recorded)
    models = once_defaults(model_files, project.root)
    if not ids:
        return Pending(dialect=name, live=live, once_defaults=models)
    revisions, unreadable = [], []
    order = history_order(directory)
    for script in order:
        if script.revision not in ids:
            continue
        path = Path(script.path)
        rel = project.rel(path)
        try:
            found = read_operations(script.module, script.path, dialect)
        except Exception:  # the revision's own code: it cannot be read offline
            unreadable.append(script.revision)
            continue
        revisions.append(PendingRevision(script.revision, rel, found, _markers(path)))
    files = [Path(s.path) for s in order if s.revision in ids]
    pending = Pending(tuple(revisions), tuple(unreadable), name, live,
                      once_defaults=tuple(sorted(
                          set(models) | set(once_defaults(files, project.root)),
                          key=lambda d: d.location)))
    if live is not None:
        asker = _Asker(conn, pending)
        for revision in revisions:
            _ask_for(asker, revision)
    return pending


def sqlite_drops_columns() -> bool:
    """SQLite >= 3.35 runs ``ALTER TABLE ... DROP COLUMN`` (on a plain column)."""
    return sqlite3.sqlite_version_info >= (3, 35)


#: What a data-only statement starts with; anything else (DDL, SET, CALL, ...) may change the
#: schema. Comments before a statement are skipped, except MySQL's ``/*! ... */``, which runs.
DATA_WORDS = re.compile(r"(INSERT|UPDATE|DELETE|SELECT|REPLACE|WITH)\b", re.IGNORECASE)
COMMENTS = re.compile(r"(\s+|--[^\n]*(\n|$)|#[^\n]*(\n|$)|/\*(?!!).*?\*/)*", re.DOTALL)


def data_only(sql: str) -> bool:
    """Whether raw SQL (``op.execute``) only reads or writes rows: each of its statements
    starts, after comments, with a data word. Unsure (a ``;`` inside a literal) is False."""
    parts = [part[COMMENTS.match(part).end():] for part in sql.split(";")]  # type: ignore[union-attr]
    return any(parts) and all(DATA_WORDS.match(part) for part in parts if part)
