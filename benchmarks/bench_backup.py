"""Benchmark: alembic-repair's backup and restore vs mariadb-dump and the mariadb client.

Requirements (docs/performance.md, "backup and restore"): on a MariaDB table of 1,000,000 rows
(int primary key, varchar, datetime, decimal, text), measured side by side in one run:

- backup, fast path (``method="dump"``): at least 0.8x the throughput of ``mariadb-dump`` alone;
- restore of that backup: at least 0.8x the throughput of the ``mariadb`` client loading
  mariadb-dump's output;
- peak memory (max RSS) of the process running our backup under 200 MB, and not growing with
  the table (shown at --rows and at --rows / 10);
- a soft drop (``alembic_repair.data.trash.soft_drop``) of the big table at most 2x that of a
  1,000-row table.

The pure-Python backup (``method="python"``) is measured beside them for comparison (no budget).

Usage::

    python benchmarks/bench_backup.py [--rows 1000000] [--runs 3]

A throwaway MariaDB server (own data dir, free loopback port) is started in a temp dir. Every
measured backup/restore is a fresh ``python -c`` process calling ``alembic_repair.data.backups`` (as
the CLI would), timed from outside; it prints its own max RSS. mariadb-dump runs as a user
would: ``mariadb-dump --single-transaction DB > file.sql``; the client as ``mariadb DB <
file.sql`` into an empty database. Throughput ratio = reference time / our time (same rows).

Exit code: 0 when every run behaved, 1 otherwise. Being over a budget is reported, not an error.
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

import _processes
from _processes import load, machine_facts

REPO = Path(__file__).resolve().parent.parent
BACKUP_BUDGET = 0.8  # throughput vs mariadb-dump, at least
RESTORE_BUDGET = 0.8  # throughput vs the mariadb client, at least
RSS_BUDGET_MB = 200.0
DROP_BUDGET = 2.0  # soft drop of the big table / of a 1k-row table, at most

TABLE = ("CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
         "created DATETIME NOT NULL, price DECIMAL(10,2), body TEXT)")
FILL = ("INSERT INTO item SELECT seq, CONCAT('item name ', seq), "
        "TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND, seq / 100, "
        "IF(seq % 10 = 0, NULL, CONCAT('body of item ', seq, ': ', REPEAT(MD5(seq), 2))) "
        "FROM seq_1_to_{rows}")

CHILD = """
import json, resource, sys, time
from pathlib import Path
from alembic_repair.engine.project import Project
from alembic_repair import backups
what, root, url, arg, method = sys.argv[1:6]
project = Project.discover(Path(root), url=url)
started = time.perf_counter()
if what == "backup":
    manifest = backups.backup(project, Path(arg), method=method)
    rows = sum(t.rows for t in manifest.tables)
else:
    report = backups.restore(project, Path(arg), yes=True)
    assert report.complete, report
    rows = sum(report.restored.values())
print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


class BenchError(Exception):
    pass


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


def project(root: Path) -> Path:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "models.py").write_text(
        "from sqlalchemy.orm import DeclarativeBase\n\n\nclass Base(DeclarativeBase):\n"
        "    pass\n")
    (root / "pyproject.toml").write_text('[tool.alembic_repair]\nmodels = "app.models:Base"\n')
    return root


def ours(what: str, root: Path, url: str, arg: Path, method: str = "auto") -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, what, str(root), url, str(arg), method],
                          cwd=root, capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{what} ({method}) failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result  # type: ignore[no-any-return]


def timed(argv: list[str], stdin: Path | None = None, stdout: Path | None = None) -> float:
    started = time.perf_counter()
    with open(stdin or os.devnull, "rb") as src, open(stdout or os.devnull, "wb") as dst:
        done = subprocess.run(argv, stdin=src, stdout=dst, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise BenchError(f"{argv[0]} failed: {done.stderr.decode()[-2000:]}")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    args = parser.parse_args(argv)
    dump_bin = shutil.which("mariadb-dump")
    client_bin = shutil.which("mariadb")
    if dump_bin is None or client_bin is None:
        parser.error("mariadb-dump and mariadb must be on PATH")
    sys.path.insert(0, str(REPO))
    from alembic_repair.testing.mariadb import MissingServer, throwaway_server

    print("backup/restore vs mariadb-dump/mariadb; peak memory; soft drop")
    print(f"command: {Path(sys.executable)} {' '.join(sys.argv)}")
    for fact in machine_facts("alembic_repair from " + str(REPO)):
        print(f"  {fact}")
    version = subprocess.run([dump_bin, "--version"], capture_output=True, text=True).stdout
    print(f"  {version.strip()}")
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    figures: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    try:
        with throwaway_server(buffer_pool="512M") as srv:
            server = Server(srv.host, srv.port)
            root = project(work / "proj")
            started = time.perf_counter()
            server.fresh("bench", args.rows)
            print(f"  filled {args.rows} rows in {time.perf_counter() - started:.1f} s")
            server.sql("ANALYZE TABLE item", "bench")
            size = server.sql("SELECT data_length + index_length FROM information_schema.tables"
                              " WHERE table_schema = 'bench' AND table_name = 'item'")[0][0]
            print(f"  table size: {int(size) / 2**20:.0f} MiB (InnoDB data + index)")
            url = server.url("bench")
            for run in range(args.runs):
                print(f"run {run + 1}/{args.runs} ...", flush=True)
                sql_file = work / "dump.sql"
                note("mariadb-dump", timed([dump_bin, *server.client_args(),
                                            "--single-transaction", "bench"],
                                           stdout=sql_file))
                fast = ours("backup", root, url, work / f"fast{run}", "dump")
                note("backup dump", fast["wall"])
                note("rss dump", fast["rss_mb"])
                slow = ours("backup", root, url, work / f"py{run}", "python")
                note("backup python", slow["wall"])
                note("rss python", slow["rss_mb"])
                # the client loading mariadb-dump's file into an empty database
                server.fresh("target", None)
                note("mariadb client", timed([client_bin, *server.client_args(), "target"],
                                             stdin=sql_file))
                # our restore of the fast backup into the emptied database
                server.sql("DROP TABLE item, alembic_version", "bench")
                back = ours("restore", root, url, work / f"fast{run}")
                note("restore dump", back["wall"])
                if back["rows"] != args.rows + 1:
                    raise BenchError(f"restore put back {back['rows']} rows")
                sql_file.unlink()
                shutil.rmtree(work / f"py{run}")
            # peak memory at a tenth of the size
            small = max(args.rows // 10, 1)
            server.fresh("small", small)
            for method in ("dump", "python"):
                res = ours("backup", root, server.url("small"), work / f"small-{method}", method)
                note(f"rss {method} small", res["rss_mb"])
            # soft drop: the big table vs a 1k-row one
            server.fresh("tiny", 1000)
            for _ in range(args.runs):
                note("drop big", soft_drop_seconds(server, root, "bench", "item"))
                note("drop 1k", soft_drop_seconds(server, root, "tiny", "item"))
    except (BenchError, MissingServer) as err:
        print(f"\nFAILED: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in figures.items()}
    rows = args.rows

    def line(label: str, key: str) -> None:
        runs = ", ".join(f"{x:.2f}" for x in figures[key])
        print(f"  {label:<44} {med[key]:7.2f} s  {rows / med[key] / 1000:8.0f} krows/s  "
              f"[{runs}]")

    print(f"\nmedians over {args.runs} runs, {rows} rows:")
    line("mariadb-dump --single-transaction > file", "mariadb-dump")
    line("backup, fast path (method=dump)", "backup dump")
    line("backup, pure Python (method=python)", "backup python")
    line("mariadb client < file (empty database)", "mariadb client")
    line("restore of the fast-path backup", "restore dump")
    budgets = [
        ("backup (dump) throughput vs mariadb-dump", med["mariadb-dump"] / med["backup dump"],
         f">= {BACKUP_BUDGET}", med["mariadb-dump"] / med["backup dump"] >= BACKUP_BUDGET),
        ("backup (python) throughput vs mariadb-dump",
         med["mariadb-dump"] / med["backup python"], "(no budget)", True),
        ("restore throughput vs the mariadb client",
         med["mariadb client"] / med["restore dump"], f">= {RESTORE_BUDGET}",
         med["mariadb client"] / med["restore dump"] >= RESTORE_BUDGET),
        ("soft drop, big table / 1k-row table", med["drop big"] / med["drop 1k"],
         f"<= {DROP_BUDGET}", med["drop big"] / med["drop 1k"] <= DROP_BUDGET),
    ]
    print("\nratios:")
    for label, value, budget, ok in budgets:
        print(f"  {label:<44} {value:6.2f}x  {budget:<12} {'ok' if ok else 'OVER BUDGET'}")
    print(f"\npeak RSS of the backup process (MB), {rows} rows / {small} rows:")
    for method in ("dump", "python"):
        big, little = max(figures[f"rss {method}"]), figures[f"rss {method} small"][0]
        verdict = "ok" if big < RSS_BUDGET_MB else "OVER BUDGET"
        print(f"  method={method:<7} {big:6.1f} / {little:6.1f}   (< {RSS_BUDGET_MB:.0f}: "
              f"{verdict})")
    print(f"  soft drop: big {med['drop big'] * 1000:.1f} ms, 1k {med['drop 1k'] * 1000:.1f} ms")
    print(f"\nat end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
