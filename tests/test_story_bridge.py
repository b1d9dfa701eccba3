"""Story: a table `create_all()` made outside the migrations, filled later by a hand-written
data revision (ddd444 inserts a row into `setting`). A new database cannot build the history
("no such table: setting", AR404); fix inserts a bridge revision creating `setting` (from the
live table) between ddd444 and its parent, proved by a replay from empty, with no DDL here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from stories import Story, check_story

from alembic_repair.repair.history import relink_file
from alembic_repair.testing.scenarios.builders import (
    VERSIONS,
    base_project,
    create_all,
    execute,
    models_py,
    revision_py,
    upgrade,
    write_revisions,
)
from tests.helpers import cli, schema_snapshot
from tests.test_history_repairs import (
    alembic,
    assert_repaired,
    down_revision,
    fresh_url,  # noqa: F401  (fixture)
    user_rows,
    version_rows,
)

SETTING = '''
class Setting(Base):
    __tablename__ = "setting"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    value: Mapped[str | None] = mapped_column(String(200))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("author.id"))
'''

DDD = "ddd444_default_settings.py"


INSERT = """op.execute("INSERT INTO setting (id, name, value) VALUES (2, 'lang', 'en')")"""


def build(root: Path, url: str, *, upgrade_to: str = "head", data: str = INSERT) -> None:
    """The base project at ccc333 with rows; the app's start-up then made `setting` with
    create_all() (and a row went in); ddd444, a hand-written data revision, fills it."""
    base_project(root, url)
    (root / "app" / "models.py").write_text(models_py() + SETTING, encoding="utf-8")
    create_all(root, url)
    execute(url, "INSERT INTO setting (id, name, value, author_id) "
                 "VALUES (1, 'theme', 'light', 1)")
    write_revisions(root, {DDD: revision_py(
        "ddd444", "ccc333", "default settings",
        data, """op.execute("DELETE FROM setting WHERE id = 2")""",
        date="2024-02-01 10:00:00.000000")})
    upgrade(root, url, upgrade_to)


STORY = Story("bridge", build=lambda root, url: build(root, url))


def test_story(backend, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    check_story(STORY, backend, request, tmp_path)


def bridge_of(root: Path) -> Path:
    bridge = down_revision(root / VERSIONS / DDD)
    assert isinstance(bridge, str) and bridge != "ccc333"
    (path,) = (root / VERSIONS).glob(f"{bridge}_*.py")
    return path


def test_the_bridge_goes_before_the_revision_needing_it(tmp_path: Path, sqlite_url: str
                                                       ) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build(root, sqlite_url)
    rows, schema = user_rows(sqlite_url), schema_snapshot(sqlite_url)
    assert rows["setting"][0] == 2
    doctor = cli("doctor", cwd=root, url=sqlite_url)
    assert doctor.code == 1 and "AR404" in doctor.output, doctor.output
    plan = cli("fix", cwd=root, url=sqlite_url)
    assert plan.code == 5 and "1. write a bridge revision creating setting" in plan.output, \
        plan.output

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert version_rows(sqlite_url) == ["ddd444"]  # no restamp: the bridge is an ancestor
    assert schema_snapshot(sqlite_url) == schema and user_rows(sqlite_url) == rows  # no DDL here
    bridge = bridge_of(root)
    assert down_revision(bridge) == "ccc333"
    source = bridge.read_text()
    assert "op.create_table('setting'" in source and "['author.id']" in source  # its FK
    assert "create_table('author'" not in source and "create_table('post'" not in source
    assert f"Revises: {bridge.name.split('_')[0]}" in (root / VERSIONS / DDD).read_text()


@pytest.mark.crash
def test_kill_between_writing_and_linking_the_bridge(
        tmp_path: Path, sqlite_url: str, fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    """Inside the step (check_story kills after each step): the next run finds the same
    content-addressed bridge, writes no second one, and links it."""
    root = tmp_path / "proj"
    root.mkdir()
    build(root, sqlite_url)
    rows = user_rows(sqlite_url)

    killed = cli("fix", "--yes", cwd=root, url=sqlite_url,
                 env={"ALEMBIC_REPAIR_CRASH_AFTER": "insert-bridge.written"})
    assert killed.code == -9, killed.output
    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert len(list((root / VERSIONS).glob("*.py"))) == 5  # one bridge, not two
    assert down_revision(bridge_of(root)) == "ccc333"
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


def test_database_still_at_the_parent_is_stamped_to_the_bridge(
        tmp_path: Path, sqlite_url: str, fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    """ddd444 never ran here: the bridge is stamped (setting is there), then ddd444 runs
    (an UPDATE that leaves the rows as they are: fix's row check holds every table's rows)."""
    root = tmp_path / "proj"
    root.mkdir()
    build(root, sqlite_url, upgrade_to="ccc333", data=(
        """op.execute("UPDATE setting SET value = 'light' WHERE name = 'theme'")"""))
    rows = user_rows(sqlite_url)

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert "stamp" in run.output
    assert version_rows(sqlite_url) == ["ddd444"]
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


FLAG = '''
class Flag(Base):
    __tablename__ = "flag"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
'''


def test_two_tables_needed_by_two_revisions_get_two_bridges(
        tmp_path: Path, sqlite_url: str, fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    """The replay, once bridged before ddd444, stops at eee555 for `flag` (made outside the
    migrations too): the one step bridges that as well before it proves the history."""
    root = tmp_path / "proj"
    root.mkdir()
    build(root, sqlite_url)
    (root / "app" / "models.py").write_text(models_py() + SETTING + FLAG, encoding="utf-8")
    create_all(root, sqlite_url)
    write_revisions(root, {"eee555_flags.py": revision_py(
        "eee555", "ddd444", "flags",
        """op.execute("INSERT INTO flag (id, name) VALUES (1, 'x')")""",
        """op.execute("DELETE FROM flag WHERE id = 1")""", date="2024-02-02 10:00:00.000000")})
    upgrade(root, sqlite_url)
    rows = user_rows(sqlite_url)

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert version_rows(sqlite_url) == ["eee555"]
    assert down_revision(bridge_of(root)) == "ccc333"
    second = down_revision(root / VERSIONS / "eee555_flags.py")
    assert second != "ddd444"
    (path,) = (root / VERSIONS).glob(f"{second}_*.py")
    assert down_revision(path) == "ddd444" and "op.create_table('flag'" in path.read_text()
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


def test_a_data_revision_without_downgrade_is_bridged(
        tmp_path: Path, sqlite_url: str, fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    """ddd444 (the needer) is a data revision whose downgrade raises NotImplementedError:
    it changes no table's shape, so its downgrade is not run to rebuild `setting`."""
    root = tmp_path / "proj"
    root.mkdir()
    build(root, sqlite_url)
    (root / VERSIONS / DDD).write_text(revision_py(
        "ddd444", "ccc333", "default settings", INSERT, "raise NotImplementedError",
        date="2024-02-01 10:00:00.000000"), encoding="utf-8")
    rows = user_rows(sqlite_url)

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert down_revision(bridge_of(root)) == "ccc333"
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


def test_a_shape_change_without_downgrade_is_refused_with_the_bridge_advice(
        tmp_path: Path, sqlite_url: str) -> None:
    """A later revision reshapes `setting` and cannot be downgraded: the table as it was
    before ddd444 cannot be rebuilt; the refusal says what to do (not "restore from git")."""
    root = tmp_path / "proj"
    root.mkdir()
    build(root, sqlite_url)
    write_revisions(root, {"eee555_note.py": revision_py(
        "eee555", "ddd444", "setting note",
        """op.add_column("setting", sa.Column("note", sa.String(20)))""",
        "raise NotImplementedError", date="2024-02-02 10:00:00.000000")})
    upgrade(root, sqlite_url)
    before = sorted(p.name for p in (root / VERSIONS).glob("*.py"))

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code != 0, run.output
    assert "eee555_note.py: its downgrade() fails" in run.output, run.output
    assert "write the revision creating setting before ddd444 by hand" in run.output
    assert "restore the missing revision" not in run.output
    assert sorted(p.name for p in (root / VERSIONS).glob("*.py")) == before


def test_another_deployment_whose_app_made_the_table_upgrades_with_plain_alembic(
        tmp_path: Path, backend, fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    """The bridge skips its create_table (and indexes) where the table exists: a second
    database at ccc333 whose app ran create_all() upgrades to head; an empty one builds."""
    root = tmp_path / "proj"
    root.mkdir()
    build(root, backend.url)
    run = cli("fix", "--yes", cwd=root, url=backend.url)
    assert run.code == 0, run.output

    other = fresh_url(backend.url)
    upgrade(root, other, "ccc333")
    create_all(root, other)  # the app's start-up on that deployment
    execute(other, "INSERT INTO setting (id, name, value) VALUES (1, 'theme', 'dark')")
    plain = alembic(root, other, "upgrade", "head")
    assert plain.code == 0, plain.output
    assert version_rows(other) == ["ddd444"]
    assert user_rows(other)["setting"][0] == 2
    down = alembic(root, other, "downgrade", "ccc333")
    assert down.code == 0, down.output
    # symmetric: the bridge's downgrade drops it
    assert "setting" not in schema_snapshot(other).tables
    empty = fresh_url(backend.url)
    built = alembic(root, empty, "upgrade", "head")
    assert built.code == 0 and "setting" in schema_snapshot(empty).tables, built.output
    source = bridge_of(root).read_text()
    assert "    if not sa.inspect(op.get_bind()).has_table('setting'):" in source, source
    assert "    if sa.inspect(op.get_bind()).has_table('setting'):" in source, source


def merge_build(root: Path, url: str) -> None:
    """ddd444 is a merge of two branches off ccc333 (b1, b2) and fills `setting`."""
    build(root, url, upgrade_to="ccc333")
    (root / VERSIONS / DDD).unlink()
    write_revisions(root, {
        "b1_one.py": revision_py("b1", "ccc333", "one", "pass", "pass",
                                 date="2024-01-20 10:00:00.000000"),
        "b2_two.py": revision_py("b2", "ccc333", "two", "pass", "pass",
                                 date="2024-01-21 10:00:00.000000"),
        DDD: revision_py("ddd444", ("b1", "b2"), "default settings", INSERT,  # type: ignore[arg-type]
                         """op.execute("DELETE FROM setting WHERE id = 2")""",
                         date="2024-02-01 10:00:00.000000")})
    upgrade(root, url)


@pytest.mark.crash
def test_a_merge_needer_cut_between_its_two_parents_resumes(
        tmp_path: Path, sqlite_url: str, fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    """The bridge revises (b1, b2) and the merge then revises only the bridge, written in one
    write. A run cut short in the old two-write relink (the merge on (bridge, b2)) resumes."""
    root = tmp_path / "proj"
    root.mkdir()
    merge_build(root, sqlite_url)
    rows = user_rows(sqlite_url)
    killed = cli("fix", "--yes", cwd=root, url=sqlite_url,
                 env={"ALEMBIC_REPAIR_CRASH_AFTER": "insert-bridge.written"})
    assert killed.code == -9, killed.output
    (bridge,) = [p for p in (root / VERSIONS).glob("*.py")
                 if down_revision(p) == ("b1", "b2") and p.name != DDD]
    relink_file(root / VERSIONS / DDD, "b1", bridge.name.split("_")[0])  # the half state
    assert down_revision(root / VERSIONS / DDD) == (bridge.name.split("_")[0], "b2")

    run = cli("fix", "--yes", cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert down_revision(root / VERSIONS / DDD) == bridge.name.split("_")[0]
    assert "Revises: " + bridge.name.split("_")[0] + "\n" in (root / VERSIONS / DDD).read_text()
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))


def test_every_link_state_of_a_merge_needer_is_recognised(tmp_path: Path) -> None:
    """Unlinked, linked, and the half states a cut two-write relink left: `_linked` finds the
    bridge in each, `links` (the take-back's test too) agrees, and `set_parents` writes the
    whole tuple at once."""
    from alembic_repair.repair.history.bridge import Place, _linked, links, set_parents
    from alembic_repair.repair.history.files import read_scripts_of

    bridge = tmp_path / "brg_bridge.py"
    bridge.write_text(revision_py("brg", ("b1", "b2"), "bridge", "pass", "pass"),  # type: ignore[arg-type]
                      encoding="utf-8")
    needer = tmp_path / DDD
    place = Place("ddd444", ("b1", "b2"), ("setting",))
    for state, found in [(("b1", "b2"), None), (("brg",), "brg"), (("brg", "b2"), "brg"),
                         (("b1", "brg"), "brg"), (("other",), None), (("brg", "x"), None)]:
        needer.write_text(revision_py("ddd444", state, "needs", "pass", "pass"),  # type: ignore[arg-type]
                          encoding="utf-8")
        files = {s.revision: s for s in read_scripts_of([bridge, needer]) if s.revision}
        assert _linked(files, place) == found, state
        assert links(state, "brg", place.parents) == (found is not None), state
    assert set_parents(needer, ("b1", "b2")) is True
    assert down_revision(needer) == ("b1", "b2") and "Revises: b1, b2\n" in needer.read_text()
    assert set_parents(needer, ("b1", "b2")) is False
