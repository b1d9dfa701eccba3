"""Rewritten revisions run: upgrade then downgrade on SQLite and MariaDB with rows in the tables,
and every row is back (row checksums, `backups.table_checksum`), hard drops via the backup."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from alembic_repair.data.backups import backup, restore, table_checksum
from alembic_repair.data.trash import list_trash
from alembic_repair.engine.project import Project
from alembic_repair.engine.revisions import reflect_user_tables
from alembic_repair.repair.drop import write_drop_revision
from alembic_repair.rewrite import rewrite_unique_columns, rewrite_upgrade_drops
from alembic_repair.testing import scenarios


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def checksums(url: str) -> dict[str, tuple[int, str]]:
    """(rows, checksum over the columns in name order) of every table, trash excluded."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            result = {}
            for name in sorted(inspect(conn).get_table_names()):
                if name.startswith("_ar_trash_"):
                    continue
                columns = sorted(c["name"] for c in inspect(conn).get_columns(name))
                found = table_checksum(conn, name, columns)
                result[name] = (found.rows, found.checksum)
            return result
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def downgrade(root: Path, url: str, target: str = "-1") -> None:
    scenarios.run_alembic(root, url, lambda config: command.downgrade(config, target))


def reflected(url: str):  # noqa: ANN201
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return reflect_user_tables(conn), conn.dialect
    finally:
        engine.dispose()


def _hand_written_drop(root: Path) -> Path:
    """ddd444: what users type: drop post by hand, and author.email; downgrade ``pass``."""
    path = scenarios.versions(root) / "ddd444_drop_post.py"
    path.write_text(scenarios.revision_py("ddd444", "ccc333", "drop post", '''
        # post is obsolete
        op.drop_index(op.f("ix_post_author_id"), table_name="post")
        op.drop_table("post")
        op.drop_column("author", "email")   # not needed any more
    ''', "pass"))
    return path


def test_soft_drop_into_existing_revision(tmp_path: Path, backend) -> None:
    root = tmp_path / "proj"
    scenarios.base_project(root, backend.url)
    before = checksums(backend.url)
    path = _hand_written_drop(root)
    schema, dialect = reflected(backend.url)
    done = rewrite_upgrade_drops(path, ["post", "author.email"], schema=schema, dialect=dialect)
    assert done.changed
    assert "op.drop_table(\"post\")" not in done.source
    assert rewrite_upgrade_drops(path, ["post", "author.email"], schema=schema,
                                 dialect=dialect).changed is False

    scenarios.upgrade(root, backend.url)
    assert "post" not in tables(backend.url)
    assert "email" not in [c["name"] for c in inspect(create_engine(backend.url)).get_columns(
        "author")]
    project = Project.discover(root, url=backend.url)
    listed = {e.table for e in list_trash(project)}
    assert "post" in listed  # the trash listing learns it from the name

    downgrade(root, backend.url)
    assert checksums(backend.url) == before
    assert not [t for t in tables(backend.url) if t.startswith("_ar_trash_")
                and "author__email" in t]  # the column's trash table is gone again


def test_new_drop_revision_soft_then_hard_with_backup(tmp_path: Path, backend) -> None:
    root = tmp_path / "proj"
    scenarios.base_project(root, backend.url)
    project = Project.discover(root, url=backend.url)
    before = checksums(backend.url)

    engine = create_engine(backend.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            new = write_drop_revision(project, conn, ["author", "post"])
    finally:
        engine.dispose()
    assert new.path.exists() and f"revision: str = {new.revision!r}" in new.rewrite.source
    assert new.rewrite.source.index("rename_table('post'") < new.rewrite.source.index(
        "rename_table('author'")  # children first
    scenarios.upgrade(root, backend.url)
    assert not tables(backend.url) & {"post", "author"}
    downgrade(root, backend.url)
    assert checksums(backend.url) == before
    new.path.unlink()

    manifest = backup(project)
    engine = create_engine(backend.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            hard = write_drop_revision(project, conn, ["post", "author.email"], hard=True,
                                       backup=manifest)
    finally:
        engine.dispose()
    scenarios.upgrade(root, backend.url)
    assert "post" not in tables(backend.url)
    downgrade(root, backend.url)
    assert checksums(backend.url)["post"][0] == 0  # recreated empty: rows are in the backup
    report = restore(project, manifest.path, yes=True)
    assert "post" in str(report)
    after = checksums(backend.url)
    assert after["post"] == before["post"]
    assert after["alembic_version"] == before["alembic_version"]
    assert hard.rewrite.source.count("alembic-repair: hard drop") == 2


def test_dry_run_writes_no_revision(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    scenarios.base_project(root, sqlite_url)
    project = Project.discover(root, url=sqlite_url)
    files = sorted(scenarios.versions(root).glob("*.py"))
    engine = create_engine(sqlite_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            new = write_drop_revision(project, conn, ["post"], dry_run=True)
    finally:
        engine.dispose()
    assert sorted(scenarios.versions(root).glob("*.py")) == files
    assert new.rewrite.diff.startswith("--- /dev/null\n")
    assert "+    op.rename_table('post', '_ar_trash_" in new.rewrite.diff


ARTICLE_MODELS = '''
"""The application's models."""

import uuid

from sqlalchemy import String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "article"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    article_id: Mapped[str] = mapped_column(String(36), unique=True, default=uuid.uuid4)
'''

CREATE_ARTICLE = scenarios.revision_py("aaa111", None, "create article", '''
    op.create_table(
        "article",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
''', 'op.drop_table("article")')

ADD_ARTICLE_ID = scenarios.revision_py("bbb222", "aaa111", "article id", '''
    # the public id, as the model says: String(36), unique, default=uuid.uuid4
    op.add_column("article", sa.Column("article_id", sa.String(36), unique=True,
                                       nullable=False, default=uuid.uuid4))
    op.add_column("article", sa.Column("rank", sa.Integer(), nullable=False, unique=True))
''', '''
    op.drop_column("article", "rank")
    op.drop_column("article", "article_id")
''', imports="import uuid")


def test_seed_unique_not_null_column_on_article(tmp_path: Path, backend) -> None:
    root = tmp_path / "proj"
    scenarios.write_app(root, textwrap.dedent(ARTICLE_MODELS))
    scenarios.write_scaffold(root, backend.url)
    scenarios.write_revisions(root, {"aaa111_article.py": CREATE_ARTICLE,
                                     "bbb222_article_id.py": ADD_ARTICLE_ID})
    scenarios.upgrade(root, backend.url, "aaa111")
    rows = [{"id": i * 3, "title": f"title {i}", "body": None if i % 4 else f"body {i}"}
            for i in range(1, 24)]
    engine = create_engine(backend.url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO article (id, title, body) VALUES (:id, :title, :body)"),
                         rows)
    finally:
        engine.dispose()
    before = checksums(backend.url)

    path = scenarios.versions(root) / "bbb222_article_id.py"
    schema, dialect = reflected(backend.url)
    done = rewrite_unique_columns(path, schema=schema, batch_rows=5, dialect=dialect)
    assert done.notes == ("article.article_id: three steps, backfill uuid",
                          "article.rank: three steps, backfill sequence")
    scenarios.upgrade(root, backend.url)

    engine = create_engine(backend.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            got = conn.execute(text("SELECT id, title, body, article_id, rank FROM article "
                                    "ORDER BY id")).all()
            uniques = inspect(conn).get_unique_constraints("article")
            nullable = {c["name"]: c["nullable"] for c in inspect(conn).get_columns("article")}
    finally:
        engine.dispose()
    assert [(r.id, r.title, r.body) for r in got] == [(r["id"], r["title"], r["body"])
                                                     for r in rows]
    ids = [r.article_id for r in got]
    assert len(set(ids)) == len(rows) and all(len(i) == 36 for i in ids)
    assert [r.rank for r in got] == [r["id"] for r in rows]
    assert {tuple(u["column_names"]) for u in uniques} >= {("article_id",), ("rank",)}
    assert nullable["article_id"] is False and nullable["rank"] is False

    downgrade(root, backend.url)
    assert checksums(backend.url) == before


GOLDEN = Path(__file__).parent / "golden" / "rewrite"


def test_golden_inputs_run_after_the_rewrite(tmp_path: Path, backend) -> None:
    """The golden inputs themselves (comments, odd formatting, batch blocks), rewritten on a
    real database with rows: upgrade, then downgrade gives every row back."""
    root = tmp_path / "proj"
    scenarios.base_project(root, backend.url)
    scenarios.write_revisions(root, {"aaa222_article.py": CREATE_ARTICLE.replace(
        "down_revision: Union[str, Sequence[str], None] = None",
        "down_revision: Union[str, Sequence[str], None] = 'ccc333'").replace(
        "revision: str = 'aaa111'", "revision: str = 'aaa222'")})
    scenarios.upgrade(root, backend.url)
    scenarios.execute(backend.url, *(
        f"INSERT INTO article (id, title) VALUES ({i}, 'title {i}')" for i in range(1, 8)))
    before = checksums(backend.url)
    unique = scenarios.versions(root) / "bbb333_unique.py"
    unique.write_text((GOLDEN / "unique_column.before.py.golden").read_text().replace(
        '"aaa111"', '"aaa222"').replace('"bbb222"', '"bbb333"'))
    drops = scenarios.versions(root) / "ddd444_drops.py"
    drops.write_text((GOLDEN / "drops.before.py.golden").read_text().replace(
        '"ccc333"', '"bbb333"'))
    schema, dialect = reflected(backend.url)
    assert rewrite_unique_columns(unique, schema=schema, dialect=dialect, batch_rows=3).changed
    assert rewrite_upgrade_drops(drops, ["post", "author.email"], schema=schema,
                                 dialect=dialect).changed
    scenarios.upgrade(root, backend.url)
    assert "post" not in tables(backend.url)
    downgrade(root, backend.url, "aaa222")
    assert checksums(backend.url) == before
