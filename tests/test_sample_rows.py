"""Rows drawn from reflected tables (`testing.sample_rows`) always insert: random schemas
(several column types, unique columns and composite keys, foreign-key chains and
self-references) on SQLite and MariaDB, with the counts read back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alembic_repair.testing import sample_rows

#: (type, may be unique) -- TEXT, JSON and BLOB need a key length on MariaDB
TYPES: list[tuple[Any, bool]] = [
    (sa.Integer(), True), (sa.BigInteger(), True), (sa.SmallInteger(), True),
    (sa.Boolean(), False), (sa.String(8), True), (sa.String(2), True), (sa.Unicode(12), False),
    (sa.Text(), False), (sa.Numeric(6, 2), True), (sa.Float(), False), (sa.Date(), True),
    (sa.DateTime(), True), (sa.Time(), False), (sa.Enum("red", "green", name="colour"), False),
    (sa.JSON(), False), (sa.LargeBinary(), False), (sa.CHAR(36), True), (sa.CHAR(32), False),
]


@st.composite
def schemas(draw: Any) -> sa.MetaData:
    """1-3 tables; each a primary key (one integer, or integer + string), a few columns of
    drawn types (nullable or not, some unique), maybe a foreign key to an earlier table and
    a self-reference."""
    metadata = sa.MetaData()
    for t in range(draw(st.integers(1, 3))):
        columns: list[Any] = [sa.Column("id", sa.Integer(), primary_key=True)]
        if draw(st.booleans()):
            columns.append(sa.Column("code", sa.String(4), primary_key=True))
        for c in range(draw(st.integers(1, 4))):
            type_, uniqueable = draw(st.sampled_from(TYPES))
            columns.append(sa.Column(f"c{c}", type_, nullable=draw(st.booleans()),
                                     unique=uniqueable and draw(st.booleans())))
        parents = [f"t{p}" for p in range(t)]
        if parents and draw(st.booleans()):
            parent = metadata.tables[draw(st.sampled_from(parents))]
            keys = [c.name for c in parent.primary_key.columns]
            nullable = draw(st.booleans())
            columns += [sa.Column(f"p_{k}", parent.c[k].type, nullable=nullable) for k in keys]
            columns.append(sa.ForeignKeyConstraint([f"p_{k}" for k in keys],
                                                   [f"{parent.name}.{k}" for k in keys]))
        if draw(st.booleans()) and len([c for c in columns if getattr(c, "primary_key",
                                                                        False)]) == 1:
            columns.append(sa.Column("parent_id", sa.ForeignKey(f"t{t}.id"), nullable=True))
        sa.Table(f"t{t}", metadata, *columns)
    return metadata


def check_inserts(conn: sa.Connection, schema: sa.MetaData, data: Any) -> None:
    schema.create_all(conn)
    reflected = sample_rows.reflect(conn)
    dataset = data.draw(sample_rows.datasets(reflected, dialect=conn.dialect.name,
                                             max_rows=4))
    assert not dataset.skipped, dataset.skipped
    counts = sample_rows.insert(conn, reflected, dataset)
    assert counts == dataset.counts() and set(counts) == set(schema.tables)
    for name, count in counts.items():
        assert conn.execute(sa.select(sa.func.count()).select_from(
            reflected.tables[name])).scalar() == count


@settings(max_examples=15, deadline=None)
@given(schema=schemas(), data=st.data())
def test_rows_insert_on_sqlite(schema: sa.MetaData, data: Any) -> None:
    engine = sa.create_engine("sqlite://")
    sa.event.listen(engine, "connect", lambda dbapi, _rec: dbapi.execute(
        "PRAGMA foreign_keys = ON"))
    try:
        with engine.begin() as conn:
            check_inserts(conn, schema, data)
    finally:
        engine.dispose()


@pytest.fixture
def mariadb_engine(mariadb_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(mariadb_url)
    yield engine
    engine.dispose()


@pytest.mark.mariadb
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(schema=schemas(), data=st.data())
def test_rows_insert_on_mariadb(mariadb_engine: sa.Engine, schema: sa.MetaData,
                                data: Any) -> None:
    try:
        with mariadb_engine.begin() as conn:
            check_inserts(conn, schema, data)
    finally:
        with mariadb_engine.begin() as conn:
            sa.MetaData().reflect(conn)  # the tables of this example, whatever happened
            found = sa.MetaData()
            found.reflect(conn)
            found.drop_all(conn)


def test_fill_skips_what_it_cannot_meet_and_the_tools_tables(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    sa.Table("alembic_version", metadata, sa.Column("version_num", sa.String(32),
                                                    primary_key=True))
    sa.Table("_ar_trash_20240101000000_old", metadata, sa.Column("id", sa.Integer,
                                                                 primary_key=True))
    sa.Table("account", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("email", sa.String(40), unique=True, nullable=False),
             sa.Column("age", sa.Integer, sa.CheckConstraint("age >= 18"), nullable=False),
             sa.Column("status", sa.String(8), sa.CheckConstraint(
                 "status IN ('new', 'done')"), nullable=False))
    sa.Table("odd", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("n", sa.Integer), sa.CheckConstraint("n * n = 4"))
    sa.Table("note", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("odd_id", sa.ForeignKey("odd.id"), nullable=False))
    metadata.create_all(engine)
    try:
        counts = sample_rows.fill(url, seed=7)
        assert set(counts) == {"account"} and counts["account"] >= 1
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT age, status FROM account")).all()
            strategy = sample_rows.datasets(sample_rows.reflect(conn), dialect="sqlite")
            drawn = sample_rows.pick(strategy, seed=1)
            assert drawn == sample_rows.pick(strategy, seed=1)  # the seed decides
            skipped = drawn.skipped
        assert all(age >= 18 and status in ("new", "done") for age, status in rows)
        assert dict(skipped)["odd"].startswith("CHECK (n * n = 4)")
        assert "odd" in dict(skipped)["note"]
    finally:
        engine.dispose()
