"""``python -m alembic_repair``: the same as the ``alembic-repair`` command."""

from .entry import main

main()
