"""The rules: pure functions from a State to Findings, one module per source of truth.

A rule never reads files or databases itself (the State did that) and never raises because the
project is damaged. `RULES` is filled by the `rule` decorator as the modules below import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ...engine.state.read import State
from ..findings import Finding

Rule = Callable[[State], Iterable[Finding]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


from . import graph, hidden, project, safety, schema, versions  # noqa: E402,F401  (registers)
