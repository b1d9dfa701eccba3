"""No secret on disk outside the project's 0700 ``.alembic_repair/`` (issue 10, item 5).

Each test logs in with its own user and a unique password, kills runs with SIGKILL while the
client tools run (a wrapper on PATH holds them until the test lets go), and then searches
every file under /tmp, $TMPDIR and the project (except ``.alembic_repair/``) for the
password's unique part. The throwaway MariaDB servers' own data folders (``/tmp/mariadb-*``)
are the server's storage, not ours, and are left out.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import MODELS_V1, cli, execute, table_digest, write_project
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from alembic_repair import ConfigError, Project, bootstrap
from alembic_repair.data.backups import dump_tools
from alembic_repair.engine.project import read_ini
from alembic_repair.engine.replay import scratch_database
from alembic_repair.engine.scratch import sweep
from alembic_repair.private import option_fd, sweep_temp

ROWS = [
    "INSERT INTO author (id, name) VALUES (1, 'Ann'), (2, 'Bo\u00e9'), (3, 'Cy')",
    "INSERT INTO post (id, title, body, author_id) VALUES (1, 'hello', 'a\nb', 1), "
    "(2, 'again', NULL, 1), (3, 'x', '', 2)",
]
needs_tools = pytest.mark.skipif(dump_tools() is None, reason="mariadb-dump/mariadb not on PATH")


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


# -- helpers -------------------------------------------------------------------------------------


#: When each token was made: a file whose status has not changed since cannot hold it (its
#: ctime moves on every write, rename or chmod, and no program can set it back), so the scan
#: reads only the files touched since, however full the temp folder is.
_BORN: dict[str, float] = {}


def _secret_user(root_url: str) -> tuple[str, str]:
    """(URL, the password's unique part): a new user on the test database and the scratch
    schemas, with a password that needs URL and option-file quoting."""
    url = make_url(root_url)
    token = secrets.token_hex(10)
    _BORN[token] = time.time()
    password = f"pw{token}@%/:#x"
    user = "sec_" + secrets.token_hex(3)
    execute(root_url, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
            f"GRANT ALL ON `{url.database}`.* TO '{user}'@'%'",
            f"GRANT ALL ON `\\_ar\\_restore\\_%`.* TO '{user}'@'%'",
            f"GRANT ALL ON `\\_ar\\_replay\\_%`.* TO '{user}'@'%'",
            f"GRANT RELOAD, PROCESS ON *.* TO '{user}'@'%'")
    return (f"mysql+pymysql://{user}:{quote(password, safe='')}@{url.host}:{url.port}/"
            f"{url.database}", token)


def _holders(token: str, *roots: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    """Every regular file under `roots` (not under `skip`, nor a MariaDB server's data folder
    in the temp folder) whose bytes contain `token`."""
    needle = token.encode()
    since = _BORN.get(token, 0.0) - 2.0  # filesystem timestamps may be coarse
    temp_roots = {Path("/tmp"), Path(tempfile.gettempdir())}
    found: set[str] = set()
    for root in roots:
        for folder, dirs, files in os.walk(root, onerror=lambda _: None):
            here = Path(folder)
            dirs[:] = [d for d in dirs if here / d not in skip and not (
                here in temp_roots and d.startswith(("mariadb-", "bash_")))]
            for name in files:
                path = here / name
                try:
                    info = path.lstat()
                    if (not stat.S_ISREG(info.st_mode) or info.st_size > 256 << 20
                            or max(info.st_mtime, info.st_ctime) < since):
                        continue
                    with path.open("rb") as handle:
                        tail = b""
                        while chunk := handle.read(1 << 20):
                            if needle in tail + chunk:
                                found.add(str(path))
                                break
                            tail = chunk[-len(needle):]
                except OSError:
                    continue
    return sorted(found)


def _everywhere(token: str, project: Path) -> list[str]:
    roots = [Path("/tmp"), Path(tempfile.gettempdir()), project]
    if os.environ.get("TMPDIR"):
        roots.append(Path(os.environ["TMPDIR"]))
    return _holders(token, *roots, skip=(project / ".alembic_repair",))


def _schemas(root_url: str, prefix: str) -> set[str]:
    engine = create_engine(root_url)
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(text(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE "
                ":p"), {"p": prefix.replace("_", "\\_") + "%"})}
    finally:
        engine.dispose()


def _paused_tool(tmp_path: Path, tool: str) -> tuple[dict[str, str], Path, Path]:
    """(env, mark, go): PATH with a `tool` wrapper that touches `mark` and waits for `go`
    before it execs the real tool (the inherited option pipe passes through exec)."""
    real = shutil.which(tool)
    assert real is not None
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    mark, go = tmp_path / f"{tool}.started", tmp_path / f"{tool}.go"
    wrapper = folder / tool
    wrapper.write_text(f'#!/bin/sh\ntouch "{mark}"\nwhile [ ! -e "{go}" ]; do sleep 0.05; done\n'
                       f'exec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}, mark, go


def _start(args: list[str], root: Path, url: str | None, env: dict[str, str]
           ) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        full["DATABASE_URL"] = url
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "alembic_repair", *args], cwd=root, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _wait_for(mark: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not mark.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"exited {process.returncode} before the tool ran: {out!r} {err!r}")
        assert time.monotonic() < deadline, "the tool never started"
        time.sleep(0.05)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and the tool it started (its own session: nothing else)."""
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _modes(folder: Path) -> dict[str, str]:
    """Every folder under `folder` (itself included) not 0700 and every file not 0600."""
    wrong = {}
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong[str(path.relative_to(folder))] = oct(mode)
    return wrong


def _project(tmp_path: Path, url: str) -> Path:
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=url))
    execute(url, *ROWS)
    return root


@pytest.fixture
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


# -- the option pipe -----------------------------------------------------------------------------


def test_the_option_pipe_never_blocks_and_hands_the_whole_text_to_the_child() -> None:
    for size in (200, 300_000, 4 << 20):
        text_ = "[client]\n" + "#" * size + "\npassword=x\n"
        done: list[object] = []

        def hand_over(content: str = text_, done: list[object] = done) -> None:
            try:
                with option_fd(content) as (path, fd):
                    read = subprocess.run(["cat", path], pass_fds=(fd,), capture_output=True,
                                          timeout=30)
                    done.append(read.stdout.decode())
            except ConfigError as err:  # too big for any pipe here: one readable line
                done.append(err)

        worker = threading.Thread(target=hand_over, daemon=True)
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), f"option_fd blocked with {size} bytes"
        assert done[0] == text_ or (isinstance(done[0], ConfigError) and size > 65536), size


# -- kill -9 of backup and restore ----------------------------------------------------------------


@pytest.mark.crash
@needs_tools
def test_kill_9_during_mariadb_dump_leaves_no_password_on_disk(
        tmp_path: Path, mariadb_url: str, umask_022: None) -> None:
    url, token = _secret_user(mariadb_url)
    root = _project(tmp_path, url)
    before = table_digest(mariadb_url)
    env, mark, go = _paused_tool(tmp_path, "mariadb-dump")
    run = _start(["backup", "--method", "dump"], root, url, env)
    _wait_for(mark, run)
    assert _everywhere(token, root) == []  # while mariadb-dump holds the settings
    _kill(run)
    assert _everywhere(token, root) == []
    # An option folder an earlier version left in the temp folder when it was killed.
    legacy = Path(tempfile.mkdtemp(prefix="alembic-repair-"))
    (legacy / "client.cnf").write_text(f"[client]\npassword=pw{token}\n")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    go.touch()
    again = cli("backup", "--method", "dump", cwd=root, url=url, env=env)
    assert again.code == 0, again.output
    assert not legacy.exists()
    assert _everywhere(token, root) == []
    assert token not in again.output
    assert table_digest(mariadb_url) == before
    state = root / ".alembic_repair"
    assert _modes(state) == {}, "every folder 0700, every file 0600"


@pytest.mark.crash
@needs_tools
def test_kill_9_during_restore_leaves_no_password_and_the_next_run_drops_its_scratch(
        tmp_path: Path, mariadb_url: str) -> None:
    url, token = _secret_user(mariadb_url)
    root = _project(tmp_path, url)
    before = table_digest(mariadb_url)
    made = cli("backup", "--method", "dump", cwd=root, url=url)
    assert made.code == 0, made.output
    folder = made.stdout.split("backup", 1)[1].split()[0]
    execute(mariadb_url, "DELETE FROM post", "DELETE FROM author")
    env, mark, go = _paused_tool(tmp_path, "mariadb")
    run = _start(["restore", folder, "--yes"], root, url, env)
    _wait_for(mark, run)
    live = _schemas(mariadb_url, "_ar_restore_")
    assert len(live) == 1
    # A concurrent run's sweep leaves the live run's scratch schema alone.
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert sweep(conn) == []
    finally:
        engine.dispose()
    assert _schemas(mariadb_url, "_ar_restore_") == live
    assert _everywhere(token, root) == []
    _kill(run)
    assert _schemas(mariadb_url, "_ar_restore_") == live  # left behind by the killed run
    assert _everywhere(token, root) == []
    go.touch()
    again = cli("restore", folder, "--yes", cwd=root, url=url)
    assert again.code == 0, again.output
    assert _schemas(mariadb_url, "_ar_restore_") == set()
    assert table_digest(mariadb_url) == before
    assert _everywhere(token, root) == []


def _killed_replay(root: Path, url: str) -> None:
    """A process killed (SIGKILL) while its replay's scratch schema exists."""
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys\n"
        "from alembic_repair import Project\n"
        "from alembic_repair.engine.database import connect\n"
        "from alembic_repair.engine.replay import scratch_database\n"
        "project = Project.discover(sys.argv[1], url=os.environ['DATABASE_URL'])\n"
        "with scratch_database(project, connect(project)):\n"
        "    os.kill(os.getpid(), 9)\n"), str(root)],
        env={**os.environ, "DATABASE_URL": url}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr


@pytest.mark.crash
@pytest.mark.mariadb
def test_the_next_run_drops_a_killed_runs_scratch_schema_and_not_a_live_one(
        tmp_path: Path, mariadb_url: str) -> None:
    url, token = _secret_user(mariadb_url)
    root = _project(tmp_path, url)
    project = Project.discover(root, url=url)
    engine = create_engine(url)
    try:
        with scratch_database(project, engine):  # a live run, all along
            live = _schemas(mariadb_url, "_ar_replay_")
            assert len(live) == 1
            _killed_replay(root, url)
            assert len(_schemas(mariadb_url, "_ar_replay_") - live) == 1
            made = cli("backup", cwd=root, url=url)  # any command taking the migration lock
            assert made.code == 0, made.output
            assert _schemas(mariadb_url, "_ar_replay_") == live
            _killed_replay(root, url)
            assert len(_schemas(mariadb_url, "_ar_replay_") - live) == 1
            doctor = cli("doctor", cwd=root, url=url,
                         env={"XDG_CACHE_HOME": str(tmp_path / "fresh-cache")})
            assert doctor.code == 0, doctor.output  # it replayed the history: a scratch
            assert _schemas(mariadb_url, "_ar_replay_") == live
    finally:
        engine.dispose()
    assert _schemas(mariadb_url, "_ar_replay_") == set()
    assert _everywhere(token, root) == []


def test_sweep_temp_removes_only_old_option_folders_of_ours(tmp_path: Path) -> None:
    old = Path(tempfile.mkdtemp(prefix="alembic-repair-"))
    young = Path(tempfile.mkdtemp(prefix="alembic-repair-"))
    other = Path(tempfile.mkdtemp(prefix="alembic-repair-"))
    try:
        for folder in (old, young, other):
            (folder / "client.cnf").write_text("[client]\npassword=x\n")
        (other / "notes.txt").write_text("not ours")
        hour_ago = time.time() - 3600
        for folder in (old, other):
            os.utime(folder, (hour_ago, hour_ago))
        removed = sweep_temp()
        assert old in removed and not old.exists()
        assert young.exists() and other.exists()
    finally:
        for folder in (old, young, other):
            shutil.rmtree(folder, ignore_errors=True)


# -- modes of the backup folders ----------------------------------------------------------------


def test_every_file_in_a_backup_is_0600_and_every_folder_0700(
        tmp_path: Path, backend, umask_022: None) -> None:
    root = _project(tmp_path, backend.url)
    stray = root / "alembic" / "versions" / "helpers.py"
    stray.write_text("VALUE = 1\n")
    stray.chmod(0o644)
    fixed = cli("fix", "--yes", cwd=root, url=backend.url)
    assert fixed.code == 0, fixed.output
    assert not stray.exists()
    before = table_digest(backend.url)
    reset = cli("reset", "--yes", cwd=root, url=backend.url)
    assert reset.code == 0, reset.output
    assert table_digest(backend.url).keys() == before.keys()
    assert {t: d for t, d in table_digest(backend.url).items() if t != "alembic_version"} == \
        {t: d for t, d in before.items() if t != "alembic_version"}
    state = root / ".alembic_repair"
    moved = list(state.glob("backups/*/project-files/alembic/versions/helpers.py"))
    assert len(moved) == 1 and moved[0].read_text() == "VALUE = 1\n"
    assert list(state.glob("backups/*-reset/project-files/alembic.ini"))
    assert _modes(state / "backups") == {}
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # the folder ignores itself: a `git add -A` of the project stages nothing of it
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    staged = subprocess.run(["git", "-C", str(root), "diff", "--cached", "--name-only"],
                            check=True, capture_output=True, text=True).stdout.split()
    assert "alembic.ini" in staged
    assert not [name for name in staged if name.startswith(".alembic_repair")]


# -- reset keeps the password out of alembic.ini ---------------------------------------------------


@pytest.mark.mariadb
def test_reset_keeps_the_ini_password_inside_the_private_folder_and_still_connects(
        tmp_path: Path, mariadb_url: str) -> None:
    url, token = _secret_user(mariadb_url)
    root = write_project(tmp_path / "proj", MODELS_V1)
    bootstrap(Project.discover(root, url=url))
    execute(url, *ROWS)
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text().replace(
        "[alembic]\n", f"[alembic]\nsqlalchemy.url = {url.replace('%', '%%')}\n"))
    assert Project.discover(root).url == url  # the project's URL comes from alembic.ini
    before = table_digest(mariadb_url)

    reset = cli("reset", "--yes", cwd=root)

    assert reset.code == 0, reset.output
    assert token not in reset.output and ".alembic_repair/database_url" in reset.output
    assert _everywhere(token, root) == []
    assert not read_ini(ini).has_option("alembic", "sqlalchemy.url")
    stored = root / ".alembic_repair" / "database_url"
    assert stored.read_text().strip() == url
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert {t: d for t, d in table_digest(mariadb_url).items() if t != "alembic_version"} == \
        {t: d for t, d in before.items() if t != "alembic_version"}
    project = Project.discover(root)
    assert project.url == url and project.url_source == ".alembic_repair/database_url"
    doctor = cli("doctor", cwd=root)
    assert doctor.code == 0, doctor.output
    assert "healthy" in doctor.output and token not in doctor.output
    # Plain Alembic, with no DATABASE_URL, talks to the same database through env.py.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    check = subprocess.run([sys.executable, "-m", "alembic", "check"], cwd=root, env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _modes(root / ".alembic_repair" / "backups") == {}
