"""The rules as pure functions: a `State` built in memory in, findings out (issue 11).

Every catalogue code has a `Case` below: a state that shows it (the code must appear with its
location and the key words of its detail, next to exactly the other codes the case names) and
a near-identical state that must not show it. No file is read and no database is opened: the
row-dependent AR5xx rules get the answers of their queries through `Pending.data`, as
`read_pending` leaves them. `test_every_code_has_a_case` fails for a new code without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from alembic.operations import ops
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String
from state_builders import (
    AUTHOR,
    POST,
    ROOT,
    VERSIONS,
    A,
    B,
    C,
    chain,
    config,
    healthy,
    offline,
    replay,
    revision,
    schema,
    script,
    with_pending,
)

from alembic_repair.diagnose.diagnosis import CONFIG_CODES, diagnose
from alembic_repair.diagnose.findings import CATALOGUE, Finding
from alembic_repair.diagnose.rules import RULE_OF, RULES
from alembic_repair.engine.env_filter import EnvFilter
from alembic_repair.engine.state.junk import Junk
from alembic_repair.engine.state.pending import ROW_CAP, OnceDefault
from alembic_repair.engine.state.read import State
from alembic_repair.engine.state.recorder import VersionTable
from alembic_repair.errors import ConfigError, IniError, PyprojectError, UrlError

NO_FILTER = EnvFilter(current=False, kept=frozenset(), unwired=(), unsafe=())
AT_A, AT_B = schema(AUTHOR), schema(AUTHOR, POST)
#: bbb222 half done: the post table exists, with only its id column (MySQL committed the
#: CREATE TABLE, a later ALTER of the same revision failed).
HALF_B = schema(AUTHOR, {"post": [("id", "INTEGER", False)]})
#: bbb222 with one column nobody's revision adds.
DRIFTED = schema(AUTHOR, POST, extra=[("column", "author", "nickname", "VARCHAR(50)", True, None)])
TRASH = "_ar_trash_20260101_post"


def codes(state: State) -> set[str]:
    return {f.code for f in diagnose(state).findings}


@dataclass(frozen=True)
class Case:
    """One way `code` shows: the broken state, the near miss, and what the finding says."""

    code: str
    name: str
    broken: Callable[[], State]
    passing: Callable[[], State]
    location: str | None
    words: tuple[str, ...]
    others: frozenset[str] = frozenset()  # the other codes the broken state shows too
    severity: str | None = None  # None: the catalogue's
    instead: frozenset[str] = frozenset()  # the codes the near miss shows in its place

    @property
    def id(self) -> str:
        return f"{self.code}-{self.name}"


def case(code: str, name: str, broken: Callable[[], State], passing: Callable[[], State],
         location: str | None, *words: str, others: str = "", severity: str | None = None,
         instead: str = "") -> Case:
    return Case(code, name, broken, passing, location, words,
                frozenset(others.split()), severity, frozenset(instead.split()))


def _ini_error() -> IniError:
    return IniError(f"{ROOT}/alembic.ini:3: cannot be parsed ('oops' is neither key = value nor "
                    "a [section] header); fix that line")


def _one_pending(*operations: object, data: dict[tuple[Any, ...], Any] | None = None,
                 batch: bool = False, dialect: str = "sqlite",
                 **changes: Any) -> Callable[[], State]:
    """A state whose database is at bbb222 with one pending revision ccc333 of `operations`."""
    return lambda: with_pending(revision(C, *operations, batch=batch), dialect=dialect,
                                data=data, **changes)


def _add(table: str, column: Column[Any]) -> ops.AddColumnOp:
    return ops.AddColumnOp(table, column)


WHERE_C = f"{VERSIONS}/{C}.py:20"  # the first operation of the pending revision ccc333
WHERE_C2 = f"{VERSIONS}/{C}.py:21"

CASES: list[Case] = [
    # -- AR1xx: configuration ------------------------------------------------------------
    case("AR101", "no-ini", lambda: healthy(config=config(ini_exists=False)), healthy,
         "alembic.ini", "no alembic.ini in", str(ROOT)),
    case("AR102", "ini-does-not-parse", lambda: healthy(problems=(_ini_error(),)), healthy,
         "alembic.ini:3", "alembic.ini:3: cannot be parsed", "'oops'"),
    case("AR103", "script-location-missing",
         lambda: healthy(config=config(script_location_exists=False,
                                       script_location_raw="migrations")),
         healthy, "alembic.ini", "script_location 'migrations' resolves to", "does not exist"),
    case("AR104", "no-env-py", lambda: healthy(config=config(env_py_exists=False)), healthy,
         "alembic/env.py", "alembic/env.py does not exist"),
    case("AR105", "env-py-raises",
         lambda: healthy(models_error=ConfigError(
             "alembic/env.py:7: running alembic/env.py failed with ModuleNotFoundError: No "
             "module named 'app'; fix the import")),
         healthy, "alembic/env.py:7", "ModuleNotFoundError", "No module named 'app'"),
    case("AR106", "metadata-none", lambda: healthy(models_none=True, models=None), healthy,
         "alembic/env.py", "passes target_metadata=None"),
    case("AR107", "percent-in-ini-url",
         lambda: healthy(problems=(UrlError(
             f"{ROOT}/alembic.ini:5: sqlalchemy.url contains a '%' that alembic.ini reads as "
             "interpolation; write each '%' as '%%'"),)),
         healthy, "alembic.ini:5", "alembic.ini:5: sqlalchemy.url contains a '%'"),
    case("AR107", "env-url-not-a-url",
         lambda: healthy(problems=(UrlError(
             "DATABASE_URL: 'nope' is not a database URL (expected dialect+driver://...)"),)),
         healthy, None, "DATABASE_URL", "is not a database URL"),
    case("AR108", "sqlite-without-batch",
         lambda: healthy(config=config(render_as_batch=False)),
         lambda: healthy(url="mariadb+pymysql://u@db/app", config=config(render_as_batch=False),
                         pending=None),
         "alembic/env.py", "never sets render_as_batch",
         severity="info"),  # a note until a pending revision needs batch mode (issue 13)
    case("AR109", "compare-type-off", lambda: healthy(config=config(compare_type_off=True)),
         healthy, "alembic/env.py", "passes compare_type=False"),
    case("AR110", "relative-script-location",
         lambda: healthy(config=config(script_location_raw="alembic")),
         lambda: healthy(config=config(script_location_raw="myapp:migrations")),
         "alembic.ini", "script_location = alembic", "working directory"),
    case("AR111", "no-prepend-sys-path", lambda: healthy(config=config(prepend_sys_path=False)),
         healthy, "alembic.ini", "alembic.ini has no prepend_sys_path"),
    case("AR112", "no-versions-folder",
         lambda: healthy(config=config(versions_dir_exists=False)), healthy,
         "alembic/versions", "alembic/versions/ does not exist"),
    case("AR113", "trash-visible",
         lambda: healthy(hidden_tables=(TRASH,), config=config(env_filter=NO_FILTER)),
         lambda: healthy(hidden_tables=(TRASH,)),
         "alembic/env.py", "env.py has no autogenerate filter", f"would drop {TRASH}",
         "`alembic check` fails"),
    case("AR113", "kept-table-has-a-model",
         lambda: healthy(kept_models=("legacy",), ignore_tables=("legacy",)),
         lambda: healthy(ignore_tables=("legacy",),
                         config=config(env_filter=EnvFilter(True, frozenset({"legacy"}), (),
                                                            ()))),
         "alembic/env.py", "kept table legacy now has a model", "changes to it go unseen"),
    case("AR114", "pyproject-bad-type",
         lambda: healthy(problems=(PyprojectError(
             f"{ROOT}/pyproject.toml: [tool.alembic_repair] ignore_tables must be a list of "
             "table names"),)),
         healthy, "pyproject.toml", "pyproject.toml: [tool.alembic_repair] ignore_tables"),
    # -- AR2xx: the revision graph (no database read) -------------------------------------
    case("AR201", "syntax-error",
         lambda: offline((*chain(A, B), script(None, name="broken", error="SyntaxError: "
                                               "invalid syntax", error_line=3))),
         lambda: offline(chain(A, B)), f"{VERSIONS}/broken.py:3",
         f"{VERSIONS}/broken.py:3: SyntaxError: invalid syntax"),
    case("AR202", "duplicate-id",
         lambda: offline((*chain(A, B), script(B, A, name=f"{B}_copy"))),
         lambda: offline((*chain(A, B), script(C, B, name=f"{B}_copy"))),
         f"{VERSIONS}/{B}.py, {VERSIONS}/{B}_copy.py", f"revision {B!r} is defined in"),
    case("AR203", "dangling-parent",
         lambda: offline((script(A), script(B, "zzz999"))), lambda: offline(chain(A, B)),
         f"{VERSIONS}/{B}.py", f"revision {B!r} has down_revision 'zzz999'", "no file defines"),
    case("AR204", "two-cycle",
         lambda: offline((script(A, B), script(B, A))), lambda: offline(chain(A, B)),
         f"{VERSIONS}/{A}.py, {VERSIONS}/{B}.py", f"revisions {A} -> {B} form a cycle"),
    case("AR205", "two-heads",
         lambda: offline((*chain(A, B), script(C, A))),
         lambda: offline((*chain(A, B), script(C, B))),
         VERSIONS, f"2 heads: {B}, {C}"),
    case("AR206", "file-without-id",
         lambda: offline((*chain(A, B), script(None, name="helpers"))),
         lambda: offline(chain(A, B)), f"{VERSIONS}/helpers.py",
         f"{VERSIONS}/helpers.py has no `revision = '...'` line"),
    case("AR207", "empty-upgrade",
         lambda: offline((script(A), script(B, A, upgrade="empty", downgrade="empty"))),
         lambda: offline((*chain(A, B), script(C, A, B, upgrade="empty"))),
         f"{VERSIONS}/{B}.py", f"revision {B}: upgrade() does nothing"),
    case("AR208", "empty-downgrade",
         lambda: offline((script(A), script(B, A, downgrade="empty"))),
         lambda: offline((script(A), script(B, A, upgrade="empty", downgrade="empty"))),
         f"{VERSIONS}/{B}.py", f"revision {B}: downgrade() is empty", instead="AR207"),
    case("AR209", "import-fails",
         lambda: offline(chain(A, B), import_error=(
             f"{VERSIONS}/{B}.py:4", "ModuleNotFoundError: No module named 'app.types'")),
         lambda: offline(chain(A, B)), f"{VERSIONS}/{B}.py:4",
         f"{VERSIONS}/{B}.py:4: ModuleNotFoundError", "app.types"),
    # -- AR3xx: the version table ------------------------------------------------------------
    case("AR301", "no-version-table", lambda: healthy(versions=VersionTable(False)),
         lambda: healthy(versions=VersionTable(False), live=schema(), models=None),
         "alembic_version", "2 tables and no alembic_version table",
         f"the schema equals revision {B}"),
    case("AR302", "unknown-revision",
         lambda: healthy(versions=VersionTable(True, ("zzz999",), 32)), healthy,
         "alembic_version", "alembic_version records zzz999, which no revision file defines",
         f"the schema equals revision {B}"),
    case("AR303", "same-row-twice",
         lambda: healthy(versions=VersionTable(True, (B, B), 32, has_pk=False)),
         lambda: healthy(versions=VersionTable(True, (B,), 32, has_pk=False)),
         "alembic_version", "2 rows for 1 revision:", others="AR307"),
    case("AR303", "ancestor-beside-descendant",
         lambda: healthy(versions=VersionTable(True, (A, B), 32)), healthy,
         "alembic_version", f"{A} recorded beside its descendant {B}"),
    case("AR304", "behind-head", lambda: healthy(versions=VersionTable(True, (A,), 32),
                                                 live=AT_A), healthy,
         "alembic_version", f"at {A}; 1 revision not applied, up to {B}"),
    case("AR305", "short-version-num", lambda: healthy(versions=VersionTable(True, (B,), 4)),
         lambda: healthy(versions=VersionTable(True, (B,), 6)),
         "alembic_version", "version_num is VARCHAR(4)", "6 characters"),
    case("AR306", "empty-version-table", lambda: healthy(versions=VersionTable(True, ())),
         lambda: healthy(versions=VersionTable(True, ()), live=schema(), models=None),
         "alembic_version", "2 tables and no alembic_version row",
         f"the schema equals revision {B}"),
    case("AR307", "no-primary-key",
         lambda: healthy(versions=VersionTable(True, (B,), 32, has_pk=False)), healthy,
         "alembic_version", "alembic_version has no primary key"),
    # -- AR4xx: the schema ------------------------------------------------------------------
    case("AR401", "stamped-behind",
         lambda: healthy(versions=VersionTable(True, (A,), 32)), healthy,
         "alembic_version", f"alembic_version records {A}, but the schema equals revision {B}",
         others="AR304"),
    case("AR402", "half-applied",
         lambda: healthy(versions=VersionTable(True, (A,), 32), live=HALF_B), healthy,
         f"{VERSIONS}/{B}.py", f"revision {B} is half-applied",
         "done: column post.id INTEGER NOT NULL, primary key post(id), table post;",
         "not done: column post.author_id INTEGER, column post.title VARCHAR(200)",
         others="AR304"),
    case("AR402", "replay-stops-in-it",
         lambda: healthy(versions=VersionTable(True, (A,), 32), live=HALF_B,
                         replay_=replay({A: AT_A}, failed_at=B, partial=HALF_B,
                                        error="OperationalError: near ALTER",
                                        error_location=f"{VERSIONS}/{B}.py:14")),
         lambda: healthy(versions=VersionTable(True, (A,), 32), live=AT_A,
                         replay_=replay({A: AT_A}, failed_at=B, partial=HALF_B,
                                        error="OperationalError: near ALTER",
                                        error_location=f"{VERSIONS}/{B}.py:14")),
         f"{VERSIONS}/{B}.py", f"revision {B} is half-applied",
         "primary key post(id), table post", "not done: the rest of the revision",
         f"fails at {VERSIONS}/{B}.py:14: OperationalError", others="AR304 AR404"),
    case("AR403", "model-column-missing",
         lambda: healthy(models=schema(AUTHOR, POST, extra=[
             ("column", "author", "email", "VARCHAR(100)", True, None)])), healthy,
         "author", "in the models only: column author.email VARCHAR(100)"),
    case("AR403", "models-and-no-history",
         lambda: healthy(scripts=(), versions=VersionTable(True, ()), live=schema(),
                         models=AT_B, replay_=None),
         lambda: healthy(scripts=(), versions=VersionTable(True, ()), live=schema(),
                         models=schema(), replay_=None),
         VERSIONS, "the database has no table and no revision creates one",
         "the models define 2: author, post"),
    case("AR404", "history-fails-from-empty",
         lambda: healthy(replay_=replay({A: AT_A}, failed_at=B, error="OperationalError: "
                                        "table author already exists",
                                        error_location=f"{VERSIONS}/{B}.py:12")),
         healthy, f"{VERSIONS}/{B}.py:12",
         f"replaying from an empty database fails at revision {B}", "already exists"),
    case("AR405", "manual-alter", lambda: healthy(live=DRIFTED), healthy, "alembic_version",
         f"the schema is not the one of {B}",
         "in the database only: column author.nickname VARCHAR(50)",
         "missing from it: nothing"),
    case("AR406", "unknown-table",
         lambda: healthy(live=schema(AUTHOR, POST, {"legacy": [("id", "INTEGER", False)]}),
                         models=AT_B), healthy,
         "legacy", "table legacy is created by no revision and no model"),
    case("AR407", "text-in-integer",
         lambda: healthy(junk=(Junk("author", "age", "INTEGER", 3, "abc"),)), healthy,
         "author.age", "3 values in author.age (INTEGER)", "'abc'"),
    case("AR408", "replay-not-allowed",
         lambda: healthy(replay_=None, replay_skipped="(1044) Access denied for user 'app'"),
         lambda: healthy(replay_=None), VERSIONS,
         "the replay could not start: (1044) Access denied"),
    case("AR409", "env-py-connects-elsewhere",
         lambda: healthy(replay_=replay({A: AT_A, B: AT_B}, fallback="env.py connects to "
                                        "another database than the scratch database")),
         healthy, "alembic/env.py",
         "the history was replayed without env.py: env.py connects to another database"),
    # -- AR5xx: pending revisions (the rows' answers are in Pending.data) ------------------
    case("AR501", "drop-table-with-rows",
         _one_pending(ops.DropTableOp("post"), data={("rows", "post"): 3}),
         _one_pending(ops.DropTableOp("post"), data={("rows", "post"): 0}),
         WHERE_C, f"revision {C} drops table post, which has 3 rows",
         "its downgrade cannot bring them back", others="AR304"),
    case("AR501", "drop-column-with-values",
         _one_pending(ops.DropColumnOp("post", "title"),
                      data={("values", "post", "title"): True}),
         _one_pending(ops.DropColumnOp("post", "title"),
                      data={("values", "post", "title"): False}),
         WHERE_C, f"revision {C} drops column post.title, which holds values", others="AR304"),
    case("AR502", "add-not-null-column",
         _one_pending(_add("post", Column("slug", String(50), nullable=False)),
                      data={("rows", "post"): 3}),
         _one_pending(_add("post", Column("slug", String(50), nullable=False,
                                          server_default="x")), data={("rows", "post"): 3}),
         WHERE_C, f"revision {C} adds post.slug NOT NULL without a server default",
         "post has 3 rows", others="AR304"),
    case("AR502", "set-not-null-on-nulls",
         _one_pending(ops.AlterColumnOp("post", "title", modify_nullable=False),
                      data={("nulls", "post", "title"): True}, batch=True),
         _one_pending(ops.AlterColumnOp("post", "title", modify_nullable=False),
                      data={("nulls", "post", "title"): False}, batch=True),
         WHERE_C, f"revision {C} sets post.title NOT NULL", "it holds NULLs", others="AR304"),
    case("AR503", "unique-on-duplicates",
         _one_pending(ops.CreateUniqueConstraintOp("uq_post_title", "post", ["title"]),
                      data={("dups", "post", ("title",)): (("hello",), 2)}, batch=True),
         _one_pending(ops.CreateUniqueConstraintOp("uq_post_title", "post", ["title"]),
                      batch=True),
         WHERE_C, f"revision {C} makes post(title) unique", "2 rows already hold 'hello'",
         others="AR304"),
    case("AR503", "unique-column-same-default",
         _one_pending(_add("post", Column("code", String(10), unique=True,
                                          server_default="x")),
                      data={("rows", "post"): 3}, dialect="mariadb"),
         _one_pending(_add("post", Column("code", String(10), unique=True)),
                      data={("rows", "post"): 3}, dialect="mariadb"),
         WHERE_C, f"revision {C} adds unique post(code)",
         "its 3 rows all get the server default 'x'", others="AR304"),
    case("AR504", "uuid4-called-once",
         lambda: with_pending(once_defaults=(
             OnceDefault("app/models.py:12", "default", "uuid.uuid4()"),)),
         lambda: with_pending(), "app/models.py:12",
         "default=uuid.uuid4() is computed once", "every row gets the same value"),
    case("AR505", "varchar-shorter-than-values",
         _one_pending(ops.AlterColumnOp("post", "title", modify_type=String(5)),
                      data={("maxlen", "post", "title"): 42}, dialect="mariadb"),
         _one_pending(ops.AlterColumnOp("post", "title", modify_type=String(5)),
                      data={("maxlen", "post", "title"): 5}, dialect="mariadb"),
         WHERE_C, f"revision {C} changes post.title to VARCHAR(5)",
         "its longest value has 42 characters", others="AR304"),
    case("AR505", "text-to-integer",
         _one_pending(ops.AlterColumnOp("post", "title", modify_type=Integer()),
                      data={("misfit", "post", "title", "integer"): "abc"}, dialect="mariadb"),
         _one_pending(ops.AlterColumnOp("post", "title", modify_type=Integer()),
                      data={("misfit", "post", "title", "integer"): None}, dialect="mariadb"),
         WHERE_C, f"revision {C} changes post.title from VARCHAR(200) to Integer",
         "some values are not an integer, e.g. 'abc'", others="AR304"),
    case("AR506", "two-ddl-on-mariadb",
         _one_pending(_add("post", Column("a", Integer())), _add("post", Column("b", Integer())),
                      dialect="mariadb"),
         _one_pending(_add("post", Column("a", Integer())), dialect="mariadb"),
         WHERE_C, f"revision {C} runs 2 DDL statements on existing tables (post)",
         severity="info", others="AR304"),
    case("AR507", "alter-outside-batch",
         _one_pending(ops.AlterColumnOp("post", "title", modify_nullable=True)),
         _one_pending(ops.AlterColumnOp("post", "title", modify_nullable=True), batch=True),
         WHERE_C, f"revision {C}: alter_column (nullable) on post outside batch mode",
         others="AR304"),
    case("AR508", "drop-and-add-column",
         _one_pending(ops.DropColumnOp("post", "title"),
                      _add("post", Column("headline", String(200))),
                      data={("values", "post", "title"): True}),
         _one_pending(ops.DropColumnOp("post", "title"),
                      _add("post", Column("headline", String(200))),
                      data={("values", "post", "title"): False}),
         WHERE_C, f"revision {C} drops post.title and adds post.headline, both VARCHAR(200)",
         "would be lost, not renamed", others="AR304"),
    case("AR508", "drop-and-create-table",
         _one_pending(ops.DropTableOp("post"),
                      ops.CreateTableOp("article", [
                          Column("id", Integer(), primary_key=True),
                          Column("title", String(200)), Column("author_id", Integer())]),
                      data={("rows", "post"): 3}),
         _one_pending(ops.DropTableOp("post"),
                      ops.CreateTableOp("article", [
                          Column("id", Integer(), primary_key=True),
                          Column("title", String(200)), Column("author_id", Integer())]),
                      data={("rows", "post"): 0}),
         WHERE_C, f"revision {C} drops table post (3 rows) and creates table article",
         "not renamed", others="AR304"),
    case("AR509", "unnamed-unique",
         _one_pending(ops.CreateUniqueConstraintOp(None, "post", ["title"]), batch=True),
         _one_pending(ops.CreateUniqueConstraintOp(None, "post", ["title"]), batch=True,
                      metadata=MetaData(naming_convention={"uq": "uq_%(table_name)s"})),
         WHERE_C, f"revision {C} creates a unique constraint on post with no name",
         severity="info", others="AR304"),
    case("AR509", "drop-constraint-named-none",
         _one_pending(ops.DropConstraintOp(None, "post"), batch=True),
         _one_pending(ops.DropConstraintOp("uq_post_title", "post"), batch=True),
         WHERE_C, f"revision {C} drops a constraint of post named None",
         severity="warning", others="AR304"),
    case("AR510", "string-without-length",
         _one_pending(_add("post", Column("note", String())), dialect="mariadb"),
         _one_pending(_add("post", Column("note", String(50))), dialect="mariadb"),
         WHERE_C, "post.note is sa.String() without a length",
         "mariadb has no VARCHAR without one", others="AR304"),
    case("AR511", "drops-the-trash",
         _one_pending(ops.DropTableOp(TRASH), hidden_tables=(TRASH,),
                      config=config(env_filter=NO_FILTER)),
         _one_pending(ops.DropTableOp("post"), hidden_tables=(TRASH,),
                      config=config(env_filter=NO_FILTER)),
         WHERE_C, f"revision {C} drops {TRASH} (1 operation)", "the trash's rows would be lost",
         others="AR113 AR304"),
]


def _found(case_: Case) -> list[Finding]:
    return [f for f in diagnose(case_.broken()).findings if f.code == case_.code]


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_code_has_a_case(code: str) -> None:
    assert code in {c.code for c in CASES}, f"{code} has no unit case in tests/test_rules_unit.py"


def test_the_healthy_state_shows_nothing() -> None:
    diagnosis = diagnose(healthy())
    assert diagnosis.findings == ()
    assert diagnosis.healthy and diagnosis.exit_code == 0
    assert not ROOT.exists()  # nothing could have been read from it


@pytest.mark.parametrize("case_", CASES, ids=[c.id for c in CASES])
def test_code_shows(case_: Case) -> None:
    found = _found(case_)
    assert found, f"{case_.code} missing; got {codes(case_.broken())}"
    assert any(f.location == case_.location and all(w in f.detail for w in case_.words)
               for f in found), [(f.location, f.detail) for f in found]
    entry = CATALOGUE[case_.code]
    assert all(f.title == entry.title for f in found)
    assert any(f.severity == (case_.severity or entry.severity) for f in found)
    assert codes(case_.broken()) == {case_.code} | case_.others


@pytest.mark.parametrize("case_", CASES, ids=[c.id for c in CASES])
def test_code_does_not_show_on_the_near_miss(case_: Case) -> None:
    """The near miss lacks the code, and shows nothing the broken state did not (bar what the
    case names): it differs from the broken state only in what the rule looks at."""
    shown = codes(case_.passing())
    assert case_.code not in shown
    assert shown <= case_.others | case_.instead


@pytest.mark.parametrize("case_", CASES, ids=[c.id for c in CASES])
def test_the_codes_own_rule_alone_finds_it(case_: Case) -> None:
    """The rule registered for the code, called directly, finds it; no other rule emits it."""
    state = case_.broken()
    own = list(RULE_OF[case_.code](state))
    assert any(f.code == case_.code and f.location == case_.location for f in own)
    strangers = [rule.__name__ for rule in RULES if rule is not RULE_OF[case_.code]
                 and any(f.code == case_.code for f in rule(state))]
    assert not strangers


def test_every_rule_speaks_in_some_case() -> None:
    """Each registered rule function, run on its own, yields something for some case (a rule
    no case reaches would have no unit test)."""
    states = [c.broken() for c in CASES]
    silent = [rule.__name__ for rule in RULES if not any(list(rule(s)) for s in states)]
    assert not silent


def test_rules_are_pure_and_repeatable() -> None:
    """Running every rule twice on the same state gives the same findings (no hidden state)."""
    for case_ in CASES:
        state = case_.broken()
        assert diagnose(state).findings == diagnose(state).findings


# -- variants a table row does not show ------------------------------------------------------


def test_ar113_is_an_error_when_a_pending_revision_already_drops_the_trash() -> None:
    state = with_pending(revision(C, ops.DropTableOp(TRASH)), hidden_tables=(TRASH,),
                         config=config(env_filter=NO_FILTER))
    (ar113,) = [f for f in diagnose(state).findings if f.code == "AR113"]
    assert ar113.severity == "error" and f"a pending revision already drops {TRASH} (AR511)" \
        in ar113.detail


def test_ar113_names_the_unwired_configure_call() -> None:
    env = EnvFilter(current=True, kept=frozenset(), unwired=(42,), unsafe=())
    state = healthy(hidden_tables=(TRASH,), config=config(env_filter=env))
    (ar113,) = [f for f in diagnose(state).findings if f.code == "AR113"]
    assert "some context.configure(...) call does not pass the filter (line 42)" in ar113.detail


def test_ar113_when_env_py_cannot_be_read() -> None:
    state = healthy(ignore_tables=("legacy",), config=config(env_filter=None))
    (ar113,) = [f for f in diagnose(state).findings if f.code == "AR113"]
    assert "cannot tell whether" in ar113.detail and "legacy" in ar113.detail


def test_ar501_row_count_is_capped_in_words() -> None:
    state = with_pending(revision(C, ops.DropTableOp("post")), data={("rows", "post"): ROW_CAP})
    (ar501,) = [f for f in diagnose(state).findings if f.code == "AR501"]
    assert f"at least {ROW_CAP} rows" in ar501.detail


def test_ar501_not_when_the_revision_copies_the_rows_first() -> None:
    backup = ops.CreateTableOp(f"{TRASH}_copy", [Column("id", Integer())])
    copy = ops.ExecuteSQLOp(f"INSERT INTO {TRASH}_copy SELECT * FROM post")
    hard = "hard drop of table post"
    for operations, markers in (((backup, ops.DropTableOp("post")), ()),
                                ((copy, ops.DropTableOp("post")), ()),
                                ((ops.DropTableOp("post"),), (hard,))):
        state = with_pending(revision(C, *operations, markers=markers),
                             data={("rows", "post"): 3})
        assert "AR501" not in codes(state), operations


def test_ar401_fix_names_the_newest_of_equal_revisions() -> None:
    """Two revisions with the same schema (a data migration): the stamp names the newest."""
    state = healthy(scripts=chain(A, B, C), versions=VersionTable(True, (A,), 32),
                    replay_=replay({A: AT_A, B: AT_B, C: AT_B}))
    (ar401,) = [f for f in diagnose(state).findings if f.code == "AR401"]
    assert f"the schema equals revision {B} .. {C}" in ar401.detail
    assert ar401.fix.startswith(f"alembic stamp {C}")


def test_safety_rules_say_nothing_without_pending_or_on_the_wrong_backend() -> None:
    add_two = revision(C, ops.AddColumnOp("post", Column("a", String())),
                       ops.AddColumnOp("post", Column("b", String())))
    assert not codes(with_pending(add_two, dialect="sqlite")) & {"AR506", "AR510"}
    assert {"AR506", "AR510"} <= codes(with_pending(add_two, dialect="mysql"))
    assert not any(f.code.startswith("AR5") for f in diagnose(healthy(pending=None)).findings)


def test_worst_first_and_exit_codes() -> None:
    """Findings come errors first, then warnings, then infos; a configuration error exits 2,
    other errors and warnings 1, infos alone 0."""
    state = healthy(config=config(prepend_sys_path=False),
                    versions=VersionTable(True, ("zzz999",), 32, has_pk=False))
    diagnosis = diagnose(state)
    assert [(f.severity, f.code) for f in diagnosis.findings] == [
        ("error", "AR302"), ("warning", "AR307"), ("info", "AR111")]
    assert diagnosis.exit_code == 1 and not diagnosis.healthy
    info_only = diagnose(healthy(config=config(prepend_sys_path=False)))
    assert info_only.healthy and info_only.exit_code == 0
    assert {"AR101", "AR107"} <= CONFIG_CODES
    assert diagnose(healthy(config=config(ini_exists=False))).exit_code == 1  # a finding


def test_config_problems_stop_the_later_ini_checks() -> None:
    """An unreadable alembic.ini says only AR102: no guessing about what it may hold."""
    state = healthy(problems=(_ini_error(),),
                    config=config(prepend_sys_path=False, script_location_raw=None))
    assert codes(state) == {"AR102"}
    assert diagnose(state).exit_code == 1  # the project's problem, not a usage error


# -- properties over revision graphs -----------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """A random acyclic history (several bases allowed) and its heads, computed here."""
    size = draw(st.integers(1, 9))
    ids = [f"r{i:02d}" for i in range(size)]
    parents = {rev: tuple(sorted(draw(st.sets(st.sampled_from(ids[:i]), max_size=3))))
               if i else () for i, rev in enumerate(ids)}
    named = {p for ps in parents.values() for p in ps}
    return parents, set(ids) - named


@settings(max_examples=40, deadline=None)
@given(dags())
def test_ar205_exactly_when_there_are_several_heads(
        graph: tuple[dict[str, tuple[str, ...]], set[str]]) -> None:
    parents, expected_heads = graph
    state = offline(tuple(script(rev, *ps) for rev, ps in parents.items()))
    found = {f.code: f for f in diagnose(state).findings}
    assert "AR204" not in found and "AR203" not in found
    assert ("AR205" in found) == (len(expected_heads) > 1)
    if "AR205" in found:
        assert found["AR205"].detail == (f"{len(expected_heads)} heads: "
                                          f"{', '.join(sorted(expected_heads))}")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.data())
def test_ar204_names_exactly_the_revisions_of_a_cycle(length: int, data: st.DataObject) -> None:
    loop = [f"c{i}" for i in range(length)]
    files = [script(rev, loop[i - 1]) for i, rev in enumerate(loop)]  # c0 <- c(n-1): closed
    extra = data.draw(st.integers(0, 4))
    for i in range(extra):  # acyclic revisions hanging off the loop or off each other
        choices = loop + [f"x{j}" for j in range(i)]
        files.append(script(f"x{i}", *data.draw(st.sets(st.sampled_from(choices), min_size=1,
                                                          max_size=2))))
    order = data.draw(st.permutations(files))
    found = [f for f in diagnose(offline(tuple(order))).findings]
    cycles = [f for f in found if f.code == "AR204"]
    assert len(cycles) == 1 and "AR205" not in {f.code for f in found}
    assert cycles[0].detail == f"revisions {' -> '.join(sorted(loop))} form a cycle"
    assert cycles[0].location == ", ".join(f"{VERSIONS}/{rev}.py" for rev in sorted(loop))


@settings(max_examples=30, deadline=None)
@given(dags(), st.data())
def test_ar203_for_each_child_of_a_lost_revision(graph: tuple[dict[str, tuple[str, ...]],
                                                               set[str]],
                                                 data: st.DataObject) -> None:
    """Delete one revision file: each revision naming it as a parent is an AR203, nothing
    else is, and no AR205 is claimed on the broken graph."""
    parents, _ = graph
    lost = data.draw(st.sampled_from(sorted(parents)))
    rest = {rev: ps for rev, ps in parents.items() if rev != lost}
    found = diagnose(offline(tuple(script(rev, *ps) for rev, ps in rest.items()))).findings
    dangling = sorted(f.location or "" for f in found if f.code == "AR203")
    assert dangling == sorted(f"{VERSIONS}/{rev}.py" for rev, ps in rest.items() if lost in ps)
    assert all(f"down_revision {lost!r}, which no file defines" in f.detail
               for f in found if f.code == "AR203")
    heads_left = set(rest) - {p for ps in rest.values() for p in ps}
    assert ("AR205" in {f.code for f in found}) == (not dangling and len(heads_left) > 1)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.data())
def test_ar304_and_ar303_on_a_linear_history(length: int, data: st.DataObject) -> None:
    """Recorded at one revision: AR304 counts the ones after it. Recorded at two: AR303."""
    revs = [f"r{i:02d}" for i in range(length)]
    at = data.draw(st.integers(0, length - 1))
    state = offline(chain(*revs), live=schema(), versions=VersionTable(True, (revs[at],), 32))
    found = {f.code: f for f in diagnose(state).findings}
    assert ("AR304" in found) == (at < length - 1)
    if at < length - 1:
        missing = length - 1 - at
        assert found["AR304"].detail == (f"at {revs[at]}; {missing} "
                                         f"{'revision' if missing == 1 else 'revisions'} not "
                                         f"applied, up to {revs[-1]}")
    older, newer = sorted(data.draw(st.sets(st.sampled_from(revs), min_size=2, max_size=2)))
    state = offline(chain(*revs), live=schema(), versions=VersionTable(True, (newer, older), 32))
    ar303 = [f.detail for f in diagnose(state).findings if f.code == "AR303"]
    assert ar303 == [f"{older} recorded beside its descendant {newer}"]

