"""alembic_repair: diagnose and repair broken Alembic migration setups without losing data.

Start here:

- `Project` (project.py) finds alembic.ini, the scripts folder, the models and the database URL.
- `bootstrap` (api.py) is the container start-up flow in one safe, idempotent, locked call.
- `doctor` (api.py) reads the four sources of truth (state/: revision files, alembic_version,
  live schema, models), replays the history on a scratch database (replay.py), and runs the
  rules (rules/, codes in findings.py) into a `Diagnosis` (diagnose.py).
- `autogenerate` / `upgrade` (api.py) are Alembic's commands with our guarantees: no empty
  revision, no silent drop, one run at a time.
- `write_alembic_ini` / `write_env_py` / `write_script_template` (scaffold.py) regenerate the
  setup files, keeping any file the user edited.
- `trash_drop` / `trash_list` / `trash_restore` / `trash_purge` (api.py, trash.py): soft drop,
  a table renamed into ``_ar_trash_*`` (O(1)) and renamed back on demand.
- `backup` / `restore` (api.py, backups.py) and `verify` (backups.py): verified logical backups
  with a checksummed manifest; restore places what fits and reports the rest.
- `reset` / `plan_reset` (api.py, safe_reset.py): the safe reset (backup, drop, regenerate the
  setup and one baseline, upgrade, restore, verify), journalled (journal.py) so a killed run
  is finished by the next one.
- `fix` / `plan_fix` (api.py): doctor's findings -> a `Plan` of steps (plan.py, steps.py),
  applied with a backup, a journal and a row check (apply.py), layer after layer.
- `squash` / `plan_squash` (api.py, squashing.py): collapse the history up to a revision into one
  baseline revision, proved equal (fingerprints) on scratch databases, restamped, journalled.
- `drop` (api.py, rewrite/): a revision that drops tables/columns so its downgrade() brings
  them back (soft: into the trash; hard: after a verified backup); libcst rewrites keep the
  user's file (rewrite/engine.py), and `rewrite_unique_columns` turns a unique NOT NULL
  add_column on a table with rows into add nullable, backfill, then constrain.
- Errors (errors.py) carry the CLI's exit code; `str(err)` is the one-line message.

The CLI (cli.py) is a thin layer over these functions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__ as __version__  # the base layer holds it

if TYPE_CHECKING:
    from .api import (
        autogenerate,
        backup,
        bootstrap,
        doctor,
        drop,
        fix,
        plan_fix,
        plan_reset,
        plan_squash,
        reset,
        restore,
        squash,
        trash_drop,
        trash_list,
        trash_purge,
        trash_restore,
        upgrade,
    )
    from .data.backups import Manifest, RestoreReport, verify
    from .data.trash import TrashEntry
    from .diagnose.diagnosis import Diagnosis
    from .diagnose.findings import Finding
    from .engine.project import Project
    from .engine.scaffold import FileChange, write_alembic_ini, write_env_py, write_script_template
    from .errors import (
        AlembicRepairError,
        BackupCorrupt,
        ConfigError,
        DatabaseUnreachable,
        LockTimeout,
        LoginRefused,
        MigrationFailed,
        NeedsRepair,
        RefusedUnsafe,
    )
    from .masking import mask_url
    from .repair.bootstrap import Action, BootstrapResult
    from .repair.drop import DropResult
    from .repair.fix import FixResult
    from .repair.plan import Plan
    from .repair.reset import ResetPlan, ResetResult
    from .repair.squash import SquashPlan, SquashResult

#: Where each public name lives. Imported on first use: the command line's quick path must not
#: pay for Alembic when it does not need it.
_HOMES = {
    "Action": "repair.bootstrap", "BootstrapResult": "repair.bootstrap",
    "autogenerate": "api", "bootstrap": "api",
    "doctor": "api", "upgrade": "api", "Diagnosis": "diagnose.diagnosis",
    "Finding": "diagnose.findings",
    "mask_url": "masking", "Project": "engine.project", "FileChange": "engine.scaffold",
    "write_alembic_ini": "engine.scaffold", "write_env_py": "engine.scaffold",
    "write_script_template": "engine.scaffold", "AlembicRepairError": "errors",
    "ConfigError": "errors", "DatabaseUnreachable": "errors", "LockTimeout": "errors",
    "LoginRefused": "errors", "MigrationFailed": "errors", "NeedsRepair": "errors",
    "RefusedUnsafe": "errors",
    "trash_drop": "api", "trash_list": "api", "trash_restore": "api", "trash_purge": "api",
    "TrashEntry": "data.trash",
    "backup": "api", "restore": "api", "Manifest": "data.backups", "RestoreReport": "data.backups",
    "verify": "data.backups", "BackupCorrupt": "errors",
    "drop": "api", "DropResult": "repair.drop",
    "fix": "api", "plan_fix": "api", "FixResult": "repair.fix", "Plan": "repair.plan",
    "reset": "api", "plan_reset": "api", "ResetPlan": "repair.reset", "ResetResult": "repair.reset",
    "squash": "api", "plan_squash": "api", "SquashPlan": "repair.squash",
    "SquashResult": "repair.squash",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'alembic_repair' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Action",
    "AlembicRepairError",
    "BackupCorrupt",
    "BootstrapResult",
    "ConfigError",
    "Diagnosis",
    "DropResult",
    "Finding",
    "DatabaseUnreachable",
    "FileChange",
    "FixResult",
    "LockTimeout",
    "LoginRefused",
    "Manifest",
    "MigrationFailed",
    "NeedsRepair",
    "Plan",
    "Project",
    "RefusedUnsafe",
    "ResetPlan",
    "ResetResult",
    "RestoreReport",
    "SquashPlan",
    "SquashResult",
    "TrashEntry",
    "autogenerate",
    "backup",
    "bootstrap",
    "doctor",
    "drop",
    "fix",
    "mask_url",
    "plan_fix",
    "plan_reset",
    "plan_squash",
    "reset",
    "restore",
    "squash",
    "trash_drop",
    "trash_list",
    "trash_purge",
    "trash_restore",
    "upgrade",
    "verify",
    "write_alembic_ini",
    "write_env_py",
    "write_script_template",
]

