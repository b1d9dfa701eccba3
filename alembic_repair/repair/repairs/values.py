"""Layer 6, on request only: values that do not fit their column's type (AR407, SQLite).
Rule: `diagnose/rules/schema.py`; the values come from `engine/state/junk.py`."""

from __future__ import annotations

from ...diagnose.findings import Finding
from ...engine.state.junk import Junk
from ..registry import VALUES, Draft, repairs
from ..steps import ClearJunk


@repairs("AR407", layer=VALUES)
def clear_values(draft: Draft, finding: Finding) -> None:
    if not ({"AR407", "AR4XX"} & draft.only):
        draft.refuse(finding, "clearing values is done only when asked: `alembic-repair fix "
                     "--only AR407 --yes` sets them to NULL (kept in the backup)")
        return
    junk = finding.facts
    if not isinstance(junk, Junk):
        return
    live = draft.state.live
    nullable = next((f[4] for f in (live.facts if live else ())
                     if f[:3] == ("column", junk.table, junk.column)), True)
    if not nullable:
        draft.refuse(finding, f"{junk.table}.{junk.column} is NOT NULL, so its values cannot "
                     "be cleared: correct them by hand (doctor shows one)")
        return
    draft.add("AR407", ClearJunk(junk.table, junk.column, junk.declared, junk.count))
