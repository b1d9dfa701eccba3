"""Cached virtual environments holding published packages that ship Alembic histories.

One venv per requirements file under ``<repo>/.cache/realworld/<name>-<key>/`` (or under
``$ALEMBIC_REPAIR_REALWORLD_CACHE``), where the key hashes the pinned requirements, this
project's own dependency list and the Python version: a new pin or a new Python builds a new
venv, anything else reuses the one on disk. Each venv gets the pins and this working tree
(``pip install -e``), so its ``alembic-repair`` runs the code under test. Builds hold an
``fcntl.flock`` per venv (pytest-xdist workers wait for each other instead of building twice) and
the editable install holds one more (it writes the tree's egg-info). A venv is usable only once
its ``.complete`` marker exists; a half-built one is removed and built again.

Also used by ``benchmarks/bench_realworld.py``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
CACHE_ENV = "ALEMBIC_REPAIR_REALWORLD_CACHE"
_MARKER = ".complete"


class VenvBuildError(RuntimeError):
    """pip or venv failed; the message holds the command and the tail of its output."""


@dataclass(frozen=True)
class Venv:
    name: str
    root: Path
    built_in: float  # seconds this process spent building it; 0.0 when it was reused

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def site_packages(self) -> Path:
        found = sorted((self.root / "lib").glob("python*/site-packages"))
        if not found:
            raise VenvBuildError(f"{self.root}: no site-packages")
        return found[0]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO / ".cache" / "realworld")


def _project_dependencies() -> list[str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f).get("project", {}).get("dependencies", []))


def venv_key(name: str) -> str:
    """What the venv is built from: the pins, the names of this project's dependencies (a new
    dependency needs a new venv, a changed version range does not), the Python."""
    digest = hashlib.sha256()
    digest.update((REQUIREMENTS / f"{name}.txt").read_bytes())
    names = sorted(re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower()  # type: ignore[union-attr]
                   for d in _project_dependencies())
    digest.update("\n".join(names).encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def venv_path(name: str) -> Path:
    return cache_root() / f"{name}-{venv_key(name)}"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: Sequence[str | Path], timeout: float) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise VenvBuildError(f"{' '.join(map(str, argv))} exited {done.returncode}: {tail}")


def ensure_venv(name: str, timeout: float = 900) -> Venv:
    """The venv for ``requirements/<name>.txt``, built now if it is not on disk yet."""
    root = venv_path(name)
    if (root / _MARKER).exists():
        return Venv(name, root, 0.0)
    with file_lock(root.with_name(root.name + ".lock")):
        if (root / _MARKER).exists():  # another worker built it while this one waited
            return Venv(name, root, 0.0)
        started = time.monotonic()
        shutil.rmtree(root, ignore_errors=True)
        _run([sys.executable, "-m", "venv", root], timeout)
        python = root / "bin" / "python"
        _run([python, "-m", "pip", "install", "-q", "-r", REQUIREMENTS / f"{name}.txt",
              *_project_dependencies()], timeout)
        with file_lock(cache_root() / ".editable.lock"):
            _run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", REPO], timeout)
        (root / _MARKER).write_text(f"built in {time.monotonic() - started:.1f}s\n")
        return Venv(name, root, time.monotonic() - started)


def ensure_venvs(names: Sequence[str]) -> dict[str, Venv | VenvBuildError]:
    """Every named venv, the missing ones built in parallel; a failed build is returned as
    its error so the caller decides between skip and fail."""
    def one(name: str) -> Venv | VenvBuildError:
        try:
            return ensure_venv(name)
        except (VenvBuildError, subprocess.TimeoutExpired, OSError) as err:
            return err if isinstance(err, VenvBuildError) else VenvBuildError(str(err))

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


if __name__ == "__main__":  # python tests/realworld/realworld_venvs.py optuna mlflow
    for venv_name, venv in ensure_venvs(sys.argv[1:] or ["optuna", "mlflow"]).items():
        print(venv_name, venv if isinstance(venv, VenvBuildError)
              else f"{venv.root} (built in {venv.built_in:.1f}s)")
