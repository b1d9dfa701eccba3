"""AR5xx: the safety lint of pending revisions, a failing and a passing case per code.

One base project per backend (the scenarios' base: author and post with rows, at ccc333) is
built once for the module; each test writes its own pending revision (and sometimes models),
reads the state as doctor does and looks at the AR5xx findings only. Nothing here writes to the
database except where a test says so and undoes it.
"""

from __future__ import annotations

import itertools
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import execute

from alembic_repair import Project
from alembic_repair.diagnose.diagnosis import diagnose
from alembic_repair.diagnose.findings import Finding
from alembic_repair.engine.state.pending import once_defaults, pending_ids
from alembic_repair.engine.state.read import State, read_state
from alembic_repair.engine.state.scripts import ScriptFile
from alembic_repair.testing import scenarios

_numbers = itertools.count(1)


@dataclass
class Lint:
    root: Path
    url: str
    backend: str

    def state(self, upgrade: str, *, models: str | None = None, imports: str = "",
              sql: tuple[str, ...] = (), undo: tuple[str, ...] = ()) -> State:
        """The state doctor reads with `upgrade` as the body of a pending revision ddd444."""
        path = self.root / scenarios.VERSIONS / f"ddd444_case_{next(_numbers)}.py"
        path.write_text(scenarios.revision_py("ddd444", "ccc333", "case", upgrade, "pass",
                                              imports=imports), encoding="utf-8")
        model_file = self.root / "app" / "models.py"
        saved = model_file.read_text(encoding="utf-8")
        if models is not None:
            model_file.write_text(models, encoding="utf-8")
        if sql:
            execute(self.url, *sql)
        try:
            return read_state(Project.discover(self.root, url=self.url), replay=False,
                              use_cache=False)
        finally:
            path.unlink()
            model_file.write_text(saved, encoding="utf-8")
            if undo:
                execute(self.url, *undo)

    def __call__(self, upgrade: str, **kwargs: object) -> list[Finding]:
        state = self.state(upgrade, **kwargs)  # type: ignore[arg-type]
        return [f for f in diagnose(state).findings if f.code.startswith("AR5")]

    def codes(self, upgrade: str, **kwargs: object) -> list[str]:
        return sorted(f.code for f in self(upgrade, **kwargs))

    def batch(self, table: str, *lines: str) -> str:
        """`lines` (batch_op calls) in a batch block on SQLite, as plain op calls elsewhere."""
        if self.backend == "sqlite":
            body = "".join(f"\n    batch_op.{line}" for line in lines)
            return f'with op.batch_alter_table("{table}") as batch_op:{body}'
        return "\n".join(_plain(line, table) for line in lines)


def _plain(line: str, table: str) -> str:
    """A batch_op call as the plain op call: the table name goes first, or second after the
    constraint's name."""
    name, _, args = line.partition("(")
    if name in ("create_unique_constraint", "drop_constraint", "create_index", "drop_index"):
        first, _, rest = args.partition(", ")
        return f"op.{name}({first}, {table!r}, {rest}"
    return f"op.{name}({table!r}, {args}"


@pytest.fixture(autouse=True)
def _no_bytecode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def lint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Lint]:
    folder = tmp_path_factory.mktemp(f"lint-{request.param}")
    root = folder / "proj"
    root.mkdir()
    cleanup = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'app.db'}"
    else:
        server = request.getfixturevalue("mariadb_server")
        name = "lint_" + secrets.token_hex(4)
        url = server.create_database(name)
        cleanup = lambda: server.drop_database(name)  # noqa: E731
    scenarios.base_project(root.resolve(), url)
    try:
        yield Lint(root.resolve(), url, request.param)
    finally:
        if cleanup is not None:
            cleanup()


# -- pending: which revisions, read how -----------------------------------------------------------


def _script(rev: str, *down: str) -> ScriptFile:
    return ScriptFile(Path(f"{rev}.py"), rev, down)


def test_pending_revisions_are_those_not_under_a_recorded_head() -> None:
    scripts = (_script("a"), _script("b", "a"), _script("c", "b"), _script("d", "a"))
    assert pending_ids(scripts, ["b"]) == {"c", "d"}
    assert pending_ids(scripts, ["c", "d"]) == set()
    assert pending_ids(scripts, []) == {"a", "b", "c", "d"}  # empty or absent alembic_version
    assert pending_ids(scripts, ["zzz"]) is None  # unknown: nothing can be said


def test_nothing_pending_reads_nothing(lint: Lint) -> None:
    state = read_state(Project.discover(lint.root, url=lint.url), replay=False, use_cache=False)
    assert state.pending is not None
    assert state.pending.revisions == () and state.pending.data == {}
    assert not [f for f in diagnose(state).findings if f.code.startswith("AR5")]


def test_operations_are_recorded_with_their_line_and_never_run(lint: Lint) -> None:
    state = lint.state('op.add_column("post", sa.Column("x", sa.Integer(), nullable=True))\n'
                       'op.drop_table("author")')
    assert state.pending is not None
    (revision,) = state.pending.revisions
    assert [(type(i.operation).__name__, i.line) for i in revision.ops] == [
        ("AddColumnOp", 23), ("DropTableOp", 24)]
    assert revision.path.startswith("alembic/versions/ddd444_case_")
    assert state.live is not None and "x" not in state.pending.columns("post")


def test_a_revision_that_needs_the_database_is_skipped_without_a_finding(lint: Lint) -> None:
    state = lint.state('bind = op.get_bind()\n'
                       'bind.execute(sa.text("DELETE FROM post"))\n'
                       'op.drop_table("post")')
    assert state.pending is not None and state.pending.unreadable == ("ddd444",)
    assert not [f for f in diagnose(state).findings if f.code.startswith("AR5")]
    assert lint('raise RuntimeError("not today")\nop.drop_table("post")') == []


def test_a_revision_that_only_asks_its_dialect_is_read(lint: Lint) -> None:
    """`op.get_bind().dialect.name` (published histories branch on it) needs no database: the
    branch for the live dialect is what the lint reads."""
    state = lint.state('bind = op.get_bind()\n'
                       'if bind.dialect.name == bind.engine.name:\n'
                       '    op.drop_table("post")\n'
                       'else:\n'
                       '    op.drop_table("author")')
    assert state.pending is not None and state.pending.unreadable == ()
    (revision,) = state.pending.revisions
    assert [(type(i.operation).__name__, i.operation.table_name) for i in revision.ops] == [
        ("DropTableOp", "post")]
    assert [f.code for f in diagnose(state).findings if f.code == "AR501"] == ["AR501"]


# -- AR501: drops ----------------------------------------------------------------------------


def test_ar501_drop_of_a_table_or_column_with_rows(lint: Lint) -> None:
    (found,) = lint('op.drop_table("post")')
    assert found.code == "AR501" and found.severity == "warning"
    assert found.detail == ("revision ddd444 drops table post, which has 3 rows; its downgrade "
                            "cannot bring them back")
    assert found.location is not None and found.location.endswith(".py:23")
    assert "alembic-repair drop post --into ddd444" in found.fix
    (column,) = lint(lint.batch("post", 'drop_column("body")'))
    assert column.code == "AR501" and "drops column post.body, which holds values" in \
        column.detail


def test_ar501_not_for_soft_drops_backups_or_empty_tables(lint: Lint) -> None:
    assert lint('op.rename_table("post", "_ar_trash_20240201000000_post")') == []
    assert lint('op.create_table("post_backup", sa.Column("id", sa.Integer()))\n'
                'op.execute("INSERT INTO post_backup (id) SELECT id FROM post")\n'
                'op.drop_table("post")') == []
    assert lint('# alembic-repair: hard drop of table post\nop.drop_table("post")') == []
    assert lint('op.create_table("scratch", sa.Column("id", sa.Integer(), primary_key=True))\n'
                'op.drop_table("scratch")') == []
    assert lint.codes('op.drop_table("post")', sql=("CREATE TABLE empty_one (id INTEGER)",),
                      undo=("DROP TABLE empty_one",)) == ["AR501"]
    assert lint('op.drop_table("empty_one")', sql=("CREATE TABLE empty_one (id INTEGER)",),
                undo=("DROP TABLE empty_one",)) == []


# -- AR502: NOT NULL on rows -----------------------------------------------------------------


def test_ar502_not_null_without_server_default_on_rows(lint: Lint) -> None:
    (found,) = lint('op.add_column("post", sa.Column("status", sa.String(20), nullable=False))')
    assert found.code == "AR502" and found.severity == "warning"
    assert found.detail.startswith("revision ddd444 adds post.status NOT NULL without a server "
                                   "default; post has 3 rows")
    (nulls,) = lint(lint.batch("post", 'alter_column("body", existing_type=sa.Text(), '
                                       'nullable=False)'))
    assert nulls.code == "AR502" and "it holds NULLs" in nulls.detail


def test_ar502_not_for_server_default_nullable_or_new_tables(lint: Lint) -> None:
    assert lint('op.add_column("post", sa.Column("status", sa.String(20), nullable=False, '
                'server_default="draft"))') == []
    assert lint('op.add_column("post", sa.Column("status", sa.String(20), nullable=True))') == []
    assert lint('op.create_table("tag", sa.Column("id", sa.Integer(), primary_key=True))\n'
                'op.add_column("tag", sa.Column("label", sa.String(20), nullable=False))') == []
    assert lint(lint.batch("post", 'alter_column("title", existing_type=sa.String(200), '
                                   'nullable=False)')) == []


# -- AR503: unique on rows --------------------------------------------------------------------


def test_ar503_unique_on_duplicates_or_a_constant(lint: Lint) -> None:
    (found,) = lint('op.create_index("ix_post_author", "post", ["author_id"], unique=True)')
    assert found.code == "AR503"
    assert found.detail == ("revision ddd444 makes post(author_id) unique; 2 rows already "
                            "hold '2'")
    constant = lint(lint.batch("author", 'add_column(sa.Column("code", sa.String(8), '
                                         'nullable=False, server_default="x", unique=True))'))
    assert [f.code for f in constant] == ["AR503"]
    assert "all get the server default 'x'" in constant[0].detail
    three_steps = lint(lint.batch(
        "author", 'add_column(sa.Column("code", sa.String(8), nullable=False))',
        'create_unique_constraint("uq_author_code", ["code"])'))
    assert "AR503" in [f.code for f in three_steps]


def test_ar503_not_for_distinct_values_or_nullable_columns(lint: Lint) -> None:
    assert lint('op.create_index("ix_post_title", "post", ["title"], unique=True)') == []
    assert lint(lint.batch("author", 'add_column(sa.Column("code", sa.String(8), '
                                     'nullable=True, unique=True))')) == []


# -- AR504: defaults evaluated once ----------------------------------------------------------


def test_ar504_default_called_in_a_revision_or_a_model(lint: Lint) -> None:
    models = scenarios.models_py((*scenarios.AUTHOR, "joined: Mapped[datetime | None] = "
                                  "mapped_column(DateTime, default=datetime.now())"))
    state = lint.state('op.add_column("author", sa.Column("token", sa.String(36), '
                       'nullable=True, default=str(uuid.uuid4())))', imports="import uuid",
                       models=models)
    assert state.pending is not None and not state.pending.unreadable
    found = [f for f in diagnose(state).findings if f.code.startswith("AR5")]
    assert {f.code for f in found} == {"AR504"}
    by_file = {str(f.location).split(":")[0].split("/")[0]: f.detail for f in found}
    assert by_file == {
        "app": "default=datetime.now() is computed once, when the module is imported: every "
               "row gets the same value",
        "alembic": "default=str(uuid.uuid4()) is computed once, when the module is imported: "
                   "every row gets the same value"}
    assert [f.location for f in found if str(f.location).startswith("app/")] == [
        "app/models.py:19"]


def test_ar504_not_for_callables_lambdas_or_sql_functions(tmp_path: Path) -> None:
    source = tmp_path / "models.py"
    source.write_text(
        "import uuid\nfrom datetime import datetime\nimport sqlalchemy as sa\n"
        "a = sa.Column('a', sa.String(36), default=uuid.uuid4)\n"
        "b = sa.Column('b', sa.String(36), default=lambda: str(uuid.uuid4()))\n"
        "c = sa.Column('c', sa.DateTime, server_default=sa.func.now())\n"
        "d = sa.Column('d', sa.DateTime, default=datetime.now, onupdate=datetime.utcnow)\n"
        "e = sa.Column('e', sa.String(3), default=str('abc'))\n")
    assert once_defaults([source], tmp_path) == ()
    source.write_text("from datetime import date\nimport sqlalchemy as sa\n"
                      "x = sa.Column('x', sa.Date, default=date.today())\n")
    (once,) = once_defaults([source], tmp_path)
    assert (once.location, once.keyword, once.expression) == ("models.py:3", "default",
                                                              "date.today()")


# -- AR505: type changes -----------------------------------------------------------------------


def test_ar505_shorter_varchar_and_text_to_integer(lint: Lint) -> None:
    (short,) = lint(lint.batch("author", 'alter_column("name", existing_type=sa.String(100), '
                                         'type_=sa.String(5))'))
    assert short.code == "AR505"
    assert short.detail == ("revision ddd444 changes author.name to VARCHAR(5); its longest "
                            "value has 12 characters")
    (number,) = lint(lint.batch("post", 'alter_column("title", existing_type=sa.String(200), '
                                        'type_=sa.Integer())'))
    assert number.code == "AR505" and "some values are not an integer, e.g. '" in number.detail


def test_ar505_not_when_the_values_fit(lint: Lint) -> None:
    assert lint(lint.batch("author", 'alter_column("name", existing_type=sa.String(100), '
                                     'type_=sa.String(50))')) == []
    assert lint(lint.batch("post", 'alter_column("title", existing_type=sa.String(200), '
                                   'type_=sa.Integer())'),
                sql=("UPDATE post SET title = '12' WHERE id = 1",
                     "UPDATE post SET title = ' -7' WHERE id = 2",
                     "UPDATE post SET title = '+3' WHERE id = 3"),
                undo=tuple(f"UPDATE post SET title = '{row['title']}' WHERE id = {row['id']}"
                           for row in scenarios.POST_ROWS)) == []


# -- AR506: several DDL statements (MySQL/MariaDB) ---------------------------------------------


def test_ar506_several_ddl_on_existing_tables(lint: Lint) -> None:
    upgrade = ('op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))\n'
               'op.create_index("ix_post_title", "post", ["title"])')
    found = lint(upgrade)
    if lint.backend == "sqlite":
        assert found == []  # the note is about MySQL/MariaDB's one commit per statement
        return
    (note,) = found
    assert note.code == "AR506" and note.severity == "info"
    assert note.detail.startswith("revision ddd444 runs 2 DDL statements on existing tables "
                                  "(author, post)")


def test_ar506_not_for_one_statement_or_new_tables(lint: Lint) -> None:
    assert lint('op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))') == []
    assert lint('op.create_table("tag", sa.Column("id", sa.Integer(), primary_key=True))\n'
                'op.add_column("tag", sa.Column("label", sa.String(20)))\n'
                'op.create_index("ix_tag_label", "tag", ["label"])') == []


# -- AR507: SQLite outside batch mode --------------------------------------------------------


def test_ar507_sqlite_alter_outside_batch(lint: Lint) -> None:
    upgrade = ('op.alter_column("author", "name", existing_type=sa.String(100), '
               'nullable=True)\n'
               'op.create_unique_constraint("uq_post_title", "post", ["title"])\n'
               'op.drop_column("post", "author_id")')
    found = [f for f in lint(upgrade) if f.code == "AR507"]
    if lint.backend != "sqlite":
        assert found == []
        return
    assert [f.detail for f in found] == [
        "revision ddd444: alter_column (nullable) on author outside batch mode; SQLite cannot "
        "do it in place",
        "revision ddd444: create unique constraint on post outside batch mode; SQLite cannot do "
        "it in place",
        "revision ddd444: drop_column (the column is in a key or an index) on post outside "
        "batch mode; SQLite cannot do it in place"]
    assert [f.location.rsplit(":", 1)[1] for f in found if f.location] == ["23", "24", "25"]


def test_ar507_not_in_batch_or_for_what_sqlite_can_do(lint: Lint) -> None:
    assert lint('with op.batch_alter_table("author") as batch_op:\n'
                '    batch_op.alter_column("name", existing_type=sa.String(100), '
                'nullable=True)') == []
    if lint.backend == "sqlite":
        assert lint('op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))\n'
                    'op.create_index("ix_post_title", "post", ["title"])') == []
    assert [f.code for f in lint('op.alter_column("author", "name", '
                                 'new_column_name="full_name")')] == []


# -- AR508: drop + add that looks like a rename -------------------------------------------


def test_ar508_drop_and_add_of_the_same_type(lint: Lint) -> None:
    found = lint(lint.batch("author",
                            'add_column(sa.Column("full_name", sa.String(100), nullable=True))',
                            'drop_column("name")'))
    assert [f.code for f in found if f.code != "AR506"] == ["AR508"]  # not AR501 as well
    assert found[0].detail == ("revision ddd444 drops author.name and adds author.full_name, "
                               "both VARCHAR(100): the values of name would be lost, not "
                               "renamed")
    assert "new_column_name='full_name'" in found[0].fix
    columns = ", ".join([
        'sa.Column("id", sa.Integer(), nullable=False)',
        'sa.Column("title", sa.String(200), nullable=False)',
        'sa.Column("body", sa.Text(), nullable=True)',
        'sa.Column("views", sa.Integer(), nullable=False)',
        'sa.Column("created_at", sa.DateTime(), nullable=True)',
        'sa.Column("author_id", sa.Integer(), nullable=False)'])
    table = lint(f'op.create_table("article", {columns})\nop.drop_table("post")')
    assert [f.code for f in table] == ["AR508"]
    assert "op.rename_table('post', 'article')" in table[0].fix


def test_ar508_not_for_another_type(lint: Lint) -> None:
    found = lint(lint.batch("author",
                            'add_column(sa.Column("age", sa.Integer(), nullable=True))',
                            'drop_column("name")'))
    assert [f.code for f in found if f.code != "AR506"] == ["AR501"]


# -- AR509: unnamed constraints ----------------------------------------------------------------


def test_ar509_unnamed_constraint(lint: Lint) -> None:
    found = lint(lint.batch("post", 'create_unique_constraint(None, ["title"])'))
    (note,) = [f for f in found if f.code == "AR509"]
    assert note.severity == "info"
    assert note.detail == "revision ddd444 creates a unique constraint on post with no name"
    upgrade = ('op.drop_constraint(None, "post", type_="foreignkey")'
               if lint.backend != "sqlite" else
               'with op.batch_alter_table("post") as batch_op:\n'
               '    batch_op.drop_constraint(None, type_="foreignkey")')
    (drop,) = [f for f in lint(upgrade) if f.code == "AR509"]
    assert drop.severity == "warning" and "named None: the upgrade fails" in drop.detail


def test_ar509_not_for_named_constraints_or_a_naming_convention(lint: Lint) -> None:
    assert lint(lint.batch("post", 'create_unique_constraint("uq_post_title", ["title"])')) == []
    convention = scenarios.models_py().replace(
        "class Base(DeclarativeBase):\n    pass\n",
        "class Base(DeclarativeBase):\n    metadata = MetaData(naming_convention={"
        "'uq': 'uq_%(table_name)s_%(column_0_name)s'})\n").replace(
        "from sqlalchemy import ", "from sqlalchemy import MetaData, ")
    assert lint(lint.batch("post", 'create_unique_constraint(None, ["title"])'),
                models=convention) == []


# -- AR510: VARCHAR without a length (MySQL/MariaDB) -------------------------------------------


def test_ar510_string_without_length(lint: Lint) -> None:
    upgrade = ('op.add_column("post", sa.Column("slug", sa.String(), nullable=True))\n'
               'op.create_table("tag", sa.Column("id", sa.Integer(), primary_key=True), '
               'sa.Column("label", sa.String()))')
    found = [f for f in lint(upgrade) if f.code == "AR510"]
    if lint.backend == "sqlite":
        assert found == []  # SQLite takes VARCHAR without a length
        return
    assert [f.detail for f in found] == [
        "revision ddd444: post.slug is sa.String() without a length; mariadb has no VARCHAR "
        "without one",
        "revision ddd444: tag.label is sa.String() without a length; mariadb has no VARCHAR "
        "without one"]
    assert all(f.severity == "warning" for f in found)


def test_ar510_not_for_a_length_text_or_enum(lint: Lint) -> None:
    assert [f for f in lint(
        'op.add_column("post", sa.Column("slug", sa.String(80), nullable=True))\n'
        'op.add_column("post", sa.Column("notes", sa.Text(), nullable=True))\n'
        'op.add_column("post", sa.Column("kind", sa.Enum("a", "b", name="kind"), '
        'nullable=True))') if f.code == "AR510"] == []
