"""SchemaSnapshot: a schema as a set of comparable facts, from the live database or the models.

A snapshot is a frozenset of small tuples ("facts"): a table, a column with its normalised type,
nullability and default, a primary key, a unique set of columns, an index, a foreign key. Names
the database invents (FK and unique-constraint names on MySQL, the index MySQL adds for each FK)
and spellings that differ only by dialect (TINYINT(1) for Boolean, DECIMAL for NUMERIC, display
widths, ``now()`` vs ``CURRENT_TIMESTAMP``) are normalised away, so an untouched database equals
its models exactly. Being sets, snapshots compare with ``==``, hash to a fingerprint, and their
differences are set differences: that is what drift, "which revision is this?" and half-applied
revisions are computed from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeEngine

VERSION_TABLE = "alembic_version"
TRASH_PREFIX = "_ar_trash_"

Fact = tuple[Any, ...]


def is_user_table(name: str) -> bool:
    """Tables that belong to the application (not Alembic's, not our trash)."""
    return name != VERSION_TABLE and not name.startswith(TRASH_PREFIX)


# -- normalisation -----------------------------------------------------------------------------

_WIDTH = re.compile(r"^(TINYINT|SMALLINT|MEDIUMINT|INT|INTEGER|BIGINT)\(\d+\)")
_CHARSET = re.compile(r"\s+(CHARACTER SET|COLLATE)\s+\S+", re.IGNORECASE)
_SYNONYMS = {"INT": "INTEGER", "DECIMAL": "NUMERIC", "BOOL": "BOOLEAN", "DOUBLE PRECISION":
             "DOUBLE", "REAL": "FLOAT", "CHARACTER VARYING": "VARCHAR"}
_NOW = {"now()", "current_timestamp", "current_timestamp()", "localtimestamp",
        "localtimestamp()", "localtime", "localtime()", "current_timestamp(0)"}


def normalize_type(text: str) -> str:
    text = _CHARSET.sub("", text.strip().upper())
    text = re.sub(r"\s*,\s*", ",", text)
    text = re.sub(r"\s+", " ", text)
    if text in ("TINYINT(1)", "BOOLEAN", "BOOL"):
        return "BOOLEAN"
    text = text.replace(" UNSIGNED", "~UNSIGNED")
    text = _WIDTH.sub(lambda m: m.group(1), text)
    head, paren, rest = text.partition("(")
    head = _SYNONYMS.get(head, head)
    return head + paren + rest


def type_text(type_: TypeEngine[Any], dialect: Dialect) -> str:
    try:
        return normalize_type(type_.compile(dialect=dialect))
    except CompileError:
        return normalize_type(type(type_).__name__)


def normalize_default(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    while len(text) >= 2 and text[0] == "(" and text[-1] == ")":
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    lowered = text.lower()
    if lowered in _NOW:
        return "current_timestamp"
    if lowered in ("true", "false"):
        return "1" if lowered == "true" else "0"
    if lowered == "null":
        return None
    return text


def _default_of(column: Any, dialect: Dialect) -> str | None:
    default = column.server_default
    if default is None:
        return None
    arg = getattr(default, "arg", None)
    if isinstance(arg, str):
        return normalize_default(arg)
    if isinstance(arg, TextClause):
        return normalize_default(arg.text)
    try:
        return normalize_default(str(arg.compile(dialect=dialect,
                                                 compile_kwargs={"literal_binds": True})))
    except (CompileError, AttributeError):
        return normalize_default(str(arg))


def _action(value: str | None) -> str | None:
    value = (value or "").upper()
    return None if value in ("", "NO ACTION", "RESTRICT") else value


# -- the snapshot ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaSnapshot:
    """A schema as facts; compare with ``==``, diff with `missing_from` / `extra_in`."""

    facts: frozenset[Fact]

    @property
    def fingerprint(self) -> str:
        text = "\n".join(repr(f) for f in sorted(self.facts, key=repr))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(f[1] for f in self.facts if f[0] == "table")

    def only(self, tables: Iterable[str]) -> SchemaSnapshot:
        keep = set(tables)
        return SchemaSnapshot(frozenset(f for f in self.facts if f[1] in keep))

    def replace_tables(self, other: SchemaSnapshot, tables: Iterable[str]) -> SchemaSnapshot:
        """This snapshot with the facts of `tables` taken from `other` instead."""
        names = set(tables)
        kept = {f for f in self.facts if f[1] not in names}
        return SchemaSnapshot(frozenset(kept | {f for f in other.facts if f[1] in names}))

    def __sub__(self, other: SchemaSnapshot) -> frozenset[Fact]:
        return self.facts - other.facts


def describe(fact: Fact) -> str:
    """One fact in words, for findings: ``column post.title VARCHAR(200) NOT NULL``."""
    kind, table = fact[0], fact[1]
    if kind == "table":
        return f"table {table}"
    if kind == "column":
        _, _, name, type_, nullable, default = fact
        text = f"column {table}.{name} {type_}{'' if nullable else ' NOT NULL'}"
        return text + (f" DEFAULT {default}" if default is not None else "")
    if kind == "pk":
        return f"primary key {table}({', '.join(fact[2])})"
    if kind == "unique":
        return f"unique {table}({', '.join(fact[2])})"
    if kind == "index":
        return f"index {table}({', '.join(fact[2])})"
    if kind == "fk":
        _, _, cols, ref, refcols, ondelete, onupdate = fact
        text = f"foreign key {table}({', '.join(cols)}) -> {ref}({', '.join(refcols)})"
        return text + (f" ON DELETE {ondelete}" if ondelete else "") + (
            f" ON UPDATE {onupdate}" if onupdate else "")
    return repr(fact)


def from_metadata(metadata: MetaData, dialect: Dialect) -> SchemaSnapshot:
    """The schema `metadata` would create on `dialect` (what create_all would build)."""
    facts: set[Fact] = set()
    for table in metadata.sorted_tables:
        name = table.name
        if not is_user_table(name):
            continue
        facts.add(("table", name))
        for column in table.columns:
            nullable = bool(column.nullable) and not column.primary_key
            facts.add(("column", name, column.name, type_text(column.type, dialect), nullable,
                       _default_of(column, dialect)))
            if column.unique:
                facts.add(("unique", name, (column.name,)))
        pk = tuple(c.name for c in table.primary_key.columns)
        if pk:
            facts.add(("pk", name, pk))
        for constraint in table.constraints:
            cols = tuple(c.name for c in getattr(constraint, "columns", ()))
            kind = type(constraint).__name__
            if kind == "UniqueConstraint" and cols:
                facts.add(("unique", name, cols))
            elif kind == "ForeignKeyConstraint":
                refcols = tuple(e.column.name for e in constraint.elements)  # type: ignore[attr-defined]
                ref = constraint.elements[0].column.table.name  # type: ignore[attr-defined]
                facts.add(("fk", name, cols, ref, refcols,
                           _action(constraint.ondelete),  # type: ignore[attr-defined]
                           _action(constraint.onupdate)))  # type: ignore[attr-defined]
        for index in table.indexes:
            cols = tuple(getattr(c, "name", str(c)) for c in index.expressions)
            facts.add(("unique" if index.unique else "index", name, cols))
    if dialect.name in ("mysql", "mariadb"):
        facts |= _mysql_fk_indexes(facts)
    return SchemaSnapshot(frozenset(facts))


def _mysql_fk_indexes(facts: set[Fact]) -> set[Fact]:
    """The index InnoDB creates for a foreign key that no existing index starts with."""
    added: set[Fact] = set()
    for fact in facts:
        if fact[0] != "fk":
            continue
        table, cols = fact[1], fact[2]
        covered = any(other[0] in ("pk", "unique", "index") and other[1] == table
                      and tuple(other[2][: len(cols)]) == cols for other in facts)
        if not covered:
            added.add(("index", table, cols))
    return added


def reflect_tables(conn: Connection, tables: Iterable[str]) -> SchemaSnapshot:
    """The live schema of `tables`, normalised like `from_metadata`."""
    insp = inspect(conn)
    dialect = conn.dialect
    facts: set[Fact] = set()
    for name in tables:
        facts.add(("table", name))
        for col in insp.get_columns(name):
            default = col.get("default")
            facts.add(("column", name, col["name"], type_text(col["type"], dialect),
                       bool(col["nullable"]),
                       normalize_default(default if isinstance(default, str) else None)))
        pk = tuple(insp.get_pk_constraint(name).get("constrained_columns") or ())
        if pk:
            facts.add(("pk", name, pk))
        for fk in insp.get_foreign_keys(name):
            options = fk.get("options") or {}
            facts.add(("fk", name, tuple(fk["constrained_columns"]), fk["referred_table"],
                       tuple(fk["referred_columns"]), _action(options.get("ondelete")),
                       _action(options.get("onupdate"))))
        for uq in insp.get_unique_constraints(name):
            facts.add(("unique", name, tuple(uq["column_names"])))
        for index in insp.get_indexes(name):
            cols = tuple(c for c in index["column_names"] if c is not None)
            facts.add(("unique" if index.get("unique") else "index", name, cols))
    return SchemaSnapshot(frozenset(facts))


def user_tables(conn: Connection) -> list[str]:
    return sorted(t for t in inspect(conn).get_table_names() if is_user_table(t))


def reflect(conn: Connection) -> SchemaSnapshot:
    """The whole live schema (the application's tables)."""
    return reflect_tables(conn, user_tables(conn))
