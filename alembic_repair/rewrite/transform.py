"""The rewrite engine: libcst edits of a revision file's ``upgrade()`` and ``downgrade()``.

A transform reads the file into a libcst tree, replaces or inserts statements inside the two
functions, and writes the tree back: everything it does not touch (the user's comments, blank
lines, quotes, odd indentation) is kept byte for byte. New statements are never pasted from
hand-written strings: they are Alembic operation objects rendered by Alembic's own renderer
(`alembic.autogenerate.render.render_op`, batch mode on, so SQLite gets ``batch_alter_table``),
then parsed by libcst. Each block we insert starts with a ``# alembic-repair: ...`` marker
comment; a transform that finds its marker leaves that part alone, so a second run changes
nothing.

When a file is not understood (no ``upgrade()``, control flow around the operations, a table
name that is not a literal), nothing is written and `RewriteRefused` says why.
"""

from __future__ import annotations

import ast
import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import libcst as cst
from alembic.autogenerate.api import AutogenContext
from alembic.autogenerate.render import render_op
from alembic.operations import ops
from alembic.runtime.migration import MigrationContext
from mako.pygen import PythonPrinter
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultDialect

from ..errors import NeedsRepair
from . import ops as _ops  # noqa: F401  (registers the renderers of our operations)

#: A statement in a function body (libcst's two kinds).
Statement = cst.SimpleStatementLine | cst.BaseCompoundStatement

__all__ = ["MARKER", "Rewrite", "RewriteRefused", "RevisionSource", "Statement",
           "render_statements"]

#: Every block the rewrite inserts starts with a comment ``# alembic-repair: <what>``.
MARKER = "# alembic-repair: "

#: op.<method>: (position, keyword) of its table-name argument.
TABLE_ARGUMENT: dict[str, tuple[int, str]] = {
    "create_table": (0, "table_name"), "drop_table": (0, "table_name"),
    "rename_table": (0, "old_table_name"), "add_column": (0, "table_name"),
    "drop_column": (0, "table_name"), "alter_column": (0, "table_name"),
    "create_index": (1, "table_name"), "drop_index": (1, "table_name"),
    "create_unique_constraint": (1, "table_name"), "create_foreign_key": (1, "source_table"),
    "create_check_constraint": (1, "table_name"), "create_primary_key": (1, "table_name"),
    "drop_constraint": (1, "table_name"), "batch_alter_table": (0, "table_name"),
    "create_table_comment": (0, "table_name"), "drop_table_comment": (0, "table_name"),
    "bulk_insert": (0, "table"),
}


class RewriteRefused(NeedsRepair):
    """The file was left alone: what it does could not be told for sure (the message says why)."""


@dataclass(frozen=True)
class Rewrite:
    """What a transform did to one file: the new text, its unified diff, and why."""

    path: Path
    changed: bool
    diff: str
    source: str
    notes: tuple[str, ...] = ()


# -- rendering ---------------------------------------------------------------------------------


def render_statements(operations: Sequence[ops.MigrateOperation], dialect: Dialect | None = None,
                      *, comment: str | None = None) -> tuple[list[Statement], set[str]]:
    """Alembic's rendering of `operations` (batch mode) parsed into statements, plus the import
    lines the rendered code needs (``from sqlalchemy.dialects import mysql`` ...)."""
    context = MigrationContext.configure(dialect=dialect or DefaultDialect())
    autogen = AutogenContext(context, opts={
        "sqlalchemy_module_prefix": "sa.", "alembic_module_prefix": "op.",
        "render_as_batch": True, "user_module_prefix": None, "render_item": None,
    })
    autogen.imports = set()
    buffer = StringIO()
    printer = PythonPrinter(buffer)
    for operation in operations:
        for line in render_op(autogen, operation):
            printer.writeline(line)
    printer.close()
    body = [s.with_changes(leading_lines=[line for line in s.leading_lines if line.comment])
            for s in cst.parse_module(buffer.getvalue()).body]
    if comment is not None and body:
        body[0] = with_comment(body[0], comment)
    return body, set(autogen.imports)


def with_comment(statement: Statement, text: str) -> Statement:
    line = cst.EmptyLine(comment=cst.Comment(MARKER + text))
    return statement.with_changes(leading_lines=[*statement.leading_lines, line])


def markers(statements: Iterable[Statement]) -> set[str]:
    """The ``# alembic-repair: ...`` texts found in front of `statements`."""
    found = set()
    for statement in statements:
        for line in statement.leading_lines:
            if line.comment is not None and line.comment.value.startswith(MARKER):
                found.add(line.comment.value[len(MARKER):].strip())
    return found


# -- reading calls -----------------------------------------------------------------------------


def literal(node: cst.BaseExpression | None) -> Any:
    """The Python value of a literal (string, number, tuple/list of them); ValueError else."""
    if node is None:
        raise ValueError("missing")
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.Integer, cst.Name,
                         cst.List, cst.Tuple)):
        return ast.literal_eval(cst.Module([]).code_for_node(node))
    raise ValueError("not a literal")


def argument(call: cst.Call, position: int, keyword: str) -> cst.BaseExpression | None:
    positional = [a for a in call.args if a.keyword is None and a.star == ""]
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    return positional[position].value if position < len(positional) else None


@dataclass(frozen=True)
class OpCall:
    """``<receiver>.<method>(...)`` as one statement (receiver ``op`` or a batch's name)."""

    receiver: str
    method: str
    call: cst.Call

    def arg(self, position: int, keyword: str) -> Any:
        return literal(argument(self.call, position, keyword))


def op_call(statement: Statement | cst.BaseSmallStatement) -> OpCall | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        statement = statement.body[0]
    if not isinstance(statement, cst.Expr) or not isinstance(statement.value, cst.Call):
        return None
    func = statement.value.func
    if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
        return OpCall(func.value.value, func.attr.value, statement.value)
    return None


@dataclass(frozen=True)
class Batch:
    """``with op.batch_alter_table("t") as name:``."""

    table: str
    name: str
    node: cst.With


def batch_block(statement: Statement) -> Batch | None:
    """The batch block `statement` is, or None; ValueError when its table is not a literal."""
    if not isinstance(statement, cst.With) or len(statement.items) != 1:
        return None
    item = statement.items[0]
    call = item.item
    if not (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
            and call.func.attr.value == "batch_alter_table"
            and isinstance(call.func.value, cst.Name) and call.func.value.value == "op"
            and item.asname is not None and isinstance(item.asname.name, cst.Name)):
        return None
    return Batch(literal(argument(call, 0, "table_name")), item.asname.name.value, statement)


def block_body(node: cst.With | cst.FunctionDef | cst.While) -> list[Statement]:
    body = node.body
    if not isinstance(body, cst.IndentedBlock):
        small = [s for s in body.body if isinstance(s, cst.BaseSmallStatement)]
        return [cst.SimpleStatementLine(body=small)]
    return [s for s in body.body if isinstance(s, (cst.SimpleStatementLine,
                                                   cst.BaseCompoundStatement))]


def with_body(node: cst.With, statements: list[Statement]) -> cst.With:
    body = node.body
    if isinstance(body, cst.IndentedBlock):
        return node.with_changes(body=body.with_changes(body=statements))
    return node.with_changes(body=cst.IndentedBlock(body=statements))


def _function_with_body(node: cst.FunctionDef, statements: list[Statement]) -> cst.FunctionDef:
    body = node.body
    if isinstance(body, cst.IndentedBlock):
        return node.with_changes(body=body.with_changes(body=statements))
    return node.with_changes(body=cst.IndentedBlock(body=statements))


# -- one revision file -------------------------------------------------------------------------


def _is_pass(statement: Statement) -> bool:
    return (isinstance(statement, cst.SimpleStatementLine)
            and all(isinstance(s, cst.Pass) for s in statement.body))


def is_docstring(statement: Statement) -> bool:
    return (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Expr)
            and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def is_backfill_loop(statement: Statement) -> bool:
    """The ``while True:`` loop of a backfill we rendered (`ops.BackfillOp`)."""
    if not isinstance(statement, cst.While):
        return False
    first = block_body(statement)[0] if block_body(statement) else None
    return (isinstance(first, cst.SimpleStatementLine) and isinstance(first.body[0], cst.Assign)
            and isinstance(first.body[0].targets[0].target, cst.Name)
            and first.body[0].targets[0].target.value == "_ar_after")


class RevisionSource:
    """A revision file as a libcst tree, with its ``upgrade()`` and ``downgrade()`` bodies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        try:
            self.module = cst.parse_module(self.text)
        except cst.ParserSyntaxError as err:
            raise RewriteRefused(f"{path}: the file does not parse ({err.message}, line "
                                 f"{err.raw_line}); fix it first, nothing was changed") from None
        self.functions: dict[str, cst.FunctionDef] = {
            node.name.value: node for node in self.module.body
            if isinstance(node, cst.FunctionDef) and node.name.value in ("upgrade", "downgrade")}
        for name in ("upgrade", "downgrade"):
            if name not in self.functions:
                raise RewriteRefused(f"{path}: no top-level {name}() function, so this is not a "
                                     "revision file alembic-repair can rewrite; nothing was "
                                     "changed")
        self.bodies = {name: block_body(fn) for name, fn in self.functions.items()}
        self.imports: set[str] = set()

    def refuse(self, why: str) -> RewriteRefused:
        return RewriteRefused(f"{self.path}: {why}; nothing was changed (edit the file by "
                              "hand)")

    def check_understood(self, name: str) -> None:
        """Refuse bodies whose effect cannot be read off the statements: control flow, or an
        operation whose table is not a literal."""
        for statement in self.bodies[name]:
            batch = None
            if isinstance(statement, cst.With):
                try:
                    batch = batch_block(statement)
                except ValueError:
                    raise self.refuse(f"{name}() has a batch_alter_table whose table name is not "
                                      "a literal string") from None
                if batch is None:
                    raise self.refuse(f"{name}() has a `with` block that is not "
                                      "op.batch_alter_table(...)")
                inner = block_body(statement)
            elif isinstance(statement, cst.SimpleStatementLine):
                inner = [statement]
            elif is_backfill_loop(statement):
                continue
            else:
                kind = type(statement).__name__.lower()
                raise self.refuse(f"{name}() has control flow (`{kind}`), so which tables it "
                                  "touches cannot be told without running it")
            for line in inner:
                call = op_call(line)
                if call is None or call.receiver != (batch.name if batch else "op"):
                    continue
                spot = TABLE_ARGUMENT.get(call.method)
                if spot is None or batch is not None or argument(call.call, *spot) is None:
                    continue  # no table argument (drop_index("ix") on SQLite): nothing to tell
                try:
                    call.arg(*spot)
                except (ValueError, SyntaxError):
                    raise self.refuse(f"{name}() calls op.{call.method} with a table name that "
                                      "is not a literal string") from None

    def set_body(self, name: str, statements: list[Statement]) -> None:
        real = [s for s in statements if not _is_pass(s)]
        if not [s for s in real if not is_docstring(s)]:
            real.append(cst.SimpleStatementLine(body=[cst.Pass()]))
        self.bodies[name] = real

    def add_imports(self, lines: Iterable[str]) -> None:
        self.imports |= set(lines)

    def render(self) -> str:
        new = {id(fn): _function_with_body(fn, self.bodies[name])
               for name, fn in self.functions.items() if block_body(fn) != self.bodies[name]}
        module = self.module.with_changes(body=[new.get(id(node), node)
                                                for node in self.module.body])
        return _with_imports(module, self.imports).code

    def finish(self, dry_run: bool, notes: Sequence[str]) -> Rewrite:
        new = self.render()
        changed = new != self.text
        diff = "".join(difflib.unified_diff(
            self.text.splitlines(keepends=True), new.splitlines(keepends=True),
            fromfile=f"a/{self.path.name}", tofile=f"b/{self.path.name}")) if changed else ""
        if changed and not dry_run:
            # a temporary file, then a rename: a kill -9 never leaves half a revision
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            temporary.write_text(new, encoding="utf-8")
            os.replace(temporary, self.path)
        return Rewrite(self.path, changed, diff, new, tuple(notes))


def _with_imports(module: cst.Module, lines: set[str]) -> cst.Module:
    """`module` with the import statements in `lines` that it lacks, after its last import."""
    present = {module.code_for_node(s).strip() for s in module.body
               if isinstance(s, cst.SimpleStatementLine)
               and isinstance(s.body[0], (cst.Import, cst.ImportFrom))}
    wanted = [cst.parse_statement(line) for line in sorted(lines) if line.strip() not in present]
    if not wanted:
        return module
    body = list(module.body)
    last = max((i for i, s in enumerate(body) if isinstance(s, cst.SimpleStatementLine)
                and isinstance(s.body[0], (cst.Import, cst.ImportFrom))), default=-1)
    return module.with_changes(body=body[:last + 1] + wanted + body[last + 1:])


def transform(path: Path, change: Callable[[RevisionSource], list[str]], *,
              dry_run: bool) -> Rewrite:
    """Run `change` on the parsed file; write the result unless `dry_run`."""
    source = RevisionSource(path)
    notes = change(source)
    return source.finish(dry_run, notes)
