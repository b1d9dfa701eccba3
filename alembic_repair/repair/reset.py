"""The safe reset: what "delete alembic/, alembic.ini and the data folder" should have been.

Steps, each recorded in the journal (`journal.py`) before and after it runs, on the one
connection that holds the migration lock:

1. ``backup``: a verified backup of every user table (`backups.backup_locked`).
2. ``drop``: drop ``alembic_version`` and the tables the models define. Tables the models do
   not define are left where they are (a fresh baseline would not recreate them), and so is
   the trash.
3. ``scaffold``: move the old ``alembic.ini``, ``env.py``, ``script.py.mako`` and revision files
   into the backup folder (``project-files/``, never deleted), then write ours. A
   ``sqlalchemy.url`` line of the old alembic.ini is carried over, so the project keeps
   talking to the same database: into the new alembic.ini when it holds no password, else
   into ``.alembic_repair/database_url`` (0600; a URL source after alembic.ini).
4. ``baseline``: one revision that creates every table of the models.
5. ``upgrade``: apply it to the emptied database.
6. ``restore``: put the backup's rows into the tables and columns that still exist
   (skipped with ``discard_data``; the backup is kept either way).
7. ``verify``: every restored table holds the backup's row count and checksum.

Every step can run again after a crash part-way through it, so the next `reset` finishes the
run from the journal (the old state is gone once ``drop`` started, and the backup is complete
and verified before that). A crash before ``drop`` leaves the database as it was; the next run
starts over with a fresh backup.
"""

from __future__ import annotations

import configparser
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import MetaData, func, inspect, select, table
from sqlalchemy.engine import Connection

from .. import private
from ..data import backups, guards
from ..engine import migrations, revisions, scaffold
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.models import discover_models, load_target_metadata, project_on_path
from ..engine.project import PLACEHOLDER_URLS, Project, store_url
from ..engine.state.schema import VERSION_TABLE, is_user_table
from ..errors import ConfigError, NeedsRepair
from ..masking import password_of
from .journal import Journal, crash_point

__all__ = ["ResetPlan", "ResetResult", "STEPS", "plan_reset", "reset"]

COMMAND = "reset"
#: (step, destructive): the old state may be gone once a destructive step started.
STEPS: tuple[tuple[str, bool], ...] = (
    ("backup", False), ("drop", True), ("scaffold", True), ("baseline", True),
    ("upgrade", True), ("restore", True), ("verify", False),
)
FILES_DIR = "project-files"
BASELINE_MESSAGE = "baseline (reset)"

Say = Callable[[str, str], None]


@dataclass(frozen=True)
class ResetPlan:
    """What `reset` would do, computed without changing anything."""

    url: str  # masked
    models: str
    drop: tuple[tuple[str, int], ...]  # (table, rows), children first
    kept: tuple[tuple[str, int], ...]  # user tables the models do not define: left in place
    files: tuple[str, ...]  # project files moved into the backup (relative to the root)
    discard_data: bool
    resume: tuple[str, ...] = ()  # steps already done by an interrupted run

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.drop)

    def lines(self) -> list[str]:
        """The numbered plan, one line per step (the destructive ones say so)."""
        drop = ", ".join(f"{t} ({n} rows)" for t, n in self.drop) or "no table"
        steps = [
            ("backup", f"back up every user table ({self.rows} rows in the tables to drop) "
                       "into .alembic_repair/backups/, verified (counts and checksums)"),
            ("drop", f"DROP {drop}, and alembic_version"),
            ("scaffold", f"move {len(self.files)} project files into the backup "
                         f"({_short(self.files)}); write alembic.ini, env.py and "
                         "script.py.mako"),
            ("baseline", f"write one baseline revision from the models ({self.models})"),
            ("upgrade", "upgrade the emptied database to the baseline"),
            ("restore", "skip restoring the rows (--discard-data); the backup keeps them"
                        if self.discard_data else
                        "restore the rows into the tables and columns that still exist"),
            ("verify", "verify the restored row counts and checksums against the backup"),
        ]
        out = []
        for number, (name, text) in enumerate(steps, start=1):
            flag = " [destructive]" if dict(STEPS)[name] else ""
            done = " (done by the interrupted run)" if name in self.resume else ""
            out.append(f"{number}. {name}: {text}{flag}{done}")
        if self.kept:
            out.append("   kept as they are (the models do not define them): " + ", ".join(
                f"{t} ({n} rows)" for t, n in self.kept))
        return out


@dataclass(frozen=True)
class ResetResult:
    """What `reset` did. ``restore`` is None with ``discard_data``."""

    backup: Path
    head: str
    dropped: tuple[str, ...]
    kept: tuple[str, ...]
    moved: tuple[str, ...]
    restore: backups.RestoreReport | None
    resumed_after: str | None = None  # the last step an interrupted run had finished
    messages: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return self.restore is None or self.restore.complete


# -- planning ---------------------------------------------------------------------------------


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


def _models_spec(project: Project, models: str | None) -> str:
    spec = models or project.models or discover_models(project.root)
    if spec is None:
        raise ConfigError(
            f"reset: the models cannot be found under {project.root}; pass --models "
            "module:Base (the baseline is generated from them)"
        )
    return spec


def _metadata(project: Project, spec: str) -> MetaData:
    with project_on_path(project.root):
        metadata = load_target_metadata(project, explicit=spec, use_env_py=False)
    if metadata is None or not [t for t in metadata.tables if is_user_table(t)]:
        raise ConfigError(f"--models {spec}: the models define no table; name the module "
                          "that defines them, e.g. app.models:Base")
    return metadata


def _project_files(project: Project) -> list[Path]:
    files = [p for p in (project.ini_path, project.env_py, project.script_template) if p.is_file()]
    if project.versions_dir.is_dir():
        files += sorted(p for p in project.versions_dir.iterdir()
                        if p.is_file() and p.name != ".gitkeep")
    return files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _short(files: tuple[str, ...]) -> str:
    return ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")


def _plan(project: Project, conn: Connection, spec: str, metadata: MetaData,
          discard_data: bool, journal: Journal | None) -> ResetPlan:
    existing = set(inspect(conn).get_table_names())
    ordered = [n for n, _ in inspect(conn).get_sorted_table_and_fkc_names() if n]
    if journal is not None and journal.changed_anything:
        drop = tuple((t, 0) for t in journal.context["drop"])
        files = tuple(journal.context["files"])
        resume = tuple(s.name for s in journal.steps if s.state == "done")
    else:
        modelled = {t for t in metadata.tables if is_user_table(t)}
        drop = tuple((t, _count(conn, t)) for t in reversed(ordered)
                     if t in modelled and t in existing)
        files = tuple(project.rel(p) for p in _project_files(project))
        resume = ()
    dropping = {t for t, _ in drop}
    kept = tuple((t, _count(conn, t)) for t in ordered
                 if is_user_table(t) and t in existing and t not in dropping)
    conn.rollback()
    return ResetPlan(project.masked_url, spec, drop, kept, files, discard_data, resume)


def _interrupted(project: Project) -> Journal | None:
    journal = Journal.load(project.state_dir)
    if journal is not None and journal.command != COMMAND:
        raise NeedsRepair(
            f"{project.rel(journal.path)}: an interrupted `{journal.command}` run is recorded; "
            f"run `alembic-repair {journal.command} --yes` to finish it first"
        )
    return journal


def plan_reset(project: Project, *, models: str | None = None, discard_data: bool = False
               ) -> ResetPlan:
    """The plan `reset` would run (or finish, after an interrupted run). Changes nothing."""
    spec = _models_spec(project, models)
    metadata = _metadata(project, spec)
    journal = _interrupted(project)
    engine = connect(project)
    try:
        with engine.connect() as conn:
            return _plan(project, conn, spec, metadata, discard_data, journal)
    finally:
        engine.dispose()


# -- running ----------------------------------------------------------------------------------


def reset(project: Project, *, yes: bool, allow_remote: bool = False,
          discard_data: bool = False, models: str | None = None,
          say: Say = lambda kind, message: None) -> ResetResult:
    """Run the plan of `plan_reset` (see the module docstring); refuses without `yes`."""
    guards.require_local(allow_remote, project, "reset")
    spec = _models_spec(project, models)
    metadata = _metadata(project, spec)
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            journal = _interrupted(project)
            plan = _plan(project, conn, spec, metadata, discard_data, journal)
            what = "finish the interrupted reset" if plan.resume else "reset"
            guards.require(yes, allow_remote, project,
                           f"reset: would {what} ({len(plan.drop)} tables, {plan.rows} rows "
                           "backed up, dropped, recreated and restored)")
            return _Run(project, conn, plan, metadata, journal, say).run()
    finally:
        engine.dispose()


class _Run:
    def __init__(self, project: Project, conn: Connection, plan: ResetPlan, metadata: MetaData,
                 journal: Journal | None, say: Say) -> None:
        self.project, self.conn, self.plan, self.metadata = project, conn, plan, metadata
        self.say = say
        self.resumed_after: str | None = None
        if journal is not None and journal.changed_anything:
            self.resumed_after = journal.last_done
            say("resume", f"an interrupted reset stopped after step {journal.last_done}; "
                f"finishing it with the backup {journal.context['backup']}")
            self.journal = journal
        else:
            if journal is not None:
                say("restart", "an interrupted reset stopped before changing anything; "
                    "starting over")
                _discard_partial(journal)
            self.journal = Journal.begin(project.state_dir, COMMAND, STEPS, {
                "backup": str(_backup_dir(project)),
                "drop": [t for t, _ in plan.drop],
                "files": list(plan.files),
                "sha256": {f: _sha256(project.root / f) for f in plan.files},
            })
        self.backup_dir = Path(self.journal.context["backup"])
        self.report: backups.RestoreReport | None = None

    def step(self, name: str, action: Callable[[], None]) -> None:
        if self.journal.is_done(name):
            return
        self.journal = self.journal.mark(name, "started")
        action()
        self.journal = self.journal.mark(name, "done")

    def run(self) -> ResetResult:
        self.step("backup", self.backup)
        self.step("drop", self.drop)
        self.step("scaffold", self.scaffold)
        self.step("baseline", self.baseline)
        self.step("upgrade", self.upgrade)
        self.step("restore", self.restore)
        self.step("verify", self.verify)
        self.journal.finish()
        head = migrations.current_heads(self.conn)
        self.conn.rollback()
        return ResetResult(self.backup_dir, ", ".join(head), tuple(t for t, _ in self.plan.drop),
                           tuple(t for t, _ in self.plan.kept), self.plan.files, self.report,
                           self.resumed_after)

    # -- the steps, each safe to run again after a crash part-way through ------------------

    def backup(self) -> None:
        if self.backup_dir.exists():  # a crash during the backup: it is ours and incomplete
            shutil.rmtree(self.backup_dir)
        manifest = backups.backup_locked(self.project, self.conn, self.backup_dir)
        rows = sum(t.rows for t in manifest.tables)
        self.say("backup", f"backed up {len(manifest.tables)} tables ({rows} rows) into "
                 f"{self.project.rel(self.backup_dir)}, verified")

    def drop(self) -> None:
        self._drop([t for t, _ in self.plan.drop], only_empty=False)
        self.say("drop", f"dropped {len(self.plan.drop)} tables and alembic_version")

    def _drop(self, names: list[str], *, only_empty: bool) -> None:
        conn = self.conn
        mysql = conn.dialect.name in ("mysql", "mariadb")
        conn.commit()
        conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0" if mysql
                             else "PRAGMA foreign_keys = OFF")
        try:
            existing = set(inspect(conn).get_table_names())
            quote = conn.dialect.identifier_preparer.quote
            for number, name in enumerate([*names, VERSION_TABLE], start=1):
                if name not in existing:
                    continue
                if only_empty and name != VERSION_TABLE and _count(conn, name):
                    raise NeedsRepair(
                        f"reset: table {name} holds rows written since the interrupted reset "
                        f"recreated it; nothing more changed; the backup is "
                        f"{self.project.rel(self.backup_dir)}"
                    )
                conn.exec_driver_sql(f"DROP TABLE {quote(name)}")
                conn.commit()
                crash_point(f"drop.{number}")
        finally:
            conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1" if mysql
                                 else "PRAGMA foreign_keys = ON")
            conn.commit()

    def scaffold(self) -> None:
        project, moved = self.project, 0
        expected = self.journal.context["sha256"]
        target = self.backup_dir / FILES_DIR
        for rel in self.plan.files:
            source, dest = project.root / rel, target / rel
            if dest.exists() or not source.is_file() or _sha256(source) != expected[rel]:
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
                self.say("url", f"the old alembic.ini's URL holds a password: kept in "
                         f"{project.rel(kept_in)} (0600), which the new env.py and "
                         "alembic-repair read; alembic.ini has no URL (DATABASE_URL overrides)")
        scaffold.write_script_template(project)
        scaffold.write_env_py(project, self.plan.models)
        scaffold.ensure_versions_dir(project)
        self.say("scaffold", f"moved {moved} project files into "
                 f"{project.rel(target)}; wrote alembic.ini, env.py and script.py.mako")

    def baseline(self) -> None:
        operations = revisions.create_ops(self.metadata)
        expected = revisions.stable_revision_id([], operations)
        intact, partial = revisions.own_files(self.project, expected)
        for path in partial:  # a kill while Alembic wrote it: written again below
            dest = self.backup_dir / FILES_DIR / f"{self.project.rel(path)}.partial"
            private.move_private(path, dest)  # 0600 inside the 0700 backup, like every file
        if intact:
            return
        with project_on_path(self.project.root):
            written = revisions.write_revision(self.project, self.conn, BASELINE_MESSAGE,
                                               operations, rev_id=expected)
        self.conn.commit()
        self.say("baseline", f"wrote revision {written.revision} "
                 f"({self.project.rel(written.path or self.project.versions_dir)})")

    def upgrade(self) -> None:
        if self.journal.state("upgrade") == "started":
            # A crash during the upgrade: on MySQL its DDL committed table by table.
            self._drop([t for t in self.metadata.tables if is_user_table(t)], only_empty=True)
        with project_on_path(self.project.root):
            migrations.upgrade(self.project, self.conn, "heads")
        self.conn.commit()
        self.say("upgrade", f"upgraded to {', '.join(migrations.current_heads(self.conn))}")
        self.conn.rollback()

    def restore(self) -> None:
        if self.plan.discard_data:
            self.say("restore", f"rows not restored (--discard-data); they are in "
                     f"{self.project.rel(self.backup_dir)}")
            return
        self.report = self._restore()
        tables = {**self.report.restored, **self.report.already}
        self.say("restore", f"restored {sum(tables.values())} rows into {len(tables)} tables")

    def _restore(self) -> backups.RestoreReport:
        """The backup's rows, minus its alembic_version rows (the baseline's row stands)."""
        report = backups.restore_locked(self.project, self.conn, self.backup_dir)
        return replace(report, not_empty={t: n for t, n in report.not_empty.items()
                                          if t != VERSION_TABLE})

    def verify(self) -> None:
        if self.plan.discard_data:
            return
        if self.report is None:  # resumed after the restore: check it again (idempotent)
            self.report = self._restore()
        report = self.report
        if report.not_empty:
            raise NeedsRepair(
                "reset: tables " + ", ".join(report.not_empty) + " hold rows that are not the "
                f"backup's; nothing more changed; the backup is {self.project.rel(self.backup_dir)}"
            )
        self.say("verify", "every restored table holds the backup's rows (counts and checksums)")
        for name, rows in report.missing_tables.items():
            self.say("kept", f"{rows} rows of table {name} (no longer in the models) stay in "
                     "the backup")
        for name, columns in report.dropped_columns.items():
            self.say("kept", f"values of {name}.{', '.join(columns)} (no longer in the models) "
                     "stay in the backup")


def _backup_dir(project: Project) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = project.state_dir / "backups"
    path, counter = root / f"{stamp}-reset", 1
    while path.exists():
        counter += 1
        path = root / f"{stamp}-reset-{counter}"
    return path


def _discard_partial(journal: Journal) -> None:
    """A run that stopped before changing anything: its backup folder is kept only when whole."""
    folder = Path(journal.context.get("backup", ""))
    if journal.state("backup") != "done" and folder.is_dir() and str(folder):
        shutil.rmtree(folder)
    journal.finish()


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
