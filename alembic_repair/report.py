"""How results look on a terminal (Rich) and to scripts and logs (plain text, JSON).

Rich is loaded only when the stream is a terminal: container logs get the same words as plain
lines, and the start-up path does not pay for importing Rich.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from functools import cache
from typing import Any, TextIO

from .api import Action, BootstrapResult

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
