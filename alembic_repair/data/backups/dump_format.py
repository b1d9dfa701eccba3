"""Reading mariadb-dump's output without a server: rows per table, the completion trailer, and
the data sections of chosen tables, for verify and restore."""

from __future__ import annotations

import gzip
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


def dump_counts(file: Path) -> dict[str, int]:
    """Rows per table in a dump file; `BackupCorrupt` if it does not decompress, does not
    parse, or lacks mariadb-dump's completion trailer."""
    counter = DumpCounter()
    tail = b""
    try:
        with _open_dump(file) as handle:
            for chunk in read_lines(handle):
                counter.feed(chunk)
                tail = (tail + chunk[-256:])[-256:]
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError) as err:
        raise corrupt(file, f"the data does not read ({type(err).__name__})") from None
    if not tail.rstrip().splitlines() or not tail.rstrip().splitlines()[-1].startswith(
            DUMP_TRAILER):
        raise corrupt(file, "the dump is incomplete (no completion trailer)")
    return counter.rows


_BOUNDARY = re.compile(rb"^(?:-- Dumping data for table `((?:[^`]|``)+)`|"
                       rb"/\*!40103 SET TIME_ZONE=@OLD_TIME_ZONE)", re.M)


def feed_dump(file: Path, wanted: set[str], totals: dict[str, int], out: IO[bytes],
               progress: Progress | None) -> None:
    """Copy the dump to `out`, keeping the header and footer (session settings) and the data
    sections of the `wanted` tables only, each closed by a COMMIT."""
    current: str | None = None  # the table whose section is being read
    strict = False
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
                if not strict:  # after the dump's own SQL_MODE: a value that does not fit fails
                    out.write(b"SET SESSION sql_mode = CONCAT_WS(',', @@sql_mode, "
                              b"'STRICT_ALL_TABLES');\n")
                    strict = True
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
