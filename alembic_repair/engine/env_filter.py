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

This module reads and checks (ast only: doctor and bootstrap do not pay for libcst);
`env_filter_install` writes (libcst), and records ``ignore_tables`` in pyproject.toml.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .project import Project

__all__ = ["EnvFilter", "OWN_PREFIX", "UnsafeEnv", "check", "kept_in", "read_filter",
           "read_source", "render_block", "status", "unsafe_text"]

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


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted_name(node.value)
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
        receiver = dotted_name(node.value)
        if id(node) in funcs and receiver in aliases:
            continue  # the call itself is collected below
        what = f"{receiver or '(expression)'}.configure"
        odd.append((node.lineno, f"{what} is " + ("called" if id(node) in funcs else "used")
                    + " in a way alembic-repair cannot follow"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "configure" and dotted_name(node.func.value) in aliases):
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


# -- the project's env.py ---------------------------------------------------------------------


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
