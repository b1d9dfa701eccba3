"""The journal of a multi-step destructive run, so a killed run is finished or rolled back.

A run (``reset``, ``fix``) writes ``.alembic_repair/journal.json`` before its first change and
rewrites it (atomically: temporary file, fsync, rename, fsync of the folder) as each step starts
and ends. The file therefore always tells the next run how far the last one got:

* no journal: the last run finished (or never started);
* a journal whose destructive steps never started: nothing changed, the run can start over;
* otherwise: the steps marked ``done`` are done, the one marked ``started`` may be half done
  (so every step is written to be safe to run again), the rest have not run.

The journal is read and written only under the migration lock, so a run in progress in another
process is never mistaken for a crashed one.

Crash injection for tests: ``ALEMBIC_REPAIR_CRASH_AFTER=<point>`` makes `crash_point` kill the
process with SIGKILL (no cleanup, no ``finally``) when it reaches that point; every step ends
with the point ``<step>`` and long steps have inner points such as ``drop.1``.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..private import private_dir

__all__ = ["CRASH_ENV", "JOURNAL", "TRACE_ENV", "Journal", "StepRecord", "crash_point"]

JOURNAL = "journal.json"
CRASH_ENV = "ALEMBIC_REPAIR_CRASH_AFTER"
TRACE_ENV = "ALEMBIC_REPAIR_CRASH_TRACE"
FORMAT = 1


def crash_point(point: str) -> None:
    """Die here, as ``kill -9`` would, when the environment asks for it (tests only). With
    ``ALEMBIC_REPAIR_CRASH_TRACE=<file>`` every point passed is appended to that file, so a
    test can tell which points a command really passes (tests/test_kill_loop.py)."""
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(point + "\n")
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StepRecord:
    name: str
    state: str = "pending"  # pending | started | done
    destructive: bool = False


@dataclass(frozen=True)
class Journal:
    """One run's steps and what later steps need to know (e.g. the backup's folder)."""

    path: Path
    command: str
    started_at: str
    steps: tuple[StepRecord, ...]
    context: dict[str, Any] = field(default_factory=dict)

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def load(cls, state_dir: Path) -> Journal | None:
        path = state_dir / JOURNAL
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            steps = tuple(StepRecord(str(s["name"]), str(s["state"]), bool(s["destructive"]))
                          for s in data["steps"])
            return cls(path, str(data["command"]), str(data["started_at"]), steps,
                       dict(data["context"]))
        except (FileNotFoundError, NotADirectoryError):  # the lock refuses a file there
            return None
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise ConfigError(
                f"{path}: the journal of an interrupted run does not parse; look at it, then "
                "move it away to start over (the backups under .alembic_repair/backups/ are kept)"
            ) from None

    @property
    def changed_anything(self) -> bool:
        """True once a destructive step has started: the old state may be gone."""
        return any(s.destructive and s.state != "pending" for s in self.steps)

    def state(self, name: str) -> str:
        return next(s.state for s in self.steps if s.name == name)

    def is_done(self, name: str) -> bool:
        return self.state(name) == "done"

    @property
    def last_done(self) -> str | None:
        done = [s.name for s in self.steps if s.state == "done"]
        return done[-1] if done else None

    # -- writing -------------------------------------------------------------------------

    @classmethod
    def begin(cls, state_dir: Path, command: str, steps: Sequence[tuple[str, bool]],
              context: dict[str, Any] | None = None) -> Journal:
        journal = cls(state_dir / JOURNAL, command,
                      datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      tuple(StepRecord(name, "pending", flag) for name, flag in steps),
                      dict(context or {}))
        journal._write()
        return journal

    def mark(self, name: str, state: str, **context: Any) -> Journal:
        if name not in {s.name for s in self.steps}:
            raise KeyError(name)
        steps = tuple(replace(s, state=state) if s.name == name else s for s in self.steps)
        journal = replace(self, steps=steps, context={**self.context, **context})
        journal._write()
        if state == "done":
            crash_point(name)
        return journal

    def note(self, **context: Any) -> Journal:
        """Record what later steps (or a resumed run) need to know."""
        journal = replace(self, context={**self.context, **context})
        journal._write()
        return journal

    def finish(self) -> None:
        """The run is complete: the journal goes (its backup stays)."""
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "command": self.command, "started_at": self.started_at,
                "steps": [{"name": s.name, "state": s.state, "destructive": s.destructive}
                          for s in self.steps],
                "context": self.context}

    def _write(self) -> None:
        private_dir(self.path.parent)  # .alembic_repair/ is 0700 (private.py)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(self.as_dict(), indent=2).encode("utf-8") + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
