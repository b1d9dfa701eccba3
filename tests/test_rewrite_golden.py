"""Golden before/after files for every rewrite, idempotence, dry runs and refusals.

The inputs under tests/golden/rewrite/ carry comments, odd indentation and quoting on purpose:
whatever the transform does not own must come out byte for byte (``.golden``: not linted).
``UPDATE_GOLDEN=1`` rewrites the ``*.after.py.golden`` files (review the diff first).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, text

from alembic_repair.data.backups import Manifest, TableInfo
from alembic_repair.engine.revisions import reflect_user_tables
from alembic_repair.errors import ConfigError, RefusedUnsafe
from alembic_repair.rewrite import (
    Rewrite,
    RewriteRefused,
    rewrite_unique_columns,
    rewrite_upgrade_drops,
)

GOLDEN = Path(__file__).parent / "golden" / "rewrite"
AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

SCHEMA_SQL = (
    "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL, "
    "email VARCHAR(200))",
    "CREATE TABLE post (id INTEGER PRIMARY KEY, title VARCHAR(200) NOT NULL DEFAULT "
    "'untitled', author_id INTEGER NOT NULL REFERENCES author (id))",
    "CREATE INDEX ix_post_author_id ON post (author_id)",
    "CREATE TABLE article (id INTEGER PRIMARY KEY, title VARCHAR(100))",
)


def _schema(*extra: str) -> MetaData:
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            for statement in (*SCHEMA_SQL, *extra):
                conn.execute(text(statement))
            return reflect_user_tables(conn)
    finally:
        engine.dispose()


def _manifest(*tables: str) -> Manifest:
    return Manifest(Path("/backups/x"), "sqlite", "sqlite:///app.db", "2024-05-01T12:00:00",
                    tuple(TableInfo(t, ("id",), 1, "0" * 64) for t in tables))


CASES: dict[str, tuple[str, Callable[[Path, bool], Rewrite]]] = {
    "drops_soft": ("drops", lambda path, dry: rewrite_upgrade_drops(
        path, ["post", "author.email"], schema=_schema(), at=AT, dry_run=dry)),
    "drops_hard": ("drops", lambda path, dry: rewrite_upgrade_drops(
        path, ["post", "author.email"], schema=_schema(), at=AT, dry_run=dry, hard=True,
        backup=_manifest("author", "post"))),
    "unique_column": ("unique_column", lambda path, dry: rewrite_unique_columns(
        path, schema=_schema(), dry_run=dry, batch_rows=500)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, tmp_path: Path) -> None:
    before, run = CASES[case]
    path = tmp_path / f"{before}.py"
    shutil.copy(GOLDEN / f"{before}.before.py.golden", path)
    original = path.read_text()

    dry = run(path, True)
    assert dry.changed and path.read_text() == original  # a dry run writes nothing
    assert dry.diff.startswith(f"--- a/{path.name}\n+++ b/{path.name}\n")

    done = run(path, False)
    expected = GOLDEN / f"{case}.after.py.golden"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(done.source)
    assert done.source == expected.read_text()
    assert path.read_text() == done.source
    compile(done.source, str(path), "exec")

    again = run(path, False)  # idempotent
    assert not again.changed and again.diff == ""
    assert path.read_text() == done.source


def test_untouched_parts_are_kept_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "drops.py"
    shutil.copy(GOLDEN / "drops.before.py.golden", path)
    new = CASES["drops_soft"][1](path, False).source
    for kept in ("  # the post table is obsolete (ticket 42)\n",
                 "  op.add_column('author', sa.Column('nick',   sa.String(20), nullable=True))\n",
                 "  op.drop_column('author', 'nick')   # keep: the nick column is new\n",
                 "revision = 'ddd444'\ndown_revision = \"ccc333\"\n"):
        assert kept in new


def test_control_flow_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "eee555.py"
    shutil.copy(GOLDEN / "not_understood.before.py.golden", path)
    original = path.read_text()
    with pytest.raises(RewriteRefused) as err:
        rewrite_upgrade_drops(path, ["post"], schema=_schema(), at=AT)
    assert str(err.value) == (
        f"{path}: upgrade() has control flow (`for`), so which tables it touches cannot be "
        "told without running it; nothing was changed (edit the file by hand)")
    assert path.read_text() == original


def test_table_name_that_is_not_a_literal_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "eee555.py"
    source = (GOLDEN / "not_understood.before.py.golden").read_text().replace(
        "    for name in OLD:\n        op.drop_table(name)\n", "    op.drop_table(OLD[0])\n")
    path.write_text(source)
    with pytest.raises(RewriteRefused) as err:
        rewrite_upgrade_drops(path, ["post"], schema=_schema(), at=AT)
    assert str(err.value) == (
        f"{path}: upgrade() calls op.drop_table with a table name that is not a literal "
        "string; nothing was changed (edit the file by hand)")
    assert path.read_text() == source


def test_table_referenced_by_a_kept_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "drops.py"
    shutil.copy(GOLDEN / "drops.before.py.golden", path)
    original = path.read_text()
    schema = _schema("CREATE TABLE comment (id INTEGER PRIMARY KEY, "
                     "post_id INTEGER REFERENCES post (id))")
    with pytest.raises(RefusedUnsafe) as err:
        rewrite_upgrade_drops(path, ["post"], schema=schema, at=AT)
    assert str(err.value) == (
        "drop post: table comment references it (foreign key comment.post_id -> post.id) and "
        "is not being dropped; drop comment too, or drop that foreign key first")
    assert path.read_text() == original
    # dropping the child as well is fine, children first
    done = rewrite_upgrade_drops(path, ["post", "comment"], schema=schema, at=AT, dry_run=True)
    assert done.source.index("rename_table('comment'") < done.source.index("rename_table('post'")


def test_hard_drop_needs_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "drops.py"
    shutil.copy(GOLDEN / "drops.before.py.golden", path)
    with pytest.raises(RefusedUnsafe) as err:
        rewrite_upgrade_drops(path, ["post"], schema=_schema(), at=AT, hard=True)
    assert str(err.value) == (
        "hard drop of post: its downgrade recreates the tables empty, so the rows must be in a "
        "verified backup first (no backup was given); run `alembic-repair backup`, or drop "
        "softly (without --hard)")
    with pytest.raises(RefusedUnsafe, match="backup /backups/x lacks them"):
        rewrite_upgrade_drops(path, ["post"], schema=_schema(), at=AT, hard=True,
                              backup=_manifest("author"))


@pytest.mark.parametrize(("spec", "message"), [
    ("nope", "drop nope: the database has no table 'nope' (tables: article, author, post)"),
    ("post.nope", "drop post.nope: table post has no column 'nope' (columns: id, title, "
                  "author_id)"),
    ("post.", "drop 'post.': write TABLE or TABLE.COLUMN"),
    ("_ar_trash_20240101000000_x", "drop _ar_trash_20240101000000_x: "
                                   "_ar_trash_20240101000000_x is not an application table"),
])
def test_bad_names(spec: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "drops.py"
    shutil.copy(GOLDEN / "drops.before.py.golden", path)
    with pytest.raises(ConfigError) as err:
        rewrite_upgrade_drops(path, [spec], schema=_schema(), at=AT)
    assert str(err.value) == message


@pytest.mark.parametrize(("spec", "message"), [
    ("post.author_id", "drop post.author_id: it holds a foreign key to author.id; drop that "
                       "foreign key first (a revision of its own)"),
    ("post.id", "drop post.id: it is part of the primary key; drop the table instead"),
    ("author.id", "drop author.id: it is part of the primary key; drop the table instead"),
])
def test_unsafe_columns(spec: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "drops.py"
    shutil.copy(GOLDEN / "drops.before.py.golden", path)
    with pytest.raises(RefusedUnsafe) as err:
        rewrite_upgrade_drops(path, [spec], schema=_schema(), at=AT)
    assert str(err.value) == message


def test_unique_column_without_a_value_strategy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bbb222.py"
    path.write_text((GOLDEN / "unique_column.before.py.golden").read_text().replace(
        'sa.String(36), unique=True, nullable=False, default=uuid.uuid4',
        'sa.String(8), unique=True, nullable=False'))
    original = path.read_text()
    with pytest.raises(RewriteRefused) as err:
        rewrite_unique_columns(path, schema=_schema())
    assert str(err.value) == (
        f"{path}: no distinct value can be chosen for new column article.article_id "
        "(VARCHAR(8)) on a table with rows; pass expressions={'article.article_id': "
        "'<SQL per row>'} (or give it a server default); nothing was changed (edit the file "
        "by hand)")
    assert path.read_text() == original
    done = rewrite_unique_columns(path, schema=_schema(), dry_run=True, expressions={
        "article.article_id": "substr('0000000' || id, -8, 8)"})
    assert "sa.text(\"substr('0000000' || id, -8, 8)\")" in done.source


def test_empty_tables_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "bbb222.py"
    shutil.copy(GOLDEN / "unique_column.before.py.golden", path)
    done = rewrite_unique_columns(path, schema=_schema(), nonempty=set())
    assert not done.changed
    assert done.notes == ("article.article_id: table article has no rows, left as it is",
                          "article.rank: table article has no rows, left as it is")
