"""Every ``--help`` renders cleanly at 80 columns (issue 16): exit 0, no line over 80 columns,
no line break in the middle of a sentence (a docstring's own wrapping showing through), and
each command listed by its parent on one line (its one-line summary).

Rendered in-process with Typer's CliRunner (cheap), and once through a real process, whose
terminal width comes from COLUMNS as a user's would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from alembic_repair.cli.app import app

WIDTH = 80
PROG = "alembic-repair"


def _paths() -> list[tuple[str, ...]]:
    """Every command and subcommand of the app, as the words that name it."""
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:  # typer's own (vendored) click
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():  # a group's subcommands
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


PATHS = _paths()


def _render(path: tuple[str, ...]) -> str:
    run = CliRunner().invoke(app, [*path, "--help"], prog_name=PROG,
                             env={"COLUMNS": str(WIDTH), "TERM": "dumb"})
    assert run.exit_code == 0, (path, run.output)
    return run.output


def _description(text: str) -> list[list[str]]:
    """The help's prose (after the Usage line, before the first panel), as paragraphs."""
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    paragraphs: list[list[str]] = [[]]
    for line in lines[start:]:
        if line.lstrip().startswith("╭"):
            break
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def _stray_breaks(paragraphs: list[list[str]]) -> list[str]:
    """Line breaks the terminal did not make: the next line's first word would have fit."""
    stray = []
    for paragraph in paragraphs:
        for line, following in zip(paragraph, paragraph[1:], strict=False):
            word = following.split()[0]
            if len(line) + 1 + len(word) < WIDTH:
                stray.append(f"{line.strip()!r} / {following.strip()!r}")
    return stray


def _listed_rows(text: str) -> dict[str, list[str]]:
    """The Commands panel: each command's name and the lines its summary takes."""
    rows: dict[str, list[str]] = {}
    inside, name = False, ""
    for line in text.splitlines():
        if line.startswith("╭─ Commands"):
            inside = True
        elif inside and line.startswith("╰"):
            break
        elif inside:
            body = line.strip("│").rstrip()
            if body[1:2].strip():  # "│ name  summary": a new row
                name, summary = body.split(maxsplit=1)
                rows[name] = [summary]
            else:
                rows[name].append(body.strip())
    return rows


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "alembic-repair")
def test_help_renders_cleanly_at_80_columns(path: tuple[str, ...]) -> None:
    text = _render(path)
    too_long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_long, too_long
    paragraphs = _description(text)
    assert paragraphs and paragraphs[0][0].strip(), text  # it says what the command does
    assert not _stray_breaks(paragraphs), (_stray_breaks(paragraphs), text)


@pytest.mark.parametrize("path", [p for p in PATHS if p == () or p == ("trash",)],
                         ids=lambda p: " ".join(p) or "alembic-repair")
def test_every_command_is_listed_with_a_one_line_summary(path: tuple[str, ...]) -> None:
    rows = _listed_rows(_render(path))
    expected = {p[-1] for p in PATHS if len(p) == len(path) + 1 and p[:len(path)] == path}
    assert set(rows) == expected, rows
    wrapped = {name: lines for name, lines in rows.items() if len(lines) != 1}
    assert not wrapped, wrapped
    assert all(lines[0].endswith(".") for lines in rows.values()), rows


def test_the_real_command_wraps_at_the_terminal_width() -> None:
    """The console script's own process: COLUMNS=80 is honoured, the fix help reads whole."""
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([sys.executable, "-m", "alembic_repair", "fix", "--help"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) == WIDTH, done.stdout  # the panels fill the width
    assert not _stray_breaks(_description(done.stdout)), done.stdout
    assert "changes nothing (exit 5 when there is something to do)" in " ".join(
        line.strip() for line in lines)
