"""squash: the history up to REV becomes one baseline revision, on SQLite and MariaDB.

An empty database built from the squashed history has the fingerprint of one built from the
old history; the database is restamped when it recorded a squashed revision; every row stays;
later revisions still apply; without --yes nothing changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alembic_repair import NeedsRepair, Project, squash
from alembic_repair.engine.state.schema import SchemaSnapshot
from alembic_repair.errors import RefusedUnsafe
from alembic_repair.testing.scenarios import AAA, BBB, CCC, VERSIONS, build
from tests.helpers import cli, schema_snapshot, table_digest, tree_digest
from tests.test_history_repairs import alembic, down_revision, user_rows, version_rows


@pytest.fixture
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
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


def built_from_empty(root: Path, url: str) -> SchemaSnapshot:
    run = alembic(root, url, "upgrade", "head")
    assert run.code == 0, run.output
    return schema_snapshot(url)


def test_squash_to_a_middle_revision(tmp_path: Path, backend,
                                     fresh_url: Callable[[str], str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, backend.url)
    old = built_from_empty(root, fresh_url(backend.url))
    rows = user_rows(backend.url)

    refused = cli("squash", "--to", "bbb222", cwd=root, url=backend.url)
    assert refused.code == 5, refused.output
    assert "1. write baseline revision" in refused.output
    files, tables = tree_digest(root), table_digest(backend.url)
    with pytest.raises(Exception) as err:
        squash(Project.discover(root, url=backend.url), to="bbb222")
    # without yes: a dry run (issue 16: exit 5 in the CLI), still a RefusedUnsafe from Python
    assert type(err.value).__name__ == "DryRun" and isinstance(err.value, RefusedUnsafe)
    assert tree_digest(root) == files and table_digest(backend.url) == tables

    result = squash(Project.discover(root, url=backend.url), to="bbb222", yes=True)

    plan = result.plan
    assert plan is not None and plan.squashed == ("aaa111", "bbb222") and not plan.restamp
    versions = root / VERSIONS
    assert sorted(p.name for p in versions.glob("*.py")) == sorted(
        [f"{plan.baseline}_baseline_squashed_up_to_bbb222.py", CCC])
    assert down_revision(versions / CCC) == plan.baseline
    for name in (AAA, BBB):  # moved, never deleted
        assert (result.folder / "project-files" / VERSIONS / name).is_file()
    assert version_rows(backend.url) == ["ccc333"]
    assert user_rows(backend.url) == rows
    new = built_from_empty(root, fresh_url(backend.url))
    assert new.fingerprint == old.fingerprint == plan.fingerprint
    assert cli("doctor", cwd=root, url=backend.url).code == 0
    check = alembic(root, backend.url, "check")
    assert check.code == 0, check.output


def test_squash_to_head_restamps_the_database(tmp_path: Path, backend,
                                              fresh_url: Callable[[str], str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, backend.url)
    old = built_from_empty(root, fresh_url(backend.url))
    rows = user_rows(backend.url)

    run = cli("squash", "--yes", cwd=root, url=backend.url)

    assert run.code == 0, run.output
    (baseline,) = (root / VERSIONS).glob("*.py")
    revision = baseline.name.split("_")[0]
    assert version_rows(backend.url) == [revision]
    assert user_rows(backend.url) == rows
    assert built_from_empty(root, fresh_url(backend.url)).fingerprint == old.fingerprint
    assert cli("doctor", cwd=root, url=backend.url).code == 0
    # Running it again squashes the one baseline into itself: nothing changes.
    files = tree_digest(root)
    again = cli("squash", "--yes", cwd=root, url=backend.url)
    assert again.code == 0, again.output
    assert {k: v for k, v in tree_digest(root).items() if not k.startswith(".alembic_repair")} \
        == {k: v for k, v in files.items() if not k.startswith(".alembic_repair")}


def test_later_revisions_still_apply_after_a_restamp(tmp_path: Path, sqlite_url: str,
                                                     fresh_url: Callable[[str], str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("fm03_behind_head", root, sqlite_url)  # at bbb222, ccc333 pending
    old = built_from_empty(root, fresh_url(sqlite_url))
    rows = user_rows(sqlite_url)

    result = squash(Project.discover(root, url=sqlite_url), to="bbb222", yes=True)

    assert result.plan is not None and result.plan.restamp
    assert version_rows(sqlite_url) == [result.plan.baseline]
    assert user_rows(sqlite_url) == rows
    run = alembic(root, sqlite_url, "upgrade", "head")
    assert run.code == 0 and "-> ccc333" in run.output, run.output
    assert version_rows(sqlite_url) == ["ccc333"]
    assert "email" in {c[2] for c in schema_snapshot(sqlite_url).facts if c[0] == "column"}
    assert built_from_empty(root, fresh_url(sqlite_url)).fingerprint == old.fingerprint


def test_squash_past_the_database_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("fm03_behind_head", root, sqlite_url)
    files, tables = tree_digest(root), table_digest(sqlite_url)

    with pytest.raises(NeedsRepair, match="the database is at bbb222, behind ccc333"):
        squash(Project.discover(root, url=sqlite_url), to="ccc333", yes=True)

    assert tree_digest(root) == files and table_digest(sqlite_url) == tables


@pytest.mark.crash
def test_kill_during_squash_then_finish(tmp_path: Path, sqlite_url: str,
                                        fresh_url: Callable[[str], str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, sqlite_url)
    old = built_from_empty(root, fresh_url(sqlite_url))

    killed = cli("squash", "--to", "bbb222", "--yes", cwd=root, url=sqlite_url,
                 env={"ALEMBIC_REPAIR_CRASH_AFTER": "3.move"})
    assert killed.code == -9, killed.output
    run = cli("squash", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0 and "finishing it" in run.output, run.output
    assert len(list((root / VERSIONS).glob("*.py"))) == 2
    assert built_from_empty(root, fresh_url(sqlite_url)).fingerprint == old.fingerprint
    assert cli("doctor", cwd=root, url=sqlite_url).code == 0
