"""How results look on a terminal (Rich) and to scripts (JSON). Nothing here decides anything."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console

from .api import Action, BootstrapResult

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STYLE = {"wait": "yellow", "kept": "yellow", "note": "dim", "upgrade": "green",
          "autogenerate": "green", "adopt": "cyan", "scaffold": "blue"}


def action_line(action: Action) -> None:
    out.print(f"{action.kind:>12}  ", style=_STYLE.get(action.kind, ""), end="", markup=False)
    out.print(action.message, markup=False)


def bootstrap_header(url: str, source: str) -> None:
    out.print(f"{'database':>12}  {url} (from {source})", style="dim", markup=False)


def bootstrap_summary(result: BootstrapResult) -> None:
    head = ", ".join(result.head) if result.head else "no revision"
    verdict = "done" if result.changed else "nothing to do"
    out.print(f"{'bootstrap':>12}  {verdict}: database at {head}", style="bold", markup=False)


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
    err.print(f"error: {message}", style="red", markup=False)
