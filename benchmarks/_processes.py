"""What the benchmarks measure with: fresh processes, their wall and CPU time, the
environment every measured process gets (a private bytecode cache, the database URL), and
root's view of the throwaway MariaDB server."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float
    returncode: int
    stdout: str
    stderr: str


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: Sequence[str | Path], cwd: Path, env: dict[str, str], timeout: float) -> Run:
    """One fresh process; wall time, and its CPU time (user + system, from the reaped child)."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    seconds = time.perf_counter() - started
    return Run(seconds, _children_cpu() - cpu_before, proc.returncode, proc.stdout, proc.stderr)


def child_env(url: str, bytecode: str, pycache: Path, **extra: str) -> dict[str, str]:
    """The environment of every measured process.

    ``cached`` (default): bytecode of every module, the package's and the project's included,
    is written to and read from a private ``PYTHONPYCACHEPREFIX`` (nothing written into the repo
    or the venv); after the warm-up no process compiles anything, as with an installed package.
    ``as-is``: this process's environment unchanged (with ``PYTHONDONTWRITEBYTECODE=1`` and an
    editable install, alembic_repair and the project's files are compiled again at every run).
    """
    env = dict(os.environ, DATABASE_URL=url, **extra)
    if bytecode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def describe(what: str, result: Run, limit: int = 4000) -> str:
    return (f"{what}: exit {result.returncode}\n--- stdout ---\n{result.stdout.strip()[-limit:]}"
            f"\n--- stderr ---\n{result.stderr.strip()[-limit:]}")


@contextmanager
def environment(cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """This process as a measured child would be: cwd, environment and bytecode cache."""
    saved = Path.cwd(), dict(os.environ), sys.pycache_prefix, sys.dont_write_bytecode
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.pycache_prefix = env.get("PYTHONPYCACHEPREFIX")
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    try:
        yield
    finally:
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        sys.pycache_prefix, sys.dont_write_bytecode = saved[2], saved[3]


def shorten_paths(text: str) -> str:
    prefixes = sorted({p for p in sys.path if p.endswith("site-packages")}, key=len, reverse=True)
    for prefix in [*prefixes, str(Path(__file__).resolve().parent.parent)]:
        text = text.replace(prefix + os.sep, "")
    return text


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def machine_facts(package_state: str) -> list[str]:
    """What a reader needs to compare these figures: machine, versions, load."""
    import platform
    from importlib.metadata import version

    facts = [
        f"nproc: {len(os.sched_getaffinity(0))}",
        f"python: {platform.python_version()} ({platform.python_implementation()}, "
        f"{sys.executable})",
        f"platform: {platform.platform()}",
        f"alembic {version('alembic')}, SQLAlchemy {version('SQLAlchemy')}, "
        f"PyMySQL {version('PyMySQL')}, typer {version('typer')}, "
        f"sqlite {__import__('sqlite3').sqlite_version}",
        package_state,
    ]
    from alembic_repair.testing.mariadb import find_binary

    server = find_binary("mariadbd", "mysqld")
    if server is not None:
        version = subprocess.run([server, "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
        facts.append(f"mariadb: {version}")
    facts.append(f"at start: {load()}")
    return facts


class Server:
    """The throwaway MariaDB server, as root on loopback (no password)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def sql(self, sql: str, database: str | None = None) -> list[tuple[object, ...]]:
        import pymysql

        conn = pymysql.connect(host=self.host, port=self.port, user="root", password="",
                               database=database, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@{self.host}:{self.port}/{database}"

    def client_args(self) -> list[str]:
        return [f"--host={self.host}", f"--port={self.port}", "--protocol=TCP", "--user=root"]

