"""The pytest plugin (alembic_repair/pytest_plugin): each ready test passes on a good history
and fails with its one line on the history it guards against, on SQLite.

Every case runs pytest in-process (`pytester.runpytest`) on a small project written as text
(the scenarios' base project: author, post, history aaa111 -> bbb222 -> ccc333), selecting
only the ready test it is about with ``-k``. MariaDB: tests/test_pytest_plugin_mariadb.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alembic_repair.testing.scenarios import builders as b

pytest_plugins = ["pytester"]

ENABLED = "[tool.pytest.ini_options]\nalembic_repair = true\n"
NOISE = ("-p", "no:cacheprovider", "-p", "no:randomly", "-n", "0")


def project(root: Path, *, extra: dict[str, str] | None = None, models: str | None = None,
            ini: str = ENABLED, revisions: dict[str, str] | None = None) -> Path:
    """The base project under `root` (no database: the plugin builds its own), its pytest
    settings `ini`, plus revision files `extra`."""
    b.write_app(root, models)
    b.write_scaffold(root, "sqlite:///app.db")
    b.write_revisions(root, {**(b.base_revisions() if revisions is None else revisions),
                             **(extra or {})})
    with (root / "pyproject.toml").open("a", encoding="utf-8") as file:
        file.write("\n" + ini)
    return root


def ddd444(upgrade: str, downgrade: str = "pass", down: str = "ccc333") -> dict[str, str]:
    return {"ddd444_next.py": b.revision_py("ddd444", down, "next", upgrade, downgrade)}


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NOISE, *args)


def test_inert_unless_enabled(pytester: pytest.Pytester) -> None:
    project(pytester.path, ini="")
    pytester.makepyfile(test_app="def test_app():\n    pass\n")
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1)
    assert "alembic_repair::" not in result.stdout.str()


def test_enabled_by_p_option(pytester: pytest.Pytester) -> None:
    project(pytester.path, ini="")
    result = run(pytester, "-p", "alembic_repair", "-v", "-k", "single_head")
    result.stdout.fnmatch_lines(["*alembic_repair::single_head PASSED*"])
    result.assert_outcomes(passed=1, deselected=5)


def test_loading_imports_nothing_heavy() -> None:
    """The entry point loads the plugin into every pytest run: it must cost nothing."""
    code = ("import sys, alembic_repair.pytest_plugin; print(sorted({m.split('.')[0] for m in "
            "sys.modules} & {'sqlalchemy', 'alembic', 'hypothesis', 'pymysql', 'libcst'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_ini_chooses_the_ready_tests(pytester: pytest.Pytester) -> None:
    project(pytester.path, ini=ENABLED + 'alembic_repair_tests = "single_head, builds"\n')
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["alembic_repair::single_head", "alembic_repair::builds",
                                 "2 tests collected*"])
    assert "alembic_repair::doctor" not in result.stdout.str()


def test_good_history_passes_every_ready_test(pytester: pytest.Pytester) -> None:
    project(pytester.path)
    pytester.makepyfile(test_app="def test_app():\n    pass\n")
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(["*alembic_repair::single_head PASSED*",
                                 "*alembic_repair::builds PASSED*",
                                 "*alembic_repair::doctor PASSED*",
                                 "*alembic_repair::lint PASSED*",
                                 "*alembic_repair::data_survives PASSED*",
                                 "*alembic_repair::up_down PASSED*"])
    result.assert_outcomes(passed=7)
    # a run that names one test file does not get the ready tests
    run(pytester, "test_app.py").assert_outcomes(passed=1)


def test_two_heads(pytester: pytest.Pytester) -> None:
    project(pytester.path, extra=ddd444('op.add_column("post", sa.Column("x", sa.Integer()))',
                                        down="bbb222"))
    result = run(pytester, "-k", "single_head")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["*2 heads: ccc333 (alembic/versions/ccc333_add_author_email.py)"
                                 ", ddd444 (alembic/versions/ddd444_next.py)*",
                                 "  fix: merge them: alembic merge heads*"])
    assert "Traceback" not in result.stdout.str()


def test_unbuildable_history(pytester: pytest.Pytester) -> None:
    project(pytester.path, extra=ddd444('op.drop_column("author", "nickname")'))
    result = run(pytester, "-k", "builds")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines([
        "the history does not build an empty database: alembic/versions/ddd444_next.py:*"
        "upgrade failed:*nickname*", "  fix: fix the revision named*"])
    assert "Traceback" not in result.stdout.str()


def test_models_ahead_of_history_fail_alembic_check(pytester: pytest.Pytester) -> None:
    author = (*b.AUTHOR, "bio: Mapped[str | None] = mapped_column(Text)")
    project(pytester.path, models=b.models_py(author))
    result = run(pytester, "-k", "builds")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["alembic check: after `alembic upgrade heads` the models "
                                 "differ from the schema: *",
                                 "  fix: write a revision for the difference*"])
    # Alembic gives the diffs on the exception from 1.13.2 on (words); 1.13.0, the floor, only
    # in its message (its own repr, passed on as it is).
    out = result.stdout.str()
    assert ("differ from the schema: add_column author.bio" in out
            or "New upgrade operations detected: [('add_column', None, 'author', "
               "Column('bio', Text()" in out), out


def test_doctor_error_and_skip_codes(pytester: pytest.Pytester) -> None:
    """The history does not build (AR4xx error); skipping its code lets doctor pass."""
    project(pytester.path, extra=ddd444('op.drop_column("author", "nickname")'))
    result = run(pytester, "-k", "doctor")
    result.assert_outcomes(failed=1, deselected=5)
    out = result.stdout.str()
    assert "AR4" in out and "error" in out and "  fix: " in out
    codes = sorted({word[:5] for word in out.split() if word.startswith("AR4")})
    skip = f"alembic_repair_skip_codes = \"{' '.join(codes)}\"\n"
    (pytester.path / "pyproject.toml").write_text(
        (pytester.path / "pyproject.toml").read_text() + skip)
    run(pytester, "-k", "doctor").assert_outcomes(passed=1, deselected=5)


def test_lint_pending_drop_without_backup(pytester: pytest.Pytester) -> None:
    project(pytester.path, models=b.models_py(post=None),
            extra=ddd444('op.drop_table("post")', b.CREATE_POST))
    result = run(pytester, "-k", "lint")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["AR501 warning *post*",
                                 "  fix: `alembic-repair drop post --into ddd444`*"])


def test_lint_not_null_on_rows(pytester: pytest.Pytester) -> None:
    post = (*b.POST, "status: Mapped[str] = mapped_column(String(20))")
    project(pytester.path, models=b.models_py(post=post), extra=ddd444(
        'op.add_column("post", sa.Column("status", sa.String(length=20), nullable=False))',
        'op.drop_column("post", "status")'))
    result = run(pytester, "-k", "lint")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["AR502 warning *post.status*", "  fix: Add the column*"])


def test_data_migration_that_loses_rows(pytester: pytest.Pytester) -> None:
    project(pytester.path, extra=ddd444('op.execute("DELETE FROM post WHERE id > 1")'))
    result = run(pytester, "-k", "data_survives")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["*post*", "  fix: make the revision's data migration keep*"])


def test_downgrade_that_does_not_restore_the_schema(pytester: pytest.Pytester) -> None:
    project(pytester.path, extra=ddd444(
        'op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))',
        'op.drop_column("author", "bio")\nop.drop_index("ix_post_author_id", "post")'),
        models=b.models_py((*b.AUTHOR, "bio: Mapped[str | None] = mapped_column(Text)")))
    result = run(pytester, "-k", "up_down")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["downgrade to ccc333 does not restore its schema: missing "
                                 "index post(author_id)", "  fix: make downgrade() undo*"])


@pytest.mark.parametrize(("downgrade", "why"), [
    ("pass", "*ddd444_next.py: revision ddd444 has an empty downgrade()*"),
    ('raise NotImplementedError("irreversible")', "*ddd444_next.py:*downgrade to ccc333 failed:"
     " NotImplementedError: irreversible: up/down consistency cannot be checked"),
], ids=["empty", "raises"])
def test_up_down_skips_a_revision_without_downgrade(pytester: pytest.Pytester, downgrade: str,
                                                    why: str) -> None:
    project(pytester.path, extra=ddd444('op.execute("UPDATE author SET name = name")',
                                        downgrade))
    result = run(pytester, "-k", "up_down", "-rs")
    result.assert_outcomes(skipped=1, deselected=5)
    result.stdout.fnmatch_lines([why])


def test_project_outside_testpaths(pytester: pytest.Pytester) -> None:
    """The project in a subfolder the test paths leave out: the ready tests still run."""
    project(pytester.path / "backend", ini="")
    (pytester.path / "pyproject.toml").write_text(
        ENABLED + 'alembic_repair_project = "backend"\ntestpaths = ["tests"]\n')
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_app.py").write_text("def test_app():\n    pass\n")
    result = run(pytester, "-v", "-k", "app or single_head or builds")
    result.assert_outcomes(passed=3, deselected=4)
    result.stdout.fnmatch_lines(["*alembic_repair::builds PASSED*"])


def test_bad_option_is_one_line(pytester: pytest.Pytester) -> None:
    project(pytester.path, ini=ENABLED + "alembic_repair_released = \"nope\"\n")
    result = run(pytester, "-k", "up_down")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["alembic_repair_released = nope names no revision of "
                                 "alembic/versions"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(("option", "value", "least"), [
    ("alembic_repair_examples", "0", 1), ("alembic_repair_examples", "many", 1),
    ("alembic_repair_shrink_runs", "-1", 0)])
def test_bad_whole_number_option_is_one_line(pytester: pytest.Pytester, option: str, value: str,
                                             least: int) -> None:
    project(pytester.path, ini=ENABLED + f'{option} = "{value}"\n')
    result = run(pytester, "-k", "single_head")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines([f"{option} = '{value}' is not a whole number of {least} or more"])
    assert "Traceback" not in result.stdout.str()


def test_unreadable_revision_is_one_line_in_every_ready_test(pytester: pytest.Pytester) -> None:
    project(pytester.path, extra={"ddd444_next.py": "revision = 'ddd444'\ndef upgrade(:\n"})
    result = run(pytester, "-k", "single_head or up_down")
    result.assert_outcomes(failed=2, deselected=4)
    result.stdout.fnmatch_lines(["alembic/versions/ddd444_next.py:2: revision file cannot be "
                                 "read*"] * 2)
    assert "Traceback" not in result.stdout.str()


def test_env_py_that_connects_elsewhere_is_stopped(pytester: pytest.Pytester) -> None:
    """An env.py that ignores the scratch URL never runs a statement on its own database."""
    root = project(pytester.path)
    env_py = root / "alembic" / "env.py"
    b.edit(env_py, 'connection = config.attributes.get("connection")', "connection = None")
    b.edit(env_py, 'url = os.environ.get("DATABASE_URL") or config.get_main_option('
                   '"sqlalchemy.url")', 'url = f"sqlite:///{here / \'live.db\'}"')
    b.edit(env_py, "def database_url():\n", "def database_url():\n"
                   "    here = Path(config.config_file_name).resolve().parent\n")
    result = run(pytester, "-k", "builds")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["env.py connected to sqlite:///*live.db, not the scratch "
                                 "database (nothing ran there)", "  fix: let env.py use *"])
    live = root / "live.db"
    assert not live.exists() or live.stat().st_size == 0


def test_no_hypothesis_folder_in_the_project(pytester: pytest.Pytester,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis writes its storage (a ``constants/`` cache, even with ``database=None``) to
    ``.hypothesis/`` of the run's folder: the check points it at a temporary folder instead,
    and gives the user's own setting back afterwards (data_survives, and lint's rows)."""
    import hypothesis.configuration as configuration

    home = pytester.path / ".hypothesis"  # as a pytest run started in the project finds it
    monkeypatch.setattr(configuration, "__hypothesis_home_directory", home)
    project(pytester.path)
    pytester.makepyfile(test_app="LIMIT = 912345\ndef test_app():\n    assert LIMIT\n")
    run(pytester, "-k", "data_survives or lint").assert_outcomes(passed=2, deselected=5)
    assert not home.exists(), sorted(p.name for p in home.rglob("*"))
    assert getattr(configuration, "__hypothesis_home_directory") == home


def test_data_survives_skips_when_nothing_was_released(pytester: pytest.Pytester) -> None:
    """Released at base: no rows exist to carry, so a pass would prove nothing."""
    project(pytester.path, ini=ENABLED + 'alembic_repair_released = "base"\n')
    result = run(pytester, "-k", "data_survives", "-rs")
    result.assert_outcomes(skipped=1, deselected=5)
    result.stdout.fnmatch_lines(["*the released revision is base: there are no rows to carry; "
                                 "set alembic_repair_released to your last release*"])


def test_upgrade_failing_on_an_empty_database_is_no_data_loss(pytester: pytest.Pytester) -> None:
    """A revision that fails whatever the rows is a build failure, in builds and in
    data_survives alike, not rows lost."""
    project(pytester.path, extra=ddd444('op.drop_column("author", "nickname")'))
    result = run(pytester, "-k", "data_survives or builds")
    result.assert_outcomes(failed=2, deselected=4)
    result.stdout.fnmatch_lines([
        "the upgrade to ddd444 fails even on an empty database (whatever the rows): "
        "alembic/versions/ddd444_next.py:*nickname*", "  fix: fix the revision named*"])
    out = result.stdout.str()
    assert "the upgrade fails with these rows" not in out and "Traceback" not in out
