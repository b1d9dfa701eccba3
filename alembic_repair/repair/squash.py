"""squash: collapse the history up to a revision into one baseline revision.

The baseline's operations are the replayed schema at REV (the history up to REV run on a
scratch database, reflected, and written as CREATE TABLE / CREATE INDEX). Revisions after REV
stay; the first ones are relinked onto the baseline (libcst). The squashed files move into the
run's backup folder (never deleted), and a database recorded at REV is restamped to the
baseline: its schema is REV's, which is the baseline's. The baseline's id is content-addressed
(`baseline_ids`); when a squashed revision already has it (an adopted or inserted baseline
whose schema REV still has: only data revisions after it), the baseline takes its second,
squash-only id. Squashed data revisions (raw SQL, bulk_insert) are named in the plan: a
schema-only baseline does not carry their rows to new databases.

Before anything changes, the squash is proved on scratch databases: an empty database built
from the new history (the baseline's operations, then the later revisions) must have the same
`SchemaSnapshot` fingerprint as one built from the old history. After the files changed, the
new history as written is replayed once more and compared again.

The plan runs through the one runner (runner.py), journalled like `fix`: each step is safe
to run again, and a run killed part-way is finished by the next ``squash --yes``. A plan
carries a fingerprint of what it was made from (the revision files and the version rows):
`squash(plan=...)` runs exactly that plan, or refuses when the project changed since.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from alembic.operations import ops
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from ..data import guards
from ..engine import migrations, revisions
from ..engine.database import connect
from ..engine.locking import migration_lock
from ..engine.models import project_on_path
from ..engine.project import Project
from ..engine.replay import apply_revision, run_replay, scratch_database
from ..engine.state.graph import history_chain, history_order
from ..engine.state.schema import reflect
from ..errors import ConfigError, MigrationFailed, NeedsRepair, RefusedUnsafe
from . import runner
from .history import Relink, invoke_ops, reflect_metadata, render_revision
from .steps import Context, MoveToBackup, Stamp, Step, register, version_rows

__all__ = ["SquashPlan", "SquashResult", "plan_squash", "squash"]

COMMAND = "squash"
Say = Callable[[str, str], None]


def _counted(count: int, noun: str) -> str:
    """``1 row``, ``2 rows``: a count that agrees in number with its noun."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


# -- the steps -------------------------------------------------------------------------------------


def baseline_ops(project: Project, conn: Connection, directory: ScriptDirectory, to: str
                 ) -> ops.UpgradeOps:
    """CREATE operations for the schema the history has at `to` (replayed on a scratch db)."""
    with project_on_path(project.root), scratch_database(project, conn.engine) as scratch:
        for script in history_chain(directory, to):
            apply_revision(scratch, script)
        return revisions.create_ops(reflect_metadata(scratch))


def baseline_ids(operations: ops.UpgradeOps) -> tuple[str, str]:
    """The ids a baseline holding `operations` may take, both content-addressed: the plain
    one (what an adopted or inserted baseline of the same schema has), then one of its own
    for when a squashed revision already has the plain one (an adopted baseline followed by
    revisions that leave its schema as it was: data revisions)."""
    return (revisions.stable_revision_id([], operations),
            revisions.stable_revision_id(["squash"], operations))


@register
@dataclass(frozen=True)
class WriteBaseline(Step):
    """Write the baseline revision holding the replayed schema at `to`."""

    kind: ClassVar[str] = "squash-baseline"
    to: str
    revision: str
    count: int

    def describe(self) -> str:
        return (f"write baseline revision {self.revision}: the schema of {self.to} (replayed), "
                f"replacing {_counted(self.count, 'revision')}")

    def apply(self, ctx: Context) -> None:
        project = ctx.project
        with project_on_path(project.root):
            directory = migrations.scripts(project)
        if any(s.revision == self.revision for s in directory.walk_revisions()):
            return
        operations = baseline_ops(project, ctx.conn, directory, self.to)
        if self.revision not in baseline_ids(operations):
            raise NeedsRepair(f"the schema of {self.to} changed since the plan; run "
                              "`alembic-repair squash` again")
        path = render_revision(project, ctx.conn.dialect, self.revision, None,
                               f"baseline (squashed up to {self.to})", operations)
        ctx.say("baseline", f"wrote revision {self.revision} ({project.rel(path)})")

    def undo(self, ctx: Context) -> None:
        from .history import by_revision
        from .steps import move

        written = by_revision(ctx.project).get(self.revision)
        if written is not None:
            move(written.path, ctx.keep(written.path))


@register
@dataclass(frozen=True)
class VerifySquash(Step):
    """Replay the new history as written: its schema must have the old one's fingerprint."""

    kind: ClassVar[str] = "squash-verify"
    fingerprint: str

    def describe(self) -> str:
        return ("replay the new history from an empty database and compare its fingerprint "
                f"with the old history's ({self.fingerprint[:12]})")

    def apply(self, ctx: Context) -> None:
        with project_on_path(ctx.project.root):
            replay = run_replay(ctx.project, migrations.scripts(ctx.project), ctx.conn.engine)
        final = replay.final
        if replay.failed_at is not None or final is None or \
                final.fingerprint != self.fingerprint:
            why = (f"it fails at {replay.failed_at}: {replay.error}" if replay.failed_at
                   else "its schema differs from the old history's")
            raise MigrationFailed(f"squash: replaying the new history from empty: {why}; the "
                                  "squashed files are in the backup folder")
        ctx.say("verify", "an empty database built from the new history equals one built from "
                f"the old history (fingerprint {self.fingerprint[:12]})")

    def undo(self, ctx: Context) -> None:
        pass


# -- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SquashPlan:
    """What `squash` will do, decided (and proved on scratch databases) before it runs."""

    to: str
    baseline: str
    squashed: tuple[str, ...]  # revision ids, parents first
    kept: tuple[str, ...]  # the later revisions, parents first
    recorded: tuple[str, ...]  # alembic_version before
    restamp: bool
    fingerprint: str  # of an empty database built from either history
    steps: tuple[Step, ...]
    basis: str = ""  # of the revision files and version rows the plan was made from
    data: tuple[str, ...] = ()  # squashed revisions that change rows (raw SQL, bulk_insert)

    def lines(self) -> list[str]:
        if not self.steps:
            return [f"nothing to squash: {self.to} already is the one baseline revision"]
        lines = [f"{n}. {s.describe()}" for n, s in enumerate(self.steps, start=1)]
        return [*lines, f"note: {self.note}"] if self.note else lines

    @property
    def note(self) -> str:
        """What a new database loses: the rows the squashed data revisions wrote."""
        if not self.data:
            return ""
        return (f"{', '.join(self.data)} change(s) rows; the baseline holds the schema only, "
                "so a new database will not get those rows (this database keeps its own; "
                "their files stay in the backup folder)")


@dataclass(frozen=True)
class SquashResult:
    plan: SquashPlan | None
    folder: Path
    resumed: bool = False


_ROW_CALLS = frozenset({"execute", "bulk_insert", "get_bind"})


def _changes_rows(path: Path) -> bool:
    """Whether a revision's upgrade() calls op.execute, op.bulk_insert or op.get_bind (read
    with ast, never run): what a schema-only baseline cannot carry."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False
    upgrade = next((n for n in tree.body if isinstance(n, ast.FunctionDef)
                    and n.name == "upgrade"), None)
    if upgrade is None:
        return False
    # a connection asked for only to look (``sa.inspect(op.get_bind())``, as a bridge's guard
    # does) writes no row
    looking = {id(a) for n in ast.walk(upgrade) if isinstance(n, ast.Call)
               and _called(n) == "inspect" for a in n.args}
    return any(isinstance(n, ast.Call) and _called(n) in _ROW_CALLS and id(n) not in looking
               for n in ast.walk(upgrade))


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _basis(project: Project, recorded: tuple[str, ...]) -> str:
    """A fingerprint of what a plan is made from: every revision file, and the version rows."""
    digest = hashlib.sha256(repr(recorded).encode())
    folder = project.versions_dir
    for path in sorted(folder.rglob("*.py")) if folder.is_dir() else ():
        digest.update(f"{project.rel(path)}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _build_plan(project: Project, conn: Connection, to: str | None) -> SquashPlan:
    with project_on_path(project.root):
        directory = migrations.scripts(project)
        heads = directory.get_heads()
        if to is None or to in ("head", "heads"):
            if len(heads) != 1:
                raise NeedsRepair(f"squash: the history has {len(heads)} heads; merge them "
                                  "first (alembic-repair fix), or pass --to REV")
            to = heads[0]
        try:
            target = directory.get_revision(to)
        except Exception:  # Alembic's own lookup errors: unknown, ambiguous
            target = None
        if target is None:
            raise ConfigError(f"squash: no revision {to!r} in the history; pass --to with one "
                              "of its revision ids")
        to = target.revision
        order = history_order(directory)
        squashed = history_chain(directory, to)
        names = {s.revision for s in squashed}
        kept = [s for s in order if s.revision not in names]
        for script in kept:
            parents = set(script._all_down_revisions)
            if parents & names and parents & names != {to}:
                raise NeedsRepair(f"squash: revision {script.revision} branches off "
                                  f"{', '.join(sorted(parents & names))}, below {to}; squash "
                                  "to that revision instead, or merge first")
        recorded = version_rows(conn)
        conn.rollback()
        behind = [r for r in recorded if r in names and r != to]
        if behind:
            raise NeedsRepair(f"squash: the database is at {', '.join(behind)}, behind {to}: "
                              f"upgrade it to {to} first (`alembic upgrade {to}`), or squash "
                              f"to {behind[0]}")
        old = run_replay(project, directory, conn.engine)
        if old.failed_at is not None or old.final is None:
            raise NeedsRepair(f"squash: the history cannot build an empty database (it fails "
                              f"at {old.failed_at}: {old.error}); run `alembic-repair fix` "
                              "first")
        operations = baseline_ops(project, conn, directory, to)
        with scratch_database(project, conn.engine) as scratch:
            invoke_ops(scratch, operations)
            for script in kept:
                apply_revision(scratch, script)
            new = reflect(scratch)
            scratch.rollback()
    if new.fingerprint != old.final.fingerprint:
        raise NeedsRepair(f"squash: refused, an empty database built from the squashed "
                          f"history would differ from one built from the old one "
                          f"({new.fingerprint[:12]} != {old.final.fingerprint[:12]}); nothing "
                          "changed")
    ids = baseline_ids(operations)
    if len(squashed) == 1 and to in ids:  # the history up to `to` already is one baseline
        return SquashPlan(to, to, (), tuple(s.revision for s in kept), recorded,
                          False, old.final.fingerprint, (), _basis(project, recorded))
    free = [i for i in ids if i not in names]
    if not free:
        raise NeedsRepair(f"squash: the baseline's ids {', '.join(ids)} are both taken by "
                          "squashed revisions; squash to another revision")
    baseline = free[0]
    steps: list[Step] = [WriteBaseline(to, baseline, len(squashed))]
    steps += [Relink(project.rel(Path(s.path)), to, baseline, why="onto the baseline")
              for s in kept if to in s._all_down_revisions]
    steps += [MoveToBackup(project.rel(Path(s.path)), why=f"squashed into {baseline}")
              for s in squashed]
    restamp = to in recorded
    if restamp:
        rows = tuple(baseline if r == to else r for r in recorded)
        steps.append(Stamp(rows, recorded, why=f"{to}'s schema is the baseline's"))
    steps.append(VerifySquash(old.final.fingerprint))
    data = tuple(s.revision for s in squashed if _changes_rows(Path(s.path)))
    return SquashPlan(to, baseline, tuple(s.revision for s in squashed),
                      tuple(s.revision for s in kept), recorded, restamp,
                      old.final.fingerprint, tuple(steps), _basis(project, recorded), data)


def plan_squash(project: Project, *, to: str | None = None) -> SquashPlan:
    """What `squash` would do; changes nothing (the proofs run on scratch databases)."""
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            return _build_plan(project, conn, to)
    finally:
        engine.dispose()


# -- running it ------------------------------------------------------------------------------------


def squash(project: Project, *, to: str | None = None, yes: bool = False,
           allow_remote: bool = False, plan: SquashPlan | None = None,
           say: Say = lambda kind, message: None) -> SquashResult:
    """Collapse the history up to `to` (default: the head) into one baseline revision; needs
    `yes` (and `allow_remote` off this machine), else `RefusedUnsafe` and nothing changes.
    With `plan` (from `plan_squash`), exactly that plan runs: it is not made again."""
    guards.require_local(allow_remote, project, "squash")
    engine = connect(project)
    try:
        with migration_lock(engine, project.state_dir) as conn:
            journal = runner.interrupted(project, COMMAND)
            if journal is not None and runner.started(journal):
                guards.require(yes, allow_remote, project, "squash: would finish the "
                               f"interrupted run (last done: {journal.last_done})")
                ctx = Context(project, conn, runner.folder_of(journal), say=say)
                say("resume", f"an interrupted squash stopped after {journal.last_done}; "
                    "finishing it")
                runner.execute(project, conn, journal, ctx).finish()
                return SquashResult(None, ctx.folder, resumed=True)
            if plan is None:
                plan = _build_plan(project, conn, to)
            elif yes and _basis(project, version_rows(conn)) != plan.basis:
                raise RefusedUnsafe("squash: refused, the revision files or the database "
                                    "changed since the plan was made; nothing changed; run "
                                    "`alembic-repair squash` again to see the new plan")
            conn.rollback()
            if not plan.steps:
                say("squash", f"nothing to squash: {plan.to} is already the baseline")
                return SquashResult(plan, project.state_dir)
            guards.require(yes, allow_remote, project,
                           f"squash: would replace {_counted(len(plan.squashed), 'revision')} "
                           f"up to {plan.to} by baseline {plan.baseline}")
            if plan.note:
                say("note", plan.note)
            runner.recover(project, COMMAND, say, "starting over")  # one that never started
            journal = runner.begin(project, runner.Run(COMMAND, plan.steps))
            ctx = Context(project, conn, runner.folder_of(journal), say=say)
            runner.execute(project, conn, journal, ctx).finish()
            return SquashResult(plan, ctx.folder)
    finally:
        engine.dispose()
