"""Story: the FastAPI tutorial layout (`Base` in app/database.py, the classes in app/models.py).

Discovery finds `app.database:Base`, which defines no table; `bootstrap --models app.models:Base`
works, and must be remembered (pyproject.toml) so that the next plain bootstrap keeps env.py on
the same models instead of flipping it back and exiting 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import cli, table_digest, tree_digest
from sqlalchemy import create_engine, text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

DATABASE_PY = '''\
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
'''

MODELS_PY = '''\
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .database import Base


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True, index=True)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
'''

PYPROJECT = '''\
[project]
name = "fastapi-app"  # the user's own settings stay

[tool.alembic_repair]
ignore_tables = []
'''


def tutorial(root: Path, pyproject: str | None = None) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "database.py").write_text(DATABASE_PY)
    (root / "app" / "models.py").write_text(MODELS_PY)
    if pyproject is not None:
        (root / "pyproject.toml").write_text(pyproject)
    return root


def remembered(root: Path) -> dict[str, object]:
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["alembic_repair"]


def test_models_given_once_are_remembered(tmp_path: Path, backend) -> None:
    root = tutorial(tmp_path / "proj")
    plain = cli("bootstrap", cwd=root, url=backend.url)
    assert plain.code == 2, plain.output  # discovery finds a Base without tables
    assert "app.models:Base" in plain.output

    given = cli("bootstrap", "--models", "app.models:Base", cwd=root, url=backend.url)
    assert given.code == 0, given.output
    assert remembered(root) == {"models": "app.models:Base"}
    assert "from app.models import Base" in (root / "alembic" / "env.py").read_text()
    engine = create_engine(backend.url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'a@example.org')"))
            conn.execute(text("INSERT INTO items (id, title, owner_id) VALUES (1, 'x', 1)"))
    finally:
        engine.dispose()

    files, rows = tree_digest(root), table_digest(backend.url)
    for _ in range(2):  # the next plain runs change nothing: env.py stays on app.models
        again = cli("bootstrap", cwd=root, url=backend.url)
        assert again.code == 0, again.output
        assert "nothing to do" in again.output
        assert tree_digest(root) == files and table_digest(backend.url) == rows
    assert cli("doctor", cwd=root, url=backend.url).code == 0


def test_existing_pyproject_keeps_its_content(tmp_path: Path, sqlite_url: str) -> None:
    root = tutorial(tmp_path / "proj", PYPROJECT)
    given = cli("bootstrap", "--models", "app.models:Base", cwd=root, url=sqlite_url)
    assert given.code == 0, given.output
    written = (root / "pyproject.toml").read_text()
    assert written.startswith(PYPROJECT.split("ignore_tables")[0])
    assert '# the user\'s own settings stay' in written and "ignore_tables = []" in written
    assert remembered(root) == {"models": "app.models:Base", "ignore_tables": []}
    assert "pyproject.toml" in given.output
    # a different --models later replaces the remembered one (the key is not added twice)
    (root / "app" / "other.py").write_text("from .models import Base\n")
    other = cli("bootstrap", "--models", "app.other:Base", cwd=root, url=sqlite_url)
    assert other.code == 0, other.output
    assert remembered(root)["models"] == "app.other:Base"
    assert (root / "pyproject.toml").read_text().count("models =") == 1


def test_models_that_fail_are_not_remembered(tmp_path: Path, sqlite_url: str) -> None:
    root = tutorial(tmp_path / "proj", PYPROJECT)
    wrong = cli("bootstrap", "--models", "app.database:Base", cwd=root, url=sqlite_url)
    assert wrong.code == 2, wrong.output
    assert (root / "pyproject.toml").read_text() == PYPROJECT


TWO_ROOTS = '''\
revision = "{rev}"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def test_a_bootstrap_that_refuses_remembers_nothing(tmp_path: Path, sqlite_url: str) -> None:
    root = tutorial(tmp_path / "proj", PYPROJECT)
    versions = root / "alembic" / "versions"
    versions.mkdir(parents=True)
    for rev in ("aaa111", "bbb222"):  # two heads: bootstrap refuses after loading the models
        (versions / f"{rev}.py").write_text(TWO_ROOTS.format(rev=rev))
    refused = cli("bootstrap", "--models", "app.models:Base", cwd=root, url=sqlite_url)
    assert refused.code != 0 and "heads" in refused.output, refused.output
    assert (root / "pyproject.toml").read_text() == PYPROJECT


def test_crlf_pyproject_stays_crlf(tmp_path: Path, sqlite_url: str) -> None:
    root = tutorial(tmp_path / "proj")
    (root / "pyproject.toml").write_bytes(PYPROJECT.replace("\n", "\r\n").encode())
    given = cli("bootstrap", "--models", "app.models:Base", cwd=root, url=sqlite_url)
    assert given.code == 0, given.output
    data = (root / "pyproject.toml").read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") and b"models = " in data
    assert remembered(root) == {"models": "app.models:Base", "ignore_tables": []}


def test_one_toml_reader() -> None:
    import alembic_repair.repair.bootstrap as bootstrap

    assert "tomli" not in Path(bootstrap.__file__).read_text()
