"""doctor on every scenario of the failure-mode research, on SQLite and a real MariaDB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import cli, table_digest, tree_digest

from alembic_repair import Project, doctor
from alembic_repair.diagnose.findings import CATALOGUE
from alembic_repair.testing.scenarios import SCENARIOS, URL_FROM_INI, build

CASES = [pytest.param(name, backend, id=f"{name}-{backend}",
                      marks=[pytest.mark.mariadb] if backend == "mariadb" else [])
         for name, scenario in SCENARIOS.items() for backend in scenario.backends]


@pytest.fixture
def scenario_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend = request.node.callspec.params["backend"]
    if backend == "mariadb":
        return str(request.getfixturevalue("mariadb_url"))
    return f"sqlite:///{tmp_path}/app.db"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


#: scenarios whose findings are notes there although their code can be worse: AR108 is a note
#: until a pending revision needs batch mode (issue 13)
NOTES_ONLY = {"fm42_sqlite_without_batch"}


@pytest.mark.parametrize(("name", "backend"), CASES)
def test_doctor_names_the_problem(name: str, backend: str, scenario_url: str,
                                  tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    scenario = build(name, root, scenario_url)
    url = None if name in URL_FROM_INI else scenario_url
    files, rows = tree_digest(root), table_digest(scenario_url)

    diagnosis = doctor(Project.discover(root, url=url, strict=False))

    found = [(f.code, f.location or "") for f in diagnosis.findings]
    for code, location in scenario.expect:
        assert any(c == code and (location is None or location in where)
                   for c, where in found), (code, location, diagnosis.findings)
    if not scenario.expect:
        assert diagnosis.findings == () and diagnosis.healthy and diagnosis.exit_code == 0
    elif name not in NOTES_ONLY and any(CATALOGUE[code].severity != "info"
                                        for code, _ in scenario.expect):
        assert not diagnosis.healthy and diagnosis.exit_code in (1, 2)
    else:  # notes only: healthy, but said
        assert diagnosis.healthy and diagnosis.exit_code == 0
    # read-only: not a file, not a row
    assert tree_digest(root) == files
    assert table_digest(scenario_url) == rows


def test_doctor_cli_json_contract(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("fm01_deleted_head_revision", root, sqlite_url)
    run = cli("doctor", "--format", "json", cwd=root, url=sqlite_url,
              env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert run.code == 1, run.output
    data = json.loads(run.stdout)
    assert set(data) == {"healthy", "findings", "state"} and data["healthy"] is False
    (finding,) = [f for f in data["findings"] if f["code"] == "AR302"]
    assert set(finding) == {"code", "severity", "title", "detail", "fix", "location"}
    assert finding["severity"] == "error" and finding["location"] == "alembic_version"
    assert finding["detail"] == "alembic_version records ccc333, which no revision file defines"
    assert data["state"]["recorded"] == ["ccc333"]


def test_doctor_cli_text_and_exit_codes(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, sqlite_url)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = cli("doctor", cwd=root, url=sqlite_url, env=env)
    assert run.code == 0, run.output
    assert run.stdout.rstrip().endswith("doctor  healthy: 0 errors, 0 warnings, 0 notes")
    unreachable = cli("doctor", cwd=root, url="mysql+pymysql://u:pw@127.0.0.1:1/x", env=env)
    assert unreachable.code == 3 and "pw" not in unreachable.output.replace("pymysql", "")
    assert "error  cannot reach the database at 127.0.0.1:1" in unreachable.output


def test_second_doctor_uses_the_replay_cache(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, sqlite_url)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    first = doctor(Project.discover(root, url=sqlite_url))
    second = doctor(Project.discover(root, url=sqlite_url))
    assert first.state.replay is not None and not first.state.replay.cached
    assert second.state.replay is not None and second.state.replay.cached
    assert first.state.replay.snapshots == second.state.replay.snapshots


def test_doctor_on_bad_inputs_prints_findings_not_tracebacks(tmp_path: Path, sqlite_url: str,
                                                             mariadb_server) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, sqlite_url)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", "[alembic]\nthis is not ini\n", 1))
    run = cli("doctor", cwd=root, url=sqlite_url, env=env)
    assert run.code == 1, run.output  # a problem in the project: a finding (issue 13)
    assert "AR102 error alembic.ini:5: alembic.ini cannot be read: alembic.ini:5: cannot be " \
           "parsed ('this is not ini' is neither key = value nor a [section] header)" in run.stdout
    assert "AR111" not in run.stdout  # nothing else is read from an unreadable file
    assert "Traceback" not in run.output

    wrong = mariadb_server.app_url("mysql").replace("p%25ss", "n0pe%25")
    run = cli("doctor", cwd=root, url=wrong, env=env)
    assert run.code == 3, run.output
    assert "refused the login for user 'app'" in run.stderr
    assert "n0pe" not in run.output and "Traceback" not in run.output


def test_cached_live_schema_sees_every_change(tmp_path: Path, backend) -> None:
    """The live schema is cached per table by catalogue signature: a change to one table after
    a doctor run must show in the next one (and only that table is read again)."""
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, backend.url)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    assert doctor(Project.discover(root, url=backend.url)).healthy
    from helpers import execute

    execute(backend.url, "ALTER TABLE post ADD COLUMN extra INTEGER")
    found = {f.code: f for f in doctor(Project.discover(root, url=backend.url)).findings}
    assert "column post.extra INTEGER" in found["AR403"].detail
    assert found["AR405"].location == "alembic_version"


def test_replay_needs_a_scratch_database_or_says_why(tmp_path: Path, mariadb_server) -> None:
    """A user without CREATE DATABASE gets AR408, not a crash."""
    root = tmp_path / "proj"
    root.mkdir()
    mariadb_server.create_database("limited")
    build("healthy", root, mariadb_server.root_url + "/limited")
    from helpers import execute

    execute(mariadb_server.root_url + "/limited",
            "CREATE USER IF NOT EXISTS 'narrow'@'%' IDENTIFIED BY 'pw'",
            "GRANT SELECT ON limited.* TO 'narrow'@'%'")
    url = f"mysql+pymysql://narrow:pw@127.0.0.1:{mariadb_server.port}/limited"
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    found = {f.code: f for f in doctor(Project.discover(root, url=url)).findings}
    assert found["AR408"].detail.startswith("the replay could not start: Access denied for "
                                              "user 'narrow'")
    assert "pw" not in found["AR408"].detail


def test_a_repeated_healthy_doctor_is_answered_from_its_verdict(tmp_path: Path,
                                                                 backend) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, backend.url)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}

    def doctor_json() -> dict:
        run = cli("doctor", "--format", "json", cwd=root, url=backend.url, env=env)
        assert run.code == 0, run.output
        return json.loads(run.stdout)

    assert doctor_json()["state"]["verdict_from_cache"] is False
    again = doctor_json()
    assert again["state"]["verdict_from_cache"] is True and again["healthy"] is True
    from helpers import execute

    execute(backend.url, "ALTER TABLE post ADD COLUMN extra INTEGER")  # the database changed
    run = cli("doctor", "--format", "json", cwd=root, url=backend.url, env=env)
    assert run.code == 1 and json.loads(run.stdout)["state"]["verdict_from_cache"] is False
    execute(backend.url, "ALTER TABLE post DROP COLUMN extra")
    assert doctor_json()["healthy"] is True  # the same schema as the healthy verdict's again
    models = root / "app" / "models.py"
    models.write_text(models.read_text() + "\n# touched\n")  # a file changed
    assert doctor_json()["state"]["verdict_from_cache"] is False
    assert doctor_json()["state"]["verdict_from_cache"] is True


def test_a_written_sqlite_file_is_never_answered_from_the_verdict(tmp_path: Path,
                                                                    sqlite_url: str) -> None:
    """SQLite findings look at values (AR407): a new junk row must be seen, not a stale
    healthy verdict."""
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, sqlite_url)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert cli("doctor", cwd=root, url=sqlite_url, env=env).code == 0
    from helpers import execute

    execute(sqlite_url, "UPDATE post SET views = 'many' WHERE id = 1")
    run = cli("doctor", "--format", "json", cwd=root, url=sqlite_url, env=env)
    data = json.loads(run.stdout)
    assert data["state"]["verdict_from_cache"] is False
    assert [f["location"] for f in data["findings"] if f["code"] == "AR407"] == ["post.views"]


def test_doctor_json_lists_the_pending_revisions(tmp_path: Path, sqlite_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    build("fm03_behind_head", root, sqlite_url)
    run = cli("doctor", "--format", "json", cwd=root, url=sqlite_url,
              env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert json.loads(run.stdout)["state"]["pending"] == ["ccc333"]


def test_json_on_stdout_alone_whatever_the_project_prints(tmp_path: Path, sqlite_url: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """env.py (and the application it imports) printing, logging to stdout or starting a
    process that writes there: under --format json, stdout is the JSON and nothing else; the
    project's own lines go to stderr."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "project"
    build("healthy", root, sqlite_url)
    env_py = root / "alembic" / "env.py"
    env_py.write_text(
        "import logging, subprocess, sys\n"
        "print('hello from env.py')\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "logging.getLogger('app').info('a log line of the app')\n"
        "subprocess.run([sys.executable, '-c', 'print(\"hello from a subprocess\")'])\n"
        + env_py.read_text(encoding="utf-8"), encoding="utf-8")

    done = cli("doctor", "--format", "json", cwd=root, url=sqlite_url)

    data = json.loads(done.stdout)  # nothing but the JSON
    assert done.code == 0 and data["healthy"] is True, done.output
    for line in ("hello from env.py", "a log line of the app", "hello from a subprocess"):
        assert line in done.stderr and line not in done.stdout


@pytest.mark.parametrize(("raised", "cached"), [
    ("OperationalError('SELECT 1', {}, pymysql.err.OperationalError(2013, 'Lost connection to "
     "server during query'))", False),
    ("OperationalError('SET GLOBAL x', {}, pymysql.err.OperationalError(1227, 'Access denied; "
     "you need (at least one of) the SUPER privilege(s) for this operation'))", False),
    ("RuntimeError('the revision itself is broken')", True),
], ids=["lost-connection", "privilege", "the-history"])
def test_a_replay_failure_of_the_environment_is_never_cached(
        raised: str, cached: bool, tmp_path: Path, sqlite_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay's verdict is cached by the revision files' content; a failure caused by the
    server or the account (granted tomorrow, reconnected next time) is not the history's."""
    from alembic_repair.engine.replay import cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "project"
    build("healthy", root, sqlite_url)
    versions = root / "alembic" / "versions"
    (versions / "ffff00000001_failing.py").write_text(
        "import pymysql\nfrom sqlalchemy.exc import OperationalError\n\n"
        f"revision = 'ffff00000001'\ndown_revision = {_head(versions)!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n    raise {raised}\n\n\ndef downgrade():\n    pass\n",
        encoding="utf-8")

    diagnosis = doctor(Project.discover(root, url=sqlite_url))

    assert "AR404" in {f.code for f in diagnosis.findings}
    written = list(cache_dir().glob("*.marshal")) if cache_dir().is_dir() else []
    assert bool(written) is cached


def _head(versions: Path) -> str:
    """The one revision no other revision file names as its parent."""
    import ast

    ids: dict[str, tuple[str, ...]] = {}
    for path in versions.glob("*.py"):
        values = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = (node.targets[0] if isinstance(node, ast.Assign) else
                      node.target if isinstance(node, ast.AnnAssign) else None)
            if isinstance(target, ast.Name) and node.value is not None and \
                    target.id in ("revision", "down_revision"):
                values[target.id] = ast.literal_eval(node.value)
        parent = values.get("down_revision")
        ids[values["revision"]] = (parent,) if isinstance(parent, str) else tuple(parent or ())
    parents = {p for ps in ids.values() for p in ps}
    (head,) = set(ids) - parents
    return head
