"""What a ready test reports: failures (one line and its fix each), or why it was skipped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """One thing wrong: `line` says what and where, `fix` what to do about it."""

    line: str
    fix: str = ""

    def text(self) -> str:
        return f"{self.line}\n  fix: {self.fix}" if self.fix else self.line


class Unusable(Exception):  # noqa: N818  (a reason, not a bug: reported as one failure line)
    """The ready test cannot run (no scratch database, a bad option): one line, no traceback."""


class Skipped(Exception):  # noqa: N818
    """The ready test does not apply to this history (a revision without a downgrade)."""
