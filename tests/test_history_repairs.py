"""fix on a broken history, end to end through the CLI, on SQLite and MariaDB:

* fm05 (AR203): the intermediate revision bbb222 was deleted; fix recreates it as a bridge
  rebuilt from the schemas (the live schema downgraded through ccc333, against aaa111's replay);
* fm46 (AR404): the base revision adds a column to a table no revision creates; fix inserts a
  true baseline before it (no restamp: the database at ccc333 counts it as applied).

Afterwards: one head, the database at head, `alembic upgrade head` and `alembic check` clean,
doctor healthy, every row kept, and a brand-new empty database builds and passes the check.
"""

from __future__ import annotations

import ast
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from alembic_repair.testing.scenarios import (
    AUTHOR,
    CCC,
    VERSIONS,
    build,
    models_py,
    revision_py,
    upgrade,
    write_revisions,
)
from tests.helpers import Run, cli, table_digest, tree_digest, version_rows

FM05 = "fm05_deleted_intermediate_revision"
FM46 = "fm46_history_cannot_build_empty_db"


def alembic(root: Path, url: str, *args: str) -> Run:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr)


def user_rows(url: str) -> dict[str, tuple[int, str]]:
    return {t: v for t, v in table_digest(url).items() if t != "alembic_version"}


def down_revision(path: Path) -> object:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                node.target.id == "down_revision" and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path}: no down_revision")


@pytest.fixture
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """A brand-new empty database on the same backend as the given URL."""
    cleanup: list[Callable[[], None]] = []

    def make(url: str) -> str:
        if url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / ('fresh_' + secrets.token_hex(4) + '.db')}"
        server = request.getfixturevalue("mariadb_server")
        name = "f_" + secrets.token_hex(5)
        new = server.create_database(name)
        cleanup.append(lambda: server.drop_database(name))
        return str(new)

    yield make
    for done in cleanup:
        done()


def assert_repaired(root: Path, url: str, rows: dict[str, tuple[int, str]],
                    fresh: str) -> None:
    heads = alembic(root, url, "heads")
    assert heads.code == 0 and len(heads.stdout.strip().splitlines()) == 1, heads.output
    (head,) = heads.stdout.split()[:1]
    assert version_rows(url) == [head]
    upgrade = alembic(root, url, "upgrade", "head")
    assert upgrade.code == 0, upgrade.output
    check = alembic(root, url, "check")
    assert check.code == 0 and "No new upgrade operations detected" in check.output, \
        check.output
    doctor = cli("doctor", cwd=root, url=url)
    assert doctor.code == 0, doctor.output
    assert user_rows(url) == rows
    built = alembic(root, fresh, "upgrade", "head")
    assert built.code == 0, built.output
    check = alembic(root, fresh, "check")
    assert check.code == 0 and "No new upgrade operations detected" in check.output, \
        check.output


@pytest.mark.parametrize("scenario", [FM05, FM46])
def test_fix_repairs_the_history(scenario: str, tmp_path: Path, backend,
                                 fresh_url: Callable[[str], str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build(scenario, root, backend.url)
    rows = user_rows(backend.url)
    assert rows["author"][0] == 2 and rows["post"][0] == 3

    run = cli("fix", "--yes", cwd=root, url=backend.url)

    assert run.code == 0, run.output
    assert "healthy" in run.output
    assert version_rows(backend.url) == ["ccc333"]  # no restamp: nothing runs twice
    versions = root / VERSIONS
    if scenario == FM05:
        (bridge,) = versions.glob("bbb222_*.py")
        assert down_revision(bridge) == "aaa111"
        assert down_revision(versions / CCC) == "bbb222"
        assert "op.create_table('post'" in bridge.read_text()
    else:
        baseline = down_revision(versions / CCC)
        assert isinstance(baseline, str) and len(baseline) == 12
        (written,) = versions.glob(f"{baseline}_*.py")
        assert down_revision(written) is None
        source = written.read_text()
        assert "op.create_table('author'" in source and "email" not in source
        assert f"Revises: {baseline}" in (versions / CCC).read_text()
    assert_repaired(root, backend.url, rows, fresh_url(backend.url))


def test_baseline_when_the_database_is_past_the_old_base(
        tmp_path: Path, sqlite_url: str, fresh_url: Callable[[str], str]) -> None:
    """fm46 with one more revision applied after the old base: the baseline is rebuilt from
    the live schema with the newer revision's downgrade undone first (base first in the
    chain, downgrades newest first)."""
    root = tmp_path / "proj"
    root.mkdir()
    build(FM46, root, sqlite_url)
    author = (*AUTHOR, "nickname: Mapped[str | None] = mapped_column(String(50))")
    (root / "app" / "models.py").write_text(models_py(author), encoding="utf-8")
    write_revisions(root, {"ddd444_add_author_nickname.py": revision_py(
        "ddd444", "ccc333", "add author nickname",
        'op.add_column("author", sa.Column("nickname", sa.String(length=50), nullable=True))',
        'op.drop_column("author", "nickname")', date="2024-02-01 10:00:00.000000")})
    upgrade(root, sqlite_url)
    rows = user_rows(sqlite_url)

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert version_rows(sqlite_url) == ["ddd444"]
    baseline = down_revision(root / VERSIONS / CCC)
    assert isinstance(baseline, str) and len(baseline) == 12
    (written,) = (root / VERSIONS).glob(f"{baseline}_*.py")
    source = written.read_text()
    assert "op.create_table('author'" in source
    assert "email" not in source and "nickname" not in source
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


@pytest.mark.parametrize("scenario", [FM05, FM46])
def test_without_yes_nothing_changes(scenario: str, tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build(scenario, root, sqlite_url)
    files, tables = tree_digest(root), table_digest(sqlite_url)

    run = cli("fix", cwd=root, url=sqlite_url)

    assert run.code == 5, run.output
    step = "recreate revision bbb222" if scenario == FM05 else "write a baseline revision"
    assert f"1. {step}" in run.output
    assert tree_digest(root) == files and table_digest(sqlite_url) == tables


@pytest.mark.crash
@pytest.mark.parametrize("point", ["insert-baseline.written", "1.insert-baseline"])
def test_kill_during_the_baseline_then_fix_again(point: str, tmp_path: Path, sqlite_url: str,
                                                 fresh_url: Callable[[str], str]) -> None:
    """kill -9 between writing the baseline and relinking the old base (or after the step):
    the next run finds the same (content-addressed) baseline, writes no second one, links it."""
    root = tmp_path / "proj"
    root.mkdir()
    build(FM46, root, sqlite_url)
    rows = user_rows(sqlite_url)

    killed = cli("fix", "--yes", cwd=root, url=sqlite_url,
                 env={"ALEMBIC_REPAIR_CRASH_AFTER": point})
    assert killed.code == -9, killed.output
    versions = root / VERSIONS
    assert len(list(versions.glob("*.py"))) == 2
    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert "resume" in run.output
    baseline = down_revision(versions / CCC)
    assert len(list(versions.glob("*.py"))) == 2 and len(list(versions.glob(f"{baseline}_*")))
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


@pytest.mark.crash
@pytest.mark.parametrize("point", ["recreate-missing.written", "1.recreate-missing"])
def test_kill_during_the_bridge_then_fix_again(point: str, tmp_path: Path, sqlite_url: str,
                                               fresh_url: Callable[[str], str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build(FM05, root, sqlite_url)
    rows = user_rows(sqlite_url)

    killed = cli("fix", "--yes", cwd=root, url=sqlite_url,
                 env={"ALEMBIC_REPAIR_CRASH_AFTER": point})
    assert killed.code == -9, killed.output
    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert len(list((root / VERSIONS).glob("bbb222_*.py"))) == 1
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


def test_missing_revision_the_database_never_applied_is_refused(
        tmp_path: Path, sqlite_url: str) -> None:
    """The database records aaa111, before the deleted bbb222: what bbb222 did is unknown."""
    root = tmp_path / "proj"
    root.mkdir()
    build(FM05, root, sqlite_url)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'aaa111'"))
    engine.dispose()
    files, tables = tree_digest(root), table_digest(sqlite_url)

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 1, run.output
    assert "the database records aaa111, before the missing bbb222" in run.output
    assert tree_digest(root) == files and table_digest(sqlite_url) == tables
