"""The child process of the replay through env.py: ``alembic upgrade heads`` on a scratch database.

Started by `replay_env`: forked (`forked`: the application is already imported, as doctor read
the models) or as ``python -m alembic_repair.engine.replay_child`` in the project folder, which
reads its orders as JSON from standard input (the scratch URL holds the password: never argv).
It runs the declared set-up, then Alembic's own ``command.upgrade`` through the
project's env.py, exactly as ``alembic upgrade heads`` would. When the set-up stamps (JupyterHub
and optuna build a new database with create_all + ``alembic stamp head``), the schema it left is
the snapshot of the stamped revisions (`Run.stamped_by_setup`). Three class-level wraps do the
rest:

- ``EnvironmentContext.configure`` notes the options env.py passes and adds an
  ``on_version_apply`` callback (after any of the project's own) that snapshots the schema after
  each revision: one catalogue query, then only the changed tables are reflected;
- ``MigrationContext.run_migrations`` refuses to run anything unless the connection env.py
  configured is the scratch database (same SQLite file; same server and schema on MySQL), and
  reflects the partial schema when a revision fails, before env.py's transaction rolls back;
- the migrations function is wrapped to know which revision is running when one fails.

The outcome goes to the result file named in the orders (marshal, in the parent's 0700 folder);
standard output and error are the parent's log file, never parsed.
"""

from __future__ import annotations

import importlib
import json
import marshal
import os
import sqlite3
import sys
import traceback
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

#: Options of `EnvironmentContext.configure` doctor uses later (the values, when plain).
OPTIONS = ("version_table", "version_table_schema", "render_as_batch", "compare_type",
           "compare_server_default", "transaction_per_migration")


class Refused(BaseException):  # noqa: N818  (BaseException: env.py's `except Exception` lets it by)
    """The connection env.py configured is not the scratch database: nothing may run."""


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return "callable" if callable(value) else repr(value)[:200]


class Run:
    """What the wraps learn while env.py runs; written out as the result at the end."""

    def __init__(self, orders: dict[str, Any]) -> None:
        self.orders = orders
        self.options: dict[str, Any] = {}
        self.started = False  # the safety check passed: revisions may run
        self.applied: list[str] = []
        self.snapshots: dict[str, frozenset[Any]] = {}
        self.running: tuple[str, str] | None = None  # (revision, file) of the step under way
        self.partial: frozenset[Any] | None = None
        self.signatures: dict[str, str] = {}
        self.current: Any = None  # SchemaSnapshot after the last applied revision
        self.version_table = "alembic_version"

    # -- safety ---------------------------------------------------------------------------

    def check(self, ctx: Any) -> None:
        """Raise Refused unless `ctx` is connected to the scratch database."""
        from sqlalchemy import text

        expect = self.orders["expect"]
        conn = ctx.connection
        if conn is None or ctx.as_sql:
            raise Refused("env.py configured no connection (context.configure(url=...) only, "
                          "or offline mode), so it cannot be pointed at a scratch database")
        if conn.dialect.name != self.orders["backend"] and not (
                {conn.dialect.name, self.orders["backend"]} <= {"mysql", "mariadb"}):
            raise Refused(f"env.py connects to a {conn.dialect.name} database, not to the "
                          "scratch database it was given")
        if "file" in expect:
            rows = conn.execute(text("PRAGMA database_list")).fetchall()
            main = [str(r[2]) for r in rows if r[1] == "main"]
            if not main or not main[0] or \
                    os.path.realpath(main[0]) != os.path.realpath(expect["file"]):
                raise Refused("env.py connects to another database than the scratch database "
                              "it was given in sqlalchemy.url and DATABASE_URL")
        else:
            schema = conn.execute(text("SELECT DATABASE()")).scalar()
            holder = conn.execute(text("SELECT IS_USED_LOCK(:name)"),
                                  {"name": expect["lock"]}).scalar()
            if schema != expect["schema"] or holder is None or \
                    int(holder) != int(expect["holder"]):
                raise Refused("env.py connects to another database than the scratch schema it "
                              "was given in sqlalchemy.url and DATABASE_URL")
        version_schema = ctx.version_table_schema
        self.version_table = ctx.version_table
        allowed = {None, expect.get("schema")} | ({"main"} if "file" in expect else set())
        if version_schema not in allowed:  # "main" is SQLite's name for the scratch file
            raise Refused(f"env.py keeps alembic_version in schema {version_schema}, outside "
                          "the scratch database")

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self, conn: Any) -> Any:
        """The scratch schema now: one catalogue query, the changed tables reflected again."""
        from .state.catalogue import table_signatures
        from .state.schema import reflect_tables

        signatures = table_signatures(conn)
        signatures.pop(self.version_table, None)  # env.py's own name for alembic_version
        changed = {t for t in set(signatures) | set(self.signatures)
                   if signatures.get(t) != self.signatures.get(t)}
        current = self.current
        if changed:
            fresh = reflect_tables(conn, sorted(t for t in changed if t in signatures))
            current = current.replace_tables(fresh, changed)
        self.signatures = signatures
        return current

    def stamped_by_setup(self, ctx: Any) -> None:
        """The set-up stamped (create_all + ``alembic stamp head``, as JupyterHub and optuna
        build a new database): the schema it left is the snapshot of each stamped revision.
        Their ancestors count as applied (in `applied`, for the history's order) but get no
        snapshot: what their schema was, nothing ran to tell."""
        stamped: list[str] = []
        with suppress(Exception):  # a version table env.py's options cannot read: no stamp
            stamped = [h for h in ctx.get_current_heads() if h]
        if not stamped:
            return
        older: list[str] = []
        with suppress(Exception):  # an id no file defines: only the stamped ids then
            older = [s.revision for s in ctx.script.revision_map.iterate_revisions(
                tuple(stamped), "base")]
        facts = frozenset(f for f in self.current.facts if f[1] != ctx.version_table)
        for revision in [*reversed(older), *stamped]:
            if revision not in self.applied:
                self.applied.append(revision)
        for revision in stamped:
            self.snapshots[revision] = facts

    def applied_one(self, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        if not step.is_upgrade:
            return
        self.current = self.snapshot(ctx.connection)
        revision = step.up_revision_id
        self.applied.append(revision)
        version = ctx.version_table  # env.py's own (alembic_version is never a user table)
        self.snapshots[revision] = frozenset(f for f in self.current.facts if f[1] != version)
        self.running = None


def _wrap(run: Run) -> None:
    """The class-level wraps (this process runs one upgrade, then exits)."""
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationContext

    from .state.schema import SchemaSnapshot

    configure, run_migrations = EnvironmentContext.configure, MigrationContext.run_migrations

    def noting_configure(self: Any, *args: Any, **kw: Any) -> Any:
        run.options.update({k: _plain(kw[k]) for k in OPTIONS if k in kw})
        run.options["include_object"] = kw.get("include_object") is not None
        run.options["include_name"] = kw.get("include_name") is not None
        theirs = kw.get("on_version_apply")
        callbacks = list(theirs) if isinstance(theirs, (list, tuple)) else \
            [theirs] if theirs is not None else []
        kw["on_version_apply"] = [*callbacks, run.applied_one]
        return configure(self, *args, **kw)

    def checked_run(self: Any, **kw: Any) -> Any:
        run.check(self)
        if not run.started:
            run.started = True
            run.current = SchemaSnapshot(frozenset())
            run.current = run.snapshot(self.connection)  # the declared set-up's tables
            run.stamped_by_setup(self)
        steps = self._migrations_fn

        def tracking(heads: Any, ctx: Any) -> Iterator[Any]:
            for step in steps(heads, ctx):
                if step.is_upgrade:
                    run.running = (step.info.up_revision_id, str(step.revision.path))
                yield step

        self._migrations_fn = tracking
        try:
            return run_migrations(self, **kw)
        except Exception:
            if run.running is not None:  # before env.py's transaction rolls back
                with suppress(Exception):  # the failure itself is what gets reported
                    run.partial = run.snapshot(self.connection).facts
            raise
        finally:
            self._migrations_fn = steps

    EnvironmentContext.configure = noting_configure  # type: ignore[method-assign]
    MigrationContext.run_migrations = checked_run  # type: ignore[method-assign]
    if "file" in run.orders["expect"]:
        _throwaway_sqlite(run.orders["expect"]["file"])


def _throwaway_sqlite(path: str) -> None:
    """No fsync and no journal file on the scratch SQLite file (only there): it is thrown away
    after the replay, and what the revisions do to its schema is the same."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    scratch = os.path.realpath(path)

    def fast(dbapi_connection: Any, record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        try:
            main = [r[2] for r in cursor.execute("PRAGMA database_list") if r[1] == "main"]
            if main and main[0] and os.path.realpath(main[0]) == scratch:
                cursor.execute("PRAGMA synchronous = OFF")
                cursor.execute("PRAGMA journal_mode = MEMORY")
        finally:
            cursor.close()

    event.listen(Pool, "connect", fast)


def _resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def set_up(spec: str, url: str) -> None:
    """The set-up the application runs before Alembic (``[tool.alembic_repair] setup``): a
    MetaData or declarative Base gets ``create_all`` on the scratch database; a callable is
    called with the scratch database's URL string."""
    from sqlalchemy import MetaData
    from sqlalchemy.engine import make_url

    from .database import engine_for

    target = _resolve(spec)
    metadata = target if isinstance(target, MetaData) else getattr(target, "metadata", None)
    if isinstance(metadata, MetaData):
        engine = engine_for(make_url(url))
        try:
            metadata.create_all(engine)
        finally:
            engine.dispose()
    elif callable(target):
        target(url)
    else:
        raise TypeError(f"{spec} is {type(target).__name__}: neither a MetaData, a declarative "
                        "Base nor a callable")


def _failure(err: BaseException, url: str) -> dict[str, Any]:
    from sqlalchemy.exc import SQLAlchemyError

    from ..masking import redact
    from .driver_errors import driver_message, environmental

    detail = (driver_message(err) if isinstance(err, SQLAlchemyError)
              else (f"{type(err).__name__}: {err}".splitlines() or [type(err).__name__])[0])
    frames = [(frame.f_code.co_filename, line)
              for frame, line in traceback.walk_tb(err.__traceback__)]
    if isinstance(err, SyntaxError) and err.filename:
        frames.append((err.filename, err.lineno or 0))
    return {"error": redact(detail, url), "frames": frames, "transient": environmental(err)}


def upgrade(orders: dict[str, Any], run: Run) -> dict[str, Any]:
    """Set-up, then ``alembic upgrade heads`` through env.py; the outcome as plain data."""
    from alembic import command
    from alembic.config import Config

    from .migrations import command_options

    url = orders["url"]
    if orders.get("setup"):
        try:
            set_up(orders["setup"], url)
        except Exception as err:
            return {"status": "setup", **_failure(err, url)}
    ini = orders.get("ini")
    config = Config(ini, cmd_opts=command_options(head="heads"))
    config.set_main_option("script_location", orders["script_location"])
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    _wrap(run)
    try:
        command.upgrade(config, "heads")
    except Refused as err:
        return {"status": "refused", "error": str(err)}
    except (Exception, SystemExit) as err:  # the project's code: anything may be raised
        if not run.started:
            return {"status": "early", **_failure(err, url)}
        outcome = {"status": "failed", **_failure(err, url)}
        if run.running is not None:
            outcome["failed_at"], outcome["file"] = run.running
        return outcome
    if not run.started:
        return {"status": "idle"}
    return {"status": "ok"}


def replay(orders: dict[str, Any]) -> None:
    """Run the replay `orders` describe and write the outcome to ``orders["result"]``."""
    os.environ["DATABASE_URL"] = orders["url"]
    if orders["root"] not in sys.path:
        sys.path.insert(0, orders["root"])
    run = Run(orders)
    outcome = upgrade(orders, run)
    outcome.update(applied=run.applied, snapshots=run.snapshots, partial=run.partial,
                   options=run.options,
                   signatures=run.signatures if outcome["status"] == "ok" else {})
    result = Path(orders["result"])
    temporary = result.with_name(result.name + ".tmp")
    temporary.write_bytes(marshal.dumps(outcome))
    temporary.replace(result)


def forget_project_modules(root: str) -> None:
    """Drop the modules of the project's own code that the parent imported: they read the
    live database's URL at import (``settings = Settings()``, an engine made at import), and
    must be imported again under the scratch ``DATABASE_URL``, as `alembic upgrade` would
    import them. Installed packages (a virtualenv inside the project too) stay imported."""
    base = os.path.realpath(root) + os.sep
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        real = os.path.realpath(path)
        if real.startswith(base) and "site-packages" not in real and \
                "dist-packages" not in real:
            del sys.modules[name]


def forked(orders: dict[str, Any], log: str) -> None:
    """The child of `os.fork` (`replay_env.Child`): it has the application's modules the
    parent imported while reading the models, so it pays only for the migrations. Never
    returns: the parent's code must not run on in a copy of itself."""
    code = 1
    try:
        out = os.open(log, os.O_WRONLY | os.O_APPEND)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.chdir(orders["root"])
        forget_project_modules(orders["root"])
        replay(orders)
        code = 0
    except BaseException:  # noqa: B036  (whatever happens, this process ends here)
        with suppress(BaseException):
            traceback.print_exc()
    finally:
        with suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main() -> None:
    """``python -m alembic_repair.engine.replay_child``: the orders come on standard input."""
    orders = json.loads(sys.stdin.read())
    sys.stdin.close()
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115  (env.py may read stdin)
    replay(orders)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads or atexit hooks the application left behind must not hang the replay


if __name__ == "__main__":
    main()
