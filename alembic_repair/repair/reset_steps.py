"""The safe reset's steps (reset.py plans them, runner.py runs them): drop, scaffold, baseline,
upgrade, restore and verify, journalled under those names (the crash points) and each safe to
run again after a crash part-way through it. None is undone: the run's backup is the way back.
"""

from __future__ import annotations

import configparser
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from sqlalchemy import MetaData, func, inspect, select, table
from sqlalchemy.engine import Connection

from .. import private
from ..data import backups
from ..engine import migrations, revisions, scaffold
from ..engine.models import project_on_path
from ..engine.project import PLACEHOLDER_URLS, Project, store_url
from ..engine.state.recorder import version_table_of
from ..engine.state.schema import VERSION_TABLE, is_user_table
from ..errors import NeedsRepair
from ..masking import password_of
from ..wording import counted
from .journal import crash_point
from .steps import FILES_DIR, Context, Step, register

__all__ = ["BASELINE_MESSAGE", "ResetBaseline", "ResetContext", "ResetDrop", "ResetRestore",
           "ResetScaffold", "ResetUpgrade", "ResetVerify", "count_rows", "sha256_of"]

BASELINE_MESSAGE = "baseline (reset)"


def count_rows(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())

def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

@dataclass
class ResetContext(Context):
    """A step's `Context`, plus the models' metadata and the restore's report."""

    metadata: MetaData | None = None
    report: backups.RestoreReport | None = None
    #: this call's --discard-data: a resumed run does what the plan it printed says, not what
    #: the interrupted run was asked
    discard_data: bool | None = None


def _discarding(ctx: Context, recorded: bool) -> bool:
    asked = ctx.discard_data if isinstance(ctx, ResetContext) else None
    return recorded if asked is None else asked


class _ResetStep(Step):
    """A reset step: journalled under its own name (`label`: the crash points stay ``drop``,
    ``scaffold``...), never undone (the backup is the way back)."""

    label: ClassVar[str] = ""
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False


def _drop(ctx: Context, names: list[str] | tuple[str, ...], *, only_empty: bool) -> None:
    conn = ctx.conn
    mysql = conn.dialect.name in ("mysql", "mariadb")
    conn.commit()
    conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0" if mysql
                         else "PRAGMA foreign_keys = OFF")
    try:
        existing = set(inspect(conn).get_table_names())
        quote = conn.dialect.identifier_preparer.quote
        version = version_table_of(conn, ctx.project)[0]  # env.py's version_table, if it sets one
        for number, name in enumerate([*names, version], start=1):
            if name not in existing:
                continue
            if only_empty and name != version and count_rows(conn, name):
                raise NeedsRepair(
                    f"reset: table {name} holds rows written since the interrupted reset "
                    f"recreated it; nothing more changed; the backup is "
                    f"{ctx.project.rel(ctx.folder)}"
                )
            conn.exec_driver_sql(f"DROP TABLE {quote(name)}")
            conn.commit()
            crash_point(f"drop.{number}")
    finally:
        conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1" if mysql
                             else "PRAGMA foreign_keys = ON")
        conn.commit()


@register
@dataclass(frozen=True)
class ResetDrop(_ResetStep):
    kind: ClassVar[str] = "reset-drop"
    label: ClassVar[str] = "drop"
    tables: tuple[str, ...]

    def describe(self) -> str:
        return f"DROP {', '.join(self.tables) or 'no table'}, and alembic_version"

    def apply(self, ctx: Context) -> None:
        _drop(ctx, self.tables, only_empty=False)
        ctx.say("drop", f"dropped {counted(len(self.tables), 'table')} and alembic_version")


@register
@dataclass(frozen=True)
class ResetScaffold(_ResetStep):
    kind: ClassVar[str] = "reset-scaffold"
    label: ClassVar[str] = "scaffold"
    files: tuple[str, ...]
    sha256: dict[str, str]  # of each file when planned: a file changed since is not moved
    models: str

    def describe(self) -> str:
        return (f"move {len(self.files)} project files into the backup; write alembic.ini, "
                "env.py and script.py.mako")

    def apply(self, ctx: Context) -> None:
        project, moved = ctx.project, 0
        target = ctx.folder / FILES_DIR
        for rel in self.files:
            source, dest = project.root / rel, target / rel
            if (dest.exists() or not source.is_file()
                    or sha256_of(source) != self.sha256.get(rel)):  # none recorded: changed
                continue  # moved by the interrupted run (and maybe replaced by ours since)
            private.move_private(source, dest)  # 0600 in a 0700 folder, like the backup
            moved += 1
        scaffold.write_alembic_ini(project)
        # The old alembic.ini is in the backup folder now (or still in place, after a crash
        # before the move): its URL line is read from there, never kept in the journal.
        kept_ini = target / project.rel(project.ini_path)
        old_url = _ini_url_line(kept_ini if kept_ini.exists() else project.ini_path)
        if old_url is not None:
            kept_in = _carry_url(project, old_url)
            if kept_in is not None:
                ctx.say("url", f"the old alembic.ini's URL holds a password: kept in "
                        f"{project.rel(kept_in)} (0600), which the new env.py and "
                        "alembic-repair read; alembic.ini has no URL (DATABASE_URL overrides)")
        scaffold.write_script_template(project)
        scaffold.write_env_py(project, ctx.models or self.models)  # this call's, as printed
        scaffold.ensure_versions_dir(project)
        ctx.say("scaffold", f"moved {moved} project files into "
                f"{project.rel(target)}; wrote alembic.ini, env.py and script.py.mako")


def _metadata_of(ctx: Context) -> MetaData:
    assert isinstance(ctx, ResetContext) and ctx.metadata is not None
    return ctx.metadata


@register
@dataclass(frozen=True)
class ResetBaseline(_ResetStep):
    kind: ClassVar[str] = "reset-baseline"
    label: ClassVar[str] = "baseline"

    def describe(self) -> str:
        return "write one baseline revision from the models"

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        operations = revisions.create_ops(_metadata_of(ctx))
        expected = revisions.stable_revision_id([], operations)
        intact, partial = revisions.own_files(project, expected)
        for path in partial:  # a kill while Alembic wrote it: written again below
            dest = ctx.folder / FILES_DIR / f"{project.rel(path)}.partial"
            private.move_private(path, dest)  # 0600 inside the 0700 backup, like every file
        if intact:
            return
        with project_on_path(project.root):
            written = revisions.write_revision(project, ctx.conn, BASELINE_MESSAGE,
                                               operations, rev_id=expected)
        ctx.conn.commit()
        ctx.say("baseline", f"wrote revision {written.revision} "
                f"({project.rel(written.path or project.versions_dir)})")


@register
@dataclass(frozen=True)
class ResetUpgrade(_ResetStep):
    kind: ClassVar[str] = "reset-upgrade"
    label: ClassVar[str] = "upgrade"

    def describe(self) -> str:
        return "upgrade the emptied database to the baseline"

    def apply(self, ctx: Context) -> None:
        # After a crash during the upgrade: on MySQL its DDL committed table by table, so the
        # models' tables it created (empty, ours) go first.
        _drop(ctx, [t for t in _metadata_of(ctx).tables if is_user_table(t)], only_empty=True)
        with project_on_path(ctx.project.root):
            migrations.upgrade(ctx.project, ctx.conn, "heads")
        ctx.conn.commit()
        ctx.say("upgrade", f"upgraded to {', '.join(migrations.current_heads(ctx.conn))}")
        ctx.conn.rollback()


def _restore(ctx: Context) -> backups.RestoreReport:
    """The backup's rows, minus its alembic_version rows (the baseline's row stands)."""
    report = backups.restore_locked(ctx.project, ctx.conn, ctx.folder)
    version = version_table_of(ctx.conn, ctx.project)[0]
    report = replace(report, not_empty={t: n for t, n in report.not_empty.items()
                                        if t not in (VERSION_TABLE, version)})
    if isinstance(ctx, ResetContext):
        ctx.report = report
    return report


@register
@dataclass(frozen=True)
class ResetRestore(_ResetStep):
    kind: ClassVar[str] = "reset-restore"
    label: ClassVar[str] = "restore"
    discard_data: bool

    def describe(self) -> str:
        return "restore the rows into the tables and columns that still exist"

    def apply(self, ctx: Context) -> None:
        if _discarding(ctx, self.discard_data):
            ctx.say("restore", f"rows not restored (--discard-data); they are in "
                    f"{ctx.project.rel(ctx.folder)}")
            return
        report = _restore(ctx)
        tables = {**report.restored, **report.already}
        ctx.say("restore", f"restored {counted(sum(tables.values()), 'row')} into "
                f"{counted(len(tables), 'table')}")


@register
@dataclass(frozen=True)
class ResetVerify(_ResetStep):
    kind: ClassVar[str] = "reset-verify"
    label: ClassVar[str] = "verify"
    destructive: ClassVar[bool] = False
    discard_data: bool

    def describe(self) -> str:
        return "verify the restored row counts and checksums against the backup"

    def apply(self, ctx: Context) -> None:
        if _discarding(ctx, self.discard_data):
            return
        report = ctx.report if isinstance(ctx, ResetContext) else None
        if report is None:  # resumed after the restore: check it again (idempotent)
            report = _restore(ctx)
        if report.not_empty:
            raise NeedsRepair(
                "reset: tables " + ", ".join(report.not_empty) + " hold rows that are not the "
                f"backup's; nothing more changed; the backup is {ctx.project.rel(ctx.folder)}"
            )
        ctx.say("verify", "every restored table holds the backup's rows (counts and checksums)")
        for name, rows in report.missing_tables.items():
            ctx.say("kept", f"{counted(rows, 'row')} of table {name} (no longer in the models) "
                    f"{'stays' if rows == 1 else 'stay'} in the backup")
        for name, columns in report.dropped_columns.items():
            ctx.say("kept", f"values of {name}.{', '.join(columns)} (no longer in the models) "
                    "stay in the backup")


def _ini_url_line(path: Path) -> str | None:
    """The raw ``sqlalchemy.url`` value of alembic.ini (interpolation escapes kept)."""
    ini = configparser.ConfigParser(interpolation=None)
    try:
        ini.read(path, encoding="utf-8")
    except configparser.Error:
        return None
    value = (ini.get("alembic", "sqlalchemy.url", fallback=None) or "").strip()
    return value if value and value not in PLACEHOLDER_URLS else None


def _carry_url(project: Project, raw: str) -> Path | None:
    """Keep the project on the old alembic.ini's database. A URL without a password goes back
    into alembic.ini as it was; one with a password never lands outside ``.alembic_repair/``:
    it is written to ``.alembic_repair/database_url`` (0600), a URL source that
    `project.resolve_url` and the generated env.py read after alembic.ini. Returns that file,
    or None when alembic.ini got the line."""
    parser = configparser.ConfigParser(defaults={"here": str(project.root)})
    try:
        parser.read_string(f"[alembic]\nsqlalchemy.url = {raw}\n")
        value = parser.get("alembic", "sqlalchemy.url")
    except configparser.Error:
        value = raw  # the old line did not read either; it had no usable URL
    if password_of(value):
        return store_url(project.root, value)
    _ini_line(project.ini_path, raw)
    return None


def _ini_line(path: Path, raw: str) -> None:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(path, encoding="utf-8")
    if ini.get("alembic", "sqlalchemy.url", fallback=None) == raw:
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == "[alembic]") + 1
    lines.insert(at, f"sqlalchemy.url = {raw}\n")
    path.write_text("".join(lines), encoding="utf-8")
