"""AR403 agrees with `alembic check` (issue 12, item 5): doctor reports model drift for exactly
the tables Alembic's own ``compare_metadata`` reports a difference for, whatever the options
env.py passes, and tells each difference (a renamed index too, as optuna 5.1.0 ships it).

Random models, and a live database created from a mutated copy of them; doctor reads the project
as it always does (`read_state` + the rules); the expectation is computed here, straight from
Alembic's API, with the options `alembic check` would run with.
"""

from __future__ import annotations

import dataclasses
import secrets
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alembic_repair.diagnose.diagnosis import diagnose
from alembic_repair.engine.project import Project
from alembic_repair.engine.state.drift import CompareOptions, read_drift
from alembic_repair.engine.state.read import State, read_state
from alembic_repair.engine.state.schema import SchemaSnapshot

# -- random schemas, as plain data ---------------------------------------------------------------

#: Builds a MetaData from the plain data below. The same text is the models module doctor
#: imports and, exec'd, the builder of the live database's (mutated) copy.
BUILD = textwrap.dedent('''
    import sqlalchemy as sa

    TYPES = {"int": sa.Integer, "big": sa.BigInteger, "s20": lambda: sa.String(20),
             "s40": lambda: sa.String(40), "text": sa.Text, "bool": sa.Boolean,
             "num": lambda: sa.Numeric(10, 2), "dt": sa.DateTime, "float": sa.Float}

    def build(schema):
        metadata = sa.MetaData()
        for table in schema:
            items = []
            for col in table["columns"]:
                default = sa.text(col["default"]) if col["default"] is not None else None
                items.append(sa.Column(col["name"], TYPES[col["type"]](),
                                       nullable=col["nullable"], server_default=default))
                if col["index"]:
                    items.append(sa.Index(col["index"], col["name"]))
                if col["unique"]:
                    items.append(sa.UniqueConstraint(col["name"], name=col["unique"]))
            if table["fk"] is not None:
                items.append(sa.Column("ref", sa.Integer, sa.ForeignKey(
                    "t0.id", ondelete=table["fk"]), nullable=True))
            items.append(sa.PrimaryKeyConstraint(*table["pk"]))
            sa.Table(table["name"], metadata,
                     *[sa.Column(k, sa.Integer, nullable=False, autoincrement=False)
                       for k in table["pk"]], *items)
        return metadata
''')
_NAMESPACE: dict[str, Any] = {}
exec(BUILD, _NAMESPACE)  # noqa: S102  (our own text, above)
build = _NAMESPACE["build"]

DEFAULTS = {"int": ["0", "1"], "big": ["0", "7"], "num": ["0", "1.5"], "float": ["0", "2"],
            "bool": ["0", "1"], "s20": ["'a'", "'b'"], "s40": ["'a'", "'b'"],
            "text": ["'a'", "'b'"], "dt": ["CURRENT_TIMESTAMP"]}
TYPES = sorted(DEFAULTS)


@st.composite
def schemas(draw: st.DrawFn) -> list[dict[str, Any]]:
    tables = []
    for t in range(draw(st.integers(1, 3))):
        name = f"t{t}"
        pk = ["id"] if t == 0 or draw(st.booleans()) else ["id", "k"]
        columns = []
        for c in range(draw(st.integers(1, 3))):
            type_ = draw(st.sampled_from(TYPES))
            columns.append({
                "name": f"c{c}", "type": type_, "nullable": draw(st.booleans()),
                "default": draw(st.none() | st.sampled_from(DEFAULTS[type_])),
                "index": draw(st.sampled_from([None, f"ix_{name}_c{c}"])),
                "unique": draw(st.sampled_from([None, f"uq_{name}_c{c}"]))})
        fk = draw(st.sampled_from([None, None, "CASCADE", "SET NULL"])) if t else None
        tables.append({"name": name, "pk": pk, "columns": columns, "fk": fk})
    return tables


MUTATIONS = ["none", "drop_column", "add_column", "nullable", "type", "index_name", "unique",
             "default", "pk_order", "fk_ondelete", "drop_table"]


def mutate(schema: list[dict[str, Any]], mutation: str, pick: int) -> list[dict[str, Any]]:
    """A deep copy of `schema` with one change (the live database's schema)."""
    live = [{**t, "pk": list(t["pk"]), "columns": [dict(c) for c in t["columns"]]}
            for t in schema]
    table = live[pick % len(live)]
    col = table["columns"][pick % len(table["columns"])]
    if mutation == "drop_column" and len(table["columns"]) > 1:
        table["columns"].remove(col)
    elif mutation == "add_column":
        table["columns"].append({"name": "extra", "type": "int", "nullable": True,
                                 "default": None, "index": None, "unique": None})
    elif mutation == "nullable":
        col["nullable"] = not col["nullable"]
    elif mutation == "type":
        col["type"] = "s40" if col["type"] != "s40" else "int"
        col["default"] = None
    elif mutation == "index_name":
        col["index"] = f"old_{table['name']}_{col['name']}" if col["index"] else None
    elif mutation == "unique":
        col["unique"] = None if col["unique"] else f"uq_{table['name']}_{col['name']}"
    elif mutation == "default":
        choices = [None, *DEFAULTS[col["type"]]]
        col["default"] = choices[(choices.index(col["default"]) + 1) % len(choices)]
    elif mutation == "pk_order":
        table["pk"].reverse()
    elif mutation == "fk_ondelete" and table["fk"] is not None:
        table["fk"] = "CASCADE" if table["fk"] != "CASCADE" else "SET NULL"
    elif mutation == "drop_table" and len(live) > 1:
        live.remove(live[-1])
    return live


# -- the two sides -------------------------------------------------------------------------------

OPTIONS = [CompareOptions(),  # Alembic's defaults: compare_type on, server defaults off
           CompareOptions(compare_type=False, compare_server_default=True)]


def check_tables(url: str, metadata: sa.MetaData, options: CompareOptions) -> set[str]:
    """The tables `alembic check` reports a difference for (through env.py's tool filter,
    which hides the tool's own ``_ar_*`` tables)."""
    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return not (type_ == "table" and name is not None and name.startswith("_ar_"))

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": options.compare_type, "include_name": include_name,
                "compare_server_default": options.compare_server_default})
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    return {_table(step) for diff in diffs for step in (diff if isinstance(diff, list)
                                                        else [diff])}


def _table(step: tuple[Any, ...]) -> str:
    kind, obj = step[0], step[1]
    if kind in ("add_table", "remove_table", "add_table_comment", "remove_table_comment"):
        return str(obj.name)
    if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
        return str(step[2])
    if kind in ("add_fk", "remove_fk"):
        return str(obj.parent.name)
    return str(obj.table.name)  # indexes and constraints


def doctor_drift(state: State) -> dict[str, str]:
    """AR403's findings: table -> detail."""
    return {f.location: f.detail for f in diagnose(state).findings if f.code == "AR403"}


def with_options(state: State, url: str, options: CompareOptions) -> State:
    """`state` as doctor reads it when env.py passes `options` (the replay through env.py
    hands them over; here they are given)."""
    assert state.metadata is not None and state.models is not None and state.live is not None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            drift = read_drift(conn, state.metadata, state.models, state.live,
                               state.hidden_tables, options)
    finally:
        engine.dispose()
    return dataclasses.replace(state, drift=drift)


def doctor_state(root: Path, url: str, schema: list[dict[str, Any]]) -> State:
    module = f"drift_models_{uuid.uuid4().hex[:10]}"
    (root / f"{module}.py").write_text(BUILD + f"\nmetadata = build({schema!r})\n")
    project = Project.discover(root, url=url, strict=False)
    return read_state(project, models=f"{module}:metadata", replay=False, use_cache=False)


def create_live(url: str, live: list[dict[str, Any]], trash: bool) -> None:
    engine = sa.create_engine(url)
    try:
        metadata = build(live)
        if trash:  # the tool's own table: hidden from check by env.py's filter, and from doctor
            sa.Table("_ar_trash_20260101_old", metadata, sa.Column("id", sa.Integer,
                                                                   primary_key=True))
        metadata.create_all(engine)
    finally:
        engine.dispose()


def assert_agreement(root: Path, url: str, schema: list[dict[str, Any]], mutation: str,
                     pick: int, trash: bool = False) -> None:
    live = mutate(schema, mutation, pick)
    create_live(url, live, trash)
    state = doctor_state(root, url, schema)
    assert state.drift is not None, "Alembic's comparison failed; doctor fell back to facts"
    for options in OPTIONS:
        expected = check_tables(url, build(schema), options)
        found = doctor_drift(with_options(state, url, options)
                             if options != CompareOptions() else state)
        assert set(found) == expected, (options, mutation, found)
        for detail in found.values():
            assert "only: " in detail, detail


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(schema=schemas(), mutation=st.sampled_from(MUTATIONS), pick=st.integers(0, 20),
       trash=st.booleans())
def test_doctor_reports_the_tables_check_reports_sqlite(tmp_path_factory: pytest.TempPathFactory,
                                                        schema: list[dict[str, Any]],
                                                        mutation: str, pick: int,
                                                        trash: bool) -> None:
    root = tmp_path_factory.mktemp("drift")
    assert_agreement(root, f"sqlite:///{root / 'app.db'}", schema, mutation, pick, trash)


def _table_of(name: str, pk: list[str], *columns: dict[str, Any], fk: str | None = None
              ) -> dict[str, Any]:
    return {"name": name, "pk": pk, "columns": list(columns), "fk": fk}


def _col(name: str, type_: str = "int", *, nullable: bool = True, default: str | None = None,
         index: str | None = None, unique: str | None = None) -> dict[str, Any]:
    return {"name": name, "type": type_, "nullable": nullable, "default": default,
            "index": index, "unique": unique}


#: One schema that has every mutation something to act on, and the mutations, on MariaDB.
MARIADB_SCHEMA = [
    _table_of("t0", ["id"], _col("c0", "s20", default="'a'", index="ix_t0_c0"),
              _col("c1", "num", nullable=False, unique="uq_t0_c1")),
    _table_of("t1", ["id", "k"], _col("c0", "bool", default="0", index="ix_t1_c0"),
              _col("c1", "dt", default="CURRENT_TIMESTAMP"), fk="CASCADE"),
]


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_doctor_reports_the_tables_check_reports_mariadb(tmp_path: Path, mariadb_url: str,
                                                         mutation: str) -> None:
    assert_agreement(tmp_path, mariadb_url, MARIADB_SCHEMA, mutation, 1,
                     trash=mutation == "none")


# -- regressions ---------------------------------------------------------------------------------

OPTUNA_LIVE = """
CREATE TABLE studies (study_id INTEGER NOT NULL, PRIMARY KEY (study_id));
CREATE TABLE trials (trial_id INTEGER NOT NULL, study_id INTEGER, PRIMARY KEY (trial_id),
                     FOREIGN KEY (study_id) REFERENCES studies (study_id));
CREATE INDEX trials_study_id_key ON trials (study_id);
"""


def optuna_models() -> sa.MetaData:
    """optuna 5.1.0's models for the two tables: the index on trials.study_id is declared
    with ``index=True`` (named ix_trials_study_id), while its published history created it as
    trials_study_id_key: `alembic check` reports the rename."""
    metadata = sa.MetaData()
    sa.Table("studies", metadata, sa.Column("study_id", sa.Integer, primary_key=True))
    sa.Table("trials", metadata, sa.Column("trial_id", sa.Integer, primary_key=True),
             sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.study_id"), index=True))
    return metadata


def _live_from(url: str, ddl: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in filter(str.strip, ddl.split(";")):
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _state(url: str, metadata: sa.MetaData, tmp_path: Path) -> State:
    """Doctor's reading of `url` against `metadata` (what read_state builds, given the models)."""
    from alembic_repair.engine.state.schema import from_metadata, reflect

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            models, live = from_metadata(metadata, conn.dialect), reflect(conn)
            drift = read_drift(conn, metadata, models, live)
    finally:
        engine.dispose()
    project = Project.discover(tmp_path, url=url, strict=False)
    state = read_state(project, replay=False, use_cache=False)
    return dataclasses.replace(state, models=models, live=live, drift=drift, metadata=metadata)


def test_an_index_renamed_in_the_models_is_drift_as_check_says(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    _live_from(url, OPTUNA_LIVE)
    metadata = optuna_models()
    state = _state(url, metadata, tmp_path)
    assert state.models == state.live  # the facts alone see no difference: names are not facts
    found = doctor_drift(state)
    assert set(found) == check_tables(url, metadata, CompareOptions()) == {"trials"}
    assert found["trials"] == ("in the models only: index ix_trials_study_id on trials(study_id); "
                               "in the database only: index trials_study_id_key on "
                               "trials(study_id)")


def test_the_index_rename_through_doctor_json(tmp_path: Path) -> None:
    """The same through the real CLI: AR403 on trials, in the JSON contract's shape."""
    import json

    from helpers import cli

    url = f"sqlite:///{tmp_path / 'app.db'}"
    _live_from(url, OPTUNA_LIVE)
    module = f"optuna_like_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(
        "import sqlalchemy as sa\nmetadata = sa.MetaData()\n"
        "sa.Table('studies', metadata, sa.Column('study_id', sa.Integer, primary_key=True))\n"
        "sa.Table('trials', metadata, sa.Column('trial_id', sa.Integer, primary_key=True),\n"
        "         sa.Column('study_id', sa.Integer, sa.ForeignKey('studies.study_id'),"
        " index=True))\n")
    run = cli("doctor", "--format", "json", "--models", f"{module}:metadata", cwd=tmp_path,
              url=url)
    findings = [f for f in json.loads(run.stdout)["findings"] if f["code"] == "AR403"]
    assert [(f["location"], f["title"]) for f in findings] == [
        ("trials", "models differ from the database")], run.output
    assert "index ix_trials_study_id on trials(study_id)" in findings[0]["detail"]


@pytest.mark.parametrize("case", ["pk_order", "server_default", "sqlite_check"])
def test_what_check_does_not_compare_is_no_drift(tmp_path: Path, case: str) -> None:
    """The facts differ, `alembic check` (default options) reports nothing: neither does doctor.
    A primary key's column order; a server default; SQLite's CHECK of a Boolean/Enum."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    live, models = sa.MetaData(), sa.MetaData()
    if case == "pk_order":
        for metadata, order in ((live, ("a", "b")), (models, ("b", "a"))):
            sa.Table("t", metadata, sa.Column("a", sa.Integer), sa.Column("b", sa.Integer),
                     sa.PrimaryKeyConstraint(*order))
    elif case == "server_default":
        for metadata, default in ((live, "x"), (models, "y")):
            sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("s", sa.String(5), server_default=default))
    else:
        for metadata, flag in ((live, True), (models, False)):
            sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("b", sa.Boolean(create_constraint=flag)),
                     sa.Column("e", sa.Enum("x", "y", create_constraint=flag)))
    engine = sa.create_engine(url)
    live.create_all(engine)
    engine.dispose()
    state = _state(url, models, tmp_path)
    if case != "sqlite_check":
        assert state.models != state.live  # the facts see it...
    assert check_tables(url, models, CompareOptions()) == set()
    assert doctor_drift(state) == {}  # ...and doctor, like check, does not report it
    if case == "server_default":  # with compare_server_default=True, both report it
        on = CompareOptions(compare_server_default=True)
        assert set(doctor_drift(with_options(state, url, on))) == check_tables(
            url, models, on) == {"t"}


@pytest.mark.parametrize("case", ["nullable_pk", "unique_named"])
def test_what_only_check_sees_is_drift(tmp_path: Path, case: str) -> None:
    """Equal facts, and `alembic check` reports a difference: so does doctor, in its terms.
    A primary key column the models declare nullable; a unique constraint the models name and
    the database does not (SQLite keeps no name for it)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    live, models = sa.MetaData(), sa.MetaData()
    for metadata, in_models in ((live, False), (models, True)):
        if case == "nullable_pk":
            sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True,
                                              nullable=in_models))
        else:
            sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("u", sa.Integer),
                     sa.UniqueConstraint("u", name="uq_t_u" if in_models else None))
    engine = sa.create_engine(url)
    live.create_all(engine)
    engine.dispose()
    state = _state(url, models, tmp_path)
    assert state.models == state.live
    assert set(doctor_drift(state)) == check_tables(url, models, CompareOptions()) == {"t"}
    assert doctor_drift(state)["t"] == {
        "nullable_pk": "in the models only: column t.id NULL; "
                       "in the database only: column t.id NOT NULL",
        "unique_named": "in the models only: unique constraint uq_t_u on t(u)"}[case]


@pytest.mark.mariadb
def test_a_float_53_the_server_stores_as_double_is_the_one_exception(tmp_path: Path,
                                                                      mariadb_url: str) -> None:
    """`alembic check` reports FLOAT(53) -> DOUBLE on MariaDB forever: the server stores
    FLOAT(53) as DOUBLE, so the ALTER autogenerate writes changes nothing (fix would loop).
    Doctor leaves it out and says so in `drift.artifacts`; a real type change stays drift."""
    live, models = sa.MetaData(), sa.MetaData()
    for metadata, small in ((live, sa.Integer), (models, sa.BigInteger)):
        sa.Table("m", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("value", sa.Float(53)), sa.Column("small", small))
    engine = sa.create_engine(mariadb_url)
    live.create_all(engine)
    engine.dispose()
    state = _state(mariadb_url, models, tmp_path)
    assert check_tables(mariadb_url, models, CompareOptions()) == {"m"}
    assert state.drift is not None
    assert state.drift.artifacts == ("column m.value FLOAT(53) is stored as DOUBLE",)
    assert doctor_drift(state) == {
        "m": "in the models only: column m.small BIGINT; in the database only: column m.small "
             "INTEGER"}


def test_without_alembics_answer_the_facts_speak(tmp_path: Path) -> None:
    """A state without `drift` (built in memory, or Alembic's comparison failed): AR403 comes
    from the snapshot facts, as before."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    _live_from(url, OPTUNA_LIVE + "ALTER TABLE studies ADD COLUMN note VARCHAR(5);")
    state = dataclasses.replace(_state(url, optuna_models(), tmp_path), drift=None)
    assert isinstance(state.live, SchemaSnapshot)
    assert doctor_drift(state) == {
        "studies": "in the database only: column studies.note VARCHAR(5)"}


# -- through the project's own env.py ------------------------------------------------------------


def alembic_check(root: Path, url: str) -> str:
    """`alembic check` through the project's env.py: "" when it finds nothing, else its
    message (the operations it detected)."""
    from alembic import command
    from alembic.util.exc import AutogenerateDiffsDetected

    from alembic_repair.testing.scenarios.builders import run_alembic

    try:
        run_alembic(root, url, command.check)
    except AutogenerateDiffsDetected as err:
        return str(err)
    return ""


ENV_CASES = {
    # env.py compares server defaults: a default added in the models is drift
    "server_default_on": (("compare_type=True,", "compare_type=True, compare_server_default=True,"),
                          ("mapped_column(String(100))",
                           "mapped_column(String(100), server_default='x')"), "author"),
    # ...and without it, it is not
    "server_default_off": (None, ("mapped_column(String(100))",
                                  "mapped_column(String(100), server_default='x')"), None),
    # env.py turns compare_type off through a name (not AR109's literal): a widened column is
    # no drift, as check says
    "compare_type_off_by_name": (("compare_type=True,", "compare_type=TYPES,"),
                                 ("mapped_column(String(100))", "mapped_column(String(150))"),
                                 None),
    # env.py's include_object leaves out a column: a model column check never compares
    "column_filtered": (("include_object=_ar_include_object(),",
                         "include_object=_ar_include_object(no_secret),"),
                        ("name: Mapped[str] = mapped_column(String(100))",
                         "name: Mapped[str] = mapped_column(String(100))\n"
                         "    secret: Mapped[int | None]"), None),
}

ENV_HELPERS = '''
TYPES = False


def no_secret(obj, name, type_, reflected, compare_to):
    return not (type_ == "column" and name == "secret")
'''


@pytest.mark.parametrize("case", sorted(ENV_CASES))
def test_env_py_options_decide_as_for_check(tmp_path: Path, case: str) -> None:
    """Doctor reads the options from env.py (compare_server_default, compare_type, the
    filters) and reports drift exactly where `alembic check` through that env.py does."""
    from alembic_repair.testing.scenarios import build
    from alembic_repair.testing.scenarios.builders import edit

    env_edit, model_edit, drifted = ENV_CASES[case]
    root = tmp_path / "proj"
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build("healthy", root, url)
    env_py = root / "alembic" / "env.py"
    env_py.write_text(env_py.read_text().replace("\n\ndef database_url", ENV_HELPERS +
                                                 "\n\ndef database_url", 1))
    if env_edit is not None:
        edit(env_py, *env_edit)
    edit(root / "app" / "models.py", *model_edit)
    reported = alembic_check(root, url)
    state = read_state(Project.discover(root, url=url), replay=False, use_cache=False)
    assert state.drift is not None
    assert set(doctor_drift(state)) == ({drifted} if drifted else set()), reported
    assert (drifted is not None) == bool(reported), reported
    if drifted:
        assert f"'{drifted}'" in reported


def test_types_are_compared_when_ar109_turns_them_on(tmp_path: Path) -> None:
    """compare_type=False written out in env.py is AR109, whose repair turns it on: the type
    drift it hid is reported with it (fm32), although `alembic check` does not see it yet."""
    from alembic_repair.testing.scenarios import build

    root = tmp_path / "proj"
    url = f"sqlite:///{tmp_path / 'app.db'}"
    build("fm32_compare_type_off", root, url)
    assert alembic_check(root, url) == ""
    state = read_state(Project.discover(root, url=url), replay=False, use_cache=False)
    codes = {(f.code, f.location) for f in diagnose(state).findings}
    assert {("AR109", "alembic/env.py"), ("AR403", "author")} <= codes


def test_compare_options_online_wins_and_filters_are_lenient() -> None:
    from alembic_repair.engine.state.drift import compare_options

    def boom(*_args: Any) -> bool:
        raise RuntimeError("env.py's filter")

    offline = {"compare_type": False, "compare_server_default": True, "include_object": boom,
               "include_name": boom, "version_table": "versions"}
    options = compare_options(offline, {"compare_type": True, "include_name": False})
    assert (options.compare_type, options.compare_server_default, options.version_table) == (
        True, True, "versions")
    assert options.include_name is None  # the online run passed none
    assert options.include_object is not None and options.include_object(None, "t", "table",
                                                                          True, None) is True
    assert compare_options(offline).compare_type is False
    assert compare_options(offline, types_on=True).compare_type is True
    assert compare_options() == CompareOptions()
