"""plan: a Diagnosis -> the ordered steps that repair it, decided before anything runs.

Repairs come in layers, and a plan covers one layer at a time, because each layer can only be
judged once the one below it is sound: the setup files (a broken alembic.ini hides the
revisions), then the revision files (a graph with two heads has no single "head" to stamp),
then the pending revisions that would lose data (rewritten into their safe form, or held:
no upgrade runs through them), then the database against the history (stamp, adopt,
complete, upgrade), then the models against the database (autogenerate). `fix` plans,
applies, diagnoses again and plans the next layer, until nothing repairable is left.

What no rule can decide safely (a revision file that does not parse, a cycle, a column only
the database has) is not guessed: it is listed in `Plan.unrepairable` with what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from alembic.operations.ops import DropColumnOp, DropTableOp

from ..diagnose.diagnosis import Diagnosis
from ..diagnose.findings import Finding
from ..diagnose.rules.hidden import hidden, hidden_drops
from ..diagnose.rules.schema import equal_revisions, half_applied
from ..diagnose.rules.versions import ancestors
from ..engine.models import discover_models
from ..engine.scaffold import is_generated
from ..engine.state.read import State
from ..engine.state.scripts import ScriptFile, duplicates
from .history import plan_baseline, plan_missing_revision
from .steps import (
    AdoptSchema,
    Autogenerate,
    ClearJunk,
    CompleteRevision,
    EditIni,
    EnsureVersionsDir,
    HideFromAutogenerate,
    MoveToBackup,
    RemoveHiddenDrops,
    RewritePending,
    SetEnvOption,
    Stamp,
    Step,
    Upgrade,
    WriteMerge,
    WriteSetupFile,
)

__all__ = ["Plan", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """Steps in the order they run, and the findings this plan leaves for a human."""

    layer: str
    steps: tuple[Step, ...]
    unrepairable: tuple[tuple[Finding, str], ...] = ()
    addressed: tuple[str, ...] = ()  # the finding codes the steps repair

    @property
    def needs_backup(self) -> bool:
        return any(s.needs_backup for s in self.steps)

    def lines(self) -> list[str]:
        out = []
        for number, step in enumerate(self.steps, start=1):
            flag = " [destructive]" if step.destructive else ""
            out.append(f"{number}. {step.describe()}{flag}")
        return out

    def as_dict(self) -> dict[str, object]:
        return {"layer": self.layer, "steps": [s.as_dict() for s in self.steps],
                "addressed": list(self.addressed),
                "unrepairable": [{"code": f.code, "location": f.location, "reason": why}
                                 for f, why in self.unrepairable]}


@dataclass
class _Draft:
    steps: list[Step] = field(default_factory=list)
    addressed: list[str] = field(default_factory=list)
    unrepairable: list[tuple[Finding, str]] = field(default_factory=list)

    def add(self, code: str, *steps: Step) -> None:
        self.steps.extend(s for s in steps if s not in self.steps)
        if code not in self.addressed:
            self.addressed.append(code)

    def refuse(self, finding: Finding, why: str) -> None:
        self.unrepairable.append((finding, why))


def _codes(findings: Iterable[Finding], wanted: Iterable[str]) -> list[Finding]:
    codes = set(wanted)
    return [f for f in findings if f.code in codes]


# -- layer 1: the setup files ------------------------------------------------------------------


CONFIG = ("AR101", "AR102", "AR104", "AR105", "AR106", "AR107", "AR108", "AR109", "AR110",
          "AR112", "AR113")


def _config(state: State, findings: list[Finding], models: str | None, draft: _Draft) -> None:
    project = state.project
    spec = models or project.models or discover_models(project.root)
    for finding in findings:
        if finding.code in ("AR101", "AR102"):
            draft.add(finding.code, WriteSetupFile(project.rel(project.ini_path),
                                                   why=finding.title))
        elif finding.code in ("AR104", "AR105", "AR106"):
            if spec is None:
                draft.refuse(finding, "the models cannot be found: pass --models module:Base")
                continue
            draft.add(finding.code, WriteSetupFile(project.rel(project.env_py), models=spec,
                                                   why=finding.title))
            if not project.script_template.exists():
                draft.add(finding.code, WriteSetupFile(project.rel(project.script_template)))
        elif finding.code == "AR107":
            ini = project.rel(project.ini_path)
            if (finding.location or "").split(":")[0] == ini and "'%'" in finding.detail:
                draft.add(finding.code, EditIni("sqlalchemy.url", "double-percent",
                                                why="ConfigParser reads a single '%' as "
                                                    "interpolation"))
            else:
                draft.refuse(finding, "correct the database URL (--url, DATABASE_URL or "
                             "sqlalchemy.url in alembic.ini)")
        elif finding.code == "AR108":
            draft.add(finding.code, SetEnvOption("render_as_batch", why="SQLite can only "
                                                 "ALTER a table by copying it (batch mode)"))
        elif finding.code == "AR109":
            draft.add(finding.code, SetEnvOption("compare_type", why="autogenerate must see "
                                                 "type changes"))
        elif finding.code == "AR110":
            draft.add(finding.code, EditIni("script_location", "here-relative",
                                            why="Alembic resolves it against the working "
                                                "directory"))
        elif finding.code == "AR112":
            draft.add(finding.code, EnsureVersionsDir())
        elif finding.code == "AR113":
            if finding.detail.startswith("kept table"):  # a kept table got a model: by hand
                draft.refuse(finding, finding.fix)
            elif spec and project.env_py.is_file() and is_generated(project.env_py):
                # our own env.py from an older template: refreshing it is the whole repair
                draft.add(finding.code, WriteSetupFile(project.rel(project.env_py), models=spec,
                                                       why="the template hides those tables"))
            elif state.config.env_filter is None or not state.config.env_filter.unsafe:
                _hide(state, finding, draft, (), "plain autogenerate must not drop them")
            # else: env.py needs a hand (the finding's fix says how); the layers above do not
            # depend on it, so refusing here would only block their repairs


# -- layer 2: the revision files ---------------------------------------------------------------


GRAPH = ("AR201", "AR202", "AR203", "AR204", "AR205", "AR206", "AR207", "AR209")


def _applied(state: State) -> set[str]:
    """Every revision the database has applied (its recorded heads and their ancestors)."""
    rows = state.versions.heads if state.versions is not None else ()
    done: set[str] = set(rows)
    for rev in rows:
        done |= ancestors(state.scripts, rev)
    return done


def _imported_names(state: State) -> set[str]:
    """Module names the revision files import (a helper module in versions/ is not stray)."""
    import ast

    names: set[str] = set()
    for script in state.scripts:
        try:
            tree = ast.parse(script.path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def _same_code(a: ScriptFile, b: ScriptFile) -> bool:
    import ast

    try:
        return ast.dump(ast.parse(a.path.read_text(encoding="utf-8"))) == ast.dump(
            ast.parse(b.path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return False


def _graph(state: State, findings: list[Finding], draft: _Draft) -> None:
    project = state.project
    for finding in findings:
        code = finding.code
        if code in ("AR201", "AR209"):
            draft.refuse(finding, "a revision file that does not load is the project's code: "
                         "fix it (or restore it from git), then run fix again")
        elif code == "AR204":
            draft.refuse(finding, "which link of the cycle is wrong cannot be told from the "
                         "files: correct the down_revision you edited by hand")
        elif code == "AR203":
            step = plan_missing_revision(state, finding)
            if isinstance(step, str):
                draft.refuse(finding, step)
            else:
                draft.add(code, step)
        elif code == "AR207":
            empty = [s for s in state.scripts if s.revision is not None
                     and project.rel(s.path) == finding.location]
            children = {p for s in state.scripts for p in s.down_revisions}
            if (empty and empty[0].revision not in children and state.versions is not None
                    and empty[0].revision not in _applied(state)):
                draft.add(code, MoveToBackup(project.rel(empty[0].path),
                                             why="an empty revision no database here applied"))
        elif code == "AR206":
            stray = [s for s in state.scripts if s.revision is None and s.error is None
                     and project.rel(s.path) == finding.location]
            if stray and stray[0].path.stem in _imported_names(state):
                draft.refuse(finding, f"{stray[0].path.name} is imported by a revision: keep it")
            elif stray:
                draft.add(code, MoveToBackup(project.rel(stray[0].path),
                                             why="not a revision (no revision id)"))
    duplicate = next((f for f in findings if f.code == "AR202"), None)
    for revision, copies in duplicates(state.scripts).items():
        if duplicate is None:
            break
        ordered = sorted(copies, key=lambda s: (len(s.path.name), s.path.name))
        if all(_same_code(ordered[0], other) for other in ordered[1:]):
            for other in ordered[1:]:
                draft.add("AR202", MoveToBackup(project.rel(other.path),
                                                why=f"a copy of {ordered[0].path.name}"))
        else:
            draft.refuse(duplicate, f"the files defining {revision} differ: keep the right one "
                         "(git log), move the other out of versions/")
    if "AR205" in {f.code for f in findings} and state.graph_ok:
        heads = tuple(sorted(state.script_heads))
        draft.add("AR205", WriteMerge(heads, WriteMerge.revision_for(heads)))


# -- layer 3: pending revisions that would lose data -----------------------------------------------


#: What a pending revision must not do to the rows: no upgrade runs through it until it is safe.
PENDING = ("AR501", "AR502", "AR503", "AR505", "AR507", "AR508", "AR510", "AR511")


def _pending(state: State, findings: list[Finding], draft: _Draft) -> None:
    """A pending revision that would lose or corrupt data is rewritten into its safe form when
    it is the next one to run (its starting schema is then the live one), or else held: no
    upgrade runs through it."""
    recorded = set(state.versions.heads) if state.versions is not None else set()
    revisions = state.pending.revisions if state.pending is not None else ()
    for finding in findings:
        path = (finding.location or "").split(":")[0]
        revision = next((r for r in revisions if r.path == path), None)
        if finding.code == "AR511" and revision is not None:
            # Any pending revision may lose these lines: they only undo what the trash keeps.
            tables = next(t for r, _, t in hidden_drops(state) if r.path == path)
            draft.add(finding.code, RemoveHiddenDrops(path, tuple(tables)))
            continue
        if revision is None:
            draft.refuse(finding, "no upgrade runs until this revision is made safe")
            continue
        script = next((s for s in state.scripts if s.revision == revision.revision), None)
        parents = set(script.down_revisions) if script is not None else {"?"}
        if not parents <= recorded:
            draft.refuse(finding, f"revision {revision.revision} is not the next one to run; "
                         "upgrade to its parent, then run fix again")
        elif finding.code == "AR501":
            drops = tuple(dict.fromkeys(
                f"{op.operation.table_name}.{op.operation.column_name}"
                if isinstance(op.operation, DropColumnOp) else op.operation.table_name
                for op in revision.ops if isinstance(op.operation, (DropColumnOp, DropTableOp))
                and not hidden(state, op.operation.table_name)))  # those are AR511's
            env = state.config.env_filter
            if state.config.env_py_exists and (env is None or env.unsafe):
                # the trash the soft drop fills would be dropped by the next plain autogenerate
                draft.refuse(finding, "the soft drop needs env.py's autogenerate filter: "
                             + (env.why if env is not None else "env.py cannot be read or "
                                "does not parse; fix it first"))
                continue
            draft.add(finding.code, HideFromAutogenerate(
                why="the soft drop puts tables into the trash"),
                RewritePending(path, "soft-drops", drops))
        elif finding.code in ("AR502", "AR503") and "add" in finding.detail:
            draft.add(finding.code, RewritePending(path, "unique-columns"))
        else:
            draft.refuse(finding, "no upgrade runs until this revision is corrected: "
                         + finding.fix)


# -- layer 4: the database against the history -------------------------------------------------


VERSIONS = ("AR301", "AR302", "AR303", "AR304", "AR305", "AR306", "AR307", "AR401", "AR402",
            "AR404", "AR405")


def _heads_after(state: State, rows: tuple[str, ...]) -> bool:
    return set(rows) == set(state.script_heads)


def _versions(state: State, findings: list[Finding], draft: _Draft) -> None:
    codes = {f.code for f in findings}
    versions = state.versions
    before = versions.rows if versions is not None else ()
    local = {s.revision for s in state.scripts if s.revision}
    equal = equal_revisions(state)
    recorded: tuple[str, ...] = versions.heads if versions is not None else ()

    if codes & {"AR301", "AR306", "AR302", "AR401"}:
        finding = _codes(findings, ("AR301", "AR306", "AR302", "AR401"))[0]
        code = finding.code
        if equal:
            target = equal[-1]
            draft.add(code, Stamp((target,), before, why=f"the tables equal revision {target}"))
            recorded = (target,)
        elif not local:
            draft.add(code, AdoptSchema(None, before, why="no revision file describes it"))
            recorded = ()  # a new revision, not one of today's heads: upgrade afterwards
        elif code == "AR302" and len(state.script_heads) == 1:
            head = state.script_heads[0]
            draft.add(code, AdoptSchema(head, before, why=f"{', '.join(before)} is lost; the "
                                        f"bridge takes {head}'s schema to this database's"))
            recorded = ()  # a new revision, not one of today's heads: upgrade afterwards
        else:
            draft.refuse(finding, "the tables equal no revision of the history: compare them "
                         "with `alembic-repair doctor`, then stamp the closest revision and "
                         "autogenerate the difference")
            return
    elif codes & {"AR303", "AR305", "AR307"}:
        tidy = tuple(r for r in dict.fromkeys(recorded) if r in local) or recorded
        for code in sorted(codes & {"AR303", "AR305", "AR307"}):
            draft.add(code, Stamp(tidy, before, why="alembic_version in Alembic's own shape "
                                  "(VARCHAR(32) primary key, one row per head)"))
        recorded = tidy

    half = half_applied(state)
    if "AR402" in codes and half is not None and half.failed:
        draft.refuse(_codes(findings, ("AR402",))[0],
                     f"revision {half.revision} fails on an empty database too, so running "
                     "its missing operations would fail again: correct the revision, then run "
                     "fix again (the operations that did take effect are kept)")
        return
    if "AR402" in codes and half is not None:
        draft.add("AR402", CompleteRevision(half.revision, before))
        recorded = (half.revision,)
    if "AR404" in codes:
        baseline = plan_baseline(state, _codes(findings, ("AR404",))[0])
        if isinstance(baseline, str):
            draft.refuse(_codes(findings, ("AR404",))[0], baseline)
        else:
            draft.add("AR404", baseline)
    if "AR405" in codes:
        draft.refuse(_codes(findings, ("AR405",))[0],
                     "the tables were changed by hand: put the change into the models and "
                     "autogenerate it, or undo it")
    if (draft.steps or "AR304" in codes) and not _heads_after(state, recorded):
        draft.add("AR304", Upgrade())


# -- layer 5: the models against the database ---------------------------------------------------


def _hide(state: State, finding: Finding, draft: _Draft, tables: tuple[str, ...],
          why: str) -> None:
    """Plan env.py's autogenerate filter, or refuse when env.py cannot be edited safely."""
    env = state.config.env_filter
    if not state.config.env_py_exists or env is None:
        draft.refuse(finding, "env.py is missing, cannot be decoded or does not parse: "
                     "repair it first")
    elif env.unsafe:
        draft.refuse(finding, env.why)
    else:
        draft.add(finding.code, HideFromAutogenerate(tables, why=why))


def _models(state: State, findings: list[Finding], draft: _Draft) -> None:
    orphans = tuple(sorted({f.location for f in findings if f.code == "AR406" and f.location}))
    if orphans:
        # A table nobody owns is kept out of autogenerate: no drop, no model guessed.
        _hide(state, _codes(findings, ("AR406",))[0], draft, orphans,
              "no revision and no model creates them")
    if _codes(findings, ("AR403",)):
        draft.add("AR403", Autogenerate())


# -- layer 6, on request only: values -------------------------------------------------------------


def _values(state: State, findings: list[Finding], draft: _Draft, asked: bool) -> None:
    for finding in findings:
        if not asked:
            draft.refuse(finding, "clearing values is done only when asked: `alembic-repair "
                         "fix --only AR407 --yes` sets them to NULL (kept in the backup)")
            continue
        junk = next((j for j in state.junk if f"{j.table}.{j.column}" == finding.location), None)
        if junk is None:
            continue
        nullable = next((f[4] for f in (state.live.facts if state.live else ())
                         if f[:3] == ("column", junk.table, junk.column)), True)
        if not nullable:
            draft.refuse(finding, f"{junk.table}.{junk.column} is NOT NULL, so its values cannot "
                         "be cleared: correct them by hand (doctor shows one)")
            continue
        draft.add("AR407", ClearJunk(junk.table, junk.column, junk.declared, junk.count))


# -- the plan ------------------------------------------------------------------------------------


Layer = Callable[[State, list[Finding], _Draft], None]


def make_plan(diagnosis: Diagnosis, *, only: Iterable[str] = (), models: str | None = None
              ) -> Plan:
    """The steps for the lowest layer that has findings (see the module docstring)."""
    state = diagnosis.state
    wanted = {c.upper() for c in only}
    findings = [f for f in diagnosis.findings
                if not wanted or f.code in wanted or f.code[:3] + "XX" in wanted]
    layers: list[tuple[str, tuple[str, ...], Layer]] = [
        ("setup files", CONFIG, lambda s, f, d: _config(s, f, models, d)),
        ("revision files", GRAPH, _graph),
        ("pending revisions", PENDING, _pending),
        ("database and history", VERSIONS, _versions),
        ("models and database", ("AR403", "AR406"), _models),
        ("values", ("AR407",), lambda s, f, d: _values(s, f, d, asked="AR407" in wanted
                                                        or "AR4XX" in wanted)),
    ]
    refused: list[tuple[Finding, str]] = []
    for name, codes, layer in layers:
        mine = _codes(findings, codes)
        if not mine:
            continue
        draft = _Draft()
        layer(state, mine, draft)
        refused += draft.unrepairable
        if draft.steps:
            return Plan(name, tuple(draft.steps), tuple(refused), tuple(draft.addressed))
        if draft.unrepairable:
            # A layer that cannot be repaired blocks the ones above it.
            return Plan(name, (), tuple(refused))
    return Plan("none", (), tuple(refused))
