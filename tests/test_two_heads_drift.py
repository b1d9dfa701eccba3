"""Two heads on SQLite: no false "schema matches no revision" (AR405) for a column of the other
branch (issue 16). The replay runs the history in one line (``upgrade heads``), so the revision
replayed second is seen with the first branch's column too; a database at it lacks that column
rightly. `State.mixed_snapshots` marks such snapshots as unknown, never compared."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.command import downgrade

from alembic_repair import doctor
from alembic_repair.testing.scenarios import (
    AAA,
    AUTHOR,
    BBB,
    CCC,
    POST,
    aaa111,
    base_project,
    bbb222,
    ccc333,
    models_py,
    revision_py,
    run_alembic,
    upgrade,
)

# a second branch on bbb222 beside ccc333 (author.email): post.x, which the models have too
DDD444 = revision_py("ddd444", "bbb222", "add post x",
                     'op.add_column("post", sa.Column("x", sa.Integer(), nullable=True))',
                     'op.drop_column("post", "x")', date="2024-01-20 10:00:00.000000")


def test_a_database_at_either_head_gets_no_false_ar405(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, url = tmp_path / "proj", f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DATABASE_URL", url)
    base_project(root, url, models=models_py(AUTHOR, (*POST, "x: Mapped[int | None]")),
                 revisions={AAA: aaa111(), BBB: bbb222(), CCC: ccc333(),
                            "ddd444_add_post_x.py": DDD444}, upgrade_to="bbb222")
    mixed: set[str] = set()
    for head in ("ccc333", "ddd444"):  # from the fork, up one branch, then the other
        run_alembic(root, url, lambda config: downgrade(config, "bbb222"))
        upgrade(root, url, head)
        diagnosis = doctor(root)
        codes = {f.code for f in diagnosis.findings}
        assert "AR205" in codes and "AR405" not in codes, diagnosis.findings
        assert diagnosis.state.versions is not None
        assert diagnosis.state.versions.heads == (head,)
        mixed |= diagnosis.state.mixed_snapshots
    assert len(mixed & {"ccc333", "ddd444"}) == 1  # the one replayed second
