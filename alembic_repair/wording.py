"""Counts that agree in number ("1 row", "2 rows"), in the base layer so every layer's messages
can say them the same way instead of "row(s)" or a fixed plural after a count that can be 1."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` followed by ``noun`` when it is 1, else by ``plural`` (default ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else (plural if plural is not None else noun + 's')}"
