"""The version-table recorder (engine/state/recorder.py), on real SQLite and MariaDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection

from alembic_repair.engine.project import Project
from alembic_repair.engine.state.recorder import (
    check_version_column,
    current_heads,
    read_versions,
    recorded_rows,
    version_rows,
    write_version_rows,
)
from alembic_repair.errors import RefusedUnsafe


@pytest.fixture
def conn(backend) -> Iterator[Connection]:
    engine = create_engine(backend.url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _sql(conn: Connection, *statements: str) -> None:
    for statement in statements:
        conn.exec_driver_sql(statement)
    conn.commit()


def _project(root: Path, url: str) -> Project:
    return Project(root, root / "alembic.ini", root / "alembic", url)


def test_a_missing_table_reads_as_nothing(conn: Connection) -> None:
    assert recorded_rows(conn) is None
    assert version_rows(conn) == () and current_heads(conn) == ()
    assert not read_versions(conn).exists
    check_version_column(conn)  # nothing to refuse


def test_an_int_version_num_reads_as_text(conn: Connection) -> None:
    _sql(conn, "CREATE TABLE alembic_version (version_num INTEGER NOT NULL PRIMARY KEY)",
         "INSERT INTO alembic_version VALUES (12)")
    assert current_heads(conn) == ("12",)
    table = read_versions(conn)
    assert table.exists and table.rows == ("12",) and table.heads == ("12",)
    with pytest.raises(RefusedUnsafe, match="version_num is INTEGER, but revision ids are text"):
        check_version_column(conn)


def test_duplicate_rows_are_kept(conn: Connection) -> None:
    _sql(conn, "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
         "INSERT INTO alembic_version VALUES ('aaa111')",
         "INSERT INTO alembic_version VALUES ('aaa111')",
         "INSERT INTO alembic_version VALUES ('bbb222')")
    assert sorted(version_rows(conn)) == ["aaa111", "aaa111", "bbb222"]
    table = read_versions(conn)
    assert sorted(table.rows) == ["aaa111", "aaa111", "bbb222"]
    assert table.heads == ("aaa111", "bbb222")
    assert not table.has_pk and table.length == 32


def test_a_stamp_rebuilds_a_table_without_a_key(conn: Connection, tmp_path: Path,
                                                 backend) -> None:
    _sql(conn, "CREATE TABLE alembic_version (version_num VARCHAR(8) NOT NULL)",
         "INSERT INTO alembic_version VALUES ('aaa111')",
         "INSERT INTO alembic_version VALUES ('aaa111')")
    project = _project(tmp_path, backend.url)

    write_version_rows(project, conn, ("ccc333", "bbb222"))

    table = read_versions(conn)
    assert sorted(table.rows) == ["bbb222", "ccc333"]
    assert table.has_pk and table.length == 32
    assert inspect(conn).get_pk_constraint("alembic_version")["constrained_columns"] == \
        ["version_num"]
    (entry,) = [json.loads(line) for line in
                (tmp_path / ".alembic_repair" / "stamps.jsonl").read_text().splitlines()]
    assert entry["before"] == ["aaa111", "aaa111"] and entry["after"] == "ccc333, bbb222"


def test_a_stamp_replaces_an_int_column_and_creates_a_missing_table(
        conn: Connection, tmp_path: Path, backend) -> None:
    project = _project(tmp_path, backend.url)
    write_version_rows(project, conn, ("aaa111",))
    assert read_versions(conn).rows == ("aaa111",)
    _sql(conn, "DROP TABLE alembic_version",
         "CREATE TABLE alembic_version (version_num INTEGER NOT NULL PRIMARY KEY)",
         "INSERT INTO alembic_version VALUES (12)")

    write_version_rows(project, conn, ("bbb222",))

    assert current_heads(conn) == ("bbb222",)
    check_version_column(conn)  # text again


def test_another_table_name(conn: Connection, tmp_path: Path, backend) -> None:
    write_version_rows(_project(tmp_path, backend.url), conn, ("aaa111",), table="my_versions")
    assert current_heads(conn, "my_versions") == ("aaa111",)
    assert recorded_rows(conn) is None  # alembic_version itself was not touched
