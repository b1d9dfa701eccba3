"""How results look on a terminal (Rich) and to scripts and logs (plain text, JSON).

Rich is loaded only when the stream is a terminal: container logs get the same words as plain
lines, and the start-up path does not pay for importing Rich.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import cache
from typing import TYPE_CHECKING, Any, TextIO

from ..api import Action, BootstrapResult

if TYPE_CHECKING:
    from ..diagnose.diagnosis import Diagnosis

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


def diagnosis_text(diagnosis: Diagnosis, stream: TextIO | None = None) -> None:
    """Findings worst first: a Rich table on a terminal, two plain lines each otherwise."""
    stream = stream or sys.stdout
    state = diagnosis.state
    _line("database", f"{state.project.masked_url} (from {state.project.url_source})",
          stream=stream)
    if state.db_error is not None:
        _line("error", str(state.db_error), stream=sys.stderr)
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
    verdict = "healthy" if diagnosis.healthy else "problems found"
    _line("doctor", f"{verdict}: {counts['error']} error(s), {counts['warning']} warning(s), "
          f"{counts['info']} note(s)", stream=stream)


def diagnosis_json(diagnosis: Diagnosis, *, from_cache: bool = False) -> str:
    state = diagnosis.summary()
    state["verdict_from_cache"] = from_cache
    return json.dumps({
        "healthy": diagnosis.healthy,
        "findings": [f.as_dict() for f in diagnosis.findings],
        "state": state,
    }, indent=2) + "\n"
