"""Reading mariadb-dump's output without a server: rows per table, the completion trailer, and
the data sections of chosen tables, for verify and restore."""

from __future__ import annotations

import gzip
import mmap
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from .checksums import Progress
from .manifest import CHUNK, MANIFEST, Manifest, corrupt

DUMP_FILE = "data.sql"  # the dump method's data; "data.sql.gz" with compress=True
DUMP_GZ = "data.sql.gz"
DUMP_TRAILER = b"-- Dump completed"
#: mariadb-dump's options for a backup's data (recorded in the manifest's ``dump_options``).
#: ``--no-autocommit`` closes each table's rows by a COMMIT of their own in the file itself
#: (``SET @@AUTOCOMMIT=0`` ... ``COMMIT``), so the client can load the file as it is and a
#: killed load leaves a table empty or whole; dumps without it are filtered (`feed_dump`).
PER_TABLE_COMMIT = "--no-autocommit"
DUMP_OPTIONS = ("--single-transaction", "--skip-lock-tables", "--no-create-info",
                "--skip-triggers", "--hex-blob", "--complete-insert", "--skip-add-locks",
                "--skip-disable-keys", "--skip-dump-date", "--tz-utc", "--no-tablespaces",
                "--default-character-set=utf8mb4", "--quick", "--extended-insert",
                PER_TABLE_COMMIT)
_STRINGS = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'|`[^`]*(?:``[^`]*)*`")
_INSERT_RAW = re.compile(rb"\nINSERT INTO `((?:[^`]|``)+)` ")  # literal prefix: a fast search
_INSERT_BLANK = re.compile(rb"^INSERT INTO '' \((?:''(?:, ?)?)*\) VALUES ", re.M)
_SECTION = re.compile(rb"^-- Dumping data for table `((?:[^`]|``)+)`$")


def _unquote(name: bytes) -> str:
    return name.replace(b"``", b"`").decode("utf-8")


def _headers(chunk: bytes) -> list[tuple[int, str]]:
    """(offset, table) of every line of `chunk` that starts an INSERT."""
    return [(m.start(), _unquote(m.group(1))) for m in _INSERT_RAW.finditer(b"\n" + chunk)]


def _open_dump(file: Path) -> BinaryIO:
    if file.name.endswith(".gz"):
        return gzip.open(file, "rb")  # type: ignore[return-value]
    return file.open("rb")


class DumpCounter:
    """Counts the rows per table in a mariadb-dump data stream fed in line-complete chunks.

    String literals and quoted names are blanked first (the dump escapes newlines inside
    strings, so no literal spans two lines; --hex-blob writes binary as 0x...), after which
    each ``(`` inside an INSERT's VALUES list starts one row."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.current: str | None = None  # the table of an INSERT still open at a chunk's end

    def feed(self, chunk: bytes) -> None:
        if b"),(" not in chunk:  # one row per line (mariadb-dump 10.11+): count line starts
            self._feed_lines(chunk)
            return
        names = [name for _, name in _headers(chunk)]
        blank = _STRINGS.sub(b"''", chunk)
        starts = list(_INSERT_BLANK.finditer(blank))
        if len(starts) != len(names):
            raise ValueError("an INSERT statement does not parse")
        pieces: list[tuple[str | None, int, int]] = []
        first = starts[0].start() if starts else len(blank)
        pieces.append((self.current, 0, first))
        for i, match in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(blank)
            pieces.append((names[i], match.end(), end))
        self.current = None
        for name, start, end in pieces:
            if name is None:
                continue
            stop = blank.find(b";\n", start, end)
            self.rows[name] = self.rows.get(name, 0) + blank.count(
                b"(", start, end if stop < 0 else stop)
            self.current = name if stop < 0 else None

    def _feed_lines(self, chunk: bytes) -> None:
        """No ``),(`` anywhere: every row after an INSERT's first one starts a line with ``(``
        (a raw newline never occurs inside a string of the dump)."""
        headers = _headers(chunk)
        pieces: list[tuple[str | None, int, int, int]] = [
            (self.current, 0, headers[0][0] if headers else len(chunk), 0)]
        for i, (offset, table_name) in enumerate(headers):
            end = headers[i + 1][0] if i + 1 < len(headers) else len(chunk)
            pieces.append((table_name, offset, end, 1))
        self.current = None
        for name, start, end, first in pieces:
            if name is None:
                continue
            stop = chunk.find(b";\n", start, end)
            stop = end if stop < 0 else stop
            rows = first + chunk.count(b"\n(", start, stop)
            if not first and chunk.startswith(b"(", start):
                rows += 1
            self.rows[name] = self.rows.get(name, 0) + rows
            self.current = name if stop == end else None


def read_lines(handle: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """Chunks of about `size` bytes that end at a newline (the last one may not)."""
    rest = b""
    while block := handle.read(size):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        rest = block[cut:]
        yield block[:cut]
    if rest:
        yield rest


_SECTION_MARK = b"\n-- Dumping data for table `"
_ANY_INSERT = b"\nINSERT INTO "
_WINDOW = 1 << 20


def _line_counts(file: Path) -> dict[str, int] | None:
    """Rows per table of an uncompressed dump with one row per line (mariadb-dump 10.11+),
    counted at C speed: in each table's section its INSERT statements follow one another and
    every line of them is one row (a raw newline never occurs inside a string of the dump),
    so the rows are the newlines from the first INSERT to the end of the last. None when the
    file does not have that shape (an INSERT's first line holding ``),(``, an INSERT into
    another table than its section's, something between two INSERTs): `DumpCounter` then
    reads it."""
    try:
        with file.open("rb") as handle, \
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _sections(data)
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # e.g. an empty file: DumpCounter says what is wrong


def _release(data: mmap.mmap, upto: int) -> None:
    """Drop the mapped pages before `upto` from this process (they stay in the page cache):
    a file read once from start to end keeps the process's memory flat, whatever its size."""
    upto -= upto % mmap.PAGESIZE
    if upto > 0 and hasattr(mmap, "MADV_DONTNEED"):
        data.madvise(mmap.MADV_DONTNEED, 0, upto)


def _find(data: mmap.mmap, needle: bytes, start: int, end: int | None = None) -> int:
    """`data.find`, a window at a time, dropping each window's pages once searched: a long
    search (the next table's section) does not map the whole file at once."""
    end = len(data) if end is None else end
    while start < end:
        stop = min(start + _WINDOW, end)
        found = data.find(needle, start, min(stop + len(needle) - 1, end))
        if found >= 0:
            return found
        _release(data, stop)
        start = stop
    return -1


def _sections(data: mmap.mmap) -> dict[str, int] | None:
    pos = _find(data, _SECTION_MARK, 0)
    if _find(data, _ANY_INSERT, 0, len(data) if pos < 0 else pos) >= 0:
        return None
    rows: dict[str, int] = {}
    while pos >= 0:
        start = pos + len(_SECTION_MARK)
        close = data.find(b"`\n", start)
        if close < 0:
            return None
        own = b"\nINSERT INTO `" + data[start:close] + b"` "
        pos = _find(data, _SECTION_MARK, close)
        end = len(data) if pos < 0 else pos
        first = insert = _find(data, _ANY_INSERT, close, end)
        if first < 0:
            continue
        while True:
            line_end = data.find(b"\n", insert + 1, end)
            if data[insert:insert + len(own)] != own or line_end < 0 or \
                    data.find(b"),(", insert, line_end) >= 0:
                return None
            following = _find(data, _ANY_INSERT, line_end, end)
            if following < 0:
                break
            if data[following - 1:following] != b";":
                return None  # something between two INSERTs
            insert = following
            _release(data, insert)
        stop = _find(data, b";\n", insert, end)
        if stop < 0:
            return None
        count = 0
        for window in range(first + 1, stop + 2, _WINDOW):
            count += data[window:min(window + _WINDOW, stop + 2)].count(b"\n")
            _release(data, window + _WINDOW)
        name = _unquote(data[start:close])
        rows[name] = rows.get(name, 0) + count
    return rows


def dump_counts(file: Path) -> dict[str, int]:
    """Rows per table in a dump file; `BackupCorrupt` if it does not decompress, does not
    parse, or lacks mariadb-dump's completion trailer."""
    if not file.name.endswith(".gz"):
        found = _line_counts(file)
        if found is not None:
            _check_trailer(file)
            return found
    counter = DumpCounter()
    tail = b""
    try:
        with _open_dump(file) as handle:
            for chunk in read_lines(handle):
                counter.feed(chunk)
                tail = (tail + chunk[-256:])[-256:]
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError) as err:
        raise corrupt(file, f"the data does not read ({type(err).__name__})") from None
    _check_tail(file, tail)
    return counter.rows


def _check_trailer(file: Path) -> None:
    try:
        with file.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 256))
            tail = handle.read()
    except OSError as err:
        raise corrupt(file, f"the data does not read ({type(err).__name__})") from None
    _check_tail(file, tail)


def _check_tail(file: Path, tail: bytes) -> None:
    if not tail.rstrip().splitlines() or not tail.rstrip().splitlines()[-1].startswith(
            DUMP_TRAILER):
        raise corrupt(file, "the dump is incomplete (no completion trailer)")


_BOUNDARY = re.compile(rb"^(?:-- Dumping data for table `((?:[^`]|``)+)`|"
                       rb"/\*!40103 SET TIME_ZONE=@OLD_TIME_ZONE)", re.M)


def feed_dump(file: Path, wanted: set[str], totals: dict[str, int], out: IO[bytes],
               progress: Progress | None) -> None:
    """Copy the dump to `out`, keeping the header and footer (session settings) and the data
    sections of the `wanted` tables only, each closed by a COMMIT. No strict ``sql_mode`` is
    added: the rows only ever go into tables defined exactly as in the backup (the target when
    its columns are, else a scratch schema built from the backup's DDL), and strict mode would
    fail the values mariadb-dump writes for generated columns (1906, ignored by the server)."""
    current: str | None = None  # the table whose section is being read
    counter = DumpCounter() if progress is not None else None

    def segment(data: bytes) -> None:
        if current is not None and current not in wanted:
            return
        out.write(data)
        if counter is not None and progress is not None and current is not None and data:
            counter.feed(data)
            progress(current, counter.rows.get(current, 0), totals.get(current))

    out.write(b"SET autocommit=0;\n")
    with _open_dump(file) as handle:
        for chunk in read_lines(handle):
            start = 0
            for match in _BOUNDARY.finditer(chunk):
                segment(chunk[start:match.start()])
                start = match.start()
                if current is not None and current in wanted:
                    out.write(b"COMMIT;\n")
                current = _unquote(match.group(1)) if match.group(1) else None
                if current in wanted and progress is not None:
                    progress(current, 0, totals.get(current))
            segment(chunk[start:])
    out.write(b"COMMIT;\n")


def dump_path(manifest: Manifest) -> Path:
    """The dump file of a dump backup; `BackupCorrupt` unless every table is in the one file
    the manifest lists."""
    names = {info.file for info in manifest.tables}
    name = names.pop() if len(names) == 1 else None
    if manifest.tables and (name not in (DUMP_FILE, DUMP_GZ) or name not in manifest.files):
        raise corrupt(manifest.path / MANIFEST, f"the tables are not all in one listed "
                       f"{DUMP_FILE} or {DUMP_GZ}")
    return manifest.path / (name or DUMP_FILE)
