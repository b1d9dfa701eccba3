"""Fixtures of the fault suite: one healthy project per backend, copied for every case.

A case gets `fault` (a `Fault`): a copy of a bootstrapped project with rows in its tables, on
SQLite (its own ``app.db``) or MariaDB (its own database on the session's throwaway server,
reached with the ``app`` user's URL, which holds a password). The template is bootstrapped once
per session and per backend; each case only copies files (and, on MariaDB, the two tables), so
per-case setup costs milliseconds, not a bootstrap.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
from helpers import Run, cli, execute, table_digest, tree_digest, write_project
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from alembic_repair.testing.mariadb import MariaDBServer

#: Rows put in the template, so "no row changed" means something.
ROWS = (
    "INSERT INTO author (id, name) VALUES (1, 'Ada'), (2, 'Grace'), (3, 'Edsger')",
    "INSERT INTO post (id, title, body, author_id) VALUES (1, 'a', 'x', 1), (2, 'b', NULL, 1), "
    "(3, 'c', 'y', 2), (4, 'd', 'z', 3), (5, 'e', '', 3)",
)
TEMPLATE_DB = "faults_template"


def _paths(root: Path) -> list[str]:
    """Every file and folder (caches excluded), including those tree_digest skips."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if "__pycache__" not in p.parts)


@dataclass
class Fault:
    """One case's project, database and the means to damage them."""

    backend: str
    root: Path
    url: str  # what the CLI gets (on MariaDB: the app user's, with its password)
    admin_url: str  # for checking and damaging (root on MariaDB)
    server: MariaDBServer | None = None
    database: str | None = None
    passwords: list[str] = field(default_factory=list)

    @property
    def versions(self) -> Path:
        return self.root / "alembic" / "versions"

    @property
    def ini(self) -> Path:
        return self.root / "alembic.ini"

    def sql(self, *statements: str) -> None:
        """Run statements as the administrator (root on MariaDB)."""
        execute(self.admin_url, *statements)

    def scalar(self, query: str) -> Any:
        engine = create_engine(self.admin_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(query)).scalar()
        finally:
            engine.dispose()

    def user(self, name: str, password: str, grants: str) -> str:
        """A MariaDB user with only `grants` on this case's database; returns its URL."""
        assert self.server is not None and self.database is not None
        conn = pymysql.connect(host=self.server.host, port=self.server.port, user="root",
                               password="", autocommit=True)
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "localhost"):
                    cur.execute("DROP USER IF EXISTS %s@%s", (name, host))
                    cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (name, host, password))
                    cur.execute(f"GRANT {grants} ON `{self.database}`.* TO %s@%s", (name, host))
        finally:
            conn.close()
        self.passwords.append(password)
        return URL.create("mysql+pymysql", username=name, password=password,
                          host=self.server.host, port=self.server.port,
                          database=self.database).render_as_string(hide_password=False)

    def ini_replace(self, old: str, new: str) -> None:
        body = self.ini.read_text()
        assert old in body, old
        self.ini.write_text(body.replace(old, new))

    def snapshot(self) -> tuple[Any, ...]:
        return tree_digest(self.root), _paths(self.root), table_digest(self.admin_url)

    def run(self, *args: str, url: str | None = None, timeout: float = 60,
            preexec: Callable[[], None] | None = None) -> Run:
        if preexec is None:
            return cli(*args, cwd=self.root, url=url or self.url, timeout=timeout)
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["DATABASE_URL"] = url or self.url
        done = subprocess.run([sys.executable, "-m", "alembic_repair", *args], cwd=self.root,
                              env=env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=preexec)
        return Run(done.returncode, done.stdout, done.stderr)


# ---------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fault_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project bootstrapped on SQLite, with rows: copied (with its app.db) by every case."""
    root = write_project(tmp_path_factory.mktemp("fault-template") / "proj").resolve()
    url = f"sqlite:///{root / 'app.db'}"
    first = cli("bootstrap", cwd=root, url=url)
    assert first.code == 0, first
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in ROWS:
            conn.execute(text(statement))
    engine.dispose()
    again = cli("doctor", cwd=root, url=url)
    assert again.code == 0, again
    return root


@pytest.fixture(scope="session")
def mariadb_template(mariadb_server: MariaDBServer, fault_template: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> str:
    """The template's schema and rows in database `TEMPLATE_DB` (built by bootstrap from the
    same files: the revision is content-addressed, so no new file is written)."""
    root = tmp_path_factory.mktemp("fault-template-mariadb") / "proj"
    shutil.copytree(fault_template, root, ignore=shutil.ignore_patterns("__pycache__", "app.db*"))
    mariadb_server.create_database(TEMPLATE_DB)
    url = mariadb_server.app_url(TEMPLATE_DB)
    first = cli("bootstrap", cwd=root, url=url)
    assert first.code == 0 and "autogenerate" not in first.stdout, first
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in ROWS:
            conn.execute(text(statement))
    engine.dispose()
    return f"{mariadb_server.root_url}/{TEMPLATE_DB}"


def _copy_database(server: MariaDBServer, name: str) -> None:
    """`TEMPLATE_DB`'s tables (definitions with their foreign keys, and rows) into `name`."""
    conn = pymysql.connect(host=server.host, port=server.port, user="root", password="",
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                        "COLLATE utf8mb4_unicode_ci")
            cur.execute(f"USE `{name}`")
            for table in ("alembic_version", "author", "post"):  # foreign-key order
                cur.execute(f"SHOW CREATE TABLE `{TEMPLATE_DB}`.`{table}`")
                cur.execute(cur.fetchone()[1])
                cur.execute(f"INSERT INTO `{table}` SELECT * FROM `{TEMPLATE_DB}`.`{table}`")
    finally:
        conn.close()


@pytest.fixture
def fault(request: pytest.FixtureRequest, fault_template: Path, tmp_path: Path
          ) -> Iterator[Fault]:
    """A fresh copy of the template; the backend comes from indirect parametrization."""
    root = tmp_path / "proj"
    if request.param == "sqlite":
        shutil.copytree(fault_template, root, ignore=shutil.ignore_patterns("__pycache__"))
        url = f"sqlite:///{root / 'app.db'}"
        yield Fault("sqlite", root, url, url)
        return
    server: MariaDBServer = request.getfixturevalue("mariadb_server")
    request.getfixturevalue("mariadb_template")
    shutil.copytree(fault_template, root, ignore=shutil.ignore_patterns("__pycache__", "app.db*"))
    name = "f_" + secrets.token_hex(5)
    _copy_database(server, name)
    try:
        yield Fault("mariadb", root, server.app_url(name), f"{server.root_url}/{name}", server,
                    name, [server.app_password])
    finally:
        server.drop_database(name)
