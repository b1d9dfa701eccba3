"""Layer 5, the models against the database (AR403, AR406). Rules: `diagnose/rules/schema.py`."""

from __future__ import annotations

from ...diagnose.findings import Finding
from ...diagnose.subjects import Table
from ..registry import MODELS, Draft, repairs
from ..steps import Autogenerate
from .setup import hide


@repairs("AR406", layer=MODELS, each=False)
def keep_orphans(draft: Draft, findings: list[Finding]) -> None:
    """A table nobody owns is kept out of autogenerate: no drop, no model guessed."""
    orphans = tuple(sorted({f.subject.name for f in findings if isinstance(f.subject, Table)}))
    if orphans:
        hide(draft, findings[0], orphans, "no revision and no model creates them")


@repairs("AR403", layer=MODELS, each=False)
def autogenerate(draft: Draft, findings: list[Finding]) -> None:
    """A revision for the drift, written only when the models are the project's own code: an
    installed package's models (optuna's) drift against that package's history, which a
    revision here would fork (the head of a history the user does not own would move)."""
    owner = draft.state.models_owner
    if owner is not None:
        for finding in findings:
            draft.refuse(finding, owner.advice)
        return
    draft.add("AR403", Autogenerate())
