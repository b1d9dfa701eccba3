"""diagnose: State -> Diagnosis, by running every rule. Pure: reads nothing, writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..engine.endpoint import where
from ..engine.state.read import State
from ..errors import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEMS,
    DatabaseUnreachable,
    LockTimeout,
    LoginRefused,
    PrivilegeMissing,
)
from ..masking import redact
from .findings import Finding, sort_key
from .rules import RULES
from .rules.schema import equal_revisions

#: Findings that mean the configuration itself is broken. They are problems in the user's
#: project, so doctor exits 1 on them like on any other; only one caused by the command line
#: itself (`Diagnosis.usage_error`: an unusable --url or --models) is a usage error (exit 2).
CONFIG_CODES = frozenset({"AR101", "AR102", "AR103", "AR104", "AR105", "AR106", "AR107",
                          "AR114"})


@dataclass(frozen=True)
class Diagnosis:
    """The findings, worst first, and the state they were drawn from."""

    findings: tuple[Finding, ...]
    state: State = field(compare=False, repr=False)

    @property
    def healthy(self) -> bool:
        return self.state.db_error is None and not any(
            f.severity in ("error", "warning") for f in self.findings)

    @property
    def exit_code(self) -> int:
        if self.state.db_error is not None:  # 3 unreachable or refused, 2 no driver, ...
            return self.state.db_error.exit_code
        if self.usage_error:
            return EXIT_CONFIG
        return EXIT_OK if self.healthy else EXIT_PROBLEMS

    @property
    def usage_error(self) -> bool:
        """An error the command line made (an unusable --url, a --models naming nothing), not
        a problem of the project (those are findings: exit 1)."""
        state = self.state
        bad_url = state.project.url_source == "--url" and any(
            f.code == "AR107" and f.severity == "error" for f in self.findings)
        return bad_url or str(state.models_error or "").startswith("--models ")

    def summary(self) -> dict[str, Any]:
        """The `state` object of the JSON contract: what was read, in short."""
        state = self.state
        replay = state.replay
        equal = equal_revisions(state)
        return {
            "project": str(state.project.root),
            "url": state.project.masked_url,
            "url_source": state.project.url_source,
            "database": ("unreachable" if isinstance(state.db_error, DatabaseUnreachable)
                         else "unreadable" if state.db_error else "missing"
                         if state.database_missing else "read"),
            "unread": unread(state),
            "revision_files": len(state.scripts),
            "script_heads": list(state.script_heads),
            "recorded": list(state.versions.rows) if state.versions else None,
            "tables": sorted(state.live.tables) if state.live is not None else None,
            "schema_fingerprint": state.live.fingerprint if state.live is not None else None,
            "schema_equals_revisions": equal,
            "pending": None if state.pending is None else [
                r.revision for r in state.pending.revisions],
            "replay": None if replay is None else {
                "revisions": len(replay.order), "failed_at": replay.failed_at,
                "cached": replay.cached},
        }


def one_line(err: Exception, url: str) -> str:
    """The error's one line, the password masked even if a message let it through."""
    lines = str(err).splitlines()
    return redact(lines[0], url) if lines else type(err).__name__


def _kind(err: Exception) -> str:
    for cls, kind in ((LoginRefused, "login_refused"), (PrivilegeMissing, "privilege_missing"),
                      (LockTimeout, "locked"), (DatabaseUnreachable, "unreachable")):
        if isinstance(err, cls):
            return kind
    return "unusable"  # not an SQLite database, no driver for the URL


def unread(state: State) -> list[dict[str, Any]]:
    """What could not be read and why (`state.unread` of the JSON; empty: everything was):
    a database doctor never read must not look like a checked one."""
    err = state.db_error
    if err is None:
        return []
    return [{"what": "database", "where": where(state.project.url.parsed), "kind": _kind(err),
             "error": one_line(err, state.project.url),
             "exit_code": err.exit_code}]


def diagnose(state: State) -> Diagnosis:
    findings: list[Finding] = []
    for rule in RULES:
        findings.extend(rule(state))
    return Diagnosis(tuple(sorted(findings, key=sort_key)), state)
