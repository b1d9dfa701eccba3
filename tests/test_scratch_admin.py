"""Scratch schemas for an account that may not create databases (a Docker user with ``GRANT
ALL ON app.*`` only): doctor names the exact GRANT (AR408), or replays through the root
password the compose file declares, leaving no schema, no grant and no password behind."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from helpers import Run, cli, execute, table_digest
from sqlalchemy.engine import make_url

from alembic_repair.data.backups import dump_tools
from alembic_repair.engine.compose import admin_from_compose, published_ports
from alembic_repair.testing.mariadb import MariaDBServer
from alembic_repair.testing.scenarios import build

ROOT = ("root", "127.0.0.1")  # the account the test server's root logs in as over TCP
STALE = "_ar_replay_20200101T000000_deadbeef"  # a scratch schema no live run holds


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture
def as_root(mariadb_server: MariaDBServer) -> Iterator[pymysql.cursors.Cursor]:
    conn = pymysql.connect(host=mariadb_server.host, port=mariadb_server.port, user="root",
                           password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


@pytest.fixture
def limited(tmp_path: Path, mariadb_url: str, mariadb_server: MariaDBServer,
            as_root: pymysql.cursors.Cursor) -> Iterator[tuple[Path, str, str]]:
    """(project, URL of an account with ALL on the project's database only, its name)."""
    root = tmp_path / "proj"
    root.mkdir()
    build("healthy", root, mariadb_url)
    database = mariadb_url.rsplit("/", 1)[1]
    user = "lim_" + secrets.token_hex(3)
    as_root.execute("CREATE USER %s@'%%' IDENTIFIED BY 'limpw'", (user,))
    as_root.execute(f"GRANT ALL ON `{database}`.* TO %s@'%%'", (user,))
    try:
        yield (root, f"mysql+pymysql://{user}:limpw@127.0.0.1:{mariadb_server.port}/{database}",
               user)
    finally:
        as_root.execute("DROP USER IF EXISTS %s@'%%'", (user,))


@pytest.fixture
def root_password(as_root: pymysql.cursors.Cursor) -> Iterator[str]:
    """The test server's root gets a password for the test (the compose file declares it)."""
    password = "rootpw" + secrets.token_hex(8)
    as_root.execute("SET PASSWORD FOR %s@%s = PASSWORD(%s)", (*ROOT, password))
    try:
        yield password
    finally:  # the session stays open: the rest of the suite logs in without a password
        as_root.execute("SET PASSWORD FOR %s@%s = PASSWORD('')", ROOT)


def _doctor(root: Path, url: str) -> tuple[Run, dict[str, str]]:
    run = cli("doctor", "--format", "json", cwd=root, url=url)
    findings = {f["code"]: f["detail"] for f in json.loads(run.stdout)["findings"]}
    return run, findings


def _scratch(cur: pymysql.cursors.Cursor) -> list[str]:
    cur.execute(r"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                r"WHERE SCHEMA_NAME LIKE '\_ar\_%%'")
    return [row[0] for row in cur.fetchall()]


def _grants(cur: pymysql.cursors.Cursor, user: str) -> list[str]:
    cur.execute("SHOW GRANTS FOR %s@'%%'", (user,))
    return sorted(row[0] for row in cur.fetchall())


def _compose(root: Path, environment: str, url: str) -> None:
    port = make_url(url).port
    (root / "docker-compose.yml").write_text(
        f"services:\n  db:\n    image: mariadb:11\n    ports: ['127.0.0.1:{port}:3306']\n"
        "    environment:\n" + environment)


def test_without_admin_doctor_names_the_exact_grant_and_it_suffices(
        limited: tuple[Path, str, str], as_root: pymysql.cursors.Cursor) -> None:
    root, url, user = limited
    run, findings = _doctor(root, url)
    grant = rf"GRANT ALL ON `\_ar\_%`.* TO '{user}'@'%'"
    assert findings["AR408"].endswith(f"with: {grant}"), findings["AR408"]
    assert findings["AR408"].startswith(
        f"the replay could not start: Access denied for user '{user}'@'%' to database "
        "'_ar_replay_"), findings["AR408"]
    assert "limpw" not in run.output and run.code == 1
    assert _scratch(as_root) == []

    as_root.execute(grant)  # exactly what the finding says, nothing wider
    as_root.execute(f"CREATE DATABASE `{STALE}`")  # a killed run's: unlocked
    run, findings = _doctor(root, url)
    assert run.code == 0 and findings == {}, run.output  # replayed: the refusal was not cached
    assert _scratch(as_root) == []  # the grant also lets the sweep see and drop a stale one


def test_compose_root_password_creates_the_scratch_schema_for_the_limited_account(
        limited: tuple[Path, str, str], as_root: pymysql.cursors.Cursor,
        root_password: str) -> None:
    root, url, user = limited
    before = _grants(as_root, user)
    # A run killed between its DROP and its REVOKE, and one killed before its DROP.
    escaped = STALE.replace("_", "\\_")
    as_root.execute(f"GRANT ALL ON `{escaped}`.* TO %s@'%%'", (user,))
    assert len(_grants(as_root, user)) == len(before) + 1
    as_root.execute(f"CREATE DATABASE `{STALE.replace('2020', '2021')}`")
    _compose(root, f"      MYSQL_ROOT_PASSWORD: {root_password}\n      MYSQL_DATABASE: app\n",
             url)
    run, findings = _doctor(root, url)
    assert run.code == 0 and findings == {}, run.output  # replayed as the limited account
    assert _scratch(as_root) == []
    assert _grants(as_root, user) == before  # granted on the one schema, revoked afterwards
    assert root_password not in run.output
    holders = [p for p in root.parent.rglob("*") if p.is_file() and p.name != "docker-compose.yml"
               and root_password.encode() in p.read_bytes()]
    assert holders == []  # nor written anywhere (caches included)


def test_a_wrong_root_password_falls_back_to_ar408_with_the_reason(
        limited: tuple[Path, str, str], as_root: pymysql.cursors.Cursor,
        root_password: str) -> None:
    root, url, user = limited
    before = _grants(as_root, user)
    wrong = "wrong" + secrets.token_hex(6)
    _compose(root, f"      MARIADB_ROOT_PASSWORD: {wrong}\n", url)
    run, findings = _doctor(root, url)
    assert run.code == 1  # as without a compose file (the first test)
    assert set(findings) == {"AR408"}
    detail = findings["AR408"]
    assert "\n" not in detail
    assert re.search(r"; the login as root@127\.0\.0\.1:\d+ with MARIADB_ROOT_PASSWORD from "
                     r"docker-compose\.yml failed: refused the password; ", detail), detail
    assert detail.endswith(rf"GRANT ALL ON `\_ar\_%`.* TO '{user}'@'%'")
    assert wrong not in run.output and root_password not in run.output
    assert _scratch(as_root) == [] and _grants(as_root, user) == before


def test_root_is_not_tried_on_a_local_port_the_service_does_not_publish(
        limited: tuple[Path, str, str], as_root: pymysql.cursors.Cursor,
        root_password: str) -> None:
    """A server on this machine's port that the compose service does not publish may be a
    tunnel to another server: its root is not sent the compose file's password."""
    root, url, user = limited
    (root / "docker-compose.yml").write_text(
        "services:\n  db:\n    image: mariadb:11\n    ports: ['127.0.0.1:1:3306']\n"
        f"    environment:\n      MYSQL_ROOT_PASSWORD: {root_password}\n")
    run, findings = _doctor(root, url)
    assert run.code == 1 and set(findings) == {"AR408"}, run.output
    assert "publishes no port" in findings["AR408"] and root_password not in run.output
    assert _scratch(as_root) == []


def test_published_ports_reads_both_forms() -> None:
    assert published_ports(["3307:3306", "127.0.0.1:3308:3306/tcp", "3306",
                            {"published": "3309", "target": 3306}, "4000-4001:5000-5001",
                            "[::1]:3310:3306"]) == {3307, 3308, 3309, 4000, 4001, 3310}
    assert published_ports(None) == frozenset()


@pytest.mark.skipif(dump_tools() is None, reason="mariadb-dump/mariadb not on PATH")
def test_restore_loads_through_root_made_scratch_schemas_as_the_limited_account(
        limited: tuple[Path, str, str], as_root: pymysql.cursors.Cursor, mariadb_url: str,
        root_password: str) -> None:
    root, url, user = limited
    full = mariadb_url.replace("root@", f"root:{root_password}@", 1)
    made = cli("backup", "--method", "dump", cwd=root, url=full)
    assert made.code == 0, made.output
    folder = made.stdout.split("backup", 1)[1].split()[0]
    before, grants = table_digest(full), _grants(as_root, user)
    execute(full, "DELETE FROM post")
    _compose(root, f"      MYSQL_ROOT_PASSWORD: {root_password}\n", url)
    run = cli("restore", folder, "--yes", cwd=root, url=url)
    assert run.code == 0, run.output
    assert table_digest(full) == before
    assert _scratch(as_root) == [] and _grants(as_root, user) == grants
    assert root_password not in run.output


def test_the_root_password_is_read_as_the_images_read_it(tmp_path: Path) -> None:
    """MYSQL_/MARIADB_ROOT_PASSWORD (with ${VAR} from .env), an explicitly allowed empty one;
    a random or secret-file password is none we can use."""
    compose = tmp_path / "compose.yaml"
    (tmp_path / ".env").write_text("DB_ROOT=s3cret\n")
    compose.write_text("services:\n  database:\n    image: mysql:8\n    hostname: dbhost\n"
                       "    environment:\n      MYSQL_ROOT_PASSWORD: ${DB_ROOT}\n")
    login = admin_from_compose(compose, {})
    assert login is not None and login.password == "s3cret"
    assert login.variable == "MYSQL_ROOT_PASSWORD" and login.hosts == {"database", "dbhost"}
    assert "s3cret" not in repr(login)
    compose.write_text("services:\n  db:\n    image: mariadb:11\n    environment:\n"
                       "      - MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1\n")
    login = admin_from_compose(compose, {})
    assert login is not None and login.password == ""
    for variables in ("MYSQL_RANDOM_ROOT_PASSWORD: 'yes'", "MYSQL_ROOT_PASSWORD_FILE: /run/s",
                      "MYSQL_ALLOW_EMPTY_PASSWORD: ''"):
        compose.write_text(f"services:\n  db:\n    image: mysql:8\n    environment:\n"
                           f"      {variables}\n")
        assert admin_from_compose(compose, {}) is None, variables


def test_the_scratch_schema_takes_the_live_databases_character_set(
        tmp_path: Path, mariadb_server: MariaDBServer, as_root: pymysql.cursors.Cursor) -> None:
    """A revision naming a utf8mb4 collation builds on a utf8mb4 database of a server whose
    default is latin1: the replay's scratch schema must be made like the live one, or doctor
    reports AR404 on every healthy database."""
    as_root.execute("SELECT @@character_set_server")
    (server_default,) = as_root.fetchone()
    assert server_default != "utf8mb4"  # else this test proves nothing
    name = "cs_" + secrets.token_hex(4)
    as_root.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    try:
        url = f"mysql+pymysql://root@127.0.0.1:{mariadb_server.port}/{name}"
        root = tmp_path / "proj"
        (root / "alembic" / "versions").mkdir(parents=True)
        (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/alembic\n")
        (root / "alembic" / "env.py").write_text(
            "import os\nfrom alembic import context\nfrom sqlalchemy import create_engine\n"
            "with create_engine(os.environ['DATABASE_URL']).connect() as connection:\n"
            "    context.configure(connection=connection, target_metadata=None)\n"
            "    with context.begin_transaction():\n        context.run_migrations()\n")
        (root / "alembic" / "versions" / "a1.py").write_text(
            'revision = "a1"\ndown_revision = None\nfrom alembic import op\n'
            "import sqlalchemy as sa\n\ndef upgrade():\n"
            '    op.create_table("tag", sa.Column("id", sa.Integer, primary_key=True),\n'
            '                    sa.Column("key", sa.String(250)))\n'
            '    op.get_bind().execute(sa.text(\n'
            '        "SELECT id FROM tag WHERE `key` COLLATE utf8mb4_bin = \'x\'"))\n'
            "\ndef downgrade():\n    op.drop_table('tag')\n")
        done = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=root,
                              env={**os.environ, "DATABASE_URL": url}, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr

        run = cli("doctor", "--format", "json", cwd=root, url=url)

        codes = [f["code"] for f in json.loads(run.stdout)["findings"]]
        assert "AR404" not in codes and "AR408" not in codes, run.output
        as_root.execute("SHOW DATABASES LIKE '\\_ar\\_%'")
        assert as_root.fetchall() == ()
    finally:
        as_root.execute(f"DROP DATABASE IF EXISTS `{name}`")
