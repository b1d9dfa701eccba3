"""The ``alembic-repair`` console script: a repeated healthy doctor is answered from its cached
verdict (`quick`, no Alembic or Typer import); everything else goes to the Typer CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if "doctor" in args:
        from ..diagnose.verdict_cache import cached_answer

        verdict = cached_answer(args)
        if verdict is not None:
            sys.stdout.write(verdict)
            sys.stdout.flush()
            sys.exit(0)
    from .app import main as full

    full(args)
