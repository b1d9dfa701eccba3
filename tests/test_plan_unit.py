"""The planner as a pure function: a Diagnosis built in memory in, a Plan out.

No database and (but for two cases that compare files) no files: the State is assembled from
its dataclasses, the findings from the catalogue with their subjects and facts. Also checks the
registry itself: every catalogue code has exactly one rule and exactly one resolution.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.operations import ops
from sqlalchemy import Column as SAColumn
from sqlalchemy import String

from alembic_repair.diagnose import findings as F
from alembic_repair.diagnose.diagnosis import Diagnosis
from alembic_repair.diagnose.findings import CATALOGUE, Finding, sort_key
from alembic_repair.diagnose.rules import RULE_OF, RULES
from alembic_repair.diagnose.rules.schema import HalfApplied
from alembic_repair.diagnose.subjects import (
    Column,
    DatabaseUrl,
    HiddenDrops,
    KeptModels,
    MissingParent,
    PendingChange,
    RevisionFile,
    RevisionFiles,
    SchemaEquals,
    SetupFile,
    SourceFile,
    Table,
    VersionsDir,
    VersionTable,
    Visible,
)
from alembic_repair.engine.env_filter import EnvFilter
from alembic_repair.engine.project import Project
from alembic_repair.engine.replay import Replay
from alembic_repair.engine.state.config import ConfigState
from alembic_repair.engine.state.drift import ModelDrift, TableDrift
from alembic_repair.engine.state.junk import Junk
from alembic_repair.engine.state.pending import Pending, PendingOp, PendingRevision
from alembic_repair.engine.state.read import State
from alembic_repair.engine.state.recorder import VersionTable as Rows
from alembic_repair.engine.state.schema import SchemaSnapshot
from alembic_repair.engine.state.scripts import ScriptFile
from alembic_repair.repair import registry
from alembic_repair.repair.history.absorb import AbsorbDrift
from alembic_repair.repair.history.baseline import InsertBaseline
from alembic_repair.repair.history.missing import RecreateMissing
from alembic_repair.repair.plan import Plan, make_plan
from alembic_repair.repair.repairs import catalogue
from alembic_repair.repair.steps import (
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
    Upgrade,
    WriteMerge,
    WriteSetupFile,
)

ROOT = Path("/nonexistent/project")  # nothing below it exists: no repair may need to read it
VERSIONS = "alembic/versions"
SAFE_ENV = EnvFilter(current=True, kept=frozenset(), unwired=(), unsafe=())
UNSAFE_ENV = EnvFilter(current=False, kept=frozenset(), unwired=(), unsafe=(7,),
                       notes=("line 7: context.configure(**kwargs)",))


def script(revision: str | None, *parents: str, root: Path = ROOT, **kw: object) -> ScriptFile:
    name = f"{revision or 'helpers'}.py"
    return ScriptFile(root / VERSIONS / name, revision, tuple(parents),
                      **{"upgrade": "code", "downgrade": "code", **kw})  # type: ignore[arg-type]


def state(*scripts: ScriptFile, root: Path = ROOT, rows: tuple[str, ...] | None = ("a1",),
          env: EnvFilter | None = SAFE_ENV, models: str | None = "app.models:Base",
          **kw: object) -> State:
    project = Project(root, root / "alembic.ini", root / "alembic", "sqlite:///app.db",
                      models=models)
    config = ConfigState(ini_exists=True, script_location_raw="%(here)s/alembic",
                         prepend_sys_path=True, script_location_exists=True,
                         env_py_exists=True, versions_dir_exists=True, render_as_batch=True,
                         compare_type_off=False, env_filter=env)
    scripts = scripts or (script("a1"),)
    heads = tuple(sorted({s.revision for s in scripts if s.revision} -
                         {p for s in scripts for p in s.down_revisions}))
    versions = None if rows is None else Rows(exists=True, rows=rows, length=32)
    return State(project, config, scripts, heads, versions=versions, **kw)  # type: ignore


def plan(st: State, *found: Finding, only: tuple[str, ...] = (), models: str | None = None
         ) -> Plan:
    return make_plan(Diagnosis(tuple(sorted(found, key=sort_key)), st), only=only,
                     models=models)


def why(code: str) -> str:
    entry = registry.BY_CODE[code]
    assert isinstance(entry, registry.Refusal) and isinstance(entry.why, str)
    return entry.why


ENV_PY = SetupFile("alembic/env.py")


# -- the registry --------------------------------------------------------------------------------


def test_every_code_has_one_rule_and_one_resolution() -> None:
    for code in CATALOGUE:
        assert sum(code in rule.codes for rule in RULES) == 1, code  # type: ignore[attr-defined]
        assert code in RULE_OF, code
        entry = registry.BY_CODE[code]
        assert isinstance(entry, (registry.Repair, registry.Refusal, registry.ReportOnly)), code
        if isinstance(entry, registry.ReportOnly):
            assert entry.why and entry.layer is None, code
        else:
            assert entry.layer in registry.LAYERS, code
    assert set(registry.BY_CODE) == set(CATALOGUE)
    rows = {e.code: e for e in catalogue()}
    assert rows["AR302"].rule == "version_table" and rows["AR302"].resolution == "repair"
    assert rows["AR201"].resolution == "refusal" and rows["AR111"].resolution == "report"
    assert rows["AR302"].examples  # the docs page's example scenario


def test_info_codes_are_report_only_or_repaired_by_request() -> None:
    for code, entry in CATALOGUE.items():
        if entry.severity == "info" and code != "AR406" and code != "AR207":
            assert isinstance(registry.BY_CODE[code], registry.ReportOnly), code


def test_repairs_read_no_finding_text() -> None:
    """Subjects and facts only: the wording of a finding never decides what fix does."""
    folder = Path(registry.__file__).parent
    for path in [folder / "plan.py", *sorted((folder / "repairs").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        assert ".detail" not in text and ".location" not in text.replace(
            "f.location, \"reason\"", ""), path.name
        assert "split(" not in text or path.name == "graph.py", path.name  # module names


def test_registry_imports_light() -> None:
    code = ("import sys, alembic_repair.repair.registry as r; "
            "assert 'libcst' not in sys.modules and 'alembic' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('libcst', 'alembic')))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_location_is_the_subject_rendered() -> None:
    assert F.AR201.finding("x", RevisionFile("v/a.py", None, 3)).location == "v/a.py:3"
    assert F.AR202.finding("x", RevisionFiles(("v/a.py", "v/b.py"))).location == "v/a.py, v/b.py"
    assert F.AR107.finding("x", DatabaseUrl()).location is None
    assert F.AR407.finding("x", Column("post", "views")).as_dict()["location"] == "post.views"
    assert F.AR504.finding("x", SourceFile("app/models.py", 4)).location == "app/models.py:4"


# -- layer 1: setup files --------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["AR101", "AR102"])
def test_ini_rewritten(code: str) -> None:
    p = plan(state(), CATALOGUE[code].finding("x", SetupFile("alembic.ini")))
    assert p.layer == "setup files" and p.addressed == (code,)
    assert p.steps == (WriteSetupFile("alembic.ini", why=CATALOGUE[code].title),)


@pytest.mark.parametrize("code", ["AR104", "AR105", "AR106"])
def test_env_py_written_from_the_models(code: str) -> None:
    p = plan(state(), CATALOGUE[code].finding("x", ENV_PY), models="pkg:Base")
    assert p.steps == (WriteSetupFile("alembic/env.py", models="pkg:Base",
                                      why=CATALOGUE[code].title),
                       WriteSetupFile("alembic/script.py.mako"))


def test_env_py_refused_without_models() -> None:
    p = plan(state(models=None), F.AR106.finding("x", ENV_PY))
    assert p.steps == () and [(f.code, r) for f, r in p.unrepairable] == [
        ("AR106", "the models cannot be found: pass --models module:Base")]


def test_url_percent_doubled_only_for_interpolation(tmp_path: Path) -> None:
    """Planned only when the edit changes alembic.ini's line (the ini is read for it)."""
    (tmp_path / "alembic.ini").write_text(
        "[alembic]\nsqlalchemy.url = sqlite:///100%done/app.db\n", encoding="utf-8")
    finding = F.AR107.finding("x", DatabaseUrl("alembic.ini", 2), F_url(True))
    assert plan(state(root=tmp_path), finding).steps == (EditIni(
        "sqlalchemy.url", "double-percent", why="ConfigParser reads a single '%' as "
        "interpolation"),)
    other = replace(finding, facts=F_url(False))  # e.g. a raw '@' in the password
    p = plan(state(root=tmp_path), other)
    assert p.steps == () and p.unrepairable[0][1].startswith("correct the database URL")
    (tmp_path / "alembic.ini").write_text(  # nothing to edit: refused, never a no-op step
        "[alembic]\nsqlalchemy.url = sqlite:///100%%done/app.db\n", encoding="utf-8")
    p = plan(state(root=tmp_path), finding)
    assert p.steps == () and p.unrepairable[0][1].startswith("correct the database URL")


def F_url(interpolation: bool) -> object:  # noqa: N802
    from alembic_repair.diagnose.subjects import UrlProblem

    return UrlProblem(interpolation)


@pytest.mark.parametrize(("code", "step"), [
    ("AR108", SetEnvOption("render_as_batch", why="SQLite can only ALTER a table by copying it "
                           "(batch mode)")),
    ("AR109", SetEnvOption("compare_type", why="autogenerate must see type changes")),
    ("AR110", EditIni("script_location", "here-relative",
                      why="Alembic resolves it against the working directory")),
    ("AR112", EnsureVersionsDir()),
])
def test_setup_one_step(code: str, step: object) -> None:
    p = plan(state(), CATALOGUE[code].finding("x", ENV_PY))
    assert p.steps == (step,) and p.addressed == (code,)


def test_setup_steps_in_doctor_order() -> None:
    p = plan(state(), F.AR112.finding("x", VersionsDir(VERSIONS)),
             F.AR108.finding("x", ENV_PY), F.AR101.finding("x", SetupFile("alembic.ini")))
    assert p.addressed == ("AR101", "AR108", "AR112")


def test_visible_tables_hidden() -> None:
    p = plan(state(), F.AR113.finding("x", ENV_PY, Visible(("_ar_trash_post",))))
    assert p.steps == (HideFromAutogenerate((), why="plain autogenerate must not drop them"),)


def test_kept_table_with_a_model_refused_with_its_fix() -> None:
    finding = F.AR113.finding("x", ENV_PY, KeptModels(("legacy",)), fix="remove legacy")
    p = plan(state(), finding)
    assert p.steps == () and p.unrepairable == ((finding, "remove legacy"),)


def test_visible_with_unreadable_env_refused_and_unsafe_env_left() -> None:
    unreadable = F.AR113.finding("x", ENV_PY, Visible(("legacy",), readable=False))
    assert plan(state(env=None), unreadable).unrepairable[0][1].startswith("env.py is missing")
    p = plan(state(env=UNSAFE_ENV), F.AR113.finding("x", ENV_PY, Visible(("legacy",))))
    assert p == Plan("none", ())  # the finding's own fix says what to add by hand


# -- layer 2: revision files -------------------------------------------------------------------


@pytest.mark.parametrize("code", ["AR201", "AR204", "AR209"])
def test_graph_refusals(code: str) -> None:
    finding = CATALOGUE[code].finding("x", RevisionFile(f"{VERSIONS}/a1.py"))
    p = plan(state(), finding, F.AR304.finding("x", VersionTable()))
    assert p.layer == "revision files" and p.steps == ()
    assert p.unrepairable == ((finding, why(code)),)  # and the layers above are blocked


def test_missing_parent_recreated() -> None:
    st = state(script("b2", "a1"), rows=("b2",))
    finding = F.AR203.finding("x", RevisionFile(f"{VERSIONS}/b2.py", "b2"), MissingParent("a1"))
    assert plan(st, finding).steps == (RecreateMissing("a1", None, ("b2",), "b2"),)


def test_missing_parent_refused_without_a_recorded_revision() -> None:
    st = state(script("b2", "a1"), rows=())
    finding = F.AR203.finding("x", RevisionFile(f"{VERSIONS}/b2.py", "b2"), MissingParent("a1"))
    p = plan(st, finding)
    assert p.steps == () and "no database records one revision after a1" in \
        p.unrepairable[0][1]


def test_empty_revision_moved_unless_applied() -> None:
    st = state(script("a1"), script("e3", "a1", upgrade="empty"), rows=("a1",))
    finding = F.AR207.finding("x", RevisionFile(f"{VERSIONS}/e3.py", "e3"))
    assert plan(st, finding).steps == (MoveToBackup(
        f"{VERSIONS}/e3.py", why="an empty revision no database here applied"),)
    assert plan(replace(st, versions=Rows(True, ("e3",))), finding) == Plan("none", ())


def test_stray_file_moved_unless_imported(tmp_path: Path) -> None:
    finding = F.AR206.finding("x", RevisionFile(f"{VERSIONS}/helpers.py"))
    st = state(script("a1"), script(None))
    assert plan(st, finding).steps == (MoveToBackup(f"{VERSIONS}/helpers.py",
                                                    why="not a revision (no revision id)"),)
    (tmp_path / VERSIONS).mkdir(parents=True)
    (tmp_path / VERSIONS / "a1.py").write_text("import helpers\n", encoding="utf-8")
    (tmp_path / VERSIONS / "helpers.py").write_text("X = 1\n", encoding="utf-8")
    st = state(script("a1", root=tmp_path), script(None, root=tmp_path), root=tmp_path)
    p = plan(st, finding)
    assert p.steps == () and p.unrepairable[0][1] == "helpers.py is imported by a revision: " \
        "keep it"


def test_duplicate_copies(tmp_path: Path) -> None:
    (tmp_path / VERSIONS).mkdir(parents=True)
    for name in ("a1.py", "a1_copy.py"):
        (tmp_path / VERSIONS / name).write_text("revision = 'a1'\n", encoding="utf-8")
    copy = replace(script("a1", root=tmp_path), path=tmp_path / VERSIONS / "a1_copy.py")
    st = state(script("a1", root=tmp_path), copy, root=tmp_path)
    finding = F.AR202.finding("x", RevisionFiles((f"{VERSIONS}/a1.py", f"{VERSIONS}/a1_copy.py")))
    assert plan(st, finding).steps == (MoveToBackup(f"{VERSIONS}/a1_copy.py",
                                                    why="a copy of a1.py"),)
    (tmp_path / VERSIONS / "a1_copy.py").write_text("revision = 'a1'\nX = 2\n", encoding="utf-8")
    p = plan(st, finding)
    assert p.steps == () and p.unrepairable[0][1].startswith("the files defining a1 differ")


def test_heads_merged() -> None:
    st = state(script("a1"), script("b2", "a1"), script("c3", "a1"), rows=("b2",))
    p = plan(st, F.AR205.finding("x", VersionsDir(VERSIONS)))
    assert p.steps == (WriteMerge(("b2", "c3"), WriteMerge.revision_for(("b2", "c3"))),)


# -- layer 3: pending revisions --------------------------------------------------------------------


def pending_state(*operations: object, rows: tuple[str, ...] = ("a1",),
                  env: EnvFilter | None = SAFE_ENV, live: SchemaSnapshot | None = None
                  ) -> State:
    revision = PendingRevision("b2", f"{VERSIONS}/b2.py",
                               tuple(PendingOp(op, 10 + n) for n, op in enumerate(operations)))
    return state(script("a1"), script("b2", "a1"), rows=rows, env=env, live=live,
                 pending=Pending((revision,), dialect="sqlite"))


EMPTY = SchemaSnapshot(frozenset())
WITH_TABLES = SchemaSnapshot(frozenset({("table", "post")}))


AT_B2 = RevisionFile(f"{VERSIONS}/b2.py", "b2", 10)


def test_hidden_drops_removed() -> None:
    st = pending_state(ops.DropTableOp("_ar_trash_post"))
    p = plan(st, F.AR511.finding("x", AT_B2, HiddenDrops(("_ar_trash_post",))))
    assert p.layer == "pending revisions"
    assert p.steps == (RemoveHiddenDrops(f"{VERSIONS}/b2.py", ("_ar_trash_post",)),)


def test_drop_rewritten_as_soft_drop() -> None:
    st = pending_state(ops.DropColumnOp("post", "body"), ops.DropTableOp("legacy"))
    p = plan(st, F.AR501.finding("x", AT_B2, PendingChange("DropColumnOp")))
    assert p.steps == (HideFromAutogenerate(why="the soft drop puts tables into the trash"),
                       RewritePending(f"{VERSIONS}/b2.py", "soft-drops",
                                      ("post.body", "legacy")))


def test_soft_drop_refused_when_not_next_or_env_unsafe() -> None:
    finding = F.AR501.finding("x", AT_B2, PendingChange("DropTableOp"))
    p = plan(pending_state(ops.DropTableOp("legacy"), rows=(), live=EMPTY), finding)
    assert p.unrepairable[0][1] == ("revision b2 is not the next one to run; upgrade to its "
                                    "parent, then run fix again")
    p = plan(pending_state(ops.DropTableOp("legacy"), env=UNSAFE_ENV), finding)
    assert p.unrepairable[0][1].startswith("the soft drop needs env.py's autogenerate filter")


@pytest.mark.parametrize("code", ["AR502", "AR503"])
def test_new_column_rewritten_other_changes_held(code: str) -> None:
    st = pending_state(ops.AddColumnOp("post", None))  # type: ignore[arg-type]
    new = CATALOGUE[code].finding("x", AT_B2, PendingChange("AddColumnOp", new_column=True))
    assert plan(st, new).steps == (RewritePending(f"{VERSIONS}/b2.py", "unique-columns"),)
    held = CATALOGUE[code].finding("x", AT_B2, PendingChange("AlterColumnOp"), fix="Fill it.")
    assert plan(st, held).unrepairable == (
        (held, "no upgrade runs until this revision is corrected: Fill it."),)


def test_sqlite_alter_rewritten_into_batch_mode() -> None:
    """AR507: any pending revision (the rewrite does not read the live schema), env.py
    rendering batch mode too when it does not yet; a unique add_column is still held."""
    st = pending_state(ops.AlterColumnOp("post", "title"))
    finding = F.AR507.finding("x", AT_B2, PendingChange("AlterColumnOp"), fix="Do X.")
    assert plan(st, finding).steps == (RewritePending(f"{VERSIONS}/b2.py", "batch"),)
    without = replace(st, config=replace(st.config, render_as_batch=False))
    assert plan(without, finding).steps == (
        SetEnvOption("render_as_batch", why="SQLite can only ALTER a table by copying it "
                     "(batch mode)"), RewritePending(f"{VERSIONS}/b2.py", "batch"))
    column = SAColumn("slug", String(40), unique=True)
    with_unique = pending_state(ops.AlterColumnOp("post", "title"),
                                ops.AddColumnOp("post", column))
    assert plan(with_unique, finding).unrepairable == (
        (finding, "no upgrade runs until this revision is corrected: Do X."),)


@pytest.mark.parametrize("code", ["AR505", "AR508", "AR510"])
def test_pending_refusals(code: str) -> None:
    st = pending_state(ops.DropTableOp("legacy"))
    finding = CATALOGUE[code].finding("x", AT_B2, PendingChange("AlterColumnOp"), fix="Do X.")
    p = plan(st, finding, F.AR304.finding("x", VersionTable()))
    assert p.layer == "pending revisions" and p.steps == ()
    assert p.unrepairable == ((finding, "no upgrade runs until this revision is corrected: "
                                        "Do X."),)
    elsewhere = replace(finding, subject=RevisionFile(f"{VERSIONS}/zz.py", "zz", 1))
    assert plan(st, elsewhere).unrepairable[0][1] == \
        "no upgrade runs until this revision is made safe"


# -- layer 4: database and history -----------------------------------------------------------------


@pytest.mark.parametrize("code", ["AR301", "AR306", "AR302", "AR401"])
def test_stamp_what_the_schema_equals(code: str) -> None:
    st = state(script("a1"), script("b2", "a1"), rows=("zz",))
    p = plan(st, CATALOGUE[code].finding("x", VersionTable(), SchemaEquals(("a1",))))
    assert p.layer == "database and history" and p.addressed == (code, "AR304")
    assert p.steps == (Stamp(("a1",), ("zz",), why="the tables equal revision a1"), Upgrade())


def test_lost_revision_bridged_or_adopted() -> None:
    st = state(script("a1"), rows=("zz",))
    p = plan(st, F.AR302.finding("x", VersionTable(), SchemaEquals(())))
    assert p.steps == (AdoptSchema("a1", ("zz",), why="zz is lost; the bridge takes a1's schema "
                                   "to this database's"), Upgrade())
    p = plan(replace(st, scripts=(), script_heads=()),
             F.AR301.finding("x", VersionTable(), SchemaEquals(())))
    assert p.steps == (AdoptSchema(None, ("zz",), why="no revision file describes it"),)


def test_stamp_refused_when_the_schema_equals_nothing() -> None:
    st = state(script("a1"), script("b2", "a1"), rows=())
    finding = F.AR306.finding("x", VersionTable(), SchemaEquals(()))
    p = plan(st, finding, F.AR304.finding("x", VersionTable()))
    assert p.steps == () and len(p.unrepairable) == 1  # and no upgrade planned after it
    assert p.unrepairable[0][1].startswith("the tables equal no revision of the history")


@pytest.mark.parametrize("code", ["AR303", "AR305", "AR307"])
def test_version_table_reshaped(code: str) -> None:
    st = state(script("a1"), rows=("a1", "a1"))
    p = plan(st, CATALOGUE[code].finding("x", VersionTable()))
    assert p.steps == (Stamp(("a1",), ("a1", "a1"), why="alembic_version in Alembic's own "
                             "shape (VARCHAR(32) primary key, one row per head)"),)


def test_upgrade_when_behind() -> None:
    st = state(script("a1"), script("b2", "a1"), rows=("a1",))
    assert plan(st, F.AR304.finding("x", VersionTable())).steps == (Upgrade(),)


def test_half_applied_completed_or_refused() -> None:
    st = state(script("a1"), script("b2", "a1"), script("c3", "b2"), rows=("a1",))
    half = HalfApplied("b2", frozenset(), frozenset(), False)
    finding = F.AR402.finding("x", RevisionFile(f"{VERSIONS}/b2.py", "b2"), half)
    assert plan(st, finding).steps == (CompleteRevision("b2", ("a1",)), Upgrade())
    failed = replace(finding, facts=replace(half, failed=True))
    p = plan(st, failed, F.AR304.finding("x", VersionTable()))
    assert p.steps == () and p.unrepairable[0][1].startswith("revision b2 fails on an empty")


def test_baseline_inserted_or_refused() -> None:
    live = SchemaSnapshot(frozenset({("table", "post")}))
    st = state(script("a1"), rows=("a1",), live=live,
               replay=Replay(("a1",), failed_at="a1", error="no such table: post"))
    finding = F.AR404.finding("x", RevisionFile(f"{VERSIONS}/a1.py", "a1", 12))
    assert plan(st, finding).steps == (InsertBaseline("a1", "a1"),)
    other = replace(st, replay=Replay(("a1",), failed_at="a1", error="IntegrityError"))
    assert plan(other, finding).unrepairable[0][1].startswith("the replay fails for another")


HEAD_SCHEMA = SchemaSnapshot(frozenset({("table", "post"),
                                        ("column", "post", "id", "INTEGER", False, None)}))
BY_HAND = SchemaSnapshot(HEAD_SCHEMA.facts | {("column", "post", "x", "INTEGER", True, None)})


def test_schema_changed_by_hand_refused() -> None:
    finding = F.AR405.finding("x", VersionTable())
    drift = ModelDrift((TableDrift("post", frozenset(), frozenset(BY_HAND - HEAD_SCHEMA)),))
    st = state(live=BY_HAND, replay=Replay(("a1",), {"a1": HEAD_SCHEMA}), drift=drift)
    p = plan(st, finding, F.AR403.finding("x", Table("post")))
    assert p.layer == "database and history" and p.unrepairable == ((finding, (
        "the tables were changed by hand: the models cannot be compared with the tables")),)
    st = replace(st, models=BY_HAND)
    assert plan(st, finding).unrepairable == ((finding, (
        "the tables were changed by hand: the models differ from the tables too (post): put "
        "the change into the models (then fix writes the revision), or undo it")),)


def test_schema_changed_by_hand_and_in_the_models_is_absorbed() -> None:
    """AR405 whose change the models describe too: a revision written on the head, stamped."""
    finding = F.AR405.finding("x", VersionTable())
    st = replace(state(live=BY_HAND, replay=Replay(("a1",), {"a1": HEAD_SCHEMA}),
                       drift=ModelDrift(())), models=BY_HAND)
    p = plan(st, finding)
    assert p.steps == (AbsorbDrift("a1", ("a1",), "column post.x INTEGER"),)
    assert not p.needs_backup  # no DDL runs on the live database: a revision and a stamp
    dropped = replace(st, live=SchemaSnapshot(frozenset({("table", "post")})),
                      models=SchemaSnapshot(frozenset({("table", "post")})))
    assert plan(dropped, finding).unrepairable[0][1].startswith(
        "the tables were changed by hand: the tables lack what the history's head has "
        "(column post.id INTEGER NOT NULL)")


# -- layers 5 and 6: models, values ------------------------------------------------------------


def test_orphans_kept_then_models_autogenerated() -> None:
    p = plan(state(), F.AR406.finding("x", Table("old")), F.AR406.finding("x", Table("legacy")),
             F.AR403.finding("x", Table("post")))
    assert p.layer == "models and database" and p.addressed == ("AR406", "AR403")
    assert p.steps == (HideFromAutogenerate(("legacy", "old"), why="no revision and no model "
                                            "creates them"), Autogenerate())
    p = plan(state(env=UNSAFE_ENV), F.AR406.finding("x", Table("old")))
    assert p.unrepairable[0][1] == UNSAFE_ENV.why


def test_values_cleared_only_when_asked() -> None:
    junk = Junk("post", "views", "INTEGER", 2, "many")
    live = SchemaSnapshot(frozenset({("table", "post"),
                                     ("column", "post", "views", "INTEGER", True, None)}))
    finding = F.AR407.finding("x", Column("post", "views"), junk)
    p = plan(state(live=live), finding)
    assert p.layer == "values" and p.steps == () and \
        p.unrepairable[0][1].startswith("clearing values is done only when asked")
    for only in (("AR407",), ("ar4xx",)):
        assert plan(state(live=live), finding, only=only).steps == (
            ClearJunk("post", "views", "INTEGER", 2),)
    strict = SchemaSnapshot(frozenset({("column", "post", "views", "INTEGER", False, None)}))
    assert "is NOT NULL" in plan(state(live=strict), finding, only=("AR407",)).unrepairable[0][1]


# -- the walk ----------------------------------------------------------------------------------


def test_lowest_layer_first_and_only_filters() -> None:
    st = state(script("a1"), script("b2", "a1"), rows=("a1",))
    found = (F.AR108.finding("x", ENV_PY), F.AR304.finding("x", VersionTable()),
             F.AR111.finding("x", SetupFile("alembic.ini")))
    assert plan(st, *found).layer == "setup files"
    assert plan(st, *found, only=("AR304",)).steps == (Upgrade(),)
    assert plan(st, *found, only=("ar3xx",)).addressed == ("AR304",)
    assert plan(st, F.AR111.finding("x", SetupFile("alembic.ini"))) == Plan("none", ())


def test_refusals_of_lower_layers_carried_into_the_plan() -> None:
    st = state(script("a1"), script("b2", "a1"), rows=("a1",))
    stray = F.AR113.finding("x", ENV_PY, KeptModels(("legacy",)))
    p = plan(st, stray, F.AR108.finding("x", ENV_PY))
    assert p.steps == (SetEnvOption("render_as_batch", why="SQLite can only ALTER a table by "
                                    "copying it (batch mode)"),)
    assert [f.code for f, _ in p.unrepairable] == ["AR113"]
    assert p.as_dict()["unrepairable"] == [{"code": "AR113", "location": "alembic/env.py",
                                            "reason": stray.fix}]


@pytest.mark.parametrize("rows", [(), ("feedfacecafe",)], ids=["rows-missing", "rows-unknown"])
def test_no_revision_file_moved_or_rewritten_when_what_ran_is_unknown(
        rows: tuple[str, ...]) -> None:
    """On a database with tables whose alembic_version rows are missing or unknown, every
    revision only looks unapplied: an empty head is not moved away (it may be the history's real
    head), and a pending revision is neither rewritten nor made to block with the wrong reason."""
    empty = F.AR207.finding("x", RevisionFile(f"{VERSIONS}/e3.py", "e3"))
    st = state(script("a1"), script("e3", "a1", upgrade="empty"), rows=rows, live=WITH_TABLES)
    assert plan(st, empty).steps == ()
    st = state(script("a1"), script("e3", "a1", upgrade="empty"), rows=rows, live=EMPTY)
    assert plan(st, empty).steps == (() if rows else (MoveToBackup(
        f"{VERSIONS}/e3.py", why="an empty revision no database here applied"),))

    drop = F.AR501.finding("x", AT_B2, PendingChange("DropTableOp"))
    hidden = F.AR511.finding("x", AT_B2, HiddenDrops(("_ar_trash_post",)))
    for finding, operation in ((drop, ops.DropTableOp("legacy")),
                               (hidden, ops.DropTableOp("_ar_trash_post"))):
        p = plan(pending_state(operation, rows=rows, live=WITH_TABLES), finding)
        assert p.steps == ()
        assert "alembic_version does not say whether revision b2 ran here" in \
            p.unrepairable[0][1]
