"""Scenarios whose database disagrees with the history or the models: a wrong or missing version
row, a half-applied revision, hand-made changes, orphan tables, junk values."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import DBAPIError

from .builders import (
    AUTHOR,
    POST,
    base_project,
    base_revisions,
    create_all,
    execute,
    insert_rows,
    models_py,
    revision_py,
    stamp,
    upgrade,
    versions,
    write_app,
    write_revisions,
    write_scaffold,
)


def fm08_version_rows_without_pk(root: Path, url: str) -> None:
    base_project(root, url, upgrade_to="bbb222")
    execute(url, "DROP TABLE alembic_version",
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
            *["INSERT INTO alembic_version (version_num) VALUES ('bbb222')"] * 3)


NAME_INDEXED = (AUTHOR[0], "name: Mapped[str] = mapped_column(String(100), index=True)",
                AUTHOR[2])


def fm08_version_num_too_short(root: Path, url: str) -> None:
    base_project(root, url, models=models_py(NAME_INDEXED))
    execute(url, "ALTER TABLE alembic_version MODIFY version_num VARCHAR(8) NOT NULL")
    write_revisions(root, {"4d2f0a9c1b7e_index_author_name.py": revision_py(
        "4d2f0a9c1b7e", "ccc333", "index author name",
        'op.create_index(op.f("ix_author_name"), "author", ["name"], unique=False)',
        'op.drop_index(op.f("ix_author_name"), table_name="author")',
        date="2024-02-01 10:00:00.000000")})


def fm09_create_all(root: Path, url: str) -> None:
    write_app(root)
    write_scaffold(root, url)
    write_revisions(root, base_revisions())
    create_all(root, url)
    insert_rows(url)


def fm09_empty_version_table(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "DELETE FROM alembic_version")


DDD444_HALF = "ddd444_author_bio_post_summary.py"


def fm13_half_applied(root: Path, url: str) -> None:
    base_project(root, url)
    author = (AUTHOR[0], AUTHOR[1], "email: Mapped[str | None] = mapped_column(String(200), "
              "index=True)", "bio: Mapped[str | None] = mapped_column(Text)")
    post = (*POST, "summary: Mapped[str | None] = mapped_column(String(300))")
    (root / "app" / "models.py").write_text(models_py(author, post), encoding="utf-8")
    write_revisions(root, {DDD444_HALF: revision_py(
        "ddd444", "ccc333", "author bio, post summary, index on email", '''
            op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))
            op.add_column("post", sa.Column("summary", sa.String(length=300), nullable=True))
            op.create_index(op.f("ix_author_email"), "author", ["emial"], unique=False)
        ''', '''
            op.drop_index(op.f("ix_author_email"), table_name="author")
            op.drop_column("post", "summary")
            op.drop_column("author", "bio")
        ''', date="2024-02-01 10:00:00.000000")})
    try:
        upgrade(root, url)
    except DBAPIError:
        return  # (1072, "Key column 'emial' doesn't exist in table"): two columns committed
    raise RuntimeError("ddd444 was expected to fail on its third operation")


def fm13_half_applied_corrected(root: Path, url: str) -> None:
    fm13_half_applied(root, url)
    path = versions(root) / DDD444_HALF
    path.write_text(path.read_text(encoding="utf-8").replace('["emial"]', '["email"]'),
                    encoding="utf-8")


def fm15_wrong_stamp_head(root: Path, url: str) -> None:
    base_project(root, url, upgrade_to="bbb222")
    stamp(root, url, "head")


def fm15_manual_alter(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "ALTER TABLE author ADD COLUMN x INTEGER", "UPDATE author SET x = id * 10")


def fm24_model_removed(root: Path, url: str) -> None:
    base_project(root, url)
    (root / "app" / "models.py").write_text(models_py(post=None), encoding="utf-8")


def fm24_orphan_table(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "CREATE TABLE legacy_stats (id INTEGER NOT NULL PRIMARY KEY, "
                 "day VARCHAR(10) NOT NULL, hits INTEGER NOT NULL)",
            "INSERT INTO legacy_stats (id, day, hits) VALUES "
            "(1, '2023-12-30', 120), (2, '2023-12-31', 98)")


def fm03_behind_head(root: Path, url: str) -> None:
    base_project(root, url, upgrade_to="bbb222")


def fm45_sqlite_junk(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "UPDATE post SET views = 'abc' WHERE id = 2",
            "UPDATE post SET created_at = 'yesterday' WHERE id = 3")
