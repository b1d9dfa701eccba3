"""The plugin's options, read once from pytest's ini settings and command line.

A frozen value handed to every ready test: the checks never look at pytest's config, so they
stay plain functions a test can call directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The ready tests, in the order they run (each one is an item ``alembic_repair::<name>``).
READY_TESTS = ("single_head", "builds", "doctor", "lint", "data_survives", "up_down")

#: name, help, default (ini values are strings; `ENABLE` is a bool)
ENABLE = "alembic_repair"
INI = (
    ("alembic_repair_project", "folder holding alembic.ini (default: pytest's rootdir)", ""),
    ("alembic_repair_url", "MySQL/MariaDB server URL for scratch databases, or `mariadbd` to "
     "start a throwaway server (default: an SQLite file in a temporary folder)", ""),
    ("alembic_repair_tests", "which ready tests run, comma separated (default: all of "
     + ", ".join(READY_TESTS) + ")", ""),
    ("alembic_repair_skip_codes", "finding codes the doctor and lint tests ignore "
     "(comma separated)", ""),
    ("alembic_repair_released", "the revision already released (id or `base`; default: the "
     "head's down_revision, so the newest revision is the one under review)", ""),
    ("alembic_repair_examples", "hypothesis examples for the data-survival test", "3"),
    ("alembic_repair_shrink_runs", "scratch databases the data-survival test may spend "
     "shrinking a failing example to a smaller one (0: report the first failure as found)",
     "3"),
    ("alembic_repair_models", "models as module:attr (default: what the project declares)", ""),
)
URL_OPTION = "--alembic-repair-url"
THROWAWAY = "mariadbd"


def _words(value: str) -> tuple[str, ...]:
    return tuple(w for w in value.replace(",", " ").split() if w)


@dataclass(frozen=True)
class Settings:
    """What the ready tests need to know; `problem` is a bad option, said by every test."""

    project: Path
    url: str = ""  # "" = SQLite; THROWAWAY = a private mariadbd; else a server URL
    tests: tuple[str, ...] = READY_TESTS
    skip_codes: frozenset[str] = frozenset()
    released: str = ""
    examples: int = 3
    shrink_runs: int = 3
    models: str | None = None
    problem: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        def ini(name: str) -> str:
            return str(config.getini(name) or "").strip()

        root = Path(config.rootpath)
        project = root / ini("alembic_repair_project") if ini("alembic_repair_project") else root
        problems: list[str] = []
        tests = _words(ini("alembic_repair_tests")) or READY_TESTS
        unknown = [t for t in tests if t not in READY_TESTS]
        if unknown:
            problems.append(f"alembic_repair_tests names {', '.join(unknown)}, which is not a "
                            f"ready test; use some of {', '.join(READY_TESTS)}")
            tests = tuple(t for t in tests if t in READY_TESTS)
        examples = _whole(ini, "alembic_repair_examples", 3, 1, problems)
        shrink_runs = _whole(ini, "alembic_repair_shrink_runs", 3, 0, problems)
        url = config.getoption("alembic_repair_url", None) or ini("alembic_repair_url")
        return cls(project=project.resolve(), url=url.strip(), tests=tests,
                   skip_codes=frozenset(c.upper() for c in _words(
                       ini("alembic_repair_skip_codes"))),
                   released=ini("alembic_repair_released"), examples=examples,
                   shrink_runs=shrink_runs,
                   models=ini("alembic_repair_models") or None,
                   problem="; ".join(problems) or None)


def _whole(ini: Any, name: str, default: int, least: int, problems: list[str]) -> int:
    """The whole-number option `name` (`default` when unset); a bad value is said in
    `problems` and the default used."""
    text = ini(name)
    try:
        value = int(text or default)
    except ValueError:
        value = least - 1
    if value < least:
        problems.append(f"{name} = {text!r} is not a whole number of {least} or more")
        return default
    return value
