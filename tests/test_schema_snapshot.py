"""SchemaSnapshot: a database created from models equals its models (no false drift, whatever
the schema, on SQLite and MariaDB), and real changes show up as facts that differ."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import unicodedata
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Engine

from alembic_repair.engine.state.schema import (
    SchemaSnapshot,
    describe,
    from_metadata,
    normalize_default,
    normalize_type,
    numeric_default,
    reflect,
)

# -- random schemas, as plain data (they shrink and print well) --------------------------------

# Identifiers both MariaDB and SQLite accept when quoted: reserved words, mixed case, spaces,
# dashes, `$`, leading digits, all digits, accented and non-Latin letters (MariaDB identifiers
# stay in the Basic Multilingual Plane and must not end with a space). None over 30 chars.
ODD_NAMES = [
    "order", "select", "group", "key", "index", "table", "from", "where", "desc", "limit",
    "check", "default", "values", "user", "Order", "SELECT", "Mixed Case", "CamelCase",
    "größe", "naïve", "Ünïcödé", "名前", "price$", "$dollar", "a$b", "1st", "2024", "x1",
    "with space", "with-dash", "under_score", "trailing_", "t" * 30,
    "MAX_len_name_abcdefghij_0123",
]
NAMES = st.one_of(st.sampled_from(ODD_NAMES),
                  st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True))


def name_key(name: str) -> str:
    """Names MariaDB or SQLite may take for the same get the same key: case- and accent-
    insensitive, ß = s (MariaDB compares column names with utf8mb3_general_ci)."""
    folded = unicodedata.normalize("NFKD", name.replace("ß", "s").replace("ẞ", "s"))
    return "".join(c for c in folded if not unicodedata.combining(c)).casefold()


# A default is ("literal", python string) | ("text", SQL) | ("func", name) | ("bool", "true").
Default = tuple[str, str]
STRINGS = ["abc", "", "a b", "größe", "it's", "50%", "C:\\dir", "line\nbreak"]


def literals(*values: str) -> list[Default]:
    return [("literal", v) for v in values]


@st.composite
def column_types(draw: Callable[..., Any], kind: str) -> tuple[tuple[Any, ...], list[Default]]:
    """A type spec (kind, *arguments) and the server defaults that suit it."""
    if kind in ("String", "Unicode"):
        length = draw(st.integers(1, 255))
        return (kind, length), [*literals(*{s[:length] for s in STRINGS}), ("text", "'x'")]
    if kind == "Numeric":
        precision = draw(st.integers(1, 20))
        scale = draw(st.integers(0, min(precision, 6)))
        defaults = [("text", "0")]
        if precision > scale:  # room for a digit before the point
            defaults += literals("1", *(["1.5"] if scale else []))
        if scale >= 2 and precision - scale >= 2:
            defaults += literals("12.25")
        return (kind, precision, scale), defaults
    if kind == "Enum":
        values = draw(st.lists(st.sampled_from(["a", "b", "draft", "Published", "ö", "x y", "1"]),
                               min_size=1, max_size=4, unique=True))
        return (kind, *values), literals(values[0], values[-1])
    return (kind,), {
        "Integer": [("text", "0"), *literals("1", "-7")],
        "BigInteger": [("text", "0"), *literals("9000000000")],
        "SmallInteger": [("text", "-2"), *literals("1")],
        "Text": literals("abc", "", "C:\\dir"),
        "Boolean": [("bool", "true"), ("bool", "false"), ("text", "0"), *literals("1")],
        "DateTime": [("func", "now"), ("func", "current_timestamp"),
                     *literals("2020-01-02 03:04:05")],
        "Date": literals("2020-01-02"),
        "Time": literals("12:34:56"),
        "Float": [("text", "0"), *literals("1.5")],
    }.get(kind, [])


KINDS = ["Integer", "BigInteger", "SmallInteger", "String", "Unicode", "Text", "Boolean",
         "DateTime", "Date", "Time", "Numeric", "Float", "LargeBinary", "Enum", "JSON"]
UNINDEXABLE = {"Text", "LargeBinary", "JSON"}  # MariaDB needs a prefix length to index these


@st.composite
def schemas(draw: Callable[..., Any]) -> list[dict[str, Any]]:
    """1-5 tables, each an integer primary key and 1-6 columns, with random nullability,
    defaults, unique/index flags, composite unique constraints and indexes, and foreign keys
    to earlier tables."""
    tables: list[dict[str, Any]] = []
    for t, table_name in enumerate(draw(st.lists(NAMES, min_size=1, max_size=5,
                                                 unique_by=name_key))):
        pk, *names = draw(st.lists(NAMES, min_size=2, max_size=7, unique_by=name_key))
        columns = []
        for name in names:
            is_fk = t > 0 and draw(st.integers(0, 2)) == 0  # a third of later tables' columns
            kind = "Integer" if is_fk else draw(st.sampled_from(KINDS))
            type_, defaults = draw(column_types(kind))
            nullable = draw(st.booleans())
            fk = None
            if is_fk:
                target = tables[draw(st.integers(0, t - 1))]
                actions = [None, "CASCADE", *(["SET NULL"] if nullable else [])]
                fk = (target["name"], target["pk"], draw(st.sampled_from(actions)))
                defaults = []
            indexable = kind not in UNINDEXABLE
            columns.append({
                "name": name, "type": type_, "nullable": nullable, "fk": fk,
                "default": draw(st.sampled_from([None, *defaults])),
                "unique": indexable and draw(st.booleans()),
                "index": indexable and draw(st.booleans()),
            })
        keyable = [pk] + [c["name"] for c in columns if c["type"][0] not in UNINDEXABLE]
        composites = draw(st.lists(st.tuples(
            st.sampled_from(["unique", "index"]),
            st.lists(st.sampled_from(keyable), min_size=2, max_size=3, unique=True)),
            max_size=2)) if len(keyable) >= 2 else []
        tables.append({"name": table_name, "pk": pk, "columns": columns,
                       "composites": [(k, tuple(cols)) for k, cols in composites]})
    # SQLite keeps index and table names in one namespace per database: no clashes.
    names = [t["name"] for t in tables] + [f"ix_{t['name']}_{c['name']}" for t in tables
                                           for c in t["columns"] if c["index"]]
    assume(len({name_key(n) for n in names}) == len(names))
    return tables


def make_type(spec: tuple[Any, ...]) -> Any:
    kind, *args = spec
    if kind == "Enum":
        return sa.Enum(*args, name="e")
    return getattr(sa, kind)(*args)


def make_default(spec: Default | None) -> Any:
    if spec is None:
        return None
    how, value = spec
    return {"literal": lambda: value, "text": lambda: sa.text(value),
            "func": lambda: getattr(sa.func, value)(),
            "bool": lambda: sa.true() if value == "true" else sa.false()}[how]()


def build(tables: list[dict[str, Any]]) -> sa.MetaData:
    metadata = sa.MetaData()
    for t, spec in enumerate(tables):
        items: list[Any] = [sa.Column(spec["pk"], sa.Integer, primary_key=True)]
        for col in spec["columns"]:
            fk = []
            if col["fk"]:
                target, target_pk, ondelete = col["fk"]
                fk = [sa.ForeignKey(metadata.tables[target].c[target_pk], ondelete=ondelete)]
            items.append(sa.Column(col["name"], make_type(col["type"]), *fk,
                                   nullable=col["nullable"],
                                   server_default=make_default(col["default"]),
                                   unique=col["unique"] or None, index=col["index"] or None))
        for k, (kind, cols) in enumerate(spec["composites"]):
            items.append(sa.UniqueConstraint(*cols) if kind == "unique"
                         else sa.Index(f"cix_{t}_{k}", *cols))
        sa.Table(spec["name"], metadata, *items)
    return metadata


# -- the property ------------------------------------------------------------------------------


def diff_text(expected: SchemaSnapshot, actual: SchemaSnapshot) -> str:
    def lines(facts: frozenset[Any]) -> str:
        return "\n".join(f"    {describe(f)!r}" for f in sorted(facts, key=repr)) or "    -"
    return (f"\n  models only:\n{lines(expected - actual)}"
            f"\n  database only:\n{lines(actual - expected)}")


def assert_database_equals_models(metadata: sa.MetaData, engine: Engine) -> None:
    with engine.begin() as conn:
        metadata.create_all(conn)
    with engine.connect() as conn:
        live = reflect(conn)
    models = from_metadata(metadata, engine.dialect)
    assert models == live, f"false drift on {engine.dialect.name}:" + diff_text(models, live)


# Explicit settings: the CI profile's max_examples=50 would make the MariaDB run too slow.
PROPERTY: dict[str, Any] = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.filter_too_much])


@settings(max_examples=40, **PROPERTY)
@given(tables=schemas())
def test_sqlite_database_equals_its_models(tables: list[dict[str, Any]],
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    metadata = build(tables)
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('snap') / 'app.db'}")
    try:
        assert_database_equals_models(metadata, engine)
    finally:
        engine.dispose()


@settings(max_examples=25, **PROPERTY)
@given(tables=schemas())
def test_mariadb_database_equals_its_models(tables: list[dict[str, Any]],
                                            mariadb_server: Any) -> None:
    metadata = build(tables)
    name = "snap_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(mariadb_server.create_database(name))
    try:
        assert_database_equals_models(metadata, engine)
    finally:
        engine.dispose()
        mariadb_server.drop_database(name)


# -- real changes are seen ---------------------------------------------------------------------


def base_models(change: str = "") -> sa.MetaData:
    """A small blog; `change` names one difference from the base."""
    metadata = sa.MetaData()
    sa.Table("author", metadata,
             sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.String(40 if change == "length" else 30), nullable=False),
             sa.Column("email", sa.String(100), unique=True))
    post_fk = [sa.ForeignKey("author.id", ondelete="CASCADE")] if change == "fk" else []
    sa.Table("post", metadata,
             sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("title", sa.String(200), nullable=change == "nullable"),
             sa.Column("body", sa.Text),
             sa.Column("author_id", sa.Integer, *post_fk),
             *([sa.Column("subtitle", sa.String(50))] if change == "column" else []),
             *([] if change == "drop_index" else [sa.Index("ix_post_title", "title")]))
    return metadata


# change -> (facts only in the base, facts only in the changed schema), as `describe` says them
CHANGES = {
    "column": (set(), {"column post.subtitle VARCHAR(50)"}),
    "length": ({"column author.name VARCHAR(30) NOT NULL"},
               {"column author.name VARCHAR(40) NOT NULL"}),
    "drop_index": ({"index post(title)"}, set()),
    "nullable": ({"column post.title VARCHAR(200) NOT NULL"}, {"column post.title VARCHAR(200)"}),
    "fk": (set(), {"foreign key post(author_id) -> author(id) ON DELETE CASCADE"}),
}


@pytest.fixture
def second_url(backend: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Another empty database on the same backend."""
    if backend.name == "sqlite":
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    server = request.getfixturevalue("mariadb_server")
    name = "snap_" + uuid.uuid4().hex[:12]
    try:
        yield server.create_database(name)
    finally:
        server.drop_database(name)


def created(metadata: sa.MetaData, url: str) -> tuple[SchemaSnapshot, SchemaSnapshot]:
    """The live snapshot of a database `metadata` created, and the models' snapshot."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
        with engine.connect() as conn:
            return reflect(conn), from_metadata(metadata, conn.dialect)
    finally:
        engine.dispose()


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_real_change_is_a_difference(change: str, backend: Any, second_url: str) -> None:
    before, models_before = created(base_models(), backend.url)
    after, models_after = created(base_models(change), second_url)
    assert (before, after) == (models_before, models_after)
    gone, new = CHANGES[change]
    if change == "fk" and backend.name == "mariadb":
        new = new | {"index post(author_id)"}  # the index InnoDB builds for the foreign key
    assert {describe(f) for f in before - after} == gone
    assert {describe(f) for f in after - before} == new
    assert before.fingerprint != after.fingerprint


def test_sqlite_reads_unique_constraints_and_fk_actions_of_unquoted_odd_names(
        sqlite_url: str) -> None:
    # SQLAlchemy leaves price$ unquoted in the DDL, and its regexes over the CREATE TABLE text
    # then miss the UNIQUE constraint and the ON DELETE action.
    metadata = sa.MetaData()
    sa.Table("a$", metadata, sa.Column("id$", sa.Integer, primary_key=True))
    sa.Table("order", metadata,
             sa.Column("price$", sa.Integer, primary_key=True),
             sa.Column("select", sa.Integer),
             sa.Column("a$id", sa.Integer, sa.ForeignKey("a$.id$", ondelete="SET NULL")),
             sa.UniqueConstraint("price$", "select"))
    live, models = created(metadata, sqlite_url)
    assert ("unique", "order", ("price$", "select")) in live.facts
    assert ("fk", "order", ("a$id",), "a$", ("id$",), "SET NULL", None) in live.facts
    assert live == models


@pytest.mark.mariadb
def test_mariadb_json_is_not_any_longtext(mariadb_url: str) -> None:
    # MariaDB's JSON is LONGTEXT + CHECK (json_valid(col)): read back as JSON, while a plain
    # LONGTEXT column stays LONGTEXT and differs from a JSON model.
    metadata = sa.MetaData()
    sa.Table("doc", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("data", sa.JSON), sa.Column("notes", mysql.LONGTEXT))
    live, models = created(metadata, mariadb_url)
    assert ("column", "doc", "data", "JSON", True, None) in live.facts
    assert ("column", "doc", "notes", "LONGTEXT", True, None) in live.facts
    assert live == models


# -- normalisation rules -----------------------------------------------------------------------


def test_default_literals_keep_their_value() -> None:
    assert normalize_default("'a '") == "a "  # trailing space is data
    assert normalize_default("'it''s'") == "it's"
    assert normalize_default("'null'") == "null"  # the string, not NULL
    assert normalize_default("NULL") is None
    assert normalize_default("(0)") == "0"
    assert normalize_default("(a) + (b)") == "(a) + (b)"
    assert normalize_default("now()") == normalize_default("CURRENT_TIMESTAMP()")
    assert normalize_default("true") == normalize_default("1")
    # MariaDB writes literals with backslash escapes; SQLite keeps them as typed.
    assert normalize_default("'C:\\\\dir\\n'", backslash_escapes=True) == "C:\\dir\n"
    assert normalize_default("'C:\\\\dir'") == "C:\\\\dir"


def test_numeric_defaults_compare_as_numbers_only_in_numeric_columns() -> None:
    assert numeric_default("NUMERIC(5,2)", "1.50") == numeric_default("NUMERIC(5,2)", "1.5")
    assert numeric_default("NUMERIC(5,2)", "0.00") == "0"
    assert numeric_default("VARCHAR(5)", "1.50") == "1.50"
    assert numeric_default("NUMERIC(5,2)", "1.55") != numeric_default("NUMERIC(5,2)", "1.6")


@pytest.mark.parametrize("dialect", [sqlite.dialect(), mysql.dialect()], ids=["sqlite", "mysql"])
def test_real_differences_stay_differences(dialect: Any) -> None:
    def one(type_: Any, default: Any = None, nullable: bool = True) -> SchemaSnapshot:
        metadata = sa.MetaData()
        sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("c", type_, server_default=default, nullable=nullable))
        return from_metadata(metadata, dialect)

    assert one(sa.String(30)) != one(sa.String(40))
    assert one(sa.Numeric(10, 2)) != one(sa.Numeric(10, 3))
    assert one(sa.Integer) != one(sa.BigInteger)
    assert one(sa.String(5), "a ") != one(sa.String(5), "a")
    assert one(sa.String(5), "1.50") != one(sa.String(5), "1.5")
    assert one(sa.Integer, "0") != one(sa.Integer)
    assert one(sa.Integer, nullable=False) != one(sa.Integer)
    assert one(sa.Numeric(5, 2), "1.5") == one(sa.Numeric(5, 2), sa.text("1.50"))


# -- fingerprint, only, replace_tables ---------------------------------------------------------

FINGERPRINT_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from sqlalchemy.dialects import mysql, sqlite
    from test_schema_snapshot import base_models
    from alembic_repair.engine.state.schema import from_metadata
    for dialect in (sqlite.dialect(), mysql.dialect()):
        print(from_metadata(base_models(), dialect).fingerprint)
""")


def test_fingerprint_is_stable_across_processes() -> None:
    here = [from_metadata(base_models(), d).fingerprint for d in (sqlite.dialect(),
                                                                  mysql.dialect())]
    for seed in ("0", "1", "12345"):
        run = subprocess.run([sys.executable, "-c", FINGERPRINT_SCRIPT, str(Path(__file__).parent)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert run.stdout.split() == here
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in here)


def test_fingerprint_follows_the_facts() -> None:
    dialect = sqlite.dialect()
    base = from_metadata(base_models(), dialect)
    assert base.fingerprint == from_metadata(base_models(), dialect).fingerprint
    assert base.fingerprint == SchemaSnapshot(frozenset(reversed(sorted(base.facts,
                                                                        key=repr)))).fingerprint
    fingerprints = {base.fingerprint} | {from_metadata(base_models(c), dialect).fingerprint
                                         for c in CHANGES}
    assert len(fingerprints) == 1 + len(CHANGES)


def test_only_keeps_the_facts_of_the_named_tables() -> None:
    base = from_metadata(base_models("fk"), sqlite.dialect())
    post = base.only(["post", "no_such_table"])
    assert post.tables == {"post"}
    assert all(f[1] == "post" for f in post.facts)
    # a foreign key belongs to the table that holds it
    assert ("fk", "post", ("author_id",), "author", ("id",), "CASCADE", None) in post.facts
    assert post.facts | base.only(["author"]).facts == base.facts
    assert base.only([]).facts == frozenset()


def test_replace_tables_takes_those_tables_from_the_other_snapshot() -> None:
    dialect = sqlite.dialect()
    base = from_metadata(base_models(), dialect)
    longer = from_metadata(base_models("length"), dialect)  # author changed
    with_column = from_metadata(base_models("column"), dialect)  # post changed
    assert base.replace_tables(longer, ["author"]) == longer
    assert base.replace_tables(longer, ["post"]) == base
    assert base.replace_tables(with_column, ["author"]) == base
    # both changes: author from one snapshot, post from the other
    both = longer.replace_tables(with_column, ["post"])
    assert {describe(f) for f in both - base} == {"column author.name VARCHAR(40) NOT NULL",
                                                  "column post.subtitle VARCHAR(50)"}
    # a table missing from the other snapshot goes; one only there comes
    assert base.replace_tables(base.only(["author"]), ["post"]).tables == {"author"}
    assert base.only(["author"]).replace_tables(base, ["post"]) == base


def test_float_precision_is_the_type_the_server_stores() -> None:
    assert normalize_type("FLOAT(53)") == normalize_type("DOUBLE") == "DOUBLE"
    assert normalize_type("float(25)") == "DOUBLE"
    assert normalize_type("FLOAT(24)") == normalize_type("FLOAT") == "FLOAT"
    assert normalize_type("FLOAT(10,2)") == "FLOAT(10,2)"  # MySQL's (M,D) form is kept as is


@pytest.mark.mariadb
def test_mariadb_double_is_a_float_53_model(mariadb_url: str) -> None:
    """A model's `Float(53)` (what `Double` means) is created as DOUBLE: no drift."""
    metadata = sa.MetaData()
    sa.Table("measure", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("value", sa.Float(53)), sa.Column("small", sa.Float(10)))
    live, models = created(metadata, mariadb_url)
    assert ("column", "measure", "value", "DOUBLE", True, None) in live.facts
    assert live == models


@pytest.mark.parametrize("backend_name", ["sqlite", "mariadb"])
def test_index_sort_order_and_expressions_are_not_drift(backend_name: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    """A DESC index column (reflected without its order by MariaDB before 10.8 and by SQLite)
    equals its model, and an expression index (which SQLite's reflection skips) is left out on
    both sides; an index on another column is still a difference."""
    url = (f"sqlite:///{tmp_path / 'app.db'}" if backend_name == "sqlite"
           else request.getfixturevalue("mariadb_url"))

    def models(column: str) -> sa.MetaData:
        metadata = sa.MetaData()
        table = sa.Table("person", metadata, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("name", sa.String(50)), sa.Column("email", sa.String(50)))
        sa.Index("ix_person_name", table.c[column].desc())
        if backend_name == "sqlite":
            sa.Index("ix_person_lower", sa.func.lower(table.c.email))
        return metadata

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing for the user to read about what is left out
        live, expected = created(models("name"), url)
    assert live == expected, diff_text(expected, live)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert from_metadata(models("email"), conn.dialect) != live
    finally:
        engine.dispose()
