"""Property: random small tables with rows, random drop / add-unique-column requests; the
rewritten revision upgrades, and its downgrade restores every row exactly (checksums).

A drop of a table that a kept table references must be refused, and then nothing changes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
)
from sqlalchemy.pool import NullPool
from test_rewrite_backends import checksums, downgrade, reflected

from alembic_repair.errors import RefusedUnsafe
from alembic_repair.rewrite import rewrite_unique_columns, rewrite_upgrade_drops
from alembic_repair.testing import scenarios

#: More examples for a longer local run: AR_REWRITE_EXAMPLES=200
EXAMPLES = int(os.environ.get("AR_REWRITE_EXAMPLES", "12"))
BASE = scenarios.revision_py("aaa111", None, "base", "pass", "pass")
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, str, bool], ...]  # (name, "int"|"str", nullable)
    parent: str | None
    rows: tuple[dict[str, object], ...]


@dataclass(frozen=True)
class Case:
    tables: tuple[TableSpec, ...]
    drops: tuple[str, ...]
    unique: tuple[tuple[str, str], ...]  # (table, "uuid"|"seq")


@st.composite
def cases(draw: st.DrawFn) -> Case:
    specs: list[TableSpec] = []
    for i in range(draw(st.integers(1, 3))):
        columns = tuple((f"c{j}", kind, nullable) for j, (kind, nullable) in enumerate(draw(
            st.lists(st.tuples(st.sampled_from(["int", "str"]), st.booleans()),
                     min_size=1, max_size=3))))
        parent = draw(st.none() | st.sampled_from([s for s in specs])) if specs else None
        ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=6))
        rows = []
        for key in ids:
            row: dict[str, object] = {"id": key}
            for name, kind, nullable in columns:
                value = st.integers(-10**6, 10**6) if kind == "int" else TEXT
                row[name] = draw(st.none() | value if nullable else value)
            if parent is not None:
                row["parent_id"] = draw(st.none() | st.sampled_from(
                    [r["id"] for r in parent.rows] or [None]))
            rows.append(row)
        specs.append(TableSpec(f"t{i}", columns, parent.name if parent else None, tuple(rows)))
    drops: list[str] = []
    unique: list[tuple[str, str]] = []
    for spec in specs:
        if draw(st.booleans()):
            drops.append(spec.name)
            continue
        drops += [f"{spec.name}.{name}" for name, _, _ in spec.columns if draw(st.booleans())]
        if draw(st.booleans()):
            unique.append((spec.name, draw(st.sampled_from(["uuid", "seq"]))))
    return Case(tuple(specs), tuple(draw(st.permutations(drops))), tuple(unique))


def _create(url: str, case: Case) -> None:
    metadata = MetaData()
    for spec in case.tables:
        cols = [Column(n, Integer if k == "int" else String(20), nullable=nullable)
                for n, k, nullable in spec.columns]
        if spec.parent:
            cols.append(Column("parent_id", Integer, ForeignKey(f"{spec.parent}.id")))
        Table(spec.name, metadata, Column("id", Integer, primary_key=True,
                                          autoincrement=False), *cols)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            existing = MetaData()
            existing.reflect(conn, only=lambda name, _: name != "alembic_version")
            existing.drop_all(conn)
            metadata.create_all(conn)
            for spec in case.tables:
                if spec.rows:
                    conn.execute(metadata.tables[spec.name].insert(), list(spec.rows))
    finally:
        engine.dispose()


def _revision(case: Case) -> str:
    up, down = [], []
    for table, kind in case.unique:
        column = ('sa.Column("u", sa.String(36), unique=True, nullable=False, '
                  'default=uuid.uuid4)' if kind == "uuid" else
                  'sa.Column("u", sa.Integer(), unique=True, nullable=False)')
        up.append(f'op.add_column("{table}", {column})')
        down.insert(0, f'op.drop_column("{table}", "u")')
    return scenarios.revision_py("bbb222", "aaa111", "change", "\n".join(up) or "pass",
                                 "\n".join(down) or "pass", imports="import uuid")


def _refused(case: Case) -> bool:
    dropped = {d for d in case.drops if "." not in d}
    return any(s.parent in dropped and s.name not in dropped for s in case.tables)


def check(root: Path, url: str, case: Case) -> None:
    scenarios.write_app(root)
    scenarios.write_scaffold(root, url)
    scenarios.write_revisions(root, {"aaa111_base.py": BASE})
    scenarios.upgrade(root, url, "aaa111")
    _create(url, case)
    before = checksums(url)
    path = scenarios.versions(root) / "bbb222_change.py"
    path.write_text(_revision(case))
    schema, dialect = reflected(url)
    rewrite_unique_columns(path, schema=schema, dialect=dialect, batch_rows=2)
    if case.drops:
        original = path.read_text()
        if _refused(case):
            with pytest.raises(RefusedUnsafe, match="references it"):
                rewrite_upgrade_drops(path, case.drops, schema=schema, dialect=dialect)
            assert path.read_text() == original
        else:
            rewrite_upgrade_drops(path, case.drops, schema=schema, dialect=dialect)
    scenarios.upgrade(root, url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for table, _ in case.unique:
                if table in inspect(conn).get_table_names():
                    values = [r[0] for r in conn.exec_driver_sql(f"SELECT u FROM {table}")]
                    assert None not in values and len(set(values)) == len(values)
    finally:
        engine.dispose()
    downgrade(root, url, "aaa111")
    assert checksums(url) == before


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_upgrade_downgrade_restores_rows_sqlite(case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check(Path(tmp) / "proj", f"sqlite:///{tmp}/app.db", case)


@pytest.mark.mariadb
@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_upgrade_downgrade_restores_rows_mariadb(case: Case, mariadb_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check(Path(tmp) / "proj", mariadb_url, case)
