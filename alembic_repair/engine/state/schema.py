"""SchemaSnapshot: a schema as a set of comparable facts, from the live database or the models.

A snapshot is a frozenset of small tuples ("facts"): a table, a column with its normalised type,
nullability and default, a primary key, a unique set of columns, an index, a foreign key. Names
the database invents (FK and unique-constraint names on MySQL, the index MySQL adds for each FK)
and spellings that differ only by dialect (TINYINT(1) for Boolean, DECIMAL for NUMERIC, display
widths, ``now()`` vs ``CURRENT_TIMESTAMP``, ``1.50`` vs ``1.5`` in a DECIMAL, MySQL's backslash
escapes in defaults, MariaDB's JSON stored as LONGTEXT) are normalised away, so an untouched
database equals its models exactly (tests/test_schema_snapshot.py checks it on random schemas).
Being sets, snapshots compare with ``==``, hash to a fingerprint, and their differences are set
differences: that is what drift, "which revision is this?" and half-applied revisions are
computed from.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import MetaData, inspect
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnClause, TextClause, UnaryExpression
from sqlalchemy.types import TypeEngine

from ..env_filter import OWN_PREFIX

VERSION_TABLE = "alembic_version"
TRASH_PREFIX = f"{OWN_PREFIX}trash_"

Fact = tuple[Any, ...]


def is_user_table(name: str, kept: Collection[str] = ()) -> bool:
    """Tables that belong to the application (not Alembic's, not the tool's ``_ar_*``
    tables: the same rule as env.py's autogenerate filter). Doctor also
    passes the `kept` tables (``ignore_tables`` and env.py's kept set): nobody's models or
    revisions own them, so they are compared with nothing (backups and row checks still
    count them: they hold rows)."""
    return name != VERSION_TABLE and not name.startswith(OWN_PREFIX) and name not in kept


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
    if head == "FLOAT" and rest[:-1].isdigit():
        # FLOAT(p) is a precision in bits, stored as FLOAT up to 24 and as DOUBLE above (MySQL,
        # MariaDB and PostgreSQL alike): `Float(53)` in a model is the DOUBLE the server shows
        return "DOUBLE" if int(rest[:-1]) > 24 else "FLOAT"
    return head + paren + rest


def type_text(type_: TypeEngine[Any], dialect: Dialect) -> str:
    try:
        return normalize_type(type_.compile(dialect=dialect))
    except CompileError:
        return normalize_type(type(type_).__name__)


def _wrapped(text: str) -> bool:
    """Whether `text` is one parenthesised whole: ``(0)``, not ``(a) + (b)``."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and i < len(text) - 1:
            return False
    return True


_MYSQL_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


def normalize_default(value: str | None, backslash_escapes: bool = False) -> str | None:
    """A server default as comparable text. Outer parentheses go (SQLite keeps ``(0)`` as
    typed); a quoted string literal becomes its value, exactly (spaces and case are data); an
    unquoted expression keeps its text, with dialect spellings merged: ``now()`` and
    ``CURRENT_TIMESTAMP()`` are ``current_timestamp``, ``true``/``false`` are ``1``/``0`` (MySQL
    stores booleans as TINYINT), ``NULL`` is no default. `backslash_escapes`: the text comes
    from MySQL/MariaDB, which write a backslash in a literal as ``\\\\`` and a newline as ``\\n``
    (unless sql_mode has NO_BACKSLASH_ESCAPES)."""
    if value is None:
        return None
    text = value.strip()
    while _wrapped(text):
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        body = text[1:-1].replace(text[0] * 2, text[0])  # SQL's doubled quote undone
        if backslash_escapes:
            body = re.sub(r"\\(.)", lambda m: _MYSQL_ESCAPES.get(m[1], m[1]), body, flags=re.S)
        return body
    lowered = text.lower()
    if lowered in _NOW:
        return "current_timestamp"
    if lowered in ("true", "false"):
        return "1" if lowered == "true" else "0"
    if lowered == "null":
        return None
    return text


_NUMBERS = {"TINYINT", "SMALLINT", "MEDIUMINT", "INTEGER", "BIGINT", "NUMERIC", "FLOAT",
            "DOUBLE"}


def numeric_default(type_: str, default: str | None) -> str | None:
    """The default of a numeric column as a number: MariaDB stores ``0`` for a DECIMAL(5,2)
    as ``0.00`` and ``1.5`` as ``1.50``, SQLite keeps the text; both are the number 1.5, so the
    shortest plain spelling is kept. Only for numeric types: in a VARCHAR, '1.50' is not '1.5'.
    The value is not rounded to the column's scale: a default more precise than its column is
    a real difference."""
    if default is None or re.split(r"[(~ ]", type_, maxsplit=1)[0] not in _NUMBERS:
        return default
    try:
        number = Decimal(default)
    except InvalidOperation:
        return default
    if not number.is_finite():
        return default
    return "0" if number == 0 else format(number.normalize(), "f")


def _backslash_escapes(dialect: Dialect) -> bool:
    """MySQL/MariaDB read and write string literals with backslash escapes, unless sql_mode has
    NO_BACKSLASH_ESCAPES (the dialect notes which on connect)."""
    return dialect.name in ("mysql", "mariadb") and bool(
        getattr(dialect, "_backslash_escapes", True))


def _default_of(column: Any, dialect: Dialect) -> str | None:
    default = column.server_default
    if default is None:
        return None
    arg = getattr(default, "arg", None)
    if arg is None:
        return None  # FetchedValue: a default the DDL does not create
    if isinstance(arg, str):
        # A Python string is a literal value, rendered as a quoted SQL string: whitespace and
        # quotes inside it are part of the value ('a ' is not 'a'), so quote it the same way.
        return normalize_default("'" + arg.replace("'", "''") + "'")
    # SQL text (written by the user, or compiled for `dialect`) is read the way the database
    # reads it: with backslash escapes on MySQL.
    escapes = _backslash_escapes(dialect)
    if isinstance(arg, TextClause):
        return normalize_default(arg.text, escapes)
    try:
        return normalize_default(str(arg.compile(dialect=dialect,
                                                 compile_kwargs={"literal_binds": True})), escapes)
    except (CompileError, AttributeError):
        return normalize_default(str(arg), escapes)


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
    if kind == "words":  # a difference told in Alembic's terms (engine/state/drift.py)
        return str(fact[2])
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
            type_ = type_text(column.type, dialect)
            facts.add(("column", name, column.name, type_, nullable,
                       numeric_default(type_, _default_of(column, dialect))))
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
            cols = tuple(index_part(c) for c in index.expressions)
            if EXPRESSION not in cols:  # (see EXPRESSION)
                facts.add(("unique" if index.unique else "index", name, cols))
    if dialect.name in ("mysql", "mariadb"):
        facts |= _mysql_fk_indexes(facts)
    return SchemaSnapshot(frozenset(facts))


#: An index part that is an expression (a functional index). Such indexes are left out of
#: the comparison on both sides: SQLite's reflection skips them, others list them with no column
#: name, and the expression's text is each dialect's own spelling.
EXPRESSION = "(expression)"


def index_part(part: Any) -> str:
    """A column of an index as reflection names it: the column itself, whatever its sort order
    (MariaDB before 10.8 and SQLite's reflection drop DESC), or `EXPRESSION`."""
    if isinstance(part, UnaryExpression) and part.modifier in (operators.desc_op,
                                                               operators.asc_op):
        part = part.element
    return part.name if isinstance(part, ColumnClause) else EXPRESSION


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
    backslash_escapes = _backslash_escapes(dialect)
    json_columns = _mariadb_json_columns(conn)
    facts: set[Fact] = set()
    for name in tables:
        facts.add(("table", name))
        for col in insp.get_columns(name):
            default = col.get("default")
            type_ = type_text(col["type"], dialect)
            if type_ == "LONGTEXT" and (name, col["name"]) in json_columns:
                type_ = "JSON"
            default = normalize_default(default if isinstance(default, str) else None,
                                        backslash_escapes)
            facts.add(("column", name, col["name"], type_, bool(col["nullable"]),
                       numeric_default(type_, default)))
        pk = tuple(insp.get_pk_constraint(name).get("constrained_columns") or ())
        if pk:
            facts.add(("pk", name, pk))
        facts.update(("fk", name, *fk) for fk in _foreign_keys(conn, insp, name))
        for cols in _unique_constraints(conn, insp, name):
            facts.add(("unique", name, cols))
        with warnings.catch_warnings():  # expression indexes are left out (EXPRESSION)
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            indexes = insp.get_indexes(name)
        for index in indexes:
            cols = tuple(EXPRESSION if c is None else c for c in index["column_names"])
            if EXPRESSION not in cols:  # (see EXPRESSION)
                facts.add(("unique" if index.get("unique") else "index", name, cols))
    return SchemaSnapshot(frozenset(facts))


def _mariadb_json_columns(conn: Connection) -> set[tuple[str, str]]:
    """MariaDB has no JSON type: ``JSON`` is an alias for ``LONGTEXT`` with the column check
    ``json_valid(`col`)``, and reflects as LONGTEXT. A LONGTEXT column carrying that check is
    what JSON created, so it reads as JSON again; a plain LONGTEXT stays LONGTEXT. One query
    for the whole database: (table, column) of each such check."""
    if not getattr(conn.dialect, "is_mariadb", False):
        return set()
    rows = conn.execute(sql_text(
        "SELECT table_name, constraint_name, check_clause FROM information_schema.check_constraints"
        " WHERE constraint_schema = DATABASE()"))
    quote = conn.dialect.identifier_preparer.quote_identifier
    return {(table, name) for table, name, clause in rows if clause == f"json_valid({quote(name)})"}


# SQLite: SQLAlchemy reads UNIQUE constraints and the ON DELETE/ON UPDATE of foreign keys
# with regexes over the CREATE TABLE text, which misread identifiers it leaves unquoted (such as
# ``price$``): the constraint, or its action, silently goes missing. SQLite reports both exactly
# through PRAGMAs, so on SQLite they are read from there.


def _pragma(conn: Connection, pragma: str, name: str) -> list[Any]:
    quoted = conn.dialect.identifier_preparer.quote_identifier(name)
    return list(conn.exec_driver_sql(f"PRAGMA main.{pragma}({quoted})").fetchall())


def _unique_constraints(conn: Connection, insp: Any, table: str) -> list[tuple[str, ...]]:
    if conn.dialect.name != "sqlite":
        return [tuple(uq["column_names"]) for uq in insp.get_unique_constraints(table)]
    # index_list: (seq, name, unique, origin, partial); origin "u" is a UNIQUE constraint.
    return [tuple(info[2] for info in sorted(_pragma(conn, "index_info", row[1])))
            for row in _pragma(conn, "index_list", table) if row[3] == "u"]


def _foreign_keys(conn: Connection, insp: Any, table: str) -> list[Fact]:
    """(columns, referred table, referred columns, on delete, on update) of each FK."""
    if conn.dialect.name != "sqlite":
        return [(tuple(fk["constrained_columns"]), fk["referred_table"],
                 tuple(fk["referred_columns"]), _action(fk.get("options", {}).get("ondelete")),
                 _action(fk.get("options", {}).get("onupdate")))
                for fk in insp.get_foreign_keys(table)]
    # foreign_key_list: (id, seq, table, from, to, on_update, on_delete, match), one row per
    # column; "to" is NULL when the DDL left the referred columns to the referred primary key.
    rows: dict[int, list[Any]] = {}
    for row in sorted(_pragma(conn, "foreign_key_list", table), key=lambda r: (r[0], r[1])):
        rows.setdefault(row[0], []).append(row)
    found: list[Fact] = []
    for fk in rows.values():
        ref = fk[0][2]
        refcols = tuple(r[4] for r in fk) if all(r[4] for r in fk) else tuple(
            insp.get_pk_constraint(ref).get("constrained_columns") or ())
        found.append((tuple(r[3] for r in fk), ref, refcols, _action(fk[0][6]),
                      _action(fk[0][5])))
    return found


def user_tables(conn: Connection) -> list[str]:
    return sorted(t for t in inspect(conn).get_table_names() if is_user_table(t))


def reflect(conn: Connection) -> SchemaSnapshot:
    """The whole live schema (the application's tables)."""
    return reflect_tables(conn, user_tables(conn))
