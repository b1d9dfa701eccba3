"""Loading a dump or tsv backup's rows into a database (the target or a scratch schema), by the
mariadb client or by PyMySQL alone; `restore_dump.apply_dump` checks what they loaded.

Every loader fills each table in one transaction (one ``LOAD DATA`` statement, or the dump's
INSERTs between ``SET autocommit=0`` and ``COMMIT``), so a killed load leaves a table empty or
whole. PyMySQL loaders use a dedicated connection of their own (the migration lock stays on the
caller's); only the tsv loader allows ``LOAD DATA LOCAL`` on it (a dump's statements never run
on a connection that lets the server ask for a local file), and there PyMySQL sends only the
file our current ``LOAD DATA`` names (`_guard_local_file`: a server may ask for any file, on
any query); the mariadb client has no such restriction, so it never loads a tsv backup.
``LOAD DATA LOCAL`` turns the server's errors into warnings, so any warning fails the table
(rolled back)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pymysql
import pymysql.connections
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ...engine.database import engine_for
from ...engine.driver_errors import translate
from ...engine.project import Project
from ...errors import AlembicRepairError, ConfigError, DatabaseUnreachable
from ...masking import redact
from .checksums import Progress, driver_failure
from .dump_format import dump_path, feed_dump
from .dump_method import load_dump
from .manifest import Manifest, TableInfo, is_tsv
from .tsv_format import decode_line, load_data_sql, quote_name

#: load(project, manifest, tables, database, progress): the rows of `tables` into `database`
Loader = Callable[[Project, Manifest, Sequence[str], str, "Progress | None"], None]
METHODS = ("auto", "client", "python")
#: the session a tsv load runs in: rows as the backup holds them (0 stays 0 in an
#: AUTO_INCREMENT column, TIMESTAMP text in UTC), no foreign key checked (any load order)
_SESSION = ("SET SESSION FOREIGN_KEY_CHECKS = 0, UNIQUE_CHECKS = 0, time_zone = '+00:00', "
            "sql_mode = 'NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES'")
#: the server (or the client) refuses LOAD DATA LOCAL: MariaDB 4166, MySQL 1148/3948/2068
_NO_LOCAL = {1148, 2068, 3948, 4166}
_INSERT_BYTES = 1 << 20  # a fallback INSERT's size: far below any max_allowed_packet


#: the one file a LOAD DATA LOCAL of ours may send (os.fsencode of its resolved path); b""
#: while our local-infile connection is open but no LOAD DATA of ours runs; unset (None)
#: outside our loaders: PyMySQL then behaves as it always does, for its other users
_ALLOWED: ContextVar[bytes | None] = ContextVar("alembic_repair_local_file", default=None)


class LocalFileRefused(pymysql.err.OperationalError):  # type: ignore[misc]
    """The server asked for a file our LOAD DATA does not name (a rogue or confused server)."""


def _check_local_file(filename: Any) -> None:
    allowed = _ALLOWED.get()
    if allowed is None:
        return
    name = filename if isinstance(filename, bytes) else os.fsencode(filename)
    if not allowed or name != allowed:
        raise LocalFileRefused(0, f"the server asked for the local file {name!r}, which no "
                                  "LOAD DATA of this restore names; refused")


def _guard_local_file() -> None:
    """Install (once) the check PyMySQL runs before it sends a file a server's LOCAL INFILE
    request names: PyMySQL sends any file asked for, on any query of a connection opened
    with ``local_infile`` (even its connect-time ones). Older PyMySQL builds a
    ``LoadLocalFile(filename, conn)`` and calls its ``send_data()`` (refused there, after the
    empty packet that ends the reply, so the query fails cleanly), newer calls
    ``_send_local_file(filename, conn)``: both looked up as module globals when the request
    arrives."""
    module: Any = pymysql.connections
    if hasattr(module, "_send_local_file"):
        send = module._send_local_file
        if getattr(send, "_alembic_repair_guard", False):
            return

        def guarded(filename: Any, conn: Any) -> Any:
            _check_local_file(filename)
            return send(filename, conn)

        guarded._alembic_repair_guard = True  # type: ignore[attr-defined]
        module._send_local_file = guarded
    elif hasattr(module, "LoadLocalFile"):
        base = module.LoadLocalFile
        if getattr(base, "_alembic_repair_guard", False):
            return

        class Guarded(base):  # type: ignore[misc, valid-type]
            _alembic_repair_guard = True

            def send_data(self) -> Any:
                try:
                    _check_local_file(self.filename)
                except LocalFileRefused:  # no byte of it: the empty packet ends the reply
                    self.connection.write_packet(b"")
                    raise
                return super().send_data()

        module.LoadLocalFile = Guarded


@contextmanager
def _allow_file(path: str) -> Iterator[None]:
    token = _ALLOWED.set(os.fsencode(path))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def client_program() -> str | None:
    """The mariadb (or mysql) client on PATH."""
    return shutil.which("mariadb") or shutil.which("mysql")


def pick_loader(conn: Connection, manifest: Manifest, method: str) -> Loader:
    """The loader for a dump or tsv backup by `method`: ``client``, the mariadb client (a
    dump as `load_dump` feeds it; never a tsv backup: the client would send any file the
    server asks for, see `_guard_local_file`); ``python``,
    PyMySQL only (a dump's statements one by one, a tsv backup by ``LOAD DATA LOCAL INFILE``
    or, when the server's ``local_infile`` is OFF, multi-row INSERTs); ``auto``, a dump by
    the client when on PATH, else by Python, a tsv backup by Python. `ConfigError` before
    anything changed if it cannot run here."""
    action = f"restore {manifest.path}"
    check_method(method, action)
    if method == "client" and is_tsv(manifest):
        raise ConfigError(f"{action}: a tsv backup is loaded by LOAD DATA through PyMySQL; "
                          "use method 'python' or 'auto'")
    if method == "client" or (method == "auto" and not is_tsv(manifest) and client_program()):
        if client_program() is None:
            raise ConfigError(f"{action}: method 'client' needs the mariadb (or mysql) client "
                              "on PATH; install it (Debian: apt-get install mariadb-client), "
                              "or use method 'python'")
        return load_dump
    if not is_tsv(manifest):
        return load_dump_python
    return load_tsv_python if local_infile(conn) else load_tsv_inserts


def check_method(method: str, action: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"{action}: unknown method {method!r}; use auto, client or python")


def local_infile(conn: Connection) -> bool:
    return bool(int(conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar() or 0))


@contextmanager
def _raw_connection(project: Project, *, local: bool) -> Iterator[Any]:
    """A dedicated PyMySQL connection to the project's database (our engine's settings; with
    ``local_infile`` when `local`), autocommit off; closed afterwards."""
    url = project.url.parsed
    token = None
    if local:
        url = url.update_query_dict({"local_infile": "1"})
        _guard_local_file()
        token = _ALLOWED.set(b"")  # no file at all, until a LOAD DATA of ours names one
    engine = engine_for(url)
    try:
        try:
            proxy = engine.raw_connection()
        except SQLAlchemyError as err:
            raise translate(err, project.url, project.url_source) from None
        try:
            yield proxy.driver_connection
        finally:
            with suppress(Exception):  # a dead connection
                proxy.close()
    finally:
        engine.dispose()
        if token is not None:
            _ALLOWED.reset(token)


def _driver_error(project: Project, manifest: Manifest, name: str, err: Exception
                  ) -> AlembicRepairError:
    """`err` from a raw cursor as one line (a lost connection: `DatabaseUnreachable`)."""
    lost = driver_failure(f"restore {manifest.path}: table {name}", err)
    if isinstance(lost, DatabaseUnreachable):
        return type(lost)(redact(str(lost), project.url))
    detail = (str(err.args[1]) if len(err.args) > 1 else str(err)).strip().splitlines()
    return AlembicRepairError(redact(f"restore {manifest.path}: table {name}: the server "
                                     f"refused the rows: {detail[0] if detail else err!r}",
                                     project.url))


def _rollback(raw: Any) -> None:
    """Roll back on the way out of an error: a dead connection's own error is not the one."""
    with suppress(Exception):
        raw.rollback()


def _info(manifest: Manifest, name: str) -> TableInfo:
    info = manifest.table(name)
    assert info is not None
    return info


def _tsv_file(manifest: Manifest, name: str) -> str:
    info = _info(manifest, name)
    assert info.file is not None
    return str((manifest.path / info.file).resolve())


def _tsv_sql(manifest: Manifest, name: str, database: str) -> str:
    info = _info(manifest, name)
    return load_data_sql(name, info.columns, info.hex, _tsv_file(manifest, name), database)


def _first_warning(cursor: Any, harmless: frozenset[int] = frozenset()) -> str | None:
    """The first warning of the statement `cursor` just ran, other than `harmless` codes (its
    OK packet counts them: no round trip when there is none)."""
    if cursor._result is None or not cursor._result.warning_count:
        return None
    cursor.execute("SHOW WARNINGS")
    return next((f"{message} ({level} {code})" for level, code, message in cursor.fetchall()
                 if code not in harmless), None)


def load_tsv_python(project: Project, manifest: Manifest, tables: Sequence[str], database: str,
                    progress: Progress | None) -> None:
    """Each tsv file by one ``LOAD DATA LOCAL INFILE`` through PyMySQL; a server that turns
    it down meanwhile gets the rest as multi-row INSERTs (`load_tsv_inserts`)."""
    with _raw_connection(project, local=True) as raw:
        cursor = raw.cursor()
        cursor.execute(_SESSION)
        for i, name in enumerate(tables):
            total = _info(manifest, name).rows
            if progress is not None:
                progress(name, 0, total)
            try:
                with _allow_file(_tsv_file(manifest, name)):
                    cursor.execute(_tsv_sql(manifest, name, database))
                warning = _first_warning(cursor)
            except pymysql.MySQLError as err:
                _rollback(raw)
                if err.args and err.args[0] in _NO_LOCAL:
                    return _insert_tables(project, manifest, tables[i:], database, progress,
                                          raw)
                raise _driver_error(project, manifest, name, err) from None
            if warning is not None:
                _rollback(raw)
                raise _driver_error(project, manifest, name, ValueError(0, warning))
            raw.commit()
            if progress is not None:
                progress(name, total, total)
    return None


def load_tsv_inserts(project: Project, manifest: Manifest, tables: Sequence[str],
                     database: str, progress: Progress | None) -> None:
    """The tsv files parsed in Python and sent as multi-row INSERTs (a server whose
    ``local_infile`` is OFF); each table in one transaction."""
    with _raw_connection(project, local=False) as raw:
        _insert_tables(project, manifest, tables, database, progress, raw)


def _insert_tables(project: Project, manifest: Manifest, tables: Sequence[str], database: str,
                   progress: Progress | None, raw: Any) -> None:
    cursor = raw.cursor()
    cursor.execute(_SESSION)
    for name in tables:
        info = _info(manifest, name)
        assert info.file is not None
        if progress is not None:
            progress(name, 0, info.rows)
        try:
            for done in _insert_rows(cursor, info, manifest.path / info.file, database):
                if progress is not None:
                    progress(name, done, info.rows)
        except pymysql.MySQLError as err:
            _rollback(raw)
            raise _driver_error(project, manifest, name, err) from None
        raw.commit()


def _literal(value: bytes | None, hexed: bool) -> bytes:
    if value is None:
        return b"NULL"
    if hexed:  # the file's hex, as a binary string (UNHEX: never a number)
        return b"UNHEX('" + value + b"')"
    value = (value.replace(b"\\", b"\\\\").replace(b"'", b"\\'").replace(b"\x00", b"\\0"))
    return b"_binary'" + value + b"'"


def _insert_rows(cursor: Any, info: TableInfo, file: Path, database: str) -> Iterator[int]:
    """INSERTs of about `_INSERT_BYTES` each; yields the rows sent so far after each."""
    hexed = [c in set(info.hex) for c in info.columns]
    head = (f"INSERT INTO {quote_name(database)}.{quote_name(info.name)} ("
            + ", ".join(quote_name(c) for c in info.columns) + ") VALUES ").encode("utf-8")
    batch: list[bytes] = []
    size = done = 0
    with file.open("rb") as handle:
        for line in handle:
            values = decode_line(line[:-1] if line.endswith(b"\n") else line)
            row = b"(" + b",".join(_literal(v, h) for v, h in zip(values, hexed, strict=True)
                                   ) + b")"
            batch.append(row)
            size += len(row)
            if size >= _INSERT_BYTES:
                cursor.execute(head + b",".join(batch))
                done += len(batch)
                batch, size = [], 0
                yield done
    if batch:
        cursor.execute(head + b",".join(batch))
        yield done + len(batch)



class _Statements:
    """A binary file object that runs what `feed_dump` writes, one statement at a time (each
    ends a line with ``;``: a raw LF never occurs inside a string of the dump); comment
    lines between statements are dropped."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.rest = bytearray()

    def write(self, data: bytes) -> int:
        self.rest += data
        start = 0
        while (end := self.rest.find(b";\n", start)) >= 0:
            self._run(bytes(self.rest[start:end + 1]))
            start = end + 2
        del self.rest[:start]
        return len(data)

    def _run(self, statement: bytes) -> None:
        body = _COMMENTS.sub(b"", statement).strip()
        if not body or body == b";":
            return
        self.cursor.execute(body)  # bytes, no args: sent as they are (no % formatting)
        warning = _first_warning(self.cursor, _HARMLESS)
        if warning is not None:
            raise ValueError(0, warning)


_COMMENTS = re.compile(rb"\A(?:[ \t]*(?:--[^\n]*)?\n)+")
#: every warning fails the table, except the one for the value mariadb-dump writes for a
#: generated column (1906: the server ignores it and computes the column)
_HARMLESS = frozenset({1906})


def load_dump_python(project: Project, manifest: Manifest, tables: Sequence[str],
                     database: str, progress: Progress | None) -> None:
    """The dump's statements for `tables` (`feed_dump`: header, the tables' sections each
    closed by a COMMIT, footer) sent one by one through PyMySQL."""
    totals = {t.name: t.rows for t in manifest.tables}
    current = {"table": ""}

    def seen(name: str, done: int, total: int | None) -> None:
        current["table"] = name
        if progress is not None:
            progress(name, done, total)

    with _raw_connection(project, local=False) as raw:
        cursor = raw.cursor()
        cursor.execute(f"USE {quote_name(database)}")
        out = _Statements(cursor)
        try:
            feed_dump(dump_path(manifest), set(tables), totals, out, seen)  # type: ignore[arg-type]
            if out.rest.strip():
                out._run(bytes(out.rest))
        except (pymysql.MySQLError, ValueError) as err:
            _rollback(raw)
            raise _driver_error(project, manifest, current["table"] or "?", err) from None
        _rollback(raw)
