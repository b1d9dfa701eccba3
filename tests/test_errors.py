"""Every bad input: one ``error:`` line, its own exit code, no traceback, no password, no change.

Each case runs the real CLI (``python -m alembic_repair bootstrap``) on a real project under
``tmp_path`` and checks, besides the exact message and exit code, that the project folder (and
the database, where there is one) is byte-for-byte what it was before the run.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

import pytest
from helpers import Run, cli, table_digest, tree_digest, write_project
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

import alembic_repair
from alembic_repair.errors import EXIT_CONFIG, EXIT_DATABASE, EXIT_PROBLEMS

if TYPE_CHECKING:  # conftest is not imported at runtime (pytest owns that module)
    from conftest import MariaDBServer

#: The `app` user's password on the test server (conftest.APP_PASSWORD).
APP_PASSWORD = "p%ss@w:rd/#?"
#: A wrong password with the characters that break naive URL handling.
WRONG_PASSWORD = "n0t%it@all"

# The "what to do" endings of the messages.
REHINT_INI = (
    "fix that line, or move the file away and run `alembic-repair bootstrap` to write a fresh one"
)
REHINT_HISTORY = "fix or restore that revision file (git checkout), then run bootstrap again"
REHINT_ENV = (
    "fix the import (is prepend_sys_path = %(here)s in alembic.ini?), or pass --models module:Base"
)
REHINT_UNREACHABLE = (
    "start the server, or fix the host or port (inside Docker use the compose service name)"
)


# ---------------------------------------------------------------------------------------
# Checks shared by every case
# ---------------------------------------------------------------------------------------


def spellings(password: str) -> set[str]:
    """The password as it may appear in output: raw, URL-encoded, and with '%' doubled."""
    found = {password, quote(password), quote(password, safe=""), quote_plus(password)}
    return found | {s.replace("%", "%%") for s in found}


def assert_no_secret(run: Run, *passwords: str) -> None:
    __tracebackhide__ = True
    for password in (APP_PASSWORD, *passwords):
        for spelling in spellings(password):
            assert spelling not in run.output, f"password spelling {spelling!r} printed"


def assert_error(run: Run, code: int, message: str, *passwords: str) -> None:
    """Exactly one stderr line, ``error: MESSAGE``; exit `code`; no traceback, no password."""
    __tracebackhide__ = True
    assert run.stderr == f"error: {message}\n"
    assert run.code == code, run
    assert "Traceback" not in run.output
    assert_no_secret(run, *passwords)


def paths(root: Path) -> list[str]:
    """Every file and folder under `root` (caches excluded), including the ones tree_digest
    ignores (*.db, *.lock): a failed run must not leave a new database file behind either."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if "__pycache__" not in p.parts
    )


def state(root: Path, url: str | None = None) -> tuple[Any, ...]:
    return tree_digest(root), paths(root), table_digest(url) if url is not None else None


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj").resolve()


@pytest.fixture
def bootstrapped(proj: Path, sqlite_url: str) -> Path:
    """`proj` after one successful bootstrap on SQLite (alembic/ and one revision written)."""
    first = cli("bootstrap", cwd=proj, url=sqlite_url)
    assert first.code == 0, first
    return proj


# ---------------------------------------------------------------------------------------
# 1-5, 19: alembic.ini that cannot be used (CLI and Python API)
# ---------------------------------------------------------------------------------------


def _line(text: str, key: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(key))


INI_CASES: dict[str, tuple[str, Any]] = {
    "garbage-line": (
        "[alembic]\nscript_location = %(here)s/alembic\nthis is not ini\n",
        lambda ini, text: (
            f"{ini}:3: cannot be parsed ('this is not ini' is neither key = value nor a "
            f"[section] header); {REHINT_INI}"
        ),
    ),
    "text-before-section": (
        "hello there\n[alembic]\nscript_location = %(here)s/alembic\n",
        lambda ini, text: (
            f"{ini}:1: cannot be parsed (text before the first [section] header); "
            f"{REHINT_INI}"
        ),
    ),
    "no-alembic-section": (
        "[loggers]\nkeys = root\n",
        lambda ini, text: (
            f"{ini}: no [alembic] section; add one with script_location, or move the file away "
            "and run `alembic-repair bootstrap`"
        ),
    ),
    "no-script-location": (
        "[alembic]\nprepend_sys_path = .\n",
        lambda ini, text: (
            f"{ini}: [alembic] has no script_location; add `script_location = %(here)s/alembic`"
        ),
    ),
    "raw-percent-in-url": (
        "[alembic]\nscript_location = %(here)s/alembic\nprepend_sys_path = %(here)s\n"
        "sqlalchemy.url = mysql+pymysql://app:p%ss@127.0.0.1/app\n",
        lambda ini, text: (
            f"{ini}:{_line(text, 'sqlalchemy.url')}: sqlalchemy.url contains a '%' that "
            "alembic.ini reads as interpolation; write each '%' as '%%', or remove the line and "
            "set DATABASE_URL"
        ),
    ),
}


def _bad_ini(proj: Path, case: str) -> tuple[Path, str]:
    text, expected = INI_CASES[case]
    ini = proj / "alembic.ini"
    ini.write_text(text)
    return ini, expected(ini, text)


@pytest.mark.parametrize("case", INI_CASES)
def test_bad_alembic_ini(proj: Path, case: str) -> None:
    _ini, message = _bad_ini(proj, case)
    before = state(proj)
    run = cli("bootstrap", cwd=proj)
    assert_error(run, EXIT_CONFIG, message, "p%ss")
    assert "%ss" not in run.output  # not even the fragment ConfigParser complains about
    assert state(proj) == before


@pytest.mark.parametrize("case", INI_CASES)
def test_bad_alembic_ini_through_the_python_api(
    proj: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    _ini, message = _bad_ini(proj, case)
    before = state(proj)
    with pytest.raises(alembic_repair.ConfigError) as caught:
        alembic_repair.bootstrap(proj)
    assert str(caught.value) == message
    assert caught.value.exit_code == EXIT_CONFIG == 2
    assert state(proj) == before


# ---------------------------------------------------------------------------------------
# 6, 17: usage
# ---------------------------------------------------------------------------------------


def test_missing_config_file(proj: Path) -> None:
    before = state(proj)
    run = cli("-c", "missing.ini", "bootstrap", cwd=proj)
    assert_error(
        run, EXIT_CONFIG,
        f"{proj / 'missing.ini'}: file not found; check -c/--config, or run "
        "`alembic-repair bootstrap` without -c to create alembic.ini",
    )
    assert state(proj) == before


def test_url_that_is_not_a_url(proj: Path) -> None:
    before = state(proj)
    run = cli("--url", "not a url", "bootstrap", cwd=proj)
    assert_error(
        run, EXIT_CONFIG,
        "--url: 'not a url' is not a database URL "
        "(expected dialect+driver://user:password@host:port/database)",
    )
    assert state(proj) == before


# ---------------------------------------------------------------------------------------
# 7, 8: the user's env.py and models
# ---------------------------------------------------------------------------------------


def test_env_py_that_fails_to_import(bootstrapped: Path, sqlite_url: str) -> None:
    env_py = bootstrapped / "alembic" / "env.py"
    lines = env_py.read_text().splitlines(keepends=True)
    assert "alembic-repair-checksum" in lines[0] and lines[1].startswith('"""')
    end = next(i for i in range(2, len(lines)) if lines[i].rstrip().endswith('"""'))
    lines.insert(end + 1, "import does_not_exist_mod\n")
    env_py.write_text("".join(lines))
    lineno = end + 2
    before = state(bootstrapped, sqlite_url)

    run = cli("bootstrap", cwd=bootstrapped, url=sqlite_url)

    assert_error(
        run, EXIT_CONFIG,
        f"alembic/env.py:{lineno}: running alembic/env.py failed with ModuleNotFoundError: "
        f"No module named 'does_not_exist_mod'; {REHINT_ENV}",
    )
    assert state(bootstrapped, sqlite_url) == before  # the edited env.py is the user's: kept


def test_models_with_a_syntax_error(bootstrapped: Path, sqlite_url: str) -> None:
    models = bootstrapped / "app" / "models.py"
    text = models.read_text()
    assert text.endswith("\n")
    models.write_text(text + "broken = (\n")
    lineno = len(text.splitlines()) + 1
    before = state(bootstrapped, sqlite_url)

    run = cli("bootstrap", cwd=bootstrapped, url=sqlite_url)

    assert_error(
        run, EXIT_CONFIG,
        f"app/models.py:{lineno}: running alembic/env.py failed with SyntaxError: '(' was never "
        "closed; fix that line, then run bootstrap again",
    )
    assert state(bootstrapped, sqlite_url) == before


# ---------------------------------------------------------------------------------------
# 14-16: a revision history that cannot be loaded
# ---------------------------------------------------------------------------------------


def _revision_file(revision: str, down_revision: str | None, body: str = "pass") -> str:
    return (
        f'"""{revision}"""\n'
        f"revision = {revision!r}\n"
        f"down_revision = {down_revision!r}\n"
        "branch_labels = None\n"
        "depends_on = None\n"
        "\n\n"
        "def upgrade():\n"
        f"    {body}\n"
        "\n\n"
        "def downgrade():\n"
        "    pass\n"
    )


def test_revision_file_with_a_syntax_error(bootstrapped: Path, sqlite_url: str) -> None:
    text = _revision_file("0badc0de", None, body="columns = (")
    lineno = _line(text, "    columns = (")
    (bootstrapped / "alembic" / "versions" / "0badc0de_broken.py").write_text(text)
    before = state(bootstrapped, sqlite_url)

    run = cli("bootstrap", cwd=bootstrapped, url=sqlite_url)

    assert_error(
        run, EXIT_PROBLEMS,
        f"alembic/versions/0badc0de_broken.py:{lineno}: revision file cannot be read "
        "(SyntaxError: '(' was never closed); fix that line, then run bootstrap again",
    )
    assert state(bootstrapped, sqlite_url) == before


def test_dangling_down_revision(bootstrapped: Path, sqlite_url: str) -> None:
    (bootstrapped / "alembic" / "versions" / "bbb_dangling.py").write_text(
        _revision_file("bbb", "zzz")
    )
    before = state(bootstrapped, sqlite_url)

    run = cli("bootstrap", cwd=bootstrapped, url=sqlite_url)

    # Alembic's own UserWarning about 'zzz' must not reach stderr beside our one line.
    assert_error(
        run, EXIT_PROBLEMS,
        "alembic/versions/bbb_dangling.py: revision 'bbb' has down_revision 'zzz', which no "
        "revision file defines; restore the missing file (git checkout) or fix down_revision, "
        "then run bootstrap again",
    )
    assert state(bootstrapped, sqlite_url) == before


def test_revision_cycle(bootstrapped: Path, sqlite_url: str) -> None:
    versions = bootstrapped / "alembic" / "versions"
    (versions / "aaa_cycle.py").write_text(_revision_file("aaa", "bbb"))
    (versions / "bbb_cycle.py").write_text(_revision_file("bbb", "aaa"))
    before = state(bootstrapped, sqlite_url)

    run = cli("bootstrap", cwd=bootstrapped, url=sqlite_url)

    assert_error(
        run, EXIT_PROBLEMS,
        "alembic/versions/aaa_cycle.py, alembic/versions/bbb_cycle.py: revisions aaa -> bbb "
        "form a cycle (each descends from the other); fix their down_revision, then run "
        "bootstrap again",
    )
    assert state(bootstrapped, sqlite_url) == before


# ---------------------------------------------------------------------------------------
# 9, 10, 18: no database server there
# ---------------------------------------------------------------------------------------


def _unreachable(port: int) -> str:
    return (
        f"cannot reach the database at 127.0.0.1:{port} (connection refused; URL from --url): "
        f"{REHINT_UNREACHABLE}"
    )


def test_unreachable_database(proj: Path) -> None:
    port = closed_port()
    before = state(proj)
    run = cli("--url", f"mysql+pymysql://app:secret@127.0.0.1:{port}/app", "bootstrap",
              cwd=proj)
    assert_error(run, EXIT_DATABASE, _unreachable(port), "secret")
    assert state(proj) == before


def test_unknown_host(proj: Path) -> None:
    before = state(proj)
    run = cli("--url", "mysql+pymysql://u:pw@no-such-host.invalid:3306/app", "bootstrap",
              cwd=proj)
    assert run.stderr == (
        "error: cannot reach the database at no-such-host.invalid:3306: host "
        "'no-such-host.invalid' not found (DNS; URL from --url): fix the host (inside Docker "
        "use the compose service name)\n"
    )
    assert run.code == EXIT_DATABASE, run
    assert "Traceback" not in run.output
    assert_no_secret(run, "pw")
    assert state(proj) == before


def test_traceback_flag_shows_the_traceback_but_no_password(proj: Path) -> None:
    port = closed_port()
    before = state(proj)
    run = cli("--traceback", "--url", f"mysql+pymysql://app:secret@127.0.0.1:{port}/app",
              "bootstrap", cwd=proj)
    assert "Traceback (most recent call last)" in run.stderr
    assert f"DatabaseUnreachable: {_unreachable(port)}" in run.stderr
    assert run.code != 0
    assert_no_secret(run, "secret")
    assert state(proj) == before


def test_traceback_flag_keeps_the_exit_code_and_the_error_line(proj: Path) -> None:
    """--traceback shows the traceback *as well* (cli.py): a start-up script that waits for the
    database on exit 3 must not see 1 ("problems") just because it asked for details."""
    port = closed_port()
    run = cli("--traceback", "--url", f"mysql+pymysql://app:secret@127.0.0.1:{port}/app",
              "bootstrap", cwd=proj)
    assert "Traceback (most recent call last)" in run.stderr
    assert run.stderr.endswith(f"\nerror: {_unreachable(port)}\n"), run.stderr[-400:]
    assert run.code == EXIT_DATABASE, run.code


def test_traceback_flag_never_prints_a_password_from_alembic_ini(proj: Path) -> None:
    """The chained ConfigParser error quotes the raw value: '%ss@127.0.0.1/app'."""
    _ini, message = _bad_ini(proj, "raw-percent-in-url")
    before = state(proj)
    run = cli("--traceback", "bootstrap", cwd=proj)
    assert f"UrlError: {message}" in run.stderr
    assert_no_secret(run, "p%ss")
    assert "%ss" not in run.output, run.stderr
    assert state(proj) == before


# ---------------------------------------------------------------------------------------
# 11-13: the real MariaDB server
# ---------------------------------------------------------------------------------------


@pytest.fixture
def app_db(mariadb_url: str) -> str:
    """Name of a fresh, empty database made with create_database (dropped afterwards)."""
    name = make_url(mariadb_url).database
    assert name
    return name


def _schemas(root_url: str) -> list[str]:
    engine = create_engine(root_url)
    try:
        with engine.connect() as conn:
            return sorted(inspect(conn).get_schema_names())
    finally:
        engine.dispose()


def _url_args(source: str, url: str) -> tuple[tuple[str, ...], str | None]:
    """(global CLI options, DATABASE_URL) that hand `url` over by `source`."""
    return (("--url", url), None) if source == "--url" else ((), url)


@pytest.mark.parametrize("source", ["DATABASE_URL", "--url"])
def test_wrong_password(proj: Path, mariadb_server: MariaDBServer, mariadb_url: str,
                        app_db: str, source: str) -> None:
    wrong = dataclasses.replace(mariadb_server, app_password=WRONG_PASSWORD).app_url(app_db)
    options, env_url = _url_args(source, wrong)
    before = state(proj, mariadb_url)

    run = cli(*options, "bootstrap", cwd=proj, url=env_url)

    assert_error(
        run, EXIT_DATABASE,
        f"127.0.0.1:{mariadb_server.port} refused the login for user 'app' (wrong password, or "
        f"the user may not connect from here; URL from {source}): check the credentials",
        WRONG_PASSWORD,
    )
    assert state(proj, mariadb_url) == before


def test_traceback_flag_on_a_refused_login_shows_no_password(
    proj: Path, mariadb_server: MariaDBServer, mariadb_url: str, app_db: str
) -> None:
    wrong = dataclasses.replace(mariadb_server, app_password=WRONG_PASSWORD).app_url(app_db)
    run = cli("--traceback", "bootstrap", cwd=proj, url=wrong)
    assert "LoginRefused: " in run.stderr
    assert_no_secret(run, WRONG_PASSWORD)


def test_special_character_password_works(proj: Path, mariadb_server: MariaDBServer,
                                          app_db: str) -> None:
    run = cli("bootstrap", cwd=proj, url=mariadb_server.app_url(app_db))
    assert run.code == 0, run
    assert run.stderr == ""
    assert f"mysql+pymysql://app:***@127.0.0.1:{mariadb_server.port}/{app_db}" in run.stdout
    assert_no_secret(run)
    ini = (proj / "alembic.ini").read_text()
    for spelling in spellings(APP_PASSWORD):
        assert spelling not in ini
        for path in proj.rglob("*"):  # nor anywhere else in the files it wrote
            if path.is_file() and "__pycache__" not in path.parts:
                assert spelling.encode() not in path.read_bytes(), path


@pytest.fixture
def missing_db(mariadb_server: MariaDBServer) -> Iterator[str]:
    name = "no_such_db_" + secrets.token_hex(4)
    yield name
    mariadb_server.drop_database(name)  # only matters if the run wrongly created it


def test_unknown_database(proj: Path, mariadb_server: MariaDBServer, missing_db: str) -> None:
    before = state(proj), _schemas(mariadb_server.root_url)

    run = cli("bootstrap", cwd=proj, url=mariadb_server.app_url(missing_db))

    assert_error(
        run, EXIT_DATABASE,
        f"127.0.0.1:{mariadb_server.port} has no database {missing_db!r} (URL from "
        f"DATABASE_URL): create it with CREATE DATABASE `{missing_db}`, or fix the database name",
    )
    assert (state(proj), _schemas(mariadb_server.root_url)) == before


def test_duplicate_revision_id(bootstrapped: Path, sqlite_url: str) -> None:
    """FM04: Alembic only warns and silently uses one of the two files."""
    versions = bootstrapped / "alembic" / "versions"
    (original,) = sorted(versions.glob("*.py"))
    copy = versions / f"{original.stem}_copy.py"
    copy.write_text(original.read_text())
    before = state(bootstrapped, sqlite_url)

    run = cli("bootstrap", cwd=bootstrapped, url=sqlite_url)

    rev = original.name.split("_")[0]
    assert_error(
        run, EXIT_PROBLEMS,
        f"alembic/versions/{original.name}, alembic/versions/{copy.name}: revision id {rev!r} "
        "is defined 2 times (Alembic would silently use one); give the copy a new id, then run "
        "bootstrap again",
    )
    assert state(bootstrapped, sqlite_url) == before


def test_stray_python_file_in_versions(bootstrapped: Path, sqlite_url: str) -> None:
    (bootstrapped / "alembic" / "versions" / "helpers.py").write_text("X = 1\n")
    before = state(bootstrapped, sqlite_url)

    run = cli("bootstrap", cwd=bootstrapped, url=sqlite_url)

    assert_error(
        run, EXIT_PROBLEMS,
        "alembic/versions/helpers.py: no `revision = '...'` line, so it is not a revision file; "
        "move it out of versions/, then run bootstrap again",
    )
    assert state(bootstrapped, sqlite_url) == before


@pytest.mark.parametrize("args", [["--bogus"], ["bootstrap", "--lock-timeout", "soon"],
                                  ["nosuch"]])
def test_usage_errors_exit_2(proj: Path, args: list[str]) -> None:
    before = state(proj)
    run = cli(*args, cwd=proj)
    assert run.code == 2, run
    assert "Traceback" not in run.output and "internal error" not in run.output
    assert state(proj) == before


def test_raw_at_sign_in_password_is_refused_without_showing_it(proj: Path) -> None:
    before = state(proj)
    run = cli("--url", "mysql+pymysql://app:S3cr@tPa55@127.0.0.1/app", "bootstrap", cwd=proj)
    assert_error(
        run, EXIT_CONFIG,
        "--url: the password (or user) in the database URL contains a raw '@'; write it "
        "URL-encoded as %40 (and ':' as %3A, '/' as %2F, '%' as %25)", "S3cr@tPa55", "tPa55")
    assert state(proj) == before


def test_project_repr_hides_the_password(proj: Path) -> None:
    project = alembic_repair.Project.discover(proj, url="mysql+pymysql://app:hunter2@db/app")
    assert "hunter2" not in repr(project) and "hunter2" not in str(project)
