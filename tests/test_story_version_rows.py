"""Story: two alembic_version rows, one the ancestor of the other (issue 13).

A hand-written stamp (or a botched merge of two databases) left ``bbb222`` beside its own
descendant ``ccc333`` in alembic_version, and a new revision ``ddd444`` waits. Plain ``alembic
upgrade head`` fails ("... overlaps with other requested revisions"). ``fix --yes`` must keep
only the heads among the recorded revisions (``ccc333``; `repair/repairs/versions.py`
`version_rows`), then upgrade: writing the same two rows back would fail again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from stories import Story, check_story

from alembic_repair import Project, plan_fix
from alembic_repair.repair.steps import Stamp, Upgrade
from alembic_repair.testing.scenarios.builders import (
    AUTHOR,
    POST,
    base_project,
    execute,
    models_py,
    revision_py,
    upgrade,
    write_revisions,
)

if TYPE_CHECKING:
    from conftest import Backend


def build_version_rows_story(root: Path, url: str) -> None:
    """The base project at ccc333 with rows, a pending ddd444 (post.subtitle), and a second
    alembic_version row naming ccc333's ancestor bbb222."""
    base_project(root, url)
    post = (*POST, "subtitle: Mapped[str | None] = mapped_column(String(120))")
    (root / "app" / "models.py").write_text(models_py(AUTHOR, post), encoding="utf-8")
    write_revisions(root, {"ddd444_add_post_subtitle.py": revision_py(
        "ddd444", "ccc333", "add post subtitle",
        'op.add_column("post", sa.Column("subtitle", sa.String(length=120), nullable=True))',
        'op.drop_column("post", "subtitle")', date="2024-02-01 10:00:00.000000")})
    execute(url, "INSERT INTO alembic_version (version_num) VALUES ('bbb222')")
    with pytest.raises(Exception, match="overlaps"):
        upgrade(root, url)


STORY = Story("version_rows", build=build_version_rows_story)


def test_story_version_rows(backend: Backend, tmp_path: Path,
                            request: pytest.FixtureRequest) -> None:
    check_story(STORY, backend, request, tmp_path)


def test_plan_keeps_only_the_heads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap part of the story (SQLite, no subprocess): the stamp writes back ccc333 alone,
    not the two rows it found, and the upgrade follows."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build_version_rows_story(tmp_path, url)
    plan = plan_fix(Project.discover(tmp_path, url=url, strict=False))
    stamps = [s for s in plan.steps if isinstance(s, Stamp)]
    assert [(s.revisions, sorted(s.before)) for s in stamps] == [
        (("ccc333",), ["bbb222", "ccc333"])]
    assert plan.steps[-1] == Upgrade()
