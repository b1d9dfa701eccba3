"""Plain Alembic never sees what the tool owns or was told to keep (env_filter, AR113, AR511).

Each flow runs our CLI, then the user's own PLAIN Alembic commands as subprocesses
(``python -m alembic -c alembic.ini ...``), with an env.py a backend.sh would write: no filter,
``target_metadata = Base.metadata``, ``context.configure(connection=..., target_metadata=...)``.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import (
    MODELS_V1,
    Run,
    cli,
    execute,
    table_digest,
    table_names,
    tree_digest,
    write_project,
)
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Index, Integer, MetaData, Table, create_engine, text

from alembic_repair import Project
from alembic_repair.engine.env_filter import kept_in, read_filter, render_block
from alembic_repair.engine.env_filter_install import install, protect, record_ignore_tables
from alembic_repair.engine.state.schema import is_user_table

MODELS_AUTHOR_ONLY = MODELS_V1[:MODELS_V1.index("class Post(Base):")]

ENV_PY = '''\
import os

from sqlalchemy import engine_from_config, pool

from alembic import context
from app.models import Base

config = context.config
config.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"].replace("%", "%%"))

target_metadata = Base.metadata
{extra}

def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connectable = engine_from_config(config.get_section(config.config_ini_section, {{}}),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,  # our models
            render_as_batch=connection.dialect.name == "sqlite",{online_extra}
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

USER_FILTER = '''

def skip_scratch(obj, name, type_, reflected, compare_to):
    """The user's own rule: scratch_* tables are nobody's business."""
    return not (type_ == "table" and name.startswith("scratch_"))
'''


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _user_project(root: Path, *, user_filter: bool = False) -> Path:
    """What a backend.sh leaves: alembic.ini, its own env.py (no filter), the stock mako."""
    write_project(root)
    (root / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/alembic\n"
                                      "prepend_sys_path = %(here)s\npath_separator = os\n")
    scripts = root / "alembic"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(ENV_PY.format(
        extra=USER_FILTER if user_filter else "",
        online_extra="\n            include_object=skip_scratch," if user_filter else ""))
    import alembic

    stock = Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako"
    shutil.copy(stock, scripts / "script.py.mako")
    return root


def alembic(*args: str, cwd: Path, url: str) -> Run:
    """The user's plain Alembic, as their shell runs it (no alembic-repair involved)."""
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "alembic", "-c", "alembic.ini", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr)


def _ok(run: Run) -> Run:
    assert run.code == 0, run.output
    return run


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(table)
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {quoted}")).scalar_one())
    finally:
        engine.dispose()


def _started(root: Path, url: str, posts: int) -> None:
    """The user's first revision, applied, with rows."""
    _ok(alembic("revision", "--autogenerate", "-m", "init", cwd=root, url=url))
    _ok(alembic("upgrade", "head", cwd=root, url=url))
    execute(url, "INSERT INTO author (id, name) VALUES (1, 'ann')",
         *(f"INSERT INTO post (id, title, author_id) VALUES ({i}, 't{i}', 1)"
           for i in range(1, posts + 1)))


def _upgrade_ops(path: Path) -> list[str]:
    """The statements of a revision's upgrade() other than ``pass`` and its docstring."""
    tree = ast.parse(path.read_text())
    upgrade = next(n for n in tree.body if isinstance(n, ast.FunctionDef)
                   and n.name == "upgrade")
    return [ast.unparse(s) for s in upgrade.body if not isinstance(s, ast.Pass) and not (
        isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]


def _new_revision(root: Path, before: set[Path]) -> Path:
    (path,) = set((root / "alembic" / "versions").glob("*.py")) - before
    return path


def _plain_autogenerate_is_empty(root: Path, url: str) -> None:
    """The user's own `revision --autogenerate` writes nothing, upgrade runs, check is clean."""
    before = set((root / "alembic" / "versions").glob("*.py"))
    _ok(alembic("revision", "--autogenerate", "-m", "x", cwd=root, url=url))
    assert _upgrade_ops(_new_revision(root, before)) == []
    _ok(alembic("upgrade", "head", cwd=root, url=url))
    check = alembic("check", cwd=root, url=url)
    assert check.code == 0 and "No new upgrade operations detected" in check.output, check.output


def _trash_table(url: str, original: str) -> str:
    (name,) = [t for t in table_names(url) if t.startswith("_ar_trash_2")
               and t.endswith(f"_{original}")]
    return name


# -- the flows ------------------------------------------------------------------------------------


def test_trash_drop_then_plain_autogenerate_keeps_the_trash(tmp_path: Path, backend) -> None:
    root = _user_project(tmp_path / "proj")
    _started(root, backend.url, posts=150)
    (root / "app" / "models.py").write_text(textwrap.dedent(MODELS_AUTHOR_ONLY))
    original = (root / "alembic" / "env.py").read_text()

    dropped = cli("trash", "drop", "post", "--yes", cwd=root, url=backend.url)
    assert dropped.code == 0, dropped.output
    assert "no longer sees the tool's _ar_* tables" in dropped.stdout
    kept = list((root / ".alembic_repair" / "backups").glob("*-env-filter/project-files/"
                                                            "alembic/env.py"))
    assert [k.read_text() for k in kept] == [original]  # the original is in the backup

    _plain_autogenerate_is_empty(root, backend.url)
    assert _count(backend.url, _trash_table(backend.url, "post")) == 150
    listing = cli("trash", "list", cwd=root, url=backend.url)
    assert listing.code == 0 and "table post, 150 rows" in listing.stdout, listing.output


def test_drop_revision_then_plain_upgrade_and_autogenerate(tmp_path: Path, backend) -> None:
    root = _user_project(tmp_path / "proj")
    _started(root, backend.url, posts=40)
    (root / "app" / "models.py").write_text(textwrap.dedent(MODELS_AUTHOR_ONLY))

    wrote = cli("drop", "post", "--yes", cwd=root, url=backend.url)
    assert wrote.code == 0, wrote.output
    assert "no longer sees the tool's _ar_* tables" in wrote.stdout
    _ok(alembic("upgrade", "head", cwd=root, url=backend.url))  # the soft drop runs
    _plain_autogenerate_is_empty(root, backend.url)
    assert _count(backend.url, _trash_table(backend.url, "post")) == 40
    assert "table post, 40 rows" in cli("trash", "list", cwd=root, url=backend.url).stdout


def test_unowned_table_is_kept_out_of_autogenerate_by_fix(tmp_path: Path, backend) -> None:
    root = _user_project(tmp_path / "proj")
    _started(root, backend.url, posts=3)
    # a teammate's revision that never reached this folder created it
    execute(backend.url, "CREATE TABLE legacy_audit (id INTEGER PRIMARY KEY, note VARCHAR(40))",
         *(f"INSERT INTO legacy_audit (id, note) VALUES ({i}, 'n{i}')" for i in range(1, 26)))
    doctor = cli("doctor", "--format", "json", cwd=root, url=backend.url)
    assert '"AR406"' in doctor.stdout, doctor.output

    fixed = cli("fix", "--yes", cwd=root, url=backend.url)
    assert fixed.code == 0, fixed.output
    assert "legacy_audit" in (root / "alembic" / "env.py").read_text()
    assert 'ignore_tables = ["legacy_audit"]' in (root / "pyproject.toml").read_text()
    assert "healthy" in fixed.stdout and "AR406" not in fixed.stdout.split("plan")[-1]

    _plain_autogenerate_is_empty(root, backend.url)
    assert _count(backend.url, "legacy_audit") == 25
    assert _count(backend.url, "post") == 3


def test_user_filter_keeps_working_after_the_install(tmp_path: Path, backend) -> None:
    root = _user_project(tmp_path / "proj", user_filter=True)
    _started(root, backend.url, posts=5)
    execute(backend.url, "CREATE TABLE scratch_notes (id INTEGER PRIMARY KEY)",
         "INSERT INTO scratch_notes (id) VALUES (1)")
    (root / "app" / "models.py").write_text(textwrap.dedent(MODELS_AUTHOR_ONLY))

    assert cli("trash", "drop", "post", "--yes", cwd=root, url=backend.url).code == 0
    env_py = (root / "alembic" / "env.py").read_text()
    assert "include_object=_ar_include_object(skip_scratch)," in env_py
    assert "target_metadata=target_metadata,  # our models" in env_py  # comments kept
    _plain_autogenerate_is_empty(root, backend.url)  # neither the trash nor scratch_notes
    assert _count(backend.url, "scratch_notes") == 1
    assert _count(backend.url, _trash_table(backend.url, "post")) == 5

    digest = hashlib.sha256((root / "alembic" / "env.py").read_bytes()).hexdigest()
    assert protect(Project.discover(root, url=backend.url)) is None  # installing twice
    assert cli("bootstrap", cwd=root, url=backend.url).code == 0
    assert hashlib.sha256((root / "alembic" / "env.py").read_bytes()).hexdigest() == digest


def test_pending_drop_of_the_trash_is_found_and_taken_out(tmp_path: Path, backend) -> None:
    root = _user_project(tmp_path / "proj")
    _started(root, backend.url, posts=30)
    (root / "app" / "models.py").write_text(textwrap.dedent(MODELS_AUTHOR_ONLY))
    env_py = root / "alembic" / "env.py"
    original = env_py.read_text()
    assert cli("drop", "post", "--yes", cwd=root, url=backend.url).code == 0
    _ok(alembic("upgrade", "head", cwd=root, url=backend.url))
    env_py.write_text(original)  # e.g. backend.sh wrote its env.py again
    before = set((root / "alembic" / "versions").glob("*.py"))
    _ok(alembic("revision", "--autogenerate", "-m", "oops", cwd=root, url=backend.url))
    oops = _new_revision(root, before)
    assert any("_ar_trash_" in s and "drop_table" in s for s in _upgrade_ops(oops))

    doctor = cli("doctor", cwd=root, url=backend.url)
    assert "AR511" in doctor.stdout and "AR113" in doctor.stdout, doctor.output
    assert "AR113 error" in doctor.stdout  # a pending revision would drop them
    fixed = cli("fix", "--yes", cwd=root, url=backend.url)
    assert fixed.code == 0, fixed.output
    assert f"rewrote alembic/versions/{oops.name}: removed what it did to _ar_trash_" in \
        fixed.stdout
    # the revision is now empty, so fix moved it out (AR207: no database applied it)
    assert not [s for p in (root / "alembic" / "versions").glob("*.py")
                for s in _upgrade_ops(p) if "_ar_trash_" in s and "drop_" in s]
    _ok(alembic("upgrade", "head", cwd=root, url=backend.url))
    check = alembic("check", cwd=root, url=backend.url)
    assert check.code == 0, check.output
    assert _count(backend.url, _trash_table(backend.url, "post")) == 30


# -- the filter block on its own (no database, no subprocess) --------------------------------------


def test_kwargs_call_is_refused_with_what_to_do(tmp_path: Path) -> None:
    source = "from alembic import context\n\ncontext.configure(**options)\n"
    with pytest.raises(ValueError, match=r"line 3: context.configure\(...\) passes \*\*kwargs"):
        install(source)
    status = read_filter(source)
    assert status is not None and status.unsafe == (3,)


def test_reinstall_changes_only_the_kept_set() -> None:
    source = ENV_PY.format(extra="", online_extra="")
    once = install(source, ["a"])
    assert install(once, ["a"]) == once
    again = install(once, ["a", "b"])
    changed = [(x, y) for x, y in zip(once.splitlines(), again.splitlines(), strict=True)
               if x != y]
    assert changed == [("_AR_KEPT_TABLES = frozenset({'a'})",
                        "_AR_KEPT_TABLES = frozenset({'a', 'b'})")]


def test_ignore_tables_is_added_without_losing_the_layout(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"  # ours\n\n[tool.alembic_repair]\nmodels = "a:B"\n')
    path.write_text(record_ignore_tables(path, ["t1"]) or "")
    assert path.read_text() == ('[project]\nname = "x"  # ours\n\n[tool.alembic_repair]\n'
                                'ignore_tables = ["t1"]\nmodels = "a:B"\n')
    path.write_text(record_ignore_tables(path, ["t2"]) or "")
    assert 'ignore_tables = ["t1", "t2"]\n' in path.read_text()
    assert record_ignore_tables(path, ["t1"]) is None  # already there
    path.write_text('[tool.alembic_repair]\nignore_tables = [\n    "t1",  # why\n]\n')
    assert record_ignore_tables(path, ["t2"]) == (
        '[tool.alembic_repair]\nignore_tables = [\n    "t1",  # why\n    "t2",\n]\n')
    path.write_text('[tool]\nalembic_repair.models = "a:B"\n')  # dotted keys: left alone
    assert record_ignore_tables(path, ["t2"]) is None


NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(kept=st.sets(NAMES, max_size=6),
       others=st.sets(NAMES | NAMES.map(lambda n: "_ar_" + n), max_size=6))
def test_filter_block_hides_exactly_the_kept_names(kept: set[str], others: set[str]) -> None:
    source = install(ENV_PY.format(extra="", online_extra=""), kept)
    compile(source, "env.py", "exec")
    assert kept_in(source) == kept
    namespace: dict[str, object] = {}
    exec(render_block(kept), namespace)
    hidden = namespace["_ar_hidden_table"]
    include_object = namespace["_ar_include_object"]()  # type: ignore[operator]
    include_name = namespace["_ar_include_name"]()  # type: ignore[operator]
    for name in kept | others:
        hide = name in kept or name.startswith("_ar_")
        assert hidden(name) is hide  # type: ignore[operator]
        assert hide is not is_user_table(name, kept) or name == "alembic_version"
        table = Table(name, MetaData(), Column("c", Integer))
        index = Index("ix_c", table.c.c)
        assert include_object(table, name, "table", True, None) is not hide  # type: ignore
        assert include_object(table.c.c, "c", "column", True, None) is not hide  # type: ignore
        assert include_object(index, "ix_c", "index", True, None) is not hide  # type: ignore
        assert include_name(name, "table", {}) is not hide  # type: ignore[operator]
        for type_ in ("index", "column", "unique_constraint"):
            assert include_name("x", type_, {"table_name": name}) is not hide  # type: ignore


@pytest.mark.parametrize("name", ["_ar_trash_20260101000000_post", "_ar_trash_index",
                                  "_ar_scratch", "_ar_"])
def test_the_tool_owns_every_ar_table_in_doctor_and_in_the_filter(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(render_block(), namespace)
    assert namespace["_ar_hidden_table"](name) is True  # type: ignore[operator]
    assert is_user_table(name) is False
    assert is_user_table("ar_table") is True


ALIASED = [
    ("import alembic\n", "alembic.context"),
    ("from alembic import context as ctx\n", "ctx"),
    ("import alembic.context as actx\n", "actx"),
]


@pytest.mark.parametrize(("imports", "receiver"), ALIASED)
def test_aliased_configure_calls_are_wired_too(imports: str, receiver: str) -> None:
    source = ("from alembic import context\n" + imports + "\n\ndef offline():\n"
              "    context.configure(url='x')\n\n\ndef online(c):\n"
              f"    {receiver}.configure(connection=c)\n")
    before = read_filter(source)
    assert before is not None and not before.unsafe and len(before.unwired) == 2
    after = install(source)
    assert f"{receiver}.configure(connection=c, include_name=_ar_include_name(), " \
        "include_object=_ar_include_object())" in after
    status = read_filter(after)
    assert status is not None and status.complete and status.hides(())


@pytest.mark.parametrize(("extra", "why"), [
    ("cfg = context.configure\ncfg(connection=1)\n", "line 4: context.configure is used"),
    ("from alembic import context as ctx2\nctx = ctx2\nctx.configure(connection=1)\n",
     "line 6: ctx.configure is called in a way alembic-repair cannot follow"),
    ("from alembic.context import configure\nconfigure(connection=1)\n",
     "line 4: imports configure by itself"),
])
def test_a_configure_that_cannot_be_followed_is_unsafe(extra: str, why: str) -> None:
    source = "from alembic import context\n\ncontext.configure(url='x')\n" + extra
    status = read_filter(source)
    assert status is not None and status.unsafe and why in status.why
    wired = install(source.replace(extra, "")) + extra  # the ordinary call wired: not enough
    status = read_filter(wired)
    assert status is not None and not status.complete and not status.hides(())
    with pytest.raises(ValueError, match=why.split(":")[0]):
        install(source)


REVISION = '''"""oops

Revision ID: 0ops
Revises: base1
"""
from alembic import op
import sqlalchemy as sa

revision = "0ops"
down_revision = "base1"


def upgrade():
    op.rename_table("note", "_ar_trash_20260101000000_note")  # the tool's own soft drop
    with op.batch_alter_table("_ar_trash_20260101000000_post", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_post_author_id"))

    op.drop_table("_ar_trash_20260101000000_post")
    op.drop_table("legacy")
    op.add_column("author", sa.Column("bio", sa.Text()))  # kept: a real change


def downgrade():
    op.drop_column("author", "bio")
    op.create_table("legacy", sa.Column("id", sa.Integer(), nullable=False))
    op.create_table("_ar_trash_20260101000000_post",
                    sa.Column("id", sa.Integer(), nullable=False))
    with op.batch_alter_table("_ar_trash_20260101000000_post", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_post_author_id"), ["author_id"], unique=False)

    op.rename_table("_ar_trash_20260101000000_note", "note")
'''


def test_remove_table_ops_takes_out_drops_and_their_recreation(tmp_path: Path) -> None:
    from alembic_repair.rewrite.hidden import remove_table_ops

    path = tmp_path / "0ops_oops.py"
    path.write_text(REVISION)
    done = remove_table_ops(path, {"_ar_trash_20260101000000_post", "legacy"})
    assert done.changed
    text_after = path.read_text()
    compile(text_after, str(path), "exec")
    upgrade, downgrade = text_after.split("def downgrade")
    assert "drop_table" not in upgrade and "drop_index" not in upgrade
    assert 'op.rename_table("note", "_ar_trash_20260101000000_note")' in upgrade
    assert '"bio"' in upgrade and "# kept: a real change" in upgrade
    assert "create_table" not in downgrade and "create_index" not in downgrade
    assert 'op.rename_table("_ar_trash_20260101000000_note", "note")' in downgrade
    assert not remove_table_ops(path, {"_ar_trash_20260101000000_post", "legacy"}).changed


@given(names=st.lists(NAMES, min_size=1, max_size=4, unique=True))
def test_ignore_tables_takes_any_name(names: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pyproject.toml"
        path.write_text('[tool.alembic_repair]\nmodels = "a:B"  # keep\n')
        first = record_ignore_tables(path, names[:1])
        assert first is not None
        path.write_text(first)
        rest = record_ignore_tables(path, names[1:])
        if rest is not None:
            path.write_text(rest)
        assert Project.discover(Path(folder), url="sqlite://").ignore_tables == tuple(names)
        assert 'models = "a:B"  # keep\n' in path.read_text()


def test_doctor_reports_visible_trash_and_fix_refuses_a_kwargs_env(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic_repair import bootstrap, doctor, fix, trash_drop

    root = _user_project(tmp_path / "proj")
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    bootstrap(root)
    (root / "app" / "models.py").write_text(textwrap.dedent(MODELS_AUTHOR_ONLY))
    env_py = root / "alembic" / "env.py"
    original = env_py.read_text()
    trash_drop(root, "post", yes=True)
    assert "_ar_include_object()" in env_py.read_text()

    env_py.write_text(original)
    (finding,) = [f for f in doctor(root).findings if f.code == "AR113"]
    assert finding.severity == "warning" and finding.location == "alembic/env.py"
    assert finding.detail.startswith("env.py has no autogenerate filter: plain `alembic "
                                     "revision --autogenerate` would drop _ar_trash_")

    unsafe = original.replace("context.configure(\n            connection=connection,",
                              "context.configure(\n            **dict(connection=connection),")
    env_py.write_text(unsafe)
    (finding,) = [f for f in doctor(root).findings if f.code == "AR113"]
    assert "passes **kwargs" in finding.fix and "_ar_include_object()" in finding.fix
    result = fix(root, yes=True)
    (why,) = [w for c, _, w in result.unrepairable if c == "AR113"]
    assert "passes **kwargs" in why  # (and AR405: `trash drop` runs outside the history)
    assert env_py.read_text() == unsafe  # nothing guessed


# -- env.py the filter cannot go into; env.py in another encoding; a kept table with a model ---


def test_latin1_env_py_gets_the_filter_in_its_own_encoding(tmp_path: Path,
                                                           sqlite_url: str) -> None:
    root = _user_project(tmp_path / "proj")
    _started(root, sqlite_url, posts=7)
    (root / "app" / "models.py").write_text(textwrap.dedent(MODELS_AUTHOR_ONLY))
    env_py = root / "alembic" / "env.py"
    env_py.write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9 au lait\n" + env_py.read_bytes())

    dropped = cli("trash", "drop", "post", "--yes", cwd=root, url=sqlite_url)
    assert dropped.code == 0, dropped.output
    data = env_py.read_bytes()
    assert data.startswith(b"# -*- coding: latin-1 -*-\n# caf\xe9 au lait\n")
    assert "_ar_include_object()" in data.decode("latin-1")
    _plain_autogenerate_is_empty(root, sqlite_url)  # Python still reads it (the cookie)
    assert _count(sqlite_url, _trash_table(sqlite_url, "post")) == 7


def test_undecodable_env_py_refuses_trash_drop_and_doctor_cannot_tell(
        tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic_repair import bootstrap, doctor

    root = _user_project(tmp_path / "proj")
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    bootstrap(root)
    execute(sqlite_url, "INSERT INTO author (id, name) VALUES (1, 'ann')",
         "INSERT INTO post (id, title, author_id) VALUES (1, 't', 1)")
    env_py = root / "alembic" / "env.py"
    env_py.write_bytes(b"# caf\xe9\n" + env_py.read_bytes())  # no coding line: not UTF-8
    before = tree_digest(root), table_digest(sqlite_url)

    refused = cli("trash", "drop", "post", "--yes", cwd=root, url=sqlite_url)
    assert refused.code == 4 and refused.stderr.count("\n") == 1, refused.output
    assert "alembic/env.py: env.py is not valid text in its declared encoding" in refused.stderr
    assert (tree_digest(root), table_digest(sqlite_url)) == before

    execute(sqlite_url, "CREATE TABLE _ar_trash_20260101000000_old (id INTEGER PRIMARY KEY)")
    (finding,) = [f for f in doctor(root).findings if f.code == "AR113"]
    assert finding.detail.startswith("cannot tell whether plain `alembic revision "
                                     "--autogenerate` would drop _ar_trash_20260101000000_old")


def _kwargs_only(env_py: Path) -> str:
    """The generated env.py's configure(**kwargs) without its own filter keywords."""
    text = env_py.read_text()
    wired = ("        include_name=_ar_include_name(),\n"
             "        include_object=_ar_include_object(),\n")
    assert wired in text
    env_py.write_text(text.replace(wired, ""))
    return env_py.read_text()


def test_fix_does_not_plan_a_soft_drop_env_py_cannot_hide(tmp_path: Path,
                                                          sqlite_url: str) -> None:
    from alembic_repair import fix
    from alembic_repair.testing.scenarios import build

    root = tmp_path / "proj"
    build("fm24_pending_drop_table", root, sqlite_url)
    _kwargs_only(root / "alembic" / "env.py")
    before = tree_digest(root), table_digest(sqlite_url)
    result = fix(Project.discover(root, url=sqlite_url), yes=True)
    (why,) = [w for c, _, w in result.unrepairable if c == "AR501"]
    assert why.startswith("the soft drop needs env.py's autogenerate filter: env.py line ")
    assert "passes **kwargs" in why and "_ar_include_object()" in why
    assert not any(s.kind in ("hide-tables", "rewrite-pending") for p in result.plans
                   for s in p.steps)
    assert (tree_digest(root), table_digest(sqlite_url)) == before


def test_a_kept_table_that_gets_a_model_is_reported(tmp_path: Path, sqlite_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic_repair import bootstrap, doctor

    root = _user_project(tmp_path / "proj")
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    bootstrap(root)
    with (root / "pyproject.toml").open("a") as out:
        out.write('ignore_tables = ["post"]\n')  # its [tool.alembic_repair] is the last
    found = [f for f in doctor(root).findings if f.code == "AR113"]
    assert [f.detail for f in found if f.detail.startswith("kept table")] == [
        "kept table post now has a model, yet doctor and autogenerate skip kept tables: "
        "changes to it go unseen"]
    assert "remove post from [tool.alembic_repair] ignore_tables" in found[0].fix
