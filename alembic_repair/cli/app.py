"""The ``alembic-repair`` command: parse options, call `api`, hand the result to `report`
(which prints every line), exit.

Exit codes (design section 3): 0 done/healthy, 1 problems remain, 2 usage or configuration
error, 3 database unreachable or login refused, 4 refused as unsafe, 5 dry run (a plan was
printed, nothing changed: `dry_run.py`), 70 internal error.
Errors are one line on stderr; ``--traceback`` shows the Python traceback as well.
"""

from __future__ import annotations

import inspect
import io
import os
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

from .. import api
from ..data.trash import parse_age
from ..diagnose import verdict_cache as quick
from ..engine.project import Project
from ..errors import EXIT_DRY_RUN, AlembicRepairError, DryRun
from ..masking import redact
from . import dry_run, report

EXIT_INTERNAL = 70
F = TypeVar("F", bound=Callable[..., Any])


def _unwrapped(command: F) -> F:
    """Typer's rich help keeps the line breaks inside a docstring's later paragraphs, which then
    show mid-sentence at any width: each paragraph is joined into one line for the terminal to
    wrap (tests/test_cli_help.py renders every --help at 80 columns)."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    command.__doc__ = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    return command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Diagnose and repair Alembic migration setups without losing data.",
)


class Format(str, Enum):
    text = "text"
    json = "json"


class _Options:
    project: Path | None = None
    config: Path | None = None
    url: str | None = None
    traceback: bool = False
    discovered_url: str | None = None  # scrubbed from tracebacks whatever its source
    discovered_source: str = "the project"
    plan_shown: bool = False  # a dry run's command printed its plan (and dry_run.HEADING)


options = _Options()


@app.callback()
def main_options(
    project: Annotated[Path | None, typer.Option(  # noqa: UP007 (typer needs Optional)
        "--project", "-p", help="Project folder (where alembic.ini is or will be).")] = None,
    config: Annotated[Path | None, typer.Option(  # noqa: UP007
        "--config", "-c", help="Path to alembic.ini (default: PROJECT/alembic.ini).")] = None,
    url: Annotated[str | None, typer.Option(  # noqa: UP007
        "--url", help="Database URL; overrides DATABASE_URL, docker-compose and alembic.ini.",
        envvar=None)] = None,
    traceback: Annotated[bool, typer.Option(
        "--traceback", help="Show the Python traceback of an error.")] = False,
) -> None:
    options.project, options.config, options.url = project, config, url
    options.traceback = traceback
    options.plan_shown = False


def _plan_heading() -> None:
    """A dry run's heading, before the plan the command prints (dry_run.py)."""
    if not options.plan_shown:
        options.plan_shown = True
        dry_run.heading()


def _discover(models: str | None = None, *, strict: bool = True) -> Project:
    project = Project.discover(options.project, config=options.config, url=options.url,
                               models=models, strict=strict)
    options.discovered_url = project.url
    options.discovered_source = project.url_source
    return project


@app.command()
@_unwrapped
def bootstrap(
    models: Annotated[str | None, typer.Option(  # noqa: UP007
        "--models", help="The models, as module:attr (e.g. app.models:Base).")] = None,
    no_upgrade: Annotated[bool, typer.Option(
        "--no-upgrade", help="Write files and revisions, but apply nothing.")] = False,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", help="Seconds to wait for another run holding the lock.")] = 600.0,
    format: Annotated[Format, typer.Option("--format", help="text or json")] = Format.text,
) -> None:
    """Scaffold, adopt, autogenerate, upgrade: safe on every start.

    Autogenerates a revision only on a real difference between the models and the database
    (never a drop), and holds the migration lock, so several replicas may run it at once."""
    project = _discover(models)
    text = format is Format.text
    if text:
        report.bootstrap_header(project.masked_url, project.url_source)
    result = api.bootstrap(project, models=models, upgrade=not no_upgrade,
                           lock_timeout=lock_timeout,
                           on_action=report.action_line if text else None)
    if text:
        report.bootstrap_summary(result)
    else:
        report.bootstrap_json(result)


@app.command()
@_unwrapped
def doctor(
    format: Annotated[Format, typer.Option("--format", help="text or json")] = Format.text,
    models: Annotated[str | None, typer.Option(
        "--models", help="The models, as module:attr, when env.py cannot give them.")] = None,
    no_replay: Annotated[bool, typer.Option(
        "--no-replay", help="Skip replaying the history on a scratch database.")] = False,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Replay again even when the history is unchanged.")] = False,
) -> None:
    """Read-only diagnosis: revisions, alembic_version, schema, models.

    Exit 0 healthy, 1 problems found (the project's files included), 2 a usage error (an
    unusable --url), 3 database unreachable.
    """
    with report.stdout_reserved(format is Format.json):
        project = _discover(models, strict=False)
        plain = not (models or no_replay or no_cache)
        key = quick.fingerprint(project) if plain and not project.problems else None
        diagnosis = api.doctor(project, models=models, replay=not no_replay,
                               use_cache=not no_cache)
    report.doctor(diagnosis, as_json=format is Format.json)
    if key is not None and diagnosis.healthy and not diagnosis.findings:
        text = io.StringIO()
        report.diagnosis_text(diagnosis, stream=text)
        quick.remember(key, {"text": text.getvalue(),
                             "json": report.diagnosis_json(diagnosis, from_cache=True)})
    raise typer.Exit(diagnosis.exit_code)


def _secrets() -> tuple[str | None, ...]:
    return options.url, os.environ.get("DATABASE_URL"), options.discovered_url


def _traceback(err: BaseException) -> None:
    """With --traceback: the traceback (passwords scrubbed) before the usual error line."""
    if options.traceback:
        text = "".join(traceback.format_exception(err))
        report.traceback_text(redact(text, *_secrets()))


def _usage_line(err: Exception, code: int) -> None:
    """A usage error as one line (click prints usage, a hint and the error on four)."""
    message = getattr(err, "format_message", None)
    text = " ".join(str(message()).split()) if callable(message) else ""
    if code != 2 or not text:  # e.g. a group called without a command: its help is the answer
        cast(Any, err).show()  # click's errors print themselves
        return
    ctx = getattr(err, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None and ctx.command_path else ""
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    report.error_line(f"{where}{text}{hint}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning our errors into one line and a code."""
    try:
        code = app(args=argv, standalone_mode=False)  # an Exit's code is returned, not raised
        if isinstance(code, int) and code:
            sys.exit(code)
    except DryRun as err:  # only --yes was missing: the plan, on stdout (dry_run.py)
        sys.exit(dry_run.finish(err, shown=options.plan_shown))
    except AlembicRepairError as err:
        _traceback(err)
        report.error_line(str(err))
        sys.exit(err.exit_code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        report.error_line("interrupted")
        sys.exit(130)
    except Exception as err:  # usage errors (typer's own click) and anything unexpected
        show, code = getattr(err, "show", None), getattr(err, "exit_code", None)
        if callable(show) and isinstance(code, int):
            _usage_line(err, code)
            sys.exit(code)
        _traceback(err)
        # a lock or a broken file met after connecting is about the database, not a bug of ours
        from ..engine.driver_errors import explain

        known = explain(err, options.discovered_url, options.discovered_source)
        if known is not None:
            report.error_line(str(known))
            sys.exit(known.exit_code)
        report.error_line(
            f"internal error: {type(err).__name__}: {redact(str(err), *_secrets())} "
            "(rerun with --traceback and report it)"
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(0)


# -- trash: soft-dropped tables (trash.py) -----------------------------------------------------

trash_app = typer.Typer(
    no_args_is_help=True,
    help="Soft-dropped tables, restorable until purged.\n\nA soft drop renames the table "
         "into _ar_trash_<stamp>_<table>: O(1), no row copied.",
)
app.add_typer(trash_app, name="trash")

_YES = typer.Option("--yes", "-y", help="Do it (without: print the plan, change nothing, exit 5).")
_REMOTE = typer.Option("--allow-remote", help="Allow a database that is not on this machine.")


@trash_app.command("drop")
def trash_drop(
    table: Annotated[str, typer.Argument(help="The table to move into the trash.")],
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
) -> None:
    """Rename TABLE into the trash (O(1)); `trash restore` undoes it."""
    entry = api.trash_drop(_discover(), table, yes=yes, allow_remote=allow_remote,
                           on_action=report.plain_action)
    report.trash_entry("already" if entry.already else "trashed", entry)


@trash_app.command("list")
def trash_list(
    format: Annotated[Format, typer.Option("--format", help="text or json")] = Format.text,
) -> None:
    """The soft-dropped tables, oldest first (read-only)."""
    report.trash_list(api.trash_list(_discover()), as_json=format is Format.json)


@trash_app.command("restore")
def trash_restore(
    name: Annotated[str, typer.Argument(help="Trash name, or the original table name.")],
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
) -> None:
    """Rename a soft-dropped table back (refused if its name is taken)."""
    report.trash_restored(api.trash_restore(_discover(), name, yes=yes,
                                            allow_remote=allow_remote))


@trash_app.command("purge")
def trash_purge(
    older_than: Annotated[str, typer.Option(
        "--older-than", help="Age, e.g. 7d, 12h, 1d12h, 2w.")],
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
) -> None:
    """DROP, for good, the soft-dropped tables older than --older-than."""
    age = parse_age(older_than)
    report.trash_purged(api.trash_purge(_discover(), older_than=age, yes=yes,
                                        allow_remote=allow_remote))


# -- backups (backup.py) -----------------------------------------------------------------------


@app.command("backup")
def backup_command(
    dest: Annotated[Path | None, typer.Argument(  # noqa: UP007
        help="Folder to write (default: .alembic_repair/backups/<UTC stamp>/).")] = None,
    method: Annotated[str, typer.Option(
        "--method", help="auto (mariadb-dump when there), dump, or python.")] = "auto",
    compress: Annotated[bool, typer.Option(
        "--compress", help="gzip the dump (smaller, slower on few cores).")] = False,
) -> None:
    """Write a verified backup: schema, rows, counts and checksums."""
    if method not in ("auto", "dump", "python"):
        raise typer.BadParameter("expected auto, dump or python", param_hint="--method")
    with report.table_progress("backup") as progress:
        manifest = api.backup(_discover(), dest, method=method, compress=compress,
                              progress=progress)
    report.backup_done(manifest)


@app.command("restore")
@_unwrapped
def restore_command(
    src: Annotated[Path, typer.Argument(help="The backup folder (holds manifest.json).")],
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
    other_database: Annotated[bool, typer.Option(
        "--other-database", help="Restore a backup taken of another database.")] = False,
    method: Annotated[str, typer.Option(
        "--method", help="auto, client (the mariadb client), or python (no client).")] = "auto",
) -> None:
    """Verify a backup and put its rows back into empty tables.

    What does not fit is reported and stays in the backup. Without --yes: prints the plan and
    changes nothing (exit 5)."""
    if method not in ("auto", "client", "python"):
        raise typer.BadParameter("expected auto, client or python", param_hint="--method")
    with report.table_progress("restore") as progress:
        result = api.restore(_discover(), src, yes=yes, allow_remote=allow_remote,
                             other_database=other_database, progress=progress, method=method)
    report.restore_done(result)
    if not result.complete:
        raise typer.Exit(1)


# -- the safe reset (safe_reset.py) ----------------------------------------------------------------


@app.command("reset")
@_unwrapped
def reset_command(
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
    discard_data: Annotated[bool, typer.Option(
        "--discard-data", help="Do not restore the rows (the backup still keeps them).")] = False,
    models: Annotated[str | None, typer.Option(  # noqa: UP007
        "--models", help="The models, as module:attr (e.g. app.models:Base).")] = None,
) -> None:
    """The safe reset: back up, rebuild the setup, restore the rows.

    Backup, drop, regenerate alembic.ini, env.py and one baseline revision, upgrade, restore,
    verify. Without --yes: prints the plan and changes nothing (exit 5). A run killed part-way
    is finished by the next `reset --yes` (the journal says where it stopped)."""
    project = _discover(models)
    plan = None
    if not yes:  # the plan printed is the plan refused (and, with --yes, the plan run)
        plan = api.plan_reset(project, models=models, discard_data=discard_data)
        _plan_heading()
        report.reset_plan(plan)
    with report.progress("reset", total=7) as on_action:
        result = api.reset(project, yes=yes, allow_remote=allow_remote,
                           discard_data=discard_data, models=models, plan=plan,
                           on_action=on_action)
    report.reset_done(project, result)
    if not result.complete:
        raise typer.Exit(1)


# -- fix (plan.py, steps.py, apply.py) ---------------------------------------------------------


@app.command("fix")
@_unwrapped
def fix_command(
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
    only: Annotated[list[str] | None, typer.Option(  # noqa: UP007
        "--only", help="Repair only these codes (AR302, or a family: AR3xx); repeatable.")
    ] = None,
    models: Annotated[str | None, typer.Option(  # noqa: UP007
        "--models", help="The models, as module:attr (e.g. app.models:Base).")] = None,
    rollback: Annotated[bool, typer.Option(
        "--rollback", help="Undo the steps of an interrupted fix instead of finishing it.")
    ] = False,
) -> None:
    """Repair what doctor finds, layer after layer, losing no row.

    Each layer: plan, backup, steps, verify. Without --yes: prints the whole plan (the later
    layers projected) and changes nothing (exit 5 when there is something to do). With --yes,
    stops before any kind of step that plan did not show. Exit 0 when doctor is healthy
    afterwards, 1 when something remains."""
    codes = _known_codes(list(only or ()))
    project = _discover(models, strict=False)
    plan = None
    if not yes:  # planned once: the API is handed the plan printed, and refuses it
        plan = api.plan_fix(project, only=codes, models=models)
        if plan.steps or getattr(plan, "interrupted", None) is not None:
            _plan_heading()
        report.fix_plan(plan, rollback=rollback)
    with report.progress("fix") as on_action:
        result = api.fix(project, yes=yes, allow_remote=allow_remote, only=codes,
                         models=models, rollback=rollback, plan=plan, on_action=on_action)
    report.fix_done(result)
    if not result.healthy:
        raise typer.Exit(1)


def _known_codes(only: list[str]) -> tuple[str, ...]:
    """--only values, checked before anything runs: a mistyped code must not mean 'nothing'."""
    from ..diagnose.findings import CATALOGUE

    families = {code[:3] + "XX" for code in CATALOGUE}
    for value in only:
        if value.upper() not in CATALOGUE and value.upper() not in families:
            raise typer.BadParameter(
                f"{value!r} is no finding code; use a code doctor prints (e.g. AR302) or a "
                f"family (e.g. AR3xx)", param_hint="--only")
    return tuple(only)


# -- squash (squashing.py) -------------------------------------------------------------------------


@app.command("squash")
@_unwrapped
def squash_command(
    to: Annotated[str | None, typer.Option(  # noqa: UP007
        "--to", help="Squash up to this revision (default: the head).")] = None,
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
) -> None:
    """Collapse the history into one baseline revision and restamp.

    Up to --to (default: the head); later revisions are kept, the old files move into the
    backup folder. Without --yes: prints the plan and changes nothing (exit 5). An empty
    database built from the new history is proved equal to one built from the old one before
    anything changes."""
    project = _discover()
    plan = None
    if not yes:  # the plan printed (and proved) once; the API refuses that very plan
        plan = api.plan_squash(project, to=to)
        if plan.steps:
            _plan_heading()
        report.squash_plan(plan)
    result = api.squash(project, to=to, yes=yes, allow_remote=allow_remote, plan=plan,
                        on_action=report.action_line)
    report.squash_done(project, result)


# -- drop (rewrite/drops.py) -------------------------------------------------------------------


@app.command("drop")
@_unwrapped
def drop_command(
    specs: Annotated[list[str], typer.Argument(help="TABLE or TABLE.COLUMN, one or more.")],
    hard: Annotated[bool, typer.Option(
        "--hard", help="Drop for real (after a verified backup) instead of into the trash.")
    ] = False,
    into: Annotated[str | None, typer.Option(  # noqa: UP007
        "--into", help="Rewrite this (not yet applied) revision instead of writing a new one.")
    ] = None,
    message: Annotated[str | None, typer.Option(  # noqa: UP007
        "-m", "--message", help="The new revision's message.")] = None,
    yes: Annotated[bool, _YES] = False,
    allow_remote: Annotated[bool, _REMOTE] = False,
) -> None:
    """Write a revision dropping tables or columns, undoably.

    Its downgrade() brings them back (soft: out of the trash; --hard: recreated empty, after a
    verified backup). Without --yes: prints the revision as a diff and writes nothing (exit 5).
    The drop itself runs at the next upgrade (or bootstrap)."""
    project = _discover()
    result = api.drop(project, specs, hard=hard, into=into, message=message, yes=yes,
                      allow_remote=allow_remote)
    if not result.written and not result.already:  # a dry run: the diff is the plan
        _plan_heading()
        sys.stdout.write(result.diff)
        dry_run.line(f"drop: would write {project.rel(result.path)} as shown")
        dry_run.hint()
        raise typer.Exit(EXIT_DRY_RUN)
    report.drop_done(project, result)
