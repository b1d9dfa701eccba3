"""The replay through the project's own env.py, in a child process (`replay_child`).

Real histories call ``context.get_bind()``, read ``context.config``, depend on env.py's options
and on the set-up the application runs before Alembic; the bare replay (`replay.apply_revision`)
cannot give them that. Here ``alembic upgrade heads`` runs as Alembic runs it, in a child
process in the project folder (forked where the OS can: the application's modules, imported to
read the models, are then not imported twice; else ``python -m``), against a scratch database
this process creates and drops: an SQLite file in a 0700 temporary folder, or a claimed
``_ar_replay_*`` schema on the project's MySQL/MariaDB server (`scratch`). The scratch URL,
which holds the password, stays in memory (fork) or goes over the child's standard input, never
argv; the child's output goes to a log file in the same folder, and the outcome comes back as a
marshal file there: nothing is parsed from what env.py prints.

`EnvRun.fallback` says why the history could not be replayed this way (env.py connects
elsewhere, fails before the first revision, ...): the caller then runs the bare replay.
"""

from __future__ import annotations

import json
import marshal
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from ..errors import IniError
from ..masking import redact
from . import replay_child
from .project import Project

#: The child may take as long as ``alembic upgrade`` does; a hung env.py is stopped after this.
TIMEOUT = 1800.0
CHILD = "alembic_repair.engine.replay_child"
#: Fork (POSIX): the child shares the modules already imported; else a fresh interpreter.
FORK = hasattr(os, "fork")


@dataclass(frozen=True)
class EnvRun:
    """What the child reported: snapshots (facts) after each applied revision, in order."""

    applied: tuple[str, ...] = ()
    snapshots: dict[str, frozenset[Any]] = field(default_factory=dict)
    failed_at: str | None = None
    error: str | None = None
    error_location: str | None = None
    partial: frozenset[Any] | None = None
    signatures: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    transient: bool = False
    fallback: str | None = None  # why the bare replay must be used instead


def usable(project: Project) -> bool:
    """Whether there is an env.py to run (and an alembic.ini Alembic can read)."""
    unreadable = any(isinstance(p, IniError) for p in project.problems)
    return project.env_py.is_file() and not unreadable


@contextmanager
def _scratch(project: Project, live: Engine | None, folder: Path) -> Iterator[tuple[str, dict[
        str, Any]]]:
    """(scratch URL, what the child checks env.py's connection against)."""
    url = project.url.parsed
    if url.get_backend_name() == "sqlite":
        file = folder / "scratch.db"
        yield f"sqlite:///{file}", {"file": str(file)}
        return
    if live is None:
        raise ValueError("a scratch database on a server needs a connection to that server")
    from . import scratch

    # `holder` holds the schema's lock while it exists (scratch.py), which also proves to the
    # child that env.py's connection reaches this very server
    with scratch.held_schema(live, project) as (name, holder):
        holder_id = holder.execute(text("SELECT CONNECTION_ID()")).scalar()
        holder.commit()
        yield (url.set(database=name).render_as_string(hide_password=False),
               {"schema": name, "lock": scratch.lock_name(name), "holder": holder_id})


def _child_env() -> dict[str, str]:
    """The parent's environment, with this package importable from the project folder."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), here) if p)
    return env


def _last_line(log: Path, url: str) -> str:
    try:
        lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return "no output"
    return redact(lines[-1].strip(), url)[:300] if lines else "no output"


class _Forked:
    """A forked child, with the part of `subprocess.Popen`'s interface `Child` uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # SIGCHLD ignored: reaped already; the result file tells
                self.returncode = 0
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(CHILD, timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return code

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _fork(orders: dict[str, Any], log: str, live: Engine | None) -> _Forked:
    """The replay in a forked copy of this process: the application's modules, imported
    while the models were read, are not imported a second time (doctor's cold run stays
    close to one `alembic upgrade`). The orders never leave memory."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns (replay_child.forked ends the process)
        try:
            if live is not None:  # the parent's pooled connections are the parent's
                live.dispose(close=False)
        finally:
            replay_child.forked(orders, log)
    return _Forked(pid)


class Child:
    """``alembic upgrade heads`` through env.py on a fresh scratch database, started now in
    the background (doctor reads the rest meanwhile); `result` waits for it. The scratch
    database and the temporary folder are gone once `result` or `close` returns."""

    def __init__(self, project: Project, live: Engine | None, setup: str | None) -> None:
        self.project, self.setup = project, setup
        self._stack = ExitStack()
        try:
            folder = Path(tempfile.mkdtemp(prefix="ar-replay-"))  # 0700
            self._stack.callback(shutil.rmtree, folder, ignore_errors=True)
            self.url, expect = self._stack.enter_context(_scratch(project, live, folder))
            self.result_file, self.log = folder / "result.marshal", folder / "child.log"
            orders = {"url": self.url, "expect": expect, "backend": project.url.parsed
                      .get_backend_name(), "root": str(project.root),
                      "ini": str(project.ini_path) if project.ini_path.is_file() else None,
                      "script_location": str(project.script_location), "setup": setup,
                      "result": str(self.result_file)}
            out = self._stack.enter_context(self.log.open("wb"))
            self.process: subprocess.Popen[bytes] | _Forked
            # fork copies locks other threads hold (Rich's progress display under fix):
            # only a single-threaded process forks, the others start a fresh interpreter
            if FORK and threading.active_count() == 1:
                self.process = _fork(orders, str(self.log), live)
                self._stack.callback(self._stop)
                return
            # the password travels over the pipe: never argv, never a file outside `folder`
            self.process = subprocess.Popen([sys.executable, "-m", CHILD],
                                            stdin=subprocess.PIPE, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=project.root,
                                            env=_child_env())
            self._stack.callback(self._stop)
            assert self.process.stdin is not None
            with suppress(BrokenPipeError), self.process.stdin as pipe:  # died: no result
                pipe.write(json.dumps(orders).encode())
        except BaseException:
            self._stack.close()
            raise

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Stop the child (if still running) and drop its scratch database."""
        self._stack.close()

    def result(self) -> EnvRun:
        with self._stack:
            try:
                self.process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                return EnvRun(fallback=f"env.py did not finish within {TIMEOUT:.0f} s")
            try:
                outcome = marshal.loads(self.result_file.read_bytes())
            except (OSError, EOFError, ValueError, TypeError):
                return EnvRun(fallback="the replay through env.py stopped without a result "
                                       f"({_last_line(self.log, self.url)})")
            return _outcome(self.project, outcome, self.setup)


def _where(project: Project, frames: list[tuple[str, int]], file: str | None = None) -> str:
    """``file:line`` of the deepest frame in `file` (else in the project's own code)."""
    place = project.rel(file) if file else ""
    for path, line in frames:
        if file is not None:
            if os.path.realpath(path) == os.path.realpath(file):
                place = f"{project.rel(path)}:{line}"
        elif _own(project, path):
            place = f"{project.rel(path)}:{line}"
    return place


def _own(project: Project, path: str) -> bool:
    if path.startswith("<") or "site-packages" in path:
        return False
    return Path(path).resolve().is_relative_to(project.root)


def _outcome(project: Project, data: dict[str, Any], setup: str | None) -> EnvRun:
    status = data["status"]
    common = {"applied": tuple(data["applied"]), "snapshots": data["snapshots"],
              "options": data["options"]}
    if status == "ok":
        return EnvRun(**common, signatures=data["signatures"])
    if status == "refused":
        return EnvRun(fallback=f"{data['error']}; nothing was run through it")
    if status == "idle":
        return EnvRun(fallback="env.py ran no migration against the scratch database")
    where = _where(project, data["frames"])
    at = f" ({where})" if where else ""
    if status == "setup":
        return EnvRun(fallback=f"the declared set-up {setup} fails{at}: {data['error']}",
                      transient=data["transient"])
    if status == "early":
        return EnvRun(fallback=f"env.py fails before the first revision{at}: {data['error']}",
                      transient=data["transient"])
    failed_at = data.get("failed_at")
    if failed_at is None:  # after the last revision (env.py's own code, a commit)
        return EnvRun(**common, signatures=data["signatures"]) if data["applied"] else \
            EnvRun(fallback=f"env.py fails before the first revision{at}: {data['error']}",
                   transient=data["transient"])
    return EnvRun(**common, failed_at=failed_at, error=data["error"],
                  error_location=_where(project, data["frames"], data["file"]),
                  partial=data["partial"], transient=data["transient"])
