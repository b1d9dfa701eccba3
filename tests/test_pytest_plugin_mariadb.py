"""The pytest plugin on MariaDB: scratch schemas on the suite's server (``--alembic-repair-url``),
and once, a throwaway server the plugin starts itself (``alembic_repair_url = "mariadbd"``).

The projects are those of tests/test_pytest_plugin.py; the server is the suite's
``mariadb_server`` (its root URL: the plugin creates and drops its ``_ar_replay_*`` schemas).
"""

from __future__ import annotations

import os

import pytest
from test_pytest_plugin import ENABLED, NOISE, ddd444, project

from alembic_repair.testing.mariadb import MariaDBServer, find_binary
from alembic_repair.testing.scenarios import builders as b

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.mariadb


#: One hypothesis example: each costs a scratch schema and three migrations on the server.
ONE_EXAMPLE = ENABLED + 'alembic_repair_examples = "1"\n'


def run(pytester: pytest.Pytester, server: MariaDBServer, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*NOISE, f"--alembic-repair-url={server.root_url}", *args)


def test_good_history_passes_every_ready_test(pytester: pytest.Pytester,
                                               mariadb_server: MariaDBServer) -> None:
    project(pytester.path, ini=ONE_EXAMPLE)
    result = run(pytester, mariadb_server, "-v")
    result.assert_outcomes(passed=6)
    assert "alembic_repair::data_survives PASSED" in result.stdout.str()


def test_two_heads(pytester: pytest.Pytester, mariadb_server: MariaDBServer) -> None:
    project(pytester.path, extra=ddd444('op.add_column("post", sa.Column("x", sa.Integer()))',
                                        down="bbb222"))
    result = run(pytester, mariadb_server, "-k", "single_head or builds")
    result.assert_outcomes(failed=1, passed=1, deselected=4)
    result.stdout.fnmatch_lines(["2 heads: ccc333 *, ddd444 *"])


def test_lint_not_null_on_rows(pytester: pytest.Pytester, mariadb_server: MariaDBServer) -> None:
    post = (*b.POST, "status: Mapped[str] = mapped_column(String(20))")
    project(pytester.path, models=b.models_py(post=post), extra=ddd444(
        'op.add_column("post", sa.Column("status", sa.String(length=20), nullable=False))',
        'op.drop_column("post", "status")'))
    result = run(pytester, mariadb_server, "-k", "lint")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["AR502 warning *post.status*", "  fix: Add the column*"])


def test_data_migration_that_loses_rows(pytester: pytest.Pytester,
                                        mariadb_server: MariaDBServer) -> None:
    project(pytester.path, extra=ddd444('op.execute("DELETE FROM post")'), ini=ONE_EXAMPLE)
    result = run(pytester, mariadb_server, "-k", "data_survives")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(["*post*", "  fix: make the revision's data migration keep*"])


def test_throwaway_server_started_by_the_plugin(pytester: pytest.Pytester) -> None:
    """The one test that starts a second server: the plugin's own, for the whole session."""
    if find_binary("mariadbd", "mysqld") is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("mariadbd is not installed (under CI=true this is a failure)")
        pytest.skip("mariadbd is not installed")
    project(pytester.path, ini=ENABLED + 'alembic_repair_url = "mariadbd"\n')
    result = pytester.runpytest(*NOISE, "-k", "builds or up_down")
    result.assert_outcomes(passed=2, deselected=4)
