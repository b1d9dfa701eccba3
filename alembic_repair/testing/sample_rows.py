"""Rows that always insert, drawn with hypothesis from reflected tables.

The data-survival check (`survival`) and the plugin's lint need rows in whatever schema a
project's history builds, so the rows come from the reflected tables, not from the models:
each column's type bounds its values (integer ranges, string length in characters, decimal
precision and scale, enum members), nullable columns may be NULL, primary keys, UNIQUE
constraints and unique indexes get distinct values (distinct under MariaDB's case- and
trailing-space-insensitive collations too), and foreign keys point at rows already drawn for
the parent (tables are drawn parents first, `MetaData.sorted_tables`). A table whose
constraints cannot be met (a CHECK we do not understand, a required foreign key into a cycle,
a column of an unknown type) gets no rows, and the reason is kept in `Dataset.skipped`.

hypothesis is an optional dependency (the ``pytest`` extra): it is imported inside the
functions, never at module import.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, Table, UniqueConstraint, types
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CheckConstraint, Column

from ..engine.database import engine_for
from ..engine.state.schema import is_user_table
from ..engine.url import parse_url

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["Dataset", "datasets", "fill", "insert", "reflect"]

Row = dict[str, Any]
#: Longest string drawn for a column without a length (TEXT, VARCHAR on SQLite).
TEXT_CHARS = 20
#: Characters of values that must be distinct: collations cannot fold two of them together.
SAFE_ALPHABET = string.ascii_lowercase + string.digits
_BITS = {"TINYINT": 8, "SMALLINT": 16, "SMALLINTEGER": 16, "MEDIUMINT": 24, "INTEGER": 32,
         "INT": 32, "BIGINT": 64, "BIGINTEGER": 64}
_CHECK_IN = re.compile(r"^\(?\s*[`\"\[]?(\w+)[`\"\]]?\s+IN\s*\((.*)\)\s*\)?$", re.I | re.S)
_CHECK_CMP = re.compile(r"^\(?\s*[`\"\[]?(\w+)[`\"\]]?\s*(>=|>|<=|<)\s*(-?\d+)\s*\)?$", re.S)
_CHECK_JSON = re.compile(r"^\(?\s*json_valid\(\s*[`\"]?(\w+)[`\"]?\s*\)\s*\)?$", re.I)


@dataclass(frozen=True)
class Dataset(Mapping[str, tuple[Row, ...]]):
    """Rows per table, in insertion order (parents first); `skipped`: table -> why no rows."""

    tables: tuple[tuple[str, tuple[Row, ...]], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def __getitem__(self, name: str) -> tuple[Row, ...]:
        for table, rows in self.tables:
            if table == name:
                return rows
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(table for table, _ in self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def counts(self) -> dict[str, int]:
        return {table: len(rows) for table, rows in self.tables}


@dataclass(frozen=True)
class _ForeignKey:
    columns: tuple[str, ...]
    referred: str
    referred_columns: tuple[str, ...]
    nullable: bool


@dataclass(frozen=True)
class _Plan:
    """How one table's rows are drawn: column strategies, unique keys, foreign keys."""

    table: str
    columns: dict[str, Any] = field(default_factory=dict)  # name -> SearchStrategy
    unique: tuple[tuple[str, ...], ...] = ()
    foreign: tuple[_ForeignKey, ...] = ()
    self_ref: tuple[_ForeignKey, ...] = ()
    skip: str | None = None


def reflect(conn: Connection) -> MetaData:
    """The application's tables (not alembic_version, not the tool's ``_ar_*`` tables)."""
    metadata = MetaData()
    metadata.reflect(conn, only=lambda name, _meta: is_user_table(name))
    if conn.dialect.name in ("mysql", "mariadb"):
        _server_checks(conn, metadata)
    return metadata


def _server_checks(conn: Connection, metadata: MetaData) -> None:
    """The CHECK constraints SQLAlchemy's MySQL reflection leaves out (column-level ones,
    among them MariaDB's ``json_valid`` of every JSON column), read from the catalogue."""
    from sqlalchemy import text

    query = ("SELECT table_name, check_clause FROM information_schema.check_constraints "
             "WHERE constraint_schema = DATABASE()")
    if not getattr(conn.dialect, "is_mariadb", False):  # MySQL 8: no table_name there
        query = ("SELECT tc.table_name, cc.check_clause FROM information_schema"
                 ".check_constraints cc JOIN information_schema.table_constraints tc ON "
                 "tc.constraint_schema = cc.constraint_schema AND tc.constraint_name = "
                 "cc.constraint_name WHERE cc.constraint_schema = DATABASE()")
    for table_name, clause in conn.execute(text(query)).all():
        table = metadata.tables.get(table_name)
        if table is None:
            continue
        known = {_bare(str(c.sqltext)) for c in table.constraints
                 if isinstance(c, CheckConstraint)}
        if _bare(clause) not in known:
            table.append_constraint(CheckConstraint(text(clause)))


def _bare(sql: str) -> str:
    return re.sub(r"[\s`()]", "", sql).lower()


# -- column values ---------------------------------------------------------------------------


def _integer_range(type_: Any, dialect: str, key: bool) -> tuple[int, int]:
    name = type(type_).__name__.upper()
    bits = _BITS.get(name, 64 if isinstance(type_, types.BigInteger) else
                     16 if isinstance(type_, types.SmallInteger) else 32)
    if dialect == "sqlite" and name in ("INTEGER", "INT"):
        bits = 32  # Integer() everywhere else: keep rows portable
    if getattr(type_, "unsigned", False):
        low, high = 0, 2 ** bits - 1
    else:
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    # keys stay positive: 0 in an AUTO_INCREMENT column means "the next value" on MariaDB
    return (max(low, 1), high) if key else (low, high)


def _charset(column: Column[Any], table: Table) -> str:
    explicit = getattr(column.type, "charset", None)
    default = table.dialect_kwargs.get("mysql_default charset") or \
        table.dialect_kwargs.get("mariadb_default charset")
    return str(explicit or default or "utf8mb4").lower()


def _text(st: Any, column: Column[Any], table: Table, dialect: str, distinct: bool,
          json_text: bool) -> Any:
    length = getattr(column.type, "length", None)
    fixed = type(column.type).__name__.upper() in ("CHAR", "NCHAR")
    if json_text:
        limit = length or 200
        return _json(st).map(_dumps).filter(lambda s: len(s) <= limit)
    if fixed and length in (32, 36):
        return st.uuids().map(lambda u: u.hex if length == 32 else str(u))
    most = min(length or TEXT_CHARS, TEXT_CHARS)
    if distinct:
        return st.text(alphabet=SAFE_ALPHABET, min_size=1, max_size=most)
    charset = _charset(column, table) if dialect != "sqlite" else "utf8mb4"
    if charset.startswith("utf8mb4") or dialect == "sqlite":
        chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co", "Cn"))
    elif charset.startswith("utf8"):
        chars = st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs", "Cc", "Co", "Cn"))
    else:
        chars = st.characters(min_codepoint=32, max_codepoint=126)
    return st.text(alphabet=chars, max_size=most)


def _json(st: Any) -> Any:
    scalars = st.none() | st.booleans() | st.integers(-(10 ** 6), 10 ** 6) | \
        st.text(alphabet=SAFE_ALPHABET, max_size=8)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet=SAFE_ALPHABET, max_size=6), inner, max_size=3), max_leaves=5)


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _value_strategy(st: Any, column: Column[Any], table: Table, dialect: str, *,
                    distinct: bool, key: bool, json_text: bool) -> Any:
    """Values of `column`'s reflected type; None when the type is not one we can draw."""
    type_ = column.type
    enums = getattr(type_, "enums", None) or getattr(type_, "values", None)
    if enums and isinstance(type_, (types.Enum, types.String)):
        return st.sampled_from(sorted(enums))
    if isinstance(type_, types.Boolean):
        return st.booleans()
    if isinstance(type_, types.Uuid):
        return st.uuids() if type_.as_uuid else st.uuids().map(lambda u: u.hex)
    if isinstance(type_, types.Integer):
        low, high = _integer_range(type_, dialect, key)
        return st.integers(low, high)
    if isinstance(type_, types.Float):
        return st.floats(-1e6, 1e6, width=32, allow_subnormal=False)
    if isinstance(type_, types.Numeric):
        precision = type_.precision or 10
        scale = type_.scale or 0
        if dialect == "sqlite":  # stored as a REAL: 15 significant digits survive
            precision = min(precision, 15)
        whole = max(precision - scale, 0)
        bound = 10 ** whole - 10 ** -scale if scale else 10 ** whole - 1
        from decimal import Decimal

        return st.decimals(Decimal(-bound).quantize(Decimal(10) ** -scale),
                           Decimal(bound).quantize(Decimal(10) ** -scale), places=scale,
                           allow_nan=False, allow_infinity=False)
    if isinstance(type_, types.DateTime):
        return st.datetimes(datetime(1971, 1, 2), datetime(2037, 12, 30)).map(
            lambda v: v.replace(microsecond=0))
    if isinstance(type_, types.Date):
        return st.dates(date(1971, 1, 2), date(2037, 12, 30))
    if isinstance(type_, types.Time):
        return st.times(time(0), time(23, 59, 59)).map(lambda v: v.replace(microsecond=0))
    if isinstance(type_, types.JSON):
        return _json(st)
    if isinstance(type_, (types.LargeBinary, types._Binary)):
        length = getattr(type_, "length", None)
        if type(type_).__name__.upper() == "BINARY" and length:
            return st.binary(min_size=length, max_size=length)
        return st.binary(min_size=1 if distinct else 0, max_size=min(length or 16, 16))
    if isinstance(type_, types.String):
        return _text(st, column, table, dialect, distinct, json_text)
    return None


# -- tables ----------------------------------------------------------------------------------


def _unique_sets(table: Table) -> list[tuple[str, ...]]:
    sets = [tuple(c.name for c in table.primary_key.columns)] if table.primary_key.columns \
        else []
    sets += [tuple(c.name for c in con.columns) for con in table.constraints
             if isinstance(con, UniqueConstraint)]
    sets += [tuple(c.name for c in ix.columns) for ix in table.indexes if ix.unique]
    return [s for s in dict.fromkeys(sets) if s]


def _checks(table: Table) -> tuple[dict[str, Any], str | None]:
    """What the CHECK constraints allow, per column; or why we cannot meet one."""
    allowed: dict[str, Any] = {}
    for con in table.constraints:
        if not isinstance(con, CheckConstraint):
            continue
        sql = str(con.sqltext).strip()
        if (match := _CHECK_JSON.match(sql)) and match.group(1) in table.c:
            allowed[match.group(1)] = "json"
            continue
        if (match := _CHECK_IN.match(sql)) and match.group(1) in table.c:
            import ast

            try:
                values = ast.literal_eval(f"[{match.group(2)}]")
            except (ValueError, SyntaxError):
                return allowed, f"CHECK ({sql}) is not a list of literals"
            allowed[match.group(1)] = ("in", tuple(values))
            continue
        if (match := _CHECK_CMP.match(sql)) and match.group(1) in table.c:
            allowed[match.group(1)] = ("cmp", match.group(2), int(match.group(3)))
            continue
        return allowed, f"CHECK ({sql}) cannot be met by generated rows"
    return allowed, None


def _constrained(st: Any, values: Any, rule: Any) -> Any:
    if rule[0] == "in":
        choices = [v for v in rule[1] if v is not None]
        return st.sampled_from(choices).map(lambda v: bool(v) if isinstance(v, int) and
                                             set(rule[1]) <= {0, 1} else v)
    _, op, bound = rule
    tests: dict[str, Callable[[Any], bool]] = {
        ">=": lambda v: v >= bound, ">": lambda v: v > bound,
        "<=": lambda v: v <= bound, "<": lambda v: v < bound}
    if op in (">=", ">"):
        start = bound if op == ">=" else bound + 1
        return st.integers(start, start + 10 ** 6)
    return values.filter(tests[op])


def _plan(st: Any, table: Table, dialect: str, skipped: Mapping[str, str]) -> _Plan:
    name = table.name
    allowed, reason = _checks(table)
    if reason:
        return _Plan(name, skip=reason)
    unique = _unique_sets(table)
    in_unique = {c for cols in unique for c in cols}
    foreign: list[_ForeignKey] = []
    self_ref: list[_ForeignKey] = []
    fk_columns: set[str] = set()
    for con in table.foreign_key_constraints:
        cols = tuple(con.column_keys)
        referred = con.referred_table.name
        nullable = all(table.c[c].nullable for c in cols)
        fk = _ForeignKey(cols, referred, tuple(e.column.name for e in con.elements), nullable)
        if set(cols) & fk_columns:
            return _Plan(name, skip=f"columns {', '.join(cols)} are in two foreign keys")
        fk_columns |= set(cols)
        if referred == name:
            if set(cols) & in_unique and not nullable:
                return _Plan(name, skip="a required self-reference in a unique key")
            self_ref.append(fk)
        elif referred in skipped and not nullable:
            return _Plan(name, skip=f"its required parent {referred} gets no rows")
        else:
            foreign.append(fk)
    columns: dict[str, Any] = {}
    for column in table.columns:
        if column.name in fk_columns or column.computed is not None:
            continue
        rule = allowed.get(column.name)
        values = _value_strategy(
            st, column, table, dialect, distinct=column.name in in_unique,
            key=column.primary_key, json_text=rule == "json")
        if values is None:
            if column.nullable:
                columns[column.name] = st.none()
                continue
            if column.server_default is not None or column.autoincrement is True:
                continue
            return _Plan(name, skip=f"column {column.name} has type {column.type!r}, which no "
                                    "generated value is known to fit")
        if isinstance(rule, tuple):
            values = _constrained(st, values, rule)
        if column.nullable and column.name not in in_unique:
            values = st.none() | values
        columns[column.name] = values
    return _Plan(name, columns, tuple(unique), tuple(foreign), tuple(self_ref))


def _key(cols: tuple[str, ...]) -> Callable[[Row], Any]:
    """The uniqueness key of a row over `cols`, as MariaDB's collations compare it; a row
    with a NULL in the key never collides (NULLs are distinct)."""
    def key(row: Row) -> Any:
        parts = []
        for col in cols:
            value = row.get(col)
            if value is None:
                return object()
            parts.append(value.casefold().rstrip() if isinstance(value, str) else
                         value.rstrip(b"\0") if isinstance(value, bytes) else value)
        return tuple(parts)
    return key


def _merge(parts: tuple[Row, ...]) -> Row:
    row: Row = {}
    for part in parts:
        row.update(part)
    return row


def _table_rows(st: Any, draw: Any, plan: _Plan, drawn: Mapping[str, list[Row]],
                min_rows: int, max_rows: int) -> list[Row]:
    parts: list[SearchStrategy[Row]] = [st.fixed_dictionaries(plan.columns)]
    for fk in plan.foreign:
        parents = [tuple(row.get(c) for c in fk.referred_columns) for row in drawn.get(
            fk.referred, ())]
        keys = sorted({p for p in parents if None not in p}, key=repr)
        empty = {c: None for c in fk.columns}
        if not keys and not fk.nullable:
            return []
        choice = st.sampled_from([dict(zip(fk.columns, k, strict=True)) for k in keys]) \
            if keys else st.just(empty)
        parts.append(st.just(empty) | choice if fk.nullable and keys else choice)
    rows: list[Row] = draw(st.lists(
        st.tuples(*parts).map(_merge), min_size=min_rows, max_size=max_rows,
        unique_by=tuple(_key(cols) for cols in plan.unique)))
    for fk in plan.self_ref:
        for i, row in enumerate(rows):
            options = list(range(i + 1)) if not fk.nullable else [-1, *range(i)]
            pick = draw(st.sampled_from(options))
            for col, ref in zip(fk.columns, fk.referred_columns, strict=True):
                row[col] = None if pick < 0 else rows[pick].get(ref)
    return rows


def datasets(metadata: MetaData, *, dialect: str, max_rows: int = 4,
             min_rows: int = 0) -> SearchStrategy[Dataset]:
    """Rows for every table of `metadata`, parents first; each table gets between `min_rows`
    (when its foreign keys allow) and `max_rows` rows."""
    import warnings

    from hypothesis import strategies as st
    from sqlalchemy.exc import SAWarning

    dialect = "sqlite" if dialect == "sqlite" else "mysql"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # a foreign-key cycle: handled below
        tables = [t for t in metadata.sorted_tables if is_user_table(t.name)]
    plans: list[_Plan] = []
    skipped: dict[str, str] = {}
    for table in tables:
        plan = _plan(st, table, dialect, skipped)
        if plan.skip:
            skipped[table.name] = plan.skip
        plans.append(plan)
    order = [t.name for t in tables]
    for plan in plans:  # a required foreign key to a table drawn later: a cycle
        for fk in plan.foreign:
            later = fk.referred not in order or order.index(fk.referred) > order.index(
                plan.table)
            if later and not fk.nullable and plan.table not in skipped:
                skipped[plan.table] = f"its required foreign key to {fk.referred} is in a cycle"

    @st.composite
    def draw_all(draw: Any) -> Dataset:
        drawn: dict[str, list[Row]] = {}
        for plan in plans:
            if plan.table in skipped:
                continue
            drawn[plan.table] = _table_rows(st, draw, plan, drawn, min_rows, max_rows)
        return Dataset(tuple((t, tuple(rows)) for t, rows in drawn.items()),
                       tuple(sorted(skipped.items())))

    return draw_all()


def insert(conn: Connection, metadata: MetaData, dataset: Dataset) -> dict[str, int]:
    """Insert `dataset` (parents first) on `conn`, in the caller's transaction; rows per table."""
    counts: dict[str, int] = {}
    for name, rows in dataset.tables:
        if rows:
            conn.execute(metadata.tables[name].insert(), [dict(row) for row in rows])
        counts[name] = len(rows)
    return counts


def pick(strategy: SearchStrategy[Any], *, seed: int, tries: int = 5,
         size: Callable[[Any], int] = lambda _: 0) -> Any:
    """One value of `strategy`, the same for the same seed: the largest by `size` of a
    short generate-only hypothesis run (not `.example()`, which warns outside the console)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    found: list[Any] = []

    @seeded(seed)
    @settings(max_examples=tries, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return max(found, key=size)


def fill(url: str, *, seed: int = 0, max_rows: int = 4) -> dict[str, int]:
    """Reflect the database at `url`, draw one dataset from `seed`, insert it, commit; the rows
    inserted per table."""
    engine = engine_for(parse_url(url))
    try:
        with engine.begin() as conn:
            metadata = reflect(conn)
            dataset = pick(datasets(metadata, dialect=conn.dialect.name, max_rows=max_rows,
                                    min_rows=1), seed=seed,
                           size=lambda d: sum(len(rows) for _, rows in d.tables))
            return insert(conn, metadata, dataset)
    finally:
        engine.dispose()
