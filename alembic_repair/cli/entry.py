"""The ``alembic-repair`` console script: a repeated healthy doctor is answered from its cached
verdict (`quick`, no Alembic or Typer import); everything else goes to the Typer CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if "doctor" in args:
        from ..diagnose.verdict_cache import answer

        code = answer(args)
        if code is not None:
            sys.exit(code)
    from .app import main as full

    full(args)
