"""Taking out of a revision what it does to tables autogenerate must not see (AR511).

A plain ``alembic revision --autogenerate`` run while env.py did not hide the trash writes
``op.drop_table('_ar_trash_...')`` (with ``drop_index`` first, in a batch block on SQLite) into
``upgrade()`` and the matching ``create_table``/``create_index`` into ``downgrade()``. These
statements are removed, not turned into soft drops: the table is already where it should be.
Nothing else of the file changes (libcst); a second run finds nothing to remove. A rename
(the tool's own soft drop renames into the trash and back) is never touched.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from ..wording import counted
from .transform import (
    TABLE_ARGUMENT,
    RevisionSource,
    Rewrite,
    Statement,
    argument,
    batch_block,
    block_body,
    literal,
    op_call,
    with_body,
)

DROPS = {"drop_table", "drop_index", "drop_constraint", "drop_column"}
CREATES = {"create_table", "create_index", "create_unique_constraint", "create_foreign_key",
           "create_check_constraint", "create_primary_key", "add_column"}


def _table(statement: Statement) -> str | None:
    call = op_call(statement)
    if call is None or call.receiver != "op" or call.method not in TABLE_ARGUMENT:
        return None
    try:
        value = literal(argument(call.call, *TABLE_ARGUMENT[call.method]))
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def _filtered(statements: list[Statement], tables: Collection[str], methods: set[str]
              ) -> tuple[list[Statement], int]:
    kept: list[Statement] = []
    removed = 0
    for statement in statements:
        try:
            batch = batch_block(statement)
        except ValueError:
            batch = None
        if batch is not None and batch.table in tables:
            inner = block_body(batch.node)
            left = [s for s in inner if not ((c := op_call(s)) is not None
                                             and c.receiver == batch.name
                                             and c.method in methods)]
            removed += len(inner) - len(left)
            if left:
                kept.append(with_body(batch.node, left))
            continue
        call = op_call(statement)
        if call is not None and call.method in methods and _table(statement) in tables:
            removed += 1
            continue
        kept.append(statement)
    return kept, removed


def remove_table_ops(path: Path, tables: Collection[str], *, dry_run: bool = False) -> Rewrite:
    """`path` without upgrade()'s drops of `tables` (and their indexes, constraints, columns)
    and without downgrade()'s statements recreating them."""
    source = RevisionSource(path)
    notes = []
    upgrade, removed = _filtered(source.bodies["upgrade"], tables, DROPS)
    if removed:
        source.set_body("upgrade", upgrade)
        downgrade, recreated = _filtered(source.bodies["downgrade"], tables, CREATES)
        if recreated:
            source.set_body("downgrade", downgrade)
        notes.append(f"removed {counted(removed, 'operation')} on {', '.join(sorted(tables))} from "
                     f"upgrade() and {recreated} from downgrade()")
    return source.finish(dry_run, notes)
