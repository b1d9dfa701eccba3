"""Does every row survive the upgrade? Insert at the released revision, upgrade, compare.

For each hypothesis example: a fresh scratch database from the caller's ``url_factory`` is
upgraded to the released revision through the project's own env.py (as ``alembic upgrade``
runs it: env.py's options, ``context.get_bind()`` and the application's modules imported under
the scratch ``DATABASE_URL``), filled with rows drawn from its reflected tables (`sample_rows`),
snapshot, upgraded to head and snapshot again; then, when every pending revision has a
downgrade, downgraded back to the released revision and compared with the first snapshot.

A snapshot is, per table, the row count and per column the multiset of the values' digests
(order-independent), each value normalised first so that a type change that keeps the value
(INT to BIGINT, VARCHAR to TEXT, a SQLite datetime read back as text) compares equal. A column
that disappears is no loss; a table that disappears loses its rows unless it went to the trash
(``_ar_trash_*``, `data.trash`) or was renamed (a new table holding all its values).

The migrations themselves (through env.py, guarded, forked where possible) are `through_env`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import MetaData, select
from sqlalchemy.engine import Connection

from .. import errors
from ..engine import migrations
from ..engine.project import Project
from ..engine.state.schema import TRASH_PREFIX, is_user_table
from ..engine.state.scripts import read_script
from . import sample_rows
from .through_env import Irreversible, migrate, scratch_engine

__all__ = ["BuildFailed", "Loss", "check_survival", "hypothesis_home"]

_TRASH_NAME = re.compile(rf"^{TRASH_PREFIX}\d{{14}}_(.+)$")
_DATETIME_TEXT = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?$")
_NUMBER_TEXT = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class Loss:
    """Rows or values of one table that did not survive (``downgrade``: on the way back)."""

    table: str
    revision_from: str
    revision_to: str
    before: int
    after: int
    what: str
    downgrade: bool = False

    def line(self) -> str:
        back = " and downgrading back" if self.downgrade else ""
        subject = f"table {self.table}" if self.table else "the database"
        return (f"{subject}: {_rows(self.before)} at {self.revision_from} (released), "
                f"{self.after} after upgrading to {self.revision_to} (head){back}: {self.what}")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


@dataclass(frozen=True)
class TableData:
    """Row count, and per column the multiset of normalised values' digests."""

    count: int
    columns: dict[str, Counter[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    tables: dict[str, TableData]
    trash: dict[str, TableData]  # original table name -> its soft-dropped copy


# -- values and snapshots ----------------------------------------------------------------------


def _number(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def normalise(value: Any) -> str:
    """One text per value, equal across the type round trips a migration may make."""
    if value is None:
        return "\0null"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        try:
            return _number(Decimal(repr(value)) if isinstance(value, float) else value)
        except InvalidOperation:
            return repr(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(" ", "seconds" if not value.microsecond
                                                    else "microseconds")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):  # MySQL's TIME, read raw
        seconds = int(value.total_seconds())
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\0x" + bytes(value).hex()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str):
        if match := _DATETIME_TEXT.match(value):
            fraction = (match.group(3) or "").rstrip("0").rstrip(".")
            return f"{match.group(1)} {match.group(2)}{fraction}"
        if _NUMBER_TEXT.match(value):
            return _number(Decimal(value))
        return value
    return repr(value)


def _digest(value: Any) -> str:
    return hashlib.sha1(normalise(value).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _table_data(conn: Connection, table: Any) -> TableData:
    columns: dict[str, Counter[str]] = {c.name: Counter() for c in table.columns}
    count = 0
    for row in conn.execute(select(*table.columns)).mappings():
        count += 1
        for name in columns:
            columns[name][_digest(row[name])] += 1
    return TableData(count, columns)


def snapshot(conn: Connection) -> Snapshot:
    """Every application table, and every trashed table under its original name."""
    metadata = MetaData()
    metadata.reflect(conn, only=lambda name, _m: is_user_table(name) or name.startswith(
        TRASH_PREFIX))
    originals: dict[str, str] = {}
    index = metadata.tables.get(f"{TRASH_PREFIX}index")
    if index is not None and {"trash_name", "original"} <= set(index.c.keys()):
        originals = {str(r[0]): str(r[1]) for r in conn.execute(
            select(index.c.trash_name, index.c.original))}
    tables: dict[str, TableData] = {}
    trash: dict[str, TableData] = {}
    for name, table in metadata.tables.items():
        if is_user_table(name):
            tables[name] = _table_data(conn, table)
        elif table is not index:
            match = _TRASH_NAME.match(name)
            original = originals.get(name) or (match.group(1) if match else None)
            if original:
                trash[original] = _table_data(conn, table)
    return Snapshot(tables, trash)


def _holds(old: TableData, new: TableData) -> bool:
    """Whether `new` has every value of every column `old` shares with it (at least one)."""
    shared = set(old.columns) & set(new.columns)
    return bool(shared) and new.count >= old.count and all(
        not old.columns[c] - new.columns[c] for c in shared)


def compare(before: Snapshot, after: Snapshot, *, released: str, head: str,
            downgrade: bool = False) -> list[Loss]:
    """The losses from `before` to `after`: rows gone, values changed in kept columns."""
    losses: list[Loss] = []

    def lost(table: str, old: int, new: int, what: str) -> None:
        losses.append(Loss(table, released, head, old, new, what, downgrade))

    for table, old in sorted(before.tables.items()):
        if old.count == 0:
            continue
        new = after.tables.get(table) or after.trash.get(table)
        if new is None:
            renamed = [t for t, data in after.tables.items()
                       if t not in before.tables and _holds(old, data)]
            if len(renamed) != 1:
                lost(table, old.count, 0, f"table dropped, {_rows(old.count)} lost")
                continue
            new = after.tables[renamed[0]]
        if new.count < old.count:
            lost(table, old.count, new.count, f"{_rows(old.count - new.count)} lost")
            continue
        for column, values in old.columns.items():
            if column in new.columns and (gone := sum((values - new.columns[column]).values())):
                plural = "values" if gone != 1 else "value"
                lost(table, old.count, new.count, f"column {column}: {gone} {plural} changed")
    return losses


# -- the check -------------------------------------------------------------------------------


class BuildFailed(errors.MigrationFailed):
    """The upgrade fails on an empty database too: the history does not build (not a loss)."""


def _upgrades_empty(project: Project, url_factory: Callable[[], AbstractContextManager[str]],
                    released_id: str, head: str, seen: dict[str, bool]) -> bool:
    """Whether released -> head upgrades a database without rows (decides whom to blame)."""
    if "empty" not in seen:
        with url_factory() as url:
            try:
                migrate(project, url, released_id)
                migrate(project, url, head)
            except errors.AlembicRepairError:
                seen["empty"] = False
            else:
                seen["empty"] = True
    return seen["empty"]


@contextmanager
def hypothesis_home() -> Iterator[None]:
    """Hypothesis's storage (its ``constants/`` cache, even with ``database=None``) in a
    temporary folder, not ``.hypothesis/`` in the user's project; the previous home after."""
    import hypothesis.configuration as configuration

    previous = getattr(configuration, "__hypothesis_home_directory", None)
    with tempfile.TemporaryDirectory(prefix="alembic_repair_hypothesis_") as home:
        configuration.set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            configuration.set_hypothesis_home_dir(previous)


class _Lost(Exception):  # noqa: N818  (the failure hypothesis shrinks)
    def __init__(self, losses: tuple[Loss, ...]) -> None:
        super().__init__("; ".join(loss.line() for loss in losses))
        self.losses = losses


class _Spent(BaseException):  # noqa: N818  (not an Exception: hypothesis stops at once)
    """The budget of scratch databases is spent: stop shrinking (hypothesis would go on
    trying examples it may not run, for seconds)."""


def _revisions(project: Project, released: str, head: str) -> tuple[str, str, bool]:
    """(released id, head id, whether every pending revision has a downgrade)."""
    directory = migrations.scripts(project)
    found = directory.get_revision(released)
    released_id = found.revision if found is not None else released
    heads = [h for h in directory.get_revisions(head) if h is not None]
    head_id = heads[0].revision if len(heads) == 1 else head
    pending = [s for s in directory.iterate_revisions(head, released)
               if s is not None and s.revision != released_id]
    downgrades = all(s.path and read_script(Path(s.path)).downgrade == "code" for s in pending)
    return released_id, head_id, downgrades


def check_survival(project: Project, url_factory: Callable[[], AbstractContextManager[str]], *,
                   released: str, head: str = "heads", max_examples: int = 5,
                   seed: int | None = None, max_rows: int = 4,
                   shrink_runs: int = 10) -> tuple[Loss, ...]:
    """The losses of the smallest failing example (empty: every row survived every example).

    Each example costs a fresh database and two or three migrations, so shrinking stops
    after `shrink_runs` more databases (the smallest failure found by then is reported;
    0: the first failing example, unshrunk)."""
    if released == "base":
        return ()
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as seeded
    from hypothesis import strategies as st

    released_id, head_id, downgrades = _revisions(project, released, head)
    seen: dict[str, bool] = {}  # whether the upgrade works on an empty database (asked once)
    memo: dict[str, tuple[Loss, ...]] = {}
    strategy: list[Any] = []  # the datasets of the released schema, built once
    fatal: list[BaseException] = []  # the released revision cannot be built: no example can
    budget = [max_examples + shrink_runs]
    failing: list[tuple[int, tuple[Loss, ...]]] = []  # (rows inserted, their losses)

    def example(data: Any, dataset: Any, url: str) -> tuple[Any, tuple[Loss, ...]]:
        try:
            migrate(project, url, released_id)
        except errors.AlembicRepairError as err:
            fatal.append(err)
            raise
        engine = scratch_engine(url)
        try:
            with engine.begin() as conn:
                metadata = sample_rows.reflect(conn)
                if not strategy:
                    strategy.append(sample_rows.datasets(
                        metadata, dialect=conn.dialect.name, max_rows=max_rows, min_rows=1))
                    dataset = data.draw(strategy[0])
                sample_rows.insert(conn, metadata, dataset)
            with engine.connect() as conn:
                before = snapshot(conn)
            engine.dispose()
            try:
                migrate(project, url, head)
            except errors.RefusedUnsafe as err:
                fatal.append(err)
                raise
            except errors.AlembicRepairError as err:
                if not _upgrades_empty(project, url_factory, released_id, head, seen):
                    broken = BuildFailed(f"the upgrade to {head_id} fails even on an empty "
                                         f"database (whatever the rows): {err}")
                    fatal.append(broken)
                    raise broken from None
                total = sum(t.count for t in before.tables.values())
                return dataset, (Loss("", released_id, head_id, total, 0,
                                      f"the upgrade fails with these rows: {err}"),)
            with engine.connect() as conn:
                losses = compare(before, snapshot(conn), released=released_id, head=head_id)
            engine.dispose()
            if not losses and downgrades:
                try:
                    migrate(project, url, released_id, down=True)
                except Irreversible:  # a downgrade() that says it cannot undo: nothing to compare
                    return dataset, ()
                with engine.connect() as conn:
                    losses = compare(before, snapshot(conn), released=released_id,
                                     head=head_id, downgrade=True)
            return dataset, tuple(losses)
        finally:
            engine.dispose()

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + [Phase.shrink] * (shrink_runs > 0)

    @settings(max_examples=max_examples, deadline=None, database=None,
              verbosity=Verbosity.quiet, phases=phases,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(st.data())
    def run(data: Any) -> None:
        if fatal:
            raise fatal[0]
        dataset = data.draw(strategy[0]) if strategy else None
        key = repr(dataset)
        if dataset is not None and key in memo:
            losses = memo[key]
        elif dataset is not None and budget[0] <= 0:
            raise _Spent  # out of databases: the smallest failure seen is the answer
        else:
            budget[0] -= 1
            with url_factory() as url:
                dataset, losses = example(data, dataset, url)
            memo[repr(dataset)] = losses
            if losses:
                failing.append((sum(len(rows) for _table, rows in dataset.tables), losses))
        if losses:
            raise _Lost(losses)

    test = seeded(seed)(run) if seed is not None else run
    try:
        with hypothesis_home():
            test()
    except _Spent:
        return min(failing, key=lambda found: found[0])[1] if failing else ()
    except Exception as err:  # _Lost, or a group of failures hypothesis told apart
        if fatal:
            raise fatal[0] from None
        found = _first_lost(err)
        if found is None:
            raise
        return found.losses
    return ()


def _first_lost(err: BaseException) -> _Lost | None:
    if isinstance(err, _Lost):
        return err
    for inner in getattr(err, "exceptions", ()):
        if (found := _first_lost(inner)) is not None:
            return found
    return None
