"""How a dry run reads: a plan, not an error (issue 16).

Without ``--yes``, every command that changes something (fix, reset, squash, drop, restore,
trash drop/restore/purge) prints on stdout `HEADING`, the plan, then `HINT`, and exits
`EXIT_DRY_RUN` (5). Exit 4 stays for real refusals (a non-local database without
``--allow-remote``, a plan the project no longer matches). The API raises `DryRun` (a
`RefusedUnsafe`) where only ``--yes`` was missing. A command that prints a plan of its own (fix,
reset, squash, a soft drop's diff) prints `HEADING` before it; for the others the refused
action is the plan.
"""

from __future__ import annotations

import sys

from ..errors import EXIT_DRY_RUN, DryRun

__all__ = ["EXIT_DRY_RUN", "HEADING", "HINT", "finish", "heading", "hint", "line"]

HEADING = "Plan (dry run, nothing changed):"
HINT = "Run again with --yes to apply it."


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def heading() -> None:
    """`HEADING`, before a plan the command prints itself."""
    _out(f"{HEADING}\n")


def line(text: str) -> None:
    """One line of a plan, indented under `HEADING`."""
    _out(f"  {text}\n")


def hint() -> None:
    """`HINT`, the last line of a dry run."""
    _out(f"{HINT}\n")


def finish(err: DryRun, *, shown: bool) -> int:
    """The end of a dry run: the refused action as the plan (unless the command printed its
    own: `shown`), then `HINT`; returns the exit code."""
    if not shown:
        heading()
        line(err.action)
    hint()
    return err.exit_code
