"""The autogenerate filter in env.py: plain Alembic never sees the tables the tool owns or was
told to keep.

``alembic revision --autogenerate`` compares the models with every table of the database, so a
table the models do not define gets ``op.drop_table``: a soft-dropped table in the trash
(``_ar_trash_<stamp>_<table>``, ``_ar_trash_index``) or a table nobody owns (a teammate's
revision never merged). Users run plain Alembic with their own env.py, so the guard has to live
in that env.py, as plain Python that needs no alembic-repair at run time:

* a block (marked ``# alembic-repair: autogenerate filter``) defining ``_AR_KEPT_TABLES`` (a
  literal set: the kept tables), ``_ar_hidden_table`` (every ``_ar_*`` name, and the kept set)
  and two wrappers, ``_ar_include_name(user_filter=None)`` and
  ``_ar_include_object(user_filter=None)``, that return Alembic's ``include_name`` /
  ``include_object`` hooks: a hidden table (and its columns, indexes and constraints, which
  Alembic asks about with the table in ``parent_names["table_name"]`` or ``object.table``) is
  left out; anything else goes to the user's own filter when there is one;
* every ``context.configure(...)`` call passing ``include_name=_ar_include_name(<theirs>)`` and
  ``include_object=_ar_include_object(<theirs>)``: the user's own filter, when the call passes
  one, is wrapped, never replaced.

Installing is idempotent (a second run writes the same bytes; a new kept set changes only the
set's line) and keeps every comment and the formatting (libcst). A call passing ``**kwargs``
without both keywords is not edited: whether the dictionary holds a filter cannot be told, so
the install refuses (`EnvFilter.unsafe`) with what to write by hand.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from .project import Project

__all__ = ["EnvFilter", "Installed", "OWN_PREFIX", "UnsafeEnv", "install", "install_file",
           "kept_in", "protect", "read_filter", "record_ignore_tables", "render_block",
           "unsafe_text"]

#: Every table whose name starts with this belongs to alembic-repair (trash, trash index).
OWN_PREFIX = "_ar_"
MARKER = "# alembic-repair: autogenerate filter"
KEPT = "_AR_KEPT_TABLES"
HIDDEN = "_ar_hidden_table"
WRAPPERS = {"include_name": "_ar_include_name", "include_object": "_ar_include_object"}
BLOCK_NAMES = (KEPT, HIDDEN, *WRAPPERS.values())

_FUNCTIONS = f'''

def {HIDDEN}(name):
    """True for a table autogenerate must neither create nor drop."""
    return bool(name) and (name.startswith("{OWN_PREFIX}") or name in {KEPT})


def _ar_include_name(user_filter=None):
    """include_name for context.configure: hidden tables (with their columns, indexes and
    constraints) are never reflected; anything else is up to `user_filter`, if given."""

    def include_name(name, type_, parent_names):
        table = name if type_ == "table" else parent_names.get("table_name")
        if type_ != "schema" and {HIDDEN}(table):
            return False
        return user_filter(name, type_, parent_names) if user_filter else True

    return include_name


def _ar_include_object(user_filter=None):
    """include_object for context.configure: the same, for the models' objects too."""

    def include_object(obj, name, type_, reflected, compare_to):
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        if {HIDDEN}(table):
            return False
        return user_filter(obj, name, type_, reflected, compare_to) if user_filter else True

    return include_object
'''


def _kept_line(kept: Iterable[str]) -> str:
    names = sorted(set(kept))
    if not names:
        return f"{KEPT} = frozenset()\n"
    one_line = f"{KEPT} = frozenset({{{', '.join(repr(n) for n in names)}}})\n"
    if len(one_line) <= 100:
        return one_line
    return f"{KEPT} = frozenset({{\n" + "".join(f"    {n!r},\n" for n in names) + "})\n"


def render_block(kept: Iterable[str] = ()) -> str:
    """The block's source: the kept set (each name rendered by ``repr``, so any name is a
    valid literal) and the filter functions."""
    return (f"{MARKER} (written by alembic-repair; plain Python: `alembic` runs it\n"
            f"# without alembic-repair). Tables named {OWN_PREFIX}* (the trash) and the ones "
            f"in {KEPT}\n# are invisible to autogenerate and `alembic check`; add names to the "
            "set to keep more out.\n" + _kept_line(kept) + _FUNCTIONS)


# -- reading (ast: doctor and bootstrap do not pay for libcst) ------------------------------------


def _defines(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef):
        return node.name
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)):
        return node.targets[0].id
    return None


def _is_configure(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "configure" and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "context")


def kept_in(source: str) -> frozenset[str]:
    """The kept set of an installed block (empty when there is none or it is not a literal)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    return _kept(tree)


def _kept(tree: ast.Module) -> frozenset[str]:
    for node in tree.body:
        if (_defines(node) == KEPT and isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call) and len(node.value.args) <= 1):
            try:
                values = ast.literal_eval(node.value.args[0]) if node.value.args else ()
            except ValueError:
                return frozenset()
            return frozenset(v for v in values if isinstance(v, str))
    return frozenset()


@dataclass(frozen=True)
class EnvFilter:
    """What env.py does about hidden tables, read without running it.

    `current`: the block is there and is the one we render for its kept set;
    `unwired`: lines of ``context.configure(...)`` calls not passing both wrapped filters;
    `unsafe`: lines of calls we cannot edit (``**kwargs`` without both keywords), or ``0``
    when env.py has no ``context.configure(...)`` call at all."""

    current: bool
    kept: frozenset[str]
    unwired: tuple[int, ...]
    unsafe: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return self.current and not self.unwired

    def hides(self, kept: Iterable[str]) -> bool:
        """True when env.py hides the tool's tables and every name of `kept`."""
        return self.complete and set(kept) <= self.kept


def read_filter(source: str) -> EnvFilter | None:
    """The filter status of env.py's `source`; None when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    kept = _kept(tree)
    block = [ast.dump(n) for n in tree.body if _defines(n) in BLOCK_NAMES]
    current = block == [ast.dump(n) for n in ast.parse(render_block(kept)).body]
    unwired: list[int] = []
    unsafe: list[int] = []
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_configure(n)),
                   key=lambda n: n.lineno)
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
        if all(k in keywords and _wrapped(keywords[k], k) for k in WRAPPERS):
            continue
        unwired.append(call.lineno)
        if any(k.arg is None for k in call.keywords) and not all(k in keywords
                                                                  for k in WRAPPERS):
            unsafe.append(call.lineno)
    if not calls:
        unsafe.append(0)
    return EnvFilter(current, kept, tuple(unwired), tuple(unsafe))


def _wrapped(value: ast.expr, keyword: str) -> bool:
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id == WRAPPERS[keyword])


# -- installing (libcst: every comment and the layout of the user's file are kept) ---------------


def install(source: str, kept: Iterable[str] = ()) -> str:
    """`source` (an env.py) with the filter block holding exactly `kept` and every
    ``context.configure(...)`` call wired to it. Raises `UnsafeEnv` when a call cannot be
    edited safely (the text says what to write by hand)."""
    import libcst as cst

    from .env_options import append_keyword

    status = read_filter(source)
    if status is None:
        raise UnsafeEnv("env.py does not parse; fix it first")
    if status.unsafe:
        raise UnsafeEnv(unsafe_text(status.unsafe))

    def defines(node: cst.CSTNode) -> str | None:
        if isinstance(node, cst.FunctionDef):
            return node.name.value
        if (isinstance(node, cst.SimpleStatementLine) and len(node.body) == 1
                and isinstance(node.body[0], cst.Assign) and len(node.body[0].targets) == 1
                and isinstance(node.body[0].targets[0].target, cst.Name)):
            return node.body[0].targets[0].target.value
        return None

    def is_configure(call: cst.Call) -> bool:
        func = call.func
        return (isinstance(func, cst.Attribute) and func.attr.value == "configure"
                and isinstance(func.value, cst.Name) and func.value.value == "context")

    class Wire(cst.CSTTransformer):
        """Pass both wrapped filters to every ``context.configure(...)`` call (the user's own
        filter, when given, becomes the wrapper's argument)."""

        def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
            if not is_configure(updated):
                return updated
            for keyword, wrapper in WRAPPERS.items():
                args = list(updated.args)
                index = next((i for i, a in enumerate(args)
                              if a.keyword is not None and a.keyword.value == keyword), None)
                if index is None:
                    if any(a.star == "**" for a in args):
                        return original  # refused above; never guess
                    updated = append_keyword(updated, keyword, cst.Call(func=cst.Name(wrapper)))
                    continue
                value = args[index].value
                if not (isinstance(value, cst.Call) and isinstance(value.func, cst.Name)
                        and value.func.value == wrapper):
                    args[index] = args[index].with_changes(value=cst.Call(
                        func=cst.Name(wrapper), args=[cst.Arg(value=value)]))
                    updated = updated.with_changes(args=args)
            return updated

    rendered = cst.parse_module(render_block(kept))
    block = list(rendered.body)
    block[0] = block[0].with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine(),
                                                    *rendered.header, *block[0].leading_lines])
    module = cst.parse_module(source)
    body = list(module.body)
    places = [i for i, n in enumerate(body) if defines(n) in BLOCK_NAMES]
    if places:
        first = places[0]
        body = [n for i, n in enumerate(body) if i not in places]
        body[first:first] = block
    else:
        at = 0  # after the docstring and the imports that open the file: before anything runs
        for i, node in enumerate(body):
            if isinstance(node, cst.SimpleStatementLine) and all(
                    isinstance(s, (cst.Import, cst.ImportFrom)) or (
                        i == 0 and isinstance(s, cst.Expr)
                        and isinstance(s.value, (cst.SimpleString, cst.ConcatenatedString)))
                    for s in node.body):
                at = i + 1
                continue
            break
        body[at:at] = block
        if at + len(block) < len(body):  # what follows stays two blank lines away
            follower = body[at + len(block)]
            blank = [ln for ln in follower.leading_lines if ln.comment is None]
            if len(blank) < 2:
                body[at + len(block)] = follower.with_changes(
                    leading_lines=[cst.EmptyLine()] * (2 - len(blank))
                    + list(follower.leading_lines))
    return module.with_changes(body=body).visit(Wire()).code


class UnsafeEnv(ValueError):
    """env.py cannot be edited safely; the message says what to do by hand."""


def unsafe_text(lines: tuple[int, ...]) -> str:
    if lines == (0,):
        return ("env.py has no context.configure(...) call that alembic-repair can find; pass "
                "include_name=_ar_include_name(), include_object=_ar_include_object() to yours")
    where = ", ".join(f"line {n}" for n in lines)
    return (f"env.py {where}: context.configure(...) passes **kwargs, so whether they hold "
            "include_name/include_object cannot be told; add include_name=_ar_include_name(), "
            "include_object=_ar_include_object() to that call yourself (wrap your own filter: "
            "_ar_include_object(your_filter))")


# -- the project's files -------------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """What `install_file` did: `changed`; where the original went (`kept_copy`)."""

    path: Path
    changed: bool
    kept: frozenset[str]
    kept_copy: Path | None = None


def install_file(env_py: Path, kept: Iterable[str] = (), *, keep_to: Path | None = None
                 ) -> Installed:
    """Install (or update) the filter in `env_py` with the union of `kept` and the names the
    file already keeps. The original goes to `keep_to` first (once: the first copy is the
    original; mode 0600). A file generated by us keeps its checksum line valid, so bootstrap
    still refreshes it. Raises `UnsafeEnv` (nothing written)."""
    from . import scaffold

    source = env_py.read_text(encoding="utf-8")
    names = frozenset(kept) | kept_in(source)
    generated = scaffold.is_generated(env_py)
    if generated:
        header, _, body = source.partition("\n")
        new = scaffold.restamp(header, install(body, names))
    else:
        new = install(source, names)
    if new == source:
        return Installed(env_py, False, names)
    copy = None
    if keep_to is not None:
        copy = keep_to
        if not copy.exists():
            from .private import private_dir

            private_dir(copy.parent)
            shutil.copy2(env_py, copy)
            copy.chmod(0o600)
    env_py.write_text(new, encoding="utf-8")
    return Installed(env_py, True, names, copy)


def backup_path(state_dir: Path, rel: str) -> Path:
    """Where a command without a run folder of its own keeps the original env.py."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return state_dir / "backups" / f"{stamp}-env-filter" / "project-files" / rel


# -- pyproject.toml: [tool.alembic_repair] ignore_tables -----------------------------------------

_HEADER = re.compile(r"^\s*\[\s*tool\s*\.\s*alembic_repair\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*ignore_tables\s*=")


def _toml_string(name: str) -> str:
    out = []
    for char in name:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def record_ignore_tables(path: Path, tables: Iterable[str]) -> str | None:
    """`path`'s text with `tables` added to ``[tool.alembic_repair] ignore_tables`` (every other
    byte kept), or None when nothing needs adding or the file's layout is one this line editor
    does not handle (dotted keys, an inline table): the result is always re-read with tomllib
    and must equal the old document plus the new names, else None."""
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    section = data.get("tool", {}).get("alembic_repair")
    old = list(section.get("ignore_tables", [])) if isinstance(section, dict) else []
    new = [t for t in dict.fromkeys(tables) if t not in old]
    if not new:
        return None
    lines = text.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if _HEADER.match(line)), None)
    items = ", ".join(_toml_string(t) for t in new)
    if header is None:
        if section is not None:
            return None
        tail = "" if not text or text.endswith("\n") else "\n"
        candidates = [f"{text}{tail}\n[tool.alembic_repair]\nignore_tables = [{items}]\n"]
    else:
        end = next((i for i in range(header + 1, len(lines))
                    if lines[i].lstrip().startswith("[")), len(lines))
        key = next((i for i in range(header + 1, end) if _KEY.match(lines[i])), None)
        if key is None:
            lines.insert(header + 1, f"ignore_tables = [{items}]\n")
            candidates = ["".join(lines)]
        else:
            candidates = _append_items(lines, key, end, new)
    expected = tomllib.loads(text)
    expected.setdefault("tool", {}).setdefault("alembic_repair", {})["ignore_tables"] = \
        old + new
    for candidate in candidates:
        try:
            if tomllib.loads(candidate) == expected:
                return candidate
        except tomllib.TOMLDecodeError:
            continue
    return None


def _append_items(lines: list[str], key: int, end: int, new: list[str]) -> list[str]:
    """Candidate texts with `new` before the closing bracket of the array starting on line
    `key` (one per line, or inline); the caller keeps the first that tomllib reads right."""
    items = [_toml_string(t) for t in new]
    for last in range(key, end):
        span = "".join(lines[key:last + 1])
        head, _, value = span.partition("=")
        for close in range(len(value) - 1, -1, -1):
            if value[close] != "]":
                continue
            try:
                tomllib.loads("x = " + value[:close + 1])
            except tomllib.TOMLDecodeError:
                continue
            values = []
            line_start = value.rfind("\n", 0, close) + 1
            if line_start and not value[line_start:close].strip():
                # one item per line: new lines, with the previous item's indent
                previous = value[:line_start - 1].rsplit("\n", 1)[-1]
                pad = previous[:len(previous) - len(previous.lstrip())] or "    "
                values.append(value[:line_start] + "".join(f"{pad}{i},\n" for i in items)
                              + value[line_start:])
            values += [value[:close] + sep + ", ".join(items) + value[close:]
                       for sep in (", ", "")]
            before, after = "".join(lines[:key]), "".join(lines[last + 1:])
            return [before + head + "=" + v + after for v in values]
    return []


def protect(project: Project) -> tuple[str, str] | None:
    """Install the filter into the project's env.py (a command that just created trash, or
    bootstrap finding some): ``(kind, message)`` for the printed actions, or None when
    nothing changed. The original env.py goes into a backup folder of its own."""
    env = project.env_py
    if not env.is_file():
        return None
    rel = project.rel(env)
    try:
        done = install_file(env, project.ignore_tables,
                            keep_to=backup_path(project.state_dir, rel))
    except UnsafeEnv as err:
        return "warning", f"{rel}: {err}"
    if not done.changed:
        return None
    names = f" nor {', '.join(sorted(done.kept))}" if done.kept else ""
    where = f"; the original is kept in {project.rel(done.kept_copy)}" if done.kept_copy else ""
    return "edit", (f"{rel}: plain `alembic revision --autogenerate` no longer sees the tool's "
                    f"_ar_* tables{names}{where}")
