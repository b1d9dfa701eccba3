"""The manifest (``manifest.json``): what a backup holds and of which database, sealed so that
an edited or damaged one is caught; the private files it lists."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ... import private
from ...engine.project import Project
from ...engine.url import parse_url
from ...errors import BackupCorrupt, ConfigError

MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite"
SCHEMA_FILE = "schema.json"
FORMAT = 1
CHUNK = 1 << 20


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    rows: int
    checksum: str
    file: str | None = None  # MySQL: <table>.tsv (older backups: <table>.jsonl.gz)
    hex: tuple[str, ...] = ()  # tsv: the columns written as hex (tsv_format)


@dataclass(frozen=True)
class Manifest:
    """What a backup holds; written as ``manifest.json`` beside the data."""

    path: Path
    dialect: str
    url: str  # masked
    created_at: str
    tables: tuple[TableInfo, ...]  # foreign-key order
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    #: which database this is a backup of (`database_identity`); None in older backups
    database: dict[str, Any] | None = None
    method: str = "python"  # "python": tsv (older: jsonl.gz) or sqlite files; "dump": SQL
    #: dump: mariadb-dump's options (dump_format.DUMP_OPTIONS); absent in older dumps
    dump_options: tuple[str, ...] = ()

    def table(self, name: str) -> TableInfo | None:
        return next((t for t in self.tables if t.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        found = {"format": FORMAT, "dialect": self.dialect, "url": self.url,
                 "created_at": self.created_at,
                 "tables": [_table_dict(t) for t in self.tables],
                 "files": dict(sorted(self.files.items())), "database": self.database,
                 "method": self.method}
        return (found | {"dump_options": list(self.dump_options)}) if self.dump_options \
            else found


def _table_dict(t: TableInfo) -> dict[str, Any]:
    found = {"name": t.name, "columns": list(t.columns), "rows": t.rows,
             "checksum": t.checksum, "file": t.file}
    return (found | {"hex": list(t.hex)}) if t.hex else found  # absent: none (older ones)


def is_tsv(manifest: Manifest) -> bool:
    """A Python-method MySQL backup in the tsv format (older ones hold jsonl.gz files)."""
    return manifest.method == "python" and manifest.dialect == "mysql" and any(
        (t.file or "").endswith(".tsv") for t in manifest.tables)


def seal_of(doc: dict[str, Any]) -> str:
    """sha256 over the manifest's own content: an edited or damaged manifest is caught even
    where the data cannot be checked without a server (the dump method's checksums)."""
    body = {k: v for k, v in doc.items() if k != "seal"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode("utf-8")).hexdigest()


def check_seal(path: Path, manifest: Manifest) -> None:
    file = path / MANIFEST
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise corrupt(file, "the manifest does not parse") from None
    seal = doc.get("seal")
    if seal is None and manifest.method == "python" and not is_tsv(manifest):
        return  # written before manifests were sealed: the data checks cover it
    if seal != seal_of(doc):
        raise corrupt(file, "the manifest's seal does not match its content (it was edited "
                       "or damaged)")


def corrupt(path: Path, why: str) -> BackupCorrupt:
    return BackupCorrupt(f"backup {path}: {why}; the backup cannot be trusted, use another one")


def read_manifest(path: Path) -> Manifest:
    file = path / MANIFEST
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        tables = tuple(TableInfo(str(t["name"]), tuple(str(c) for c in t["columns"]),
                                 int(t["rows"]), str(t["checksum"]),
                                 None if t.get("file") is None else str(t["file"]),
                                 tuple(str(c) for c in t.get("hex") or ()))
                       for t in data["tables"])
        database = data.get("database")
        if database is not None and not isinstance(database, dict):
            raise TypeError("database")
        manifest = Manifest(path, str(data["dialect"]), str(data["url"]),
                            str(data["created_at"]), tables,
                            {str(k): str(v) for k, v in data["files"].items()}, database,
                            str(data.get("method", "python")),
                            tuple(str(o) for o in data.get("dump_options") or ()))
    except (FileNotFoundError, NotADirectoryError):  # a missing path, or a file
        raise ConfigError(f"{path}: no {MANIFEST} there; name a backup folder (under "
                          ".alembic_repair/backups/)") from None
    except OSError as err:  # manifest.json a folder, unreadable, ...
        raise ConfigError(f"{file}: cannot be read ({err.strerror}); name a backup folder "
                          "(under .alembic_repair/backups/)") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise corrupt(file, "the manifest does not parse") from None
    if manifest.method not in ("python", "dump") or (
            manifest.method == "dump" and manifest.dialect != "mysql"):
        raise corrupt(file, f"the manifest names an unknown method {manifest.method!r}")
    if manifest.dialect not in ("sqlite", "mysql"):
        raise corrupt(file, f"the manifest names an unknown dialect {manifest.dialect!r}")
    for name in manifest.files:
        # a listed name must not reach outside the folder
        if not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
            raise corrupt(file, f"the manifest lists a file {name!r} outside the backup")
    return manifest


_SAFE_NAME = re.compile(r"[^/\\\x00]+")
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "localhost.localdomain", "ip6-localhost"}


def database_identity(url: str) -> dict[str, Any]:
    """Which database `url` names, without credentials: the dialect plus host, port and
    database name (MySQL/MariaDB; loopback spellings are one host) or the resolved file
    (SQLite)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        where = (str(Path(database).expanduser().resolve())
                 if database and database != ":memory:" else ":memory:")
        return {"dialect": "sqlite", "path": where}
    host = (parsed.host or "localhost").strip("[]").lower()
    return {"dialect": "mysql", "host": "localhost" if host in _LOOPBACK else host,
            "port": int(parsed.port or 3306), "database": parsed.database or ""}


def describe_identity(identity: dict[str, Any]) -> str:
    if identity.get("dialect") == "sqlite":
        return f"the SQLite file {identity.get('path')}"
    return (f"the {identity.get('dialect')} database {identity.get('database')!r} at "
            f"{identity.get('host')}:{identity.get('port')}")


def mkdir_private(path: Path) -> None:
    private.private_dir(path)  # every folder it creates 0700, not only the last


def open_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_dialect(project: Project, action: str) -> str:
    dialect = project.dialect
    if dialect not in ("sqlite", "mysql", "mariadb"):
        raise ConfigError(f"{action}: the {dialect} dialect is not supported (SQLite, MySQL and "
                          "MariaDB are)")
    return "sqlite" if dialect == "sqlite" else "mysql"
