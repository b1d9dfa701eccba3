"""The ready tests, as plain functions: each returns the failures it found (empty = passed).

Every database they touch is a scratch one from `Backends` (never the project's configured
database: in CI that is absent, and on a laptop it holds someone's data). Expected trouble
(a history that does not load, no scratch database) is raised as `Unusable` or as the
package's own one-line errors; a history a check does not apply to raises `Skipped`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine import migrations
from ..engine.project import Project
from ..engine.state.schema import describe
from ..errors import AlembicRepairError, MigrationFailed
from ..testing.through_env import (  # (`from .x import`, never `from . import`: items.py)
    Elsewhere,
    Irreversible,
    migrate,
    schema,
)
from ..testing.through_env import check as alembic_check
from .backends import Backends
from .outcome import Failure, Skipped, Unusable
from .settings import Settings

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from ..diagnose.findings import Finding

#: What the placeholder URL of `project` says: the ready tests never use the project's database.
_NOWHERE = "sqlite://"


@dataclass(frozen=True)
class Context:
    settings: Settings
    backends: Backends

    def project(self, url: str = _NOWHERE) -> Project:
        return Project.discover(self.settings.project, url=url, models=self.settings.models)

    def directory(self, project: Project) -> ScriptDirectory:
        return migrations.scripts(project)  # a broken history: NeedsRepair, one line


def _heads(ctx: Context, project: Project) -> tuple[str, ...]:
    return tuple(ctx.directory(project).get_heads())


def single_head(ctx: Context) -> tuple[Failure, ...]:
    project = ctx.project()
    directory = ctx.directory(project)
    heads = directory.get_heads()
    if len(heads) == 1:
        return ()
    if not heads:
        return (Failure(f"{project.rel(project.versions_dir)}: the history has no revision",
                        "write the first one: alembic revision --autogenerate -m 'initial'"),)
    files = []
    for head in sorted(heads):
        script = directory.get_revision(head)
        files.append(f"{head} ({project.rel(script.path)})" if script and script.path else head)
    return (Failure(f"{len(heads)} heads: {', '.join(files)}; `alembic upgrade head` refuses "
                    "to choose", "merge them: alembic merge heads -m 'merge heads' (or "
                    "alembic-repair fix)"),)


def builds(ctx: Context) -> tuple[Failure, ...]:
    project = ctx.project()
    heads = _heads(ctx, project)
    with ctx.backends.scratch(project) as url:
        try:
            migrate(project, url, "heads")
        except Elsewhere:
            raise  # the guard's own line and fix (items.py)
        except AlembicRepairError as err:
            return (Failure(f"the history does not build an empty database: {err}",
                            "fix the revision named; `alembic-repair doctor` shows the rest"),)
        if len(heads) != 1:
            return ()  # `alembic check` needs one head: single_head says why there are several
        diffs = alembic_check(project, url)
    if not diffs:
        return ()
    return (Failure("alembic check: after `alembic upgrade heads` the models differ from the "
                    f"schema: {', '.join(diffs)}", "write a revision for the difference: "
                    "alembic revision --autogenerate -m '...', then review it"),)


def _finding(f: Finding) -> Failure:
    where = f" {f.location}" if f.location else ""
    return Failure(f"{f.code} {f.severity}{where}: {f.title}: {f.detail}", f.fix)


def _diagnose(ctx: Context, url: str) -> tuple[Finding, ...]:
    from .. import api

    scratch = Project.discover(ctx.settings.project, url=url, models=ctx.settings.models,
                               strict=False)
    diagnosis = api.doctor(scratch, models=ctx.settings.models, use_cache=False)
    return tuple(f for f in diagnosis.findings if f.code not in ctx.settings.skip_codes)


def doctor(ctx: Context) -> tuple[Failure, ...]:
    project = ctx.project()
    with ctx.backends.scratch(project) as url:
        try:
            migrate(project, url, "heads")
        except Elsewhere:
            raise
        except AlembicRepairError:
            built = False  # doctor says why (AR404), on an empty database: not a half-built one
        else:
            built = True
            findings = _diagnose(ctx, url)
    if not built:
        with ctx.backends.scratch(project) as url:
            findings = _diagnose(ctx, url)
    return tuple(_finding(f) for f in findings if f.severity == "error")


def released(ctx: Context, project: Project) -> str:
    """The released revision: the option, else the single head's down_revision (or base)."""
    directory = ctx.directory(project)
    given = ctx.settings.released
    if given:
        if given != "base":
            try:
                directory.get_revision(given)
            except Exception:  # noqa: BLE001  (Alembic's lookup errors: one line)
                raise Unusable(f"alembic_repair_released = {given} names no revision of "
                               f"{project.rel(project.versions_dir)}") from None
        return given
    heads = directory.get_heads()
    if len(heads) != 1:
        raise Unusable(f"{len(heads)} heads: set alembic_repair_released, or merge them "
                       "(single_head)")
    down = directory.get_revision(heads[0]).down_revision
    if isinstance(down, (tuple, list)):
        raise Unusable(f"the head {heads[0]} is a merge: set alembic_repair_released to the "
                       "revision already released")
    return down or "base"


def _fill(url: str) -> None:
    from ..testing import sample_rows, survival

    try:
        with survival.hypothesis_home():  # no .hypothesis/ in the user's project
            sample_rows.fill(url, seed=0)
    except ModuleNotFoundError as err:
        if err.name != "hypothesis":
            raise
        raise Unusable(_NEEDS_HYPOTHESIS.format(test="lint")) from None


#: The package is on no public index: the extra comes from the checkout or the wheel.
_NEEDS_HYPOTHESIS = ("{test} needs hypothesis: install the [pytest] extra from your checkout "
                     "(pip install -e '.[pytest]') or wheel ('alembic_repair-*.whl[pytest]'), "
                     "or pip install hypothesis")


def lint(ctx: Context) -> tuple[Failure, ...]:
    """AR5xx of the unreleased revisions, on a database at the released revision with rows."""
    project = ctx.project()
    base = released(ctx, project)
    with ctx.backends.scratch(project) as url:
        if base != "base":
            migrate(project, url, base)
            _fill(url)
        findings = _diagnose(ctx, url)
    return tuple(_finding(f) for f in findings
                 if f.code.startswith("AR5") and f.severity in ("warning", "error"))


_AT_BASE = ("the released revision is base: there are no rows to carry; set "
            "alembic_repair_released to your last release")


def data_survives(ctx: Context) -> tuple[Failure, ...]:
    from ..testing import survival

    project = ctx.project()
    base = released(ctx, project)
    if base == "base":  # nothing released: no rows to carry, a pass would prove nothing
        raise Skipped(_AT_BASE)
    try:
        losses = survival.check_survival(
            project, lambda: ctx.backends.scratch(project), released=base, head="heads",
            max_examples=ctx.settings.examples, seed=0, shrink_runs=ctx.settings.shrink_runs)
    except survival.BuildFailed as err:  # not the rows' fault: `builds` reports it too
        return (Failure(str(err), "fix the revision named; the builds test reports it too"),)
    except ModuleNotFoundError as err:
        if err.name != "hypothesis":
            raise
        raise Unusable(_NEEDS_HYPOTHESIS.format(test="data_survives")) from None
    return tuple(Failure(loss.line(), "make the revision's data migration keep every row "
                                      "(or move the rows elsewhere first)") for loss in losses)


def _no_downgrade(project: Project, directory: ScriptDirectory, base: str) -> str | None:
    from ..engine.state.scripts import read_scripts

    kinds = {s.revision: s for s in read_scripts(project.versions_dir)}
    lower = None if base == "base" else base
    for script in directory.iterate_revisions("heads", lower):
        found = kinds.get(script.revision)
        if found is not None and found.downgrade != "code":
            return (f"{project.rel(found.path)}: revision {script.revision} has "
                    f"{'an empty' if found.downgrade == 'empty' else 'no'} downgrade()")
    return None


def _differs(got: frozenset[object], want: frozenset[object]) -> str:
    extra = sorted(describe(f) for f in got - want)  # type: ignore[arg-type]
    missing = sorted(describe(f) for f in want - got)  # type: ignore[arg-type]
    parts = ([f"extra {', '.join(extra[:5])}"] if extra else []) + (
        [f"missing {', '.join(missing[:5])}"] if missing else [])
    return "; ".join(parts)


def up_down(ctx: Context) -> tuple[Failure, ...]:
    """upgrade heads -> downgrade to released -> upgrade heads: the same schema each time."""
    project = ctx.project()
    base = released(ctx, project)
    why = _no_downgrade(project, ctx.directory(project), base)
    if why:
        raise Skipped(f"{why}: up/down consistency cannot be checked")
    fix = "make downgrade() undo exactly what upgrade() does"
    with ctx.backends.scratch(project) as url:
        if base != "base":
            migrate(project, url, base)
        at_base = schema(url).facts
    with ctx.backends.scratch(project) as url:
        migrate(project, url, "heads")
        at_head = schema(url).facts
        try:
            migrate(project, url, base, down=True)
        except Irreversible as err:
            said = str(err).partition("; ")[0]  # without the advice to fix it: allowed
            raise Skipped(f"{said}: up/down consistency cannot be checked") from None
        except MigrationFailed as err:
            return (Failure(f"the downgrade to {base} fails: {err}", fix),)
        if diff := _differs(schema(url).facts, at_base):
            return (Failure(f"downgrade to {base} does not restore its schema: {diff}", fix),)
        try:
            migrate(project, url, "heads")
        except MigrationFailed as err:
            return (Failure(f"upgrade after the downgrade to {base} fails: {err}", fix),)
        if diff := _differs(schema(url).facts, at_head):
            return (Failure(f"upgrade, downgrade to {base}, upgrade leaves another schema: "
                            f"{diff}", fix),)
    return ()


CHECKS: dict[str, Callable[[Context], tuple[Failure, ...]]] = {
    "single_head": single_head, "builds": builds, "doctor": doctor, "lint": lint,
    "data_survives": data_survives, "up_down": up_down,
}
