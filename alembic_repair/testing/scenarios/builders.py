"""What every scenario is built from: the base project's models, rows and revision files, written
as text, and Alembic run in-process on the scenario's database."""

from __future__ import annotations

import importlib
import io
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from alembic_repair.engine import scaffold
from alembic_repair.engine.project import Project
from alembic_repair.engine.url import DatabaseUrl, parse_url

MODELS_SPEC = "app.models:Base"
VERSIONS = "alembic/versions"
AAA = "aaa111_create_author.py"
BBB = "bbb222_create_post.py"
CCC = "ccc333_add_author_email.py"
HEAD = "ccc333"


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


#: The `post` table as revision bbb222 creates it (and a downgrade that drops it recreates it).
CREATE_POST = '''
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


def bbb222(down: str | None = "aaa111", downgrade: str = BBB222_DOWNGRADE) -> str:
    return revision_py("bbb222", down, "create post", CREATE_POST, downgrade,
                       date="2024-01-08 10:00:00.000000")


def ccc333(down: str | None = "bbb222",
           downgrade: str = 'op.drop_column("author", "email")') -> str:
    return revision_py(
        "ccc333", down, "add author email",
        'op.add_column("author", sa.Column("email", sa.String(length=200), nullable=True))',
        downgrade, date="2024-01-15 10:00:00.000000")


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
                      url=DatabaseUrl(url), url_source="scenario", models=MODELS_SPEC)
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
    """The base project (see the package docstring), upgraded to `upgrade_to`, with rows."""
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
    """The same URL with a ``%XX`` escape in it (the last character of the database name,
    else of the user name: SQLAlchemy decodes the database part only from 2.1 on), as
    URL.render_as_string or a .env writes special characters; kept if it has one already."""
    if "%" in url:
        return url
    base, sep, query = url.partition("?")
    database = parse_url(url).database or ""
    if not database or not base.endswith(database):
        raise ValueError(f"cannot percent-encode {url!r}: no database name at the end")
    encoded = f"{base[:-1]}%{ord(base[-1]):02X}{sep}{query}"
    if parse_url(encoded) == parse_url(url):
        return encoded
    scheme, _, rest = url.partition("://")
    user = rest.partition("@")[0].partition(":")[0] if "@" in rest else ""
    if user and user == parse_url(url).username:
        encoded = f"{scheme}://{user[:-1]}%{ord(user[-1]):02X}{rest[len(user):]}"
        if parse_url(encoded) == parse_url(url):
            return encoded
    raise ValueError(f"cannot percent-encode {url!r}: the driver would read another name")


def backend_of(url: str) -> str:
    """``sqlite`` or ``mariadb`` (MySQL URLs count as mariadb)."""
    name = parse_url(url).get_backend_name()
    if name == "sqlite":
        return "sqlite"
    if name in ("mysql", "mariadb"):
        return "mariadb"
    raise ValueError(f"{name}: scenarios run on sqlite and mariadb only")
