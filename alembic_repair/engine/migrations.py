"""Running Alembic's own commands against the project's database, on our connection.

We never re-implement what Alembic does: `alembic.command` runs upgrades and stamps, the user's
(or our) env.py runs as usual. We pass the open connection through ``config.attributes``
(Alembic's documented recipe) so that the run happens inside our lock and transaction, and put
the URL into the config with every ``%`` doubled so ConfigParser never sees a raw one.
"""

from __future__ import annotations

import argparse
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ..errors import IniError, MigrationFailed, NeedsRepair, RefusedUnsafe
from ..masking import redact
from .driver_errors import driver_message
from .project import Project
from .state.graph import RevisionGraph, history_chain
from .state.recorder import (  # the version table lives there; callers say migrations.<name>
    DEFAULT_VERSION_WIDTH,
    read_versions,
    version_table_of,
)
from .state.recorder import check_version_column as check_version_column
from .state.recorder import current_heads as current_heads
from .state.recorder import log_stamp as log_stamp
from .state.scripts import read_scripts


def alembic_config(
    project: Project, connection: Connection | None = None, output: TextIO | None = None
) -> Config:
    """An Alembic Config for `project`: its alembic.ini when there is one, our URL and folder."""
    unreadable = any(isinstance(problem, IniError) for problem in project.problems)
    ini = str(project.ini_path) if project.ini_path.is_file() and not unreadable else None
    config = Config(ini, output_buffer=output, cmd_opts=command_options())
    config.set_main_option("script_location", str(project.script_location))
    config.set_main_option("sqlalchemy.url", project.url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def command_options(**given: Any) -> argparse.Namespace:
    """What ``alembic``'s own command line would pass: env.py code reads these
    (``config.cmd_opts.autogenerate``, ``context.get_x_argument()``)."""
    defaults: dict[str, Any] = {
        "quiet": True, "x": [], "autogenerate": False, "sql": False, "tag": None,
        "raiseerr": True, "head": "head", "splice": False, "branch_label": None,
        "version_path": None, "rev_id": None, "depends_on": None, "message": None,
        "purge": False, "verbose": False, "name": "alembic",
    }
    return argparse.Namespace(**{**defaults, **given})


def _place_in_versions(err: BaseException, project: Project) -> str | None:
    """``versions/<file>.py:<line>`` of the deepest frame inside a revision file."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{project.rel(Path(err.filename))}:{err.lineno}"
    found = None
    for frame, line in traceback.walk_tb(err.__traceback__):
        path = Path(frame.f_code.co_filename)
        if path.parent == project.versions_dir:
            found = f"{project.rel(path)}:{line}"
    return found


def check_history(project: Project) -> None:
    """Refuse, naming file and line, a history Alembic would load wrongly or not at all."""
    files = read_scripts(project.versions_dir)
    hint = "then run bootstrap again"
    for script in files:
        if script.error is not None:
            where = project.rel(script.path) + (f":{script.error_line}"
                                                  if script.error_line else "")
            fix = "fix that line" if script.error_line else "fix or restore that file"
            raise NeedsRepair(f"{where}: revision file cannot be read ({script.error}); {fix}, "
                              f"{hint}")
        if script.revision is None:
            raise NeedsRepair(f"{project.rel(script.path)}: no `revision = '...'` line, so it "
                              f"is not a revision file; move it out of versions/, {hint}")
    graph = RevisionGraph.of(files)
    for rev, same in graph.duplicates().items():
        names = ", ".join(project.rel(s.path) for s in same)
        raise NeedsRepair(f"{names}: revision id {rev!r} is defined {len(same)} times (Alembic "
                          f"would silently use one); give the copy a new id, {hint}")
    for script, parent in graph.dangling():
        raise NeedsRepair(
            f"{project.rel(script.path)}: revision {script.revision!r} has down_revision "
            f"{parent!r}, which no revision file defines; restore the missing file (git "
            f"checkout) or fix down_revision, {hint}")
    if members := graph.cycle():
        names = ", ".join(project.rel(s.path) for s in members)
        ids = " -> ".join(str(s.revision) for s in members)
        raise NeedsRepair(f"{names}: revisions {ids} form a cycle (each descends from the other); "
                          f"fix their down_revision, {hint}")


def scripts(project: Project) -> ScriptDirectory:
    """The revision scripts, loaded by Alembic; a broken history is reported, not raised raw."""
    check_history(project)
    directory = ScriptDirectory.from_config(alembic_config(project))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what Alembic warns about was checked above
            directory.revision_map.heads  # noqa: B018  (imports every revision file)
    except Exception as err:  # revision files are the user's code: anything may be raised
        place = _place_in_versions(err, project) or project.rel(project.versions_dir)
        detail = redact(f"{type(err).__name__}: {err}".splitlines()[0], project.url)
        raise NeedsRepair(
            f"{place}: importing the revision file failed ({detail}); fix or restore that "
            "revision file (git checkout), then run bootstrap again"
        ) from err
    return directory


def revisions(project: Project) -> dict[str, Script]:
    directory = scripts(project)
    return {s.revision: s for s in directory.walk_revisions()}


class _Branch:
    """What ``Connection.connect()`` gave before SQLAlchemy 2.0: the same connection, which
    leaving ``with`` (or ``close()``) does not close."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def __enter__(self) -> Connection:
        return self._connection

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@contextmanager
def lending_connect(config: Any) -> Iterator[None]:
    """While an Alembic command runs with our Connection in ``config.attributes['connection']``
    (Alembic's cookbook, "Sharing a Connection across one or more programmatic migration
    commands"), an env.py written for an Engine (JupyterHub's: ``with connectable.connect()
    as connection:``) gets a non-closing branch of it; env.py using the Connection itself
    sees no difference (it is still a `Connection`)."""
    attributes = getattr(config, "attributes", None)
    connection = attributes.get("connection") if isinstance(attributes, dict) else None
    if not isinstance(connection, Connection) or hasattr(connection, "connect"):
        yield
        return
    connection.connect = lambda: _Branch(connection)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        with suppress(AttributeError):
            del connection.connect  # type: ignore[attr-defined]


def run_alembic(project: Project, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """Run one of Alembic's commands; its failures become one readable line."""
    try:
        with lending_connect(args[0] if args else None):
            fn(*args, **kwargs)
    except CommandError as err:
        raise NeedsRepair(
            f"{what}: {redact(str(err), project.url)}; run `alembic-repair doctor` to see why"
        ) from err
    except Exception as err:  # a revision's own code, env.py, or the database refused
        place = _place_in_versions(err, project)
        if isinstance(err, DBAPIError):
            code = getattr(err.orig, "args", (None,))[0]
            detail = driver_message(err) + (f" (error {code})" if isinstance(code, int) else "")
        else:
            detail = f"{type(err).__name__}: {err}".splitlines()[0]
        detail = redact(detail, project.url)
        if place is None:
            raise MigrationFailed(f"{what} failed: {detail}") from err
        half = ""
        if project.dialect in ("mysql", "mariadb"):
            half = ("; MySQL/MariaDB commit each DDL statement, so any operations before that "
                    "line are applied while alembic_version still names the previous revision")
        raise MigrationFailed(
            f"{place}: {what} failed: {detail}{half}; fix that revision, then run bootstrap again"
        ) from err


def check_version_width(project: Project, connection: Connection, target: str, *,
                        stamp: bool = False) -> None:
    """Refuse, before any DDL runs, to apply a revision whose id does not fit
    ``alembic_version.version_num``: on MySQL/MariaDB the revision's DDL commits statement by
    statement, and only then would the stamp fail, leaving it half applied."""
    table = read_versions(connection)  # env.py's version_table (the engine carries it)
    check_version_column(connection)
    name = version_table_of(connection, project)[0]
    if connection.dialect.name == "sqlite":  # SQLite does not enforce VARCHAR lengths
        return
    width = table.length if table.exists else DEFAULT_VERSION_WIDTH
    if width is None:
        return
    try:
        directory = ScriptDirectory.from_config(alembic_config(project))
        applied = {s.revision for head in table.heads for s in history_chain(directory, head)}
        pending = ([directory.get_revision(target)] if stamp else
                   [s for s in reversed(history_chain(directory, target))  # newest first
                    if s.revision not in applied])
    except Exception:  # noqa: BLE001  (an unknown head: Alembic's own run reports it)
        return
    for script in pending:
        if script is not None and len(script.revision) > width:
            where = project.rel(script.path) if script.path else script.revision
            fix = (f"widen the column first (ALTER TABLE {name} MODIFY version_num "
                   f"VARCHAR({len(script.revision)}) NOT NULL)" if table.exists else
                   f"create {name} with version_num VARCHAR({len(script.revision)}) "
                   "first")
            raise RefusedUnsafe(
                f"{where}: revision id {script.revision!r} has {len(script.revision)} "
                f"characters, but {name}.version_num holds at most {width}; nothing "
                f"applied; {fix}, or give the revision a shorter id")


def upgrade(project: Project, connection: Connection, target: str = "head") -> None:
    what = "upgrade" if target in ("head", "heads") else f"upgrade to {target}"
    check_version_width(project, connection, target)
    run_alembic(project, what, command.upgrade,
         alembic_config(project, connection), target)


def stamp(project: Project, connection: Connection, revision: str) -> None:
    """Record `revision` as the database's only head, replacing whatever rows were there."""
    if revision != "base":
        check_version_width(project, connection, revision, stamp=True)
    run_alembic(project, f"stamp {revision}", command.stamp,
         alembic_config(project, connection), revision, purge=True)
