"""The rules: pure functions from a State to Findings, one module per source of truth.

A rule never reads files or databases itself (the State did that) and never raises because the
project is damaged. Each rule declares the codes it emits (`@rule("AR301", ...)`): every code of
the catalogue has exactly one rule (`RULE_OF`), which the repair registry joins with its repair.
`RULES` is filled by the decorator as the modules below import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ...engine.state.read import State
from ..findings import CATALOGUE, Finding

Rule = Callable[[State], Iterable[Finding]]
RULES: list[Rule] = []
#: code -> the one rule that emits it
RULE_OF: dict[str, Rule] = {}


def rule(*codes: str) -> Callable[[Rule], Rule]:
    """Register a rule with the codes it emits (each code has exactly one rule)."""

    def register(fn: Rule) -> Rule:
        for code in codes:
            assert code in CATALOGUE, code
            assert code not in RULE_OF, f"{code}: {RULE_OF.get(code)} and {fn}"
            RULE_OF[code] = fn
        fn.codes = codes  # type: ignore[attr-defined]
        RULES.append(fn)
        return fn

    return register


from . import graph, hidden, project, safety, schema, versions  # noqa: E402,F401  (registers)
