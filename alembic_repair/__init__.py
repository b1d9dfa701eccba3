"""alembic_repair: diagnose and repair broken Alembic migration setups without losing data.

Start here. `api.py` is the facade: one short function per command, each resolving the
`Project` and handing it to the folder that does the work. The folders follow the pipeline,
and each imports only from the ones before it (tests/test_architecture.py):

- `engine/`: where things are and how to talk to them. `Project` (project.py: alembic.ini,
  scripts, models, the URL parsed once in url.py), connecting (database.py, endpoint.py: the host
  the driver really uses, which the remote guard judges), Alembic on our connection
  (migrations.py), the models' metadata (models.py), the setup files (scaffold.py, env_filter*),
  and `state/`: the four sources of truth read into a `State` (revision files with ast, the one
  revision graph in graph.py, alembic_version through recorder.py, the live schema, the models).
- `data/`: the rows. Verified backups and restore (backups/), the trash of soft drops
  (trash.py), the guards every change passes (guards.py).
- `rewrite/`: libcst transforms of revision files (safe drops, unique columns, hidden tables).
- `diagnose/`: the findings catalogue (findings.py: every code's words), what each finding is
  about (subjects.py), the rules (rules/, each declaring its codes), `Diagnosis` (diagnosis.py).
- `repair/`: what resolves each code (registry.py, repairs/: one module per layer), the plan
  (plan.py walks the registry), the steps (steps/), the one runner (runner.py: journal, backup,
  steps, row check; a killed run is finished or rolled back), and the commands built on it:
  fix.py, reset.py, squash.py, drop.py, bootstrap.py, history/ (recreating lost revisions).
- `cli/`: the Typer app (app.py) and all printing (report.py); entry.py is the console script.

Public names (below) are imported on first use: the command line's quick path must not pay for
Alembic when it does not need it. Errors (errors.py) carry the CLI's exit code; `str(err)` is the
one-line message.
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
        DryRun,
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
    "RefusedUnsafe": "errors", "DryRun": "errors",
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
    "DryRun",
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

