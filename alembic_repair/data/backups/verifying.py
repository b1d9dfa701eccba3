"""Verify a backup from its own files (no server needed): every file's sha256, every table's
count and checksum recomputed, the manifest's seal."""

from __future__ import annotations

from pathlib import Path

from ...errors import BackupCorrupt
from .checksums import TableSum, rows_checksum, table_checksum
from .dump_format import _dump_counts, _dump_path
from .manifest import (
    MANIFEST,
    SQLITE_FILE,
    Manifest,
    TableInfo,
    _check_seal,
    _corrupt,
    _read_manifest,
    _sha256,
)
from .python_method import _jsonl_rows
from .sqlite_method import _readonly_sqlite


def verify(path: Path) -> Manifest:
    """Check every file's sha256 and recompute every table's count and checksum from the
    backup itself (a dump backup: its row counts, gzip stream and completion trailer; its
    checksums need a server and are compared by restore); `BackupCorrupt` (one line, naming
    the file) on the first difference."""
    return _verify(Path(path), deep=True)


def _verify(path: Path, deep: bool) -> Manifest:
    manifest = _read_manifest(path)
    streamed = (None if deep or manifest.method != "dump" or not manifest.tables
                else manifest.tables[0].file)  # checked as it was written (backup_locked)
    for name, expected in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise _corrupt(file, "the file is missing")
        if name != streamed and _sha256(file) != expected:
            raise _corrupt(file, "the file's sha256 does not match the manifest")
    if manifest.dialect == "sqlite":
        file = path / SQLITE_FILE
        try:
            with _readonly_sqlite(file) as conn:
                for info in manifest.tables:
                    _compare(path, info, table_checksum(conn, info.name, info.columns))
        except BackupCorrupt:
            raise
        except Exception as err:  # a damaged database file fails as a driver error
            raise _corrupt(file, f"the database does not read ({type(err).__name__})") from None
    elif manifest.method == "dump":
        data = _dump_path(manifest)
        if manifest.tables and deep:
            counts = _dump_counts(data)
        else:
            counts = {t.name: t.rows for t in manifest.tables}
        for name in counts.keys() - {t.name for t in manifest.tables}:
            raise _corrupt(data, f"the dump holds rows of table {name}, which the "
                           "manifest does not list")
        for info in manifest.tables:
            if counts.get(info.name, 0) != info.rows:
                raise _corrupt(path / MANIFEST, f"table {info.name}: the dump holds "
                               f"{counts.get(info.name, 0)} rows, the manifest says {info.rows}")
    else:
        for info in manifest.tables:
            if info.file is None or info.file not in manifest.files:
                raise _corrupt(path / MANIFEST, f"table {info.name} has no data file listed")
            _compare(path, info, rows_checksum(_jsonl_rows(path / info.file)))
    _check_seal(path, manifest)
    return manifest


def _compare(path: Path, info: TableInfo, found: TableSum) -> None:
    if (found.rows, found.checksum) != (info.rows, info.checksum):
        raise _corrupt(path / MANIFEST, f"table {info.name}: the data holds {found.rows} rows "
                       f"with checksum {found.checksum[:12]}, the manifest says {info.rows} "
                       f"rows with checksum {info.checksum[:12]}")
