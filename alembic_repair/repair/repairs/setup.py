"""Layer 1, the setup files (AR1xx): alembic.ini, env.py, script.py.mako, versions/.

A broken alembic.ini hides the revisions, so these come first. Rules: `diagnose/rules/project.py`
(AR101-AR112, AR114) and `diagnose/rules/hidden.py` (AR113).
"""

from __future__ import annotations

from ...diagnose.findings import Finding
from ...diagnose.subjects import KeptModels, UrlProblem
from ...engine.models import discover_models
from ...engine.scaffold import is_generated
from ..registry import SETUP, Draft, repairs, reports
from ..steps import EditIni, EnsureVersionsDir, HideFromAutogenerate, SetEnvOption, WriteSetupFile
from ..steps.setup_files import ini_url_change


def models_spec(draft: Draft) -> str | None:
    """`module:Base` for a new env.py: --models, pyproject's setting, or the one found."""
    if "models" not in draft.cache:
        project = draft.state.project
        draft.cache["models"] = draft.models or project.models or discover_models(project.root)
    spec: str | None = draft.cache["models"]
    return spec


def hide(draft: Draft, finding: Finding, tables: tuple[str, ...], why: str) -> None:
    """Plan env.py's autogenerate filter, or refuse when env.py cannot be edited safely."""
    state = draft.state
    env = state.config.env_filter
    if not state.config.env_py_exists or env is None:
        draft.refuse(finding, "env.py is missing, cannot be decoded or does not parse: "
                     "repair it first")
    elif env.unsafe:
        draft.refuse(finding, env.why)
    else:
        draft.add(finding.code, HideFromAutogenerate(tables, why=why))


@repairs("AR101", "AR102", layer=SETUP)
def write_ini(draft: Draft, finding: Finding) -> None:
    project = draft.state.project
    draft.add(finding.code, WriteSetupFile(project.rel(project.ini_path), why=finding.title))


@repairs("AR104", "AR105", "AR106", layer=SETUP)
def write_env_py(draft: Draft, finding: Finding) -> None:
    project = draft.state.project
    spec = models_spec(draft)
    if spec is None:
        draft.refuse(finding, "the models cannot be found: pass --models module:Base")
        return
    draft.add(finding.code, WriteSetupFile(project.rel(project.env_py), models=spec,
                                           why=finding.title))
    if not project.script_template.exists():
        draft.add(finding.code, WriteSetupFile(project.rel(project.script_template)))


@repairs("AR107", layer=SETUP)
def double_percent(draft: Draft, finding: Finding) -> None:
    project = draft.state.project
    where = getattr(finding.subject, "path", None)
    ours = where == project.rel(project.ini_path) and isinstance(finding.facts, UrlProblem)
    change = ini_url_change(project) if ours else None  # None: no edit changes the line
    if change == "encode-url":  # a password written by sed, '@' and all
        draft.add(finding.code, EditIni("sqlalchemy.url", "encode-url", why="plain alembic "
                                        "reads the ini's URL: its password must be "
                                        "percent-encoded, each '%' doubled"))
    elif change == "double-percent" and isinstance(finding.facts, UrlProblem) \
            and finding.facts.interpolation:
        draft.add(finding.code, EditIni("sqlalchemy.url", "double-percent",
                                        why="ConfigParser reads a single '%' as interpolation"))
    else:
        draft.refuse(finding, "correct the database URL (--url, DATABASE_URL or "
                     "sqlalchemy.url in alembic.ini)")


@repairs("AR108", layer=SETUP)
def render_as_batch(draft: Draft, finding: Finding) -> None:
    """Only when a pending revision needs batch mode (AR108 is then a warning) or when asked
    (`fix --only AR108`): a healthy project's env.py is not rewritten for a note."""
    if finding.severity == "info" and finding.code not in draft.only:
        return
    draft.add(finding.code, SetEnvOption("render_as_batch", why="SQLite can only ALTER a table "
                                         "by copying it (batch mode)"))


@repairs("AR109", layer=SETUP)
def compare_type(draft: Draft, finding: Finding) -> None:
    draft.add(finding.code, SetEnvOption("compare_type", why="autogenerate must see type "
                                         "changes"))


@repairs("AR110", layer=SETUP)
def here_relative(draft: Draft, finding: Finding) -> None:
    draft.add(finding.code, EditIni("script_location", "here-relative",
                                    why="Alembic resolves it against the working directory"))


@repairs("AR112", layer=SETUP)
def versions_dir(draft: Draft, finding: Finding) -> None:
    draft.add(finding.code, EnsureVersionsDir())


@repairs("AR113", layer=SETUP)
def hide_from_autogenerate(draft: Draft, finding: Finding) -> None:
    state, project = draft.state, draft.state.project
    if isinstance(finding.facts, KeptModels):  # a kept table got a model: only a human knows
        draft.refuse(finding, finding.fix)
        return
    spec = models_spec(draft)
    if spec and project.env_py.is_file() and is_generated(project.env_py):
        # our own env.py from an older template: refreshing it is the whole repair
        draft.add(finding.code, WriteSetupFile(project.rel(project.env_py), models=spec,
                                               why="the template hides those tables"))
    elif state.config.env_filter is None or not state.config.env_filter.unsafe:
        hide(draft, finding, (), "plain autogenerate must not drop them")
    # else: env.py needs a hand (the finding's fix says how); the layers above do not depend
    # on it, so refusing here would only block their repairs


reports("AR103", why="where the scripts folder really is cannot be guessed: fix "
        "script_location (a new folder would start a second history)")
reports("AR111", why="advice: alembic.ini works without prepend_sys_path when the working "
        "directory is right")
reports("AR114", why="the intended value of a pyproject.toml setting cannot be guessed")
