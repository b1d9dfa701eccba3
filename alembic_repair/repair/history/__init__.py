"""Repairs of the revision history itself: a missing intermediate revision (AR203), a history
that cannot build an empty database (AR404), and the pieces `squash` shares with them.

Both repairs rebuild a revision from schemas, never from guesses:

* **the schema after a revision** comes from the live database: its tables are rebuilt on a
  scratch database and the ``downgrade()`` of every revision the database applied after that
  point runs there, newest first (a revision's downgrade is its own statement of what it added);
* **the schema before a revision** is the replay of its ancestors on a scratch database;
* the difference is rendered as a revision through the project's ``script.py.mako`` (Alembic's
  renderer), with the id and ``down_revision`` chosen here (Alembic's own writer insists on
  loading the broken history first);
* ``down_revision`` of an existing file is changed with libcst (the assignment and the
  ``Revises:`` line of the docstring), never with a regular expression on the source;
* the result is **proved**: the new history is replayed from an empty database, and the schema
  it gives at the revision the database records must equal the live schema. A repair whose
  proof fails is taken back (the written file goes into the backup folder, the link is
  restored) and reported: nothing half-repaired stays.

Databases already migrated need no restamp: a baseline inserted before the old base is an
ancestor of every revision they record, so Alembic counts it as applied and never runs it
there; a recreated intermediate revision keeps the missing id, so a database recording it is
right as it is.

Modules: `files` (rendering a revision, relinking ``down_revision``: `Relink`), `proof`
(scratch databases: the schema before a revision, and the proof), `missing` (AR203:
`RecreateMissing`), `baseline` (AR404: `InsertBaseline`), `bridge` (AR404 when a later
revision needs a table made outside the migrations: `InsertBridge`, before that revision).
"""

from __future__ import annotations

from .baseline import InsertBaseline, plan_baseline
from .bridge import InsertBridge, plan_bridge
from .files import Relink, read_scripts_of, relink_file, render_revision
from .missing import RecreateMissing, missing_parent, plan_missing_revision
from .proof import (
    by_revision,
    invoke_ops,
    kept_tables,
    prove,
    reflect_metadata,
    schema_after_downgrades,
)

__all__ = ["InsertBaseline", "InsertBridge", "RecreateMissing", "Relink", "by_revision",
           "invoke_ops", "kept_tables", "missing_parent", "plan_baseline",
           "plan_bridge", "plan_missing_revision", "prove", "read_scripts_of", "reflect_metadata",
           "relink_file", "render_revision", "schema_after_downgrades"]
