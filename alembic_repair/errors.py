"""Errors that mean "cannot proceed", each carrying the process exit code the CLI uses.

Damage in the user's project is *data* (reported, repaired); these exceptions are for the few
conditions where going on would be guessing. Every message is one readable line that names the
file/line or host involved and ends with what to do. None of them ever contains a password.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_CONFIG",
    "EXIT_DATABASE",
    "EXIT_REFUSED",
    "EXIT_DRY_RUN",
    "AlembicRepairError",
    "ConfigError",
    "IniError",
    "PyprojectError",
    "UrlError",
    "DatabaseUnreachable",
    "LoginRefused",
    "PrivilegeMissing",
    "LockTimeout",
    "MigrationFailed",
    "NeedsRepair",
    "RefusedUnsafe",
    "DryRun",
    "BackupCorrupt",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_REFUSED = 4
EXIT_DRY_RUN = 5


class AlembicRepairError(Exception):
    """Base class: `str(err)` is the one-line message, `exit_code` the CLI's exit status."""

    exit_code: int = EXIT_CONFIG

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(AlembicRepairError):
    """alembic.ini, script_location, env.py, the URL or the models cannot be used as they are."""

    exit_code = EXIT_CONFIG


class IniError(ConfigError):
    """alembic.ini cannot be read: it does not parse, or lacks [alembic] / script_location."""


class UrlError(ConfigError):
    """The database URL cannot be used as written (placeholder, bad '%', not a URL)."""


class PyprojectError(ConfigError):
    """pyproject.toml's ``[tool.alembic_repair]`` cannot be read or holds a bad value."""


class DatabaseUnreachable(AlembicRepairError):
    """The database server does not answer at the resolved host and port (or file)."""

    exit_code = EXIT_DATABASE


class LoginRefused(DatabaseUnreachable):
    """The server answered but refused the user or password."""


class PrivilegeMissing(DatabaseUnreachable):
    """The server refused a statement: the user lacks a privilege (the message names the
    GRANT that would allow it). Raised before anything changed."""


class LockTimeout(DatabaseUnreachable):
    """Another alembic-repair run held the migration lock for longer than we were told to wait."""


class MigrationFailed(AlembicRepairError):
    """A revision failed while upgrading; the message names the revision file and the error."""

    exit_code = EXIT_PROBLEMS


class NeedsRepair(AlembicRepairError):
    """The project is in a state a routine command must not guess its way out of."""

    exit_code = EXIT_PROBLEMS


class RefusedUnsafe(AlembicRepairError):
    """A destructive action was asked for without the confirmation it needs."""

    exit_code = EXIT_REFUSED


class DryRun(RefusedUnsafe):
    """Only `--yes` was missing: a dry run, whose plan the CLI prints on stdout (exit 5, not 4,
    so a script tells "here is the plan" from "refused"). `action` says what would be done."""

    exit_code = EXIT_DRY_RUN

    def __init__(self, action: str) -> None:
        super().__init__(f"{action}; nothing changed; pass --yes to do it")
        self.action = action


class BackupCorrupt(AlembicRepairError):
    """A backup's file or data does not match its manifest (the message names the file)."""

    exit_code = EXIT_PROBLEMS
