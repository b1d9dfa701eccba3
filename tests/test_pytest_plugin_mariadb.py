"""The pytest plugin on MariaDB: scratch schemas on the suite's server (``--alembic-repair-url``),
and once, a throwaway server the plugin starts itself (``alembic_repair_url = "mariadbd"``).

The projects are those of tests/test_pytest_plugin.py; the server is the suite's
``mariadb_server`` (its root URL: the plugin creates and drops its ``_ar_replay_*`` schemas).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote

import pymysql
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


def _sql(server: MariaDBServer, *statements: str) -> list[tuple[object, ...]]:
    conn = pymysql.connect(host=server.host, port=server.port, user="root", password="",
                           autocommit=True)
    try:
        rows: list[tuple[object, ...]] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows.extend(cur.fetchall())
        return rows
    finally:
        conn.close()


def _leftovers(server: MariaDBServer) -> list[tuple[object, ...]]:
    return _sql(server, "SELECT User FROM mysql.user WHERE User LIKE '\\_ar\\_u\\_%'",
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME LIKE '\\_ar\\_replay\\_%'")


def test_revision_naming_another_schema_is_denied(pytester: pytest.Pytester,
                                                  mariadb_server: MariaDBServer) -> None:
    """The server is often the developer's own: a revision that names another schema runs as
    an account granted only the scratch schema, so it is denied there, nothing deleted."""
    app = "appdb_" + secrets.token_hex(4)
    mariadb_server.create_database(app)
    try:
        _sql(mariadb_server, f"CREATE TABLE `{app}`.sessions (id INT PRIMARY KEY)",
             f"INSERT INTO `{app}`.sessions VALUES (1), (2), (3)")
        project(pytester.path, extra=ddd444(f'op.execute("DELETE FROM {app}.sessions")'))
        result = run(pytester, mariadb_server, "-k", "builds")
        result.assert_outcomes(failed=1, deselected=5)
        result.stdout.fnmatch_lines(["*denied*"])
        assert "Traceback" not in result.stdout.str()
        assert _sql(mariadb_server, f"SELECT COUNT(*) FROM `{app}`.sessions") == [(3,)]
        assert _leftovers(mariadb_server) == []
    finally:
        mariadb_server.drop_database(app)


def test_account_without_create_user(pytester: pytest.Pytester,
                                     mariadb_server: MariaDBServer) -> None:
    user, password = "nocu_" + secrets.token_hex(3), secrets.token_hex(8)
    _sql(mariadb_server, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
         f"GRANT ALL ON `\\_ar\\_replay\\_%`.* TO '{user}'@'%'")
    try:
        project(pytester.path)
        url = (f"mysql+pymysql://{user}:{quote(password)}@{mariadb_server.host}:"
               f"{mariadb_server.port}/")
        result = pytester.runpytest(*NOISE, f"--alembic-repair-url={url}", "-k", "builds")
        result.assert_outcomes(failed=1, deselected=5)
        result.stdout.fnmatch_lines(["*may not create the scratch account*CREATE USER*"
                                     "alembic_repair_url = mariadbd*"])
        assert _leftovers(mariadb_server) == []
    finally:
        _sql(mariadb_server, f"DROP USER '{user}'@'%'")


#: a conftest in the pytester project: each throwaway server the plugin starts, one line
COUNTING = """
import os
import alembic_repair.testing.mariadb as m

_start = m.throwaway_server


def _counted(*args, **kwargs):
    with open(os.environ["AR_STARTS"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return _start(*args, **kwargs)


m.throwaway_server = _counted
"""


def test_throwaway_server_started_by_the_plugin(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The one test that starts a second server: the plugin's own, for the whole session,
    started once by xdist's controller for both workers."""
    if find_binary("mariadbd", "mysqld") is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("mariadbd is not installed (under CI=true this is a failure)")
        pytest.skip("mariadbd is not installed (a skip only outside CI=true)")
    project(pytester.path, ini=ENABLED + 'alembic_repair_url = "mariadbd"\n')
    pytester.makeconftest(COUNTING)
    starts = Path(pytester.path) / "starts.log"
    monkeypatch.setenv("AR_STARTS", str(starts))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly",
                                           "-n", "2", "-k", "builds or up_down")
    result.assert_outcomes(passed=2)  # xdist does not report the deselected
    assert len(starts.read_text().splitlines()) == 1
