"""Repair steps: small, explained, journalled units of change that `fix` runs in order.

Each step is a frozen dataclass that says what it will do (`describe`), does it (`apply`) and,
when it can, takes it back (`undo`). Three class flags tell the runner (`repair/fix.py`) how to
treat it:

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

This module holds what every step shares: `Context`, `Step`, the registry of step kinds, and
the helpers that keep a project file in the backup folder and put it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy.engine import Connection

from ... import private
from ...engine import revisions
from ...engine.project import Project
from ...errors import NeedsRepair
from ...private import STATE_DIR
from ..journal import Journal

__all__ = ["FILES_DIR", "STEP_KINDS", "Context", "Step", "from_dict", "register"]

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
    #: `alters` reads the revision files and alembic_version as they are before the run: it
    #: can tell only when every step before it keeps them (`keeps_history`)
    reads_history: ClassVar[bool] = False
    #: changes no revision file's operations and no alembic_version row
    keeps_history: ClassVar[bool] = False

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

    def alters(self, ctx: Context) -> frozenset[str] | None:
        """The tables whose columns this step may add, drop, retype or rename (or that it may
        create, drop, rename or write rows into), or None when it cannot tell: every table.
        The row check compares the other tables by ``CHECKSUM TABLE``, which is comparable
        only over unchanged column definitions. Default: none for a step that neither needs a
        backup nor is destructive (files, stamps), unknown for one that is."""
        return None if (self.needs_backup or self.destructive) else frozenset()

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


# -- files kept in the backup folder -------------------------------------------------------------


def move(source: Path, dest: Path) -> bool:
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


def keep_copy(ctx: Context, path: Path) -> None:
    """A copy of `path` in the backup folder (once: the first copy is the original)."""
    kept = ctx.keep(path)
    if not kept.exists():
        private.private_dir(kept.parent)
        shutil.copy2(path, kept)
        kept.chmod(0o600)


def write_atomic(path: Path, text: str) -> None:
    """A temporary file, then a rename (mode kept): a kill -9 never leaves half a file, which
    the step run again could not parse."""
    temporary = path.with_name(f".{path.name}.ar-tmp")
    temporary.write_text(text, encoding="utf-8")
    if path.exists():
        shutil.copymode(path, temporary)
    os.replace(temporary, path)


def restore_copy(ctx: Context, path: Path) -> None:
    kept = ctx.keep(path)
    if kept.exists():
        shutil.copy2(kept, path)
        private.public_mode(path)  # the kept copy is 0600; the project's file is not


# -- revision files a step wrote itself -----------------------------------------------------------


def keep_aside(ctx: Context, path: Path) -> None:
    """Move a file a step wrote into the backup folder (a new name if one is there already)."""
    dest, number = ctx.keep(path), 1
    while dest.exists():
        number += 1
        dest = dest.with_name(f"{ctx.keep(path).name}.{number}")
    move(path, dest)


def reuse_own_revision(ctx: Context, step: Step) -> str | None:
    """The revision `step` recorded (`remember`) and wrote before a crash, when its file is
    whole; a file cut short is moved into the backup folder (the step writes it again)."""
    revision = ctx.recall(step).get("revision")
    if revision is None:
        return None
    intact, partial = revisions.own_files(ctx.project, revision)
    for path in partial:
        keep_aside(ctx, path)
        ctx.say("move", f"moved {ctx.project.rel(path)} (cut short by the interrupted run) "
                "into the backup folder")
    return revision if intact else None


def take_own_revision_back(ctx: Context, step: Step) -> None:
    """Undo of a step that wrote a revision file: move the file it recorded writing (never
    one that was there before it ran) into the backup folder, whole or cut short."""
    memo = ctx.recall(step)
    revision = memo.get("revision")
    if revision is None or memo.get("existed"):
        return
    intact, partial = revisions.own_files(ctx.project, revision)
    for path in intact + partial:
        keep_aside(ctx, path)

