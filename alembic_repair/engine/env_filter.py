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
the install refuses (`EnvFilter.unsafe`) with what to write by hand. The same for a
``configure`` reached in a way we cannot follow (another object's ``.configure(...)``,
``cfg = context.configure``): aliases of alembic's ``context`` (``import ... as``,
``alembic.context``) are resolved and wired, anything else would leave a call unfiltered while
the file looked protected. env.py is read as bytes and decoded the way Python does (coding
cookie), and written back in its own encoding. `ensure` is the one way in (bootstrap, trash
drop, drop, fix); `check` lets a soft drop refuse before it changes anything.
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

__all__ = ["EnvFilter", "Installed", "OWN_PREFIX", "UnsafeEnv", "check", "ensure", "install",
           "install_file", "kept_in", "protect", "read_filter", "read_source",
           "record_ignore_tables", "render_block", "status", "unsafe_text"]

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


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner is not None else None
    return None


def context_names(tree: ast.Module) -> frozenset[str]:
    """The dotted names that mean alembic's ``context`` module in `tree`: ``context`` (from
    ``from alembic import context``), its ``as`` aliases, and ``alembic.context`` (after
    ``import alembic`` / ``import alembic.context``, or under an ``as`` name)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "alembic" and not node.level:
            names |= {a.asname or a.name for a in node.names if a.name == "context"}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "alembic.context":
                    names.add(a.asname or "alembic.context")
                elif a.name == "alembic":
                    names.add(f"{a.asname or 'alembic'}.context")
    return frozenset(names)


def _configure_uses(tree: ast.Module) -> tuple[list[ast.Call], list[tuple[int, str]]]:
    """(the ``<context>.configure(...)`` calls we can wire, (line, why) of every other use of
    a ``configure`` we cannot follow: another object's ``.configure(...)``, ``context.configure``
    taken as a value (``cfg = context.configure``), ``from alembic.context import configure``)."""
    aliases = context_names(tree)
    calls: list[ast.Call] = []
    odd: list[tuple[int, str]] = []
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("context") and any(
                a.name == "configure" for a in node.names):
            odd.append((node.lineno, "imports configure by itself"))
        if not (isinstance(node, ast.Attribute) and node.attr == "configure"):
            continue
        receiver = _dotted(node.value)
        if id(node) in funcs and receiver in aliases:
            continue  # the call itself is collected below
        what = f"{receiver or '(expression)'}.configure"
        odd.append((node.lineno, f"{what} is " + ("called" if id(node) in funcs else "used")
                    + " in a way alembic-repair cannot follow"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "configure" and _dotted(node.func.value) in aliases):
            calls.append(node)
    return sorted(calls, key=lambda n: n.lineno), sorted(set(odd))


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
    `unsafe`: lines of calls we cannot edit (``**kwargs`` without both keywords, a configure
    reached in a way we cannot follow), or ``0`` when env.py has no ``context.configure(...)``
    call at all; `notes`: why, one per line of `unsafe`."""

    current: bool
    kept: frozenset[str]
    unwired: tuple[int, ...]
    unsafe: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.current and not self.unwired and not self.unsafe

    def hides(self, kept: Iterable[str]) -> bool:
        """True when env.py hides the tool's tables and every name of `kept`."""
        return self.complete and set(kept) <= self.kept

    @property
    def why(self) -> str:
        """The one-line text of what to do by hand (empty when nothing is unsafe)."""
        return unsafe_text(self.unsafe, self.notes) if self.unsafe else ""


def read_filter(source: str | bytes) -> EnvFilter | None:
    """The filter status of env.py's `source` (bytes are decoded the way Python does, coding
    cookie included); None when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, UnicodeDecodeError, LookupError):
        return None
    kept = _kept(tree)
    block = [ast.dump(n) for n in tree.body if _defines(n) in BLOCK_NAMES]
    current = block == [ast.dump(n) for n in ast.parse(render_block(kept)).body]
    unwired: list[int] = []
    unsafe: dict[int, str] = {}
    calls, odd = _configure_uses(tree)
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
        if all(k in keywords and _wrapped(keywords[k], k) for k in WRAPPERS):
            continue
        unwired.append(call.lineno)
        if any(k.arg is None for k in call.keywords) and not all(k in keywords
                                                                  for k in WRAPPERS):
            unsafe.setdefault(call.lineno, KWARGS)
    for line, why in odd:
        unsafe.setdefault(line, why)
    if not calls:
        unsafe.setdefault(0, "")
    lines = tuple(sorted(unsafe))
    return EnvFilter(current, kept, tuple(unwired), lines, tuple(unsafe[n] for n in lines))


def _wrapped(value: ast.expr, keyword: str) -> bool:
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id == WRAPPERS[keyword])


# -- installing (libcst: every comment and the layout of the user's file are kept) ---------------


def install(source: str, kept: Iterable[str] = ()) -> str:
    """`source` (an env.py) with the filter block holding exactly `kept` and every
    ``context.configure(...)`` call wired to it. Raises `UnsafeEnv` when a call cannot be
    edited safely (the text says what to write by hand)."""
    import libcst as cst
    from libcst.helpers import get_full_name_for_node

    from .env_options import append_keyword

    status = read_filter(source)
    if status is None:
        raise UnsafeEnv("env.py does not parse; fix it first")
    if status.unsafe:
        raise UnsafeEnv(status.why)
    aliases = context_names(ast.parse(source))

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
                and get_full_name_for_node(func.value) in aliases)

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


KWARGS = "passes **kwargs, so whether they hold include_name/include_object cannot be told"
HAND = ("add include_name=_ar_include_name(), include_object=_ar_include_object() to "
        "context.configure(...) yourself (wrap your own filter: _ar_include_object(your_filter))")


def unsafe_text(lines: tuple[int, ...], notes: tuple[str, ...] = ()) -> str:
    """One line: where env.py cannot be edited safely, why, and what to write by hand."""
    if lines == (0,):
        return ("env.py has no context.configure(...) call that alembic-repair can find; pass "
                "include_name=_ar_include_name(), include_object=_ar_include_object() to yours")
    notes = notes or (KWARGS,) * len(lines)
    parts = [f"line {n}: " + ("context.configure(...) " if why == KWARGS else "") + why
             for n, why in zip(lines, notes, strict=False) if n]
    return f"env.py {'; '.join(parts)}; {HAND}"


# -- the project's files -------------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """What `install_file` did: `changed`; where the original went (`kept_copy`)."""

    path: Path
    changed: bool
    kept: frozenset[str]
    kept_copy: Path | None = None


def read_source(env_py: Path) -> tuple[str, str]:
    """env.py's text and encoding, decoded the way Python does (coding cookie, BOM, else
    UTF-8). Raises `UnsafeEnv` when it cannot be read or decoded: then nothing may be
    written, and the user has to look at the file."""
    import io
    import tokenize

    try:
        raw = env_py.read_bytes()
        encoding = tokenize.detect_encoding(io.BytesIO(raw).readline)[0]
        return raw.decode(encoding), encoding
    except OSError as err:
        raise UnsafeEnv(f"env.py cannot be read ({err.strerror or err}); fix that first"
                        ) from None
    except (SyntaxError, LookupError, UnicodeDecodeError):
        raise UnsafeEnv("env.py is not valid text in its declared encoding (UTF-8 unless a "
                        "`# -*- coding: ... -*-` line says otherwise), so Python cannot run it "
                        "either; fix its encoding first") from None


def install_file(env_py: Path, kept: Iterable[str] = (), *, keep_to: Path | None = None
                 ) -> Installed:
    """Install (or update) the filter in `env_py` with the union of `kept` and the names the
    file already keeps, written back in the file's own encoding. The original goes to
    `keep_to` first (once: the first copy is the original; mode 0600). A file generated by us
    keeps its checksum line valid, so bootstrap still refreshes it. Raises `UnsafeEnv`
    (nothing written)."""
    from . import scaffold

    source, encoding = read_source(env_py)
    names = frozenset(kept) | kept_in(source)
    generated = encoding in ("utf-8", "utf-8-sig") and scaffold.is_generated(env_py)
    if generated:
        header, _, body = source.partition("\n")
        new = scaffold.restamp(header, install(body, names))
    else:
        new = install(source, names)
    if new == source:
        return Installed(env_py, False, names)
    try:
        data = new.encode(encoding)
    except UnicodeEncodeError:
        raise UnsafeEnv(f"env.py is written in {encoding}, which cannot hold the kept table "
                        "names; save it as UTF-8 first") from None
    copy = None
    if keep_to is not None:
        copy = keep_to
        if not copy.exists():
            from ..private import private_dir

            private_dir(copy.parent)
            shutil.copy2(env_py, copy)
            copy.chmod(0o600)
    env_py.write_bytes(data)
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


def status(project: Project) -> EnvFilter:
    """env.py's filter status; raises `UnsafeEnv` (one line: what to do by hand) when the
    filter cannot be installed: env.py unreadable, undecodable, not parsing, or with a
    configure call that cannot be edited safely."""
    source, _ = read_source(project.env_py)
    found = read_filter(source)
    if found is None:
        raise UnsafeEnv("env.py does not parse; fix it first")
    if found.unsafe:
        raise UnsafeEnv(found.why)
    return found


def check(project: Project) -> None:
    """Refuse (`UnsafeEnv`) before a command creates trash that env.py could not hide; a
    project without env.py has nothing to protect (plain Alembic cannot run there)."""
    if project.env_py.is_file():
        status(project)


def ensure(project: Project, tables: Iterable[str] = (), *, keep_to: Path | None = None
           ) -> tuple[str, str] | None:
    """The one way the filter gets installed (bootstrap, trash drop, drop, fix): env.py hides
    the tool's ``_ar_*`` tables, ``ignore_tables`` and `tables`. Returns ``("edit", message)``
    for the printed actions, or None when env.py already did (or there is no env.py). The
    original goes to `keep_to` (default: a backup folder of its own). Raises `UnsafeEnv`,
    nothing written."""
    env = project.env_py
    if not env.is_file():
        return None
    wanted = {*project.ignore_tables, *tables}
    if status(project).hides(wanted):
        return None
    rel = project.rel(env)
    done = install_file(env, wanted, keep_to=keep_to or backup_path(project.state_dir, rel))
    if not done.changed:
        return None
    names = f" nor {', '.join(sorted(done.kept))}" if done.kept else ""
    where = f"; the original is kept in {project.rel(done.kept_copy)}" if done.kept_copy else ""
    return "edit", (f"{rel}: plain `alembic revision --autogenerate` no longer sees the tool's "
                    f"_ar_* tables{names}{where}")


def protect(project: Project) -> tuple[str, str] | None:
    """`ensure`, with a refusal turned into a ``("warning", text)`` action (bootstrap: the
    trash is already there; refusing would only block the rest of the setup)."""
    try:
        return ensure(project)
    except UnsafeEnv as err:
        return "warning", f"{project.rel(project.env_py)}: {err}"
