"""The docs site (mkdocs.yml) builds with `mkdocs build --strict`, and has a page for every
command and every finding code. This is the docs check of CI: the site is built once per test
session (shared by the xdist workers through a lock), in a few seconds."""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from alembic_repair.cli.app import app
from alembic_repair.diagnose.findings import CATALOGUE

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
BUDGET_SECONDS = 90  # about 4 s alone; generous for a loaded CI machine


@dataclass(frozen=True)
class Site:
    folder: Path
    returncode: int
    output: str
    seconds: float


def _build(folder: Path) -> Site:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2.0
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(folder),
         "-f", str(REPO / "mkdocs.yml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return Site(folder, done.returncode, done.stdout + done.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """One build per session: the first worker to get here builds, the others read its result."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder all workers of this session share
    folder = shared / "docs-site"
    with open(shared / "docs-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = shared / "docs-site.result"
        if result.exists():
            code, seconds, output = result.read_text().split("\n", 2)
            return Site(folder, int(code), output, float(seconds))
        built = _build(folder)
        result.write_text(f"{built.returncode}\n{built.seconds:.2f}\n{built.output}")
        return built


def _commands() -> Iterator[tuple[str, ...]]:
    """Every command and subcommand of the Typer app, as its words after the program name."""
    root = typer.main.get_command(app)

    def walk(group: Any, ctx: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if command.hidden:
                continue
            yield (*path, name)
            if hasattr(command, "list_commands"):
                yield from walk(command, typer.Context(command, info_name=name, parent=ctx),
                                (*path, name))

    yield from walk(root, typer.Context(root, info_name="alembic-repair"), ())


def _text(page: Path) -> str:
    """The article of a built page as plain text (tags dropped, entities decoded)."""
    import html

    body = page.read_text(encoding="utf-8")
    article = body[body.find("<article"):body.find("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", "", article))


def test_site_builds_strictly(site: Site, record_property: Any) -> None:
    record_property("docs_build_seconds", round(site.seconds, 2))
    assert site.returncode == 0, site.output
    warnings = [line for line in site.output.splitlines() if "WARNING" in line]
    assert warnings == []
    assert (site.folder / "index.html").is_file()
    assert site.seconds < BUDGET_SECONDS, f"the docs build took {site.seconds:.1f} s"


def test_every_command_has_a_page_with_its_generated_options(site: Site) -> None:
    """Each page carries the usage and option names read from the app at build time."""
    commands = list(_commands())
    assert ("trash", "purge") in commands and ("doctor",) in commands
    root = typer.main.get_command(app)
    for path in commands:
        page = site.folder / "commands" / "-".join(path) / "index.html"
        assert page.is_file(), f"`alembic-repair {' '.join(path)}` has no page"
        text = _text(page)
        assert f"alembic-repair [GLOBAL OPTIONS] {' '.join(path)}" in text, path
        command, ctx = root, typer.Context(root, info_name="alembic-repair")
        for word in path:
            command = command.get_command(ctx, word)
            ctx = typer.Context(command, info_name=word, parent=ctx)
        for param in command.params:
            if param.param_type_name == "option":
                assert param.opts[-1] in text, (path, param.opts)
        assert "Exit codes" in text, path


def test_every_finding_code_has_a_page_in_the_nav(site: Site) -> None:
    home = (site.folder / "index.html").read_text(encoding="utf-8")
    for code, entry in CATALOGUE.items():
        page = site.folder / "findings" / code / "index.html"
        assert page.is_file(), f"{code} has no page"
        assert f"{code}: {entry.title}" in _text(page)
        assert f'href="findings/{code}/"' in home, f"{code} is not in the nav"


def test_every_public_name_is_documented(site: Site) -> None:
    """docs/api.md renders every name `alembic_repair` exports, where it lives."""
    import alembic_repair

    page = (site.folder / "api" / "index.html").read_text(encoding="utf-8")
    homes = alembic_repair._HOMES
    assert set(alembic_repair.__all__) <= set(homes) and "doctor" in homes
    missing = [name for name in alembic_repair.__all__
               if f'id="alembic_repair.{homes[name]}.{name}"' not in page]
    assert missing == [], "add them to docs/api.md"


def test_the_plugin_page_lists_every_option(site: Site) -> None:
    """The options on the pytest plugin's page are generated from its settings."""
    from alembic_repair.pytest_plugin import settings

    text = _text(site.folder / "guide" / "pytest-plugin" / "index.html")
    assert "Proving migrations in CI: the pytest plugin" in text
    for name, _help, _default in settings.INI:
        assert f"{name}:" in text, name
    assert settings.URL_OPTION in text


PUBLIC_INDEX_INSTALL = re.compile(
    r"pip3?\s+install\s+(?:-\S+\s+)*alembic[-_]repair(?:\[[^\]]*\])?(?=[\s=<>~!;`'\"]|$)", re.I)


def test_no_page_installs_from_a_public_index() -> None:
    """The package is on no public index: `pip install alembic-repair` would fail, or worse,
    install someone else's package."""
    pages = [REPO / "README.md", *DOCS.rglob("*.md"), *(REPO / "examples").rglob("*.md")]
    assert len(pages) > 20
    offending = [f"{page.relative_to(REPO)}:{n}: {line.strip()}"
                 for page in pages
                 for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
                 if PUBLIC_INDEX_INSTALL.search(line)]
    assert offending == []
    assert PUBLIC_INDEX_INSTALL.search("pip install -U alembic-repair")  # the check can fail
    assert not PUBLIC_INDEX_INSTALL.search("pip install dist/alembic_repair-0.1.0.whl")


def test_a_command_without_a_page_fails_the_strict_build(caplog: Any) -> None:
    """The hook warns (so `--strict` fails) when a command has no page: no build needed."""
    from mkdocs.structure.files import Files

    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.alembic_repair"):
        hooks.on_files(Files([]), config=None)
    assert "`alembic-repair trash purge` has no page commands/trash-purge.md" in caplog.text


def test_the_exit_code_table_is_the_contract() -> None:
    """docs/commands/index.md lists every exit code errors.py defines, with its number, and
    the dry run's 5 is not described as a refusal."""
    from alembic_repair import errors

    table = (DOCS / "commands" / "index.md").read_text()
    rows = dict(re.findall(r"^\| `(\d+)` \| (.+) \|$", table, flags=re.MULTILINE))
    codes = {getattr(errors, n) for n in dir(errors) if n.startswith("EXIT_")}
    assert codes <= {int(c) for c in rows}, f"codes missing from the table: {codes - set(rows)}"
    assert "dry run" in rows[str(errors.EXIT_DRY_RUN)]
    assert "--yes" not in rows[str(errors.EXIT_REFUSED)]
