"""The story harness (tests/stories.py), proved on a story fix repairs today, and shown to
fail when a row is lost or when fix has nothing to repair."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import stories
from helpers import rows_kept_problems, user_rows, version_rows
from stories import Story, StoryFailed, _check_rows, _env, check_story, step_points

from alembic_repair.repair.journal import CRASH_ENV, TRACE_ENV
from alembic_repair.testing.scenarios import HEAD, build, execute

if TYPE_CHECKING:
    from conftest import Backend


def _scenario(name: str) -> Story:
    def build_it(root: Path, url: str) -> None:
        build(name, root, url)

    return Story(name, build_it)


#: `DELETE FROM alembic_version` on a database at head: fix restamps it (steps 1.stamp, verify).
DELETED_VERSION_ROW = _scenario("fm09_empty_version_table")


def test_a_story_fix_repairs_passes_every_check(backend: Backend, request: pytest.FixtureRequest,
                                                tmp_path: Path) -> None:
    check_story(DELETED_VERSION_ROW, backend, request, tmp_path)
    found = dict(request.node.user_properties)
    killed = 0 if request.config.getoption("--floor-stories", default=False) else 2
    assert found["story_kills"] == killed  # no backup: killed after 1.stamp, then after verify
    assert version_rows(backend.url) == [HEAD]  # restamped (the row was deleted)


def test_step_points_are_the_step_boundaries_only() -> None:
    trace = "backup\nadopt.written\n1.adopt\nupgrade.started\n2.upgrade\nverify\nbackup\n" \
            "absorb.written\n1.absorb\nverify\ndrop.1\ndrop.backup\n"
    assert step_points(trace) == ["backup", "1.adopt", "2.upgrade", "verify", "1.absorb"]


def test_cli_env_is_formatted_with_the_database_in_hand() -> None:
    story = Story("x", DELETED_VERSION_ROW.build,
                  cli_env={"DATABASE_URL": "", "APP_DB": "{url}?x=1"})
    env = _env(story, "sqlite:////tmp/a.db", {TRACE_ENV: "/tmp/trace"})
    assert env == {"DATABASE_URL": "", "APP_DB": "sqlite:////tmp/a.db?x=1", CRASH_ENV: "",
                   TRACE_ENV: "/tmp/trace"}
    assert _env(DELETED_VERSION_ROW, "sqlite:///b.db")["DATABASE_URL"] == "sqlite:///b.db"


def test_a_lost_row_fails_the_story(tmp_path: Path) -> None:
    """The row comparison the harness runs (steps 4 and 7), on a real database's rows before
    and after one row is deleted: the failure names the step and the table. A column a repair
    added does not count; a `rewritten` column's values may change, its rows may not go."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build("healthy", tmp_path / "project", url)
    before = user_rows(url)
    execute(url, "ALTER TABLE post ADD COLUMN added INTEGER")
    _check_rows("added column", before, user_rows(url))
    execute(url, "UPDATE post SET title = 'replaced' WHERE id = 1")
    with pytest.raises(StoryFailed, match="^replaced: rows not kept: table post: 3 rows before, "
                                          "3 after .*; row 1 was "):
        _check_rows("replaced", before, user_rows(url))
    _check_rows("replaced", before, user_rows(url), ("post.title",))
    execute(url, "DELETE FROM post WHERE id = 2")
    after = user_rows(url)
    (problem,) = rows_kept_problems(before, after)
    assert problem.startswith("table post: 3 rows before, 2 after (or values changed)"), problem
    with pytest.raises(StoryFailed, match=r"^story x, step 4: rows not kept: table post: 3 rows"):
        _check_rows("story x, step 4", before, after, ("post.title",))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_story_with_nothing_to_repair_fails_at_step_2(
        backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A story fix has nothing to do proves nothing: the harness says so, with fix's output."""
    with pytest.raises(StoryFailed) as failed:
        check_story(_scenario("healthy"), backend, request, tmp_path)
    message = str(failed.value)
    assert message.startswith("story healthy on sqlite, step 2: `fix --yes` ran no step"), message
    assert "\n--- `alembic-repair fix --yes` exited 0; output tail:\n" in message, message
    assert "healthy, nothing to do" in message, message


def test_a_kill_round_fails_when_a_further_fix_has_work_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 7 runs `fix --yes` once more after the run that finished the killed one: a resumed
    run that left work behind (here: the version row deleted again behind alembic's checks,
    which this story's fix restamps) fails the kill round, with the killed run's output."""
    checked = stories._at_one_head

    def then_broken(where: str, story: Story, root: Path, url: str, **options: object) -> None:
        checked(where, story, root, url, **options)  # type: ignore[arg-type]
        execute(url, "DELETE FROM alembic_version")

    monkeypatch.setattr(stories, "_at_one_head", then_broken)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    with pytest.raises(StoryFailed, match="^kill round: a further `fix --yes` still had "
                                          "something to do") as failed:
        stories._killed_then_fixed("kill round", DELETED_VERSION_ROW, tmp_path / "kill", url,
                                   "1.stamp")
    assert "--- the killed `fix --yes` printed:" in str(failed.value)


def test_rows_of_a_table_without_primary_key_ignore_its_physical_order(tmp_path: Path) -> None:
    """A batch copy may write a keyless table's rows in another order: rows tied on the first
    column still compare equal (ordered by every column)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    execute(url, "CREATE TABLE tag (post_id INTEGER, name VARCHAR(20))",
            "INSERT INTO tag VALUES (1, 'b'), (1, 'a'), (0, 'c')")
    before = user_rows(url)
    execute(url, "DELETE FROM tag", "INSERT INTO tag VALUES (0, 'c'), (1, 'a'), (1, 'b')")
    assert user_rows(url) == before
    assert [r["name"] for r in before["tag"]] == ["'c'", "'a'", "'b'"]
