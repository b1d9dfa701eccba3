"""Projects made from published packages' Alembic histories, and what the tier measures on them.

A project is a folder in tmp_path: ``alembic.ini`` (``script_location = %(here)s/alembic``,
the test database's URL, the package's own logging sections), a copy of the package's migrations
folder taken from the cached venv (never committed here) and, where the application runs a
set-up before Alembic, ``[tool.alembic_repair] setup`` in pyproject.toml. The venv's own
``alembic`` and ``alembic-repair`` run in it as subprocesses, as a user's shell would.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from realworld_venvs import Venv
from sqlalchemy import create_engine, inspect, text

from alembic_repair.engine.state.schema import is_user_table

BACKENDS = ["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)]


@dataclass(frozen=True)
class History:
    """A published package's Alembic history and how its application builds a new database."""

    name: str  # test id
    venv: str  # requirements/<venv>.txt
    migrations: str  # folder inside site-packages
    ini: str | None  # the package's alembic.ini (for its logging sections), inside site-packages
    #: Python run in the venv with ``URL`` bound, before ``alembic upgrade head``: the set-up the
    #: application runs first (None: plain ``alembic upgrade head`` from empty)
    build: str | None
    #: True when the build above leaves the database at head by itself (create_all + stamp
    #: head), so no ``alembic upgrade head`` follows
    build_stamps: bool
    #: ``[tool.alembic_repair] setup`` declared in the project's pyproject.toml
    setup: str | None
    older: str  # a revision before head, for the "older wrong stamp" scenario
    rows: tuple[str, ...]  # INSERTs (portable SQL) that put a few rows into 2-3 tables
    #: (parent revision, Python run in the venv with ``op`` bound): the first operation of the
    #: head revision, for the half-applied scenario (None: the head has a single operation or
    #: no DDL, so a partial run is the older-stamp scenario)
    half_applied: tuple[str, str] | None = None
    #: the application's build on MariaDB when it differs from `build` (stamps head itself)
    mariadb_build: str | None = None
    #: ``setup`` declared for MariaDB when it differs from `setup` (the build above)
    mariadb_setup: str | None = None


OPTUNA_ROWS = (
    "INSERT INTO studies (study_id, study_name) VALUES (901, 'rw-a'), (902, 'rw-b')",
    "INSERT INTO study_directions (study_direction_id, direction, study_id, objective) "
    "VALUES (901, 'MINIMIZE', 901, 0), (902, 'MAXIMIZE', 902, 0)",
    "INSERT INTO trials (trial_id, number, study_id, state, datetime_start) "
    "VALUES (901, 0, 901, 'COMPLETE', '2024-01-02 03:04:05'), (902, 1, 901, 'RUNNING', NULL)",
)

MLFLOW_ROWS = (
    "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
    "creation_time, last_update_time, workspace) VALUES "
    "(901, 'rw-a', '/tmp/a', 'active', 1700000000000, 1700000000000, 'default'), "
    "(902, 'rw-b', '/tmp/b', 'deleted', 1700000000001, 1700000000001, 'default')",
    "INSERT INTO experiment_tags (`key`, value, experiment_id) VALUES "
    "('team', 'core', 901), ('owner', 'rw', 902)",
    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
    "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
    "experiment_id, deleted_time) VALUES "
    "('rw0000000000000000000000000000a1', 'r1', 'LOCAL', 's', 'main', 'u', 'FINISHED', "
    "1700000000000, 1700000000500, 'v', 'active', '/tmp/a/r1', 901, NULL)",
)

JUPYTERHUB_ROWS = (
    "INSERT INTO users (id, name, admin, created, cookie_id) VALUES "
    "(901, 'rw-alice', 0, '2024-01-02 03:04:05', 'c901'), "
    "(902, 'rw-bob', 1, '2024-01-02 03:04:06', 'c902')",
    "INSERT INTO groups (id, name) VALUES (901, 'rw-group')",
    "INSERT INTO user_group_map (user_id, group_id) VALUES (901, 901), (902, 901)",
)

HISTORIES = (
    History(
        name="optuna", venv="optuna", migrations="optuna/storages/_rdb/alembic",
        ini="optuna/storages/_rdb/alembic.ini", build=None, build_stamps=False, setup=None,
        older="v3.0.0.d", rows=OPTUNA_ROWS,
        # Plain `alembic upgrade head` stops at v2.4.0.a on MariaDB 10.11 (error 1072: it
        # drops a column of a unique key); optuna itself builds a new database with create_all
        # + stamp head (RDBStorage), which is what its users' MariaDB databases are.
        mariadb_build="import optuna\noptuna.storages.RDBStorage(URL)\n",
        mariadb_setup="optuna.storages:RDBStorage",
    ),
    History(
        name="mlflow", venv="mlflow", migrations="mlflow/store/db_migrations",
        ini="mlflow/store/db_migrations/alembic.ini",
        build=("from sqlalchemy import create_engine\n"
               "from mlflow.store.tracking.dbmodels.initial_models import Base\n"
               "engine = create_engine(URL)\n"
               "Base.metadata.create_all(engine)\n"
               "engine.dispose()\n"),
        build_stamps=False, setup="mlflow.store.tracking.dbmodels.initial_models:Base",
        older="e7d1f4b2a9c6", rows=MLFLOW_ROWS,
        half_applied=("8b6ad64cb8f5",
                      "op.drop_constraint('mcp_server_version_tags_version_fkey', "
                      "'mcp_server_version_tags', type_='foreignkey')"),
    ),
    History(
        name="jupyterhub", venv="jupyterhub", migrations="jupyterhub/alembic",
        ini="jupyterhub/alembic.ini",
        build="from jupyterhub.orm import new_session_factory\nnew_session_factory(URL)\n",
        build_stamps=True, setup="jupyterhub.orm:new_session_factory",
        older="afd65840b69e", rows=JUPYTERHUB_ROWS,
    ),
)


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def brief(self) -> str:
        """The exit code and the tail of the output, for assertion messages (without the
        warnings Alembic's autogenerate prints about the package's own models)."""
        noise = ("approximate signature", "util.warn(", "UserWarning: Autogenerate",
                 "SAWarning", "warnings.warn(", "alembic.runtime.migration",
                 "alembic.runtime.plugins", "alembic.autogenerate.compare")
        lines = [line for line in self.output.strip().splitlines()
                 if not any(n in line for n in noise)]
        # The errors and what the run did or refused first, then the tail.
        key = [line for line in lines
               if re.search(r"AR\d{3} error|^\s*(plan|left|refused|stamp|error:)", line)]
        return f"exit {self.code}:\n" + "\n".join([*key, "...", *lines[-12:]])


@dataclass(frozen=True)
class Project:
    history: History
    venv: Venv
    root: Path
    url: str
    #: XDG_CACHE_HOME of the tools' processes (None: inherited): the tier shares one replay
    #: cache between pytest-xdist workers, so each history is replayed once per backend
    cache_home: str | None = None

    @property
    def versions(self) -> Path:
        return self.root / "alembic" / "versions"

    def run(self, tool: str, *args: str, timeout: float = 600) -> Run:
        """``<venv>/bin/<tool> ARGS`` from the project folder (no DATABASE_URL: alembic.ini
        holds the URL); XDG_CACHE_HOME is inherited (the suite's private cache)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV")}
        if self.cache_home:
            env["XDG_CACHE_HOME"] = self.cache_home
        done = subprocess.run([str(self.venv.bin / tool), *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        return Run(done.returncode, done.stdout, done.stderr)

    def python(self, code: str, timeout: float = 600) -> Run:
        """Python run in the venv with ``URL`` bound to the project's database URL."""
        return self.run("python", "-c", f"URL = {self.url!r}\n{code}", timeout=timeout)

    def alembic(self, *args: str) -> Run:
        return self.run("alembic", *args)

    def repair(self, *args: str) -> Run:
        return self.run("alembic-repair", *args)


def make_project(history: History, venv: Venv, root: Path, url: str,
                 cache_home: str | None = None) -> Project:
    """alembic.ini, the package's migrations folder and pyproject.toml under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(venv.site_packages / history.migrations, root / "alembic",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "alembic.ini",
                                                  "__init__.py"))
    ini = configparser.ConfigParser(interpolation=None)
    ini["alembic"] = {"script_location": "%(here)s/alembic",
                      "sqlalchemy.url": url.replace("%", "%%")}
    if history.ini:
        package = configparser.ConfigParser(interpolation=None)
        package.read(venv.site_packages / history.ini)
        for section in package.sections():
            if section in ("loggers", "handlers", "formatters") or section.startswith(
                    ("logger_", "handler_", "formatter_")):
                ini[section] = dict(package[section])
    with (root / "alembic.ini").open("w") as f:
        ini.write(f)
    setup = history.mariadb_setup if url.startswith("mysql") and history.mariadb_setup \
        else history.setup
    if setup:
        (root / "pyproject.toml").write_text(f'[tool.alembic_repair]\nsetup = "{setup}"\n')
    return Project(history, venv, root, url, cache_home)


def build_fresh(project: Project, backend: str) -> None:
    """The database as the application builds a new one: its set-up, then (unless the set-up
    stamps head itself) plain ``alembic upgrade head``."""
    history = project.history
    if backend == "mariadb" and history.mariadb_build:
        done = project.python(history.mariadb_build)
        assert done.code == 0, f"{history.name} build failed, {done.brief()}"
        return
    if history.build:
        done = project.python(history.build)
        assert done.code == 0, f"{history.name} set-up failed, {done.brief()}"
    if not history.build_stamps:
        done = project.alembic("upgrade", "head")
        assert done.code == 0, f"{history.name}: alembic upgrade head failed, {done.brief()}"


def head_of(project: Project) -> str:
    done = project.alembic("heads")
    heads = re.findall(r"^(\S+) \(head\)", done.stdout, flags=re.M)
    assert done.code == 0 and len(heads) == 1, f"alembic heads: {done.brief()}"
    return heads[0]


def version_rows(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return []
            return sorted(r[0] for r in conn.execute(text("SELECT version_num FROM "
                                                          "alembic_version")))
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                if conn.dialect.name == "sqlite":
                    statement = statement.replace("`", '"')
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _user_tables(insp: object) -> list[str]:
    return sorted(t for t in insp.get_table_names()  # type: ignore[attr-defined]
                  if is_user_table(t) and t != "alembic_version")


def schema_digest(url: str) -> dict[str, str]:
    """Per user table, what reflection sees (columns, keys, indexes): proves 'nothing re-run'.
    The tool's own tables and alembic_version are left out."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            result = {}
            for table in _user_tables(insp):
                parts = [
                    [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                    insp.get_pk_constraint(table).get("constrained_columns"),
                    sorted((str(f.get("name")), tuple(f["constrained_columns"]),
                            f["referred_table"]) for f in insp.get_foreign_keys(table)),
                    sorted((str(i["name"]), tuple(map(str, i["column_names"])),
                            bool(i["unique"])) for i in insp.get_indexes(table)),
                    sorted((str(u["name"]), tuple(u["column_names"]))
                           for u in insp.get_unique_constraints(table)),
                ]
                result[table] = json.dumps(parts, default=str)
            return result
    finally:
        engine.dispose()


def rows_digest(url: str, columns: dict[str, list[str]] | None = None
                ) -> dict[str, tuple[int, str]]:
    """(row count, checksum of the rows in a stable order) per user table: proves 'every row
    kept'. With `columns`, only those tables and columns (the ones that existed before)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            quote = conn.dialect.identifier_preparer.quote
            result = {}
            tables = sorted(columns) if columns else _user_tables(insp)
            for table in tables:
                names = (columns or {}).get(table) or [c["name"] for c in insp.get_columns(table)]
                listed = ", ".join(quote(c) for c in names)
                rows = conn.execute(text(f"SELECT {listed} FROM {quote(table)}")).all()
                ordered = sorted(repr(tuple(r)) for r in rows)
                result[table] = (len(rows), hashlib.sha256("\n".join(ordered).encode())
                                 .hexdigest())
            return result
    finally:
        engine.dispose()


def table_columns(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            return {t: [c["name"] for c in insp.get_columns(t)] for t in _user_tables(insp)}
    finally:
        engine.dispose()


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` but bytecode: proves ``versions/`` unchanged."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def copy_mariadb(source_url: str, target_url: str) -> None:
    """The source database's tables (full DDL, foreign keys included) and rows into the empty
    target database: cheaper than replaying a long history again."""
    source, target = create_engine(source_url), create_engine(target_url)
    source_db = source.url.database
    try:
        with source.connect() as src, target.begin() as dst:
            dst.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            for table in inspect(src).get_table_names():
                ddl = src.execute(text(f"SHOW CREATE TABLE `{table}`")).one()[1]
                dst.execute(text(ddl))
                dst.execute(text(f"INSERT INTO `{table}` SELECT * FROM `{source_db}`.`{table}`"))
            dst.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
    finally:
        source.dispose()
        target.dispose()
