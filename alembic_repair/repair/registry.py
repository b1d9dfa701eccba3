"""The repair registry: for every finding code, the layer it belongs to and what resolves it.

A code has exactly one entry, declared beside the code that acts on it (`repair/repairs/`):
- `@repairs("AR302", layer=...)`: a function that plans the steps (or, when the state at hand
  makes it unsafe, refuses with the reason);
- `refuses("AR201", layer=..., why=...)`: no rule can repair it safely; the layer is blocked
  and the reason is what the user reads;
- `reports("AR111", why=...)`: only reported; `fix` plans nothing for it and lists the
  finding's own fix text (no layer, so it blocks nothing).

`plan.make_plan` walks the layers in `LAYERS` order; `Draft` is what a repair writes into.
This module imports no step and no Alembic: the registry's shape is readable on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..diagnose.findings import CATALOGUE, Finding

if TYPE_CHECKING:
    from ..engine.state.read import State
    from .steps import Step

SETUP = "setup files"
GRAPH = "revision files"
PENDING = "pending revisions"
VERSIONS = "database and history"
MODELS = "models and database"
VALUES = "values"
#: The order repairs are planned in: each layer is judged only once the ones below are sound.
LAYERS = (SETUP, GRAPH, PENDING, VERSIONS, MODELS, VALUES)


@dataclass
class Draft:
    """The plan of one layer while its repairs write it (`plan.Plan` is the frozen result)."""

    state: State
    models: str | None = None  # --models
    only: frozenset[str] = frozenset()  # the codes --only named, upper case
    steps: list[Step] = field(default_factory=list)
    addressed: list[str] = field(default_factory=list)
    unrepairable: list[tuple[Finding, str]] = field(default_factory=list)
    stopped: bool = False  # a repair refused in a way that leaves the layer's rest unjudgeable
    #: what alembic_version will record once the steps so far ran (None: what it records now)
    heads: tuple[str, ...] | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # values repairs of a layer share

    def add(self, code: str, *steps: Step) -> None:
        self.steps.extend(s for s in steps if s not in self.steps)
        if code not in self.addressed:
            self.addressed.append(code)

    def refuse(self, finding: Finding, why: str) -> None:
        self.unrepairable.append((finding, why))

    def stop(self) -> None:
        self.stopped = True

    @property
    def applied_is_known(self) -> bool:
        """Whether "not applied" is evidence: alembic_version records revisions the files
        define, or the database holds no table at all (nothing was ever applied). When its rows
        are missing or unknown on a database with tables, every revision only *looks* pending:
        no revision file is moved or rewritten on that (the history's head could be moved)."""
        state = self.state
        versions = state.versions
        known = {s.revision for s in state.scripts if s.revision}
        if versions is not None and versions.exists and versions.rows:
            return set(versions.rows) <= known
        return state.live is not None and not state.live.tables

    @property
    def recorded(self) -> tuple[str, ...]:
        if self.heads is not None:
            return self.heads
        versions = self.state.versions
        return versions.heads if versions is not None else ()


Why = str | Callable[[Draft, Finding], str]


@dataclass(frozen=True)
class Repair:
    """Plans the steps for its codes' findings. `each`: called once per finding, in doctor's
    order (else once per layer with all of them, after the per-finding ones, in registration
    order); `always`: called whenever its layer is planned, even with none of its findings."""

    codes: tuple[str, ...]
    layer: str
    fn: Callable[..., None]
    each: bool = True
    always: bool = False

    def apply(self, draft: Draft, findings: Sequence[Finding]) -> None:
        if self.each:
            for finding in findings:
                self.fn(draft, finding)
        else:
            self.fn(draft, list(findings))


@dataclass(frozen=True)
class Refusal:
    """A code no rule repairs safely: its findings are refused with `why` (text, or a function
    of the draft and the finding when the reason names them)."""

    codes: tuple[str, ...]
    layer: str
    why: Why
    each: bool = True
    always: bool = False
    home: str = ""  # the module that declared it

    def reason(self, draft: Draft, finding: Finding) -> str:
        return self.why if isinstance(self.why, str) else self.why(draft, finding)

    def apply(self, draft: Draft, findings: Sequence[Finding]) -> None:
        for finding in findings:
            draft.refuse(finding, self.reason(draft, finding))


@dataclass(frozen=True)
class ReportOnly:
    """A code fix plans nothing for: the user reads the finding's own fix."""

    codes: tuple[str, ...]
    why: str
    layer: None = None
    home: str = ""  # the module that declared it


Entry = Repair | Refusal | ReportOnly
#: every entry, in registration order (the order group repairs run in within a layer)
ENTRIES: list[Entry] = []
#: code -> its one entry
BY_CODE: dict[str, Entry] = {}


def _register(entry: Entry) -> None:
    assert entry.layer is None or entry.layer in LAYERS, entry.layer
    for code in entry.codes:
        assert code in CATALOGUE, code
        assert code not in BY_CODE, f"{code} is registered twice"
        BY_CODE[code] = entry
    ENTRIES.append(entry)


def repairs(*codes: str, layer: str, each: bool = True, always: bool = False
            ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the function planning the repair of `codes` (see `Repair`)."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        _register(Repair(codes, layer, fn, each, always))
        return fn

    return register


def refuses(*codes: str, layer: str, why: Why, each: bool = True) -> None:
    """Declare that `codes` are never repaired, and why (see `Refusal`)."""
    _register(Refusal(codes, layer, why, each, home=_caller()))


def reports(*codes: str, why: str) -> None:
    """Declare that `codes` are only reported (see `ReportOnly`)."""
    _register(ReportOnly(codes, why, home=_caller()))


def _caller() -> str:
    """The module declaring a refusal or a report: what the design's table of codes names."""
    return str(sys._getframe(2).f_globals.get("__name__", ""))


def in_layer(layer: str) -> list[Repair | Refusal]:
    return [e for e in ENTRIES if isinstance(e, (Repair, Refusal)) and e.layer == layer]
