"""Every code's repair, refusal or report-only declaration, one module per plan layer.

Importing the package fills `repair.registry` (the modules register as they import, in layer
order). `catalogue()` joins the registry with the rules and the docs examples: the one view of
what the project declares about each code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...diagnose.findings import CATALOGUE, examples
from ...diagnose.rules import RULE_OF
from ..registry import BY_CODE, Refusal, Repair, ReportOnly
from . import graph, models, pending, setup, values, versions  # noqa: F401  (registers)


@dataclass(frozen=True)
class CodeEntry:
    """Everything declared about one code: its rule, its layer, how it is resolved, and the
    tested scenarios its docs page shows as examples."""

    code: str
    rule: str
    layer: str | None
    resolution: str  # "repair" | "refusal" | "report"
    examples: tuple[tuple[str, str], ...]
    rule_home: str = ""  # module of the rule, e.g. "diagnose.rules.versions"
    home: str = ""  # module declaring the repair, refusal or report, e.g. "repair.repairs.setup"


def catalogue() -> list[CodeEntry]:
    cases = examples()
    kinds = {Repair: "repair", Refusal: "refusal", ReportOnly: "report"}
    return [CodeEntry(code, RULE_OF[code].__name__, BY_CODE[code].layer,
                      kinds[type(BY_CODE[code])], tuple(cases.get(code, ())),
                      _short(RULE_OF[code].__module__), _short(_home(BY_CODE[code])))
            for code in CATALOGUE]


def _home(entry: Repair | Refusal | ReportOnly) -> str:
    return entry.fn.__module__ if isinstance(entry, Repair) else entry.home


def _short(module: str) -> str:
    return module.removeprefix("alembic_repair.")
