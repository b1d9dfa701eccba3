"""Repair steps (see `base` for what a step is), one module per job:

- `base`: `Context`, `Step`, the registry (`register`, `from_dict`), keeping files aside;
- `versions`: what alembic_version records (`Stamp`, `AdoptSchema`);
- `schema`: running revisions (`Upgrade`, `Autogenerate`, `CompleteRevision`);
- `complete`: the column a half-applied revision committed, filled (`FillCommitted`);
- `revisions`: revision files (`MoveToBackup`, `WriteMerge`, `RewritePending`,
  `RemoveHiddenDrops`);
- `setup_files`: alembic.ini, env.py, script.py.mako, versions/ (`WriteSetupFile`,
  `EnsureVersionsDir`, `EditIni`, `SetEnvOption`, `HideFromAutogenerate`);
- `values`: row values (`ClearJunk`).

Importing the package registers every step kind, so `from_dict` can read any journal back.
`version_rows` / `write_version_rows` (engine/state/recorder.py) are re-exported for callers
that read or stamp alembic_version around the steps.
"""

from __future__ import annotations

from ...engine.state.recorder import version_rows, write_version_rows
from .base import FILES_DIR, STEP_KINDS, Context, Say, Step, from_dict, move, register
from .complete import FillCommitted, fills_for
from .revisions import MoveToBackup, RemoveHiddenDrops, RewritePending, WriteMerge
from .schema import Autogenerate, CompleteRevision, Upgrade
from .setup_files import (
    EditIni,
    EnsureVersionsDir,
    HideFromAutogenerate,
    SetEnvOption,
    WriteSetupFile,
    double_percent,
)
from .values import ClearJunk
from .versions import AdoptSchema, Stamp, adoption_ops

__all__ = [
    "FILES_DIR", "STEP_KINDS", "AdoptSchema", "Autogenerate", "ClearJunk", "CompleteRevision",
    "Context", "EditIni", "EnsureVersionsDir", "FillCommitted", "HideFromAutogenerate",
    "MoveToBackup",
    "RemoveHiddenDrops", "RewritePending", "Say", "SetEnvOption", "Stamp", "Step", "Upgrade",
    "WriteMerge", "WriteSetupFile", "move", "adoption_ops", "double_percent", "fills_for",
    "from_dict",
    "register", "version_rows", "write_version_rows",
]
