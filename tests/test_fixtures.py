"""The database fixtures themselves work: real SQLite and a real MariaDB server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pymysql
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:  # conftest is not imported at runtime (pytest owns that module)
    from conftest import Backend, MariaDBServer

# The password the fixture gives the `app` user: every URL-breaking character.
APP_PASSWORD = "p%ss@w:rd/#?"


def _roundtrip(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE widget (id INTEGER PRIMARY KEY, name VARCHAR(50))"))
            conn.execute(
                text("INSERT INTO widget (id, name) VALUES (:id, :name)"),
                [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "ü"}],
            )
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM widget")).scalar_one())
    finally:
        engine.dispose()


def test_backend_create_insert_select(backend: Backend) -> None:
    assert backend.name in {"sqlite", "mariadb"}
    assert make_url(backend.url).get_backend_name() == (
        "sqlite" if backend.name == "sqlite" else "mysql"
    )
    assert _roundtrip(backend.url) == 3


def test_sqlite_url_points_into_tmp_path(sqlite_url: str, tmp_path: Path) -> None:
    url = make_url(sqlite_url)
    assert url.drivername == "sqlite"
    assert url.database == str(tmp_path / "app.db")
    assert not (tmp_path / "app.db").exists()


def test_mariadb_server_is_really_mariadb(mariadb_server: MariaDBServer) -> None:
    engine = create_engine(mariadb_server.root_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT VERSION()")).scalar_one()
    finally:
        engine.dispose()
    assert "MariaDB" in version


def test_mariadb_database_is_empty_and_utf8mb4(mariadb_url: str) -> None:
    engine = create_engine(mariadb_url)
    try:
        assert inspect(engine).get_table_names() == []
        with engine.connect() as conn:
            charset = conn.execute(text("SELECT @@character_set_database")).scalar_one()
    finally:
        engine.dispose()
    assert charset == "utf8mb4"


@pytest.fixture
def other_mariadb_url(mariadb_server: MariaDBServer) -> Iterator[str]:
    name = "t_other_" + secrets.token_hex(4)
    url = mariadb_server.create_database(name)
    yield url
    mariadb_server.drop_database(name)


def test_two_mariadb_urls_are_isolated(mariadb_url: str, other_mariadb_url: str) -> None:
    assert make_url(mariadb_url).database != make_url(other_mariadb_url).database
    assert _roundtrip(mariadb_url) == 3
    engine = create_engine(other_mariadb_url)
    try:
        assert "widget" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_drop_database_removes_it(mariadb_server: MariaDBServer) -> None:
    url = mariadb_server.create_database("t_dropcheck")
    assert make_url(url).database == "t_dropcheck"
    mariadb_server.drop_database("t_dropcheck")
    conn = pymysql.connect(host=mariadb_server.host, port=mariadb_server.port, user="root")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE 't\\_dropcheck'")
            assert cur.fetchall() == ()
    finally:
        conn.close()


def test_app_user_logs_in_with_special_character_password(
    mariadb_url: str, mariadb_server: MariaDBServer
) -> None:
    database = make_url(mariadb_url).database
    assert database is not None
    url = mariadb_server.app_url(database)
    # The raw password must not appear unescaped in the URL, yet parse back intact.
    assert APP_PASSWORD not in url
    parsed = make_url(url)
    assert parsed.username == "app"
    assert parsed.password == APP_PASSWORD == mariadb_server.app_password
    assert parsed.host == "127.0.0.1" and parsed.port == mariadb_server.port
    assert parsed.database == database

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            user = conn.execute(text("SELECT CURRENT_USER()")).scalar_one()
            assert conn.execute(text("SELECT DATABASE()")).scalar_one() == database
    finally:
        engine.dispose()
    assert user.startswith("app@")
    assert _roundtrip(url) == 3


def test_app_user_wrong_password_is_refused(mariadb_server: MariaDBServer) -> None:
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        pymysql.connect(
            host=mariadb_server.host,
            port=mariadb_server.port,
            user="app",
            password=APP_PASSWORD + "x",
            connect_timeout=5,
        )
    assert excinfo.value.args[0] == 1045
