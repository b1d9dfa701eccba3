"""Benchmark: the rewrite's batched backfill vs one set-based UPDATE vs a row-by-row loop.

Requirement (issue 6): backfilling distinct values into a new column of 1,000,000 rows on
MariaDB costs at most 1.3x one set-based ``UPDATE`` of the same table measured in the same run,
and is at least 4x faster than the row-by-row loop users write by hand.

Usage::

    python benchmarks/bench_backfill.py [--rows 1000000] [--runs 3] [--batch 10000]
        [--loop-rows N] [--buffer-pool 256M]

A throwaway MariaDB server (own data dir, free loopback port: `alembic_repair.testing.mariadb`)
gets one table ``article (id INT PRIMARY KEY, title VARCHAR(200))`` with ``--rows`` rows (from
MariaDB's sequence engine) and a nullable ``article_id VARCHAR(36)``. Each measurement starts
from an all-NULL column (dropped and added again, instant in InnoDB) and runs in one
transaction, committed:

- A ours: the code `rewrite.unique_column` writes into the revision, rendered from
  ``BackfillOp(strategy="uuid")`` and executed with Alembic's ``op`` on the connection
  (keyset batches of ``--batch`` primary keys, one ``UPDATE ... SET article_id = uuid()`` each);
- B one ``UPDATE article SET article_id = UUID() WHERE article_id IS NULL``;
- C the hand-written loop: read the ids, then one ``UPDATE ... WHERE id = :id`` per row with
  a Python ``uuid4()`` (over ``--loop-rows`` rows, default all; fewer rows are timed and the
  time scaled linearly to ``--rows``, and the output says so).

Each result is checked: every row has a value, all distinct. The order of A, B, C rotates from
run to run. Budgets: median(A) / median(B) <= 1.3 and median(C) / median(A) >= 4. Exit code 0
when every run behaved, 1 otherwise; being over a budget is reported, not an error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import libcst as cst
import sqlalchemy as sa
from _processes import load, machine_facts
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alembic_repair.rewrite.ops import BackfillOp  # noqa: E402
from alembic_repair.rewrite.transform import render_statements  # noqa: E402


class BenchError(Exception):
    pass


def backfill_code(batch: int) -> str:
    """The statements the rewrite puts into a revision, as source text."""
    statements, _ = render_statements([BackfillOp("article", "article_id", "id", "uuid",
                                                  batch_rows=batch)])
    return cst.Module(body=statements).code


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE article DROP COLUMN article_id")
        conn.exec_driver_sql("ALTER TABLE article ADD COLUMN article_id VARCHAR(36) NULL")


def check(engine: Engine, rows: int, what: str) -> None:
    with engine.connect() as conn:
        filled, distinct = conn.exec_driver_sql(
            "SELECT COUNT(article_id), COUNT(DISTINCT article_id) FROM article").one()
    if filled != rows or distinct != rows:
        raise BenchError(f"{what}: {filled} rows filled, {distinct} distinct, of {rows}")


def ours(code: str) -> Callable[[Connection], None]:
    compiled = compile(code, "<backfill>", "exec")

    def run(conn: Connection) -> None:
        op = Operations(MigrationContext.configure(conn))
        exec(compiled, {"op": op, "sa": sa})  # noqa: S102  (our own rendered code)
    return run


def set_based(conn: Connection) -> None:
    conn.exec_driver_sql("UPDATE article SET article_id = UUID() WHERE article_id IS NULL")


def row_loop(limit: int | None) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        query = "SELECT id FROM article ORDER BY id" + (f" LIMIT {limit}" if limit else "")
        ids = [row[0] for row in conn.exec_driver_sql(query)]
        update = sa.text("UPDATE article SET article_id = :value WHERE id = :id")
        for key in ids:
            conn.execute(update, {"value": str(uuid.uuid4()), "id": key})
    return run


def timed(engine: Engine, work: Callable[[Connection], None]) -> float:
    reset(engine)
    start = time.perf_counter()
    with engine.begin() as conn:
        work(conn)
    return time.perf_counter() - start


def fill(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE article (id INT PRIMARY KEY, title VARCHAR(200) "
                             "NOT NULL, article_id VARCHAR(36) NULL)")
        done = 0
        while done < rows:  # the sequence engine, in chunks (one statement would be huge)
            upto = min(rows, done + 200_000)
            conn.exec_driver_sql(
                f"INSERT INTO article (id, title) SELECT seq, CONCAT('title ', seq) "
                f"FROM seq_{done + 1}_to_{upto}")
            done = upto


def bench(args: argparse.Namespace) -> int:
    from alembic_repair.testing.mariadb import MissingServer, throwaway_server

    code = backfill_code(args.batch)
    loop_rows = args.loop_rows or args.rows
    scale = args.rows / loop_rows
    try:
        with throwaway_server(buffer_pool=args.buffer_pool) as server:
            url = server.create_database("bench_backfill")
            engine = sa.create_engine(url, poolclass=NullPool)
            try:
                started = time.perf_counter()
                fill(engine, args.rows)
                print(f"  filled {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
                kinds: dict[str, Callable[[Connection], None]] = {
                    "A ours": ours(code), "B one UPDATE": set_based,
                    "C row loop": row_loop(None if loop_rows == args.rows else loop_rows)}
                times: dict[str, list[float]] = {k: [] for k in kinds}
                names = list(kinds)
                for run in range(args.runs):
                    order = names[run % 3:] + names[:run % 3]
                    for name in order:
                        seconds = timed(engine, kinds[name])
                        if name.startswith("C"):
                            if loop_rows == args.rows:
                                check(engine, args.rows, name)
                            seconds *= scale
                        else:
                            check(engine, args.rows, name)
                        times[name].append(seconds)
                        print(f"  run {run + 1} {name:14s} {seconds:8.2f} s   ({load()})")
            finally:
                engine.dispose()
    except MissingServer as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        return 1
    except BenchError as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        return 1
    a, b, c = (statistics.median(times[n]) for n in names)
    print(f"\nmedians over {args.runs} runs, {args.rows:,} rows, batches of {args.batch:,}:")
    print(f"  A ours (batched backfill)  {a:8.2f} s")
    print(f"  B one set-based UPDATE     {b:8.2f} s")
    scaled = "" if loop_rows == args.rows else f" (timed on {loop_rows:,} rows, scaled)"
    print(f"  C row-by-row loop          {c:8.2f} s{scaled}")
    print(f"  A / B = {a / b:.2f}  (budget <= 1.3: {'ok' if a / b <= 1.3 else 'OVER'})")
    print(f"  C / A = {c / a:.1f}  (budget >= 4: {'ok' if c / a >= 4 else 'UNDER'})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per batch (10,000)")
    parser.add_argument("--loop-rows", type=int, default=0,
                        help="rows the row-by-row loop updates (default: all), scaled")
    parser.add_argument("--buffer-pool", default="256M", help="InnoDB buffer pool (256M)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.rows < 1 or args.batch < 1 or args.loop_rows < 0:
        parser.error("--rows, --runs and --batch must be positive")
    if args.loop_rows > args.rows:
        parser.error("--loop-rows cannot exceed --rows")
    print("backfill of a new column: batched (ours) vs one UPDATE vs a row-by-row loop")
    print(f"command: {Path(sys.executable)} {' '.join(sys.argv)}")
    for fact in machine_facts("alembic_repair from " + str(REPO)):
        print(f"  {fact}")
    status = bench(args)
    print(f"\nat end: {load()}")
    return status


if __name__ == "__main__":
    sys.exit(main())
