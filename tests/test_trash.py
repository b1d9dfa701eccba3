"""Soft drop (trash.py): rename into ``_ar_trash_*``, list, restore, purge; guards.py."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import cli, execute, table_digest, table_names, write_project
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from alembic_repair import (
    NeedsRepair,
    Project,
    RefusedUnsafe,
    TrashEntry,
    bootstrap,
    doctor,
    trash_drop,
    trash_list,
    trash_purge,
    trash_restore,
)
from alembic_repair.data import trash as trash_module
from alembic_repair.data.guards import is_local
from alembic_repair.data.trash import INDEX_TABLE, MAX_IDENTIFIER, trash_name

REMOTE = "mysql+pymysql://u:s3cret-pw@db.example.com/x"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _project(tmp_path: Path, url: str) -> Project:
    return Project.discover(write_project(tmp_path / "proj"), url=url)


def _user_digest(url: str) -> dict[str, tuple[int, str]]:
    return {t: d for t, d in table_digest(url).items() if not t.startswith("_ar_trash_")}


def _fill(url: str, name: str, rows: int) -> None:
    table = Table(name, MetaData(), Column("id", Integer, primary_key=True),
                  Column("label", String(40)))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            table.create(conn)
            if rows:
                conn.execute(table.insert(), [{"id": i, "label": f"row {i}"}
                                              for i in range(1, rows + 1)])
    finally:
        engine.dispose()


def _age_entry(url: str, trash: str, days: int) -> None:
    then = (datetime.now(timezone.utc) - timedelta(days=days)).replace(tzinfo=None, microsecond=0)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {INDEX_TABLE} SET dropped_at = :t WHERE trash_name = :n"),
                         {"t": then, "n": trash})
    finally:
        engine.dispose()


def test_drop_and_restore_keep_rows_and_foreign_keys(tmp_path: Path, backend) -> None:
    root = write_project(tmp_path / "proj")
    project = Project.discover(root, url=backend.url)
    bootstrap(project)
    execute(backend.url, "INSERT INTO author (id, name) VALUES (1, 'Ada'), (2, 'Grace')",
            "INSERT INTO post (id, title, body, author_id) VALUES (1, 'one', 'x', 1), "
            "(2, 'two', NULL, 2), (3, 'three', 'y', 2)")
    before = table_digest(backend.url)

    entry = trash_drop(project, "author", yes=True)
    assert entry.table == "author" and entry.rows is None  # the drop never reads the rows
    assert trash_list(project)[0].rows == 2
    assert entry.trash_name.startswith("_ar_trash_") and entry.trash_name.endswith("_author")
    assert len(entry.trash_name) == len("_ar_trash_20240101120000_author")
    tables = table_names(backend.url)
    assert "author" not in tables and entry.trash_name in tables
    assert table_digest(backend.url)[entry.trash_name] == before["author"]
    assert trash_list(project) == (dataclasses.replace(entry, rows=2),)
    engine = create_engine(backend.url)
    try:
        with engine.connect() as conn:  # the foreign key followed the table into the trash
            assert [fk["referred_table"] for fk in inspect(conn).get_foreign_keys("post")] == \
                [entry.trash_name]
    finally:
        engine.dispose()

    restored = trash_restore(project, "author", yes=True)
    assert restored == dataclasses.replace(entry, rows=2)
    assert trash_list(project) == ()
    assert _user_digest(backend.url) == before

    # The foreign key from post points at author again, and is enforced.
    engine = create_engine(backend.url)
    try:
        with engine.connect() as conn:
            fks = inspect(conn).get_foreign_keys("post")
            assert [(fk["referred_table"], fk["referred_columns"]) for fk in fks] == \
                [("author", ["id"])]
            if backend.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
            conn.execute(text("INSERT INTO post (id, title, author_id) VALUES (4, 'ok', 1)"))
            with pytest.raises(IntegrityError):
                conn.execute(text("INSERT INTO post (id, title, author_id) VALUES (5, 'x', 99)"))
            conn.rollback()
    finally:
        engine.dispose()


def test_trash_is_invisible_to_doctor_and_bootstrap(tmp_path: Path, backend) -> None:
    root = write_project(tmp_path / "proj")
    project = Project.discover(root, url=backend.url)
    bootstrap(project)
    _fill(backend.url, "legacy_stats", 3)
    assert [(f.code, f.location) for f in doctor(project).findings] == \
        [("AR406", "legacy_stats")]

    entry = trash_drop(project, "legacy_stats", yes=True)
    assert {entry.trash_name, INDEX_TABLE} <= table_names(backend.url)
    diagnosis = doctor(project, use_cache=False)
    assert diagnosis.findings == ()
    assert diagnosis.healthy

    revisions = sorted(p.name for p in project.versions_dir.glob("*.py"))
    again = bootstrap(project)
    assert not again.changed
    assert not [a for a in again.actions if "_ar_trash_" in a.message]
    assert sorted(p.name for p in project.versions_dir.glob("*.py")) == revisions
    assert table_digest(backend.url)[entry.trash_name][0] == 3


def test_trash_name_keeps_to_64_characters(tmp_path: Path, backend) -> None:
    project = _project(tmp_path, backend.url)
    long_name = "t" + "_abcdefghi" * 5 + "_12345678"
    assert len(long_name) == 60
    _fill(backend.url, long_name, 5)
    first = trash_drop(project, long_name, yes=True)
    assert len(first.trash_name) == MAX_IDENTIFIER
    assert first.table == long_name and trash_list(project)[0].rows == 5

    # The same table again, in the same second: a second, distinct name, still 64 characters.
    _fill(backend.url, long_name, 2)
    second = trash_drop(project, long_name, yes=True)
    assert len(second.trash_name) == MAX_IDENTIFIER
    assert second.trash_name != first.trash_name
    assert {e.trash_name for e in trash_list(project)} == {first.trash_name, second.trash_name}

    assert trash_restore(project, first.trash_name, yes=True).table == long_name
    assert table_digest(backend.url)[long_name][0] == 5


def test_trash_name_unit() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    assert trash_name("author", at) == "_ar_trash_20240506070809_author"
    long = "x" * 60
    name = trash_name(long, at)
    assert len(name) == 64 and name == "_ar_trash_20240506070809_" + "x" * 39
    other = trash_name(long, at, {name})
    assert len(other) == 64 and other.endswith("~2") and other != name


def test_restore_refused_when_the_name_is_taken(tmp_path: Path, backend) -> None:
    project = _project(tmp_path, backend.url)
    _fill(backend.url, "item", 4)
    entry = trash_drop(project, "item", yes=True)
    _fill(backend.url, "item", 1)
    before = table_digest(backend.url)

    with pytest.raises(NeedsRepair) as refused:
        trash_restore(project, "item", yes=True)
    assert str(refused.value) == (
        f"trash restore item: table item exists already, so {entry.trash_name} cannot be "
        "renamed back; nothing changed; rename or soft-drop the existing item first"
    )
    run = cli("trash", "restore", entry.trash_name, "--yes", cwd=project.root, url=backend.url)
    assert run.code == 1, run.output
    assert table_digest(backend.url) == before
    assert [e.trash_name for e in trash_list(project)] == [entry.trash_name]


def test_drop_and_restore_need_yes(tmp_path: Path, backend) -> None:
    project = _project(tmp_path, backend.url)
    _fill(backend.url, "item", 4)
    before = table_digest(backend.url)
    run = cli("trash", "drop", "item", cwd=project.root, url=backend.url)
    assert run.code == 5 and run.stderr == "", run.output  # a dry run: the plan, on stdout
    lines = run.stdout.splitlines()
    assert lines[0] == "Plan (dry run, nothing changed):", run.stdout
    assert lines[1].startswith("  trash drop item: would rename table item (4 rows) to _ar_trash_")
    assert lines[2:] == ["Run again with --yes to apply it."], run.stdout
    assert table_digest(backend.url) == before  # not even the index table was created

    run = cli("trash", "drop", "item", "--yes", cwd=project.root, url=backend.url)
    assert run.code == 0, run.output
    (entry,) = trash_list(project)
    assert f"trashed  {entry.trash_name}: table item, dropped " in run.stdout
    listed = cli("trash", "list", "--format", "json", cwd=project.root, url=backend.url)
    assert listed.code == 0, listed.output
    assert f'"trash_name": "{entry.trash_name}"' in listed.stdout
    assert '"rows": 4' in listed.stdout

    with pytest.raises(RefusedUnsafe):
        trash_restore(project, "item", yes=False)
    assert "item" not in table_names(backend.url)
    run = cli("trash", "restore", "item", "--yes", cwd=project.root, url=backend.url)
    assert run.code == 0, run.output
    assert _user_digest(backend.url) == before


def test_purge_respects_age_and_yes(tmp_path: Path, backend) -> None:
    project = _project(tmp_path, backend.url)
    _fill(backend.url, "old_one", 3)
    _fill(backend.url, "new_one", 2)
    old = trash_drop(project, "old_one", yes=True)
    new = trash_drop(project, "new_one", yes=True)
    _age_entry(backend.url, old.trash_name, days=10)
    before = table_digest(backend.url)

    run = cli("trash", "purge", "--older-than", "7d", cwd=project.root, url=backend.url)
    assert run.code == 5 and run.stderr == "", run.output  # a dry run: the plan, on stdout
    assert run.stdout == (
        f"Plan (dry run, nothing changed):\n  trash purge --older-than 7d: would drop 1 "
        f"table for good: {old.trash_name} (3 rows)\nRun again with --yes to apply it.\n"
    )
    with pytest.raises(RefusedUnsafe):
        trash_purge(project, older_than=timedelta(days=7))
    assert table_digest(backend.url) == before

    assert trash_purge(project, older_than=timedelta(days=30), yes=True) == ()
    run = cli("trash", "purge", "--older-than", "7d", "--yes", cwd=project.root,
              url=backend.url)
    assert run.code == 0, run.output
    assert f"purged  {old.trash_name}: table old_one, 3 rows" in run.stdout
    tables = table_names(backend.url)
    assert old.trash_name not in tables and new.trash_name in tables
    assert [e.trash_name for e in trash_list(project)] == [new.trash_name]

    bad = cli("trash", "purge", "--older-than", "soon", cwd=project.root, url=backend.url)
    assert bad.code == 2
    assert "--older-than 'soon': not an age; write e.g. 7d, 12h, 1d12h, 2w" in bad.stderr


@pytest.mark.parametrize("args", [
    ("trash", "drop", "author", "--yes"),
    ("trash", "restore", "author", "--yes"),
    ("trash", "purge", "--older-than", "7d", "--yes"),
])
def test_remote_database_refused_before_connecting(tmp_path: Path, args: tuple[str, ...]) -> None:
    root = write_project(tmp_path / "proj")
    run = cli("--url", REMOTE, *args, cwd=root)
    assert run.code == 4, run.output  # a connection attempt would have been exit 3 (DNS)
    assert "s3cret" not in run.output
    action = " ".join(args[:-1]).removeprefix("trash ")
    assert run.stderr == (
        f"error: trash {action}: refused, the database at db.example.com:3306 is not on this "
        "machine; nothing changed; pass --allow-remote (and --yes) to do it there\n"
    )


def test_remote_refused_in_the_api_without_connecting(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_connection(*_: object) -> None:
        raise AssertionError("connected")

    monkeypatch.setattr(trash_module, "connect", no_connection)
    project = _project(tmp_path, REMOTE)
    for call in (lambda: trash_drop(project, "author", yes=True),
                 lambda: trash_restore(project, "author", yes=True),
                 lambda: trash_purge(project, older_than=timedelta(0), yes=True)):
        with pytest.raises(RefusedUnsafe) as refused:
            call()
        assert "s3cret" not in str(refused.value)
        assert "--allow-remote" in str(refused.value)


@pytest.mark.parametrize(("url", "local"), [
    ("sqlite:///app.db", True),
    ("sqlite://", True),
    ("mysql+pymysql://u:p@localhost/x", True),
    ("mysql+pymysql://u:p@127.0.0.1:3307/x", True),
    ("mysql+pymysql://u:p@127.8.9.10/x", True),
    ("mysql+pymysql://u:p@[::1]:3306/x", True),
    ("mysql+pymysql://u:p@/x?unix_socket=/run/mysqld/mysqld.sock", True),
    # libpq is not modelled (PGHOSTADDR in the environment overrides a socket folder)
    ("postgresql://u:p@/x?host=/var/run/postgresql", False),
    ("mysql+pymysql://u:p@/x", True),
    ("mysql+pymysql://u:p@db.example.com/x", False),
    ("mysql+pymysql://u:p@db/x", False),
    ("mysql+pymysql://u:p@10.0.0.5/x", False),
    ("mysql+pymysql://u:p@128.0.0.1/x", False),
    ("mysql+pymysql://u:p@[2001:db8::1]/x", False),
])
def test_is_local(url: str, local: bool) -> None:
    assert is_local(url) is local


@pytest.mark.parametrize("rows", [1_000, 100_000])
def test_soft_drop_is_a_rename_whatever_the_size(tmp_path: Path, backend, rows: int) -> None:
    project = _project(tmp_path, backend.url)
    _fill(backend.url, "big", rows)
    before = table_digest(backend.url)["big"]
    entry = trash_drop(project, "big", yes=True)
    assert isinstance(entry, TrashEntry) and trash_list(project)[0].rows == rows
    assert table_digest(backend.url)[entry.trash_name] == before
    trash_restore(project, entry.trash_name, yes=True)
    assert table_digest(backend.url)["big"] == before
