"""Verify a backup from its own files (no server needed): every file's sha256, every table's
count and checksum recomputed, the manifest's seal."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ...errors import BackupCorrupt
from ...wording import counted
from .checksums import TableSum, rows_checksum, table_checksum
from .dump_format import dump_counts, dump_path
from .manifest import (
    CHUNK,
    MANIFEST,
    SQLITE_FILE,
    Manifest,
    TableInfo,
    check_seal,
    corrupt,
    file_sha256,
    is_tsv,
    read_manifest,
)
from .python_method import jsonl_rows
from .sqlite_method import readonly_sqlite
from .tsv_format import TSV_SUFFIX


def verify(path: Path) -> Manifest:
    """Check every file's sha256 and recompute every table's count and checksum from the
    backup itself (a dump backup: its row counts, gzip stream and completion trailer; a tsv
    backup: its row counts, one per line; their checksums need a server and are compared by
    restore); `BackupCorrupt` (one line, naming the file) on the first difference."""
    return verify_backup(Path(path), deep=True)


def verify_backup(path: Path, deep: bool) -> Manifest:
    manifest = read_manifest(path)
    streamed = (None if deep or manifest.method != "dump" or not manifest.tables
                else manifest.tables[0].file)  # checked as it was written (backup_locked)
    tsv = {t.file: t for t in manifest.tables if is_tsv(manifest) and t.file is not None
           and t.file.endswith(TSV_SUFFIX)}
    for name, expected in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise corrupt(file, "the file is missing")
        if name in tsv:
            _check_tsv(file, expected, tsv[name])
        elif name != streamed and file_sha256(file) != expected:
            raise corrupt(file, "the file's sha256 does not match the manifest")
    if manifest.dialect == "sqlite":
        file = path / SQLITE_FILE
        try:
            with readonly_sqlite(file) as conn:
                for info in manifest.tables:
                    _compare(path, info, table_checksum(conn, info.name, info.columns))
        except BackupCorrupt:
            raise
        except Exception as err:  # a damaged database file fails as a driver error
            raise corrupt(file, f"the database does not read ({type(err).__name__})") from None
    elif manifest.method == "dump":
        data = dump_path(manifest)
        if manifest.tables and deep:
            counts = dump_counts(data)
        else:
            counts = {t.name: t.rows for t in manifest.tables}
        for name in counts.keys() - {t.name for t in manifest.tables}:
            raise corrupt(data, f"the dump holds rows of table {name}, which the "
                           "manifest does not list")
        for info in manifest.tables:
            if counts.get(info.name, 0) != info.rows:
                raise corrupt(path / MANIFEST, f"table {info.name}: the dump holds "
                               f"{counted(counts.get(info.name, 0), 'row')}, the manifest says "
                               f"{info.rows}")
    else:
        for info in manifest.tables:
            if info.file is None or info.file not in manifest.files:
                raise corrupt(path / MANIFEST, f"table {info.name} has no data file listed")
            if info.file not in tsv:  # an older backup's jsonl.gz
                _compare(path, info, rows_checksum(jsonl_rows(path / info.file)))
    check_seal(path, manifest)
    return manifest


def _check_tsv(file: Path, expected: str, info: TableInfo) -> None:
    """sha256 and rows (one per LF) of a tsv file, in one read at C speed."""
    digest, rows, last = hashlib.sha256(), 0, b"\n"
    with file.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    if digest.hexdigest() != expected:
        raise corrupt(file, "the file's sha256 does not match the manifest")
    if last != b"\n":
        raise corrupt(file, "the file does not end with a complete line")
    if rows != info.rows:  # the file matches its sha256: the manifest says which is wrong
        raise corrupt(file.parent / MANIFEST, f"table {info.name}: {file.name} holds {rows} "
                      f"rows, the manifest says {info.rows}")


def _compare(path: Path, info: TableInfo, found: TableSum) -> None:
    if (found.rows, found.checksum) != (info.rows, info.checksum):
        raise corrupt(path / MANIFEST, f"table {info.name}: the data holds "
                       f"{counted(found.rows, 'row')} "
                       f"with checksum {found.checksum[:12]}, the manifest says "
                       f"{counted(info.rows, 'row')} with checksum {info.checksum[:12]}")
