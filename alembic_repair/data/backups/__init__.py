"""Verified logical backups (design section 5): back up, verify, restore without losing a row.

``backup`` writes ``.alembic_repair/backups/<UTC stamp>/`` (folders 0700, files 0600), under the
migration lock so no migration runs meanwhile (`backup_locked` / `restore_locked` for a caller
that already holds it). Two methods:

* SQLite: the online backup API (`sqlite3.Connection.backup`) into ``database.sqlite``; its
  content checksum (`table_checksum`) is sha256 over canonically encoded rows in primary-key
  order (`encode_value`), the same function on the live database and on the backup file.
* MySQL/MariaDB, ``method="python"`` (needs no client program): inside one consistent snapshot
  (``START TRANSACTION WITH CONSISTENT SNAPSHOT``: writers are not blocked), per user table
  (`is_user_table`, plus ``alembic_version``) its ``SHOW CREATE TABLE`` (in ``schema.json``) and
  its rows into ``<table>.tsv``, in the very format ``LOAD DATA ... CHARACTER SET binary`` reads
  (`tsv_format`): the server builds each row's escaped line in one SELECT, Python joins the raw
  bytes of each fetched batch into the file and hashes them as they go (about half the time of
  a plain PyMySQL read of the same rows). Binary columns and text that can exceed 4096 bytes
  are written as hex (`TableInfo.hex`, loaded with ``UNHEX``); FLOAT as its double. The
  checksum is ``CHECKSUM TABLE``, taken in the same snapshot (which it reads), the count is the
  snapshot's and must equal the lines written. Older backups of this method
  (``<table>.jsonl.gz``, sha256 over canonical JSON rows) still verify and restore.
* MySQL/MariaDB, ``method="dump"`` (``"auto"`` picks it when `dump_tools` finds mariadb-dump or
  mysqldump and the mariadb or mysql client on PATH, unless a table has a FLOAT column, which
  mariadb-dump writes with 6 digits: then the python method; an explicit ``"dump"`` is refused
  there): the DDL in ``schema.json`` as above, the
  data written by ``mariadb-dump --no-create-info --hex-blob --complete-insert --tz-utc
  --no-autocommit`` itself into ``data.sql`` (its stdout is the file: no Python in the byte
  stream; each table's rows end with their own COMMIT; ``compress=True``: ``data.sql.gz``,
  gzip level 1, through a Python pipe). *Consistency*: our session (the lock connection) takes
  ``LOCK TABLES ... READ`` on every table first, so no session can write them; then
  mariadb-dump runs with ``--single-transaction`` (its reads are not blocked by READ locks)
  while our session takes ``CHECKSUM TABLE`` and ``COUNT(*)`` per table
  (`table_checksum_sql`); the tables are unlocked only when both are done. So the dump and the
  recorded counts/checksums describe the same rows. The price is that writers wait for the
  duration of the backup. *Verified as written*: the file must end with mariadb-dump's
  completion trailer, its rows per table (a C-speed line count) must equal the server's
  counts, and its sha256 (hashed at C speed once written) goes into the manifest. ``verify``
  (no server needed) checks the sha256, the gzip stream if any, the trailer, and recounts the
  rows per table (`dump_format.dump_counts`). The password never goes on a command line nor
  into a file: the connection settings reach the tools through an inherited pipe named as
  ``--defaults-extra-file=/dev/fd/N`` (`private.option_fd`); tool messages are redacted; the
  tools die with our process.
  ``CHECKSUM TABLE`` is defined over the server's record format, so it is compared only for
  identical column definitions on the same server version; `server_checksum` (COUNT(*) and an
  order-independent sum of 64-bit row hashes over any chosen columns, computed in SQL) compares
  a subset of columns, for a restore into a changed schema.

``manifest.json`` records the method, the dialect, the masked URL, the database's identity
(`database_identity`: dialect plus host/port/database, or the resolved SQLite file), the tables
in foreign-key order with their row count and content checksum, the sha256 of every file, and a
seal (sha256 over the manifest itself). Files the manifest does not list (e.g. a
``project-files/`` folder added by ``reset``) are ignored. A backup that fails (disk full, a
tool's error) is removed.

``restore`` verifies first, refuses a backup of another database unless ``other_database``,
then (under the lock, behind `guards.require`) fills the tables in foreign-key order. Into a
database without any of the backup's tables it first creates them from the stored schema;
otherwise the schema there is authoritative: rows of tables it lacks, and values of columns it
lacks, are reported and stay in the backup. A table that already holds rows is not touched
(reported in ``not_empty``), unless it holds exactly the backup's rows (same count and checksum
over the restored columns: a resumed restore), then it is reported in ``already`` and counts as
complete. Each table is filled in one transaction, so a killed restore leaves each table empty
or whole and the next run resumes. A dump or tsv backup is loaded by a loader (`loaders`,
``method``: ``client``, the mariadb program, for a dump; ``python``, PyMySQL alone; ``auto``):
the dump's statements, or one ``LOAD DATA LOCAL INFILE`` per tsv file through PyMySQL, which
sends no file but the one that statement names (multi-row INSERTs parsed in Python when the
server's ``local_infile`` is OFF); a new dump whose tables are all restored is handed
to the client as it is (`dump_method.fast_load`), otherwise filtered to the tables to fill
(`dump_format.feed_dump`). Rows go straight into tables whose columns are defined exactly as in
the backup (then their ``CHECKSUM TABLE`` is compared with the backup's), and through a scratch
schema ``_ar_restore_<stamp>`` into any other (checked there against the backup, then INSERT
... SELECT of the columns the table still has, compared by `server_checksum` over those
columns); the scratch schema is dropped afterwards. SQLite backups and older jsonl backups are
inserted by SQLAlchemy and compared by count and checksum over the restored columns.

Where it lives: `checksums` (canonical values, table and server checksums), `manifest` (the
manifest, its seal, the database's identity, private files), `tables` (which tables, their
DDL), one module per method (`sqlite_method`; `python_method` with `tsv_format`; `dump_method`
with `dump_format` reading the dump without a server), `writing` (backup, backup_locked),
`verifying`, `loaders` (how a restore's rows get in), and `restore_plan` / `restore_dump` /
`restoring` (restore, restore_locked). This package re-exports the names callers use, so
``backups.backup_locked(...)`` keeps working.
"""

from __future__ import annotations

from .checksums import (
    Progress,
    decode_value,
    encode_value,
    rows_checksum,
    server_checksum,
    table_checksum,
    table_columns,
)
from .dump_method import dump_tools
from .manifest import MANIFEST, Manifest, TableInfo, database_identity
from .restore_plan import RestoreReport
from .restoring import restore, restore_locked
from .verifying import verify
from .writing import backup, backup_locked

__all__ = ["MANIFEST", "Manifest", "Progress", "RestoreReport", "TableInfo", "backup",
           "backup_locked", "database_identity", "decode_value", "dump_tools", "encode_value",
           "restore", "restore_locked", "rows_checksum", "server_checksum", "table_checksum",
           "table_columns", "verify"]
