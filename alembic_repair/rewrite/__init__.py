"""Rewriting revision files safely (libcst; new code rendered from Alembic operations).

- `rewrite_upgrade_drops` (drops.py): make a revision's ``upgrade()`` drop tables/columns so
  its ``downgrade()`` brings them back (soft: into the trash; hard: after a backup).
  (The same drops as a new revision on top of the head: `repair.drop.write_drop_revision`.)
- `rewrite_unique_columns` (unique_column.py): a NOT NULL / unique ``add_column`` on a table
  with rows, in three steps (add nullable, batched distinct backfill, NOT NULL + unique).
- `rewrite_batch` (batch.py): ALTERs SQLite cannot run in place moved into
  ``batch_alter_table`` blocks, the calls otherwise as written.
- transform.py: parsing, rendering, diff, idempotence markers, `RewriteRefused`.
"""

from __future__ import annotations

from .batch import rewrite_batch
from .drops import (
    Drop,
    DropStep,
    plan_drops,
    rewrite_upgrade_drops,
)
from .transform import Rewrite, RewriteRefused
from .unique_column import rewrite_unique_columns

__all__ = ["Drop", "DropStep", "Rewrite", "RewriteRefused", "plan_drops", "rewrite_batch",
           "rewrite_unique_columns", "rewrite_upgrade_drops"]
