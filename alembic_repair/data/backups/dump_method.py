"""The dump method for MySQL/MariaDB: mariadb-dump under ``LOCK TABLES ... READ`` writes the
backup file itself, the mariadb client loads it back (reading the file itself when every table
is loaded); the password reaches them only through a pipe."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gzip
import hashlib
import io
import os
import re
import shutil
import signal
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
from ...engine.state.schema import VERSION_TABLE, is_user_table
from ...engine.url import parse_url
from ...errors import AlembicRepairError, BackupCorrupt, ConfigError
from ...masking import redact
from ...wording import counted
from . import manifest
from .checksums import Progress, TableSum, table_checksum_sql, utc_session
from .dump_format import (
    DUMP_FILE,
    DUMP_OPTIONS,
    DUMP_TRAILER,
    PER_TABLE_COMMIT,
    dump_counts,
    dump_path,
    feed_dump,
)
from .manifest import CHUNK, Manifest, TableInfo
from .tables import mysql_schema, write_schema


def dump_tools() -> tuple[str, str] | None:
    """(dump program, client program) found on PATH, or None: mariadb-dump and mariadb are
    preferred to mysqldump and mysql."""
    dump = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    client = shutil.which("mariadb") or shutil.which("mysql")
    return (dump, client) if dump and client else None


def float_columns(conn: Connection) -> list[str]:
    """``table.column`` of every FLOAT column of the tables a backup holds: mariadb-dump writes
    a FLOAT with 6 significant digits, too few to load back the value stored (1/3 comes back
    as 0.333333), so the dump method is not used for them (the python method writes each
    FLOAT as its double, which rounds back exactly)."""
    rows = conn.exec_driver_sql(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c JOIN "
        "information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND "
        "t.TABLE_NAME = c.TABLE_NAME WHERE c.TABLE_SCHEMA = DATABASE() AND "
        "c.DATA_TYPE = 'float' AND t.TABLE_TYPE <> 'VIEW' "
        "ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION").all()
    return [f"{t}.{c}" for t, c in rows if is_user_table(str(t)) or t == VERSION_TABLE]


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
    """mariadb-dump writes the data file itself (no Python in the byte stream; ``compress``
    and a file object that is not a plain file go through a Python pipe), the server gives
    counts and checksums, consistent because our session holds ``LOCK TABLES ... READ`` on
    every table from before the dump starts until the dump and the checksums are done (see
    the package docstring). Afterwards the file is hashed at C speed, must end with
    mariadb-dump's completion trailer and must hold as many rows per table as the server
    counted (`dump_counts`: mariadb-dump silently writes no rows for some tables, e.g.
    MRG_MyISAM). Returns the tables and the sha256 and size of the bytes as written."""
    tools = dump_tools()
    assert tools is not None
    names, schema, columns = mysql_schema(conn)
    write_schema(target.parent, schema)
    database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
    quote = conn.dialect.identifier_preparer.quote
    sums: dict[str, TableSum] = {}
    program = Path(tools[0]).name
    with utc_session(conn), _client_options(project.url) as (options, options_fd), \
            manifest.open_private(target) as out, tempfile.TemporaryFile() as errors:
        conn.commit()
        if names:
            conn.exec_driver_sql("LOCK TABLES " + ", ".join(f"{quote(n)} READ" for n in names))
        try:
            command = [tools[0], f"--defaults-extra-file={options}", *DUMP_OPTIONS, "--",
                       database, *names]
            direct = isinstance(out, io.BufferedWriter) and not target.name.endswith(".gz")
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                       stdout=out if direct else subprocess.PIPE,
                                       stderr=errors, pass_fds=(options_fd,),
                                       preexec_fn=_die_with_parent)
            stream = _Stream()
            writer = threading.Thread(target=_copy_dump, args=(process, out, target, stream),
                                      daemon=True)
            if not direct:
                writer.start()
            try:
                for name in names:  # meanwhile, on the other core
                    sums[name] = table_checksum_sql(conn, name)
                    if progress is not None:
                        progress(name, sums[name].rows, sums[name].rows)
            except BaseException:
                process.kill()
                raise
            finally:
                if writer.is_alive():
                    writer.join()
                code = process.wait()
            if stream.failure is not None:
                raise stream.failure
            if code == -signal.SIGXFSZ:  # over the file size limit (ulimit -f)
                raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
            if code != 0:
                errors.seek(0)
                raise _dump_error(program, errors.read(), project.url)
        finally:
            if names:
                conn.exec_driver_sql("UNLOCK TABLES")
            conn.commit()
        if direct:  # hashed at C speed once the lock is released
            written, tail = _file_digest(target), _file_tail(target)
        else:
            written, tail = (stream.digest.hexdigest(), stream.size), stream.tail
    lines = tail.rstrip().splitlines()
    if not lines or not lines[-1].startswith(DUMP_TRAILER):
        raise AlembicRepairError(f"backup: {program} stopped before the end of its output; "
                                 "run the backup again")
    if not direct and target.stat().st_size != written[1]:  # bytes handed over vs on disk
        raise BackupCorrupt(f"backup: {target} does not hold the bytes written (a disk or "
                            "file system error); run the backup again")
    dumped = dump_counts(target)
    for name in names:
        if sums[name].rows != dumped.get(name, 0):
            raise AlembicRepairError(
                f"backup: table {name}: the server counted "
                f"{counted(sums[name].rows, 'row')}, the dump "
                f"holds {dumped.get(name, 0)}; run the backup again")
    tables = tuple(TableInfo(n, tuple(columns[n]), sums[n].rows, sums[n].checksum,
                             target.name) for n in names)
    return tables, written


def _prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, TypeError):  # not Linux
        return None


_PRCTL = _prctl()


def _die_with_parent() -> None:
    """In the child before exec (Linux; `_PRCTL` looked up before the fork, so the child only
    makes the call): killed when our process dies, so a kill -9 of a backup or restore stops
    its mariadb-dump or client too (the server rolls back what the client had not committed)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _dump_error(program: str, stderr: bytes, url: str) -> Exception:
    """The tool's error; a full disk (``Got errno 28 on write``) as the OSError it is."""
    found = re.search(rb"Got errno (\d+) on write", stderr)
    if found and int(found.group(1)) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return _tool_error(f"backup: {program}", stderr, url)


def _file_digest(path: Path) -> tuple[str, int]:
    """(sha256, size) of a file, at C speed."""
    with path.open("rb") as handle:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            digest = hashlib.file_digest(handle, "sha256")
        else:
            digest = hashlib.sha256()
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest(), handle.tell() if handle.seekable() else path.stat().st_size


def _file_tail(path: Path, size: int = 256) -> bytes:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - size))
        return handle.read()


class _Stream:
    """What the copying thread saw: the sha256 and size of the bytes it wrote, the end of the
    dump, and the exception that stopped it, if any."""

    def __init__(self) -> None:
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


def _copy_dump(process: subprocess.Popen[bytes], raw: BinaryIO, target: Path,
               stream: _Stream) -> None:
    """Thread (``compress=True``, or a file object that is not a plain file): the dump's
    output through Python into `raw`, gzipped at level 1 when `target` ends in .gz."""
    assert process.stdout is not None
    try:
        with _dump_writer(raw, stream, target) as out:
            while chunk := process.stdout.read(CHUNK):
                out.write(chunk)
                stream.tail = (stream.tail + chunk[-256:])[-256:]
    except BaseException as err:  # noqa: BLE001 - handed to the main thread
        stream.failure = err
        process.kill()
    finally:
        process.stdout.close()


def load_dump(project: Project, manifest: Manifest, tables: Sequence[str], database: str,
               progress: Progress | None) -> None:
    """Load the dump's rows of `tables` into `database` with the mariadb client; each table in
    one transaction (a killed load leaves a table empty or whole). Fast path (`fast_load`):
    the client reads the file itself. Otherwise the dump is filtered through Python
    (`feed_dump`: the wanted tables' sections, each closed by a COMMIT, strict SQL mode)."""
    tools = dump_tools()
    if tools is None:
        raise ConfigError(f"restore {manifest.path}: this backup was written by mariadb-dump "
                          "and needs the mariadb (or mysql) client on PATH; install it")
    wanted = set(tables)
    totals = {t.name: t.rows for t in manifest.tables}
    file = dump_path(manifest)
    fast = fast_load(manifest, tables)
    with _client_options(project.url) as (options, options_fd), \
            tempfile.TemporaryFile() as errors, \
            (file.open("rb") if fast else contextlib.nullcontext(subprocess.PIPE)) as source:
        command = [tools[1], f"--defaults-extra-file={options}",
                   "--default-character-set=utf8mb4", "--binary-mode", f"--database={database}"]
        if fast and progress is not None:
            for name in tables:
                progress(name, 0, totals.get(name))
        process = subprocess.Popen(command, stdin=source, stdout=subprocess.DEVNULL,
                                   stderr=errors, pass_fds=(options_fd,),
                                   preexec_fn=_die_with_parent)
        broken = False
        try:
            if not fast:
                assert process.stdin is not None
                feed_dump(file, wanted, totals, process.stdin, progress)
        except BrokenPipeError:
            broken = True  # the client stopped: its message says why
        finally:
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except BrokenPipeError:
                    broken = True
            code = process.wait()
        if code != 0 or broken:
            errors.seek(0)
            raise _tool_error(f"restore {manifest.path}: {Path(tools[1]).name}", errors.read(),
                              project.url)
    if fast and progress is not None:
        for name in tables:
            progress(name, totals.get(name, 0), totals.get(name))


def fast_load(manifest: Manifest, tables: Sequence[str]) -> bool:
    """Whether the client can read the dump file itself: every table in it is loaded, and the
    file closes each table's rows by a COMMIT of their own (written with --no-autocommit;
    older dumps are filtered to add it) and is not gzipped."""
    return (set(tables) == {t.name for t in manifest.tables}
            and PER_TABLE_COMMIT in manifest.dump_options
            and dump_path(manifest).name == DUMP_FILE)
