"""Every scenario of alembic_repair.testing.scenarios, built for real and proven broken.

No alembic_repair diagnosis is used: each check looks at the raw facts, the way a user would
meet them: Alembic's own command line in a subprocess (its exact error text, from the failure-mode
research where it has one), and the tables, columns and rows through SQLAlchemy.
"""

from __future__ import annotations

import ast
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import alembic
import pytest
import sqlalchemy
from helpers import Run
from packaging.version import Version
from sqlalchemy import DateTime, Integer, column, create_engine, inspect, select, table, text
from sqlalchemy.engine import make_url

from alembic_repair.diagnose.findings import CATALOGUE
from alembic_repair.testing import scenarios
from alembic_repair.testing.scenarios import SCENARIOS, Scenario, build

if TYPE_CHECKING:  # conftest is not imported at runtime (pytest owns that module)
    from conftest import MariaDBServer

V = Path("alembic/versions")
MULTIPLE_HEADS = (
    "Multiple head revisions are present for given argument 'head'; please specify a specific "
    "target revision, '<branchname>@head' to narrow to a specific head, or 'heads' for all heads"
)


# ---------------------------------------------------------------------------------------
# A built scenario, and how to look at it
# ---------------------------------------------------------------------------------------


@dataclass
class Built:
    scenario: Scenario
    root: Path
    url: str
    backend: str
    request: pytest.FixtureRequest
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    def alembic(self, *args: str, url: str | None | bool = True, cwd: Path | None = None,
                config: bool = True) -> Run:
        """``python -m alembic [-c root/alembic.ini] ARGS`` in a subprocess, from the project
        folder; DATABASE_URL is the scenario's URL (``url=None``: unset; a string: that URL)."""
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        if url is True:
            env["DATABASE_URL"] = self.url
        elif isinstance(url, str):
            env["DATABASE_URL"] = url
        command = [sys.executable, "-m", "alembic"]
        if config:
            command += ["-c", str(self.root / "alembic.ini")]
        done = subprocess.run([*command, *args], cwd=cwd or self.root, env=env,
                              capture_output=True, text=True, timeout=120)
        return Run(done.returncode, done.stdout, done.stderr)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def tables(self) -> set[str]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return set(inspect(conn).get_table_names())
        finally:
            engine.dispose()

    def columns(self, name: str) -> dict[str, object]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return {c["name"]: c["type"] for c in inspect(conn).get_columns(name)}
        finally:
            engine.dispose()

    def versions(self) -> list[str]:
        return sorted(str(row[0]) for row in self.query("SELECT version_num FROM alembic_version"))

    def count(self, name: str) -> int:
        (value,) = self.query(f"SELECT COUNT(*) FROM {name}")[0]
        assert isinstance(value, int)
        return value

    def has_rows(self, *, posts: int = 3, authors: int = 2) -> None:
        assert (self.count("author"), self.count("post")) == (authors, posts)

    def files(self) -> list[str]:
        return sorted(p.name for p in (self.root / V).glob("*.py"))

    def scratch_url(self) -> str:
        """A second, empty database on the same backend."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.root.parent / 'scratch.db'}"
        server: MariaDBServer = self.request.getfixturevalue("mariadb_server")
        name = "s_" + secrets.token_hex(5)
        url = server.create_database(name)
        self._cleanup.append(lambda: server.drop_database(name))
        return url

    def already_exists(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"(sqlite3.OperationalError) table {name} already exists"
        return f"(pymysql.err.OperationalError) (1050, \"Table '{name}' already exists\")"


CHECKS: dict[str, Callable[[Built], None]] = {}


def check(name: str) -> Callable[[Callable[[Built], None]], Callable[[Built], None]]:
    def register(fn: Callable[[Built], None]) -> Callable[[Built], None]:
        assert name in SCENARIOS, name
        CHECKS[name] = fn
        return fn
    return register


#: Alembic's own words changed in 1.16 (the floor is 1.13): it names a missing scripts folder as
#: written, no longer resolved, and reads pyproject.toml too, so no alembic.ini is no error itself.
ALEMBIC_1_16 = Version(alembic.__version__) >= Version("1.16")
#: SQLAlchemy 2.1 asserts a constraint's name where 2.0 takes len(None) (fm38's downgrade).
SQLALCHEMY_2_1 = Version(sqlalchemy.__version__) >= Version("2.1")


def _missing_folder(cwd: Path) -> str:
    return "alembic" if ALEMBIC_1_16 else repr(str(cwd / "alembic"))


def failed(run: Run, *texts: str) -> None:
    assert run.code != 0, run.output
    for expected in texts:
        assert expected in run.output, f"{expected!r} not in:\n{run.output[-3000:]}"


def succeeded(run: Run, *texts: str) -> None:
    assert run.code == 0, run.output
    for expected in texts:
        assert expected in run.output, f"{expected!r} not in:\n{run.output[-3000:]}"


def revision_id(path: Path) -> object:
    """The value of ``revision = ...`` in a revision file, read with ast."""
    target: ast.expr
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign):
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "revision":
            return ast.literal_eval(value)
    return None


# ---------------------------------------------------------------------------------------
# One check per scenario
# ---------------------------------------------------------------------------------------


@check("healthy")
def _healthy(b: Built) -> None:
    b.has_rows()
    assert b.versions() == ["ccc333"]
    assert b.files() == [scenarios.AAA, scenarios.BBB, scenarios.CCC]
    succeeded(b.alembic("check"), "No new upgrade operations detected.")


@check("fm01_deleted_head_revision")
def _fm01_deleted(b: Built) -> None:
    assert b.files() == [scenarios.AAA, scenarios.BBB]
    assert b.versions() == ["ccc333"]
    assert "email" in b.columns("author")
    b.has_rows()
    failed(b.alembic("current"), "Can't locate revision identified by 'ccc333'")


@check("fm01_regenerated_folder")
def _fm01_regenerated(b: Built) -> None:
    (only,) = (b.root / V).glob("*.py")
    new_id = revision_id(only)
    assert isinstance(new_id, str) and re.fullmatch(r"[0-9a-f]{12}", new_id), new_id
    source = only.read_text()
    assert "op.create_table('author'" in source and "op.create_table('post'" in source
    assert (b.root / "alembic" / "README").is_file()  # written by `alembic init`
    assert b.versions() == ["ccc333"]
    b.has_rows()
    # The regenerated env.py reads the URL from alembic.ini, not DATABASE_URL.
    failed(b.alembic("current", url=None), "Can't locate revision identified by 'ccc333'")


@check("fm02_two_heads")
def _fm02(b: Built) -> None:
    assert b.versions() == ["bbb222", "ccc333"]
    b.has_rows()
    failed(b.alembic("upgrade", "head"), MULTIPLE_HEADS)


@check("fm03_behind_head")
def _fm03(b: Built) -> None:
    assert b.versions() == ["bbb222"]
    assert "email" not in b.columns("author")
    b.has_rows()
    before = b.files()
    failed(b.alembic("revision", "--autogenerate", "-m", "more"),
           "Target database is not up to date.")
    assert b.files() == before


@check("fm04_duplicate_revision_id")
def _fm04_duplicate(b: Built) -> None:
    copies = [p.name for p in (b.root / V).glob("*.py") if revision_id(p) == "bbb222"]
    assert sorted(copies) == ["bbb222_create_post.py", "bbb222_create_post_copy.py"]
    b.has_rows()
    run = b.alembic("heads")
    succeeded(run, "UserWarning: Revision bbb222 is present more than once")
    # Alembic 1.20 keeps the shadowed file as a second head: the copy also breaks `upgrade head`.
    assert sorted(run.stdout.split("\n")) == ["", "bbb222", "ccc333 (head)"]


@check("fm04_stray_file_in_versions")
def _fm04_stray(b: Built) -> None:
    assert revision_id(b.root / V / "helpers.py") is None
    b.has_rows()
    failed(b.alembic("heads"), "FAILED: Could not determine revision id from filename helpers.py.")


@check("fm05_deleted_intermediate_revision")
def _fm05(b: Built) -> None:
    assert b.files() == [scenarios.AAA, scenarios.CCC]
    assert b.versions() == ["ccc333"]
    b.has_rows()
    failed(b.alembic("upgrade", "head"),
           # the research's text, with this revision's message in it
           "UserWarning: Revision bbb222 referenced from bbb222 -> ccc333 (head), add author "
           "email is not present", "KeyError: 'bbb222'")


@check("fm06_revision_cycle")
def _fm06(b: Built) -> None:
    b.has_rows()
    failed(b.alembic("history"), "FAILED: Cycle is detected in revisions (aaa111, bbb222, ccc333)")


@check("fm08_version_rows_without_pk")
def _fm08_rows(b: Built) -> None:
    engine = create_engine(b.url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_pk_constraint("alembic_version")["constrained_columns"] == []
    finally:
        engine.dispose()
    assert b.versions() == ["bbb222"] * 3
    b.has_rows()
    failed(b.alembic("upgrade", "head"),
           "Online migration expected to match one row when updating 'bbb222' to 'ccc333' in "
           "'alembic_version'; 3 found")


@check("fm08_version_num_too_short")
def _fm08_short(b: Built) -> None:
    database = make_url(b.url).database
    assert b.query(
        "SELECT DATA_TYPE, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS WHERE "
        f"TABLE_SCHEMA = '{database}' AND TABLE_NAME = 'alembic_version'"
    ) == [("varchar", 8)]
    assert b.versions() == ["ccc333"]
    b.has_rows()
    assert "4d2f0a9c1b7e_index_author_name.py" in b.files()
    failed(b.alembic("upgrade", "head"),
           "(1406, \"Data too long for column 'version_num' at row 1\")")


@check("fm09_create_all_without_alembic")
def _fm09_create_all(b: Built) -> None:
    assert b.tables() == {"author", "post"}
    b.has_rows()
    failed(b.alembic("upgrade", "head"), b.already_exists("author"))


@check("fm09_empty_version_table")
def _fm09_empty(b: Built) -> None:
    assert "alembic_version" in b.tables() and b.versions() == []
    b.has_rows()
    failed(b.alembic("upgrade", "head"), b.already_exists("author"))


@check("fm11_versions_dir_missing")
def _fm11(b: Built) -> None:
    assert not (b.root / V).exists() and (b.root / "alembic" / "env.py").is_file()
    assert b.versions() == ["ccc333"]
    b.has_rows()
    failed(b.alembic("current"), "Can't locate revision identified by 'ccc333'")


@check("fm11_versions_dir_missing_fresh_db")
def _fm11_fresh(b: Built) -> None:
    assert not (b.root / V).exists()
    assert b.tables() == {"alembic_version"} and b.versions() == []
    # Alembic >= 1.16: no error, nothing created (the research's verified behaviour).
    succeeded(b.alembic("upgrade", "head"))
    assert b.tables() == {"alembic_version"} and b.versions() == []


@check("fm13_half_applied_revision")
def _fm13(b: Built) -> None:
    assert {"bio", "email"} <= set(b.columns("author"))
    assert "summary" in b.columns("post")
    engine = create_engine(b.url)
    try:
        with engine.connect() as conn:
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("author")}
    finally:
        engine.dispose()
    assert "ix_author_email" not in indexes
    assert b.versions() == ["ccc333"]
    b.has_rows()
    failed(b.alembic("upgrade", "head"),
           "(pymysql.err.OperationalError) (1060, \"Duplicate column name 'bio'\")")


@check("fm13_half_applied_then_corrected")
def _fm13_corrected(b: Built) -> None:
    assert '["email"]' in (b.root / V / scenarios.DDD444_HALF).read_text()
    _fm13(b)


@check("fm15_wrong_stamp_head")
def _fm15_stamp(b: Built) -> None:
    assert b.versions() == ["ccc333"]
    assert "email" not in b.columns("author")
    b.has_rows()
    failed(b.alembic("check"),
           "New upgrade operations detected: [('add_column', None, 'author', Column('email', "
           "String(length=200), table=<author>))]")


@check("fm15_manual_alter")
def _fm15_manual(b: Built) -> None:
    assert b.versions() == ["ccc333"]
    assert b.query("SELECT id, x FROM author ORDER BY id") == [(1, 10), (2, 20)]
    b.has_rows()
    failed(b.alembic("check"),
           "New upgrade operations detected: [('remove_column', None, 'author', Column('x', ")


@check("fm17_percent_in_ini_url")
def _fm17(b: Built) -> None:
    ini = (b.root / "alembic.ini").read_text()
    (line,) = [ln for ln in ini.splitlines() if ln.startswith("sqlalchemy.url = ")]
    value = line.removeprefix("sqlalchemy.url = ")
    assert re.search(r"%(?![%(])", value), value
    assert make_url(value) == make_url(b.url)  # the scenario's database, once decoded
    b.has_rows()
    failed(b.alembic("current", url=None),
           "configparser.InterpolationSyntaxError: '%' must be followed by '%' or '(', found:")


@check("fm20_env_import_error")
def _fm20(b: Built) -> None:
    assert not (b.root / "app" / "settings.py").exists()
    b.has_rows()
    failed(b.alembic("current"), "ModuleNotFoundError: No module named 'app.settings'")


@check("fm21_relative_script_location")
def _fm21_relative(b: Built) -> None:
    assert "\nscript_location = alembic\n" in (b.root / "alembic.ini").read_text()
    b.has_rows()
    assert (b.root / "alembic" / "env.py").is_file()
    # Run from any folder but the project's, `alembic -c project/alembic.ini` cannot find it.
    failed(b.alembic("current", cwd=b.root.parent),
           f"FAILED: Path doesn't exist: {_missing_folder(b.root.parent)}.  Please use the 'init' "
           "command to create a new scripts folder.")


@check("fm21_missing_alembic_ini")
def _fm21_missing(b: Built) -> None:
    assert not (b.root / "alembic.ini").exists()
    assert (b.root / "alembic" / "env.py").is_file() and len(b.files()) == 3
    assert b.versions() == ["ccc333"]
    b.has_rows()
    failed(b.alembic("current", config=False), "FAILED: No 'script_location' key found in "
           "configuration." if ALEMBIC_1_16 else "FAILED: No config file 'alembic.ini' found, or "
           "file has no '[alembic]' section")


@check("fm23_target_metadata_none")
def _fm23(b: Built) -> None:
    assert "\ntarget_metadata = None\n" in (b.root / "alembic" / "env.py").read_text()
    b.has_rows()
    before = b.files()
    failed(b.alembic("revision", "--autogenerate", "-m", "more", url=None),
           "Can't proceed with --autogenerate option; environment script",
           "does not provide a MetaData object or sequence of objects to the context.")
    assert b.files() == before


@check("fm24_model_class_removed")
def _fm24_removed(b: Built) -> None:
    assert "class Post" not in (b.root / "app" / "models.py").read_text()
    b.has_rows()
    failed(b.alembic("check"), "Detected removed table 'post'", "('remove_table', Table('post', ")


@check("fm24_orphan_table")
def _fm24_orphan(b: Built) -> None:
    assert b.count("legacy_stats") == 2
    sources = [(b.root / "app" / "models.py").read_text()] + [
        p.read_text() for p in (b.root / V).glob("*.py")]
    assert not any("legacy_stats" in source for source in sources)
    b.has_rows()
    failed(b.alembic("check"), "('remove_table', Table('legacy_stats', ")


@check("fm25_empty_revision")
def _fm25(b: Built) -> None:
    assert b.versions() == ["ddd444"]
    b.has_rows()
    run = b.alembic("upgrade", "ccc333:ddd444", "--sql")
    succeeded(run, "UPDATE alembic_version SET version_num='ddd444' WHERE "
                   "alembic_version.version_num = 'ccc333';")
    statements = [ln for ln in run.stdout.splitlines() if ln.strip() and not ln.startswith("--")]
    assert len(statements) == 1, run.stdout


@check("fm27_revision_syntax_error")
def _fm27_syntax(b: Built) -> None:
    path = b.root / V / scenarios.DDD444_SYNTAX
    with pytest.raises(SyntaxError):
        ast.parse(path.read_text())
    assert b.versions() == ["ccc333"]
    b.has_rows()
    failed(b.alembic("heads"), f"{path}\", line 23", "SyntaxError: '(' was never closed")


@check("fm27_revision_import_error")
def _fm27_import(b: Built) -> None:
    path = b.root / V / scenarios.DDD444_IMPORT
    assert revision_id(path) == "ddd444"  # parses
    assert b.versions() == ["ccc333"]
    b.has_rows()
    failed(b.alembic("heads"), "ModuleNotFoundError: No module named 'app.fields'")


@check("fm32_compare_type_off")
def _fm32(b: Built) -> None:
    assert "compare_type=False," in (b.root / "alembic" / "env.py").read_text()
    assert "String(150)" in (b.root / "app" / "models.py").read_text()
    assert getattr(b.columns("author")["name"], "length", None) == 100
    b.has_rows()
    # The models say 150, the database 100, and autogenerate sees nothing.
    succeeded(b.alembic("check"), "No new upgrade operations detected.")


@check("fm42_sqlite_without_batch")
def _fm42(b: Built) -> None:
    assert "render_as_batch" not in (b.root / "alembic" / "env.py").read_text()
    b.has_rows()
    # The next model change, autogenerated and applied as a user would:
    models = b.root / "app" / "models.py"
    models.write_text(models.read_text().replace(
        "name: Mapped[str] = mapped_column", "name: Mapped[str | None] = mapped_column"))
    succeeded(b.alembic("revision", "--autogenerate", "-m", "relax name"))
    (new,) = [p for p in (b.root / V).glob("*relax_name.py")]
    assert "op.alter_column('author', 'name'" in new.read_text()
    assert "batch_alter_table" not in new.read_text()
    failed(b.alembic("upgrade", "head"), "(sqlite3.OperationalError) near \"ALTER\": syntax error")


@check("fm45_sqlite_junk_values")
def _fm45(b: Built) -> None:
    assert b.query("SELECT id, typeof(views), views FROM post WHERE id = 2") == [(2, "text", "abc")]
    assert b.query("SELECT created_at FROM post WHERE id = 3") == [("yesterday",)]
    b.has_rows()
    post = table("post", column("id", Integer), column("created_at", DateTime))
    engine = create_engine(b.url)
    try:
        with engine.connect() as conn, pytest.raises(ValueError, match="yesterday"):
            conn.execute(select(post.c.created_at).where(post.c.id == 3)).all()
    finally:
        engine.dispose()


@check("fm46_history_cannot_build_empty_db")
def _fm46(b: Built) -> None:
    assert b.files() == [scenarios.CCC]
    assert revision_id(b.root / V / scenarios.CCC) == "ccc333"
    assert b.versions() == ["ccc333"] and "email" in b.columns("author")
    b.has_rows()
    scratch = b.scratch_url()
    run = b.alembic("upgrade", "head", url=scratch)
    if b.backend == "sqlite":
        failed(run, "(sqlite3.OperationalError) no such table: author")
    else:
        name = make_url(scratch).database
        failed(run, f"(1146, \"Table '{name}.author' doesn't exist\")")


@check("fm47_noop_downgrade")
def _fm47(b: Built) -> None:
    b.has_rows()
    succeeded(b.alembic("downgrade", "aaa111"), "Running downgrade bbb222 -> aaa111")
    assert b.versions() == ["aaa111"]
    assert b.count("post") == 3  # the "downgraded" table is still there
    failed(b.alembic("upgrade", "head"), b.already_exists("post"))


# -- pending revisions that are unsafe to apply (AR5xx) ------------------------------------


def _pending(b: Built, name: str) -> str:
    """The scenario's pending revision ddd444: on disk, not applied; its source."""
    assert name in b.files() and revision_id(b.root / V / name) == "ddd444"
    assert b.versions() == ["ccc333"]
    return (b.root / V / name).read_text()


@check("fm24_pending_drop_table")
def _fm24_pending_drop(b: Built) -> None:
    assert 'op.drop_table("post")' in _pending(b, scenarios.DDD444_DROP)
    b.has_rows()
    succeeded(b.alembic("upgrade", "head"), "Running upgrade ccc333 -> ddd444, remove post")
    assert "post" not in b.tables()
    # The downgrade brings the table back, but not its rows.
    succeeded(b.alembic("downgrade", "ccc333"))
    assert "post" in b.tables() and b.count("post") == 0


@check("fm34_not_null_column_on_rows")
def _fm34_not_null(b: Built) -> None:
    assert "nullable=False" in _pending(b, scenarios.DDD444_STATUS)
    b.has_rows()
    run = b.alembic("upgrade", "head")
    if b.backend == "sqlite":
        failed(run, "Cannot add a NOT NULL column with default value NULL")
        assert b.versions() == ["ccc333"]
    else:  # MariaDB: no error, every existing row silently gets ''
        succeeded(run)
        assert b.query("SELECT DISTINCT status FROM post") == [("",)]


@check("fm35_unique_on_duplicates")
def _fm35_duplicates(b: Built) -> None:
    assert "unique=True" in _pending(b, scenarios.DDD444_UNIQUE_NAME)
    assert b.query("SELECT COUNT(*) FROM author WHERE name = 'Ada Lovelace'") == [(2,)]
    b.has_rows(authors=3)
    if b.backend == "sqlite":
        failed(b.alembic("upgrade", "head"), "UNIQUE constraint failed: author.name")
    else:
        failed(b.alembic("upgrade", "head"), "(1062, \"Duplicate entry 'Ada Lovelace' for key")
    assert b.versions() == ["ccc333"]


@check("fm35_default_evaluated_once")
def _fm35_once(b: Built) -> None:
    _pending(b, scenarios.DDD444_PUBLIC_ID)
    assert "default=str(uuid.uuid4())" in (b.root / "app" / "models.py").read_text()
    b.has_rows()
    succeeded(b.alembic("upgrade", "head"))
    # The application inserts two authors: both get the same "unique" public id.
    code = (
        "import os\n"
        "from sqlalchemy import create_engine, select\n"
        "from sqlalchemy.orm import Session\n"
        "from app.models import Author\n"
        "engine = create_engine(os.environ['DATABASE_URL'])\n"
        "with Session(engine) as session:\n"
        "    session.add_all([Author(id=10, name='Ann'), Author(id=11, name='Bob')])\n"
        "    session.commit()\n"
        "    print(sorted(set(session.scalars(select(Author.public_id).where(Author.id >= 10)))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=b.root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "DATABASE_URL": b.url})
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\['[0-9a-f-]{36}'\]\n", done.stdout), done.stdout


@check("fm32_type_change_too_short")
def _fm32_shorter(b: Built) -> None:
    assert "type_=sa.String(length=10)" in _pending(b, scenarios.DDD444_SHORTER)
    b.has_rows()
    failed(b.alembic("upgrade", "head"), "(1406, \"Data too long for column 'name' at row 1\")")
    assert b.versions() == ["ccc333"]


@check("fm13_several_ddl_in_one_revision")
def _fm13_several(b: Built) -> None:
    source = _pending(b, scenarios.DDD444_SEVERAL)
    assert source.count("op.add_column(") == 2
    b.has_rows()
    run = b.alembic("upgrade", "ccc333:ddd444", "--sql")
    succeeded(run, "ALTER TABLE author ADD COLUMN bio TEXT;",
              "ALTER TABLE post ADD COLUMN summary VARCHAR(300);")
    assert "BEGIN" not in run.stdout  # no transaction around the two statements
    succeeded(b.alembic("upgrade", "head"), "Will assume non-transactional DDL.")


@check("fm42_alter_outside_batch")
def _fm42_outside_batch(b: Built) -> None:
    source = _pending(b, scenarios.DDD444_NULLABLE)
    assert "op.alter_column(" in source and "batch_alter_table" not in source
    b.has_rows()
    failed(b.alembic("upgrade", "head"), "(sqlite3.OperationalError) near \"ALTER\": syntax error")


@check("fm26_rename_as_drop_add")
def _fm26_rename(b: Built) -> None:
    source = _pending(b, scenarios.DDD444_RENAME)
    assert 'batch_op.drop_column("name")' in source
    b.has_rows()
    succeeded(b.alembic("upgrade", "head"))
    assert "name" not in b.columns("author")
    assert b.query("SELECT id, display_name FROM author ORDER BY id") == [(1, None), (2, None)]


@check("fm38_unnamed_constraint")
def _fm38_unnamed(b: Built) -> None:
    assert "op.create_unique_constraint(None," in _pending(b, scenarios.DDD444_UNNAMED)
    b.has_rows()
    succeeded(b.alembic("upgrade", "head"))
    # The server named it; the revision cannot: its downgrade fails.
    failed(b.alembic("downgrade", "ccc333"), "AssertionError" if SQLALCHEMY_2_1 else
           "TypeError: object of type 'NoneType' has no len()")  # how SQLAlchemy 2.0 says it
    assert b.versions() == ["ddd444"]


@check("fm39_string_without_length")
def _fm39_no_length(b: Built) -> None:
    assert "sa.String()" in _pending(b, scenarios.DDD444_SLUG)
    b.has_rows()
    failed(b.alembic("upgrade", "head"),
           f"VARCHAR requires a length on dialect {make_url(b.url).get_backend_name()}")
    assert "slug" not in b.columns("post")


# ---------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------


def _cases() -> Iterator[object]:
    for name, scenario in SCENARIOS.items():
        for backend in scenario.backends:
            marks = [pytest.mark.mariadb] if backend == "mariadb" else []
            yield pytest.param(name, backend, id=f"{name}-{backend}", marks=marks)


@pytest.mark.parametrize(("name", "backend"), list(_cases()))
def test_scenario_is_really_broken(name: str, backend: str, tmp_path: Path,
                                   request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    path_before = list(sys.path)
    scenario = build(name, tmp_path / "project", url)
    assert scenario is SCENARIOS[name]
    assert sys.path == path_before
    assert not [m for m in sys.modules if m == "app" or m.startswith("app.")]
    assert not list((tmp_path / "project").rglob("__pycache__"))
    built = Built(scenario, (tmp_path / "project").resolve(), url, backend, request)
    try:
        CHECKS[name](built)
    finally:
        for cleanup in built._cleanup:
            cleanup()


def test_catalogue_is_consistent() -> None:
    assert set(CHECKS) == set(SCENARIOS)
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name and re.fullmatch(r"[a-z0-9_]+", name)
        assert scenario.build is not scenarios.Scenario.build
        assert set(scenario.backends) <= {"sqlite", "mariadb"} and scenario.backends
        assert scenario.description.endswith(".") and scenario.description[0].isupper()
        if name != "healthy":
            assert re.fullmatch(r"FM\d\d(, FM\d\d)*", scenario.fm), scenario.fm
            assert name.startswith(scenario.fm[:4].lower()), name
            assert scenario.expect
        for code, location in scenario.expect:
            assert code in CATALOGUE, code
            assert location is None or location.strip() == location != ""
    assert SCENARIOS["healthy"].expect == ()
    assert set(SCENARIOS) >= scenarios.URL_FROM_INI


def test_build_refuses_a_non_empty_folder_a_wrong_backend_and_unknown_names(
        tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "keep.txt").write_text("mine")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with pytest.raises(ValueError, match="not empty"):
        build("healthy", tmp_path / "project", url)
    with pytest.raises(ValueError, match="runs on mariadb, not on sqlite"):
        build("fm13_half_applied_revision", tmp_path / "other", url)
    with pytest.raises(ValueError, match="runs on sqlite, not on mariadb"):
        build("fm42_sqlite_without_batch", tmp_path / "other", "mysql+pymysql://u@h/db")
    with pytest.raises(KeyError, match="unknown scenario 'nope'"):
        build("nope", tmp_path / "other", url)
    assert (tmp_path / "project" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "other").exists() and not (tmp_path / "app.db").exists()


def test_builders_do_not_depend_on_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'wrong.db'}")
    build("fm01_regenerated_folder", tmp_path / "project", f"sqlite:///{tmp_path / 'app.db'}")
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "wrong.db").exists()
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                ("ccc333",)]
    finally:
        engine.dispose()
