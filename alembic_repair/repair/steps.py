"""Repair steps: small, explained, journalled units of change that `fix` runs in order.

Each step is a frozen dataclass that says what it will do (`describe`), does it (`apply`) and,
when it can, takes it back (`undo`). Three class flags tell `apply.py` how to treat it:

* ``needs_backup``: it changes the database's schema or rows, so a verified backup comes first;
* ``destructive``: once it started, the old state may be gone (a crash is then finished, or
  rolled back with `undo`, by the next run);
* ``reversible``: `undo` exists.

Every `apply` is safe to run again after a crash part-way through it: it looks before it
acts (a file already moved, a revision already written, a stamp already there). What a step
creates that it could not recognise afterwards from the state alone (the id of a revision it
is about to write; that an upgrade started) is recorded in the journal first
(`Context.remember`): a resumed run reuses that revision instead of writing a second one on
top of it, and `undo` works from the record, never from state the failed step changed. Steps are
serialised into the journal with `as_dict` and read back with `from_dict`, so a resumed run
carries out exactly the plan that was printed. Files are never deleted: they move into the
run's backup folder (``project-files/``), from where `undo` moves them back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from alembic.migration import MigrationContext
from alembic.operations import Operations, ops
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from .. import private
from ..engine import migrations, revisions, scaffold
from ..engine.database import driver_message
from ..engine.models import project_on_path
from ..engine.project import Project
from ..engine.state.schema import VERSION_TABLE, is_user_table
from ..errors import MigrationFailed, NeedsRepair, RefusedUnsafe
from ..masking import redact
from ..private import STATE_DIR
from .journal import Journal, crash_point

__all__ = ["STEP_KINDS", "Context", "Step", "from_dict", "register"]

FILES_DIR = "project-files"
Say = Callable[[str, str], None]


@dataclass
class Context:
    """What a step works with: the project, the connection holding the migration lock, and
    the run's backup folder (where moved files go)."""

    project: Project
    connection: Connection | None  # None while only the setup files are repaired
    folder: Path
    models: str | None = None
    say: Say = lambda kind, message: None
    journal: Journal | None = None  # the run's journal: `remember` writes into it
    _memo: dict[str, Any] = field(default_factory=dict)

    def recall(self, step: Step) -> dict[str, Any]:
        """What `step` recorded (with `remember`) before it acted, in this run or in the
        interrupted run being finished or rolled back."""
        memo = self.journal.context.get("memo", {}) if self.journal is not None else self._memo
        return dict(memo.get(_memo_key(step), {}))

    def remember(self, step: Step, **values: Any) -> None:
        """Record, durably (in the journal) and before acting, what a resumed run or an undo
        needs to know about `step`'s own partial result: they must never recompute it from
        state the step itself may have changed half-way."""
        key = _memo_key(step)
        if self.journal is None:
            self._memo[key] = {**self._memo.get(key, {}), **values}
            return
        memo = dict(self.journal.context.get("memo", {}))
        memo[key] = {**memo.get(key, {}), **values}
        self.journal = self.journal.note(memo=memo)

    @property
    def conn(self) -> Connection:
        if self.connection is None:
            raise NeedsRepair("this repair step needs the database, and the setup files do "
                              "not name a usable one yet")
        return self.connection

    def keep(self, path: Path) -> Path:
        """Where `path` (a project file) is kept in the backup folder."""
        return self.folder / FILES_DIR / self.project.rel(path)


@dataclass(frozen=True)
class Step:
    kind: ClassVar[str] = ""
    needs_backup: ClassVar[bool] = False
    destructive: ClassVar[bool] = False
    reversible: ClassVar[bool] = True

    def describe(self) -> str:
        raise NotImplementedError

    def apply(self, ctx: Context) -> None:
        raise NotImplementedError

    def undo(self, ctx: Context) -> None:
        raise NotImplementedError(f"{self.kind} cannot be undone")

    def undo_refusal(self, ctx: Context) -> str | None:
        """Why this (reversible) step cannot be undone in the state it left, or None. Asked
        for every step before a rollback undoes any, so a rollback never stops half-way."""
        return None

    def rewrites(self) -> tuple[tuple[str, str], ...]:
        """(table, column) pairs whose values this step changes on purpose: the row check
        after the run leaves them out (their old values are in the backup)."""
        return ()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **json.loads(json.dumps(asdict(self)))}


def _memo_key(step: Step) -> str:
    return hashlib.sha256(json.dumps(step.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


STEP_KINDS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step kind known to `from_dict` (the journal reads steps back)."""
    STEP_KINDS[cls.kind] = cls
    return cls


def from_dict(data: dict[str, Any]) -> Step:
    cls = STEP_KINDS[data["kind"]]
    values = {f.name: data[f.name] for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# -- alembic_version ---------------------------------------------------------------------------


def version_rows(conn: Connection) -> tuple[str, ...]:
    if not inspect(conn).has_table(VERSION_TABLE):
        return ()
    return tuple(r[0] for r in conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}"))


def write_version_rows(project: Project, conn: Connection, rows: tuple[str, ...]) -> None:
    """Make alembic_version hold exactly `rows`, in Alembic's own shape (a VARCHAR(32) primary
    key); a table of another shape (no key, too short) is rebuilt. The old rows are logged in
    ``.alembic_repair/stamps.jsonl``."""
    before = version_rows(conn)
    insp = inspect(conn)
    rebuild = False
    if insp.has_table(VERSION_TABLE):
        column = next(c for c in insp.get_columns(VERSION_TABLE) if c["name"] == "version_num")
        length = getattr(column["type"], "length", None)
        has_pk = bool(insp.get_pk_constraint(VERSION_TABLE).get("constrained_columns"))
        rebuild = not has_pk or (length is not None and length < 32)
    if rebuild:
        conn.exec_driver_sql(f"DROP TABLE {VERSION_TABLE}")
    if rebuild or not insp.has_table(VERSION_TABLE):
        conn.exec_driver_sql(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
                             f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))")
    conn.exec_driver_sql(f"DELETE FROM {VERSION_TABLE}")
    for rev in dict.fromkeys(rows):
        conn.exec_driver_sql(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (%s)"
                             if conn.dialect.paramstyle in ("format", "pyformat") else
                             f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (?)", (rev,))
    conn.commit()
    if set(before) != set(rows):
        migrations.log_stamp(project, before, rows)


@register
@dataclass(frozen=True)
class Stamp(Step):
    """Record `revisions` in alembic_version (no DDL runs): the schema already is there."""

    kind: ClassVar[str] = "stamp"
    revisions: tuple[str, ...]
    before: tuple[str, ...]
    why: str = ""

    def describe(self) -> str:
        was = ", ".join(self.before) or "nothing"
        return (f"stamp {', '.join(self.revisions) or 'base'} in alembic_version (it records "
                f"{was}){': ' + self.why if self.why else ''}")

    def apply(self, ctx: Context) -> None:
        write_version_rows(ctx.project, ctx.conn, self.revisions)
        ctx.say("stamp", f"alembic_version now records {', '.join(self.revisions) or 'nothing'}")

    def undo(self, ctx: Context) -> None:
        write_version_rows(ctx.project, ctx.conn, self.before)


# -- files -------------------------------------------------------------------------------------


def _move(source: Path, dest: Path) -> bool:
    """Move a file into the backup folder (made private: folders 0700, files 0600) or back
    into the project (a new file's mode)."""
    if not source.exists() or dest.exists():
        return False
    if STATE_DIR in dest.parts:
        private.move_private(source, dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(dest))
        private.public_mode(dest)
    return True


@register
@dataclass(frozen=True)
class MoveToBackup(Step):
    """Take a file out of the project (into the backup folder: never deleted)."""

    kind: ClassVar[str] = "move"
    path: str  # relative to the project root
    why: str = ""

    def describe(self) -> str:
        return f"move {self.path} into the backup folder{': ' + self.why if self.why else ''}"

    def apply(self, ctx: Context) -> None:
        source = ctx.project.root / self.path
        if _move(source, ctx.keep(source)):
            ctx.say("move", f"moved {self.path} into {ctx.project.rel(ctx.keep(source))}")

    def undo(self, ctx: Context) -> None:
        source = ctx.project.root / self.path
        _move(ctx.keep(source), source)


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
            _move(path, ctx.keep(path))
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
            _move(kept, path)


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


# -- revisions ---------------------------------------------------------------------------------


def _revision_path(project: Project, revision: str) -> Path | None:
    script = migrations.revisions(project).get(revision)
    return Path(script.path) if script is not None else None


def _keep_aside(ctx: Context, path: Path) -> None:
    """Move a file a step wrote into the backup folder (a new name if one is there already)."""
    dest, number = ctx.keep(path), 1
    while dest.exists():
        number += 1
        dest = dest.with_name(f"{ctx.keep(path).name}.{number}")
    _move(path, dest)


def _reuse_own_revision(ctx: Context, step: Step) -> str | None:
    """The revision `step` recorded (`remember`) and wrote before a crash, when its file is
    whole; a file cut short is moved into the backup folder (the step writes it again)."""
    revision = ctx.recall(step).get("revision")
    if revision is None:
        return None
    intact, partial = revisions.own_files(ctx.project, revision)
    for path in partial:
        _keep_aside(ctx, path)
        ctx.say("move", f"moved {ctx.project.rel(path)} (cut short by the interrupted run) "
                "into the backup folder")
    return revision if intact else None


def _take_own_revision_back(ctx: Context, step: Step) -> None:
    """Undo of a step that wrote a revision file: move the file it recorded writing (never
    one that was there before it ran) into the backup folder, whole or cut short."""
    memo = ctx.recall(step)
    revision = memo.get("revision")
    if revision is None or memo.get("existed"):
        return
    intact, partial = revisions.own_files(ctx.project, revision)
    for path in intact + partial:
        _keep_aside(ctx, path)


@register
@dataclass(frozen=True)
class WriteMerge(Step):
    """A merge revision joining `heads` (no operations: both branches' schemas already add up)."""

    kind: ClassVar[str] = "merge"
    heads: tuple[str, ...]
    revision: str

    def describe(self) -> str:
        return f"write merge revision {self.revision} joining the heads {', '.join(self.heads)}"

    def apply(self, ctx: Context) -> None:
        intact, partial = revisions.own_files(ctx.project, self.revision)
        for path in partial:  # cut short by a kill: Alembic writes it in place
            _keep_aside(ctx, path)
        if intact:
            return
        config = migrations.alembic_config(ctx.project, ctx.conn)
        from alembic import command

        with project_on_path(ctx.project.root):
            migrations.run_alembic(ctx.project, "writing the merge revision", command.merge,
                                   config, list(self.heads), message="merge heads",
                                   rev_id=self.revision)
        ctx.say("merge", f"wrote merge revision {self.revision}")

    def undo(self, ctx: Context) -> None:
        intact, partial = revisions.own_files(ctx.project, self.revision)  # read, never imported
        for path in intact + partial:
            _keep_aside(ctx, path)

    @staticmethod
    def revision_for(heads: tuple[str, ...]) -> str:
        return hashlib.sha256(("merge:" + ",".join(sorted(heads))).encode()).hexdigest()[:12]


def adoption_ops(project: Project, conn: Connection, parent: str | None) -> ops.UpgradeOps:
    """The operations from revision `parent`'s schema (replayed on a scratch database; nothing
    when None) to the live schema: what a baseline or bridge revision must hold."""
    from alembic.autogenerate import produce_migrations

    from ..engine.replay import apply_revision, scratch_database

    live = revisions.reflect_user_tables(conn)
    conn.rollback()
    if parent is None:
        return revisions.create_ops(live)
    directory = migrations.scripts(project)
    chain = list(reversed(list(directory.iterate_revisions(parent, "base"))))
    with project_on_path(project.root), scratch_database(project, conn.engine) as scratch:
        for script in chain:
            apply_revision(scratch, script)
        context = MigrationContext.configure(scratch, opts={
            "compare_type": True, "target_metadata": live,
            "include_name": lambda name, type_, _: type_ != "table" or is_user_table(name or ""),
        })
        upgrade_ops = produce_migrations(context, live).upgrade_ops
    assert upgrade_ops is not None
    return upgrade_ops


@register
@dataclass(frozen=True)
class AdoptSchema(Step):
    """Write one revision that turns `parent`'s schema (or nothing: a baseline) into the live
    schema, and stamp it: the history then describes this database, whose tables and rows
    stay exactly as they are (the revision only runs on databases built from scratch)."""

    kind: ClassVar[str] = "adopt"
    parent: str | None
    before: tuple[str, ...]
    why: str = ""

    def describe(self) -> str:
        what = (f"a bridge revision on {self.parent}" if self.parent else "a baseline revision")
        return (f"write {what} describing the tables as they are now, and stamp it "
                f"(alembic_version records {', '.join(self.before) or 'nothing'})"
                f"{': ' + self.why if self.why else ''}")

    def apply(self, ctx: Context) -> None:
        revision = _reuse_own_revision(ctx, self)
        if revision is None:
            operations = adoption_ops(ctx.project, ctx.conn, self.parent)
            parents = [self.parent] if self.parent else []
            revision = revisions.stable_revision_id(parents, operations)
            existed = bool(revisions.own_files(ctx.project, revision)[0])
            ctx.remember(self, revision=revision, existed=existed)
            if not existed:
                message = "bridge (adopted)" if self.parent else "baseline (adopted)"
                with project_on_path(ctx.project.root):
                    written = revisions.write_revision(ctx.project, ctx.conn, message,
                                                       operations, rev_id=revision)
                ctx.conn.commit()
                ctx.say("adopt", f"wrote revision {revision} "
                        f"({ctx.project.rel(written.path or ctx.project.versions_dir)})")
                crash_point("adopt.written")
        write_version_rows(ctx.project, ctx.conn, (revision,))
        ctx.say("stamp", f"alembic_version now records {revision}")

    def undo(self, ctx: Context) -> None:
        # From what apply recorded before it acted, never recomputed: the live schema and
        # the history may be exactly what the failed run left half-changed.
        write_version_rows(ctx.project, ctx.conn, self.before)
        _take_own_revision_back(ctx, self)


# -- schema changes ----------------------------------------------------------------------------


@register
@dataclass(frozen=True)
class Upgrade(Step):
    kind: ClassVar[str] = "upgrade"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    target: str = "heads"

    def describe(self) -> str:
        return f"upgrade the database to {self.target}"

    def apply(self, ctx: Context) -> None:
        if ctx.recall(self).get("upgrading"):
            # killed during the upgrade: on MySQL/MariaDB each DDL statement committed, so
            # the revision it was in is half-applied; finish it (and the rest) skipping what
            # already took effect, instead of failing on it forever
            _finish_revisions(ctx)
        else:
            ctx.remember(self, upgrading=True)
            crash_point("upgrade.started")
        with project_on_path(ctx.project.root):
            migrations.upgrade(ctx.project, ctx.conn, self.target)
        ctx.conn.commit()
        ctx.say("upgrade", f"upgraded to {', '.join(migrations.current_heads(ctx.conn))}")
        ctx.conn.rollback()


def _finish_revisions(ctx: Context) -> None:
    """Every revision the database has not applied, in order, through `CompleteRevision`."""
    from ..engine.state.pending import pending_ids
    from ..engine.state.scripts import read_scripts

    pending = pending_ids(tuple(read_scripts(ctx.project.versions_dir)),
                          version_rows(ctx.conn))
    ctx.conn.rollback()
    if not pending:
        return
    with project_on_path(ctx.project.root):
        order = [s.revision for s in reversed(list(
            migrations.scripts(ctx.project).walk_revisions("base", "heads")))]
    for revision in order:
        if revision in pending:
            CompleteRevision(revision, ()).apply(ctx)


@register
@dataclass(frozen=True)
class Autogenerate(Step):
    """Write a revision for what the models add or widen (never a drop or a narrowing: those
    are reported, not written) and apply it."""

    kind: ClassVar[str] = "autogenerate"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    message: str = "models changed"

    def describe(self) -> str:
        return ("autogenerate a revision for what the models add or widen, and upgrade to it "
                "(drops and narrowing changes are never written)")

    def apply(self, ctx: Context) -> None:
        from ..engine.models import load_target_metadata

        revision = _reuse_own_revision(ctx, self)
        if revision is not None:
            # An interrupted run wrote it: the models are compared with it, not written again
            # on top of it. Its operations already in the live schema (MariaDB commits each
            # DDL) are skipped.
            if revision not in version_rows(ctx.conn):
                CompleteRevision(revision, ()).apply(ctx)
            ctx.say("autogenerate", f"finished revision {revision}, written by the "
                    "interrupted run")
            return
        with project_on_path(ctx.project.root):
            metadata = load_target_metadata(ctx.project, explicit=ctx.models)
            if metadata is None:
                raise NeedsRepair("autogenerate: target_metadata is None; pass --models")
            pending, held = revisions.pending_model_changes(ctx.conn, metadata)
            ctx.conn.rollback()
            for reason in held:
                ctx.say("kept", reason)
            if pending.is_empty():
                return
            existing = migrations.revisions(ctx.project)
            heads = [rev for rev, script in existing.items() if script.is_head]
            revision = revisions.next_revision_id(heads, pending, existing)
            ctx.remember(self, revision=revision)
            written = revisions.write_revision(ctx.project, ctx.conn, self.message, pending,
                                               rev_id=revision)
            ctx.conn.commit()
            ctx.say("autogenerate", f"wrote revision {written.revision}")
            crash_point("autogenerate.written")
            ctx.remember(self, upgrading=True)
            migrations.upgrade(ctx.project, ctx.conn, "heads")
        ctx.conn.commit()

    def undo_refusal(self, ctx: Context) -> str | None:
        memo = ctx.recall(self)
        revision = memo.get("revision")
        if revision is None:
            return None
        if revision in version_rows(ctx.conn):
            return f"revision {revision} is applied already"
        if memo.get("upgrading"):
            return f"the upgrade to revision {revision} may have run part-way"
        return None

    def undo(self, ctx: Context) -> None:
        if (why := self.undo_refusal(ctx)) is not None:
            raise RefusedUnsafe(f"autogenerate cannot be undone: {why}; finish the run with "
                                "`alembic-repair fix --yes`")
        _take_own_revision_back(ctx, self)


def _already(conn: Connection, operation: Any) -> bool:
    """True when the effect of `operation` is already in the live schema (a half-applied
    revision's committed DDL), so running it again would fail or duplicate it."""
    insp = inspect(conn)
    table = getattr(operation, "table_name", None)
    if isinstance(operation, ops.CreateTableOp):
        return bool(insp.has_table(operation.table_name))
    if isinstance(operation, ops.DropTableOp):
        return not insp.has_table(operation.table_name)
    if table is None or not insp.has_table(table):
        return False
    columns = {c["name"] for c in insp.get_columns(table)}
    if isinstance(operation, ops.AddColumnOp):
        return operation.column.name in columns
    if isinstance(operation, ops.DropColumnOp):
        return operation.column_name not in columns
    if isinstance(operation, ops.CreateIndexOp):
        return operation.index_name in {i["name"] for i in insp.get_indexes(table)}
    if isinstance(operation, ops.DropIndexOp):
        return operation.index_name not in {i["name"] for i in insp.get_indexes(table)}
    if isinstance(operation, ops.CreateForeignKeyOp):
        return operation.constraint_name in {f["name"] for f in insp.get_foreign_keys(table)}
    if isinstance(operation, ops.CreateUniqueConstraintOp):
        names = {u["name"] for u in insp.get_unique_constraints(table)}
        names |= {i["name"] for i in insp.get_indexes(table) if i.get("unique")}
        return operation.constraint_name in names
    return False


@contextmanager
def _skipping_applied(conn: Connection, skipped: list[str]) -> Iterator[Operations]:
    with Operations.context(MigrationContext.configure(conn)) as operations:
        invoke = operations.invoke

        def invoke_missing(operation: Any) -> Any:
            if _already(conn, operation):
                skipped.append(type(operation).__name__)
                return None
            return invoke(operation)

        operations.invoke = invoke_missing  # type: ignore[method-assign]
        yield operations


@register
@dataclass(frozen=True)
class CompleteRevision(Step):
    """Finish a half-applied revision: run only the operations whose effect is missing
    (columns and tables it already added are kept, never dropped and re-added), then stamp."""

    kind: ClassVar[str] = "complete"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    revision: str
    before: tuple[str, ...]

    def describe(self) -> str:
        return (f"run the operations of revision {self.revision} that did not take effect "
                f"(keeping what it already did), then stamp {self.revision}")

    def apply(self, ctx: Context) -> None:
        if self.revision in version_rows(ctx.conn):
            return
        script = migrations.revisions(ctx.project)[self.revision]
        skipped: list[str] = []
        with project_on_path(ctx.project.root):
            try:
                with _skipping_applied(ctx.conn, skipped):
                    script.module.upgrade()
            except Exception as err:  # the revision's own code
                ctx.conn.rollback()
                detail = (driver_message(err) if isinstance(err, DBAPIError)
                          else f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
                raise MigrationFailed(
                    f"{ctx.project.rel(script.path)}: completing revision {self.revision} "
                    f"failed again ({redact(detail, ctx.project.url)}); "
                    "the revision itself is wrong: fix it, then run `alembic-repair fix` again"
                ) from None
        ctx.conn.commit()
        rows = tuple(r for r in version_rows(ctx.conn) if r not in script._all_down_revisions)
        write_version_rows(ctx.project, ctx.conn, (*rows, self.revision))
        ctx.say("complete", f"completed revision {self.revision} ({len(skipped)} operations "
                "were already applied and were skipped)")


# -- editing the setup files in place ------------------------------------------------------------


def _keep_copy(ctx: Context, path: Path) -> None:
    """A copy of `path` in the backup folder (once: the first copy is the original)."""
    kept = ctx.keep(path)
    if not kept.exists():
        private.private_dir(kept.parent)
        shutil.copy2(path, kept)
        kept.chmod(0o600)


def _write_atomic(path: Path, text: str) -> None:
    """A temporary file, then a rename (mode kept): a kill -9 never leaves half a file, which
    the step run again could not parse."""
    temporary = path.with_name(f".{path.name}.ar-tmp")
    temporary.write_text(text, encoding="utf-8")
    if path.exists():
        shutil.copymode(path, temporary)
    os.replace(temporary, path)


def _restore_copy(ctx: Context, path: Path) -> None:
    kept = ctx.keep(path)
    if kept.exists():
        shutil.copy2(kept, path)
        private.public_mode(path)  # the kept copy is 0600; the project's file is not


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


@register
@dataclass(frozen=True)
class EditIni(Step):
    """Correct one value of alembic.ini in place (the rest of the file, comments included, is
    untouched; the original is kept in the backup folder). The value is never printed: it may
    be a URL with a password."""

    kind: ClassVar[str] = "edit-ini"
    key: str  # sqlalchemy.url | script_location
    change: str  # double-percent | here-relative
    why: str = ""

    def describe(self) -> str:
        what = {"double-percent": "write each '%' as '%%'",
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
            new = double_percent(raw) if self.change == "double-percent" else (
                raw if raw.startswith(("%(here)s", "/")) else f"%(here)s/{raw}")
            if new != raw:
                _keep_copy(ctx, path)
                lines[number] = f"{key.rstrip()} = {new}\n"
                changed = True
        if changed:
            _write_atomic(path, "".join(lines))
            ctx.say("edit", f"alembic.ini: corrected {self.key}")

    def undo(self, ctx: Context) -> None:
        _restore_copy(ctx, ctx.project.ini_path)


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
        from ..engine.env_options import set_configure_keyword  # libcst: only paid for when used

        path = ctx.project.env_py
        source = path.read_text(encoding="utf-8")
        rewritten = set_configure_keyword(source, self.option, self.value)
        if rewritten != source:
            _keep_copy(ctx, path)
            _write_atomic(path, rewritten)
            ctx.say("edit", f"env.py: context.configure(..., {self.option}={self.value})")

    def undo(self, ctx: Context) -> None:
        _restore_copy(ctx, ctx.project.env_py)


@register
@dataclass(frozen=True)
class ClearJunk(Step):
    """Set the values of an SQLite column that do not fit its declared type to NULL. Only on
    request (``fix --only AR407``): the old values stay in the backup, and are also written,
    with their primary keys, to ``cleared-values.jsonl`` in the run's backup folder."""

    kind: ClassVar[str] = "clear-junk"
    needs_backup: ClassVar[bool] = True
    destructive: ClassVar[bool] = True
    reversible: ClassVar[bool] = False
    table: str
    column: str
    declared: str
    count: int

    def describe(self) -> str:
        return (f"set the {self.count} value(s) of {self.table}.{self.column} that are not "
                f"{self.declared} to NULL (kept in the backup and in cleared-values.jsonl)")

    def rewrites(self) -> tuple[tuple[str, str], ...]:
        return ((self.table, self.column),)

    def apply(self, ctx: Context) -> None:
        from ..engine.state.junk import _predicate

        conn = ctx.conn
        insp = inspect(conn)
        column = next((c for c in insp.get_columns(self.table) if c["name"] == self.column),
                      None)
        if column is None:
            return
        if not column.get("nullable", True):
            raise NeedsRepair(f"{self.table}.{self.column} is NOT NULL, so its junk values "
                              "cannot be cleared; correct them by hand (doctor lists them)")
        quote = conn.dialect.identifier_preparer.quote
        where = _predicate(self.declared, quote(self.column))
        if where is None:
            return
        key = insp.get_pk_constraint(self.table).get("constrained_columns") or ["rowid"]
        keys = ", ".join(quote(k) if k != "rowid" else k for k in key)
        found = conn.exec_driver_sql(f"SELECT {keys}, CAST({quote(self.column)} AS TEXT) FROM "
                                     f"{quote(self.table)} WHERE {where}").all()
        log = ctx.folder / "cleared-values.jsonl"
        private.private_dir(ctx.folder)
        with open(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a",
                  encoding="utf-8") as handle:
            for row in found:
                handle.write(json.dumps({"table": self.table, "column": self.column,
                                         "key": dict(zip(key, row[:-1], strict=True)),
                                         "value": row[-1]}, default=str) + "\n")
        log.chmod(0o600)
        conn.exec_driver_sql(f"UPDATE {quote(self.table)} SET {quote(self.column)} = NULL "
                             f"WHERE {where}")
        conn.commit()
        ctx.say("clear", f"set {len(found)} value(s) of {self.table}.{self.column} to NULL")


# -- pending revisions made safe (rewrite/) ------------------------------------------------------


@register
@dataclass(frozen=True)
class RewritePending(Step):
    """Rewrite a revision the database has not applied yet (the next one it will run, so the
    live schema is where it starts) into its safe form, with libcst: its drops become soft
    drops (``soft-drops``), or each unique / NOT NULL ``add_column`` on a table with rows
    becomes add nullable, backfill distinct values, then constrain (``unique-columns``). The
    original file is kept in the backup folder; a second run changes nothing."""

    kind: ClassVar[str] = "rewrite"
    path: str  # relative to the project root
    transform: str  # soft-drops | unique-columns
    drops: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.transform == "soft-drops":
            return (f"rewrite {self.path}: its drops of {', '.join(self.drops)} become soft "
                    "drops (renamed into the trash; downgrade() brings them back)")
        return (f"rewrite {self.path}: each unique or NOT NULL add_column on a table with rows "
                "becomes add nullable, backfill distinct values, then NOT NULL + unique")

    def apply(self, ctx: Context) -> None:
        from sqlalchemy import func, select, table

        from ..rewrite import rewrite_unique_columns, rewrite_upgrade_drops

        path = ctx.project.root / self.path
        _keep_copy(ctx, path)
        schema = revisions.reflect_user_tables(ctx.conn)
        if self.transform == "soft-drops":
            done = rewrite_upgrade_drops(path, list(self.drops), schema=schema,
                                         dialect=ctx.conn.dialect)
        else:
            nonempty = {name for name in schema.tables if ctx.conn.execute(
                select(func.count()).select_from(table(name))).scalar_one()}
            done = rewrite_unique_columns(path, schema=schema, nonempty=nonempty,
                                          dialect=ctx.conn.dialect)
        ctx.conn.rollback()
        if done.changed:
            ctx.say("rewrite", f"rewrote {self.path} ({self.transform})")

    def undo(self, ctx: Context) -> None:
        _restore_copy(ctx, ctx.project.root / self.path)


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
        from ..engine.env_filter import UnsafeEnv, ensure, record_ignore_tables

        project = ctx.project
        pyproject = project.root / "pyproject.toml"
        if self.tables and pyproject.is_file():
            text = record_ignore_tables(pyproject, self.tables)
            if text is not None:
                _keep_copy(ctx, pyproject)
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
        _restore_copy(ctx, ctx.project.env_py)
        _restore_copy(ctx, ctx.project.root / "pyproject.toml")


@register
@dataclass(frozen=True)
class RemoveHiddenDrops(Step):
    """Take out of a pending revision the operations that drop tables the tool owns or keeps
    (and, from its downgrade, those that would recreate them): what a plain autogenerate
    wrote while env.py did not hide them. libcst; the original is kept in the backup folder."""

    kind: ClassVar[str] = "remove-hidden-drops"
    path: str  # relative to the project root
    tables: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"rewrite {self.path}: remove its drops of {', '.join(self.tables)} (tables the "
                "tool owns or keeps; not turned into soft drops)")

    def apply(self, ctx: Context) -> None:
        from ..rewrite.hidden import remove_table_ops

        path = ctx.project.root / self.path
        _keep_copy(ctx, path)
        done = remove_table_ops(path, set(self.tables))
        if done.changed:
            ctx.say("rewrite", f"rewrote {self.path}: removed what it did to "
                    f"{', '.join(self.tables)}")

    def undo(self, ctx: Context) -> None:
        _restore_copy(ctx, ctx.project.root / self.path)
