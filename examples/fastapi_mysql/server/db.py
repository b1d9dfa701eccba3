"""Database URL, engine and the per-request session dependency.

Nothing here connects at import time: the URL is read when the app is created
(see ``server.main.create_app``) and SQLAlchemy only connects on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import Request
from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# The example folder. This default is deliberately the same as alembic-repair's own default
# for a project (``sqlite:///<project dir>/app.db``), so the CLI and the app agree.
PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_DIR}/app.db"


def get_database_url() -> str:
    """Resolve the URL now (not at import), so tests can set ``DATABASE_URL`` first.

    1. ``DATABASE_URL`` overrides everything.
    2. ``MYSQL_HOST`` (set for the ``backend`` service in docker-compose.yml) builds the
       MariaDB URL from the same ``MYSQL_*`` variables alembic-repair reads; ``URL.create``
       escapes the password, so ``%`` and ``@`` in it are fine.
    3. Otherwise the local SQLite file ``app.db`` in the example folder.
    """
    if url := os.environ.get("DATABASE_URL"):
        return url
    if host := os.environ.get("MYSQL_HOST"):
        return URL.create(
            "mysql+pymysql",
            username=os.environ.get("MYSQL_USER"),
            password=os.environ.get("MYSQL_PASSWORD"),
            host=host,
            port=int(os.environ.get("MYSQL_PORT", "3306")),
            database=os.environ.get("MYSQL_DATABASE"),
        ).render_as_string(hide_password=False)
    return DEFAULT_DATABASE_URL


def make_engine(url: str) -> Engine:
    """Create an engine; this does not connect. ``pool_pre_ping`` survives MariaDB restarts."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # Enforce foreign keys like MariaDB does, so local runs behave the same.
        event.listen(engine, "connect", _sqlite_foreign_keys_on)
    return engine


def _sqlite_foreign_keys_on(dbapi_connection: Any, _: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The ``SessionLocal`` factory of one app, bound to its engine."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request, from the app's own ``SessionLocal``."""
    session_local: sessionmaker[Session] = request.app.state.SessionLocal
    with session_local() as session:
        yield session
