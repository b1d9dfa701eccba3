"""The models' metadata (Alembic's ``target_metadata``), captured without touching the database.

Autogenerate compares the database with whatever ``env.py`` hands to ``context.configure``. We
capture exactly that object by running the user's own env.py in offline mode (no connection), so
our view of the models can never disagree with Alembic's. ``--models module:attr`` (or
``[tool.alembic_repair] models`` in pyproject.toml) names the models directly; that is how a
fresh ``env.py`` gets written and the fallback when env.py is missing.
"""

from __future__ import annotations

import ast
import importlib
import io
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData

from ..errors import ConfigError
from ..masking import redact
from .project import Project

_SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", "site-packages",
              "tests", "test", ".alembic_repair", "build", "dist"}
_INSTALLED = tuple(
    {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_BASE_NAMES = {"DeclarativeBase", "DeclarativeBaseNoMeta", "SQLModel"}


def as_metadata(obj: Any, spec: str) -> MetaData:
    """A MetaData from a MetaData, a declarative Base or an SQLModel class."""
    if isinstance(obj, MetaData):
        return obj
    metadata = getattr(obj, "metadata", None)
    if isinstance(metadata, MetaData):
        return metadata
    raise ConfigError(
        f"{spec}: is {type(obj).__name__}, not a MetaData or a declarative Base; "
        "pass --models module:Base"
    )


#: Modules that our own imports of a project brought in. They are re-imported on the next call
#: (a rebuilt project must not see stale models); modules the caller imported stay untouched.
_IMPORTED: set[str] = set()


@contextmanager
def project_on_path(root: Path) -> Iterator[None]:
    """The project folder on sys.path, and fresh imports of the project modules we loaded."""
    for name in list(_IMPORTED):
        sys.modules.pop(name, None)
    _IMPORTED.clear()
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            if name.partition(".")[0] == __package__.partition(".")[0]:
                continue  # our own modules imported lazily meanwhile: never the project's
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file and not file.startswith(_INSTALLED):
                _IMPORTED.add(name)


def _user_frame(err: BaseException, root: Path) -> tuple[str, int | None]:
    """The deepest place in the user's own files where `err` happened."""
    if isinstance(err, SyntaxError) and err.filename:
        return err.filename, err.lineno
    place: tuple[str, int | None] = ("", None)
    for frame, line in traceback.walk_tb(err.__traceback__):
        file = frame.f_code.co_filename
        if "site-packages" in file or file.startswith("<"):
            continue
        try:
            inside = Path(file).resolve().is_relative_to(root)
        except OSError:
            inside = False
        if inside:
            place = (file, line)
    return place


def _describe(err: BaseException, root: Path, project: Project, what: str, hint: str) -> str:
    file, line = _user_frame(err, root)
    where = f"{project.rel(file)}:{line}" if file else what
    text = err.msg if isinstance(err, SyntaxError) else str(err)
    detail = redact(f"{type(err).__name__}: {text}".splitlines()[0], project.url)
    if isinstance(err, SyntaxError):
        hint = "fix that line, then run bootstrap again"
    return f"{where}: {what} failed with {detail}; {hint}"


def import_models(spec: str, project: Project) -> MetaData:
    """Import ``module:attr`` (attr may be dotted) with the project folder on sys.path."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ConfigError(f"--models {spec!r}: expected module:attribute, e.g. app.models:Base")
    with project_on_path(project.root):
        try:
            obj: Any = importlib.import_module(module_name)
            for part in (attr or "metadata").split("."):
                obj = getattr(obj, part)
        except AttributeError as err:
            raise ConfigError(
                f"--models {spec}: {module_name} has no attribute {attr!r}; name the declarative "
                "Base or its MetaData"
            ) from err
        except Exception as err:  # the user's code: anything may be raised
            raise ConfigError(_describe(
                err, project.root, project, f"importing {module_name}",
                f"fix the models or pass --models with the right module (project: {project.root})",
            )) from err
    return as_metadata(obj, spec)


def capture_from_env_py(project: Project, options: dict[str, Any] | None = None
                        ) -> MetaData | None:
    """Run env.py offline and return the target_metadata it configures (None if it sets none);
    `options`, when given, receives every option the offline path passed to configure()."""
    from .migrations import alembic_config  # local: migrations imports this module's helpers
    from .state.config import remember_options

    config = alembic_config(project, output=io.StringIO())
    captured: dict[str, Any] = {}

    def capture(rev: Any, context: Any) -> list[Any]:
        captured["metadata"] = context.opts.get("target_metadata")
        remember_options(project, context.opts)  # a version_table ast cannot read
        if options is not None:
            options.update(context.opts)
        return []

    with project_on_path(project.root):
        try:
            script = ScriptDirectory.from_config(config)
            with EnvironmentContext(config, script, fn=capture, as_sql=True,
                                    destination_rev="head"):
                script.run_env()
        except Exception as err:  # the user's code: anything may be raised
            raise ConfigError(_describe(
                err, project.root, project, f"running {project.rel(project.env_py)}",
                "fix the import (is prepend_sys_path = %(here)s in alembic.ini?), or pass "
                "--models module:Base",
            )) from err
        except SystemExit as err:
            raise ConfigError(
                f"{project.rel(project.env_py)}: env.py called exit({err.code}); "
                "pass --models module:Base"
            ) from err
    metadata = captured.get("metadata")
    if metadata is None:
        return None
    if isinstance(metadata, (list, tuple)):
        if len(metadata) != 1:
            raise ConfigError(
                f"{project.rel(project.env_py)}: target_metadata is a list of "
                f"{len(metadata)} MetaData; alembic-repair needs one (pass --models)"
            )
        metadata = metadata[0]
    return as_metadata(metadata, str(project.env_py))


#: Packages that hold or build a project's metadata without defining its tables.
_FRAMEWORKS = frozenset({"sqlalchemy", "sqlmodel", "alembic", "flask_sqlalchemy",
                         __package__.partition(".")[0]})


@dataclass(frozen=True)
class ModelsOwner:
    """An installed package that defines the models (its files live outside the project): the
    drift between them and the database belongs to that package's own history, not this one."""

    package: str
    file: str

    @property
    def advice(self) -> str:
        parts = Path(self.file).parts
        shown = self.file
        for marker in ("site-packages", "dist-packages"):
            if marker in parts:
                shown = str(Path("…", *parts[parts.index(marker):]))
                break
        return (f"the models are defined by the installed package {self.package} ({shown}): "
                "their drift belongs to that package's history; upgrade the package rather "
                "than adding a revision here")


def _defining_modules(metadata: MetaData) -> set[str]:
    """The modules that define `metadata`'s tables: its declarative classes' modules (the Base's
    registry mappers), else the Base's own module, else the modules whose globals hold it."""
    bases: list[type] = []
    holders: set[str] = set()
    for name, module in list(sys.modules.items()):
        if module is None or name.partition(".")[0] in _FRAMEWORKS:
            continue
        try:
            values = list(vars(module).values())
        except TypeError:
            continue
        for value in values:
            if value is metadata:
                holders.add(name)
            elif isinstance(value, type) and vars(value).get("metadata") is metadata:
                bases.append(value)
    mapped = {mapper.class_.__module__ for base in bases
              for mapper in getattr(vars(base).get("registry"), "mappers", ())}
    for candidates in (mapped, {base.__module__ for base in bases}, holders):
        found = {m for m in candidates if m.partition(".")[0] not in _FRAMEWORKS}
        if found:
            return found
    return set()


def models_owner(metadata: MetaData, root: Path) -> ModelsOwner | None:
    """The installed package defining `metadata` when every one of its defining modules is
    an installed one (site-packages) outside the project `root`. None: the project's own
    models, or not known (a monorepo's models one folder up are still the project's own)."""
    outside: list[tuple[str, str]] = []
    project = root.resolve()
    for name in sorted(_defining_modules(metadata)):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        try:
            path = Path(file).resolve()
        except OSError:
            return None
        if path.is_relative_to(project) or not {"site-packages", "dist-packages"} & set(
                path.parts):
            return None
        outside.append((name, file))
    if not outside:
        return None
    name, file = outside[0]
    return ModelsOwner(name.partition(".")[0], str(Path(file).resolve()))


def discover_models(root: Path) -> str | None:
    """``module:Base`` for the one declarative Base defined under `root`, found by parsing."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if rel.parts[0] == "alembic":
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(b, ast.Name) and b.id in _BASE_NAMES)
                or (isinstance(b, ast.Attribute) and b.attr in _BASE_NAMES)
                for b in node.bases
            ):
                found.append(f"{module}:{node.name}")
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name == "declarative_base" and isinstance(node.targets[0], ast.Name):
                    found.append(f"{module}:{node.targets[0].id}")
    return found[0] if len(found) == 1 else None


def load_target_metadata(project: Project, *, explicit: str | None = None,
                         use_env_py: bool = True) -> MetaData | None:
    """The models' MetaData: ``explicit`` > env.py's target_metadata > configured > discovered."""
    if explicit:
        return import_models(explicit, project)
    if use_env_py and project.env_py.is_file():
        metadata = capture_from_env_py(project)
        if metadata is not None:
            return metadata
    spec = project.models or discover_models(project.root)
    return import_models(spec, project) if spec else None
