"""The steps that write or edit the setup files (alembic.ini, env.py, script.py.mako,
versions/): regenerated from our templates, or one value corrected in place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...engine import scaffold
from ...engine.project import Project
from ...engine.url import encode_credentials, ini_url_fix
from ...errors import NeedsRepair
from .base import (
    Context,
    Step,
    keep_copy,
    move,
    register,
    restore_copy,
    write_atomic,
)


@register
@dataclass(frozen=True)
class WriteSetupFile(Step):
    """Regenerate alembic.ini, env.py or script.py.mako from our templates; the old file
    (when there is one) moves into the backup folder first."""

    kind: ClassVar[str] = "write-setup"
    path: str  # relative: alembic.ini, alembic/env.py, alembic/script.py.mako
    models: str | None = None
    why: str = ""

    def describe(self) -> str:
        return f"regenerate {self.path}{' (models: ' + self.models + ')' if self.models else ''}" \
               f"{': ' + self.why if self.why else ''}"

    def _target(self, project: Project) -> Path:
        return project.root / self.path

    def apply(self, ctx: Context) -> None:
        project, path = ctx.project, self._target(ctx.project)
        if path.exists() and not scaffold.is_generated(path):
            move(path, ctx.keep(path))
        if path == project.ini_path:
            change = scaffold.write_alembic_ini(project)
        elif path == project.env_py:
            if self.models is None:
                raise NeedsRepair(f"{self.path}: the models are unknown; pass --models")
            change = scaffold.write_env_py(project, self.models)
        else:
            change = scaffold.write_script_template(project)
        scaffold.ensure_versions_dir(project)
        ctx.say("scaffold", f"{change.status} {self.path}")

    def undo(self, ctx: Context) -> None:
        path = self._target(ctx.project)
        kept = ctx.keep(path)
        if kept.exists():
            path.unlink(missing_ok=True)
            move(kept, path)


@register
@dataclass(frozen=True)
class EnsureVersionsDir(Step):
    kind: ClassVar[str] = "versions-dir"

    def describe(self) -> str:
        return "create the versions/ folder (with a .gitkeep so git keeps it)"

    def apply(self, ctx: Context) -> None:
        if scaffold.ensure_versions_dir(ctx.project) is not None:
            ctx.say("scaffold", f"created {ctx.project.rel(ctx.project.versions_dir)}/")

    def undo(self, ctx: Context) -> None:
        pass  # an empty folder harms nothing



# -- editing the setup files in place ------------------------------------------------------------


def double_percent(value: str) -> str:
    """``%`` -> ``%%`` for ConfigParser, leaving ``%%`` and ``%(name)s`` as they are."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "%":
            if value.startswith("%%", i):
                out.append("%%")
                i += 2
                continue
            if value.startswith("%(", i):
                out.append("%")
                i += 1
                continue
            out.append("%%")
        else:
            out.append(value[i])
        i += 1
    return "".join(out)


def ini_url_change(project: Project) -> str | None:
    """The `EditIni` change that lets plain Alembic read alembic.ini's ``sqlalchemy.url``:
    "encode-url" (credentials written as they are: a raw '@' in the password), "double-percent"
    (a stray '%'), or None when no edit changes the line (``%(NAME)s`` of an option only env.py
    sets, a URL wrong in other ways): never a step that leaves the line as it is."""
    import configparser

    parser = configparser.RawConfigParser()
    try:
        parser.read(project.ini_path, encoding="utf-8")
        raw = parser.get("alembic", "sqlalchemy.url").strip()
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    meant = raw.replace("%%", "%")
    if encode_credentials(meant) is not None and ini_url_fix(meant) not in (None, raw):
        return "encode-url"
    return "double-percent" if double_percent(raw) != raw else None


@register
@dataclass(frozen=True)
class EditIni(Step):
    """Correct one value of alembic.ini in place (the rest of the file, comments included, is
    untouched; the original is kept in the backup folder). The value is never printed: it may
    be a URL with a password."""

    kind: ClassVar[str] = "edit-ini"
    key: str  # sqlalchemy.url | script_location
    change: str  # double-percent | encode-url | here-relative
    why: str = ""

    def describe(self) -> str:
        what = {"double-percent": "write each '%' as '%%'",
                "encode-url": "percent-encode the password (and user), then write each '%' as "
                              "'%%', so plain alembic reads the URL meant",
                "here-relative": "make it relative to alembic.ini's folder (%(here)s/...)"}
        return f"alembic.ini: {self.key}: {what[self.change]}{': ' + self.why if self.why else ''}"

    def apply(self, ctx: Context) -> None:
        path = ctx.project.ini_path
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        section, changed = "", False
        for number, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("[") and stripped.endswith("]"):
                section = stripped[1:-1]
            if section != "alembic" or "=" not in line or stripped.startswith(("#", ";")):
                continue
            key, _, value = line.partition("=")
            if key.strip() != self.key:
                continue
            raw = value.strip()
            if self.change == "encode-url":
                new = ini_url_fix(raw.replace("%%", "%")) or raw
            elif self.change == "double-percent":
                new = double_percent(raw)
            else:
                new = raw if raw.startswith(("%(here)s", "/")) else f"%(here)s/{raw}"
            if new != raw:
                keep_copy(ctx, path)
                lines[number] = f"{key.rstrip()} = {new}\n"
                changed = True
        if changed:
            write_atomic(path, "".join(lines))
            ctx.say("edit", f"alembic.ini: corrected {self.key}")

    def undo(self, ctx: Context) -> None:
        restore_copy(ctx, ctx.project.ini_path)


@register
@dataclass(frozen=True)
class SetEnvOption(Step):
    """Set one keyword of every ``context.configure(...)`` call in env.py (libcst: the rest of
    the file is untouched; the original is kept in the backup folder)."""

    kind: ClassVar[str] = "env-option"
    option: str  # compare_type | render_as_batch
    value: str = "True"
    why: str = ""

    def describe(self) -> str:
        return (f"env.py: pass {self.option}={self.value} to context.configure()"
                f"{': ' + self.why if self.why else ''}")

    def apply(self, ctx: Context) -> None:
        from ...engine.env_options import set_configure_keyword  # libcst: only paid for when used

        path = ctx.project.env_py
        source = path.read_text(encoding="utf-8")
        rewritten = set_configure_keyword(source, self.option, self.value)
        if rewritten != source:
            keep_copy(ctx, path)
            write_atomic(path, rewritten)
            ctx.say("edit", f"env.py: context.configure(..., {self.option}={self.value})")

    def undo(self, ctx: Context) -> None:
        restore_copy(ctx, ctx.project.env_py)



# -- what plain Alembic must not see (env_filter; AR113, AR406, AR511) ---------------------------


@register
@dataclass(frozen=True)
class HideFromAutogenerate(Step):
    """Install (or update) env.py's autogenerate filter: the tool's ``_ar_*`` tables, the
    ``ignore_tables`` and `tables` become invisible to plain ``alembic revision
    --autogenerate`` and ``alembic check``. `tables` (kept on purpose: nobody owns them) are
    also added to ``[tool.alembic_repair] ignore_tables`` when the project has a
    pyproject.toml, so a regenerated env.py keeps them out too. The originals are kept in the
    backup folder. `required`: an env.py that cannot be edited safely refuses the step;
    otherwise (a soft drop that needs no filter to be safe now) it is only reported."""

    kind: ClassVar[str] = "hide-tables"
    tables: tuple[str, ...] = ()
    why: str = ""
    required: bool = True

    def describe(self) -> str:
        what = "the tool's _ar_* tables" + (f" and {', '.join(self.tables)}" if self.tables
                                             else "")
        return (f"env.py: hide {what} from autogenerate (include_name/include_object, wrapping "
                f"any filter of yours){': ' + self.why if self.why else ''}")

    def apply(self, ctx: Context) -> None:
        from ...engine.env_filter import UnsafeEnv
        from ...engine.env_filter_install import ensure, record_ignore_tables

        project = ctx.project
        pyproject = project.root / "pyproject.toml"
        if self.tables and pyproject.is_file():
            text = record_ignore_tables(pyproject, self.tables)
            if text is not None:
                keep_copy(ctx, pyproject)
                pyproject.write_text(text, encoding="utf-8")
                ctx.say("edit", f"pyproject.toml: [tool.alembic_repair] ignore_tables now "
                        f"lists {', '.join(self.tables)}")
        if not project.env_py.is_file():
            if self.required:
                raise NeedsRepair(f"{project.rel(project.env_py)} is missing; run "
                                  "`alembic-repair bootstrap` to write one")
            return
        try:
            done = ensure(project, self.tables, keep_to=ctx.keep(project.env_py))
        except UnsafeEnv as err:
            if self.required:
                raise NeedsRepair(f"{project.rel(project.env_py)}: {err}") from None
            ctx.say("warning", f"{project.rel(project.env_py)}: {err}")
            return
        if done is not None:
            ctx.say(*done)

    def undo(self, ctx: Context) -> None:
        restore_copy(ctx, ctx.project.env_py)
        restore_copy(ctx, ctx.project.root / "pyproject.toml")


