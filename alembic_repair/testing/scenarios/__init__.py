"""Named scenarios: each builds one broken Alembic setup from scratch, as a real project.

A scenario writes a project under an empty folder (``app/models.py``, ``pyproject.toml``,
``alembic.ini``, ``alembic/env.py``, revision files) and brings a real database (SQLite or
MariaDB, given by URL) into the broken state the failure-mode research describes, with rows in
the tables. Every step is what a user really does: revision files are written as text, the
database is changed by ``alembic.command`` (run in-process on the given URL), by
``Base.metadata.create_all`` or by plain SQL. Nothing here imports alembic_repair's diagnosis.

``Scenario.expect`` lists what ``doctor`` must report: ``(code, location substring)``, the
location being ``None`` where more than one place would be right. Locations follow doctor's
conventions: a file relative to the project root (``alembic/versions/ccc333_add_author_email.py``,
``alembic.ini``), the version table as ``alembic_version``, a table as its name (``post``), a
column as ``table.column``. Other findings may come with a scenario (a database behind head also
differs from the models); only the listed ones are the scenario's point.

How doctor must be run on a built scenario: with the scenario's database URL (``--url`` or
``DATABASE_URL``), except for the scenarios in `URL_FROM_INI` (the broken URL *is* the one in
alembic.ini, so doctor must find it there: no ``--url``, no ``DATABASE_URL``).

The base project: models ``author`` (id, name, email) and ``post`` (id, title, body, views,
created_at, author_id -> author.id, indexed); alembic.ini, env.py and script.py.mako written by
`alembic_repair.engine.scaffold`; history ``aaa111`` (create author) -> ``bbb222`` (create post) ->
``ccc333`` (add author.email); upgraded to head; 2 authors and 3 posts. Its models equal head.

Where it lives: `builders` (the base project's models, rows and revision files, Alembic
in-process), one module per family of breakage (`broken_history`, `drifted_database`,
`broken_config`, `unsafe_pending`), and `catalogue` (`Scenario`, `SCENARIOS`, `build`). This
package re-exports their public names, so ``scenarios.base_project(...)`` keeps working.
"""

from __future__ import annotations

from .broken_history import DDD444_IMPORT, DDD444_SYNTAX
from .builders import (
    AAA,
    AUTHOR,
    AUTHOR_BEFORE_EMAIL,
    AUTHOR_ROWS,
    BBB,
    BBB222_DOWNGRADE,
    CCC,
    HEAD,
    MODELS_HEADER,
    MODELS_SPEC,
    POST,
    POST_ROWS,
    VERSIONS,
    aaa111,
    backend_of,
    base_project,
    base_revisions,
    bbb222,
    ccc333,
    create_all,
    edit,
    execute,
    insert_rows,
    models_py,
    percent_encoded,
    project_modules,
    revision_py,
    run_alembic,
    set_ini_url,
    stamp,
    stock_env_py,
    upgrade,
    versions,
    write_app,
    write_revisions,
    write_scaffold,
)
from .catalogue import SCENARIOS, URL_FROM_INI, Scenario, build
from .drifted_database import DDD444_HALF, NAME_INDEXED
from .unsafe_pending import (
    DDD444_DROP,
    DDD444_NULLABLE,
    DDD444_PUBLIC_ID,
    DDD444_RENAME,
    DDD444_SEVERAL,
    DDD444_SHORTER,
    DDD444_SLUG,
    DDD444_STATUS,
    DDD444_UNIQUE_NAME,
    DDD444_UNNAMED,
)

__all__ = ["AAA", "aaa111", "AUTHOR", "AUTHOR_BEFORE_EMAIL", "AUTHOR_ROWS", "backend_of",
           "base_project", "base_revisions", "BBB", "bbb222", "BBB222_DOWNGRADE", "build", "CCC",
           "ccc333", "create_all", "DDD444_DROP", "DDD444_HALF", "DDD444_IMPORT", "DDD444_NULLABLE",
           "DDD444_PUBLIC_ID", "DDD444_RENAME", "DDD444_SEVERAL", "DDD444_SHORTER", "DDD444_SLUG",
           "DDD444_STATUS", "DDD444_SYNTAX", "DDD444_UNIQUE_NAME", "DDD444_UNNAMED", "edit",
           "execute", "HEAD", "insert_rows", "MODELS_HEADER", "models_py", "MODELS_SPEC",
           "NAME_INDEXED", "percent_encoded", "POST", "POST_ROWS", "project_modules", "revision_py",
           "run_alembic", "Scenario", "SCENARIOS", "set_ini_url", "stamp", "stock_env_py",
           "upgrade", "URL_FROM_INI", "VERSIONS", "versions", "write_app", "write_revisions",
           "write_scaffold"]
