"""The dump method for MySQL/MariaDB: mariadb-dump under ``LOCK TABLES ... READ`` writes the
backup, the mariadb client loads it back; the password reaches them only through a pipe."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Connection

from ... import private
from ...engine.endpoint import target
from ...engine.project import Project
from ...engine.url import parse_url
from ...errors import AlembicRepairError, ConfigError
from ...masking import redact
from . import manifest
from .checksums import Progress, TableSum, table_checksum_sql, utc_session
from .dump_format import DUMP_TRAILER, DumpCounter, dump_path, feed_dump, read_lines
from .manifest import Manifest, TableInfo
from .tables import mysql_schema, write_schema


def dump_tools() -> tuple[str, str] | None:
    """(dump program, client program) found on PATH, or None: mariadb-dump and mariadb are
    preferred to mysqldump and mysql."""
    dump = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    client = shutil.which("mariadb") or shutil.which("mysql")
    return (dump, client) if dump and client else None


def _option_value(value: str) -> str:
    text = value.replace("\\", "\\\\")
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    raise ConfigError("backup: the password holds both quote characters, which a client option "
                      "file cannot carry; use method 'python'")


@contextmanager
def _client_options(url: str) -> Iterator[tuple[str, int]]:
    """(``/dev/fd/N``, N): the connection settings and the password for
    ``--defaults-extra-file``, in a pipe the client inherits (``pass_fds=(N,)``): never on a
    command line, never in a file (`private.option_fd`)."""
    parsed = parse_url(url)
    # The endpoint PyMySQL resolves (``?host=``, ``?unix_socket=``, option files), so the tool
    # reaches the very server our session and the remote guard judged, not the URL's netloc.
    found = target(parsed)
    lines = ["[client]"]
    socket = found.socket or parsed.query.get("unix_socket")
    if isinstance(socket, str):
        lines.append(f"socket={_option_value(socket)}")
    else:
        lines += [f"host={_option_value(found.host or parsed.host or 'localhost')}",
                  f"port={int(found.port or parsed.port or 3306)}", "protocol=TCP"]
    if parsed.username:
        lines.append(f"user={_option_value(parsed.username)}")
    if parsed.password is not None:
        lines.append(f"password={_option_value(str(parsed.password))}")
    private.sweep_temp()  # option files earlier versions left in /tmp when killed
    with private.option_fd("\n".join(lines) + "\n") as options:
        yield options


def _tool_error(what: str, stderr: bytes, url: str) -> AlembicRepairError:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()
             if line.strip() and "Warning" not in line]
    detail = redact(lines[-1] if lines else "no message", url)
    return AlembicRepairError(f"{what} failed: {detail}")


def backup_mysql_dump(project: Project, conn: Connection, target: Path,
                       progress: Progress | None
                       ) -> tuple[tuple[TableInfo, ...], tuple[str, int]]:
    """mariadb-dump for the data, the server for counts and checksums, consistent because our
    session holds ``LOCK TABLES ... READ`` on every table from before the dump starts until
    the dump and the checksums are done (see the package docstring). Verified as it is
    written: the rows per table counted in the dump stream must equal the server's counts,
    and the stream must end with mariadb-dump's completion trailer. Returns the tables and the
    sha256 of the compressed bytes as written."""
    tools = dump_tools()
    assert tools is not None
    names, schema, columns = mysql_schema(conn)
    write_schema(target.parent, schema)
    database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
    quote = conn.dialect.identifier_preparer.quote
    sums: dict[str, TableSum] = {}
    stream = _Stream()
    with utc_session(conn), _client_options(project.url) as (options, options_fd):
        conn.commit()
        if names:
            conn.exec_driver_sql("LOCK TABLES " + ", ".join(f"{quote(n)} READ" for n in names))
        try:
            totals: dict[str, int] = {}  # filled while the dump runs; progress reads it
            command = [tools[0], f"--defaults-extra-file={options}", "--single-transaction",
                       "--skip-lock-tables", "--no-create-info", "--skip-triggers",
                       "--hex-blob", "--complete-insert", "--skip-add-locks",
                       "--skip-disable-keys", "--skip-dump-date", "--tz-utc",
                       "--no-tablespaces", "--default-character-set=utf8mb4", "--quick",
                       "--extended-insert", "--", database, *names]
            with tempfile.TemporaryFile() as errors:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=errors,
                                           pass_fds=(options_fd,))
                writer = threading.Thread(target=_compress_dump, args=(
                    process, target, totals, progress, stream), daemon=True)
                writer.start()
                try:
                    for name in names:  # meanwhile, on the second core
                        sums[name] = table_checksum_sql(conn, name)
                        totals[name] = sums[name].rows
                finally:
                    writer.join()
                    code = process.wait()
                if stream.failure is not None:
                    raise stream.failure
                if code != 0:
                    errors.seek(0)
                    raise _tool_error(f"backup: {Path(tools[0]).name}", errors.read(),
                                      project.url)
        finally:
            if names:
                conn.exec_driver_sql("UNLOCK TABLES")
            conn.commit()
    lines = stream.tail.rstrip().splitlines()
    if not lines or not lines[-1].startswith(DUMP_TRAILER):
        raise AlembicRepairError(f"backup: {Path(tools[0]).name} stopped before the end of its "
                                 "output; run the backup again")
    for name in names:
        dumped = stream.counter.rows.get(name, 0)
        if sums[name].rows != dumped:
            raise AlembicRepairError(
                f"backup: table {name}: the server counted {sums[name].rows} rows, the dump holds "
                f"{dumped}; run the backup again")
    tables = tuple(TableInfo(n, tuple(columns[n]), sums[n].rows, sums[n].checksum,
                             target.name) for n in names)
    return tables, (stream.digest.hexdigest(), stream.size)


class _Stream:
    """What the compressing thread saw: rows per table, the sha256 of the bytes it wrote, the
    end of the dump, and the exception that stopped it, if any."""

    def __init__(self) -> None:
        self.counter = DumpCounter()
        self.digest = hashlib.sha256()
        self.size = 0  # bytes written
        self.tail = b""
        self.failure: BaseException | None = None


class _Hashing:
    """A file object that hashes and counts what is written through it."""

    def __init__(self, raw: BinaryIO, stream: _Stream) -> None:
        self.raw, self.stream = raw, stream

    def write(self, data: Any) -> int:
        self.stream.digest.update(data)
        self.stream.size += len(data)
        return int(self.raw.write(data))

    def flush(self) -> None:
        self.raw.flush()


@contextmanager
def _dump_writer(raw: BinaryIO, stream: _Stream, target: Path) -> Iterator[Any]:
    hashing = _Hashing(raw, stream)
    if not target.name.endswith(".gz"):
        yield hashing
        return
    with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0,
                       compresslevel=1) as out:
        yield out


def _compress_dump(process: subprocess.Popen[bytes], target: Path, totals: dict[str, int],
                   progress: Progress | None, stream: _Stream) -> None:
    """Thread: the dump's output into `target` (gzipped at level 1 when it ends in .gz),
    counting rows per table and reporting progress as rows go by."""
    assert process.stdout is not None
    counter = stream.counter
    try:
        with manifest.open_private(target) as raw, _dump_writer(raw, stream, target) as out:
            for chunk in read_lines(process.stdout):  # type: ignore[arg-type]
                out.write(chunk)
                counter.feed(chunk)
                stream.tail = (stream.tail + chunk[-256:])[-256:]
                if progress is not None and (counter.current is not None or counter.rows):
                    name = counter.current or next(reversed(counter.rows))
                    progress(name, counter.rows.get(name, 0), totals.get(name))
    except BaseException as err:  # noqa: BLE001 - handed to the main thread
        stream.failure = err
        process.kill()
    finally:
        process.stdout.close()


def load_dump(project: Project, manifest: Manifest, tables: Sequence[str], database: str,
               progress: Progress | None) -> None:
    """Feed the dump's rows of `tables` to the mariadb client, into `database`; each table in
    one transaction (a killed load leaves a table empty or whole)."""
    tools = dump_tools()
    if tools is None:
        raise ConfigError(f"restore {manifest.path}: this backup was written by mariadb-dump "
                          "and needs the mariadb (or mysql) client on PATH; install it")
    wanted = set(tables)
    totals = {t.name: t.rows for t in manifest.tables}
    with _client_options(project.url) as (options, options_fd), \
            tempfile.TemporaryFile() as errors:
        command = [tools[1], f"--defaults-extra-file={options}",
                   "--default-character-set=utf8mb4", "--binary-mode", f"--database={database}"]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=errors, pass_fds=(options_fd,))
        assert process.stdin is not None
        broken = False
        try:
            feed_dump(dump_path(manifest), wanted, totals, process.stdin, progress)
        except BrokenPipeError:
            broken = True  # the client stopped: its message says why
        finally:
            try:
                process.stdin.close()
            except BrokenPipeError:
                broken = True
            code = process.wait()
        if code != 0 or broken:
            errors.seek(0)
            raise _tool_error(f"restore {manifest.path}: {Path(tools[1]).name}", errors.read(),
                              project.url)
