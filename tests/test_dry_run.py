"""A dry run is a plan, not an error (issue 16): without ``--yes`` every command that would
change something prints ``Plan (dry run, nothing changed):``, the plan, and ``Run again with
--yes to apply it.`` on stdout, nothing on stderr, and exits 5; exit 4 stays for a real
refusal. Two SQLite projects serve every case (a dry run changes nothing: each case proves it),
and the CLI runs in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import table_digest, tree_digest

from alembic_repair import api
from alembic_repair.cli import app
from alembic_repair.engine.project import Project
from alembic_repair.errors import EXIT_DRY_RUN, EXIT_REFUSED, DryRun, RefusedUnsafe
from alembic_repair.testing.scenarios import build

HEADING = "Plan (dry run, nothing changed):"
HINT = "Run again with --yes to apply it."
REMOTE = "mysql+pymysql://u:s3cret-pw@db.example.com/x"


Shared = dict[str, tuple[Path, str, Path]]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """"healthy" (rows, a backup) and "fm04_stray_file_in_versions" (fix plans one step)."""
    projects: Shared = {}
    for name in ("healthy", "fm04_stray_file_in_versions"):
        folder = tmp_path_factory.mktemp("dry")
        root, url = folder / "proj", f"sqlite:///{folder / 'live.db'}"
        build(name, root, url)
        projects[name] = (root, url, api.backup(Project.discover(root, url=url,
                                                                  strict=False)).path)
    yield projects


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        app.main(list(args))
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


@pytest.mark.parametrize("args, says", [
    (("fix",), "fix plan (revision files):"),
    (("reset",), "[destructive]"),
    (("squash",), "squash plan (up to "),
    (("drop", "post"), "  drop: would write alembic/versions/"),
    (("drop", "post", "--hard"), "  drop --hard post: would back up the tables, then write a "
                                 "revision that drops them for real"),
    (("trash", "drop", "post"), "  trash drop post: would rename table post (3 rows) to "
                                "_ar_trash_"),
    (("restore", "BACKUP"), ": would insert into "),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) else None)
def test_a_dry_run_prints_its_plan_on_stdout_and_exits_5(
        shared: Shared, capsys: pytest.CaptureFixture[str],
        args: tuple[str, ...], says: str) -> None:
    root, url, backup = shared["fm04_stray_file_in_versions" if args == ("fix",) else "healthy"]
    args = tuple(str(backup) if a == "BACKUP" else a for a in args)
    files, rows = tree_digest(root), table_digest(url)

    code, out, err = _main(capsys, "--project", str(root), "--url", url, *args)

    assert (code, err) == (EXIT_DRY_RUN, ""), (code, out, err)
    lines = out.splitlines()
    assert lines[0] == HEADING and lines[-1] == HINT, out
    assert out.count(HEADING) == 1 and out.count(HINT) == 1, out
    assert says in out, out
    assert "error" not in out and " 1 steps" not in out, out
    assert tree_digest(root) == files and table_digest(url) == rows


def test_a_refusal_is_still_exit_4_on_stderr(shared: Shared,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Without --yes on a database that is not local: refused (4), not a plan (5)."""
    root, _, _ = shared["healthy"]
    code, out, err = _main(capsys, "--project", str(root), "--url", REMOTE,
                           "trash", "drop", "post")
    assert code == EXIT_REFUSED and out == "", (code, out, err)
    assert err.startswith("error: trash drop post: refused, ") and err.count("\n") == 1, err
    assert "--allow-remote" in err and "s3cret" not in err


def test_the_api_still_refuses_a_dry_run_and_counts_agree(shared: Shared) -> None:
    """From Python nothing changed in kind: a `RefusedUnsafe` (a `DryRun`, exit code 5) whose
    line says "1 step", not "1 steps"."""
    root, url, _ = shared["fm04_stray_file_in_versions"]
    project = Project.discover(root, url=url, strict=False)
    with pytest.raises(RefusedUnsafe) as refused:
        api.fix(project, plan=api.plan_fix(project))
    assert isinstance(refused.value, DryRun) and refused.value.exit_code == EXIT_DRY_RUN
    assert str(refused.value) == ("fix: would run 1 step (revision files); nothing changed; "
                                  "pass --yes to do it")
    assert refused.value.action == "fix: would run 1 step (revision files)"
