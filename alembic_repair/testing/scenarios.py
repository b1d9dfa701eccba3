"""Named scenarios: each builds one broken Alembic setup from scratch, as a real project.

A scenario writes a project under an empty folder (``app/models.py``, ``pyproject.toml``,
``alembic.ini``, ``alembic/env.py``, revision files) and brings a real database (SQLite or
MariaDB, given by URL) into the broken state the failure-mode research describes, with rows in
the tables. Every step is what a user really does: revision files are written as text, the
database is changed by ``alembic.command`` (run in-process on the given URL), by
``Base.metadata.create_all`` or by plain SQL. Nothing here imports alembic_repair's diagnosis.

``Scenario.expect`` lists what ``doctor`` must report: ``(code, location substring)``, the
location being ``None`` where more than one place would be right. Locations follow doctor's
conventions: a file relative to the project root (``alembic/versions/ccc333_add_author_email.py``,
``alembic.ini``), the version table as ``alembic_version``, a table as its name (``post``), a
column as ``table.column``. Other findings may come with a scenario (a database behind head also
differs from the models); only the listed ones are the scenario's point.

How doctor must be run on a built scenario: with the scenario's database URL (``--url`` or
``DATABASE_URL``), except for the scenarios in `URL_FROM_INI` (the broken URL *is* the one in
alembic.ini, so doctor must find it there: no ``--url``, no ``DATABASE_URL``).

The base project: models ``author`` (id, name, email) and ``post`` (id, title, body, views,
created_at, author_id -> author.id, indexed); alembic.ini, env.py and script.py.mako written by
`alembic_repair.engine.scaffold`; history ``aaa111`` (create author) -> ``bbb222`` (create post) ->
``ccc333`` (add author.email); upgraded to head; 2 authors and 3 posts. Its models equal head.
"""

from __future__ import annotations

import importlib
import io
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    ColumnClause,
    DateTime,
    Integer,
    String,
    Text,
    column,
    create_engine,
    table,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from alembic_repair.engine import scaffold
from alembic_repair.engine.project import Project

MODELS_SPEC = "app.models:Base"
VERSIONS = "alembic/versions"
AAA = "aaa111_create_author.py"
BBB = "bbb222_create_post.py"
CCC = "ccc333_add_author_email.py"
HEAD = "ccc333"

#: Scenarios whose doctor run must take the URL from alembic.ini (no --url, no DATABASE_URL).
URL_FROM_INI = frozenset({"fm17_percent_in_ini_url"})


def _not_set(root: Path, url: str) -> None:
    raise NotImplementedError("this scenario has no builder")


@dataclass(frozen=True)
class Scenario:
    """One broken situation: what the user did, and what doctor must say about it."""

    name: str
    fm: str
    description: str
    expect: tuple[tuple[str, str | None], ...]
    backends: tuple[str, ...] = ("sqlite", "mariadb")
    build: Callable[[Path, str], None] = _not_set


# -------------------------------------------------------------------------------------------
# The application: models and rows
# -------------------------------------------------------------------------------------------

AUTHOR = (
    "id: Mapped[int] = mapped_column(primary_key=True)",
    "name: Mapped[str] = mapped_column(String(100))",
    "email: Mapped[str | None] = mapped_column(String(200))",
)
POST = (
    "id: Mapped[int] = mapped_column(primary_key=True)",
    "title: Mapped[str] = mapped_column(String(200))",
    "body: Mapped[str | None] = mapped_column(Text)",
    "views: Mapped[int]",
    "created_at: Mapped[datetime | None] = mapped_column(DateTime)",
    'author_id: Mapped[int] = mapped_column(ForeignKey("author.id"), index=True)',
)
AUTHOR_BEFORE_EMAIL = AUTHOR[:2]

MODELS_HEADER = '''\
"""The application's models."""

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass
'''


def models_py(author: tuple[str, ...] = AUTHOR, post: tuple[str, ...] | None = POST) -> str:
    """app/models.py with the given column lines (``post=None``: no Post class)."""
    parts = [MODELS_HEADER, _model_class("Author", "author", author)]
    if post is not None:
        parts.append(_model_class("Post", "post", post))
    return "\n".join(parts)


def _model_class(cls: str, name: str, lines: tuple[str, ...]) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f'\nclass {cls}(Base):\n    __tablename__ = "{name}"\n\n{body}'


AUTHOR_ROWS = (
    {"id": 1, "name": "Ada Lovelace", "email": "ada@example.org"},
    {"id": 2, "name": "Grace Hopper", "email": "grace@example.org"},
)
POST_ROWS = (
    {"id": 1, "title": "Notes on the Analytical Engine", "body": "Note G.", "views": 42,
     "created_at": datetime(2024, 1, 2, 10, 0), "author_id": 1},
    {"id": 2, "title": "A compiler for business", "body": None, "views": 7,
     "created_at": datetime(2024, 2, 3, 11, 30), "author_id": 2},
    {"id": 3, "title": "The first bug", "body": "A moth in relay 70.", "views": 0,
     "created_at": None, "author_id": 2},
)


def _engine(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool)


def execute(url: str, *statements: str) -> None:
    """Plain SQL, one transaction (what a user types into the database's shell)."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def insert_rows(url: str, *, email: bool = True) -> None:
    """2 authors and 3 posts (``email=False``: the author table has no email column yet)."""
    author_cols: list[ColumnClause[Any]] = [column("id", Integer), column("name", String)]
    if email:
        author_cols.append(column("email", String))
    author = table("author", *author_cols)
    post = table("post", column("id", Integer), column("title", String), column("body", Text),
                 column("views", Integer), column("created_at", DateTime),
                 column("author_id", Integer))
    authors = [{k: v for k, v in row.items() if email or k != "email"} for row in AUTHOR_ROWS]
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(author.insert(), authors)
            conn.execute(post.insert(), list(POST_ROWS))
    finally:
        engine.dispose()


# -------------------------------------------------------------------------------------------
# Revision files, written as text
# -------------------------------------------------------------------------------------------


def revision_py(rev: str, down: str | None, message: str, upgrade: str, downgrade: str, *,
                imports: str = "", date: str = "2024-01-01 10:00:00.000000") -> str:
    """A revision file as ``alembic revision`` writes it with our script.py.mako."""
    def body(code: str) -> str:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ")

    extra = f"{imports.strip()}\n" if imports.strip() else ""
    return (
        f'"""{message}\n\nRevision ID: {rev}\nRevises: {down or ""}\nCreate Date: {date}\n\n"""\n'
        "from typing import Sequence, Union\n\n"
        "from alembic import op\n"
        "import sqlalchemy as sa\n"
        f"{extra}\n\n"
        "# revision identifiers, used by Alembic.\n"
        f"revision: str = {rev!r}\n"
        f"down_revision: Union[str, Sequence[str], None] = {down!r}\n"
        "branch_labels: Union[str, Sequence[str], None] = None\n"
        "depends_on: Union[str, Sequence[str], None] = None\n\n\n"
        "def upgrade() -> None:\n"
        '    """Upgrade schema."""\n'
        f"{body(upgrade)}\n\n\n"
        "def downgrade() -> None:\n"
        '    """Downgrade schema."""\n'
        f"{body(downgrade)}\n"
    )


def aaa111(down: str | None = None) -> str:
    return revision_py("aaa111", down, "create author", '''
        op.create_table(
            "author",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    ''', 'op.drop_table("author")', date="2024-01-01 10:00:00.000000")


BBB222_DOWNGRADE = '''
    op.drop_index(op.f("ix_post_author_id"), table_name="post")
    op.drop_table("post")
'''


def bbb222(down: str | None = "aaa111", downgrade: str = BBB222_DOWNGRADE) -> str:
    return revision_py("bbb222", down, "create post", '''
        op.create_table(
            "post",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("title", sa.String(length=200), nullable=False),
            sa.Column("body", sa.Text(), nullable=True),
            sa.Column("views", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=True),
            sa.Column("author_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["author_id"], ["author.id"]),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f("ix_post_author_id"), "post", ["author_id"], unique=False)
    ''', downgrade, date="2024-01-08 10:00:00.000000")


def ccc333(down: str | None = "bbb222") -> str:
    return revision_py(
        "ccc333", down, "add author email",
        'op.add_column("author", sa.Column("email", sa.String(length=200), nullable=True))',
        'op.drop_column("author", "email")', date="2024-01-15 10:00:00.000000")


def base_revisions() -> dict[str, str]:
    return {AAA: aaa111(), BBB: bbb222(), CCC: ccc333()}


# -------------------------------------------------------------------------------------------
# Project files and Alembic, in-process
# -------------------------------------------------------------------------------------------


def _purge_app_modules() -> None:
    for name in [n for n in sys.modules if n == "app" or n.startswith("app.")]:
        del sys.modules[name]


@contextmanager
def project_modules(root: Path) -> Iterator[None]:
    """The project's ``app`` package importable, fresh, and gone afterwards (with sys.path);
    no __pycache__ is written (a rewritten models.py must never meet a stale .pyc)."""
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    _purge_app_modules()
    sys.path.insert(0, str(root))
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode
        _purge_app_modules()


def write_app(root: Path, models: str | None = None) -> None:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text("", encoding="utf-8")
    (root / "app" / "models.py").write_text(models or models_py(), encoding="utf-8")
    (root / "pyproject.toml").write_text(
        f'[tool.alembic_repair]\nmodels = "{MODELS_SPEC}"\n', encoding="utf-8")


def write_scaffold(root: Path, url: str) -> None:
    """alembic.ini, alembic/env.py, alembic/script.py.mako and versions/, from our templates."""
    project = Project(root=root, ini_path=root / "alembic.ini", script_location=root / "alembic",
                      url=url, url_source="scenario", models=MODELS_SPEC)
    scaffold.write_alembic_ini(project)
    scaffold.write_env_py(project, MODELS_SPEC)
    scaffold.write_script_template(project)
    scaffold.ensure_versions_dir(project)


def versions(root: Path) -> Path:
    return root / VERSIONS


def write_revisions(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        (versions(root) / name).write_text(source, encoding="utf-8")


def run_alembic(root: Path, url: str, action: Callable[[Config], object]) -> None:
    """An ``alembic.command`` on the project's alembic.ini and our env.py, on `url`.

    The connection goes through ``config.attributes`` (the env.py honours it), so neither the
    process's DATABASE_URL nor its working directory matter; committed at the end.
    """
    config = Config(str(root / "alembic.ini"), output_buffer=io.StringIO())
    config.attributes["configure_logger"] = False
    engine = _engine(url)
    try:
        with project_modules(root), engine.begin() as conn:
            config.attributes["connection"] = conn
            action(config)
    finally:
        engine.dispose()


def upgrade(root: Path, url: str, target: str = "head") -> None:
    run_alembic(root, url, lambda config: command.upgrade(config, target))


def stamp(root: Path, url: str, target: str) -> None:
    run_alembic(root, url, lambda config: command.stamp(config, target))


def create_all(root: Path, url: str) -> None:
    """``Base.metadata.create_all()`` from the project's models, as an app's start-up does."""
    engine = _engine(url)
    try:
        with project_modules(root):
            models = importlib.import_module("app.models")
            models.Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def base_project(root: Path, url: str, *, models: str | None = None,
                 revisions: dict[str, str] | None = None, upgrade_to: str = "head") -> None:
    """The base project (see the module docstring), upgraded to `upgrade_to`, with rows."""
    write_app(root, models)
    write_scaffold(root, url)
    write_revisions(root, base_revisions() if revisions is None else revisions)
    upgrade(root, url, upgrade_to)
    insert_rows(url, email=upgrade_to not in ("aaa111", "bbb222"))


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must occur exactly once) in `path`: a user's edit."""
    source = path.read_text(encoding="utf-8")
    if source.count(old) != 1:
        raise RuntimeError(f"{path}: expected {old!r} exactly once")
    path.write_text(source.replace(old, new), encoding="utf-8")


def set_ini_url(root: Path, value: str) -> None:
    """Add ``sqlalchemy.url = value`` to the [alembic] section of alembic.ini (written as is)."""
    edit(root / "alembic.ini", "path_separator = os\n",
         f"path_separator = os\nsqlalchemy.url = {value}\n")


def stock_env_py() -> str:
    """The env.py ``alembic init`` writes (generic template of the installed Alembic)."""
    return resources.files("alembic").joinpath("templates/generic/env.py").read_text("utf-8")


def percent_encoded(url: str) -> str:
    """The same URL with a ``%XX`` escape in it (the last character of the database name),
    as URL.render_as_string or a .env writes special characters; kept if it has one already."""
    if "%" in url:
        return url
    base, sep, query = url.partition("?")
    database = make_url(url).database or ""
    if not database or not base.endswith(database):
        raise ValueError(f"cannot percent-encode {url!r}: no database name at the end")
    encoded = f"{base[:-1]}%{ord(base[-1]):02X}{sep}{query}"
    if make_url(encoded).database != database:
        raise ValueError(f"cannot percent-encode {url!r}: the driver would read another name")
    return encoded


def backend_of(url: str) -> str:
    """``sqlite`` or ``mariadb`` (MySQL URLs count as mariadb)."""
    name = make_url(url).get_backend_name()
    if name == "sqlite":
        return "sqlite"
    if name in ("mysql", "mariadb"):
        return "mariadb"
    raise ValueError(f"{name}: scenarios run on sqlite and mariadb only")


# -------------------------------------------------------------------------------------------
# The builders
# -------------------------------------------------------------------------------------------


def _healthy(root: Path, url: str) -> None:
    base_project(root, url)


def _fm01_deleted_head_revision(root: Path, url: str) -> None:
    base_project(root, url)
    (versions(root) / CCC).unlink()


def _fm01_regenerated_folder(root: Path, url: str) -> None:
    """The old start-up dance, rerun: ``rm -rf alembic alembic.ini``, ``alembic init alembic``,
    sed the URL into alembic.ini and the models into env.py, ``alembic revision
    --autogenerate``. Autogenerate refuses a database stamped with an id it does not know
    (Can't locate revision), so the fresh ids come from a run against an empty database, as
    when a developer regenerates the folder locally and deploys it."""
    base_project(root, url)
    shutil.rmtree(root / "alembic")
    (root / "alembic.ini").unlink()
    with redirect_stdout(io.StringIO()):  # Alembic's "Creating directory ..." lines
        command.init(Config(str(root / "alembic.ini")), str(root / "alembic"))
    edit(root / "alembic.ini", "sqlalchemy.url = driver://user:pass@localhost/dbname",
         f"sqlalchemy.url = {url.replace('%', '%%')}")
    edit(root / "alembic" / "env.py", "target_metadata = None",
         "from app.models import Base\ntarget_metadata = Base.metadata")
    with tempfile.TemporaryDirectory(prefix="scenario-dev-db-") as scratch:
        config = Config(output_buffer=io.StringIO())  # no file: env.py skips fileConfig
        config.set_main_option("script_location", str(root / "alembic"))
        config.set_main_option("path_separator", "os")
        config.set_main_option("sqlalchemy.url", f"sqlite:///{Path(scratch) / 'dev.db'}")
        with project_modules(root), redirect_stdout(io.StringIO()):
            command.revision(config, message="initial", autogenerate=True)


def _fm02_two_heads(root: Path, url: str) -> None:
    base_project(root, url, revisions={AAA: aaa111(), BBB: bbb222(), CCC: ccc333("aaa111")},
                 upgrade_to="heads")


def _fm04_duplicate_revision_id(root: Path, url: str) -> None:
    base_project(root, url)
    shutil.copyfile(versions(root) / BBB, versions(root) / "bbb222_create_post_copy.py")


def _fm05_deleted_intermediate(root: Path, url: str) -> None:
    base_project(root, url)
    (versions(root) / BBB).unlink()


def _fm06_cycle(root: Path, url: str) -> None:
    base_project(root, url)
    (versions(root) / AAA).write_text(aaa111(down="bbb222"), encoding="utf-8")


def _fm08_version_rows_without_pk(root: Path, url: str) -> None:
    base_project(root, url, upgrade_to="bbb222")
    execute(url, "DROP TABLE alembic_version",
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
            *["INSERT INTO alembic_version (version_num) VALUES ('bbb222')"] * 3)


NAME_INDEXED = (AUTHOR[0], "name: Mapped[str] = mapped_column(String(100), index=True)",
                AUTHOR[2])


def _fm08_version_num_too_short(root: Path, url: str) -> None:
    base_project(root, url, models=models_py(NAME_INDEXED))
    execute(url, "ALTER TABLE alembic_version MODIFY version_num VARCHAR(8) NOT NULL")
    write_revisions(root, {"4d2f0a9c1b7e_index_author_name.py": revision_py(
        "4d2f0a9c1b7e", "ccc333", "index author name",
        'op.create_index(op.f("ix_author_name"), "author", ["name"], unique=False)',
        'op.drop_index(op.f("ix_author_name"), table_name="author")',
        date="2024-02-01 10:00:00.000000")})


def _fm09_create_all(root: Path, url: str) -> None:
    write_app(root)
    write_scaffold(root, url)
    write_revisions(root, base_revisions())
    create_all(root, url)
    insert_rows(url)


def _fm09_empty_version_table(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "DELETE FROM alembic_version")


def _fm11_versions_missing(root: Path, url: str) -> None:
    base_project(root, url)
    shutil.rmtree(versions(root))


def _fm11_versions_missing_fresh_db(root: Path, url: str) -> None:
    write_app(root)
    write_scaffold(root, url)
    shutil.rmtree(versions(root))
    upgrade(root, url)  # "succeeds": Alembic >= 1.16 skips the missing folder silently


DDD444_HALF = "ddd444_author_bio_post_summary.py"


def _fm13_half_applied(root: Path, url: str) -> None:
    base_project(root, url)
    author = (AUTHOR[0], AUTHOR[1], "email: Mapped[str | None] = mapped_column(String(200), "
              "index=True)", "bio: Mapped[str | None] = mapped_column(Text)")
    post = (*POST, "summary: Mapped[str | None] = mapped_column(String(300))")
    (root / "app" / "models.py").write_text(models_py(author, post), encoding="utf-8")
    write_revisions(root, {DDD444_HALF: revision_py(
        "ddd444", "ccc333", "author bio, post summary, index on email", '''
            op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))
            op.add_column("post", sa.Column("summary", sa.String(length=300), nullable=True))
            op.create_index(op.f("ix_author_email"), "author", ["emial"], unique=False)
        ''', '''
            op.drop_index(op.f("ix_author_email"), table_name="author")
            op.drop_column("post", "summary")
            op.drop_column("author", "bio")
        ''', date="2024-02-01 10:00:00.000000")})
    try:
        upgrade(root, url)
    except DBAPIError:
        return  # (1072, "Key column 'emial' doesn't exist in table"): two columns committed
    raise RuntimeError("ddd444 was expected to fail on its third operation")


def _fm13_half_applied_corrected(root: Path, url: str) -> None:
    _fm13_half_applied(root, url)
    path = versions(root) / DDD444_HALF
    path.write_text(path.read_text(encoding="utf-8").replace('["emial"]', '["email"]'),
                    encoding="utf-8")


def _fm15_wrong_stamp_head(root: Path, url: str) -> None:
    base_project(root, url, upgrade_to="bbb222")
    stamp(root, url, "head")


def _fm15_manual_alter(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "ALTER TABLE author ADD COLUMN x INTEGER", "UPDATE author SET x = id * 10")


def _fm17_percent_in_ini_url(root: Path, url: str) -> None:
    """alembic.ini gets the database's URL with a '%' that is not doubled. Run doctor on it
    without --url and without DATABASE_URL (see `URL_FROM_INI`): the URL in the ini is the one
    to diagnose. Written as ``%%`` the same line works and names the scenario's database."""
    base_project(root, url)
    set_ini_url(root, percent_encoded(url))


def _fm20_env_import_error(root: Path, url: str) -> None:
    base_project(root, url)
    edit(root / "alembic" / "env.py", "from app.models import Base as _models\n",
         "from app.models import Base as _models\nfrom app.settings import settings\n")


def _fm21_relative_script_location(root: Path, url: str) -> None:
    base_project(root, url)
    edit(root / "alembic.ini", "script_location = %(here)s/alembic\n",
         "script_location = alembic\n")


def _fm21_missing_alembic_ini(root: Path, url: str) -> None:
    base_project(root, url)
    (root / "alembic.ini").unlink()


def _fm23_target_metadata_none(root: Path, url: str) -> None:
    base_project(root, url)
    (root / "alembic" / "env.py").write_text(stock_env_py(), encoding="utf-8")
    set_ini_url(root, url.replace("%", "%%"))


def _fm24_model_removed(root: Path, url: str) -> None:
    base_project(root, url)
    (root / "app" / "models.py").write_text(models_py(post=None), encoding="utf-8")


def _fm24_orphan_table(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "CREATE TABLE legacy_stats (id INTEGER NOT NULL PRIMARY KEY, "
                 "day VARCHAR(10) NOT NULL, hits INTEGER NOT NULL)",
            "INSERT INTO legacy_stats (id, day, hits) VALUES "
            "(1, '2023-12-30', 120), (2, '2023-12-31', 98)")


def _fm25_empty_revision(root: Path, url: str) -> None:
    autogenerated_nothing = '''
        # ### commands auto generated by Alembic - please adjust! ###
        pass
        # ### end Alembic commands ###
    '''
    base_project(root, url, revisions={**base_revisions(), "ddd444_sync_models.py": revision_py(
        "ddd444", "ccc333", "sync models", autogenerated_nothing, autogenerated_nothing,
        date="2024-02-01 10:00:00.000000")})


def _fm03_behind_head(root: Path, url: str) -> None:
    base_project(root, url, upgrade_to="bbb222")


def _fm04_stray_file(root: Path, url: str) -> None:
    base_project(root, url)
    (versions(root) / "helpers.py").write_text(textwrap.dedent('''\
        """Column helpers shared by the revisions."""
        import sqlalchemy as sa


        def timestamps():
            return [sa.Column("created_at", sa.DateTime(), nullable=True)]
    '''), encoding="utf-8")


DDD444_SYNTAX = "ddd444_add_post_slug.py"


def _fm27_syntax_error(root: Path, url: str) -> None:
    base_project(root, url)
    post = (*POST, "slug: Mapped[str | None] = mapped_column(String(200))")
    (root / "app" / "models.py").write_text(models_py(post=post), encoding="utf-8")
    write_revisions(root, {DDD444_SYNTAX: revision_py(
        "ddd444", "ccc333", "add post slug",
        'op.add_column("post", sa.Column("slug", sa.String(length=200), nullable=True)',
        'op.drop_column("post", "slug")', date="2024-02-01 10:00:00.000000")})


DDD444_IMPORT = "ddd444_add_author_nickname.py"


def _fm27_import_error(root: Path, url: str) -> None:
    base_project(root, url)
    author = (*AUTHOR, "nickname: Mapped[str | None] = mapped_column(String(50))")
    (root / "app" / "models.py").write_text(models_py(author), encoding="utf-8")
    write_revisions(root, {DDD444_IMPORT: revision_py(
        "ddd444", "ccc333", "add author nickname",
        'op.add_column("author", sa.Column("nickname", UpperString(length=50), nullable=True))',
        'op.drop_column("author", "nickname")', imports="from app.fields import UpperString",
        date="2024-02-01 10:00:00.000000")})


def _fm32_compare_type_off(root: Path, url: str) -> None:
    wider = (AUTHOR[0], "name: Mapped[str] = mapped_column(String(150))", AUTHOR[2])
    base_project(root, url, models=models_py(wider))
    edit(root / "alembic" / "env.py", "compare_type=True,", "compare_type=False,")


def _fm42_sqlite_without_batch(root: Path, url: str) -> None:
    base_project(root, url)
    env = stock_env_py().replace(
        "target_metadata = None", "from app.models import Base\ntarget_metadata = Base.metadata")
    (root / "alembic" / "env.py").write_text(env, encoding="utf-8")
    set_ini_url(root, url.replace("%", "%%"))


def _fm45_sqlite_junk(root: Path, url: str) -> None:
    base_project(root, url)
    execute(url, "UPDATE post SET views = 'abc' WHERE id = 2",
            "UPDATE post SET created_at = 'yesterday' WHERE id = 3")


def _fm46_history_from_scratch(root: Path, url: str) -> None:
    write_app(root, models_py(AUTHOR_BEFORE_EMAIL))
    create_all(root, url)  # the app before Alembic: tables from create_all()
    insert_rows(url, email=False)
    (root / "app" / "models.py").write_text(models_py(), encoding="utf-8")
    write_scaffold(root, url)
    write_revisions(root, {CCC: ccc333(down=None)})
    upgrade(root, url)
    execute(url, "UPDATE author SET email = 'ada@example.org' WHERE id = 1")


def _fm47_noop_downgrade(root: Path, url: str) -> None:
    revisions = {**base_revisions(), BBB: bbb222(downgrade="pass")}
    base_project(root, url, revisions=revisions)


# -- pending revisions that are unsafe to apply (AR5xx) --------------------------------------

DDD444_DROP = "ddd444_remove_post.py"
DDD444_STATUS = "ddd444_add_post_status.py"
DDD444_UNIQUE_NAME = "ddd444_unique_author_name.py"
DDD444_PUBLIC_ID = "ddd444_add_author_public_id.py"
DDD444_SHORTER = "ddd444_shorter_author_name.py"
DDD444_SEVERAL = "ddd444_author_bio_post_summary.py"
DDD444_NULLABLE = "ddd444_author_name_nullable.py"
DDD444_RENAME = "ddd444_rename_author_name.py"
DDD444_UNNAMED = "ddd444_unique_author_email.py"
DDD444_SLUG = "ddd444_add_post_slug.py"


def _pending_revision(root: Path, url: str, name: str, message: str, upgrade_code: str,
                      downgrade_code: str, *, models: str | None = None) -> None:
    """The base project at head with rows, the models changed to `models`, and a pending
    revision ddd444 (written by hand or autogenerated, not applied yet)."""
    base_project(root, url)
    if models is not None:
        (root / "app" / "models.py").write_text(models, encoding="utf-8")
    write_revisions(root, {name: revision_py("ddd444", "ccc333", message, upgrade_code,
                                             downgrade_code, date="2024-02-01 10:00:00.000000")})


def _fm24_pending_drop_table(root: Path, url: str) -> None:
    recreate = '''
        op.create_table(
            "post",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("title", sa.String(length=200), nullable=False),
            sa.Column("body", sa.Text(), nullable=True),
            sa.Column("views", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=True),
            sa.Column("author_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["author_id"], ["author.id"]),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f("ix_post_author_id"), "post", ["author_id"], unique=False)
    '''
    _pending_revision(root, url, DDD444_DROP, "remove post", 'op.drop_table("post")',
                      recreate, models=models_py(post=None))


def _fm34_not_null_on_rows(root: Path, url: str) -> None:
    post = (*POST, "status: Mapped[str] = mapped_column(String(20))")
    _pending_revision(root, url, DDD444_STATUS, "add post status",
                      'op.add_column("post", sa.Column("status", sa.String(length=20), '
                      "nullable=False))", 'op.drop_column("post", "status")',
                      models=models_py(post=post))


def _fm35_unique_on_duplicates(root: Path, url: str) -> None:
    author = (AUTHOR[0], "name: Mapped[str] = mapped_column(String(100), unique=True)",
              AUTHOR[2])
    _pending_revision(root, url, DDD444_UNIQUE_NAME, "unique author name",
                      'op.create_index(op.f("ix_author_name"), "author", ["name"], unique=True)',
                      'op.drop_index(op.f("ix_author_name"), table_name="author")',
                      models=models_py(author))
    execute(url, "INSERT INTO author (id, name, email) VALUES (3, 'Ada Lovelace', "
                 "'ada.lovelace@example.org')")


def _fm35_default_evaluated_once(root: Path, url: str) -> None:
    author = (*AUTHOR, "public_id: Mapped[str | None] = mapped_column(String(36), "
                       "default=str(uuid.uuid4()))")
    models = models_py(author).replace("from datetime import datetime\n",
                                       "import uuid\nfrom datetime import datetime\n")
    _pending_revision(root, url, DDD444_PUBLIC_ID, "add author public id",
                      'op.add_column("author", sa.Column("public_id", sa.String(length=36), '
                      "nullable=True))", 'op.drop_column("author", "public_id")', models=models)


def _fm32_type_change_too_short(root: Path, url: str) -> None:
    author = (AUTHOR[0], "name: Mapped[str] = mapped_column(String(10))", AUTHOR[2])
    _pending_revision(root, url, DDD444_SHORTER, "shorter author name", """
        op.alter_column("author", "name", existing_type=sa.String(length=100),
                        type_=sa.String(length=10), existing_nullable=False)
    """, """
        op.alter_column("author", "name", existing_type=sa.String(length=10),
                        type_=sa.String(length=100), existing_nullable=False)
    """, models=models_py(author))


def _fm13_several_ddl(root: Path, url: str) -> None:
    author = (*AUTHOR, "bio: Mapped[str | None] = mapped_column(Text)")
    post = (*POST, "summary: Mapped[str | None] = mapped_column(String(300))")
    _pending_revision(root, url, DDD444_SEVERAL, "author bio, post summary", """
        op.add_column("author", sa.Column("bio", sa.Text(), nullable=True))
        op.add_column("post", sa.Column("summary", sa.String(length=300), nullable=True))
    """, """
        op.drop_column("post", "summary")
        op.drop_column("author", "bio")
    """, models=models_py(author, post))


def _fm42_alter_outside_batch(root: Path, url: str) -> None:
    author = (AUTHOR[0], "name: Mapped[str | None] = mapped_column(String(100))", AUTHOR[2])
    _pending_revision(root, url, DDD444_NULLABLE, "author name nullable", """
        op.alter_column("author", "name", existing_type=sa.String(length=100), nullable=True)
    """, """
        op.alter_column("author", "name", existing_type=sa.String(length=100), nullable=False)
    """, models=models_py(author))


def _fm26_rename_as_drop_add(root: Path, url: str) -> None:
    author = (AUTHOR[0], "display_name: Mapped[str | None] = mapped_column(String(100))",
              AUTHOR[2])
    _pending_revision(root, url, DDD444_RENAME, "rename author name", """
        with op.batch_alter_table("author") as batch_op:
            batch_op.add_column(sa.Column("display_name", sa.String(length=100), nullable=True))
            batch_op.drop_column("name")
    """, """
        with op.batch_alter_table("author") as batch_op:
            batch_op.add_column(sa.Column("name", sa.String(length=100), nullable=False,
                                          server_default=""))
            batch_op.drop_column("display_name")
    """, models=models_py(author))


def _fm38_unnamed_constraint(root: Path, url: str) -> None:
    author = (AUTHOR[0], AUTHOR[1],
              "email: Mapped[str | None] = mapped_column(String(200), unique=True)")
    _pending_revision(root, url, DDD444_UNNAMED, "unique author email",
                      'op.create_unique_constraint(None, "author", ["email"])',
                      'op.drop_constraint(None, "author", type_="unique")',
                      models=models_py(author))


def _fm39_string_without_length(root: Path, url: str) -> None:
    post = (*POST, "slug: Mapped[str | None] = mapped_column(String)")
    _pending_revision(root, url, DDD444_SLUG, "add post slug",
                      'op.add_column("post", sa.Column("slug", sa.String(), nullable=True))',
                      'op.drop_column("post", "slug")', models=models_py(post=post))


# -------------------------------------------------------------------------------------------
# The catalogue
# -------------------------------------------------------------------------------------------


def _v(name: str) -> str:
    return f"{VERSIONS}/{name}"


def _absolute(builder: Callable[[Path, str], None]) -> Callable[[Path, str], None]:
    """The builder on the absolute root (sys.path and alembic.ini must not depend on cwd)."""
    def run(root: Path, url: str) -> None:
        builder(Path(root).resolve(), url)

    run.__name__ = run.__qualname__ = builder.__name__
    run.__doc__ = builder.__doc__
    return run


_ALL = (
    Scenario("healthy", "-",
             "Nothing wrong: three revisions applied, models equal head, rows in both tables.",
             (), build=_absolute(_healthy)),
    Scenario("fm01_deleted_head_revision", "FM01",
             "Deleted the head revision file ccc333 after the database had been upgraded to it.",
             (("AR302", None),), build=_absolute(_fm01_deleted_head_revision)),
    Scenario("fm01_regenerated_folder", "FM01, FM12",
             "Deleted alembic/ and alembic.ini and regenerated them (alembic init, URL and "
             "models sed in, revision --autogenerate against an empty dev database): one new "
             "random-id revision, while the database still records ccc333.",
             (("AR302", None),), build=_absolute(_fm01_regenerated_folder)),
    Scenario("fm02_two_heads", "FM02",
             "Two branches each added a revision on aaa111 (bbb222 and ccc333), both merged and "
             "applied with `upgrade heads`.",
             (("AR205", None),), build=_absolute(_fm02_two_heads)),
    Scenario("fm03_behind_head", "FM03",
             "Pulled revision ccc333 but upgraded only to bbb222.",
             (("AR304", None),), build=_absolute(_fm03_behind_head)),
    Scenario("fm04_duplicate_revision_id", "FM04",
             "Copied bbb222_create_post.py to bbb222_create_post_copy.py: revision id bbb222 is "
             "defined twice.",
             (("AR202", _v("bbb222_create_post")),), build=_absolute(_fm04_duplicate_revision_id)),
    Scenario("fm04_stray_file_in_versions", "FM04",
             "Put a helpers.py module (no revision id) into alembic/versions/.",
             (("AR206", _v("helpers.py")),), build=_absolute(_fm04_stray_file)),
    Scenario("fm05_deleted_intermediate_revision", "FM05",
             "Deleted the intermediate revision file bbb222 that ccc333 names as down_revision.",
             (("AR203", _v(CCC)),), build=_absolute(_fm05_deleted_intermediate)),
    Scenario("fm06_revision_cycle", "FM06",
             "Relinked aaa111 by hand to down_revision 'bbb222', closing a loop "
             "aaa111 -> bbb222 -> aaa111.",
             (("AR204", None),), build=_absolute(_fm06_cycle)),
    Scenario("fm08_version_rows_without_pk", "FM08",
             "Recreated alembic_version by hand without a primary key, and a restore run three "
             "times left three identical 'bbb222' rows (ccc333 is pending).",
             (("AR303", "alembic_version"), ("AR307", "alembic_version")),
             build=_absolute(_fm08_version_rows_without_pk)),
    Scenario("fm08_version_num_too_short", "FM08",
             "Narrowed alembic_version.version_num to VARCHAR(8) by hand, while a pending "
             "revision has the 12-character id 4d2f0a9c1b7e.",
             (("AR305", "alembic_version"),), backends=("mariadb",),
             build=_absolute(_fm08_version_num_too_short)),
    Scenario("fm09_create_all_without_alembic", "FM09",
             "The app built the schema with Base.metadata.create_all() and never ran Alembic: "
             "tables with rows, no alembic_version.",
             (("AR301", None),), build=_absolute(_fm09_create_all)),
    Scenario("fm09_empty_version_table", "FM09",
             "Deleted the row of alembic_version to get 'unstuck'; the schema is at head.",
             (("AR306", "alembic_version"),), build=_absolute(_fm09_empty_version_table)),
    Scenario("fm11_versions_dir_missing", "FM11",
             "The image was built without alembic/versions/ (ignored), against a database at "
             "ccc333.",
             (("AR112", None),), build=_absolute(_fm11_versions_missing)),
    Scenario("fm11_versions_dir_missing_fresh_db", "FM11",
             "A fresh clone without alembic/versions/ ran `alembic upgrade head` on an empty "
             "database: it succeeded and created only alembic_version.",
             (("AR112", None),), build=_absolute(_fm11_versions_missing_fresh_db)),
    Scenario("fm13_half_applied_revision", "FM13",
             "Upgraded to ddd444, which adds author.bio and post.summary and then fails creating "
             "an index on a misspelt column; MariaDB kept the two columns, alembic_version "
             "says ccc333.",
             (("AR402", _v(DDD444_HALF)),), backends=("mariadb",),
             build=_absolute(_fm13_half_applied)),
    Scenario("fm13_half_applied_then_corrected", "FM13",
             "As fm13_half_applied_revision, then corrected the misspelt column in ddd444: "
             "`alembic upgrade head` now fails at once on the column the failed run added.",
             (("AR402", _v(DDD444_HALF)),), backends=("mariadb",),
             build=_absolute(_fm13_half_applied_corrected)),
    Scenario("fm15_wrong_stamp_head", "FM15",
             "Ran `alembic stamp head` while the schema was at bbb222 (author.email missing).",
             (("AR401", None),), build=_absolute(_fm15_wrong_stamp_head)),
    Scenario("fm15_manual_alter", "FM15",
             "Ran `ALTER TABLE author ADD COLUMN x INTEGER` by hand on a database at head.",
             (("AR405", None), ("AR403", "author")), build=_absolute(_fm15_manual_alter)),
    Scenario("fm17_percent_in_ini_url", "FM17",
             "Wrote the database URL, percent-encoded, into alembic.ini as sqlalchemy.url "
             "without doubling the '%'.",
             (("AR107", "alembic.ini"),), build=_absolute(_fm17_percent_in_ini_url)),
    Scenario("fm20_env_import_error", "FM20",
             "Added `from app.settings import settings` to env.py, a module the project does "
             "not have.",
             (("AR105", "alembic/env.py"),), build=_absolute(_fm20_env_import_error)),
    Scenario("fm21_relative_script_location", "FM21",
             "Wrote `script_location = alembic` (relative to the working directory) in "
             "alembic.ini.",
             (("AR110", "alembic.ini"),), build=_absolute(_fm21_relative_script_location)),
    Scenario("fm21_missing_alembic_ini", "FM21",
             "Deleted alembic.ini (not committed) in a project with a database at head.",
             (("AR101", "alembic.ini"),), build=_absolute(_fm21_missing_alembic_ini)),
    Scenario("fm23_target_metadata_none", "FM23",
             "Replaced env.py with the stock `alembic init` one (target_metadata = None), the "
             "URL in alembic.ini.",
             (("AR106", "alembic/env.py"),), build=_absolute(_fm23_target_metadata_none)),
    Scenario("fm24_model_class_removed", "FM24",
             "Removed the Post model class from app/models.py while the post table (with rows) "
             "stays.",
             (("AR403", "post"),), build=_absolute(_fm24_model_removed)),
    Scenario("fm24_orphan_table", "FM24",
             "Created a table legacy_stats with raw SQL, outside the models and the history.",
             (("AR406", "legacy_stats"),), build=_absolute(_fm24_orphan_table)),
    Scenario("fm25_empty_revision", "FM25",
             "Autogenerated and applied a revision ddd444 that found no change (upgrade is "
             "`pass`).",
             (("AR207", _v("ddd444_sync_models.py")),), build=_absolute(_fm25_empty_revision)),
    Scenario("fm27_revision_syntax_error", "FM27",
             "Wrote a pending revision ddd444 with an unclosed parenthesis.",
             (("AR201", _v(DDD444_SYNTAX)),), build=_absolute(_fm27_syntax_error)),
    Scenario("fm27_revision_import_error", "FM27",
             "Wrote a pending revision ddd444 that imports app.fields, a module that no longer "
             "exists.",
             (("AR209", _v(DDD444_IMPORT)),), build=_absolute(_fm27_import_error)),
    Scenario("fm32_compare_type_off", "FM32",
             "Set compare_type=False in env.py, then widened Author.name to String(150) in the "
             "models: autogenerate sees no change.",
             (("AR109", "alembic/env.py"), ("AR403", "author")),
             build=_absolute(_fm32_compare_type_off)),
    Scenario("fm42_sqlite_without_batch", "FM42",
             "Uses the stock `alembic init` env.py, wired to the models, on SQLite: no "
             "render_as_batch.",
             (("AR108", "alembic/env.py"),), backends=("sqlite",),
             build=_absolute(_fm42_sqlite_without_batch)),
    Scenario("fm45_sqlite_junk_values", "FM45",
             "Wrote 'abc' into the INTEGER column post.views and 'yesterday' into the DATETIME "
             "column post.created_at (SQLite stores them).",
             (("AR407", "post.views"), ("AR407", "post.created_at")), backends=("sqlite",),
             build=_absolute(_fm45_sqlite_junk)),
    Scenario("fm46_history_cannot_build_empty_db", "FM46",
             "Adopted Alembic on a create_all() database: the base revision ccc333 adds "
             "author.email to a table no revision creates.",
             (("AR404", _v(CCC)),), build=_absolute(_fm46_history_from_scratch)),
    Scenario("fm47_noop_downgrade", "FM47",
             "Wrote bbb222, which creates table post, with `downgrade(): pass`.",
             (("AR208", _v(BBB)),), build=_absolute(_fm47_noop_downgrade)),
    Scenario("fm24_pending_drop_table", "FM24",
             "Removed the Post model and autogenerated ddd444, which drops table post (3 rows); "
             "not applied yet.",
             (("AR501", _v(DDD444_DROP)),), build=_absolute(_fm24_pending_drop_table)),
    Scenario("fm34_not_null_column_on_rows", "FM34",
             "Wrote a pending revision ddd444 adding post.status NOT NULL without a server "
             "default, while post has 3 rows.",
             (("AR502", _v(DDD444_STATUS)),), build=_absolute(_fm34_not_null_on_rows)),
    Scenario("fm35_unique_on_duplicates", "FM35",
             "Wrote a pending revision ddd444 with a unique index on author.name while two "
             "authors are named 'Ada Lovelace'.",
             (("AR503", _v(DDD444_UNIQUE_NAME)),), build=_absolute(_fm35_unique_on_duplicates)),
    Scenario("fm35_default_evaluated_once", "FM35",
             "Gave Author.public_id `default=str(uuid.uuid4())` in the models (called, not "
             "passed) and wrote the pending revision ddd444 that adds the column.",
             (("AR504", "app/models.py"),), build=_absolute(_fm35_default_evaluated_once)),
    Scenario("fm32_type_change_too_short", "FM32",
             "Wrote a pending revision ddd444 shortening author.name to VARCHAR(10) while "
             "'Ada Lovelace' has 12 characters.",
             (("AR505", _v(DDD444_SHORTER)),), backends=("mariadb",),
             build=_absolute(_fm32_type_change_too_short)),
    Scenario("fm13_several_ddl_in_one_revision", "FM13",
             "Wrote a pending revision ddd444 that alters two existing tables (author.bio, "
             "post.summary): on MariaDB each statement commits on its own.",
             (("AR506", _v(DDD444_SEVERAL)), ("AR304", "alembic_version")),
             backends=("mariadb",), build=_absolute(_fm13_several_ddl)),
    Scenario("fm42_alter_outside_batch", "FM42",
             "Wrote a pending revision ddd444 with a plain op.alter_column (author.name "
             "nullable) on SQLite, outside batch mode.",
             (("AR507", _v(DDD444_NULLABLE)),), backends=("sqlite",),
             build=_absolute(_fm42_alter_outside_batch)),
    Scenario("fm26_rename_as_drop_add", "FM26",
             "Renamed Author.name to display_name in the models; the pending revision ddd444 "
             "adds display_name and drops name, as autogenerate writes it.",
             (("AR508", _v(DDD444_RENAME)),), build=_absolute(_fm26_rename_as_drop_add)),
    Scenario("fm38_unnamed_constraint", "FM38",
             "Wrote a pending revision ddd444 with op.create_unique_constraint(None, 'author', "
             "['email']) and a downgrade that drops constraint None.",
             (("AR509", _v(DDD444_UNNAMED)), ("AR304", "alembic_version")),
             backends=("mariadb",), build=_absolute(_fm38_unnamed_constraint)),
    Scenario("fm39_string_without_length", "FM39",
             "Wrote a pending revision ddd444 adding post.slug as sa.String() without a "
             "length, on MariaDB.",
             (("AR510", _v(DDD444_SLUG)),), backends=("mariadb",),
             build=_absolute(_fm39_string_without_length)),
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _ALL}


def build(name: str, root: Path, url: str) -> Scenario:
    """Build scenario `name` into the empty folder `root` against the database at `url`."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    backend = backend_of(url)
    if backend not in scenario.backends:
        raise ValueError(f"scenario {name!r} runs on {', '.join(scenario.backends)}, "
                         f"not on {backend}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ValueError(f"{root}: not empty; scenarios are built into an empty folder")
    scenario.build(root, url)
    return scenario
