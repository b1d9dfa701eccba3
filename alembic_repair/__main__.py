"""``python -m alembic_repair``: the same as the ``alembic-repair`` command."""

from .cli.entry import main

main()
