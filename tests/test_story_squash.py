"""Story: squash after an adopted baseline, after a bridge (test_story_bridge) and after a
merge, on SQLite and MariaDB: one head, the database at it, every row kept, a new database
builds from the squashed history and `alembic check` is clean.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from alembic_repair.testing.scenarios.builders import (
    AUTHOR,
    POST,
    VERSIONS,
    base_project,
    create_all,
    insert_rows,
    models_py,
    revision_py,
    upgrade,
    write_app,
    write_revisions,
    write_scaffold,
)
from tests import test_story_bridge
from tests.helpers import cli
from tests.test_history_repairs import (
    assert_repaired,
    down_revision,
    fresh_url,  # noqa: F401  (fixture)
    user_rows,
)

BIO = "bio: Mapped[str | None] = mapped_column(Text)"


def heads(root: Path) -> list[str]:
    ids = {p.name.split("_")[0]: down_revision(p) for p in (root / VERSIONS).glob("*.py")}
    named = {d for parents in ids.values() if parents
             for d in ((parents,) if isinstance(parents, str) else parents)}
    return sorted(set(ids) - named)


def adopted(root: Path, url: str) -> None:
    """A database create_all() made, adopted by fix (a baseline revision written and
    stamped), then a data revision (the schema stays the baseline's: squashing up to it
    gives the baseline's content, once refused as "the baseline's id is already taken"), a
    column, and a data revision filling it."""
    write_app(root)
    write_scaffold(root, url)
    create_all(root, url)
    insert_rows(url)
    run = cli("fix", "--yes", cwd=root, url=url)
    assert run.code == 0 and "adopt" in run.output, run.output
    (baseline,) = heads(root)
    (root / "app" / "models.py").write_text(models_py((*AUTHOR, BIO), POST), encoding="utf-8")
    write_revisions(root, {
        "ddd444_fix_names.py": revision_py(
            "ddd444", baseline, "fix names",
            """op.execute("UPDATE author SET name = 'Ada' WHERE name = 'Ada L.'")""",
            """op.execute("UPDATE author SET name = 'Ada L.' WHERE name = 'Ada'")""",
            date="2024-02-01 10:00:00.000000"),
        "eee555_add_bio.py": revision_py(
            "eee555", "ddd444", "add bio",
            'op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))',
            'op.drop_column("author", "bio")', date="2024-03-01 10:00:00.000000"),
        "fff666_fill_bio.py": revision_py(
            "fff666", "eee555", "fill bio",
            """op.execute("UPDATE author SET bio = '-' WHERE bio IS NULL")""",
            """op.execute("UPDATE author SET bio = NULL WHERE bio = '-'")""",
            date="2024-03-02 10:00:00.000000")})
    upgrade(root, url)


def bridged(root: Path, url: str) -> None:
    test_story_bridge.build(root, url)
    run = cli("fix", "--yes", cwd=root, url=url)
    assert run.code == 0, run.output


def merged(root: Path, url: str) -> None:
    """Two branches on ccc333 (a column each on author and post), joined by a merge."""
    models = models_py((*AUTHOR, BIO), (*POST, "score: Mapped[int | None]"))
    base_project(root, url, models=models)
    write_revisions(root, {
        "ddd444_add_bio.py": revision_py(
            "ddd444", "ccc333", "add bio",
            'op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))',
            'op.drop_column("author", "bio")', date="2024-03-01 10:00:00.000000"),
        "eee555_add_score.py": revision_py(
            "eee555", "ccc333", "add score",
            'op.add_column("post", sa.Column("score", sa.Integer(), nullable=True))',
            'op.drop_column("post", "score")', date="2024-03-01 11:00:00.000000"),
        "fff666_merge.py": revision_py(
            "fff666", ("ddd444", "eee555"), "merge", "pass", "pass",  # type: ignore[arg-type]
            date="2024-03-02 10:00:00.000000")})
    upgrade(root, url, "heads")


STORIES = {"adopted": adopted, "bridged": bridged, "merged": merged}
#: a revision in the middle of each story's history to squash up to
MIDDLE = {"adopted": "ddd444", "bridged": "ccc333", "merged": "ccc333"}


@pytest.mark.parametrize("story", sorted(STORIES))
def test_squash_to_head(story: str, tmp_path: Path, backend,
                        fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    root = tmp_path / "proj"
    root.mkdir()
    STORIES[story](root, backend.url)
    rows = user_rows(backend.url)
    if story == "bridged" and backend.name == "sqlite":  # ddd444's rows will not reach a
        dry = cli("squash", cwd=root, url=backend.url)  # new database: said
        assert dry.code == 5 and "note: ddd444 change(s) rows" in dry.output, dry.output

    run = cli("squash", "--yes", cwd=root, url=backend.url)

    assert run.code == 0, run.output
    assert ("change(s) rows" in run.output) == (story != "merged"), run.output  # data revs
    assert len(list((root / VERSIONS).glob("*.py"))) == 1
    assert_repaired(root, backend.url, rows, fresh_url(backend.url))


@pytest.mark.parametrize("story", sorted(STORIES))
def test_squash_to_a_middle_revision(story: str, tmp_path: Path, sqlite_url: str,
                                     fresh_url: Callable[[str], str]) -> None:  # noqa: F811
    root = tmp_path / "proj"
    root.mkdir()
    STORIES[story](root, sqlite_url)
    rows = user_rows(sqlite_url)
    (head,) = heads(root)

    run = cli("squash", "--yes", "--to", MIDDLE[story], cwd=root, url=sqlite_url)

    assert run.code == 0, run.output
    assert heads(root) == [head]
    assert_repaired(root, sqlite_url, rows, fresh_url(sqlite_url))
    (base,) = [p.name.split("_")[0] for p in (root / VERSIONS).glob("*.py")
               if down_revision(p) is None]
    again = cli("squash", "--yes", "--to", base, cwd=root, url=sqlite_url)
    assert again.code == 0 and "nothing to squash" in again.output, again.output
