"""Story: a unique NOT NULL column on a table with rows, after the upgrade already failed (issue
13, "What to build" item 1).

Revision ddd444 adds ``author.public_id`` (``String(36)``, ``unique=True``, ``nullable=False``,
``default=uuid.uuid4()``: evaluated once, and Python-side anyway, so existing rows never see
it). ``alembic upgrade head`` fails:

- MariaDB commits the ``ADD COLUMN`` (every row gets ``''``), then ``ADD UNIQUE`` fails with
  ``Duplicate entry ''``: ddd444 is half-applied (AR402);
- SQLite refuses the NOT NULL column without a default; nothing is committed (the revision
  stays pending, AR502/AR503).

``fix --yes`` rewrites ddd444 into three steps (add nullable, backfill a UUID per row, NOT NULL
+ unique: an empty database builds it too); on MariaDB it then gives the committed column's
repeated values a UUID each (`FillCommitted`) and completes the revision (`CompleteRevision`:
the column is skipped, the constraint built, ddd444 stamped); on SQLite it upgrades.

The NOT NULL variant (``status``, not unique, ``default="new"``): SQLite fails the same way and
fix backfills ``'new'``. MariaDB does not fail on it at all (every row silently gets ``''``), so
there the revision is left pending, as a user who read doctor first has it, and fix rewrites it
before the upgrade so the rows get ``'new'``.

The harness checks every row over the columns that existed before the repair; on MariaDB the
committed ``public_id`` existed, holding only the failed ADD COLUMN's ``''``, and giving those
rows distinct values is the repair: that column is left out of the harness's row check and
checked here instead (distinct, 36-character UUIDs; no other column changed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool
from stories import Story, check_story

from alembic_repair.testing.scenarios.builders import (
    AUTHOR,
    MODELS_HEADER,
    backend_of,
    base_project,
    models_py,
    revision_py,
    upgrade,
    write_revisions,
)

if TYPE_CHECKING:
    from conftest import Backend

FILE = "ddd444_add_author_column.py"
UNIQUE = ('op.add_column("author", sa.Column("public_id", sa.String(length=36), unique=True, '
          'nullable=False, default=uuid.uuid4()))')
NOT_NULL = ('op.add_column("author", sa.Column("status", sa.String(length=20), nullable=False, '
            'default="new"))')


def _models(line: str) -> str:
    return models_py(author=(*AUTHOR, line)).replace(
        MODELS_HEADER, MODELS_HEADER.replace('"""\n\n', '"""\n\nimport uuid\n', 1))


def _build(root: Path, url: str, column: str, upgrade_line: str, model_line: str, *,
           try_upgrade: bool) -> None:
    base_project(root, url)
    (root / "app" / "models.py").write_text(_models(model_line), encoding="utf-8")
    write_revisions(root, {FILE: revision_py(
        "ddd444", "ccc333", f"add author {column}", upgrade_line,
        f'op.drop_column("author", "{column}")', imports="import uuid",
        date="2024-01-22 10:00:00.000000")})
    if not try_upgrade:
        return
    with pytest.raises(Exception) as failed:  # the user's `alembic upgrade head`
        upgrade(root, url)
    assert "Duplicate entry" in str(failed.value) or "NOT NULL" in str(failed.value)


def build_unique(root: Path, url: str) -> None:
    """The base project with rows; ddd444 adds the unique public_id; the upgrade fails."""
    _build(root, url, "public_id", UNIQUE,
           "public_id: Mapped[str] = mapped_column(String(36), unique=True, "
           "default=uuid.uuid4)", try_upgrade=True)
    if backend_of(url) == "mariadb":  # half-applied: the column is there, every row ''
        assert _values(url, "public_id") == ["''", "''"]


def build_not_null(root: Path, url: str) -> None:
    """ddd444 adds status NOT NULL with a Python-side default; SQLite's upgrade fails, MariaDB's
    would silently succeed (so it is left pending there)."""
    _build(root, url, "status", NOT_NULL,
           'status: Mapped[str] = mapped_column(String(20), default="new")',
           try_upgrade=backend_of(url) == "sqlite")


def _values(url: str, column: str) -> list[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if column not in {c["name"] for c in inspect(conn).get_columns("author")}:
                return []
            return [repr(v) for v in conn.execute(
                text(f"SELECT {column} FROM author ORDER BY id")).scalars()]
    finally:
        engine.dispose()


UNIQUE_STORY = Story("unique_column", build_unique, rewritten=("author.public_id",))
NOT_NULL_STORY = Story("not_null_column", build_not_null)


def test_unique_column_after_failed_upgrade(backend: Backend, request: pytest.FixtureRequest,
                                            tmp_path: Path) -> None:
    check_story(UNIQUE_STORY, backend, request, tmp_path)
    values = _values(backend.url, "public_id")
    assert len(values) == 2 and len(set(values)) == 2, values
    assert all(len(v) == 38 and v.count("-") == 4 for v in values), values  # repr of a UUID
    rewritten = (tmp_path / "story" / "alembic" / "versions" / FILE).read_text()
    assert "# alembic-repair: add author.public_id in three steps (backfill uuid)" in rewritten


def test_not_null_column_after_failed_upgrade(backend: Backend, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    # the kill points are the unique story's on SQLite (rewrite, backup, upgrade): not again
    check_story(NOT_NULL_STORY, backend, request, tmp_path, kills=False)
    assert _values(backend.url, "status") == ["'new'", "'new'"]


# -- the parts, cheaply (SQLite in a file, no CLI) --------------------------------------------

GOLDEN = Path(__file__).parent / "golden" / "rewrite"


def test_backfills_are_read_back_from_the_rewritten_file(tmp_path: Path) -> None:
    from test_rewrite_golden import _schema

    from alembic_repair.rewrite import rewrite_unique_columns
    from alembic_repair.rewrite.unique_column import Backfill, read_backfills

    path = tmp_path / "bbb222.py"
    path.write_text((GOLDEN / "unique_column.before.py.golden").read_text())
    assert read_backfills(path) == ()  # not rewritten yet
    rewrite_unique_columns(path, schema=_schema(), expressions={"article.rank": "id * 10"})
    assert read_backfills(path) == (Backfill("article", "article_id", "id", "uuid"),
                                    Backfill("article", "rank", "id", "expression", "id * 10"))
    path.write_text((GOLDEN / "unique_column.before.py.golden").read_text().replace(
        "nullable=False, unique=True)", 'nullable=False, default="x")'))
    rewrite_unique_columns(path, schema=_schema())
    assert read_backfills(path)[1] == Backfill("article", "rank", "id", "constant", "x")


def test_fill_repeated_gives_repeated_and_null_rows_a_value_and_keeps_the_others(
        tmp_path: Path) -> None:
    from alembic_repair.rewrite.unique_column import Backfill, fill_repeated, repeated_values

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, u VARCHAR(36), n INT)"))
            conn.execute(text("INSERT INTO t VALUES (1, '', 0), (2, '', 0), (3, 'kept', 0), "
                              "(4, NULL, 7), (5, 'b', 30), (6, '', 0), (7, 'b', 5)"))
            conn.commit()
            uuid_fill = Backfill("t", "u", "id", "uuid")
            values = repeated_values(conn, uuid_fill)
            assert sorted(values or []) == ["", "b"]
            batches: list[int] = []
            filled = fill_repeated(conn, uuid_fill, values or [], batch_rows=2,
                                   after_batch=lambda: batches.append(1))
            rows: dict[int, str] = dict(conn.execute(text("SELECT id, u FROM t")).all())
            assert filled == 6 and len(batches) == 4  # 7 rows, 2 a batch: 4 ranges
            assert rows[3] == "kept" and len({rows[i] for i in (1, 2, 4, 5, 6, 7)}) == 6
            assert all(len(rows[i]) == 36 for i in (1, 2, 4, 5, 6, 7))
            assert repeated_values(conn, uuid_fill) == []
            number_fill = Backfill("t", "n", "id", "sequence")
            assert repeated_values(conn, number_fill, limit=0) is None  # too many: refused
            fill_repeated(conn, number_fill, repeated_values(conn, number_fill) or [])
            assert dict(conn.execute(text("SELECT id, n FROM t")).all()) == {
                1: 1, 2: 2, 3: 3, 4: 7, 5: 30, 6: 6, 7: 5}
    finally:
        engine.dispose()


def test_fills_are_planned_for_a_committed_column_whose_unique_constraint_failed() -> None:
    from alembic_repair.repair.steps import FillCommitted, fills_for

    done = [("column", "author", "public_id", "VARCHAR(36)", False, None),
            ("column", "post", "score", "INTEGER", True, None)]
    left = [("unique", "author", ("public_id",)), ("index", "post", ("score",)),
            ("unique", "post", ("title", "score"))]
    assert fills_for("ddd444", "v/d.py", done, left) == (
        FillCommitted("ddd444", "v/d.py", "author", "public_id"),)
    assert fills_for("ddd444", None, done, left) == ()
    assert FillCommitted("ddd444", "v/d.py", "author", "public_id").rewrites() == (
        ("author", "public_id"),)
