"""The tables env.py's own ``include_object`` / ``include_name`` leave out of autogenerate.

`alembic check` never reports a table those filters exclude, so doctor must not either
(no AR403 drift, no AR406 orphan). The filters are the project's code. Two ways to get them:

* the options env.py was seen passing (``capture_from_env_py`` runs env.py offline and keeps
  ``context.opts``; the replay through env.py can hand over the online ones): the real
  callables, called as Alembic calls them for a table;
* else, when env.py passes ``include_object=name`` (or wraps it: ``_ar_include_object(name)``)
  naming a plain function defined in env.py, that function alone is compiled, with env.py's
  module-level literal constants and functions around it (nothing else of env.py runs), and
  called the same way.

Only table-level decisions are honoured: a filter that leaves out columns, indexes or
constraints of a table autogenerate still compares is not (yet) followed. A filter that raises
counts as "included" (the table is compared, as before), and is named in the notes.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Table

from ..env_filter import WRAPPERS, UnsafeEnv, context_names, dotted_name, read_source
from ..project import Project
from .config import bound_value

Filter = Callable[..., Any]


@dataclass(frozen=True)
class Excluded:
    """Live tables and model tables env.py's filters leave out, and what could not be told."""

    live: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()


def excluded_tables(project: Project, live: Iterable[str], metadata: MetaData | None,
                    options: Mapping[str, object] | None = None,
                    history: Iterable[str] = ()) -> Excluded:
    """What env.py's include_name / include_object exclude among the `live` table names and
    the tables of `metadata` (the models), asked the way autogenerate asks. `history`: tables
    the replayed history has, asked as reflected ones too (in `Excluded.live`): the history
    rules leave out the same tables."""
    notes: list[str] = []
    hooks = env_filters(project, options, notes)
    name_hook, object_hook = hooks["include_name"], hooks["include_object"]
    if name_hook is None and object_hook is None:
        return Excluded(notes=tuple(notes))
    models = {t.name: t for t in metadata.tables.values()} if metadata is not None else {}
    gone_live, gone_models = set(), set()
    live = list(live)
    for name in dict.fromkeys([*live, *history]):
        stub = Table(name, MetaData())
        parents = {"schema_name": None, "schema_qualified_table_name": name}
        if not (_ask(name_hook, notes, name, name, "table", parents)
                and _ask(object_hook, notes, name, stub, name, "table", True, models.get(name))):
            gone_live.add(name)
    live_names = set(live)
    for name, table in models.items():
        compare = Table(name, MetaData()) if name in live_names else None
        if not _ask(object_hook, notes, name, table, name, "table", False, compare):
            gone_models.add(name)
    return Excluded(frozenset(gone_live), frozenset(gone_models), tuple(dict.fromkeys(notes)))


def env_filters(project: Project, options: Mapping[str, object] | None = None,
                notes: list[str] | None = None) -> dict[str, Filter | None]:
    """env.py's ``include_name`` and ``include_object`` (None: it passes none, or it cannot be
    told): the captured callables in `options` first, else the plain functions env.py names
    (compiled alone). For whoever asks Alembic's questions (autogenerate's comparison too)."""
    said = notes if notes is not None else []
    return {key: _hook(project, key, options, said) for key in WRAPPERS}


def _ask(hook: Filter | None, notes: list[str], table: str, *args: Any) -> bool:
    if hook is None:
        return True
    try:
        return bool(hook(*args))
    except Exception as err:  # noqa: BLE001  (the project's code: anything may be raised)
        notes.append(f"env.py's {getattr(hook, '__name__', 'filter')} raised "
                     f"{type(err).__name__} for table {table}; the table is compared")
        return True


def _hook(project: Project, key: str, options: Mapping[str, object] | None,
          notes: list[str]) -> Filter | None:
    if options is not None and callable(options.get(key)):
        return options[key]  # type: ignore[return-value]
    return _static_hook(project, key, notes)


def _static_hook(project: Project, key: str, notes: list[str]) -> Filter | None:
    """The plain function env.py passes as `key`, compiled alone (see the module's doc)."""
    try:
        source = read_source(project.env_py)[0]
        tree = ast.parse(source)
    except (UnsafeEnv, SyntaxError, ValueError):
        return None
    aliases = context_names(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "configure" and dotted_name(node.func.value) in aliases):
            continue
        for keyword in node.keywords:
            if keyword.arg != key:
                continue
            value = keyword.value
            if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                    and value.func.id == WRAPPERS[key]):  # our block wraps the user's filter
                value = value.args[0] if value.args else ast.Constant(None)
            if isinstance(value, ast.Name):
                names.add(value.id)
            elif not (isinstance(value, ast.Constant) and value.value is None):
                notes.append(f"line {node.lineno}: {key}={ast.unparse(value)[:40]} cannot be "
                             "read without running env.py; its exclusions are not applied")
    if len(names) != 1:
        return None
    name = names.pop()
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if name not in functions:
        return None
    kept = [n for n in tree.body if isinstance(n, ast.FunctionDef) or _literal(tree, n)]
    namespace: dict[str, Any] = {"__name__": "_alembic_repair_env_filter"}
    try:
        exec(compile(ast.Module(body=kept, type_ignores=[]), str(project.env_py), "exec"),
             namespace)
    except Exception as err:  # noqa: BLE001  (the project's code)
        notes.append(f"env.py's {name} cannot be compiled alone ({type(err).__name__}); "
                     "its exclusions are not applied")
        return None
    return namespace.get(name)


def _literal(tree: ast.Module, node: ast.stmt) -> bool:
    """A module-level ``NAME = <literal>`` (also ``frozenset({...})`` / ``set(...)``)."""
    if not (isinstance(node, ast.Assign) and all(isinstance(t, ast.Name)
                                                 for t in node.targets)):
        return False
    value = node.value
    if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in ("frozenset", "set", "tuple") and len(value.args) <= 1
            and not value.keywords):
        value = value.args[0] if value.args else ast.Constant(None)
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return bound_value(tree, node.targets[0]) is not None
