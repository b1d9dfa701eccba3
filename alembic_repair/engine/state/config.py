"""What the project's files say about themselves, read without running them (AR1xx)."""

from __future__ import annotations

import ast
import configparser
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..env_filter import (
    EnvFilter,
    UnsafeEnv,
    context_names,
    dotted_name,
    read_filter,
    read_source,
)
from ..project import Project
from .schema import VERSION_TABLE


@dataclass(frozen=True)
class ConfigState:
    ini_exists: bool
    script_location_raw: str | None  # as written in alembic.ini
    prepend_sys_path: bool
    script_location_exists: bool
    env_py_exists: bool
    versions_dir_exists: bool
    render_as_batch: bool  # env.py passes render_as_batch somewhere
    compare_type_off: bool  # env.py passes compare_type=False
    env_filter: EnvFilter | None = None  # what env.py hides from autogenerate (None: no env.py)
    notes: tuple[str, ...] = ()  # what of env.py could not be read statically, what is assumed


def _env_flags(env_py: Path) -> tuple[bool, bool]:
    try:
        tree = ast.parse(env_py.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return True, False  # unreadable: AR105 speaks for it
    batch = off = False
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "render_as_batch":
            batch = True
        # passed through a variable ({"render_as_batch": ...}, opts["render_as_batch"]) or a
        # configure(**options) we cannot follow: not provably missing, so never reported
        if isinstance(node, ast.Constant) and node.value == "render_as_batch":
            batch = True
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "configure"
                and any(k.arg is None for k in node.keywords)):
            batch = True
        if (isinstance(node, ast.keyword) and node.arg == "compare_type"
                and isinstance(node.value, ast.Constant) and node.value.value is False):
            off = True
    return batch, off


def read_config(project: Project) -> ConfigState:
    raw, prepend = None, False
    if project.ini_path.is_file():
        parser = configparser.RawConfigParser()
        try:
            parser.read(project.ini_path, encoding="utf-8")
            raw = parser.get("alembic", "script_location", fallback=None)
            prepend = parser.has_option("alembic", "prepend_sys_path")
        except (configparser.Error, UnicodeDecodeError):
            pass
    batch, off = _env_flags(project.env_py) if project.env_py.is_file() else (True, False)
    return ConfigState(
        ini_exists=project.ini_path.is_file(),
        script_location_raw=raw,
        prepend_sys_path=prepend,
        script_location_exists=project.script_location.is_dir(),
        env_py_exists=project.env_py.is_file(),
        versions_dir_exists=project.versions_dir.is_dir(),
        render_as_batch=batch,
        compare_type_off=off,
        env_filter=_env_filter(project.env_py),
        notes=version_table_notes(project),
    )


def _env_filter(env_py: Path) -> EnvFilter | None:
    try:
        return read_filter(read_source(env_py)[0])
    except UnsafeEnv:
        return None


# -- options env.py passes to context.configure(), read without running it ---------------------


@dataclass(frozen=True)
class ConfigureOption:
    """One keyword of env.py's ``context.configure(...)`` calls, as far as ast can tell:
    `value` (None: not passed, so Alembic's default) and `note` (why it could not be read:
    then `value` is None too, and the caller falls back to the default and says so)."""

    value: object = None
    note: str | None = None


def configure_option(source: str | bytes, option: str, ini: Path | None = None
                     ) -> ConfigureOption:
    """What env.py's `source` passes as `option`: a literal, a module-level name bound once to
    a literal, ``config.get_main_option("key"[, default])`` (read from `ini`'s ``[alembic]``),
    or a key of a module-level dict literal passed as ``**name``. The calls passing
    ``connection=`` (the online path: the one that stamps the database) speak when there are
    any; several that disagree: the last one wins, and the note says so."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, UnicodeDecodeError, LookupError):
        return ConfigureOption(note="env.py does not parse")
    online = [c for c in _chains(tree) if any(k.arg == "connection"
                                              for call in c for k in call.keywords)]
    found = [_from_chain(tree, c, option, ini) for c in (online or _chains(tree))]
    values = {repr(f.value) for f in found if f.note is None}
    notes = [f.note for f in found if f.note is not None]
    if notes:
        return ConfigureOption(note=notes[0])
    if len(values) > 1:
        return ConfigureOption(found[-1].value, f"the context.configure(...) calls pass "
                               f"different {option} values; the last one is used")
    return found[-1] if found else ConfigureOption()


def _chains(tree: ast.Module) -> list[tuple[ast.Call, ...]]:
    """Each ``context.configure(...)`` call, followed, when it passes ``**kwargs`` of the
    module-level function around it (``def configure(**kwargs): context.configure(...,
    **kwargs)``, as alembic-repair's own env.py does), by each call of that function."""
    aliases = context_names(tree)
    chains: list[tuple[ast.Call, ...]] = []
    for function in [None, *[n for n in tree.body if isinstance(n, ast.FunctionDef)]]:
        nodes = (ast.walk(function) if function is not None else
                 [n for top in tree.body if not isinstance(top, ast.FunctionDef)
                  for n in ast.walk(top)])
        for node in nodes:
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "configure"
                    and dotted_name(node.func.value) in aliases):
                continue
            kwarg = function.args.kwarg.arg if function and function.args.kwarg else None
            passed = any(k.arg is None and isinstance(k.value, ast.Name)
                         and k.value.id == kwarg for k in node.keywords)
            callers = [c for c in ast.walk(tree) if passed and function is not None
                       and isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                       and c.func.id == function.name]
            chains += [(node, c) for c in callers] or [(node,)]
    return sorted(chains, key=lambda c: c[-1].lineno)


def _from_chain(tree: ast.Module, chain: tuple[ast.Call, ...], option: str, ini: Path | None
                ) -> ConfigureOption:
    call, rest = chain[0], chain[1:]
    line = f"line {call.lineno}: "
    for keyword in call.keywords:
        if keyword.arg == option:
            return _evaluate(tree, keyword.value, ini, f"{line}{option}=")
    for keyword in call.keywords:
        if keyword.arg is not None:
            continue
        if rest:  # **kwargs of the function around: what its caller passes
            found = _from_chain(tree, rest, option, ini)
            if found.value is not None or found.note is not None:
                return found
            continue
        bound = bound_value(tree, keyword.value)  # a module-level dict literal is followed
        if isinstance(bound, ast.Dict) and all(isinstance(k, ast.Constant)
                                               for k in bound.keys):
            for key, value in zip(bound.keys, bound.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == option:
                    return _evaluate(tree, value, ini, f"{line}{option}=")
            continue
        return ConfigureOption(note=f"{line}context.configure(**...) may pass {option}, "
                               "which cannot be read without running env.py")
    return ConfigureOption()


def _evaluate(tree: ast.Module, node: ast.expr, ini: Path | None, what: str
              ) -> ConfigureOption:
    node = bound_value(tree, node) or node
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, str)):
        return ConfigureOption(node.value)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get_main_option" and node.args
            and all(isinstance(a, ast.Constant) for a in node.args) and not node.keywords):
        key = node.args[0].value  # type: ignore[attr-defined]
        default = node.args[1].value if len(node.args) > 1 else None  # type: ignore[attr-defined]
        return ConfigureOption(_ini_option(ini, str(key), default))
    return ConfigureOption(note=f"{what}{ast.unparse(node)[:60]} cannot be read without "
                           "running env.py")


def bound_value(tree: ast.Module, node: ast.expr) -> ast.expr | None:
    """The value a module-level name is bound to, when it is bound exactly once."""
    if not isinstance(node, ast.Name):
        return None
    values = [n.value for n in tree.body if isinstance(n, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)]
    values += [n.value for n in tree.body if isinstance(n, ast.AnnAssign) and n.value
               and isinstance(n.target, ast.Name) and n.target.id == node.id]
    return values[0] if len(values) == 1 else None


def _ini_option(ini: Path | None, key: str, default: object) -> object:
    if ini is None or not ini.is_file():
        return default
    parser = configparser.RawConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
        return parser.get("alembic", key, fallback=default)
    except (configparser.Error, UnicodeDecodeError):
        return default


VERSION_OPTIONS = ("version_table", "version_table_schema")
#: What env.py passed when it ran in this process (`remember_options`), by env.py's identity.
_SEEN: dict[tuple[Path, int, int], dict[str, object]] = {}


def version_table(project: Project, options: Mapping[str, object] | None = None
                  ) -> tuple[str, str | None]:
    """(table, schema) of the project's version table: Alembic's ``alembic_version`` unless
    env.py passes ``version_table`` / ``version_table_schema``. The one place that decides:
    `options` (what env.py was seen passing: they win); else env.py read with ast
    (`configure_option`); a value ast cannot read: what env.py passed when it last ran in
    this process (`remember_options`), else Alembic's default (`version_table_notes`)."""
    table = _option(project, "version_table", options)
    schema = _option(project, "version_table_schema", options)
    return (table if isinstance(table, str) and table else VERSION_TABLE,
            schema if isinstance(schema, str) and schema else None)


def remember_options(project: Project, options: Mapping[str, object]) -> None:
    """Keep the version-table options env.py passed when it ran (capture_from_env_py, the
    replay through env.py): they settle what ast cannot read, for every reader and stamp of
    this process, as long as env.py is unchanged."""
    key = _identity(project)
    if key is not None:
        _SEEN[key] = {k: options[k] for k in VERSION_OPTIONS if k in options}


def version_table_notes(project: Project) -> tuple[str, ...]:
    """Where env.py's version table could not be read statically, and what is used instead
    (empty when it was read). Stamps then go through Alembic's own ``stamp`` and env.py."""
    seen = _SEEN.get(_identity(project) or (Path(), 0, 0), {})
    return tuple(f"{project.rel(project.env_py)}: {found.note}; " + (
        f"the value env.py passed when it ran ({seen[option]!r}) is used" if option in seen
        else "it is taken to be Alembic's default")
        for option in VERSION_OPTIONS if (found := _static(project, option)).note)


def _option(project: Project, option: str, options: Mapping[str, object] | None) -> object:
    if options is not None and option in options:
        return options[option]
    found = _static(project, option)
    if found.note is not None:
        return _SEEN.get(_identity(project) or (Path(), 0, 0), {}).get(option)
    return found.value


def _identity(project: Project) -> tuple[Path, int, int] | None:
    try:
        stat = project.env_py.stat()
    except OSError:
        return None
    return project.env_py, stat.st_mtime_ns, stat.st_size


def _static(project: Project, option: str) -> ConfigureOption:
    key = _identity(project)
    if key is None:
        return ConfigureOption()
    ini = project.ini_path if project.ini_path.is_file() else None
    return _static_cached(*key, ini, option)


@lru_cache(maxsize=64)
def _static_cached(env_py: Path, _mtime: int, _size: int, ini: Path | None, option: str
                   ) -> ConfigureOption:
    try:
        source = read_source(env_py)[0]
    except UnsafeEnv:
        return ConfigureOption()
    return configure_option(source, option, ini)
