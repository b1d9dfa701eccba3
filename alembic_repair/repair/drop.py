"""drop and trash drop: the commands that take tables or columns out of the schema, undoably.

`drop` writes a revision whose ``upgrade()`` drops tables/columns and whose ``downgrade()``
brings them back (soft: renamed into the trash; hard: after a verified backup), as a new
revision on the head (`write_drop_revision`) or a rewrite of a pending one (``--into``). The
libcst transform itself is `rewrite/drops.py`; this module holds the command around it: the
migration lock, the backup, the crash points, ``alembic revision`` for the new file, and
recognising a drop an earlier (maybe killed) run wrote already (`pending_drops`, `_shell`).
A soft drop is only done when env.py can hide the trash from plain autogenerate
(`env_filter_or_refuse`), which is installed right after (env_filter).

``drop --yes`` is a run of the one runner (runner.py): the backup of a hard drop, then one
`WriteDrop` step, journalled; a killed drop is finished (or, before anything was written,
started over) by the next one.

libcst (rewrite/) is imported only when a drop is written: `trash drop` never pays for it.
"""

from __future__ import annotations

import contextlib
import difflib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from alembic import command as alembic_command
from alembic.operations import ops
from sqlalchemy.engine import Connection

from ..data import guards, trash
from ..data.trash import MAX_IDENTIFIER
from ..engine import migrations
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.migrations import alembic_config, run_alembic
from ..engine.models import project_on_path
from ..engine.project import Project
from ..engine.revisions import reflect_user_tables, stable_revision_id
from ..engine.state.schema import TRASH_PREFIX
from ..errors import ConfigError, NeedsRepair, RefusedUnsafe
from . import runner
from .journal import Journal, crash_point
from .steps import Context, Step, register

if TYPE_CHECKING:
    from ..data.backups import Manifest
    from ..rewrite.drops import Drop, DropStep
    from ..rewrite.transform import Rewrite

__all__ = ["DropResult", "NewRevision", "drop", "env_filter_or_refuse", "pending_drops",
           "trash_drop", "write_drop_revision"]

COMMAND = "drop"
Say = Callable[..., None]  # (kind, message, path): bootstrap's Recorder


# -- trash drop ----------------------------------------------------------------------------------


def trash_drop(project: Project, table: str, *, yes: bool, allow_remote: bool, say: Say
               ) -> trash.TrashEntry:
    """`alembic_repair.trash_drop` (api.py) on a resolved project: env.py must be able to
    hide the trash first; the filter it gets is reported through `say`."""
    env_filter_or_refuse(project, f"trash drop {table}")
    entry = trash.soft_drop(project, table, yes=yes, allow_remote=allow_remote)
    from ..engine.env_filter_install import protect

    done = protect(project)
    if done is not None:
        say(done[0], done[1], project.env_py)
    return entry


def env_filter_or_refuse(project: Project, command: str) -> None:
    """A soft drop is only safe when env.py can hide the trash from plain autogenerate:
    otherwise `RefusedUnsafe` before anything changes, saying what to write by hand."""
    from ..engine.env_filter import UnsafeEnv, check

    try:
        check(project)
    except UnsafeEnv as err:
        raise RefusedUnsafe(f"{command}: {project.rel(project.env_py)}: {err}; nothing "
                            "changed") from None


# -- drop ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DropResult:
    """The revision `drop` wrote (or rewrote), its diff, and the backup a hard drop took."""

    path: Path
    revision: str | None
    diff: str
    written: bool
    backup: Path | None = None
    already: tuple[str, ...] = ()  # specs a revision not yet applied drops already: not written
    env_filter: tuple[str, str] | None = None  # (kind, message): env.py now hides the trash


def drop(project: Project, specs: list[str] | tuple[str, ...], *, hard: bool = False,
         into: str | None = None, message: str | None = None, yes: bool = False,
         allow_remote: bool = False) -> DropResult:
    """`alembic_repair.drop` (api.py) on a resolved project: `_drop` (below); a soft drop
    written installs env.py's autogenerate filter, so the user's plain autogenerate never drops
    the trash the revision fills (env_filter)."""
    if yes and not hard:
        env_filter_or_refuse(project, f"drop {' '.join(specs)}")
    result = _drop(project, specs, hard=hard, into=into, message=message, yes=yes,
                   allow_remote=allow_remote)
    if result.written and not hard:
        from ..engine.env_filter_install import protect

        result = replace(result, env_filter=protect(project))
    return result


def _drop(project: Project, specs: list[str] | tuple[str, ...], *, hard: bool = False,
          into: str | None = None, message: str | None = None, yes: bool = False,
          allow_remote: bool = False) -> DropResult:
    """A revision that drops tables/columns (``table`` or ``table.column``) safely: by default
    a soft drop whose downgrade() brings the rows back; `hard` drops for real after a verified
    backup (its downgrade() recreates them empty). A new revision on the head, or, with
    `into`, a rewrite of that revision's upgrade()/downgrade() (only if this database has not
    applied it). Without `yes`: a dry run (the diff; nothing written, no backup); the
    revision itself runs at the next upgrade. With `yes` it is a run of the one runner
    (runner.py): journalled, the backup first when `hard`, so a killed drop is finished by
    the next one (the run that stopped before writing anything is started over)."""
    guards.require_local(allow_remote, project, "drop")
    if hard and not yes:
        guards.require(yes, allow_remote, project, f"drop --hard {' '.join(specs)}: would back "
                       "up the tables, then write a revision that drops them for real")
    step = WriteDrop(tuple(specs), hard, message, into)
    engine = connect(project)
    try:
        with project_on_path(project.root), migration_lock(engine, project.state_dir) as conn:
            if not yes:
                return step.write(project, conn, None, dry_run=True)
            journal = runner.interrupted(project, COMMAND)
            if journal is not None and runner.started(journal):
                if runner.steps_of(journal) != (step,):
                    # another drop was killed part-way: it is finished by asking for it again,
                    # never behind the back of a request for something else
                    raise NeedsRepair(
                        f"{project.rel(journal.path)}: an interrupted `drop` run is recorded; "
                        f"run `{journal.context.get('again') or 'alembic-repair drop'}` to "
                        "finish it first")
                return _run(project, conn, journal)  # this very drop, killed: finished
            runner.recover(project, COMMAND, lambda kind, message: None, "starting over")
            if into is None and (already := _already(project, conn, specs)) is not None:
                return already
            step.check(project, conn)  # what it would refuse, refused before any journal
            journal = runner.begin(project, runner.Run(
                COMMAND, (step,), backup=hard, check_rows=False, context={"again": step.again}))
            try:
                return _run(project, conn, journal)
            except runner.StepRefused as err:  # refused before writing: the run was taken back
                raise (err.__cause__ or err) from None
    finally:
        engine.dispose()


def _already(project: Project, conn: Connection, specs: Sequence[str]) -> DropResult | None:
    """A drop already written (an earlier run, maybe killed before it said so) is not chained
    a second time: the history could no longer build a database."""
    from ..rewrite.drops import Drop

    written = pending_drops(project, conn)
    names = [str(Drop.parse(spec)) for spec in specs]
    if names and all(name in written for name in names):
        rev, path = written[names[0]]
        return DropResult(path, rev, "", False, None, tuple(names))
    return None


def _run(project: Project, conn: Connection, journal: Journal) -> DropResult:
    ctx = DropContext(project, conn, runner.folder_of(journal))
    runner.execute(project, conn, journal, ctx).finish()
    if not journal.context.get("backup"):
        with contextlib.suppress(OSError):
            ctx.folder.rmdir()  # a soft drop moves no file and takes no backup
    assert ctx.result is not None
    return ctx.result


@dataclass
class DropContext(Context):
    """A step's `Context`, plus what the drop wrote (for `DropResult`)."""

    result: DropResult | None = None


@register
@dataclass(frozen=True)
class WriteDrop(Step):
    """Write the revision that drops `specs` (or rewrite the pending revision `into`); a hard
    drop embeds the run's verified backup, from which its downgrade() says how to restore."""

    kind: ClassVar[str] = "drop-revision"
    destructive: ClassVar[bool] = True
    specs: tuple[str, ...]
    hard: bool = False
    message: str | None = None
    into: str | None = None

    @property
    def again(self) -> str:
        """The command that finishes this drop when it is interrupted."""
        into = f" --into {self.into}" if self.into else ""
        return f"alembic-repair drop {' '.join(self.specs)}{' --hard' if self.hard else ''}" \
               f"{into} --yes"

    def describe(self) -> str:
        how = "drop for real" if self.hard else "soft-drop (into the trash)"
        where = f"rewrite revision {self.into} to" if self.into else "write a revision to"
        return f"{where} {how} {', '.join(self.specs)}"

    def undo_refusal(self, ctx: Context) -> str | None:
        """A drop refused before it wrote (a table still referenced, `into` applied) is taken
        back, leaving no journal; once it started writing, the next drop finishes it."""
        return "it may have written its revision" if ctx.recall(self).get("writing") else None

    def undo(self, ctx: Context) -> None:
        if (why := self.undo_refusal(ctx)) is not None:
            raise RefusedUnsafe(f"drop cannot be undone: {why}")

    def apply(self, ctx: Context) -> None:
        manifest = None
        if self.hard:
            crash_point("drop.backup")
            from ..data.backups import verify

            manifest = verify(ctx.folder)  # the run's backup (a resumed run reads it back)
        if self.into is None and (already := _already(ctx.project, ctx.conn, self.specs)):
            result = replace(already, backup=ctx.folder if self.hard else None)
        else:
            result = self.write(ctx.project, ctx.conn, manifest, dry_run=False,
                                before_write=lambda: ctx.remember(self, writing=True))
        if isinstance(ctx, DropContext):
            ctx.result = result

    def check(self, project: Project, conn: Connection) -> None:
        """Raise what `write` would refuse (an unknown table, one still referenced, `into`
        applied already), without writing or backing up anything."""
        from ..rewrite.drops import plan_drops

        if self.into is not None:
            self._pending_script(project, conn)
        plan_drops(reflect_user_tables(conn), self.specs)
        conn.rollback()

    def _pending_script(self, project: Project, conn: Connection) -> Path:
        from ..engine.state.graph import RevisionGraph
        from ..engine.state.scripts import read_scripts

        into = self.into
        script = migrations.revisions(project).get(into) if into is not None else None
        if script is None:
            raise ConfigError(f"drop --into {into}: no such revision in "
                              f"{project.rel(project.versions_dir)}")
        recorded = migrations.current_heads(conn)
        applied = RevisionGraph.of(read_scripts(project.versions_dir)).applied(recorded)
        if into in applied:
            raise NeedsRepair(f"drop --into {into}: this database applied {into} already, so "
                              "its upgrade() will not run here again; drop in a new revision "
                              "(without --into)")
        conn.rollback()
        return Path(script.path)

    def write(self, project: Project, conn: Connection, manifest: Manifest | None, *,
              dry_run: bool, before_write: Callable[[], None] | None = None) -> DropResult:
        """The revision (or, `dry_run`, its diff): new on the head, or `into` rewritten."""
        from ..rewrite.drops import rewrite_upgrade_drops

        backup = manifest.path if manifest is not None else None
        if self.into is None:
            if dry_run and (already := _already(project, conn, self.specs)) is not None:
                return already
            new = write_drop_revision(project, conn, list(self.specs), hard=self.hard,
                                      backup=manifest, message=self.message, dry_run=dry_run,
                                      before_write=before_write)
            return DropResult(new.path, new.revision, new.rewrite.diff, not dry_run, backup)
        path = self._pending_script(project, conn)
        schema = reflect_user_tables(conn)
        if not dry_run:  # (the rewrite plans every drop before it writes the file)
            rewrite_upgrade_drops(path, list(self.specs), schema=schema, hard=self.hard,
                                  backup=manifest, dry_run=True, dialect=conn.dialect)
            if before_write is not None:
                before_write()
        done = rewrite_upgrade_drops(path, list(self.specs), schema=schema,
                                     hard=self.hard, backup=manifest, dry_run=dry_run,
                                     dialect=conn.dialect)
        return DropResult(done.path, self.into, done.diff, not dry_run and done.changed, backup)


# -- a new revision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewRevision:
    """The revision `write_drop_revision` wrote (or, in a dry run, would write)."""

    revision: str
    path: Path
    rewrite: Rewrite


def _message(steps: Sequence[DropStep], hard: bool) -> str:
    names = ", ".join(str(s.drop) for s in steps)
    return f"{'drop' if hard else 'soft drop'} {names}"[:MAX_IDENTIFIER * 2]


def pending_drops(project: Project, connection: Connection) -> dict[str, tuple[str, Path]]:
    """What the revisions this database has not applied yet already drop: ``table`` or
    ``table.column`` -> (revision, file). A table renamed into the trash counts as dropped.
    Read offline (`state.pending.read_operations`): nothing runs. `drop` run twice must not
    chain a second drop of the same table (the history could no longer build a database)."""
    from ..engine.state.pending import pending_ids, read_operations
    from ..engine.state.scripts import read_scripts

    ids = pending_ids(tuple(read_scripts(project.versions_dir)),
                      migrations.current_heads(connection))
    connection.rollback()
    if not ids:
        return {}
    found: dict[str, tuple[str, Path]] = {}
    for rev, script in migrations.revisions(project).items():
        if rev not in ids:
            continue
        try:
            operations = read_operations(script.module, script.path, connection.dialect)
        except Exception:  # the revision's own code: it cannot be read offline
            continue
        for pending in operations:
            operation = pending.operation
            name = None
            trashed = isinstance(operation, ops.RenameTableOp) and \
                operation.new_table_name.startswith(TRASH_PREFIX)
            if isinstance(operation, ops.DropTableOp) or trashed:
                name = operation.table_name
            elif isinstance(operation, ops.DropColumnOp):
                name = f"{operation.table_name}.{operation.column_name}"
            if name is not None:
                found.setdefault(name, (rev, Path(script.path)))
    return found


def _shell(project: Project, connection: Connection, message: str) -> tuple[str, Path] | None:
    """A pending head revision with an empty upgrade() and downgrade() and `message`: the file
    `alembic revision` wrote for a drop killed before its body was filled in. It is filled in
    instead of a second revision being written on top of it."""
    import ast

    from ..engine.state.graph import RevisionGraph
    from ..engine.state.scripts import read_scripts

    files = read_scripts(project.versions_dir)
    recorded = set(migrations.current_heads(connection))
    connection.rollback()
    graph = RevisionGraph.of(files)
    for script in files:
        if (script.revision is None or graph.named_as_parent(script.revision)
                or script.revision in recorded or script.upgrade != "empty"
                or script.downgrade != "empty"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(script.path.read_bytes())) or ""
        except (SyntaxError, ValueError, OSError):
            continue
        if doc.splitlines()[:1] == [message]:
            return script.revision, script.path
    return None


def write_drop_revision(project: Project, connection: Connection, drops: Sequence[str | Drop],
                        *, hard: bool = False, backup: Manifest | None = None,
                        message: str | None = None, dry_run: bool = False,
                        before_write: Callable[[], None] | None = None) -> NewRevision:
    """A new revision on top of the single head that drops `drops` (soft by default; `hard`
    REQUIRES `backup`, see `rewrite_upgrade_drops`). The file comes from the project's
    script.py.mako through ``alembic revision`` (id: `stable_revision_id`), then its empty
    ``upgrade()``/``downgrade()`` are filled by the same rewrite as `rewrite_upgrade_drops`.
    `dry_run` returns the would-be file as a diff and leaves no file behind. `before_write`
    is called once the drops are planned (a refusal raises before it), before any file is
    written (the runner's step records there that it may have written)."""
    from ..rewrite.drops import apply_steps, plan_drops
    from ..rewrite.transform import Rewrite, transform

    schema = reflect_user_tables(connection)
    at = datetime.now(timezone.utc).replace(microsecond=0)
    steps = plan_drops(schema, drops, hard=hard, backup=backup, at=at)
    existing = migrations.revisions(project)
    heads = [rev for rev, script in existing.items() if script.is_head]
    rev_id = stable_revision_id(heads, ops.UpgradeOps([o for s in steps for o in s.upgrade]))
    if rev_id in existing:
        rev_id = uuid.uuid4().hex[:12]
    text = message or _message(steps, hard)
    shell = None if dry_run else _shell(project, connection, text)
    if before_write is not None and not dry_run:
        before_write()
    if shell is not None:
        rev_id, path = shell
    else:
        config = alembic_config(project, connection)
        written: list[Any] = []
        run_alembic(project, "writing the drop revision", lambda: written.append(
            alembic_command.revision(config, message=text, rev_id=rev_id)))
        script = written[0][0] if isinstance(written[0], list) else written[0]
        path = Path(script.path)
        if not dry_run:
            crash_point("drop.revision")  # the file is there, its body not yet filled in
    try:
        rewrite = transform(path, lambda source: apply_steps(source, steps, connection.dialect),
                            dry_run=False)
    except BaseException:
        if shell is None:
            path.unlink(missing_ok=True)
        raise
    if dry_run:
        path.unlink()
        diff = "".join(difflib.unified_diff([], rewrite.source.splitlines(keepends=True),
                                            fromfile="/dev/null", tofile=f"b/{path.name}"))
        rewrite = Rewrite(path, True, diff, rewrite.source, rewrite.notes)
    return NewRevision(rev_id, path, rewrite)
