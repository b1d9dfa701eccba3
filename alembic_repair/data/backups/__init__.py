"""Verified logical backups (design section 5): back up, verify, restore without losing a row.

``backup`` writes ``.alembic_repair/backups/<UTC stamp>/`` (folders 0700, files 0600), under the
migration lock so no migration runs meanwhile (`backup_locked` / `restore_locked` for a caller
that already holds it). Two methods:

* SQLite: the online backup API (`sqlite3.Connection.backup`) into ``database.sqlite``.
* MySQL/MariaDB, ``method="python"``: inside one consistent snapshot, per user table
  (`is_user_table`, plus ``alembic_version``) its ``SHOW CREATE TABLE`` (in ``schema.json``) and
  its rows, streamed with a server-side cursor (never a whole table in memory), into
  ``<table>.jsonl.gz``: one JSON array per row, values canonically encoded (`encode_value`:
  bytes as base64, Decimal, datetime, date, time and timedelta as tagged strings), so they
  decode to the same values. The content checksum (`table_checksum`) is sha256 over the
  canonically encoded rows in primary-key order; it is the same function on the live database,
  on the SQLite backup file and (via `rows_checksum`) on the jsonl files, so ``verify``
  recomputes exactly what ``backup`` recorded.
* MySQL/MariaDB, ``method="dump"`` (``"auto"`` picks it when `dump_tools` finds mariadb-dump or
  mysqldump and the mariadb or mysql client on PATH): the DDL in ``schema.json`` as above, the
  data by ``mariadb-dump --no-create-info --hex-blob --complete-insert --tz-utc`` into
  ``data.sql`` (``compress=True``: ``data.sql.gz``, gzip level 1), written by a thread that
  reads the dump's pipe. The password never goes on a command line nor into a file: the
  connection settings reach the tool through an inherited pipe named as
  ``--defaults-extra-file=/dev/fd/N`` (`private.option_fd`); tool messages are redacted.
  *Consistency*: our session (the lock connection) takes ``LOCK TABLES ... READ`` on every
  table first, so no session can write them; then mariadb-dump runs with
  ``--single-transaction`` (its reads are not blocked by READ locks) while our session takes
  ``CHECKSUM TABLE`` and ``COUNT(*)`` per table (`table_checksum_sql`); the tables are unlocked
  only when both are done. So the dump and the recorded counts/checksums describe the same
  rows. The price is that writers wait for the duration of the backup (the Python method does
  not block writers: it reads one snapshot). *Verified as written*: the rows per table are
  counted in the dump stream (one row per line: a count of line starts; otherwise string
  literals are blanked by one C-speed regex and the tuples counted) and must equal the
  server's counts, the stream must end with mariadb-dump's completion trailer, and the sha256
  and size of the bytes written go into the manifest. ``verify`` (no server needed) checks the
  sha256, the gzip stream if any, the trailer, and recounts the rows per table.
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
complete. Each table is filled in one transaction. A dump backup is loaded by the mariadb client
(the dump filtered to the tables to fill, strict SQL mode): straight into tables whose columns
are defined exactly as in the backup (then their ``CHECKSUM TABLE`` is compared with the
backup's), and through a scratch schema ``_ar_restore_<stamp>`` into any other (checked there
against the backup, then INSERT ... SELECT of the columns the table still has, compared by
`server_checksum` over those columns); the scratch schema is dropped afterwards. A Python
backup is compared by count and checksum over the restored columns.

Where it lives: `checksums` (canonical values, table and server checksums), `manifest` (the
manifest, its seal, the database's identity, private files), `tables` (which tables, their DDL),
one module per method (`sqlite_method`, `python_method`, `dump_method`, with `dump_format`
reading the dump without a server), `writing` (backup, backup_locked), `verifying`, and
`restore_plan` / `restore_dump` / `restoring` (restore, restore_locked). This package re-exports
the names callers use, so ``backups.backup_locked(...)`` keeps working.
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
