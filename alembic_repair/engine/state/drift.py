"""Model drift as `alembic check` sees it: Alembic's own ``compare_metadata``, told in facts.

Doctor's AR403 must agree with ``alembic check`` run through the same env.py: nothing check does
not report, and everything it does (issue 12). Normalising `SchemaSnapshot` until it matched
Alembic's semantics would be a chase that never ends: Alembic ignores primary keys (their order
too) and CHECK constraints, compares server defaults only when asked, types only when asked,
and indexes and unique constraints *by name* (an index renamed in the models is drift to it).
So which tables drift, and in what, is Alembic's answer; each difference is then told with the
snapshot facts that show it (the words doctor always used), or in Alembic's terms when no fact
differs (a renamed index, a comment). One exception, kept in `ModelDrift.artifacts`: a type
change the server cannot make (FLOAT(53) is stored as DOUBLE), which check reports forever and
fix could never clear. Read-only: a `MigrationContext` on the live connection.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import CompileError

from .schema import VERSION_TABLE, Fact, SchemaSnapshot, index_part, is_user_table


@dataclass(frozen=True)
class CompareOptions:
    """The ``context.configure`` options that decide what autogenerate compares, with
    Alembic's own defaults (``compare_type`` is on since Alembic 1.12). Filled from env.py
    when its options are known; the filters are env.py's callables, called as Alembic does."""

    compare_type: Any = True
    compare_server_default: Any = False
    include_object: Callable[..., bool] | None = field(default=None, compare=False)
    include_name: Callable[..., bool] | None = field(default=None, compare=False)
    version_table: str = VERSION_TABLE


def compare_options(offline: Mapping[str, Any] | None = None,
                    online: Mapping[str, Any] | None = None, *,
                    types_on: bool = False) -> CompareOptions:
    """The options `alembic check` runs with, from what env.py passed to ``configure()``:
    `online` (the replay through env.py: plain values, and whether a filter was passed) wins
    over `offline` (env.py run offline while reading the models: the real objects, filters
    included). `types_on`: env.py turns compare_type off in so many words, which AR109 reports
    and repairs by turning it on; the type drift is then reported as `alembic check` will see
    it after that repair (the two findings go together)."""
    offline, online = offline or {}, online or {}

    def value(key: str, default: Any) -> Any:
        plain = online.get(key)
        if isinstance(plain, bool):
            return plain
        return offline.get(key, default) if key in offline else default

    def hook(key: str) -> Callable[..., bool] | None:
        found = offline.get(key)
        if not callable(found) or online.get(key) is False:
            return None
        return _lenient(found)

    compare_type = value("compare_type", True)
    version_table = online.get("version_table") or offline.get("version_table")
    return CompareOptions(
        compare_type=True if types_on and compare_type is False else compare_type,
        compare_server_default=value("compare_server_default", False),
        include_object=hook("include_object"), include_name=hook("include_name"),
        version_table=version_table if isinstance(version_table, str) else VERSION_TABLE)


def _lenient(hook: Callable[..., Any]) -> Callable[..., bool]:
    """env.py's filter, a raise counting as "include" (as `excluded_tables` counts it)."""
    def asked(*args: Any) -> bool:
        try:
            return bool(hook(*args))
        except Exception:  # the project's code: anything may be raised
            return True
    return asked


@dataclass(frozen=True)
class TableDrift:
    """One table's differences: facts only the models have, facts only the database has."""

    table: str
    models_only: frozenset[Fact]
    database_only: frozenset[Fact]


@dataclass(frozen=True)
class ModelDrift:
    """Every table ``alembic check`` reports a difference for (the tables it hides excluded)."""

    tables: tuple[TableDrift, ...]
    #: what check reports and doctor does not: a type change the server cannot make, as it
    #: stores the model's type as the one it has (`stored_alike`); altering it would be a no-op
    #: that autogenerate writes again and again
    artifacts: tuple[str, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t.table for t in self.tables)


def alembic_diffs(conn: Connection, metadata: MetaData, options: CompareOptions = CompareOptions(),
                  hidden: Collection[str] = ()) -> list[Any]:
    """``compare_metadata``'s list, exactly as `alembic check` computes it with `options`;
    the `hidden` tables (and the tool's own) are filtered out as env.py's installed filter does."""
    user_filter = options.include_name

    def include_name(name: str | None, type_: str, parents: dict[str, Any]) -> bool:
        if type_ == "table" and name is not None and not is_user_table(name, hidden):
            return False
        return user_filter is None or bool(user_filter(name, type_, parents))

    # Alembic's INFO lines ("Detected added table ...") would repeat the findings, unasked.
    # `logging.disable` is process-wide: restored at once, and doctor runs one thing at a time.
    muted = logging.root.manager.disable
    logging.disable(max(muted, logging.INFO))
    try:
        context = MigrationContext.configure(conn, opts={
            "target_metadata": metadata, "compare_type": options.compare_type,
            "compare_server_default": options.compare_server_default,
            "include_object": options.include_object, "include_name": include_name,
            "version_table": options.version_table})
        with warnings.catch_warnings():  # reflection's notes (expression indexes, odd types)
            warnings.simplefilter("ignore")
            return list(compare_metadata(context, metadata))
    finally:
        logging.disable(muted)


def model_drift(conn: Connection, metadata: MetaData, models: SchemaSnapshot,
                live: SchemaSnapshot, options: CompareOptions = CompareOptions(),
                hidden: Collection[str] = ()) -> ModelDrift:
    """What `alembic check` reports, per table, told with the facts of `models` and `live`."""
    teller = _Teller(models, live, conn.dialect)
    for diff in alembic_diffs(conn, metadata, options, hidden):
        for step in diff if isinstance(diff, list) else [diff]:
            teller.tell(step)
    return ModelDrift(tuple(
        TableDrift(table, frozenset(sides[0]), frozenset(sides[1]))
        for table, sides in sorted(teller.tables.items())), tuple(teller.artifacts))


def stored_alike(model_type: str, live_type: str) -> bool:
    """Whether the server stores a column of the model's type as `live_type` itself: FLOAT(p)
    is FLOAT up to 24 bits and DOUBLE above (MySQL, MariaDB, PostgreSQL), so a `Float(53)`
    model reads back as DOUBLE and ``ALTER ... FLOAT(53)`` changes nothing. (Texts as the
    dialect compiles them.) Other spellings `normalize_type` merges are not assumed alike:
    a collation, say, is a change the server can make."""
    model, live = model_type.strip().upper(), live_type.strip().upper()
    head, _, rest = model.partition("(")
    if head != "FLOAT" or not rest[:-1].isdigit():
        return False
    return live == ("DOUBLE" if int(rest[:-1]) > 24 else "FLOAT")


def read_drift(conn: Connection, metadata: MetaData, models: SchemaSnapshot,
               live: SchemaSnapshot, hidden: Collection[str] = (),
               options: CompareOptions = CompareOptions()) -> ModelDrift | None:
    """`model_drift`, or None when Alembic's comparison itself fails on this schema (a type
    its reflection cannot read, say): AR403 then falls back to the snapshot facts."""
    try:
        return model_drift(conn, metadata, models, live, options, hidden)
    except Exception:  # reflection and the user's filters: anything may be raised
        return None


def words(table: str, text: str) -> Fact:
    """A difference no snapshot fact shows, in Alembic's terms (`describe` prints `text`)."""
    return ("words", table, text)


class _Teller:
    """Turns Alembic's diff tuples into the two sides of each table."""

    def __init__(self, models: SchemaSnapshot, live: SchemaSnapshot, dialect: Dialect) -> None:
        self.models, self.live, self.dialect = models, live, dialect
        self.tables: dict[str, tuple[set[Fact], set[Fact]]] = {}
        self.artifacts: list[str] = []

    def side(self, table: str, in_models: bool) -> set[Fact]:
        return self.tables.setdefault(table, (set(), set()))[0 if in_models else 1]

    def differing(self, table: str, in_models: bool, match: Callable[[Fact], bool]
                  ) -> set[Fact]:
        """The facts of `table` on one side only that `match`."""
        mine, theirs = (self.models, self.live) if in_models else (self.live, self.models)
        return {f for f in mine.facts - theirs.facts if f[1] == table and match(f)}

    def tell(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind in ("add_table", "remove_table"):
            table, added = step[1].name, kind == "add_table"
            self.side(table, added).update(
                f for f in (self.models if added else self.live).facts if f[1] == table)
        elif kind in ("add_column", "remove_column"):
            table, column, added = step[2], step[3].name, kind == "add_column"
            self._column(table, column, added, f"column {table}.{column}")
        elif kind.startswith("modify_"):
            self._modify(step)
        elif kind in ("add_index", "remove_index"):
            index, added = step[1], kind == "add_index"
            cols = tuple(index_part(e) for e in index.expressions)
            fact_kind = "unique" if index.unique else "index"
            self._or_words(index.table.name, added, lambda f: f[0] == fact_kind and f[2] == cols,
                           f"{fact_kind + ' ' if index.unique else ''}index {index.name} on "
                           f"{index.table.name}({', '.join(cols)})")
        elif kind in ("add_constraint", "remove_constraint"):
            constraint, added = step[1], kind == "add_constraint"
            cols = tuple(c.name for c in getattr(constraint, "columns", ()))
            name = f" {constraint.name}" if isinstance(constraint.name, str) else ""
            self._or_words(constraint.table.name, added,
                           lambda f: f[0] == "unique" and f[2] == cols,
                           f"unique constraint{name} on {constraint.table.name}"
                           f"({', '.join(cols)})")
        elif kind in ("add_fk", "remove_fk"):
            fk, added = step[1], kind == "add_fk"
            cols = tuple(c.name for c in fk.columns)
            self._or_words(fk.parent.name, added, lambda f: f[0] == "fk" and f[2] == cols,
                           f"foreign key {fk.parent.name}({', '.join(cols)}) -> "
                           f"{fk.referred_table.name}")
        elif kind in ("add_table_comment", "remove_table_comment"):
            table, added = step[1].name, kind == "add_table_comment"
            self.side(table, added).add(words(table, f"comment on table {table}" + (
                f": {step[1].comment!r}" if added else "")))
        else:  # a kind this version does not know: still drift, in Alembic's own repr
            table = _table_of(step)
            if table is not None:
                self.side(table, True).add(words(table, f"{kind} {step[1:]!r}"))

    def _column(self, table: str, column: str, in_models: bool, fallback: str) -> None:
        self._or_words(table, in_models, lambda f: f[0] == "column" and f[2] == column, fallback)

    def _or_words(self, table: str, in_models: bool, match: Callable[[Fact], bool],
                  text: str) -> None:
        self.side(table, in_models).update(
            self.differing(table, in_models, match) or {words(table, text)})

    def _modify(self, step: tuple[Any, ...]) -> None:
        kind, table, column, old, new = step[0], step[2], step[3], step[5], step[6]
        what = kind.removeprefix("modify_")
        if what == "type" and stored_alike(self._value(what, new), self._value(what, old)):
            self.artifacts.append(f"column {table}.{column} {self._value(what, new)} is "
                                  f"stored as {self._value(what, old)}")
            return
        for in_models, value in ((True, new), (False, old)):
            self._column(table, column, in_models,
                         f"column {table}.{column} {self._value(what, value)}")

    def _value(self, what: str, value: Any) -> str:
        """One side of a modify_* step as DDL would say it: ``NOT NULL``, ``VARCHAR(5)``,
        ``DEFAULT 0.00``, ``COMMENT 'x'`` (``no DEFAULT``, ``no COMMENT``)."""
        if what == "nullable":
            return "NULL" if value else "NOT NULL"
        if what == "type":
            try:
                return str(value.compile(dialect=self.dialect))
            except (CompileError, AttributeError):
                return repr(value)
        label = what.upper()
        if what == "default":
            arg = getattr(value, "arg", None) if value else None
            if isinstance(arg, str):  # a literal value, as DDL quotes it
                return f"{label} '{arg}'"
            value = getattr(arg, "text", arg)  # SQL text (reflected, or sa.text in a model)
        if value is None or value is False:
            return f"no {label}"
        return f"{label} {value!r}" if what == "comment" else f"{label} {value}"


def _table_of(step: Iterable[Any]) -> str | None:
    for part in step:
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None and isinstance(getattr(table, "name", None), str):
            return str(table.name)
        if isinstance(name, str) and hasattr(part, "columns"):
            return name
    return None
