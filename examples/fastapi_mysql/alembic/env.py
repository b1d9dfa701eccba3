# alembic-repair-checksum: 00327d38b58317e3 (edit freely: edits are kept)
"""Alembic environment, written by alembic-repair.

The URL is read at run time (never from alembic.ini, so a '%' or '@' in the password is safe);
tables soft-dropped by alembic-repair (``_ar_trash_*``) are invisible to autogenerate; SQLite gets
batch mode so ALTERs it cannot do natively still work.
"""

import os
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import MetaData, create_engine, pool

from server.models import Base as _models

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = _models
if not isinstance(target_metadata, MetaData):
    target_metadata = target_metadata.metadata

TRASH_PREFIX = "_ar_trash_"


def include_name(name, type_, parent_names):
    return not (type_ == "table" and name and name.startswith(TRASH_PREFIX))


def database_url():
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    here = Path(config.config_file_name or ".").resolve().parent
    try:
        from alembic_repair import Project
    except ImportError:
        return f"sqlite:///{here / 'app.db'}"
    return Project.discover(here).url


def configure(**kwargs):
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        include_name=include_name,
        **kwargs,
    )


def run_migrations_offline():
    url = database_url()
    configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
              render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        run_with(connection)


def run_with(connection):
    configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
