"""Installing the autogenerate filter in env.py (libcst: every comment and the layout of the
user's file are kept), and recording kept tables in pyproject.toml's ``ignore_tables``.

What the filter is and how env.py is read and checked: `env_filter`. `ensure` is the one way
in (bootstrap, trash drop, drop, fix); `protect` turns its refusal into a warning.
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

from .env_filter import (
    BLOCK_NAMES,
    WRAPPERS,
    UnsafeEnv,
    context_names,
    kept_in,
    read_filter,
    read_source,
    render_block,
    status,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from .project import Project

__all__ = ["Installed", "ensure", "install", "install_file", "protect", "record_ignore_tables"]


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
