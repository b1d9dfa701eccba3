"""Benchmark: ``alembic-repair fix --yes`` completing a half-applied revision on a big MariaDB
table, beside the same work done by hand on the same table.

Two scenarios (``--scenario``):

- ``unique`` (default; issue 13): revision B adds ``customer.public_id`` (``String(36)``,
  ``unique=True``, ``nullable=False``, ``default=uuid.uuid4()``); ``alembic upgrade head``
  fails after MariaDB committed the column (every row ``''``) on ``Duplicate entry ''``. fix
  rewrites B into three steps, gives every row a UUID (`FillCommitted`: batched, set-based)
  and completes B (the unique constraint). Reference, by hand on the twin database: one
  ``UPDATE customer SET public_id = UUID()`` plus one ``ALTER TABLE customer ADD UNIQUE``.
  Requirement: fix end to end costs at most **3x** the reference.
- ``index`` (issue 5): described below; requirement: ``fix`` completes the missing operations
  without copying the table more than once; its time is recorded in docs/performance.md
  beside a plain ``ALTER TABLE`` of the same table.

Usage::

    python benchmarks/bench_fix.py [--scenario unique|index] [--rows 1000000] [--runs 3]

A throwaway MariaDB server (own data dir, free loopback port, 512 MB buffer pool) is started
in a temp dir. Each run builds two identical databases, each from its own project folder
(models, pyproject.toml, alembic.ini / env.py / script.py.mako from
``alembic_repair.engine.scaffold``):

- revision ``a1a1a1a1a1a1`` creates ``customer`` (id, name, email, created_at, balance,
  notes); ``alembic upgrade`` to it, then ``--rows`` rows are inserted (server-side, from the
  sequence engine);
- revision ``b2b2b2b2b2b2`` adds ``customer.phone`` and ``customer.score``, then creates
  ``ix_customer_email`` on a misspelt column (``emial``); ``alembic upgrade head`` fails on the
  index, after MariaDB committed the two columns; the revision file is then corrected (as in
  the scenario ``fm13_half_applied_then_corrected``): the database is half-applied at B.

Then, timed:

- **ALTER** (reference, database ``ref<N>``): ``ALTER TABLE customer ADD INDEX
  ix_customer_email (email)`` over one PyMySQL connection: what the missing operation costs
  by hand (no process start, no backup, no check);
- **fix** (database ``fix<N>``): ``python -m alembic_repair fix --yes`` as a fresh process from
  the project folder with ``DATABASE_URL`` set, timed from outside. The process is started as
  ``python -c <wrapper>``: the wrapper times a few functions (the backup, the row sums, the
  completing step and each Alembic operation it runs, the row check, the diagnoses), snapshots
  the server's counters around the backup, the completing step and the row check, then runs
  the package's ``__main__`` with ``argv = fix --yes``, exactly as ``-m`` would.

"Copies the table" is checked three ways, around each part: the InnoDB table id of
``customer`` (a rebuild, in place or by copy, makes a new table), the inode of its ``.ibd``
file, and the server's ``Handler_write`` counter (a copying ALTER writes every row through
the handler; MariaDB 10.11 no longer has ``Innodb_rows_inserted``); ``Handler_read_rnd_next``
shows the rows read by full scans. The completing step must leave all three as
they were (an in-place index build). The backup is a logical dump (rows read, written to a
file outside the server); its cost is shown on its own line. A control, once, on the last
reference table: ``ALTER TABLE ... FORCE`` (an in-place rebuild: new table id and file, no
handler writes) and ``ALTER TABLE ... ADD INDEX ..., ALGORITHM=COPY`` (a copy: handler writes
= the rows), to show what the checks see when a table IS copied, and what a copy costs.

After each fix: exit 0, alembic_version says b2b2b2b2b2b2, the index exists, and the rows are
all there (count). In the ``unique`` scenario B is the public_id revision above (same A, same
rows), the reference is the UPDATE plus the ADD UNIQUE, the wrapper also times fix's rewrite
step and fill step and each DDL statement the completing step runs, and after fix every row
must hold a distinct 36-character value (none ``''``) under ``uq_customer_public_id``.

Exit code: 0 when every run behaved, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _processes
from _processes import load, machine_facts

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 3600.0
TABLE = "customer"
INDEX = "ix_customer_email"
REV_A, REV_B = "a1a1a1a1a1a1", "b2b2b2b2b2b2"
FILE_A, FILE_B = f"{REV_A}_create_customer.py", f"{REV_B}_phone_score_email_index.py"

MODELS = '''\
"""The application's models."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    balance: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    notes: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(30))
    score: Mapped[int | None]
'''

UPGRADE_A = '''
    op.create_table(
        "customer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("balance", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
'''
UPGRADE_B = '''
    op.add_column("customer", sa.Column("phone", sa.String(length=30), nullable=True))
    op.add_column("customer", sa.Column("score", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_customer_email"), "customer", ["emial"], unique=False)
'''
DOWNGRADE_B = '''
    op.drop_index(op.f("ix_customer_email"), table_name="customer")
    op.drop_column("customer", "score")
    op.drop_column("customer", "phone")
'''

# -- scenario "unique" (issue 13): B adds a unique NOT NULL public_id and fails half-way
UNIQUE = "uq_customer_public_id"
FILE_B_UNIQUE = f"{REV_B}_customer_public_id.py"
MODELS_UNIQUE = MODELS.replace('"""The application\'s models."""\n', '"""The application\'s '
                               'models."""\n\nimport uuid\n').replace(
    "    phone: Mapped[str | None] = mapped_column(String(30))\n"
    "    score: Mapped[int | None]\n",
    "    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=uuid.uuid4)\n"
    ).replace("mapped_column(String(200), index=True)", "mapped_column(String(200))")
UPGRADE_B_UNIQUE = '''
    op.add_column("customer", sa.Column("public_id", sa.String(length=36), unique=True,
                                        nullable=False, default=uuid.uuid4()))
'''
DOWNGRADE_B_UNIQUE = 'op.drop_column("customer", "public_id")'
FILL = ("INSERT INTO customer (id, name, email, created_at, balance, notes) SELECT seq, "
        "CONCAT('customer ', seq), CONCAT('c', CRC32(seq), '.', seq, '@example.org'), "
        "TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND, (seq % 100000) / 100, "
        "IF(seq % 4 = 0, NULL, CONCAT('notes on customer ', seq, ': ', MD5(seq))) "
        "FROM seq_1_to_{rows}")

# The measured process: times parts of fix, snapshots counters, then runs `-m alembic_repair`.
WRAPPER = r'''
import json, os, runpy, sys, time
import pymysql

REPORT = os.environ["BENCH_FIX_REPORT"]
HOST, PORT, DB, TABLE = os.environ["BENCH_FIX_SERVER"].split(",")
IBD = os.path.join(os.environ["BENCH_FIX_DATADIR"], DB, TABLE + ".ibd")
times = {}      # label -> [seconds, calls]
snapshots = {}  # label -> [before, after] of the first call
ops = []        # (operation, seconds) of each Alembic operation invoked by the completing step
ddl = []        # (construct, seconds) of each DDL statement the completing step executed
started_at = time.perf_counter()

def counters():
    conn = pymysql.connect(host=HOST, port=int(PORT), user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_write', "
                        "'Handler_read_rnd_next')")
            found = {name: int(value) for name, value in cur.fetchall()}
            cur.execute("SELECT TABLE_ID FROM information_schema.INNODB_SYS_TABLES "
                        "WHERE NAME = %s", (DB + "/" + TABLE,))
            found["table_id"] = cur.fetchone()[0]
    finally:
        conn.close()
    found["ibd_inode"] = os.stat(IBD).st_ino
    return found

active = []     # the labels of the timed calls in progress (a nested call is "outer/inner")

def timed(owner, name, label, snapshot=False):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        active.append(label)
        key = "/".join(active)
        before = counters() if snapshot and key not in snapshots else None
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent = time.perf_counter() - t0
            active.pop()
            entry = times.setdefault(key, [0.0, 0])
            entry[0] += spent
            entry[1] += 1
            if before is not None:
                snapshots[key] = [before, counters()]
    setattr(owner, name, wrapper)

from alembic.operations import Operations
from alembic_repair import api
from alembic_repair.repair import fix, runner, steps
from alembic_repair.repair.steps import schema as schema_steps

timed(api, "fix", "api.fix")
timed(runner, "execute", "apply_plan")  # the runner: backup, steps, row check
timed(runner.backups, "backup_locked", "backup", snapshot=True)
timed(runner, "row_sums", "row sums")
timed(runner, "_check_rows", "row check", snapshot=True)
timed(fix, "_diagnose", "diagnose")
timed(steps.CompleteRevision, "apply", "completing step", snapshot=True)
timed(steps.FillCommitted, "apply", "fill step", snapshot=True)
timed(steps.RewritePending, "apply", "rewrite step")
timed(schema_steps, "write_version_rows", "stamp")  # the module the completing step calls

invoke = Operations.invoke
def timed_invoke(self, operation):
    if "completing step" not in active[-1:]:
        return invoke(self, operation)  # not the completing step's (the replay's, ...)
    t0 = time.perf_counter()
    try:
        return invoke(self, operation)
    finally:
        ops.append((type(operation).__name__, time.perf_counter() - t0))
Operations.invoke = timed_invoke

from alembic.ddl.impl import DefaultImpl
execute_ddl = DefaultImpl._exec
def timed_exec(self, construct, *args, **kwargs):
    if "completing step" not in active[-1:]:
        return execute_ddl(self, construct, *args, **kwargs)
    t0 = time.perf_counter()
    try:
        return execute_ddl(self, construct, *args, **kwargs)
    finally:
        ddl.append((type(construct).__name__, time.perf_counter() - t0))
DefaultImpl._exec = timed_exec

code = 0
sys.argv = ["alembic_repair", "fix", "--yes"]
try:
    runpy.run_module("alembic_repair", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    with open(REPORT, "w") as out:
        json.dump({"in_process": time.perf_counter() - started_at, "times": times,
                   "snapshots": snapshots, "ops": ops, "ddl": ddl}, out)
sys.exit(code)
'''


class BenchError(Exception):
    """A run did not behave as required."""


class Server(_processes.Server):

    def counters(self, database: str, datadir: str) -> dict[str, int]:
        found = {name: int(value) for name, value in self.sql(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_write', "
            "'Handler_read_rnd_next')")}
        found["table_id"] = int(self.sql(
            "SELECT TABLE_ID FROM information_schema.INNODB_SYS_TABLES WHERE NAME = "
            f"'{database}/{TABLE}'")[0][0])
        found["ibd_inode"] = os.stat(Path(datadir) / database / f"{TABLE}.ibd").st_ino
        return found


def write_project(root: Path, url: str, models: str = MODELS) -> None:
    from alembic_repair.testing import scenarios

    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("", encoding="utf-8")
    (root / "app" / "models.py").write_text(models, encoding="utf-8")
    (root / "pyproject.toml").write_text('[tool.alembic_repair]\nmodels = "app.models:Base"\n',
                                         encoding="utf-8")
    scenarios.write_scaffold(root, url)
    scenarios.write_revisions(root, {FILE_A: scenarios.revision_py(
        REV_A, None, "create customer", UPGRADE_A, 'op.drop_table("customer")',
        date="2024-01-01 10:00:00.000000")})


def build_half_applied(server: Server, root: Path, database: str, rows: int) -> float:
    """A database at A with `rows` rows, then B run and failed after its two columns, then
    B's file corrected. Returns the seconds spent inserting the rows."""
    from sqlalchemy.exc import DBAPIError

    from alembic_repair.testing import scenarios

    server.sql(f"DROP DATABASE IF EXISTS `{database}`")
    server.sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = server.url(database)
    write_project(root, url)
    scenarios.upgrade(root, url, REV_A)
    started = time.perf_counter()
    server.sql(FILL.format(rows=rows), database)
    filled = time.perf_counter() - started
    scenarios.write_revisions(root, {FILE_B: scenarios.revision_py(
        REV_B, REV_A, "customer phone and score, index on email", UPGRADE_B, DOWNGRADE_B,
        date="2024-02-01 10:00:00.000000")})
    try:
        scenarios.upgrade(root, url)
    except DBAPIError as err:
        if "emial" not in str(err):
            raise
    else:
        raise BenchError(f"{REV_B} was expected to fail on its index")
    path = root / scenarios.VERSIONS / FILE_B
    path.write_text(path.read_text(encoding="utf-8").replace('["emial"]', '["email"]'),
                    encoding="utf-8")
    columns = {r[0] for r in server.sql(f"SHOW COLUMNS FROM {TABLE}", database)}
    version = server.sql("SELECT version_num FROM alembic_version", database)
    if not {"phone", "score"} <= columns or version != [(REV_A,)]:
        raise BenchError(f"{database} is not half-applied: columns {sorted(columns)}, "
                         f"alembic_version {version}")
    return filled


def build_unique(server: Server, root: Path, database: str, rows: int) -> float:
    """A database at A with `rows` rows, then B (the unique public_id) run and failed after
    MariaDB committed its column. Returns the seconds spent inserting the rows."""
    from sqlalchemy.exc import DBAPIError

    from alembic_repair.testing import scenarios

    server.sql(f"DROP DATABASE IF EXISTS `{database}`")
    server.sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = server.url(database)
    write_project(root, url, MODELS_UNIQUE)
    scenarios.upgrade(root, url, REV_A)
    started = time.perf_counter()
    server.sql(FILL.format(rows=rows), database)
    filled = time.perf_counter() - started
    scenarios.write_revisions(root, {FILE_B_UNIQUE: scenarios.revision_py(
        REV_B, REV_A, "customer public id", UPGRADE_B_UNIQUE, DOWNGRADE_B_UNIQUE,
        imports="import uuid", date="2024-02-01 10:00:00.000000")})
    try:
        scenarios.upgrade(root, url)
    except DBAPIError as err:
        if "Duplicate entry" not in str(err):
            raise
    else:
        raise BenchError(f"{REV_B} was expected to fail on its unique constraint")
    columns = {r[0] for r in server.sql(f"SHOW COLUMNS FROM {TABLE}", database)}
    version = server.sql("SELECT version_num FROM alembic_version", database)
    if "public_id" not in columns or version != [(REV_A,)]:
        raise BenchError(f"{database} is not half-applied: columns {sorted(columns)}, "
                         f"alembic_version {version}")
    return filled


def run_fix(server: Server, root: Path, database: str, datadir: str, work: Path
            ) -> tuple[float, dict[str, Any], str]:
    report = work / f"{database}.json"
    env = dict(os.environ, DATABASE_URL=server.url(database), BENCH_FIX_REPORT=str(report),
               BENCH_FIX_SERVER=f"{server.host},{server.port},{database},{TABLE}",
               BENCH_FIX_DATADIR=datadir, XDG_CACHE_HOME=str(work / "xdg" / database))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER], cwd=root, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"fix --yes exited {done.returncode}\n--- stdout ---\n"
                         f"{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")
    return wall, json.loads(report.read_text()), done.stdout


def check_done(server: Server, database: str, rows: int, scenario: str = "index") -> None:
    version = server.sql("SELECT version_num FROM alembic_version", database)
    indexes = {r[2] for r in server.sql(f"SHOW INDEX FROM {TABLE}", database)}
    count = server.sql(f"SELECT COUNT(*) FROM {TABLE}", database)[0][0]
    index = UNIQUE if scenario == "unique" else INDEX
    if version != [(REV_B,)] or index not in indexes or count != rows:
        raise BenchError(f"after fix, {database}: alembic_version {version}, indexes "
                         f"{sorted(indexes)}, {count} rows")
    if scenario == "unique":
        distinct, short = server.sql(
            f"SELECT COUNT(DISTINCT public_id), SUM(CHAR_LENGTH(public_id) <> 36) FROM {TABLE}",
            database)[0]
        if distinct != rows or short:
            raise BenchError(f"after fix, {database}: {distinct} distinct public_id values "
                             f"for {rows} rows, {short} not 36 characters long")


def delta(before: dict[str, int], after: dict[str, int]) -> str:
    parts = [f"table id {'unchanged' if before['table_id'] == after['table_id'] else 'NEW'}",
             f".ibd inode {'unchanged' if before['ibd_inode'] == after['ibd_inode'] else 'NEW'}"]
    for key in ("Handler_write", "Handler_read_rnd_next"):
        parts.append(f"{key} +{after[key] - before[key]}")
    return ", ".join(parts)


def copied(before: dict[str, int], after: dict[str, int], rows: int) -> bool:
    """True when the table was rebuilt or copied between the two snapshots."""
    return (before["table_id"] != after["table_id"] or before["ibd_inode"] != after["ibd_inode"]
            or after["Handler_write"] - before["Handler_write"] >= rows // 2)

# (label, figure key, timer key in the wrapper's report; None: derived in fix_parts)
PARTS: list[tuple[str, str, str | None]] = [
    ("process start and imports (wall - api.fix)", "start", None),
    ("api.fix", "api.fix", "api.fix"),
    ("  diagnoses (doctor: before, after the round, final)", "diagnose", "api.fix/diagnose"),
    ("  backup (logical dump, verified)", "backup", "api.fix/apply_plan/backup"),
    ("  row sums before the steps", "row sums", "api.fix/apply_plan/row sums"),
    ("  completing step (checks, CREATE INDEX, stamp)", "completing step",
     "api.fix/apply_plan/completing step"),
    ("    of which CREATE INDEX", "create index", None),
    ("  row check after the steps", "row check", "api.fix/apply_plan/row check"),
    ("  the rest (lock, plan, journal, ...)", "rest", None),
]


# the unique scenario's parts: its steps, and the DDL inside the completing step
PARTS_UNIQUE: list[tuple[str, str, str | None]] = [
    *PARTS[:5],
    ("  rewrite step (pending layer: B into three steps, libcst)", "rewrite step",
     "api.fix/apply_plan/rewrite step"),
    ("  fill step (a UUID per repeated row, batched UPDATEs)", "fill step",
     "api.fix/apply_plan/fill step"),
    ("  completing step (B's own backfill scan, ADD UNIQUE, stamp)", "completing step",
     "api.fix/apply_plan/completing step"),
    ("    of which ADD UNIQUE", "unique in fix", None),
    *PARTS[7:],
]


def fix_parts(wall: float, report: dict[str, Any], scenario: str = "index"
              ) -> dict[str, float]:
    times = {k: v[0] for k, v in report["times"].items()}
    table = PARTS_UNIQUE if scenario == "unique" else PARTS
    parts = {key: times.get(inside, 0.0) for _, key, inside in table if inside}
    parts["start"] = wall - parts["api.fix"]
    if scenario == "unique":
        parts["unique in fix"] = sum(s for name, s in report["ddl"] if name == "AddConstraint")
    else:
        parts["create index"] = sum(s for name, s in report["ops"] if name == "CreateIndexOp")
    parts["rest"] = parts["api.fix"] - sum(parts[k] for k in (
        "diagnose", "backup", "row sums", "completing step", "row check",
        *(("rewrite step", "fill step") if scenario == "unique" else ())))
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("unique", "index"), default="unique",
                        help="unique (issue 13, default) or index (issue 5)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    parser.add_argument("--no-control", action="store_true",
                        help="skip the control rebuild/copy of the reference table")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.rows < 1:
        parser.error("--runs and --rows must be at least 1")
    sys.path.insert(0, str(REPO))
    from alembic_repair.testing.mariadb import MissingServer, throwaway_server

    unique = args.scenario == "unique"
    parts_table = PARTS_UNIQUE if unique else PARTS
    reference = ("UPDATE ... SET public_id = UUID() + ALTER TABLE ... ADD UNIQUE" if unique
                 else "ALTER TABLE ... ADD INDEX")
    print(f"fix --yes on a half-applied revision ({args.scenario}) vs {reference} by hand")
    print(f"command: {Path(sys.executable)} {' '.join(sys.argv)}")
    for fact in machine_facts(f"alembic_repair from {REPO}"):
        print(f"  {fact}")
    work = Path(tempfile.mkdtemp(prefix="bench-fix-"))
    figures: dict[str, list[float]] = {}
    problems: list[str] = []
    build = build_unique if unique else build_half_applied

    def note(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    def by_hand(server: Server, database: str, datadir: str, run: int) -> None:
        """The reference: the missing work as plain SQL on the twin database."""
        statements = ([("update", f"UPDATE {TABLE} SET public_id = UUID()"),
                       ("add unique", f"ALTER TABLE {TABLE} ADD UNIQUE {UNIQUE} (public_id)")]
                      if unique else
                      [("add index", f"ALTER TABLE {TABLE} ADD INDEX {INDEX} (email)")])
        total = 0.0
        for key, sql in statements:
            before = server.counters(database, datadir)
            started = time.perf_counter()
            server.sql(sql, database)
            spent = time.perf_counter() - started
            after = server.counters(database, datadir)
            total += spent
            note(key, spent)
            if key != "update" and copied(before, after, args.rows):
                problems.append(f"run {run}: the reference {key} copied the table")
            print(f"  {sql[:60]:<60} {spent:7.2f} s   ({delta(before, after)})", flush=True)
        note("alter", total)

    try:
        with throwaway_server(buffer_pool="512M") as srv:
            server = Server(srv.host, srv.port)
            datadir = str(server.sql("SELECT @@datadir")[0][0])
            for run in range(1, args.runs + 1):
                fix_db, ref_db = f"fix{run}", f"ref{run}"
                print(f"run {run}/{args.runs}: building two half-applied databases ...",
                      flush=True)
                fill = build(server, work / fix_db, fix_db, args.rows)
                build(server, work / ref_db, ref_db, args.rows)
                if run == 1:
                    size = server.sql(
                        "SELECT data_length + index_length FROM information_schema.tables "
                        f"WHERE table_schema = '{fix_db}' AND table_name = '{TABLE}'")[0][0]
                    print(f"  {args.rows} rows inserted in {fill:.1f} s; table size "
                          f"{int(size) / 2**20:.0f} MiB (InnoDB data + index, estimate)")

                by_hand(server, ref_db, datadir, run)

                # fix, end to end
                wall, report, stdout = run_fix(server, work / fix_db, fix_db, datadir, work)
                check_done(server, fix_db, args.rows, args.scenario)
                note("fix", wall)
                parts = fix_parts(wall, report, args.scenario)
                for key, value in parts.items():
                    note(key, value)
                print(f"  fix --yes            {wall:7.2f} s   ({load()})")
                for label, key, inside in parts_table:
                    spent, calls = report["times"].get(inside or "", [parts[key], 1])
                    line = f"    {label:<60} {spent:7.2f} s  x{calls}"
                    if inside in report["snapshots"]:
                        b, a = report["snapshots"][inside]
                        line += f"   ({delta(b, a)})"
                        if key in ("completing step", "fill step") and copied(b, a, args.rows):
                            problems.append(f"run {run}: the {key} copied the table")
                    print(line)
                print(f"    operations the completing step ran: "
                      f"{', '.join(f'{n} {s:.2f} s' for n, s in report['ops']) or 'none'}")
                print(f"    DDL statements it executed: "
                      f"{', '.join(f'{n} {s:.2f} s' for n, s in report['ddl']) or 'none'}")
                if run == 1:
                    print("  fix's output:")
                    for text in stdout.strip().splitlines():
                        print(f"    | {text}")

                if run == args.runs and not args.no_control:
                    for label, sql in (
                            ("control: ALTER TABLE ... FORCE (in-place rebuild)",
                             f"ALTER TABLE {TABLE} FORCE"),
                            ("control: ADD INDEX, ALGORITHM=COPY",
                             f"ALTER TABLE {TABLE} ADD INDEX ix_copy (name), "
                             "ALGORITHM=COPY")):
                        before = server.counters(ref_db, datadir)
                        started = time.perf_counter()
                        server.sql(sql, ref_db)
                        seconds = time.perf_counter() - started
                        after = server.counters(ref_db, datadir)
                        note(label, seconds)
                        seen = "seen as a copy" if copied(before, after, args.rows) else \
                            "NOT SEEN as a copy"
                        print(f"  {label}: {seconds:.2f} s ({delta(before, after)}): {seen}")
                        if not copied(before, after, args.rows):
                            problems.append(f"the checks did not see {label}")
                for database in (fix_db, ref_db):
                    server.sql(f"DROP DATABASE `{database}`")
    except (BenchError, MissingServer) as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"\nmedians over {args.runs} runs, {args.rows} rows:")
    hand = ((("one set-based UPDATE ... SET public_id = UUID()", "update"),
             ("ALTER TABLE ... ADD UNIQUE", "add unique"),
             ("reference: the two together", "alter")) if unique else
            (("ALTER TABLE ... ADD INDEX (reference)", "alter"),))
    for label, key in (*hand, ("fix --yes, end to end", "fix"),
                       *((f"  {label}", key) for label, key, _ in parts_table)):
        runs = ", ".join(f"{x:.2f}" for x in figures[key])
        print(f"  {label:<64} {med[key]:7.2f} s  [{runs}]")
    for key in figures:
        if key.startswith("control"):
            print(f"  {key:<60} {med[key]:7.2f} s")
    print("\nratios (medians):")
    ratio = med["fix"] / med["alter"]
    print(f"  fix total / reference              {ratio:6.2f}x"
          + (f"   (budget 3x: {'within' if ratio <= 3 else 'OVER'})" if unique else ""))
    if unique:
        print(f"  fill step / UPDATE                 {med['fill step'] / med['update']:6.2f}x")
        print(f"  ADD UNIQUE inside fix / by hand    "
              f"{med['unique in fix'] / med['add unique']:6.2f}x")
    else:
        print(f"  completing step / ALTER            "
              f"{med['completing step'] / med['alter']:6.2f}x")
        print(f"  CREATE INDEX inside fix / ALTER    {med['create index'] / med['alter']:6.2f}x")
    scans = med["backup"] + med["row sums"] + med["row check"]
    print(f"  (fix total - backup - row sums - row check) / reference "
          f"{(med['fix'] - scans) / med['alter']:6.2f}x")
    print(f"  backup / reference                 {med['backup'] / med['alter']:6.2f}x")
    print(f"  row sums + row check / reference   "
          f"{(med['row sums'] + med['row check']) / med['alter']:6.2f}x")
    print("\ntable copies by fix's steps: "
          + ("none (in place) in every run" if not problems else "; ".join(problems)))
    print(f"\nat end: {load()}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
