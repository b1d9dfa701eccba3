"""The Python method's tsv format on MariaDB: every awkward value written as LOAD DATA reads it,
LOAD DATA of the file reproduces CHECKSUM TABLE, verify catches damage without a server, the
checksum is the snapshot's, and older jsonl.gz backups still verify and restore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql
import pytest
from helpers import old_jsonl_backup, table_digest, write_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from alembic_repair import AlembicRepairError, BackupCorrupt, Project
from alembic_repair.data.backups import backup, restore, verify
from alembic_repair.data.backups.manifest import (
    MANIFEST,
    Manifest,
    file_sha256,
    seal_of,
)
from alembic_repair.data.backups.tsv_format import (
    TsvColumn,
    decode_line,
    encode_line,
    load_data_sql,
    select_sql,
)

pytestmark = pytest.mark.mariadb

AWKWARD = (
    "CREATE TABLE awk (id INT PRIMARY KEY, txt VARCHAR(50) NULL, "
    "lat VARCHAR(20) CHARACTER SET latin1 NULL, bin BLOB NULL, vb VARBINARY(10) NULL, "
    "bits BIT(10) NULL, b64 BIT(64) NULL, num DECIMAL(20,6) NULL, dbl DOUBLE NULL, "
    "flt FLOAT NULL, d DATE NULL, t TIME NULL, dt DATETIME(6) NULL, "
    "ts TIMESTAMP(6) NULL DEFAULT NULL, js JSON NULL, en ENUM('a','b c') NULL, "
    "st SET('x','y') NULL, g POINT NULL, y YEAR NULL, doc TEXT NULL, "
    "lt MEDIUMTEXT CHARACTER SET latin1 NULL, gen INT AS (id * 2) VIRTUAL, "
    "gens VARCHAR(60) AS (CONCAT(txt, '!')) STORED)")
AWKWARD_ROWS = [
    "INSERT INTO awk (id, txt, lat, bin, vb, bits, b64, num, dbl, flt, d, t, dt, ts, js, en, st) "
    "VALUES (1, CONCAT('a', X'09', 'b', X'0A', 'c', X'0D', 'd', X'5C', 'e', X'00'), "
    "CONVERT(_utf8mb4'caf\u00e9' USING latin1), X'000A5C09FF', X'', b'1010101010', "
    "0xFFFFFFFFFFFFFFFF, -12345.678901, 0.1, 1.2345678, '2001-02-03', '-838:59:59', "
    "'2020-01-02 03:04:05.123456', '2021-06-01 12:00:00.5', '{\"a\": [1, \"x\"]}', 'b c', "
    "'x,y')",
    "INSERT INTO awk (id, txt, lat, bin, vb, bits, b64, num, dbl, flt, d, t, dt, js, en, st) "
    "VALUES (2, X'5C4E', '', X'', NULL, b'0', 0, 0, 1.7976931348623157e308, -3.4e38, "
    "'1000-01-01', '00:00:00.000000', '1000-01-01 00:00:00', '[]', 'a', '')",
    "INSERT INTO awk (id) VALUES (3)",
    "UPDATE awk SET g = ST_GeomFromText('POINT(1.5 -2)'), y = 2021, "
    "doc = CONCAT('l1', X'0A', 'l2', X'095C00', _utf8mb4'\u00e9'), "
    "lt = REPEAT(X'5C0A', 100000) WHERE id = 1",  # REPLACE on lt would take half a minute
    "INSERT INTO awk (id, txt, dbl) VALUES (4, '', 2.2250738585072014e-308)",
    "INSERT INTO awk (id, txt) VALUES (5, _utf8mb4'emoji \U0001F600 \u00e9')",
]
OTHERS = [
    "CREATE TABLE nopk (a VARCHAR(10), b INT)",
    "INSERT INTO nopk VALUES ('x', 1), ('x', 1), (NULL, NULL)",
    "CREATE TABLE one (v VARCHAR(5) NULL)",
    "INSERT INTO one VALUES (''), (NULL), ('\\\\N')",
    "CREATE TABLE empty (id INT PRIMARY KEY)",
    "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('abc123')",
]


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


@contextmanager
def _raw(url: str, zone: str = "+00:00") -> Iterator[pymysql.cursors.Cursor]:
    parsed = make_url(url)
    conn = pymysql.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                           password=parsed.password or "", database=parsed.database,
                           autocommit=True, local_infile=True, charset="utf8mb4")
    try:
        cursor = conn.cursor()
        cursor.execute("SET time_zone = %s", (zone,))
        yield cursor
    finally:
        conn.close()


def _sql(url: str, *statements: str, zone: str = "+05:00") -> None:
    with _raw(url, zone) as cursor:
        for statement in statements:
            cursor.execute(statement)


def _checksum(cursor: pymysql.cursors.Cursor, table: str) -> int:
    cursor.execute(f"CHECKSUM TABLE `{table}`")
    return int(cursor.fetchone()[1])


def _load_copy(cursor: pymysql.cursors.Cursor, manifest: Manifest, table: str) -> int:
    """LOAD DATA the table's file into an empty copy; its CHECKSUM TABLE."""
    info = manifest.table(table)
    assert info is not None and info.file is not None
    cursor.execute(f"CREATE TABLE `{table}_copy` LIKE `{table}`")
    cursor.execute(load_data_sql(f"{table}_copy", info.columns, info.hex,
                                 str(manifest.path / info.file)))
    return _checksum(cursor, f"{table}_copy")


def test_awkward_values_are_written_as_load_data_reads_them(tmp_path: Path,
                                                            mariadb_url: str) -> None:
    _sql(mariadb_url, AWKWARD, *AWKWARD_ROWS, *OTHERS)
    project = Project.discover(write_project(tmp_path / "proj"), url=mariadb_url)
    calls: list[tuple[str, int, int | None]] = []
    manifest = backup(project, method="python", progress=lambda *call: calls.append(call))
    assert manifest.method == "python"
    awk_calls = [c for c in calls if c[0] == "awk"]
    assert awk_calls[0] == ("awk", 0, 5) and awk_calls[-1] == ("awk", 5, 5)
    assert ("empty", 0, 0) in calls
    awk = manifest.table("awk")
    assert awk is not None and awk.file == "awk.tsv" and awk.rows == 5
    assert "gen" not in awk.columns and "gens" not in awk.columns  # generated: not written
    assert awk.hex == ("bin", "vb", "bits", "b64", "js", "g", "doc", "lt")
    assert awk.checksum.startswith("checksum-table/")
    doc = json.loads((manifest.path / MANIFEST).read_text())
    entries = {t["name"]: t for t in doc["tables"]}
    assert entries["awk"]["hex"] == ["bin", "vb", "bits", "b64", "js", "g",
                                      "doc", "lt"]
    assert "hex" not in entries["one"]
    assert {t.name: t.rows for t in manifest.tables} == {
        "awk": 5, "nopk": 3, "one": 3, "empty": 0, "alembic_version": 1}
    assert (manifest.path / "empty.tsv").read_bytes() == b""
    assert (manifest.path / "one.tsv").read_bytes() == b"\n\\N\n\\\\N\n"

    data = (manifest.path / "awk.tsv").read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 5
    lines = {row[0]: dict(zip(awk.columns, row, strict=True)) for row in map(
        decode_line, data[:-1].split(b"\n"))}
    first = lines[b"1"]
    assert first["txt"] == b"a\tb\nc\rd\\e\x00"
    assert first["lat"] == "caf\u00e9".encode("latin1")  # the column's stored bytes
    assert first["bin"] == b"000A5C09FF" and first["vb"] == b""
    # long text as hex: linear on the server, whatever it holds
    assert first["doc"] == "l1\nl2\t\\\x00\u00e9".encode().hex().upper().encode()
    assert first["lt"] == b"5C0A" * 100000
    assert first["t"] == b"-838:59:59" and first["dt"] == b"2020-01-02 03:04:05.123456"
    assert first["ts"] == b"2021-06-01 07:00:00.500000"  # written in UTC, entered at +05:00
    assert first["en"] == b"b c" and first["st"] == b"x,y" and first["num"] == b"-12345.678901"
    assert lines[b"2"]["txt"] == b"\\N" and lines[b"3"]["txt"] is None
    assert lines[b"2"]["bin"] == b"" and lines[b"3"]["bin"] is None
    assert lines[b"4"]["txt"] == b"" and lines[b"3"]["lat"] is None
    assert lines[b"5"]["txt"] == "emoji \U0001F600 \u00e9".encode()
    assert b"\\0" in data.split(b"\n")[0] and b"\x00" not in data

    with _raw(mariadb_url, zone="+00:00") as cursor:
        for table in ("awk", "nopk", "one", "empty"):
            info = manifest.table(table)
            assert info is not None
            found = _load_copy(cursor, manifest, table)
            assert info.checksum.endswith(f":{found}"), table
            assert found == _checksum(cursor, table)


def test_checksum_table_reads_the_consistent_snapshot(mariadb_url: str) -> None:
    """The backup records CHECKSUM TABLE taken inside its snapshot: a write committed
    meanwhile by another session must not show in it."""
    _sql(mariadb_url, "CREATE TABLE snap (id INT PRIMARY KEY, v VARCHAR(10))",
         "INSERT INTO snap VALUES (1, 'a'), (2, 'b')")
    with _raw(mariadb_url) as reader, _raw(mariadb_url) as writer:
        before = _checksum(reader, "snap")
        reader.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        writer.execute("INSERT INTO snap VALUES (3, 'c')")
        writer.execute("UPDATE snap SET v = 'z' WHERE id = 1")
        assert _checksum(reader, "snap") == before
        reader.execute("SELECT COUNT(*) FROM snap")
        assert reader.fetchone()[0] == 2
        reader.execute("COMMIT")
        assert _checksum(reader, "snap") != before


def test_backup_is_one_snapshot_while_others_write(tmp_path: Path, mariadb_url: str) -> None:
    """Rows written by another session while the backup runs (here: from its progress
    callback) are in no file and no count; counts and checksums are the snapshot's."""
    _sql(mariadb_url, "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10))",
         "CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(10))",
         "INSERT INTO a SELECT seq, 'x' FROM seq_1_to_10",
         "INSERT INTO b SELECT seq, 'y' FROM seq_1_to_10",
         "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    project = Project.discover(write_project(tmp_path / "proj"), url=mariadb_url)
    with _raw(mariadb_url) as writer:
        before = {t: _checksum(writer, t) for t in ("a", "b")}

        calls: list[str] = []

        def write_meanwhile(table: str, done: int, total: int | None) -> None:
            calls.append(table)
            writer.execute("INSERT INTO a VALUES (%s, 'new')", (100 + len(calls),))
            writer.execute("UPDATE b SET v = 'changed' WHERE id = 1")
            writer.execute("INSERT INTO b VALUES (%s, 'new')", (100 + len(calls),))

        manifest = backup(project, method="python", progress=write_meanwhile)
        for table in ("a", "b"):
            info = manifest.table(table)
            assert info is not None and info.rows == 10
            assert info.checksum.endswith(f":{before[table]}")
            assert (manifest.path / f"{table}.tsv").read_bytes().count(b"\n") == 10
            assert b"new" not in (manifest.path / f"{table}.tsv").read_bytes()
        assert b"changed" not in (manifest.path / "b.tsv").read_bytes()
        assert _checksum(writer, "b") != before["b"]


def _reseal(path: Path, file: str) -> None:
    """Make the manifest agree with a changed data file (sha256 and seal), as an attacker or
    a bad copy tool might: the row count must still catch it."""
    doc = json.loads((path / MANIFEST).read_text())
    doc["files"][file] = file_sha256(path / file)
    doc["seal"] = seal_of(doc)
    (path / MANIFEST).write_text(json.dumps(doc))


def test_verify_catches_damaged_tsv_files(tmp_path: Path, mariadb_url: str) -> None:
    _sql(mariadb_url, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))",
         "INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_1_to_50",
         "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    project = Project.discover(write_project(tmp_path / "proj"), url=mariadb_url)
    manifest = backup(project, method="python")
    path, file = manifest.path, manifest.path / "t.tsv"
    good, saved = file.read_bytes(), (path / MANIFEST).read_text()

    def fails(why: str) -> None:
        with pytest.raises(BackupCorrupt) as err:
            verify(path)
        assert "\n" not in str(err.value) and why in str(err.value), str(err.value)
        assert "t.tsv" in str(err.value) or MANIFEST in str(err.value)

    file.write_bytes(good[:10] + bytes([good[10] ^ 1]) + good[11:])
    fails("sha256")
    file.write_bytes(good[:-5])  # truncated in the middle of the last line
    fails("sha256")
    _reseal(path, "t.tsv")
    fails("complete line")
    file.write_bytes(good[:good.rindex(b"\n", 0, -1) + 1])  # a whole line lost
    _reseal(path, "t.tsv")
    fails("49 rows")
    file.write_bytes(good + b"51\tv51")  # a line without its LF
    _reseal(path, "t.tsv")
    fails("complete line")

    file.write_bytes(good)
    doc = json.loads(saved)
    entry = next(t for t in doc["tables"] if t["name"] == "t")
    entry["checksum"] = entry["checksum"][:-1] + "9"  # only a server could tell
    del doc["seal"]  # an unsealed tsv manifest is not taken for an older backup
    (path / MANIFEST).write_text(json.dumps(doc))
    fails("seal")
    (path / MANIFEST).write_text(saved)
    assert verify(path).tables == manifest.tables


def test_older_jsonl_backup_still_verifies_and_restores(tmp_path: Path,
                                                        mariadb_url: str) -> None:
    _sql(mariadb_url, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), b BLOB)",
         "INSERT INTO t VALUES (1, 'a\\tb', X'00FF'), (2, NULL, NULL)",
         "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
         "INSERT INTO alembic_version VALUES ('abc123')")
    project = Project.discover(write_project(tmp_path / "proj"), url=mariadb_url)
    before = table_digest(mariadb_url)
    path = old_jsonl_backup(project, tmp_path / "old")
    assert sorted(str(t.file) for t in verify(path).tables) == [
        "alembic_version.jsonl.gz", "t.jsonl.gz"]
    _sql(mariadb_url, "DROP TABLE t", "DROP TABLE alembic_version")
    report = restore(project, path, yes=True)
    assert report.complete
    assert table_digest(mariadb_url) == before


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.none() | st.text(max_size=30),
                          st.none() | st.binary(max_size=30)), min_size=1, max_size=8))
def test_random_values_roundtrip_through_the_format(
        tmp_path: Path, mariadb_url: str, rows: list[tuple[str | None, bytes | None]]) -> None:
    with _raw(mariadb_url) as cursor:
        cursor.execute("DROP TABLE IF EXISTS r, r_copy")
        cursor.execute("CREATE TABLE r (id INT PRIMARY KEY, t TEXT NULL, b BLOB NULL) "
                       "CHARACTER SET utf8mb4")
        cursor.executemany("INSERT INTO r VALUES (%s, %s, %s)",
                           [(i, t, b) for i, (t, b) in enumerate(rows)])
        columns = [TsvColumn("id", False), TsvColumn("t", False), TsvColumn("b", True)]
        cursor.execute(select_sql("r", columns) + " ORDER BY id")
        lines = [r[0] for r in cursor.fetchall()]
        expected = [encode_line([str(i).encode(), None if t is None else t.encode(),
                                 None if b is None else b.hex().upper().encode()])
                    for i, (t, b) in enumerate(rows)]
        assert lines == expected
        assert [decode_line(line)[1:] for line in lines] == [
            [None if t is None else t.encode(), None if b is None else b.hex().upper().encode()]
            for t, b in rows]
        file = tmp_path / "r.tsv"
        file.write_bytes(b"".join(line + b"\n" for line in lines))
        cursor.execute("CREATE TABLE r_copy LIKE r")
        cursor.execute(load_data_sql("r_copy", ["id", "t", "b"], ["b"], str(file)))
        assert _checksum(cursor, "r_copy") == _checksum(cursor, "r")



def _myisam_project(tmp_path: Path, url: str) -> Project:
    _sql(url, "CREATE TABLE m (id INT PRIMARY KEY, v INT) ENGINE=MyISAM",
         "INSERT INTO m VALUES (1, 1), (2, 2)")
    return Project.discover(write_project(tmp_path / "proj"), url=url)


def test_myisam_written_during_its_read_is_read_again(tmp_path: Path, mariadb_url: str) -> None:
    """The snapshot does not hold a MyISAM table still: a write between its CHECKSUM TABLE
    and its rows is seen by the checksum after the read, and the table is read once more,
    so the backup restores (before: it verified, and its restore failed the checksum)."""
    project = _myisam_project(tmp_path, mariadb_url)
    writes: list[int] = []
    with _raw(mariadb_url) as writer:
        def write_once(table: str, done: int, total: int | None) -> None:
            if table == "m" and done == 0 and not writes:
                writes.append(1)
                writer.execute("UPDATE m SET v = v + 10 WHERE id = 1")

        manifest = backup(project, method="python", progress=write_once)
        assert writes and (manifest.path / "m.tsv").read_bytes() == b"1\t11\n2\t2\n"
        assert manifest.table("m").checksum.endswith(f":{_checksum(writer, 'm')}")  # type: ignore[union-attr]
        writer.execute("DELETE FROM m")
    restore(project, manifest.path, yes=True, method="python")
    assert table_digest(mariadb_url)["m"][0] == 2


def test_myisam_written_throughout_fails_the_backup(tmp_path: Path, mariadb_url: str) -> None:
    project = _myisam_project(tmp_path, mariadb_url)
    with _raw(mariadb_url) as writer:
        def write_always(table: str, done: int, total: int | None) -> None:
            if table == "m" and done == 0:
                writer.execute("UPDATE m SET v = v + 10 WHERE id = 1")

        with pytest.raises(AlembicRepairError, match=r"^backup: table m \(MyISAM\) changed "
                           r"while it was backed up; stop the application's writes"):
            backup(project, method="python", progress=write_always)
    assert list((project.state_dir / "backups").iterdir()) == []  # the partial is removed
