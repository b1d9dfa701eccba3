"""The FastAPI + MySQL example (examples/fastapi_mysql) end to end, on SQLite and MariaDB.

Every test works on a copy of the example in ``tmp_path`` (the repository is never touched),
runs the real CLI in a subprocess as ``backend.sh`` would, and drives the real app through
FastAPI's TestClient, importing ``server.main`` from the copy.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers import Run, cli, columns, table_digest, tree_digest
from sqlalchemy import create_engine, inspect, text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:  # conftest is not imported at runtime (pytest owns that module)
    from conftest import Backend

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_mysql"
COPY_IGNORE = shutil.ignore_patterns(
    "alembic", "alembic.ini", "app.db", "__pycache__", ".mypy_cache"
)

# The columns the example's tables have before the model change of the rebuild test.
AUTHOR_COLUMNS = ("id", "name", "email")
ARTICLE_COLUMNS = ("id", "title", "body", "author_id", "created_at")

# The model change of the rebuild test: a nullable column on Article (models.py), and the
# matching field in the API schemas (main.py), so the API can write and read it.
BODY_LINE = "    body: Mapped[str | None] = mapped_column(Text)\n"
SUMMARY_LINE = "    summary: Mapped[str | None] = mapped_column(String(300))\n"
CREATE_SCHEMA = "    body: str | None = None\n    author_id: int\n"
READ_SCHEMA = "    body: str | None\n    author_id: int\n    created_at: datetime\n"
SUMMARY_FIELD = "    summary: str | None = Field(default=None, max_length=300)\n"
SUMMARY_READ = "    summary: str | None\n"


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the example, without any migration setup, database or cache."""
    dest = tmp_path / "project"
    shutil.copytree(EXAMPLE, dest, ignore=COPY_IGNORE)
    assert not (dest / "alembic").exists() and not (dest / "alembic.ini").exists()
    return dest


def _purge_server_modules() -> None:
    for name in [n for n in sys.modules if n == "server" or n.startswith("server.")]:
        del sys.modules[name]


@contextmanager
def example_app(project: Path, url: str) -> Iterator[TestClient]:
    """A TestClient on ``server.main.create_app(url)`` imported from `project`, leaving no
    ``server`` module or sys.path entry behind (each test's copy has its own models)."""
    _purge_server_modules()
    sys.path.insert(0, str(project))
    importlib.invalidate_caches()
    try:
        main = importlib.import_module("server.main")
        assert main.__file__ is not None
        assert Path(main.__file__).resolve().is_relative_to(project.resolve())
        with TestClient(main.create_app(url)) as client:  # the lifespan disposes the engine
            yield client
    finally:
        sys.path.remove(str(project))
        _purge_server_modules()


def bootstrap(project: Path, url: str) -> Run:
    run = cli("bootstrap", cwd=project, url=url)
    assert run.code == 0, run.output
    return run


def db_versions(url: str) -> list[str]:
    """The rows of ``alembic_version``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def select_rows(url: str, table: str, cols: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """`cols` of every row of `table`, in id order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            quote = conn.dialect.identifier_preparer.quote
            query = f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table)} ORDER BY id"
            return [tuple(row) for row in conn.execute(text(query))]
    finally:
        engine.dispose()


def inspect_tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names()
    finally:
        engine.dispose()


def revision_files(project: Path) -> list[Path]:
    return sorted((project / "alembic" / "versions").glob("*.py"))


def delete_migration_setup(project: Path) -> None:
    """What a container rebuild without the alembic/ volume does: the history is gone."""
    shutil.rmtree(project / "alembic")
    (project / "alembic.ini").unlink()


def replace_once(path: Path, old: str, new: str) -> None:
    source = path.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{path}: expected exactly one {old!r}"
    path.write_text(source.replace(old, new), encoding="utf-8")


def post(client: TestClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def seed(client: TestClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two authors and three articles, created through the API."""
    authors = [
        post(client, "/authors", {"name": "Ada", "email": "ada@example.org"}),
        post(client, "/authors", {"name": "Grace Hopper – ü", "email": None}),
    ]
    articles = [
        post(client, "/articles", {"title": "Engines", "body": "Notes on the analytical engine",
                                   "author_id": authors[0]["id"]}),
        post(client, "/articles", {"title": "Bugs", "body": None,
                                   "author_id": authors[1]["id"]}),
        post(client, "/articles", {"title": "Compilers", "body": "A-0 and beyond",
                                   "author_id": authors[1]["id"]}),
    ]
    return authors, articles


def git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
         *args],
        cwd=project, capture_output=True, text=True, check=True, timeout=60,
    )
    return done.stdout


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


def test_bootstrap_then_api_works(project: Path, backend: Backend) -> None:
    run = bootstrap(project, backend.url)

    versions = db_versions(backend.url)
    assert len(versions) == 1
    (rev,) = versions
    assert re.search(rf"wrote revision {rev} \(alembic/versions/{rev}_\w+\.py\)", run.output), \
        run.output
    assert f"upgraded an empty database to {rev}" in run.output, run.output
    assert [p.name.split("_", 1)[0] for p in revision_files(project)] == [rev]
    assert {"author", "article"} <= set(inspect_tables(backend.url))

    with example_app(project, backend.url) as client:
        authors, articles = seed(client)
        assert len({a["id"] for a in authors}) == 2
        assert len({a["id"] for a in articles}) == 3
        assert all(a["created_at"] for a in articles)  # the server default was applied

        listed_authors = client.get("/authors")
        assert listed_authors.status_code == 200
        assert listed_authors.json() == authors

        listed_articles = client.get("/articles")
        assert listed_articles.status_code == 200
        assert [a["title"] for a in listed_articles.json()] == ["Engines", "Bugs", "Compilers"]
        assert [a["author_id"] for a in listed_articles.json()] == [
            authors[0]["id"], authors[1]["id"], authors[1]["id"]
        ]

        target = articles[1]["id"]
        patched = client.patch(f"/articles/{target}", json={"title": "The first bug"})
        assert patched.status_code == 200, patched.text
        assert patched.json()["title"] == "The first bug"
        assert patched.json()["author_id"] == authors[1]["id"]  # omitted: unchanged
        reread = client.get(f"/articles/{target}")
        assert reread.status_code == 200
        assert reread.json()["title"] == "The first bug"

        missing = max(a["id"] for a in articles) + 1000
        assert client.get(f"/articles/{missing}").status_code == 404
        assert client.get(f"/authors/{missing}").status_code == 404

    # The rows really are in the database the CLI migrated, not somewhere else.
    assert select_rows(backend.url, "article", ("id", "title"))[1] == (target, "The first bug")


def test_rebuild_keeps_every_row(project: Path, backend: Backend) -> None:
    bootstrap(project, backend.url)
    (first_rev,) = db_versions(backend.url)
    with example_app(project, backend.url) as client:
        seed(client)
    before = table_digest(backend.url)
    authors_before = select_rows(backend.url, "author", AUTHOR_COLUMNS)
    articles_before = select_rows(backend.url, "article", ARTICLE_COLUMNS)
    assert (len(authors_before), len(articles_before)) == (2, 3)
    assert before["author"][0] == 2 and before["article"][0] == 3

    # The container is rebuilt: alembic/ and alembic.ini are gone, and the models moved on.
    delete_migration_setup(project)
    replace_once(project / "server" / "models.py", BODY_LINE, BODY_LINE + SUMMARY_LINE)
    main_py = project / "server" / "main.py"
    replace_once(main_py, CREATE_SCHEMA, CREATE_SCHEMA + SUMMARY_FIELD)
    replace_once(main_py, READ_SCHEMA, READ_SCHEMA + SUMMARY_READ)

    run = bootstrap(project, backend.url)
    assert "adopted the existing database" in run.output, run.output
    assert "baseline" in run.output, run.output
    assert "summary" not in columns(backend.url, "author")
    engine = create_engine(backend.url)
    try:
        with engine.connect() as conn:
            summary = {c["name"]: c for c in inspect(conn).get_columns("article")}["summary"]
    finally:
        engine.dispose()
    assert summary["nullable"] is True
    assert getattr(summary["type"], "length", None) == 300

    # A baseline of the live schema plus the model change, and the database at the latter.
    files = revision_files(project)
    assert len(files) == 2, [p.name for p in files]
    assert any("baseline" in p.name for p in files)
    (new_rev,) = db_versions(backend.url)
    assert new_rev != first_rev
    assert re.search(rf"upgraded \w+ to {new_rev}", run.output), run.output

    # Every row is still there, with the same values in the columns it had.
    after = table_digest(backend.url)
    assert {t: n for t, (n, _) in after.items() if t != "alembic_version"} == {
        t: n for t, (n, _) in before.items() if t != "alembic_version"
    }
    assert after["author"] == before["author"]  # author was not changed at all
    assert select_rows(backend.url, "author", AUTHOR_COLUMNS) == authors_before
    assert select_rows(backend.url, "article", ARTICLE_COLUMNS) == articles_before
    assert [r[0] for r in select_rows(backend.url, "article", ("summary",))] == [None] * 3

    # The app works on the rebuilt database, new column included.
    with example_app(project, backend.url) as client:
        author_id = authors_before[0][0]
        created = post(client, "/articles", {"title": "Rebuilt", "body": "after the rebuild",
                                             "summary": "short", "author_id": author_id})
        assert created["summary"] == "short"
        reread = client.get(f"/articles/{created['id']}")
        assert reread.status_code == 200
        assert reread.json()["summary"] == "short"
        assert reread.json()["title"] == "Rebuilt"
        listed = client.get("/articles").json()
        assert [a["id"] for a in listed] == [r[0] for r in articles_before] + [created["id"]]
        assert [a["summary"] for a in listed] == [None, None, None, "short"]

    # A third start: nothing left to do, no file and no row touched.
    files_before, rows_before = tree_digest(project), table_digest(backend.url)
    run = bootstrap(project, backend.url)
    assert "nothing to do" in run.output, run.output
    assert tree_digest(project) == files_before
    assert table_digest(backend.url) == rows_before
    assert db_versions(backend.url) == [new_rev]


def test_bootstrap_twice_changes_nothing(project: Path, backend: Backend) -> None:
    bootstrap(project, backend.url)
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first bootstrap")
    committed = git(project, "ls-files").splitlines()
    assert "alembic.ini" in committed and "alembic/env.py" in committed
    assert any(f.startswith("alembic/versions/") and f.endswith(".py") for f in committed)

    with example_app(project, backend.url) as client:
        seed(client)
    assert git(project, "status", "--porcelain") == ""  # nothing the app wrote is tracked

    files_before, rows_before = tree_digest(project), table_digest(backend.url)
    assert rows_before["author"][0] == 2 and rows_before["article"][0] == 3

    run = bootstrap(project, backend.url)
    assert "nothing to do" in run.output, run.output
    assert tree_digest(project) == files_before
    assert table_digest(backend.url) == rows_before
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""


def test_rebuild_without_model_change_recreates_same_revision(
    project: Path, backend: Backend
) -> None:
    bootstrap(project, backend.url)
    (rev,) = db_versions(backend.url)
    with example_app(project, backend.url) as client:
        seed(client)
    rows_before = table_digest(backend.url)

    delete_migration_setup(project)
    assert not (project / "alembic").exists()
    run = bootstrap(project, backend.url)

    assert f"recreated revision {rev}" in run.output, run.output
    files = revision_files(project)
    assert [p.name.split("_", 1)[0] for p in files] == [rev], [p.name for p in files]
    assert re.search(rf"^revision(: str)? = ['\"]{rev}['\"]$", files[0].read_text(), re.M)
    assert db_versions(backend.url) == [rev]
    assert table_digest(backend.url) == rows_before  # alembic_version included


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_scaffolded_files_are_as_readable_as_revision_files(
    project: Path, backend: Backend
) -> None:
    """backend.sh runs as root in the container, on the bind-mounted working tree: the files
    bootstrap writes there must follow the umask (like Alembic's revision files do), or the
    host user cannot read, edit or `git add` alembic.ini and alembic/env.py."""
    bootstrap(project, backend.url)
    expected = 0o666 & ~_umask()
    written = [project / "alembic.ini", project / "alembic" / "env.py",
               project / "alembic" / "script.py.mako", *revision_files(project)]
    modes = {str(p.relative_to(project)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert modes == dict.fromkeys(modes, oct(expected)), modes


def _flatten(value: Any) -> list[str]:
    """The shell commands of a devcontainer lifecycle hook (a string, a list or an object)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [" ".join(str(v) for v in value)]
    if isinstance(value, dict):
        return [cmd for v in value.values() for cmd in _flatten(v)]
    return []


def test_backend_sh_and_devcontainer_call_bootstrap(project: Path) -> None:
    script = (project / "backend.sh").read_text(encoding="utf-8")
    commands = [line.strip() for line in script.splitlines()
                if line.strip() and not line.strip().startswith("#")]
    # A failed bootstrap must stop the container instead of serving on a stale schema.
    assert any(re.fullmatch(r"set -[a-z]*e[a-z]*( .*)?", c) for c in commands), commands
    bootstrap_at = [i for i, c in enumerate(commands) if c.startswith("alembic-repair bootstrap")]
    uvicorn_at = [i for i, c in enumerate(commands) if re.search(r"\buvicorn\b", c)]
    assert bootstrap_at and uvicorn_at, commands
    assert bootstrap_at[0] < uvicorn_at[0]

    raw = (project / ".devcontainer" / "devcontainer.json").read_text(encoding="utf-8")
    config = json.loads(re.sub(r"(?m)^\s*//.*$", "", raw))  # JSONC line comments
    hooks = _flatten(config.get("postCreateCommand"))
    assert any("alembic-repair bootstrap" in cmd for cmd in hooks), hooks


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether a .dockerignore excludes `path` (last matching pattern wins; a pattern that
    matches a parent folder matches what is inside it)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(p, glob) for p in prefixes):
            ignored = not negated
    return ignored


def test_backend_image_has_mariadb_client_and_alembic_repair_from_the_checkout() -> None:
    """The Dev Container's image gets the fast backup path (the MariaDB client) and installs
    alembic-repair from this repository (a wheel built in the image), never by its name from a
    package index it is not on; every file the build copies is in the build context."""
    compose = yaml.safe_load((EXAMPLE / "docker-compose.yml").read_text(encoding="utf-8"))
    build = compose["services"]["backend"]["build"]
    context = (EXAMPLE / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert dockerfile.resolve() == (EXAMPLE / "Dockerfile").resolve()
    steps = _dockerfile_instructions(dockerfile.read_text(encoding="utf-8"))
    runs = [args for keyword, args in steps if keyword == "RUN"]

    apt = [r for r in runs if re.search(r"\bapt-get install\b", r)]
    assert any("mariadb-client" in r.split() for r in apt), runs

    pip_args = [word for r in runs for cmd in re.split(r"&&|;", r)
                if re.search(r"\bpip install\b", cmd) for word in cmd.split()]
    by_name = [w for w in pip_args
               if re.fullmatch(r"[\"']?alembic[-_.]repair([\[<>=~!;].*)?", w, re.I)]
    assert not by_name, f"alembic-repair installed from an index: {by_name}"
    assert any(re.fullmatch(r"/\S+/alembic_repair-\S*\.whl", w) for w in pip_args), pip_args

    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    patterns = [line.strip() for line in ignore_file.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [src for keyword, args in steps if keyword == "COPY" and "--from=" not in args
              for src in args.split()[:-1]]
    project = tomllib.loads((context / "pyproject.toml").read_text(encoding="utf-8"))
    assert {"pyproject.toml", project["project"]["readme"], "alembic_repair"} <= set(copied)
    for src in copied:
        assert (context / src).exists(), src
        assert not _ignored(patterns, src), f"{src} is excluded from the build context"
    assert not _ignored(patterns, "alembic_repair/templates/env.py.tmpl")
    assert _ignored(patterns, ".git") and _ignored(patterns, ".venv/bin/python")


READY_TESTS = ("single_head", "builds", "doctor", "lint", "data_survives", "up_down")


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def ready_url(request: pytest.FixtureRequest) -> list[str]:
    """No option (SQLite scratch files), or the suite's MariaDB server for scratch schemas."""
    if request.param == "sqlite":
        return []
    return [f"--alembic-repair-url={request.getfixturevalue('mariadb_server').root_url}"]


def test_the_example_enables_the_pytest_plugin(tmp_path: Path, ready_url: list[str]) -> None:
    """`python -m pytest` in a copy of the example, under the example's own pytest settings
    (not this repository's): its tests and the ready tests run and pass; data_survives is
    skipped, saying why (the example's one revision: released is base, no rows to carry)."""
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(
        "app.db", "__pycache__", ".mypy_cache", ".pytest_cache"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "PYTEST_ADDOPTS") and not k.startswith("MYSQL_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c",
         str(copy / "pyproject.toml"), "--rootdir", str(copy), "-rA", *ready_url],
        cwd=copy, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("PASSED ")}
    assert {f"alembic_repair::{name}" for name in READY_TESTS
            if name != "data_survives"} <= passed, done.stdout[-3000:]
    assert "alembic_repair::data_survives" not in passed
    assert "SKIPPED [1] alembic.ini:1: the released revision is base" in done.stdout, done.stdout
    assert any(name.startswith("tests/test_db.py::") for name in passed), passed
    assert not (copy / "app.db").exists()  # scratch databases only, never the app's own
