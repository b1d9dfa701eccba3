"""autogenerate() and upgrade(): Alembic's commands with our guarantees."""

from __future__ import annotations

import textwrap
from pathlib import Path

from helpers import MODELS_V1, columns, execute, table_digest, tree_digest, write_project

from alembic_repair import Project, autogenerate, bootstrap, upgrade


def test_autogenerate_writes_nothing_when_models_equal_the_database(tmp_path: Path,
                                                                     backend) -> None:
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=backend.url))
    files = tree_digest(root)
    assert autogenerate(Project.discover(root, url=backend.url), "nothing") is None
    assert tree_digest(root) == files


def test_autogenerate_then_upgrade(tmp_path: Path, backend) -> None:
    root = write_project(tmp_path / "proj")
    first = bootstrap(Project.discover(root, url=backend.url))
    execute(backend.url, "INSERT INTO author (id, name) VALUES (1, 'Ada')")
    models = MODELS_V1.replace("class Post(Base):", textwrap.dedent('''\
        class Tag(Base):
            __tablename__ = "tag"
            id: Mapped[int] = mapped_column(primary_key=True)
            label: Mapped[str] = mapped_column(String(30), unique=True)


        class Post(Base):'''))
    (root / "app" / "models.py").write_text(textwrap.dedent(models))
    project = Project.discover(root, url=backend.url)
    path = autogenerate(project, "add tag")
    assert path is not None and path.name.endswith("_add_tag.py")
    assert "op.create_table('tag'" in path.read_text()
    assert f"down_revision: Union[str, Sequence[str], None] = {first.head[0]!r}" in \
        path.read_text()
    heads = upgrade(project)
    assert heads == (path.name.split("_")[0],)
    assert columns(backend.url, "tag") == ["id", "label"]
    assert table_digest(backend.url)["author"][0] == 1


def test_autogenerate_never_writes_a_drop(tmp_path: Path, sqlite_url: str) -> None:
    root = write_project(tmp_path / "proj")
    bootstrap(Project.discover(root, url=sqlite_url))
    models = MODELS_V1.replace("    body: Mapped[str | None] = mapped_column(Text)\n", "")
    (root / "app" / "models.py").write_text(textwrap.dedent(models))
    files = {k: v for k, v in tree_digest(root).items() if k != "app/models.py"}
    assert autogenerate(Project.discover(root, url=sqlite_url), "drop body") is None
    assert {k: v for k, v in tree_digest(root).items() if k != "app/models.py"} == files
    assert "body" in columns(sqlite_url, "post")


def test_every_public_name_is_what_it_says_even_after_every_module_is_imported() -> None:
    """A submodule named like a public function (``reset.py`` for ``reset``) replaces the
    function on the package as soon as anything imports it; the public names must survive."""
    import importlib
    import inspect as pyinspect
    import pkgutil

    import alembic_repair

    for module in pkgutil.walk_packages(alembic_repair.__path__, "alembic_repair."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for name in alembic_repair.__all__:
        value = getattr(alembic_repair, name)
        assert not pyinspect.ismodule(value), f"alembic_repair.{name} is the module {value}"
        assert getattr(value, "__name__", name) == name, name
