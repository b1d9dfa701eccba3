# alembic-repair-checksum: 9ae48cec89ec2d62 (edit freely: edits are kept)
"""Alembic environment, written by alembic-repair.

The URL is read at run time (never from alembic.ini, so a '%' or '@' in the password is safe);
tables soft-dropped by alembic-repair (``_ar_*``) and the ones in _AR_KEPT_TABLES are invisible to
autogenerate; SQLite gets batch mode so ALTERs it cannot do natively still work.
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


# alembic-repair: autogenerate filter (written by alembic-repair; plain Python: `alembic` runs it
# without alembic-repair). Tables named _ar_* (the trash) and the ones in _AR_KEPT_TABLES
# are invisible to autogenerate and `alembic check`; add names to the set to keep more out.
_AR_KEPT_TABLES = frozenset()


def _ar_hidden_table(name):
    """True for a table autogenerate must neither create nor drop."""
    return bool(name) and (name.startswith("_ar_") or name in _AR_KEPT_TABLES)


def _ar_include_name(user_filter=None):
    """include_name for context.configure: hidden tables (with their columns, indexes and
    constraints) are never reflected; anything else is up to `user_filter`, if given."""

    def include_name(name, type_, parent_names):
        table = name if type_ == "table" else parent_names.get("table_name")
        if type_ != "schema" and _ar_hidden_table(table):
            return False
        return user_filter(name, type_, parent_names) if user_filter else True

    return include_name


def _ar_include_object(user_filter=None):
    """include_object for context.configure: the same, for the models' objects too."""

    def include_object(obj, name, type_, reflected, compare_to):
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        if _ar_hidden_table(table):
            return False
        return user_filter(obj, name, type_, reflected, compare_to) if user_filter else True

    return include_object


def database_url():
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    here = Path(config.config_file_name or ".").resolve().parent
    try:
        from alembic_repair import Project
    except ImportError:
        # a URL with a password that `alembic-repair reset` kept out of alembic.ini
        stored = here / ".alembic_repair" / "database_url"
        if stored.is_file():
            return stored.read_text(encoding="utf-8").strip()
        return f"sqlite:///{here / 'app.db'}"
    return Project.discover(here).url


def configure(**kwargs):
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        include_name=_ar_include_name(),
        include_object=_ar_include_object(),
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
