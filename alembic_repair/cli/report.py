"""How results look on a terminal (Rich) and to scripts and logs (plain text, JSON): every
line the CLI prints is written here (app.py parses, calls `api`, and hands the result over).

Rich is loaded only when the stream is a terminal: container logs get the same words as plain
lines, and the start-up path does not pay for importing Rich. Plans are printed from the very
object the API then runs (`api.fix(plan=...)`): a dry run plans once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import asdict
from functools import cache
from typing import TYPE_CHECKING, Any, TextIO

from ..api import Action, BootstrapResult
from ..wording import counted

if TYPE_CHECKING:

    from ..data.backups import Manifest, RestoreReport
    from ..data.trash import TrashEntry
    from ..diagnose.diagnosis import Diagnosis
    from ..engine.project import Project
    from ..repair.drop import DropResult
    from ..repair.fix import FixResult
    from ..repair.plan import Plan
    from ..repair.reset import ResetPlan, ResetResult
    from ..repair.squash import SquashPlan, SquashResult

_STYLE = {"wait": "yellow", "kept": "yellow", "note": "dim", "upgrade": "green",
          "autogenerate": "green", "adopt": "cyan", "scaffold": "blue", "error": "red",
          "database": "dim", "bootstrap": "bold"}


@cache
def _console(stream: TextIO) -> Any:
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)


def _line(label: str, message: str, *, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if stream.isatty():
        console = _console(stream)
        console.print(f"{label:>12}  ", style=_STYLE.get(label, ""), end="", markup=False)
        console.print(message, markup=False)
    else:
        stream.write(f"{label:>12}  {message}\n")
        stream.flush()


def action_line(action: Action) -> None:
    _line(action.kind, action.message)


@contextmanager
def table_progress(title: str) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A ``progress(table, rows_done, rows_total)`` callback drawing one Rich bar per table on
    a terminal (it may be called from a worker thread: Rich's Progress is thread-safe); None
    elsewhere, so logs get only the final lines."""
    if not sys.stdout.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn(f"{title} {{task.description}}"), BarColumn(),
                  MofNCompleteColumn(), console=_console(sys.stdout), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(table: str, done: int, total: int | None) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.update(tasks[table], completed=done, total=total)

        yield update


@contextmanager
def progress(title: str, total: int | None = None) -> Iterator[Callable[[Action], None]]:
    """An `on_action` callback for a long command. On a terminal: a Rich progress display (a
    spinner, the step in hand, a bar when `total` steps are known, the time taken) with each
    finished action printed above it; elsewhere: the same plain lines as `action_line`."""
    if not sys.stdout.isatty():
        yield action_line
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    console = _console(sys.stdout)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(title, total=total)

        def on_action(action: Action) -> None:
            console.print(Text.assemble((f"{action.kind:>12}  ", _STYLE.get(action.kind, "")),
                                        action.message))
            bar.update(task, description=f"{title}: {action.kind}", advance=1)

        yield on_action


def bootstrap_header(url: str, source: str) -> None:
    _line("database", f"{url} (from {source})")


def bootstrap_summary(result: BootstrapResult) -> None:
    head = ", ".join(result.head) if result.head else "no revision"
    verdict = "done" if result.changed else "nothing to do"
    _line("bootstrap", f"{verdict}: database at {head}")


def bootstrap_json(result: BootstrapResult) -> None:
    data: dict[str, Any] = {
        "root": str(result.root),
        "url": result.url,
        "url_source": result.url_source,
        "head": list(result.head),
        "changed": result.changed,
        "actions": [asdict(a) for a in result.actions],
    }
    print(json.dumps(data, indent=2))


def error_line(message: str) -> None:
    """``error: MESSAGE`` on stderr, one line, whatever the terminal."""
    stream = sys.stderr
    if stream.isatty():
        _console(stream).print(f"error: {message}", style="red", markup=False)
    else:
        stream.write(f"error: {message}\n")
        stream.flush()


def _same_terminal(one: TextIO, other: TextIO) -> bool:
    """Both streams are the one terminal: a line printed to each would show twice."""
    try:
        if not (one.isatty() and other.isatty()):
            return False
        a, b = os.fstat(one.fileno()), os.fstat(other.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)


def unread_error(diagnosis: Diagnosis) -> str | None:
    """Why the database could not be read (one line, password masked), or None."""
    from ..diagnose.diagnosis import one_line

    state = diagnosis.state
    return None if state.db_error is None else one_line(state.db_error, state.project.url)


def diagnosis_text(diagnosis: Diagnosis, stream: TextIO | None = None) -> None:
    """Findings worst first: a Rich table on a terminal, two plain lines each otherwise. A
    database that could not be read is said first (why, in one line) and last (nothing in it
    was checked): never "healthy" or "0 error(s)" as if it had been."""
    stream = stream or sys.stdout
    state = diagnosis.state
    _line("database", f"{state.project.masked_url} (from {state.project.url_source})",
          stream=stream)
    why = unread_error(diagnosis)
    if why is not None:
        _line("error", why, stream=stream)
    findings = diagnosis.findings
    if stream.isatty() and findings:
        from rich.table import Table

        table = Table(show_lines=False, expand=True)
        for name, style in (("code", "bold"), ("severity", ""), ("where", "cyan"),
                            ("problem", ""), ("fix", "green")):
            table.add_column(name, style=style, overflow="fold")
        colours = {"error": "red", "warning": "yellow", "info": "dim"}
        for f in findings:
            table.add_row(f.code, f"[{colours[f.severity]}]{f.severity}[/]", f.location or "",
                          f"{f.title}: {f.detail}", f.fix)
        _console(stream).print(table)
    else:
        for f in findings:
            where = f" {f.location}" if f.location else ""
            stream.write(f"{f.code} {f.severity}{where}: {f.title}: {f.detail}\n"
                         f"      fix: {f.fix}\n")
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    tally = (f"{counted(counts['error'], 'error')}, {counted(counts['warning'], 'warning')}, "
             f"{counted(counts['info'], 'note')}")
    if why is not None:
        _line("doctor", f"database not read (the error above), so not checked; the project's "
              f"files: {tally}", stream=stream)
        return
    verdict = "healthy" if diagnosis.healthy else "problems found"
    _line("doctor", f"{verdict}: {tally}", stream=stream)


def diagnosis_json(diagnosis: Diagnosis, *, from_cache: bool = False) -> str:
    state = diagnosis.summary()
    state["verdict_from_cache"] = from_cache
    return json.dumps({
        "healthy": diagnosis.healthy,
        "findings": [f.as_dict() for f in diagnosis.findings],
        "state": state,
    }, indent=2) + "\n"


def traceback_text(text: str) -> None:
    """A traceback (already scrubbed of passwords), before the usual error line."""
    sys.stderr.write(text)
    sys.stderr.flush()


def _out(text: str) -> None:
    sys.stdout.write(text)


def _plain(kind: str, message: str) -> None:
    _out(f"{kind:>12}  {message}\n")


# -- doctor ------------------------------------------------------------------------------------


@contextmanager
def stdout_reserved(reserve: bool) -> Iterator[None]:
    """While the project's own code runs (env.py, the models, revision files), whatever it prints
    or logs to standard output goes to standard error: under `--format json` standard output
    holds the JSON alone. Redirected at the file descriptor too, for subprocesses and C code."""
    if not reserve:
        yield
        return
    sys.stdout.flush()
    try:
        saved: int | None = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        saved = None
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def doctor(diagnosis: Diagnosis, *, as_json: bool) -> None:
    """The report on standard output; a database that could not be read also gets the usual
    one ``error:`` line on standard error (for logs and scripts), unless both are one terminal."""
    if as_json:
        _out(diagnosis_json(diagnosis))
    else:
        diagnosis_text(diagnosis)
    why = unread_error(diagnosis)
    if why is not None and (as_json or not _same_terminal(sys.stdout, sys.stderr)):
        error_line(why)


# -- trash -------------------------------------------------------------------------------------


def plain_action(action: Action) -> None:
    _plain(action.kind, action.message)


def trash_entry(kind: str, entry: TrashEntry) -> None:
    rows = "" if entry.rows is None else f", {counted(entry.rows, 'row')}"
    _out(f"{kind:>12}  {entry.trash_name}: table {entry.table}{rows}, "
         f"dropped {entry.dropped_at:%Y-%m-%d %H:%M:%S} UTC\n")


def trash_list(entries: tuple[TrashEntry, ...], *, as_json: bool) -> None:
    if as_json:
        _out(json.dumps([e.as_dict() for e in entries], indent=2) + "\n")
        return
    for entry in entries:
        trash_entry("trash", entry)
    _plain("trash", counted(len(entries), "table"))


def trash_restored(entry: TrashEntry) -> None:
    if entry.already and not entry.trash_name:
        _plain("already", f"table {entry.table} is in place (not in the trash); nothing to do")
        return
    trash_entry("already" if entry.already else "restored", entry)


def trash_purged(purged: tuple[TrashEntry, ...]) -> None:
    for entry in purged:
        trash_entry("purged", entry)
    _plain("purge", f"{counted(len(purged), 'table')} dropped")


# -- backup and restore ------------------------------------------------------------------------


def backup_done(manifest: Manifest) -> None:
    _plain("backup", str(manifest.path))
    for info in manifest.tables:
        _plain("table", f"{info.name}: {counted(info.rows, 'row')}")


def restore_done(result: RestoreReport) -> None:
    for name in result.created:
        _plain("created", f"table {name}")
    for name, rows in result.restored.items():
        _plain("restored", f"{name}: {counted(rows, 'row')}")
    for name, rows in result.already.items():
        _plain("already", f"{name}: holds the backup's {counted(rows, 'row')}")
    for name, rows in result.missing_tables.items():
        _plain("kept", f"{name}: {counted(rows, 'row')} {'stays' if rows == 1 else 'stay'} in the "
               "backup (no such table)")
    for name, cols in result.dropped_columns.items():
        _plain("kept", f"{name}: values of {', '.join(cols)} stay in the backup (no such "
               "column)")
    for name, rows in result.not_empty.items():
        _plain("skipped", f"{name}: holds {counted(rows, 'row')} already")


# -- reset, fix, squash: the plan (printed from the object the API then runs), the outcome -------


def reset_plan(plan: ResetPlan) -> None:
    _out(f"reset plan for {plan.url}:\n")
    for line in plan.lines():
        _out(f"  {line}\n")


def reset_done(project: Project, result: ResetResult) -> None:
    _plain("reset", f"done: at {result.head}; backup kept in {project.rel(result.backup)}")


def fix_plan(plan: Plan, *, rollback: bool) -> None:
    """The first round's plan, exact, then the later layers projected (`FixPlan.later`), or
    what `--yes` will do first about an interrupted run."""
    journal = getattr(plan, "interrupted", None)
    if journal is not None:
        what = "roll back" if rollback else "finish"
        _out(f"an interrupted fix stopped after {journal.last_done}; with --yes, fix will "
             f"{what} it first\n")
        return
    later: tuple[Plan, ...] = getattr(plan, "later", ())
    if plan.steps:
        _out(f"fix plan ({plan.layer}):\n")
        for line in plan.lines():
            _out(f"  {line}\n")
    if later:
        _out("then, depending on the results of the layers before (each planned again in "
             "its turn; fix --yes stops before any other kind of step):\n")
        for projected in later:
            _out(f"  {projected.layer}:\n")
            for line in projected.lines():
                _out(f"    {line}\n")
    for finding, why in plan.unrepairable:
        where = f" {finding.location}" if finding.location else ""
        _plain("left", f"{finding.code}{where}: {why}")


def fix_done(result: FixResult) -> None:
    """What is left (each with what to do), then the verdict or the diagnosis."""
    for code, location, why in result.unrepairable:
        _plain("left", f"{code}{' ' + location if location else ''}: {why}")
    if result.healthy:
        _plain("fix", "healthy" if result.changed else "healthy, nothing to do")
        return
    diagnosis_text(result.final)


def squash_plan(plan: SquashPlan) -> None:
    _out(f"squash plan (up to {plan.to}: {counted(len(plan.squashed), 'revision')} into "
         f"baseline {plan.baseline}):\n")
    for line in plan.lines():
        _out(f"  {line}\n")


def squash_done(project: Project, result: SquashResult) -> None:
    if result.plan is not None and not result.plan.steps:
        _plain("squash", "nothing to do")
        return
    done = (f"baseline {result.plan.baseline} replaces "
            f"{counted(len(result.plan.squashed), 'revision')}"
            if result.plan is not None else "finished the interrupted run")
    _plain("squash", f"done: {done}; old files kept in {project.rel(result.folder)}")


# -- drop --------------------------------------------------------------------------------------


def drop_done(project: Project, result: DropResult) -> bool:
    """The diff and what was written; False when nothing was written (a dry run: exit 4)."""
    _out(result.diff)
    if result.already:
        _plain("drop", f"already written: {project.rel(result.path)} (not yet applied) drops "
               f"{', '.join(result.already)}; nothing written")
        return True
    if not result.written:
        error_line(f"drop: would write {project.rel(result.path)} as shown; nothing written; "
                   "pass --yes to write it")
        return False
    if result.backup is not None:
        _plain("backup", project.rel(result.backup))
    _plain("drop", f"wrote {project.rel(result.path)}; apply it with `alembic upgrade head` "
           "or `alembic-repair bootstrap`")
    if result.env_filter is not None:
        _plain(result.env_filter[0], result.env_filter[1])
    return True
