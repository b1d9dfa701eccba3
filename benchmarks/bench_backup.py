"""Benchmark: alembic-repair's backup and restore against what the same work costs by hand.

Requirements (issue 14; docs/performance.md, "backup and restore"): on a MariaDB table of
1,000,000 rows (int primary key, varchar, datetime, decimal, text), each ratio against a
reference measured in the same run on the same rows:

- ``backup --method python`` at most **2x** the time of a raw PyMySQL streaming read of the same
  rows (``SSCursor``, ``fetchmany``, default converters, a fresh process like ours);
- ``backup --method dump`` at least **0.9x** the throughput of ``mariadb-dump
  --single-transaction DB > file`` followed by ``CHECKSUM TABLE`` of the tables (the verified
  backup made by hand);
- pure-Python restore (``restore(..., method="python")`` of a python-method backup into the
  emptied database) at least **0.5x** the throughput of the ``mariadb`` client loading
  mariadb-dump's file into an empty database; a dump backup restored with ``method="python"``
  (cross-method) is reported beside it, without a budget;
- fast-path restore (``restore(..., method="client")`` of a dump backup) at least **0.8x** the
  throughput of the ``mariadb`` client;
- the peak RSS of our process, for every backup and restore above, under **200 MB** at the full
  size and at a tenth of it;
- kept from the earlier requirements: a soft drop of the big table at most 2x that of a
  1,000-row table.

Usage::

    python benchmarks/bench_backup.py [--rows 1000000] [--runs 3] [--small-rows N]

A throwaway MariaDB server (own data dir, free loopback port, 512 MB buffer pool) is started in
a temp dir. Every measured backup, restore and raw read is a fresh ``python -c`` process (as the
CLI would be), timed from outside, printing its own peak RSS (``VmHWM``: ``ru_maxrss`` would
include the forking benchmark's; the tools it starts are separate processes). The tools run as
a user would run them. After every restore the rows are counted and ``CHECKSUM TABLE``
compared with the original table's, independently of alembic-repair's own verification.
Throughput ratio = reference time / our time (same rows).

Exit code: 0 when every run behaved (being over a budget is reported, not an error); 1 when a
tool or one of our calls failed, or a restore did not put every row back.
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
from dataclasses import dataclass
from pathlib import Path

import _processes
from _processes import load, machine_facts

REPO = Path(__file__).resolve().parent.parent
PYTHON_BACKUP_BUDGET = 2.0  # backup --method python time / raw PyMySQL read time, at most
DUMP_BACKUP_BUDGET = 0.9  # throughput vs mariadb-dump + CHECKSUM TABLE, at least
PYTHON_RESTORE_BUDGET = 0.5  # throughput vs the mariadb client, at least
CLIENT_RESTORE_BUDGET = 0.8  # throughput vs the mariadb client, at least
RSS_BUDGET_MB = 200.0
DROP_BUDGET = 2.0  # soft drop of the big table / of a 1k-row table, at most
FETCH = 10_000  # rows per fetchmany of the raw read

TABLES = ("item", "alembic_version")
TABLE = ("CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
         "created DATETIME NOT NULL, price DECIMAL(10,2), body TEXT)")
FILL = ("INSERT INTO item SELECT seq, CONCAT('item name ', seq), "
        "TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND, seq / 100, "
        "IF(seq % 10 = 0, NULL, CONCAT('body of item ', seq, ': ', REPEAT(MD5(seq), 2))) "
        "FROM seq_1_to_{rows}")

# The peak RSS of this process since its exec: VmHWM. Not ru_maxrss, which on Linux keeps
# the high-water mark of the address space replaced by exec, i.e. of the (v)forked benchmark.
PEAK = """
def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
"""

# Our backup or restore, as the CLI would run it.
OURS = PEAK + """
import json, sys
from pathlib import Path
from alembic_repair.data import backups
from alembic_repair.engine.project import Project
what, root, url, arg, method = sys.argv[1:6]
project = Project.discover(Path(root), url=url)
honoured, files = True, ""
if what == "backup":
    manifest = backups.backup(project, Path(arg), method=method)
    rows = sum(t.rows for t in manifest.tables)
    honoured = manifest.method == method
    files = " ".join(sorted({Path(t.file).name.partition(".")[2] for t in manifest.tables}))
else:
    report = backups.restore(project, Path(arg), yes=True, method=method)
    if not report.complete:
        sys.exit(f"incomplete restore: {report}")
    rows = sum(report.restored.values())
print(json.dumps({"rows": rows, "honoured": honoured, "files": files,
                  "rss_mb": peak_mb()}))
"""

# The limit for a pure-Python path: stream the same rows through PyMySQL and do nothing else.
RAW_READ = PEAK + """
import json, sys
import pymysql, pymysql.cursors
host, port, database, fetch, *tables = sys.argv[1:]
conn = pymysql.connect(host=host, port=int(port), user="root", password="", database=database,
                       cursorclass=pymysql.cursors.SSCursor)
rows = 0
with conn.cursor() as cur:
    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    for table in tables:
        cur.execute(f"SELECT * FROM `{table}`")
        while chunk := cur.fetchmany(int(fetch)):
            rows += len(chunk)
conn.close()
print(json.dumps({"rows": rows, "honoured": True,
                  "rss_mb": peak_mb()}))
"""

# What every one of our processes pays before any work: the interpreter and our imports.
IMPORTS = PEAK + """
import json
from alembic_repair.data import backups
from alembic_repair.engine.project import Project
print(json.dumps({"rows": 0, "honoured": True, "rss_mb": peak_mb()}))
"""


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Measured:
    seconds: float  # wall time of the whole process, from outside
    rows: int
    rss_mb: float
    honoured: bool  # the method asked for is the one that ran
    files: str = ""  # a backup's data file kinds (e.g. "tsv", "sql")


class Server(_processes.Server):

    def fresh(self, database: str, rows: int | None) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{database}`")
        self.sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 "
                 "COLLATE utf8mb4_unicode_ci")
        if rows is not None:
            self.sql(TABLE, database)
            self.sql(FILL.format(rows=rows), database)
            self.sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
                     database)
            self.sql("INSERT INTO alembic_version VALUES ('abc123')", database)

    def empty(self, database: str) -> None:
        self.sql(f"DROP TABLE IF EXISTS {', '.join(TABLES)}", database)

    def state(self, database: str) -> dict[str, tuple[int, int]]:
        """Rows and ``CHECKSUM TABLE`` of every benchmark table (missing: (-1, -1))."""
        present = {r[0] for r in self.sql("SHOW TABLES", database)}
        counts = {t: int(self.sql(f"SELECT COUNT(*) FROM `{t}`", database)[0][0])
                  for t in TABLES if t in present}
        sums = {str(r[0]).split(".")[-1]: int(r[1] or 0) for r in self.sql(
            f"CHECKSUM TABLE {', '.join(t for t in TABLES if t in present)}", database)
        } if present else {}
        return {t: (counts.get(t, -1), sums.get(t, -1)) for t in TABLES}


def project(root: Path) -> Path:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "models.py").write_text(
        "from sqlalchemy.orm import DeclarativeBase\n\n\nclass Base(DeclarativeBase):\n"
        "    pass\n")
    (root / "pyproject.toml").write_text('[tool.alembic_repair]\nmodels = "app.models:Base"\n')
    return root


def python_child(code: str, args: list[str], cwd: Path, what: str) -> Measured:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, check=False, env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Measured(wall, int(result["rows"]), float(result["rss_mb"]), bool(result["honoured"]),
                    str(result.get("files", "")))


def timed(argv: list[str], stdin: Path | None = None, stdout: Path | None = None) -> float:
    started = time.perf_counter()
    with open(stdin or os.devnull, "rb") as src, open(stdout or os.devnull, "wb") as dst:
        done = subprocess.run(argv, stdin=src, stdout=dst, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise BenchError(f"{Path(argv[0]).name} failed: {done.stderr.decode()[-2000:]}")
    return time.perf_counter() - started


def soft_drop_seconds(server: Server, root: Path, database: str, table: str) -> float:
    from alembic_repair.data import trash
    from alembic_repair.engine.project import Project

    proj = Project.discover(root, url=server.url(database))
    started = time.perf_counter()
    trash.soft_drop(proj, table, yes=True)
    seconds = time.perf_counter() - started
    trash.restore(proj, table, yes=True)
    return seconds


class Bench:
    """One database's measurements: our calls and the references, with their checks."""

    def __init__(self, server: Server, root: Path, work: Path, database: str, rows: int,
                 tools: tuple[str, str]) -> None:
        self.server, self.root, self.work, self.database = server, root, work, database
        self.rows, (self.dump_bin, self.client_bin) = rows, tools
        self.url = server.url(database)
        self.original = server.state(database)
        self.figures: dict[str, list[float]] = {}
        self.rss: dict[str, float] = {}
        self.notes: list[str] = []

    def note(self, key: str, value: float) -> None:
        self.figures.setdefault(key, []).append(value)

    def ours(self, key: str, what: str, arg: Path, method: str) -> Measured:
        got = python_child(OURS, [what, str(self.root), self.url, str(arg), method], self.root,
                           f"{what} (method={method})")
        self._record(key, got)
        if not got.honoured:
            raise BenchError(f"{key}: asked for method={method}, the manifest says otherwise")
        if got.files:
            self.notes.append(f"{key} writes: {got.files}")
        if what == "backup" and got.rows != self.rows + 1:
            raise BenchError(f"{key}: the manifest holds {got.rows} rows, not {self.rows + 1}")
        if what == "restore":
            self.check_restored(key)
        return got

    def raw_read(self, key: str) -> Measured:
        got = python_child(RAW_READ, [self.server.host, str(self.server.port), self.database,
                                      str(FETCH), *TABLES], self.root, "raw PyMySQL read")
        if got.rows != self.rows + 1:
            raise BenchError(f"raw read saw {got.rows} rows, not {self.rows + 1}")
        self._record(key, got)
        return got

    def _record(self, key: str, got: Measured) -> None:
        self.note(key, got.seconds)
        self.rss[key] = max(self.rss.get(key, 0.0), got.rss_mb)

    def check_restored(self, key: str, database: str | None = None) -> None:
        state = self.server.state(database or self.database)
        if state != self.original:
            raise BenchError(f"{key}: after the restore (rows, CHECKSUM TABLE) are {state}, "
                             f"the original table had {self.original}")

    def by_hand(self, sql_file: Path) -> None:
        """mariadb-dump > file then CHECKSUM TABLE; the client loading the file elsewhere."""
        client = [self.client_bin, *self.server.client_args()]
        dump = timed([self.dump_bin, *self.server.client_args(), "--single-transaction",
                      self.database], stdout=sql_file)
        checksum = timed([*client, "-e", f"CHECKSUM TABLE {', '.join(TABLES)}", self.database])
        self.note("mariadb-dump", dump)
        self.note("CHECKSUM TABLE", checksum)
        self.note("dump + checksum", dump + checksum)
        target = f"{self.database}_client"
        self.server.fresh(target, None)
        self.note("mariadb client", timed([*client, target], stdin=sql_file))
        self.check_restored("mariadb client", target)
        self.server.sql(f"DROP DATABASE `{target}`")

    def run(self, tag: str, references: bool) -> None:
        """Every measurement once: backups, then each restore into the emptied database."""
        py, dump, sql_file = (self.work / f"{tag}-py", self.work / f"{tag}-dump",
                              self.work / f"{tag}.sql")
        if references:
            self._record("imports", python_child(IMPORTS, [], self.root, "imports"))
            self.raw_read("raw read")
        self.ours("backup python", "backup", py, "python")
        if references:
            self.by_hand(sql_file)
        self.ours("backup dump", "backup", dump, "dump")
        for key, path, method in (("restore python", py, "python"),
                                  ("restore client", dump, "client"),
                                  ("restore python (dump backup)", dump, "python")):
            self.server.empty(self.database)
            self.ours(key, "restore", path, method)
        for path in (py, dump):
            shutil.rmtree(path, ignore_errors=True)
        sql_file.unlink(missing_ok=True)


def report(big: Bench, small: Bench, drops: dict[str, list[float]]) -> None:
    figures, rows = big.figures, big.rows
    med = {k: statistics.median(v) for k, v in figures.items()}

    def line(label: str, key: str) -> None:
        runs = ", ".join(f"{x:.2f}" for x in figures[key])
        speed = "" if key == "imports" else f"{rows / med[key] / 1000:6.0f} krows/s"
        print(f"  {label:<52} {med[key]:7.2f} s {speed:>14}  [{runs}]")

    print(f"\nmedians over {len(figures['raw read'])} runs, {rows} rows (+1 alembic_version):")
    line("python start + our imports, no work", "imports")
    line("raw PyMySQL read (SSCursor, fetchmany)", "raw read")
    line("backup --method python", "backup python")
    line("mariadb-dump --single-transaction > file", "mariadb-dump")
    line("CHECKSUM TABLE", "CHECKSUM TABLE")
    line("mariadb-dump + CHECKSUM TABLE", "dump + checksum")
    line("backup --method dump", "backup dump")
    line("mariadb DB < file (empty database)", "mariadb client")
    line("restore --method python (python backup)", "restore python")
    line("restore --method client (dump backup)", "restore client")
    line("restore --method python (dump backup)", "restore python (dump backup)")

    client = med["mariadb client"]
    ratios: list[tuple[str, float, str, bool | None]] = [
        ("backup python time / raw read time", med["backup python"] / med["raw read"],
         f"<= {PYTHON_BACKUP_BUDGET}", med["backup python"] / med["raw read"]
         <= PYTHON_BACKUP_BUDGET),
        ("backup dump throughput / (dump + checksum)",
         med["dump + checksum"] / med["backup dump"], f">= {DUMP_BACKUP_BUDGET}",
         med["dump + checksum"] / med["backup dump"] >= DUMP_BACKUP_BUDGET),
        ("restore python throughput / mariadb client", client / med["restore python"],
         f">= {PYTHON_RESTORE_BUDGET}", client / med["restore python"] >= PYTHON_RESTORE_BUDGET),
        ("restore client throughput / mariadb client", client / med["restore client"],
         f">= {CLIENT_RESTORE_BUDGET}", client / med["restore client"] >= CLIENT_RESTORE_BUDGET),
        ("restore python (dump backup) / mariadb client",
         client / med["restore python (dump backup)"], "(no budget)", None),
    ]
    if drops:
        big_drop, tiny_drop = (statistics.median(drops[k]) for k in ("big", "1k"))
        ratios.append((f"soft drop, {rows} rows / 1k rows", big_drop / tiny_drop,
                       f"<= {DROP_BUDGET}", big_drop / tiny_drop <= DROP_BUDGET))
    print("\nratios (medians):")
    for label, value, budget, ok in ratios:
        verdict = "" if ok is None else ("ok" if ok else "OVER BUDGET")
        print(f"  {label:<52} {value:6.2f}x  {budget:<12} {verdict}")
    if drops:
        print(f"  (soft drop: {big_drop * 1000:.1f} ms / {tiny_drop * 1000:.1f} ms)")

    print(f"\npeak RSS of our process (MB), {rows} rows / {small.rows} rows "
          f"(< {RSS_BUDGET_MB:.0f}):")
    keys = ["backup python", "backup dump", "restore python", "restore client",
            "restore python (dump backup)"]
    for key in keys:
        top = max(big.rss[key], small.rss[key])
        verdict = "ok" if top < RSS_BUDGET_MB else "OVER BUDGET"
        print(f"  {key:<40} {big.rss[key]:7.1f} / {small.rss[key]:7.1f}   {verdict}")
    print(f"  {'(raw PyMySQL read, reference)':<40} {big.rss['raw read']:7.1f}")
    for note in dict.fromkeys(big.notes + small.notes):
        print(f"  NOTE {note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    parser.add_argument("--small-rows", type=int, default=None,
                        help="the second size for peak memory (default --rows / 10)")
    parser.add_argument("--no-drop", action="store_true", help="skip the soft-drop figures")
    args = parser.parse_args(argv)
    dump_bin, client_bin = shutil.which("mariadb-dump"), shutil.which("mariadb")
    if dump_bin is None or client_bin is None:
        parser.error("mariadb-dump and mariadb must be on PATH")
    sys.path.insert(0, str(REPO))
    from alembic_repair.testing.mariadb import MissingServer, throwaway_server

    print("backup/restore vs a raw PyMySQL read, mariadb-dump + CHECKSUM TABLE, the mariadb "
          "client; peak memory; soft drop")
    print(f"command: {Path(sys.executable)} {' '.join(sys.argv)}")
    for fact in machine_facts("alembic_repair from " + str(REPO)):
        print(f"  {fact}")
    for tool in (dump_bin, client_bin):
        version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
        print(f"  {version.strip()}")
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    drops: dict[str, list[float]] = {}
    small_rows = max(args.small_rows or args.rows // 10, 1)
    try:
        with throwaway_server(buffer_pool="512M") as srv:
            server = Server(srv.host, srv.port)
            root = project(work / "proj")
            started = time.perf_counter()
            server.fresh("bench", args.rows)
            server.fresh("small", small_rows)
            print(f"  filled {args.rows} + {small_rows} rows in "
                  f"{time.perf_counter() - started:.1f} s")
            server.sql("ANALYZE TABLE item", "bench")
            size = server.sql("SELECT data_length + index_length FROM information_schema.tables"
                              " WHERE table_schema = 'bench' AND table_name = 'item'")[0][0]
            print(f"  table size: {int(size) / 2**20:.0f} MiB (InnoDB data + index)")
            tools = (dump_bin, client_bin)
            big = Bench(server, root, work, "bench", args.rows, tools)
            small = Bench(server, root, work, "small", small_rows, tools)
            for run in range(args.runs):
                print(f"run {run + 1}/{args.runs} ({load()}) ...", flush=True)
                big.run(f"run{run}", references=True)
            print(f"{small_rows} rows, for peak memory ({load()}) ...", flush=True)
            small.run("small", references=False)
            if not args.no_drop:
                server.fresh("tiny", 1000)
                for _ in range(args.runs):
                    for key, database in (("big", "bench"), ("1k", "tiny")):
                        drops.setdefault(key, []).append(
                            soft_drop_seconds(server, root, database, "item"))
    except (BenchError, MissingServer) as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(big, small, drops)
    print(f"\nat end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
