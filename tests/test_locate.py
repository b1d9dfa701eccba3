"""Locating a database in a history the replay from empty cannot build (issue 12, item 2).

The history's first revision adds a column to a table the application creates itself
(``create_all`` before Alembic), so the replay from empty stops there (AR404) and no revision
has a snapshot. With alembic_version's row lost or unknown, doctor places the database by the
revisions' effects, read offline (`engine.state.locate`), and fix restamps that revision:
every row kept, ``versions/`` unchanged. A run of revisions that change nothing checkable is a
range (refused, named); effects that contradict each other give no location (refused).
Then `locate()` itself on hand-written histories (renames, named indexes, an unreadable
revision, a branch), and the rules and the plan on states built in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import state_builders as sb
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from alembic_repair import Project, api
from alembic_repair.diagnose.diagnosis import diagnose
from alembic_repair.engine.state.graph import history_order
from alembic_repair.engine.state.locate import Location, locate
from alembic_repair.engine.state.read import State
from alembic_repair.engine.state.recorder import VersionTable
from alembic_repair.engine.state.schema import reflect
from alembic_repair.repair.plan import make_plan
from alembic_repair.testing.scenarios import (
    AUTHOR,
    AUTHOR_BEFORE_EMAIL,
    CCC,
    POST,
    ccc333,
    create_all,
    execute,
    insert_rows,
    models_py,
    revision_py,
    upgrade,
    write_app,
    write_revisions,
    write_scaffold,
)
from tests.helpers import cli, table_digest, tree_digest, version_rows

if TYPE_CHECKING:
    from conftest import Backend

POST_AT_HEAD = (*(("views: Mapped[int] = mapped_column(index=True)" if line.startswith("views")
                   else line) for line in POST),
                "summary: Mapped[str | None] = mapped_column(String(100))")
DDD = "ddd444_add_post_summary.py"
EEE = "eee555_index_post_views.py"
TAIL = {"fff666_touch_views.py": revision_py(
            "fff666", "eee555", "touch views", 'op.execute("UPDATE post SET views = views")',
            "pass", date="2024-03-01 10:00:00.000000"),
        "ggg777_release.py": revision_py("ggg777", "fff666", "release 2.0", "pass", "pass",
                                         date="2024-03-08 10:00:00.000000")}


def history(tail: bool = False) -> dict[str, str]:
    """ccc333 (alters the app's author table: fails on an empty database) -> ddd444 (adds
    post.summary) -> eee555 (indexes post.views) [-> fff666 (data only) -> ggg777 (empty)]."""
    files = {
        CCC: ccc333(down=None),
        DDD: revision_py("ddd444", "ccc333", "add post summary",
                         'op.add_column("post", sa.Column("summary", sa.String(length=100), '
                         "nullable=True))", 'op.drop_column("post", "summary")',
                         date="2024-02-01 10:00:00.000000"),
        EEE: revision_py("eee555", "ddd444", "index post views",
                         'op.create_index("ix_post_views", "post", ["views"])',
                         'op.drop_index("ix_post_views", table_name="post")',
                         date="2024-02-08 10:00:00.000000"),
    }
    return {**files, **TAIL} if tail else files


def build(root: Path, url: str, *, to: str = "head", tail: bool = False) -> None:
    """The app's create_all, its rows, then the history upgraded to `to`."""
    root.mkdir(exist_ok=True)
    write_app(root, models_py(AUTHOR_BEFORE_EMAIL))
    create_all(root, url)
    insert_rows(url, email=False)
    (root / "app" / "models.py").write_text(models_py(AUTHOR, POST_AT_HEAD), encoding="utf-8")
    write_scaffold(root, url)
    write_revisions(root, history(tail))
    upgrade(root, url, to)


def project_files(root: Path) -> dict[str, str]:
    """The project's own files (fix keeps its journal and stamp log in .alembic_repair/)."""
    return {k: v for k, v in tree_digest(root).items() if not k.startswith(".alembic_repair")}


def user_rows(url: str) -> dict[str, tuple[int, str]]:
    return {t: v for t, v in table_digest(url).items() if t != "alembic_version"}


def doctor(root: Path, url: str) -> dict[str, str]:
    """doctor in-process: each finding's code -> its detail."""
    found = {f.code: f.detail for f in api.doctor(Project.discover(root, url=url)).findings}
    assert "AR404" in found, found  # the replay from empty stops at the first revision
    return found


FROM_EFFECTS = "the revisions' effects (their operations read offline, not a replay"


DAMAGE = {"row-lost": "DELETE FROM alembic_version",
          "unknown-id": "UPDATE alembic_version SET version_num = 'abcdef123456'",
          "older-stamp": "UPDATE alembic_version SET version_num = 'ccc333'"}


@pytest.mark.parametrize("damage_id", list(DAMAGE))
def test_a_database_at_head_is_located_from_effects_and_restamped(
        damage_id: str, tmp_path: Path, backend: Backend) -> None:
    root = tmp_path / "proj"
    build(root, backend.url)
    execute(backend.url, DAMAGE[damage_id])
    before_rows, files = user_rows(backend.url), project_files(root)

    code = {"row-lost": "AR306", "unknown-id": "AR302", "older-stamp": "AR401"}[damage_id]
    found = doctor(root, backend.url)
    assert f"{FROM_EFFECTS}: the replay from empty stops at ccc333) place the schema at " \
           "revision eee555" in found[code]
    assert set(found) == {code, "AR404"} | ({"AR304"} if code == "AR401" else set()), found
    run = cli("fix", "--yes", "--only", "AR3xx", "--only", "AR401", cwd=root, url=backend.url)

    assert "alembic_version now records eee555" in run.output, run.output
    assert run.code == 1 and "AR404" in run.output  # left: only a baseline can mend that
    assert version_rows(backend.url) == ["eee555"]
    assert user_rows(backend.url) == before_rows and project_files(root) == files
    assert set(doctor(root, backend.url)) == {"AR404"}


def test_a_database_at_an_older_revision_is_located_exactly(tmp_path: Path,
                                                            backend: Backend) -> None:
    root = tmp_path / "proj"
    build(root, backend.url, to="ddd444")
    execute(backend.url, "DELETE FROM alembic_version")
    before_rows, files = user_rows(backend.url), project_files(root)

    assert "place the schema at revision ddd444" in doctor(root, backend.url)["AR306"]
    run = cli("fix", "--yes", "--only", "AR3xx", cwd=root, url=backend.url)

    # stamped where it is, then upgraded (AR304): only eee555 ran, which it would not have
    # survived at any other revision (the index exists at head, post.summary before ddd444)
    said = run.output
    assert said.index("alembic_version now records ddd444") < said.index("eee555"), said
    assert version_rows(backend.url) == ["eee555"]
    assert user_rows(backend.url) == before_rows and project_files(root) == files


def refused(root: Path, url: str, *words: str) -> None:
    """fix refuses, saying `words`, and changes nothing: files, rows, alembic_version."""
    files, tables = project_files(root), table_digest(url)
    run = cli("fix", "--yes", cwd=root, url=url)
    assert run.code not in (0, 70), run.output
    assert "AR306" in run.output and "stamp" not in run.output.split("AR306", 1)[0]
    for word in words:
        assert word in run.output, run.output
    assert project_files(root) == files and table_digest(url) == tables


def test_a_schema_neutral_tail_is_a_range_and_refused(tmp_path: Path, backend: Backend) -> None:
    """fff666 only updates rows and ggg777 is an empty release: the schema cannot tell whether
    they ran, so no point inside eee555 .. ggg777 is guessed."""
    root = tmp_path / "proj"
    build(root, backend.url, tail=True)
    execute(backend.url, "DELETE FROM alembic_version")

    assert "place the schema somewhere in eee555 .. ggg777" in doctor(root, backend.url)["AR306"]
    refused(root, backend.url, "fit each of eee555 .. ggg777", "check which of them ran")
    assert version_rows(backend.url) == []


def test_contradictory_effects_give_no_location(tmp_path: Path, backend: Backend) -> None:
    """post.summary (ddd444) is gone but eee555's index is there: no revision fits."""
    root = tmp_path / "proj"
    build(root, backend.url)
    execute(backend.url, "DELETE FROM alembic_version",
            "ALTER TABLE post DROP COLUMN summary")

    said = doctor(root, backend.url)["AR306"]
    assert f"no revision fits {FROM_EFFECTS}" in said and "column post.summary" in said
    refused(root, backend.url, "no revision's effects fit the tables")
    assert version_rows(backend.url) == []


# -- locate() itself, on hand-written histories (no CLI, in-memory SQLite) --------------------


def located(tmp_path: Path, revisions: list[tuple[str, str | None, str]],
            ddl: list[str]) -> Location | None:
    """locate() for `revisions` (id, parent, upgrade body) against a database built by `ddl`."""
    folder = tmp_path / "versions"
    folder.mkdir()
    for rev, down, body in revisions:
        (folder / f"{rev}_r.py").write_text(revision_py(rev, down, rev, body, "pass"))
    order = history_order(ScriptDirectory(str(tmp_path), version_locations=[str(folder)]))
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            for statement in ddl:
                conn.execute(text(statement))
            return locate(order, reflect(conn), conn.dialect, stopped_at=order[0].revision)
    finally:
        engine.dispose()


APP = "CREATE TABLE item (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50))"
RENAMES = [("a1", None, 'op.add_column("item", sa.Column("price", sa.Integer()))'),
           ("b2", "a1", 'op.rename_table("item", "product")'),
           ("c3", "b2", 'op.alter_column("product", "name", new_column_name="label", '
                        "existing_type=sa.String(50))"),
           ("d4", "c3", 'op.create_table("tag", sa.Column("id", sa.Integer(), '
                        "primary_key=True), sa.Column(\"word\", sa.String(20)))"),
           ("e5", "d4", 'op.create_index("ix_tag_word", "tag", ["word"])'),
           ("f6", "e5", 'op.drop_index("ix_tag_word", table_name="tag")')]
AT_D4 = ["CREATE TABLE product (id INTEGER NOT NULL PRIMARY KEY, label VARCHAR(50), "
         "price INTEGER)", "CREATE TABLE tag (id INTEGER NOT NULL PRIMARY KEY, word VARCHAR(20))"]


@pytest.mark.parametrize(("ddl", "where"), [
    ([APP], ("base",)),
    ([APP, "ALTER TABLE item ADD COLUMN price INTEGER"], ("a1",)),
    (["CREATE TABLE product (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50), "
      "price INTEGER)"], ("b2",)),
    # d4 and f6 leave the same schema (e5's index is dropped again): both, and not e5
    ([*AT_D4], ("d4", "f6")),
    ([*AT_D4, "CREATE INDEX ix_tag_word ON tag (word)"], ("e5",)),
    # tag has a column no revision gives it: it contradicts every revision
    ([*AT_D4[:1], "CREATE TABLE tag (id INTEGER NOT NULL PRIMARY KEY, word VARCHAR(20), "
      "extra INTEGER)"], ()),
], ids=["base", "a1", "b2-renamed", "apart", "e5", "contradiction"])
def test_effects_follow_renames_and_named_indexes(tmp_path: Path, ddl: list[str],
                                                  where: tuple[str, ...]) -> None:
    place = located(tmp_path, RENAMES, ddl)
    assert place is not None and place.revisions == where, place
    assert place.exact == (where[0] if len(where) == 1 and where != ("base",) else None)
    assert place.run is (where != ("d4", "f6"))


def test_a_revision_that_needs_a_database_widens_the_range(tmp_path: Path) -> None:
    """b2 asks for op.get_bind(): what it did cannot be read, so it is never guessed past."""
    history = [("a1", None, 'op.add_column("item", sa.Column("price", sa.Integer()))'),
               ("b2", "a1", 'op.get_bind().execute(sa.text("UPDATE item SET price = 0"))')]
    place = located(tmp_path, history, [APP, "ALTER TABLE item ADD COLUMN price INTEGER"])
    assert place is not None and place.revisions == ("a1", "b2") and place.exact is None
    assert place.unreadable == ("b2",) and place.span == "a1 .. b2"


def test_a_branched_history_is_not_located(tmp_path: Path) -> None:
    history = [("a1", None, "pass"), ("b2", "a1", "pass"), ("c3", "a1", "pass")]
    assert located(tmp_path, history, [APP]) is None


# -- the rules and the plan on a state built in memory (tests/state_builders.py) ---------------


def stopped(recorded: tuple[str, ...], place: Location | None) -> State:
    """aaa111 -> bbb222 -> ccc333, the replay stopped at aaa111 (no snapshot at all)."""
    return sb.healthy(scripts=sb.chain(sb.A, sb.B, sb.C), versions=VersionTable(
        True, recorded, 32, True), replay_=sb.replay({}, failed_at=sb.A, error="no such table"),
        location=place)


def planned(state: State) -> tuple[dict[str, str], list[str], list[str]]:
    """doctor's findings (code -> detail), then fix's steps and refusals for them."""
    diagnosis = diagnose(state)
    made = make_plan(diagnosis)
    return ({f.code: f.detail for f in diagnosis.findings}, [s.describe() for s in made.steps],
            [f"{f.code}: {why}" for f, why in made.unrepairable])


def test_a_wrong_stamp_is_told_and_restamped_where_the_effects_place_it() -> None:
    found, steps, _ = planned(stopped((sb.A,), Location((sb.C,), stopped_at=sb.A)))
    assert "alembic_version records aaa111, but the revisions' effects" in found["AR401"]
    assert "place the schema at revision ccc333" in found["AR401"]
    assert steps and steps[0].startswith("stamp ccc333") and "read offline" in steps[0]


def test_a_recorded_revision_inside_the_range_is_not_questioned() -> None:
    found, _, _ = planned(stopped((sb.B,), Location((sb.B, sb.C), stopped_at=sb.A)))
    assert "AR401" not in found


def test_a_range_is_refused_by_name_not_guessed() -> None:
    found, steps, refused = planned(stopped((sb.A,), Location((sb.B, sb.C), stopped_at=sb.A)))
    assert "somewhere in bbb222 .. ccc333" in found["AR401"]
    assert not any(step.startswith("stamp") for step in steps)
    assert any(r.startswith("AR401: the revisions' effects fit each of bbb222 .. ccc333")
               for r in refused), refused


def test_an_unknown_id_is_not_adopted_by_a_replay_that_stops() -> None:
    """No location (the history branches, say): adopting would replay from empty and fail."""
    found, steps, refused = planned(stopped(("feedfeedfeed",), None))
    assert "AR302" in found and not steps
    assert any(r.startswith("AR302: the tables equal no revision") for r in refused), refused
