"""Story: a column added by hand (ALTER TABLE on the live database), then added to the models
(issue 13, "A column added by hand, then added to the models").

Autogenerate sees nothing (models = database), bootstrap has nothing to do, and no revision
creates the column on a fresh database: doctor says AR405 (the schema matches no revision).
``fix --yes`` writes the revision the history lacks (Alembic's autogenerate from the head,
replayed on a scratch database, to the models), proves the history then builds the live
schema, and stamps it: no DDL runs on the live database.

The story's second column is the usual hand-made one: ``ADD COLUMN score INTEGER NOT NULL
DEFAULT 0`` (a NOT NULL column on a table with rows needs a default) while the model says
``default=0`` (Python-side): `alembic check` ignores server defaults, so the revision must take
the default from the live column or the history never builds what the table is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from helpers import cli, table_digest
from sqlalchemy import create_engine, text
from stories import Story, check_story
from test_plan_unit import plan, state

from alembic_repair.diagnose import findings as F
from alembic_repair.diagnose.subjects import VersionTable
from alembic_repair.engine.replay import Replay
from alembic_repair.engine.state.drift import ModelDrift
from alembic_repair.engine.state.schema import SchemaSnapshot
from alembic_repair.repair.history.absorb import (
    CACHE_KEY,
    AbsorbDrift,
    Absorption,
    absorb_refusal,
    absorbed,
)
from alembic_repair.repair.registry import Draft
from alembic_repair.testing.scenarios.builders import (
    AUTHOR,
    base_project,
    execute,
    models_py,
    versions,
)


def schema_sql(url: str) -> list[tuple[str, str]]:
    """SQLite's own text of every table and index: a table rebuilt or altered changes it."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE name != 'alembic_version' "
                "ORDER BY name"))]
    finally:
        engine.dispose()


NICKNAME = "nickname: Mapped[str | None] = mapped_column(String(50))"
SCORE = "score: Mapped[int] = mapped_column(default=0)"  # Python-side: no server default


def build_drift_story(root: Path, url: str) -> None:
    """The base project at head with rows; author.nickname and author.score (NOT NULL
    DEFAULT 0) added by hand and filled, then written into the models."""
    base_project(root, url)
    execute(url, "ALTER TABLE author ADD COLUMN nickname VARCHAR(50)",
            "ALTER TABLE author ADD COLUMN score INTEGER NOT NULL DEFAULT 0",
            "UPDATE author SET score = id * 10",
            "UPDATE author SET nickname = CONCAT('n', id)" if not url.startswith("sqlite")
            else "UPDATE author SET nickname = 'n' || id")
    (root / "app" / "models.py").write_text(models_py((*AUTHOR, NICKNAME, SCORE)),
                                            encoding="utf-8")


STORY = Story("drift", build=build_drift_story)


def test_drift_story(backend, request, tmp_path: Path) -> None:
    check_story(STORY, backend, request, tmp_path)


def test_the_revision_adds_the_column_and_no_ddl_runs_here(tmp_path: Path, sqlite_url) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build_drift_story(root, sqlite_url)
    doctor = cli("doctor", "--format", "json", cwd=root, url=sqlite_url)
    assert doctor.code == 1, doctor.output
    codes = [f["code"] for f in json.loads(doctor.stdout)["findings"]]
    assert codes == ["AR405"], codes
    planned = cli("fix", cwd=root, url=sqlite_url)
    assert planned.code == 5, planned.output
    assert "write a revision on ccc333" in planned.stdout
    assert "column author.nickname VARCHAR(50)" in planned.stdout
    assert "column author.score INTEGER NOT NULL DEFAULT 0" in planned.stdout
    rows, ddl = table_digest(sqlite_url), schema_sql(sqlite_url)
    fixed = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert fixed.code == 0, fixed.output
    assert schema_sql(sqlite_url) == ddl  # no DDL ran on the live database
    after = table_digest(sqlite_url)
    assert after.pop("alembic_version") != rows.pop("alembic_version")  # only a stamp
    assert after == rows
    (written,) = [p for p in versions(root).glob("*.py") if not p.name.startswith(
        ("aaa111", "bbb222", "ccc333"))]
    source = written.read_text(encoding="utf-8")
    assert "down_revision: Union[str, Sequence[str], None] = 'ccc333'" in source
    assert "add_column(sa.Column('nickname', sa.String(length=50), nullable=True))" in source
    assert "drop_column('nickname')" in source
    # the live column's default (the model's default=0 is Python-side): a fresh database
    # gets the table this one has, and the proof passed
    assert "sa.Column('score', sa.Integer(), server_default=sa.text('0'), nullable=False)" \
        in source
    assert "Backup" not in fixed.stdout and "backup" not in fixed.stdout.lower()


def test_a_column_only_the_database_has_is_still_refused(tmp_path: Path, sqlite_url) -> None:
    """The models do not describe the hand-made column: which side is right is the user's
    call (fm15): nothing is written."""
    root = tmp_path / "proj"
    root.mkdir()
    base_project(root, sqlite_url)
    execute(sqlite_url, "ALTER TABLE author ADD COLUMN nickname VARCHAR(50)")
    run = cli("fix", "--yes", cwd=root, url=sqlite_url)
    assert run.code == 1, run.output
    assert "the tables were changed by hand: the models differ from the tables too " \
           "(author)" in run.output
    assert sorted(p.name for p in versions(root).glob("*.py")) == [
        "aaa111_create_author.py", "bbb222_create_post.py", "ccc333_add_author_email.py"]


# -- planning: what is refused, said before anything is written ---------------------------------

HEAD = SchemaSnapshot(frozenset({("table", "post"),
                                 ("column", "post", "id", "INTEGER", False, None),
                                 ("column", "post", "title", "VARCHAR(100)", True, None)}))
AR405 = F.AR405.finding("x", VersionTable())


def by_hand(*facts: tuple[object, ...], models: tuple[tuple[object, ...], ...] | None = None
            ) -> object:
    """A state at head a1 whose live schema is the head's with `facts` swapped in (same table
    and column: changed, else added), the models saying the same (or `models`)."""
    keys = {f[:3] for f in facts}
    live = SchemaSnapshot(frozenset({f for f in HEAD.facts if f[:3] not in keys} | set(facts)))
    said = live if models is None else SchemaSnapshot(
        frozenset({f for f in live.facts if f[:3] not in {m[:3] for m in models}} | set(models)))
    return replace(state(live=live, replay=Replay(("a1",), {"a1": HEAD}), drift=ModelDrift(())),
                   models=said)


def test_a_column_changed_in_place_is_refused_at_planning() -> None:
    """A type or nullability changed by hand may have cut values a fresh database would not
    reproduce: refused before anything is written, with a command that does the thing."""
    for changed, words in (
            (("column", "post", "title", "VARCHAR(200)", True, None),
             "post.title (VARCHAR(100) -> VARCHAR(200))"),
            (("column", "post", "title", "VARCHAR(100)", False, None),
             "post.title (VARCHAR(100) -> VARCHAR(100) NOT NULL)")):
        p = plan(by_hand(changed), AR405)
        assert p.steps == (), p.steps
        assert p.unrepairable[0][1] == (
            f"the tables were changed by hand: columns were changed in place ({words}): what "
            "that did to their values no revision can tell; write that revision by hand "
            "(`alembic revision -m \"...\"`, then its operations), then record it as applied "
            "here with `alembic stamp head`")
    # an added column beside it is still refused: the revision would carry the change too
    both = by_hand(("column", "post", "title", "VARCHAR(200)", True, None),
                   ("column", "post", "x", "INTEGER", True, None))
    assert "columns were changed in place" in plan(both, AR405).unrepairable[0][1]


def test_an_added_column_takes_the_tables_default_unless_the_models_give_another() -> None:
    added = ("column", "post", "score", "INTEGER", False, "0")
    p = plan(by_hand(added, models=(("column", "post", "score", "INTEGER", False, None),)),
             AR405)
    assert p.unrepairable == ()
    assert p.steps == (AbsorbDrift("a1", ("a1",), "column post.score INTEGER NOT NULL DEFAULT 0"),)
    assert "only additions, with the tables' server defaults" in p.steps[0].describe()
    other = plan(by_hand(added, models=(("column", "post", "score", "INTEGER", False, "1"),)),
                 AR405)
    assert other.steps == () and other.unrepairable[0][1] == (
        "the tables were changed by hand: the models give other server defaults than the "
        "tables (post.score (DEFAULT 1, the table's 0)): make the models' server_default say "
        "the table's, then run `alembic-repair fix` again")


def test_the_schemas_are_compared_once_per_plan() -> None:
    draft = Draft(by_hand(("column", "post", "x", "INTEGER", True, None)))  # type: ignore[arg-type]
    assert absorb_refusal(draft, AR405) is None
    assert draft.cache[CACHE_KEY] == Absorption(
        None, (("column", "post", "x", "INTEGER", True, None),))
    draft.cache[CACHE_KEY] = Absorption("from the cache", ())
    assert absorb_refusal(draft, AR405) == "from the cache" and absorbed(draft) == ""
