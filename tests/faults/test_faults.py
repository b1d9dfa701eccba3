"""Every bad input gets one line and its exit code; nothing changes (issue 10, items 4 and 6).

The table `CASES` holds one damaged project per row: what to break, the command to run, the
exit code and the stable text of the answer. Each row runs the real CLI in a subprocess on a
copy of a healthy project with rows (SQLite, and MariaDB where the fault applies there), and
every row asserts the same contract:

* the documented exit code (2 configuration or usage, 3 unreachable, locked or refused by the
  server, 4 refused as unsafe, 5 a dry run, 1 problems found), never 70;
* errors: exactly one ``error: ...`` line on stderr holding the stable text (file/line or
  host, and what to do); doctor: the finding line on stdout and nothing on stderr (damage is a
  finding, not an error); a dry run: its plan on stdout and nothing on stderr;
* no ``Traceback`` and no password anywhere in the output;
* the project's files, every path under it, and every table's rows byte-identical afterwards.

The connection-level faults (guard, login, unknown database, locked SQLite file) are in
``test_connect_faults.py``.
"""

from __future__ import annotations

import fcntl
import os
import resource
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pymysql
import pytest
from helpers import Run

from alembic_repair.errors import (
    EXIT_CONFIG,
    EXIT_DATABASE,
    EXIT_DRY_RUN,
    EXIT_PROBLEMS,
    EXIT_REFUSED,
)
from alembic_repair.private import private_dir

from .conftest import Fault

BOTH = ("sqlite", "mariadb")
SQLITE = ("sqlite",)
MARIADB = ("mariadb",)
HEAD = "91c7700a655b"  # the template's one revision (content-addressed: stable)
EXIT_OK = 0

#: The stable text of the answer: a string, several that must all be in the line, or either
#: made from the case's Fault (paths, database names).
Text = str | tuple[str, ...] | Callable[[Fault], str]


@dataclass(frozen=True)
class Call:
    """The command a case runs, and how."""

    args: tuple[str, ...]
    url: str | None = None
    preexec: Callable[[], None] | None = None
    hold: Callable[[Fault], object] | None = None  # a context manager held during the run


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Fault], Call | tuple[str, ...]]
    code: int
    says: Text
    backends: tuple[str, ...] = SQLITE
    finding: bool = False  # doctor's answer: a finding line on stdout
    extra: Callable[[Fault], None] | None = field(default=None)  # more checks afterwards


CASES: list[Case] = []


def case(id: str, code: int, says: Text, *, backends: tuple[str, ...] = SQLITE,
         finding: bool = False, extra: Callable[[Fault], None] | None = None
         ) -> Callable[[Callable[[Fault], Call | tuple[str, ...]]], None]:
    def register(setup: Callable[[Fault], Call | tuple[str, ...]]) -> None:
        CASES.append(Case(id, setup, code, says, backends, finding, extra))
    return register


# ---------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------


def spellings(password: str) -> set[str]:
    found = {password, quote(password), quote(password, safe=""), quote_plus(password)}
    return found | {s.replace("%", "%%") for s in found}


def check(fault: Fault, run: Run, expected: Case) -> None:
    __tracebackhide__ = True
    says = expected.says(fault) if callable(expected.says) else expected.says
    assert run.code == expected.code, run
    assert "Traceback" not in run.output, run
    assert "internal error" not in run.output, run
    for password in fault.passwords:
        for spelling in spellings(password):
            assert spelling not in run.output, f"password spelling {spelling!r} printed"
    parts = says if isinstance(says, tuple) else (says,)
    if expected.finding or expected.code in (EXIT_OK, EXIT_DRY_RUN):
        assert run.stderr == "", run
        assert any(all(p in line for p in parts) for line in run.stdout.splitlines()), run
    else:
        lines = run.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), run
        assert all(p in lines[0] for p in parts), run


# ---------------------------------------------------------------------------------------
# Helpers that damage a project
# ---------------------------------------------------------------------------------------


def revision_py(rev: str, down: str | None, body: str = "pass", head: str = "") -> str:
    return (f'{head}"""{rev}"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
            f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\n"
            f"depends_on = None\n\n\ndef upgrade():\n    {body}\n\n\ndef downgrade():\n"
            "    pass\n")


def add_revision(fault: Fault, name: str, text: str) -> Path:
    path = fault.versions / name
    path.write_text(text)
    return path


def line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def state_dir_file(fault: Fault) -> None:
    (fault.root / ".alembic_repair").write_text("not a folder\n")


def state_dir_message(fault: Fault) -> str:
    return (f"{fault.root / '.alembic_repair'}: a file where alembic-repair keeps its journal "
            "and backups (a folder); nothing changed; move the file away")


def journal(fault: Fault, text: str) -> None:
    folder = fault.root / ".alembic_repair"
    folder.mkdir(mode=0o700)
    (folder / "journal.json").write_text(text)


def version_int(fault: Fault) -> None:
    if fault.backend == "sqlite":
        fault.sql("DROP TABLE alembic_version",
                  "CREATE TABLE alembic_version (version_num INTEGER NOT NULL PRIMARY KEY)",
                  "INSERT INTO alembic_version VALUES (12)")
    else:
        fault.sql("DELETE FROM alembic_version",
                  "ALTER TABLE alembic_version MODIFY version_num INT NOT NULL",
                  "INSERT INTO alembic_version VALUES (12)")


# ---------------------------------------------------------------------------------------
# 1. Configuration: alembic.ini, script_location, env.py, pyproject.toml
# ---------------------------------------------------------------------------------------

INI_HINT = "move the file away and run `alembic-repair bootstrap`"


@case("ini-no-alembic-section", EXIT_CONFIG, "no [alembic] section; add one with script_location")
def _(f: Fault) -> tuple[str, ...]:
    f.ini.write_text("[loggers]\nkeys = root\n")
    return ("bootstrap",)


@case("ini-bad-interpolation", EXIT_CONFIG,
      lambda f: f"{f.ini}:5: script_location has a bad '%' interpolation; write "
      "%(here)s/alembic")
def _(f: Fault) -> tuple[str, ...]:
    f.ini_replace("script_location = %(here)s/alembic", "script_location = %(nope)s/alembic")
    return ("bootstrap",)


@case("ini-bad-interpolation-doctor", EXIT_PROBLEMS,
      "AR102 error alembic.ini:5: alembic.ini cannot be read", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    f.ini_replace("script_location = %(here)s/alembic", "script_location = %(nope)s/alembic")
    return ("doctor",)


@case("ini-no-script-location", EXIT_CONFIG,
      "[alembic] has no script_location; add `script_location = %(here)s/alembic`")
def _(f: Fault) -> tuple[str, ...]:
    f.ini_replace("script_location = %(here)s/alembic", "")
    return ("bootstrap",)


@case("ini-garbage-line", EXIT_CONFIG, "cannot be parsed ('this is not ini' is neither key = "
      "value nor a [section] header)")
def _(f: Fault) -> tuple[str, ...]:
    f.ini_replace("path_separator = os", "path_separator = os\nthis is not ini")
    return ("bootstrap",)


@case("ini-not-utf8", EXIT_CONFIG, "alembic.ini: not a UTF-8 text file; restore alembic.ini")
def _(f: Fault) -> tuple[str, ...]:
    f.ini.write_bytes(f.ini.read_bytes().replace(b"# Alembic", b"# Alemb\xe9c"))
    return ("bootstrap",)


@case("ini-is-a-directory", EXIT_CONFIG,
      lambda f: f"{f.ini}: cannot be read (Is a directory); make it a readable file, or move "
      "it away")
def _(f: Fault) -> tuple[str, ...]:
    f.ini.unlink()
    f.ini.mkdir()
    return ("bootstrap",)


@case("ini-is-a-directory-doctor", EXIT_PROBLEMS,
      "AR102 error alembic.ini: alembic.ini cannot be read", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    f.ini.unlink()
    f.ini.mkdir()
    return ("doctor",)


@case("ini-unreadable", EXIT_CONFIG,
      lambda f: f"{f.ini}: cannot be read (Permission denied)", backends=SQLITE)
def _(f: Fault) -> tuple[str, ...]:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: an unreadable alembic.ini needs a normal user")
    f.ini.chmod(0)
    return ("bootstrap",)


@case("script-location-mistyped", EXIT_CONFIG,
      f"alembic.ini:5: script_location names alembik, which does not exist, while the "
      f"database records revision {HEAD}; nothing changed; fix script_location", backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    f.ini_replace("%(here)s/alembic\n", "%(here)s/alembik\n")
    return ("bootstrap",)


@case("script-location-mistyped-doctor", EXIT_PROBLEMS, "AR103 error", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    f.ini_replace("%(here)s/alembic\n", "%(here)s/alembik\n")
    return ("doctor",)


@case("versions-is-a-file", EXIT_CONFIG,
      "alembic/versions: a file where alembic-repair expects a folder; nothing changed")
def _(f: Fault) -> tuple[str, ...]:
    shutil.rmtree(f.versions)
    f.versions.write_text("oops\n")
    return ("bootstrap",)


@case("env-py-is-a-directory", EXIT_CONFIG,
      "alembic/env.py: a folder where alembic-repair expects a file; nothing changed")
def _(f: Fault) -> tuple[str, ...]:
    env = f.root / "alembic" / "env.py"
    env.unlink()
    env.mkdir()
    return ("bootstrap",)


@case("env-py-syntax-error", EXIT_CONFIG, "running alembic/env.py failed with SyntaxError: '(' "
      "was never closed; fix that line")
def _(f: Fault) -> tuple[str, ...]:
    env = f.root / "alembic" / "env.py"
    env.write_text(env.read_text() + "\nbroken = (\n")
    return ("bootstrap",)


def env_py(f: Fault) -> Path:
    return f.root / "alembic" / "env.py"


def env_not_utf8(f: Fault) -> None:
    """A latin-1 byte without a coding line: Python cannot decode the file either."""
    env_py(f).write_bytes(b"# caf\xe9\n" + env_py(f).read_bytes())


def env_kwargs_only(f: Fault) -> None:
    """The template's configure(**kwargs) without its own filter keywords."""
    text = env_py(f).read_text()
    wired = ("        include_name=_ar_include_name(),\n"
             "        include_object=_ar_include_object(),\n")
    assert wired in text
    env_py(f).write_text(text.replace(wired, ""))


def kwargs_line(f: Fault) -> str:
    return (f"env.py line {line_of(env_py(f).read_text(), '    context.configure(')}: "
            "context.configure(...) passes **kwargs")


NOT_UTF8 = "env.py is not valid text in its declared encoding"


@case("env-not-utf8-trash-drop", EXIT_REFUSED, ("trash drop post: alembic/env.py: " + NOT_UTF8,
                                                "nothing changed"))
def _(f: Fault) -> tuple[str, ...]:
    env_not_utf8(f)
    return ("trash", "drop", "post", "--yes")


@case("env-not-utf8-fix", EXIT_PROBLEMS, "AR113 alembic/env.py: env.py is missing, cannot be "
      "decoded or does not parse", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    env_not_utf8(f)
    f.sql("CREATE TABLE _ar_trash_20260101000000_legacy (id INTEGER PRIMARY KEY)",
          "INSERT INTO _ar_trash_20260101000000_legacy (id) VALUES (1)")
    return ("fix", "--yes")


@case("env-kwargs-trash-drop", EXIT_REFUSED, lambda f: kwargs_line(f), backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    env_kwargs_only(f)
    return ("trash", "drop", "post", "--yes")


@case("env-kwargs-drop", EXIT_REFUSED, lambda f: kwargs_line(f))
def _(f: Fault) -> tuple[str, ...]:
    env_kwargs_only(f)
    return ("drop", "post", "--yes")


@case("env-configure-alias", EXIT_REFUSED, lambda f: (
      f"env.py line {line_of(env_py(f).read_text(), 'late_configure = ')}: context.configure "
      "is used in a way alembic-repair cannot follow; add include_name=_ar_include_name()"))
def _(f: Fault) -> tuple[str, ...]:
    text = env_py(f).read_text()
    env_py(f).write_text(text.replace("def configure(**kwargs):",
                                      "late_configure = context.configure\n\n\n"
                                      "def configure(**kwargs):"))
    return ("trash", "drop", "post", "--yes")


@case("pyproject-not-toml", EXIT_PROBLEMS, "AR114 error pyproject.toml: [tool.alembic_repair] "
      "in pyproject.toml is invalid: pyproject.toml: not valid TOML", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    (f.root / "pyproject.toml").write_text("[tool.alembic_repair\nmodels = 1\n")
    return ("doctor",)


@case("config-file-missing", EXIT_CONFIG,
      lambda f: f"{f.root / 'missing.ini'}: file not found; check -c/--config")
def _(f: Fault) -> tuple[str, ...]:
    return ("-c", "missing.ini", "bootstrap")


@case("project-folder-missing", EXIT_CONFIG, "nope_dir: no such project folder; pass --project")
def _(f: Fault) -> tuple[str, ...]:
    return ("--project", "nope_dir", "doctor")


# ---------------------------------------------------------------------------------------
# 2. Revision files
# ---------------------------------------------------------------------------------------


@case("revision-syntax-error", EXIT_PROBLEMS,
      "alembic/versions/0badc0de_broken.py:12: revision file cannot be read (SyntaxError: '(' "
      "was never closed); fix that line")
def _(f: Fault) -> tuple[str, ...]:
    text = revision_py("0badc0de", HEAD, body="columns = (")
    assert line_of(text, "    columns = (") == 12
    add_revision(f, "0badc0de_broken.py", text)
    return ("bootstrap",)


@case("revision-syntax-error-doctor", EXIT_PROBLEMS,
      "AR201 error alembic/versions/0badc0de_broken.py:12: revision file does not parse",
      finding=True)
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "0badc0de_broken.py", revision_py("0badc0de", HEAD, body="columns = ("))
    return ("doctor",)


@case("revision-binary-file", EXIT_PROBLEMS, "alembic/versions/bin_x.py: revision file cannot "
      "be read (SyntaxError: source code string cannot contain null bytes)")
def _(f: Fault) -> tuple[str, ...]:
    (f.versions / "bin_x.py").write_bytes(b"\x00\xff\xfe" * 50)
    return ("bootstrap",)


@case("revision-binary-file-doctor", EXIT_PROBLEMS,
      "AR201 error alembic/versions/bin_x.py: revision file does not parse", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    (f.versions / "bin_x.py").write_bytes(b"\x00\xff\xfe" * 50)
    return ("doctor",)


@case("revision-duplicate-id", EXIT_PROBLEMS,
      f"alembic/versions/{HEAD}_initial_schema.py, alembic/versions/copy_x.py: revision id "
      f"'{HEAD}' is defined 2 times")
def _(f: Fault) -> tuple[str, ...]:
    shutil.copy(f.versions / f"{HEAD}_initial_schema.py", f.versions / "copy_x.py")
    return ("bootstrap",)


@case("revision-duplicate-id-doctor", EXIT_PROBLEMS, "AR202 error", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    shutil.copy(f.versions / f"{HEAD}_initial_schema.py", f.versions / "copy_x.py")
    return ("doctor",)


@case("revision-cycle", EXIT_PROBLEMS, "alembic/versions/aaa_cycle.py, "
      "alembic/versions/bbb_cycle.py: revisions aaa -> bbb form a cycle")
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "aaa_cycle.py", revision_py("aaa", "bbb"))
    add_revision(f, "bbb_cycle.py", revision_py("bbb", "aaa"))
    return ("bootstrap",)


@case("revision-cycle-doctor", EXIT_PROBLEMS, "alembic/versions/aaa_cycle.py", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "aaa_cycle.py", revision_py("aaa", "bbb"))
    add_revision(f, "bbb_cycle.py", revision_py("bbb", "aaa"))
    return ("doctor",)


@case("revision-missing-parent", EXIT_PROBLEMS, "alembic/versions/bbb_dangling.py: revision "
      "'bbb' has down_revision 'zzz', which no revision file defines")
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "bbb_dangling.py", revision_py("bbb", "zzz"))
    return ("bootstrap",)


@case("revision-missing-parent-doctor", EXIT_PROBLEMS, "alembic/versions/bbb_dangling.py",
      finding=True)
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "bbb_dangling.py", revision_py("bbb", "zzz"))
    return ("doctor",)


def symlink_loop(f: Fault) -> None:
    os.symlink("loop_b.py", f.versions / "loop_a.py")
    os.symlink("loop_a.py", f.versions / "loop_b.py")


@case("versions-symlink-loop", EXIT_PROBLEMS, "alembic/versions/loop_a.py: revision file cannot "
      "be read (OSError: Too many levels of symbolic links); fix or restore that file")
def _(f: Fault) -> tuple[str, ...]:
    symlink_loop(f)
    return ("bootstrap",)


@case("versions-symlink-loop-doctor", EXIT_PROBLEMS, "AR201 error alembic/versions/loop_a.py",
      finding=True)
def _(f: Fault) -> tuple[str, ...]:
    symlink_loop(f)
    return ("doctor",)


@case("versions-dangling-symlink", EXIT_PROBLEMS, "alembic/versions/gone_x.py: revision file "
      "cannot be read (FileNotFoundError: No such file or directory)")
def _(f: Fault) -> tuple[str, ...]:
    os.symlink("nowhere.py", f.versions / "gone_x.py")
    return ("bootstrap",)


@case("revision-without-revision-variable", EXIT_PROBLEMS,
      "alembic/versions/norev_x.py: no `revision = '...'` line, so it is not a revision file")
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "norev_x.py", "down_revision = None\n\n\ndef upgrade():\n    pass\n")
    return ("bootstrap",)


@case("revision-without-revision-variable-doctor", EXIT_PROBLEMS,
      "AR206 warning alembic/versions/norev_x.py", finding=True)
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "norev_x.py", "down_revision = None\n\n\ndef upgrade():\n    pass\n")
    return ("doctor",)


@case("revision-import-fails", EXIT_PROBLEMS, "alembic/versions/abc_imp.py:1: importing the "
      "revision file failed (ModuleNotFoundError: No module named 'nonexistent_mod_x')")
def _(f: Fault) -> tuple[str, ...]:
    add_revision(f, "abc_imp.py", revision_py("abc", HEAD, head="import nonexistent_mod_x\n"))
    return ("bootstrap",)


# ---------------------------------------------------------------------------------------
# 3. Database state
# ---------------------------------------------------------------------------------------


@case("version-num-int", EXIT_REFUSED, "alembic_version.version_num is INTEGER, but revision "
      "ids are text; nothing changed; make it a string column", backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    version_int(f)
    return ("bootstrap",)


@case("version-num-int-doctor", EXIT_PROBLEMS, "AR302 error alembic_version: recorded revision "
      "is unknown: alembic_version records 12", finding=True, backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    version_int(f)
    return ("doctor",)


def two_rows(f: Fault) -> None:
    f.sql("INSERT INTO alembic_version (version_num) VALUES ('deadbeef0001')")


@case("version-two-conflicting-rows-fix-plan", EXIT_DRY_RUN, "fix plan (database and history):",
      backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    two_rows(f)
    return ("fix",)


@case("version-two-conflicting-rows-doctor", EXIT_PROBLEMS, "AR302 error alembic_version: "
      "recorded revision is unknown: alembic_version records deadbeef0001", finding=True,
      backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    two_rows(f)
    return ("doctor",)


def foreign_index(f: Fault) -> None:
    f.sql("CREATE TABLE _ar_trash_index (id INTEGER PRIMARY KEY, foo VARCHAR(20))",
          "INSERT INTO _ar_trash_index VALUES (1, 'mine')")


@case("user-table-named-trash-index", EXIT_REFUSED, "trash drop post: table _ar_trash_index "
      "exists but is not alembic-repair's trash index (its columns: id, foo); nothing changed",
      backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    foreign_index(f)
    return ("trash", "drop", "post", "--yes")


@case("user-table-named-trash-index-list", EXIT_OK, "trash  0 tables", backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    foreign_index(f)
    return ("trash", "list")


def long_revision(f: Fault, rev: str) -> None:
    add_revision(f, f"{rev}_more.py", revision_py(
        rev, HEAD, body='op.create_table("extra", sa.Column("id", sa.Integer, primary_key=True))'))


LONG_ID = "x" * 40


@case("pending-revision-id-too-long", EXIT_REFUSED,
      f"alembic/versions/{LONG_ID}_more.py: revision id '{LONG_ID}' has 40 characters, but "
      "alembic_version.version_num holds at most 32; nothing applied; widen the column first",
      backends=MARIADB)
def _(f: Fault) -> tuple[str, ...]:
    long_revision(f, LONG_ID)  # the snapshot afterwards proves table `extra` was not created
    return ("bootstrap",)


@case("version-num-varchar-8", EXIT_REFUSED, f"revision id '{HEAD}' has 12 characters, but "
      "alembic_version.version_num holds at most 8; nothing applied", backends=MARIADB)
def _(f: Fault) -> tuple[str, ...]:
    f.sql("DROP TABLE post", "DROP TABLE author", "DROP TABLE alembic_version",
          "CREATE TABLE alembic_version (version_num VARCHAR(8) NOT NULL PRIMARY KEY)")
    return ("bootstrap",)


# ---------------------------------------------------------------------------------------
# 4. The tool's own state: .alembic_repair/, journal, backups
# ---------------------------------------------------------------------------------------


@case("state-folder-is-a-file-backup", EXIT_CONFIG, state_dir_message, backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    state_dir_file(f)
    return ("backup",)


@case("state-folder-is-a-file-fix", EXIT_CONFIG, state_dir_message, backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    state_dir_file(f)
    two_rows(f)  # something to repair
    return ("fix", "--yes")


@case("state-folder-is-a-file-trash-drop", EXIT_CONFIG, state_dir_message, backends=SQLITE)
def _(f: Fault) -> tuple[str, ...]:
    state_dir_file(f)
    return ("trash", "drop", "post", "--yes")


@case("journal-corrupt-fix", EXIT_CONFIG, "journal.json: the journal of an interrupted run "
      "does not parse; look at it, then move it away to start over", backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    journal(f, "{nope")
    return ("fix", "--yes")


@case("journal-corrupt-reset", EXIT_CONFIG, "journal.json: the journal of an interrupted run "
      "does not parse", backends=SQLITE)
def _(f: Fault) -> tuple[str, ...]:
    journal(f, '{"format": 1, "steps": 3}')
    return ("reset", "--yes")


OTHER_JOURNAL = ('{"format": 1, "command": "squash", "started_at": "2026-01-01T00:00:00+00:00", '
                 '"steps": [{"name": "backup", "state": "done", "destructive": true}], '
                 '"context": {}}')


@case("journal-of-another-command", EXIT_PROBLEMS, ".alembic_repair/journal.json: an "
      "interrupted `squash` run is recorded; run `alembic-repair squash --yes` to finish it",
      backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    journal(f, OTHER_JOURNAL)
    return ("fix", "--yes")


@case("restore-folder-that-is-no-backup", EXIT_CONFIG,
      "nob: no manifest.json there; name a backup folder", backends=BOTH)
def _(f: Fault) -> tuple[str, ...]:
    (f.root / "nob").mkdir()
    (f.root / "nob" / "data.txt").write_text("hello\n")
    return ("restore", "nob", "--yes")


@case("restore-missing-path", EXIT_CONFIG, "nope: no manifest.json there")
def _(f: Fault) -> tuple[str, ...]:
    return ("restore", "nope", "--yes")


@case("restore-path-is-a-file", EXIT_CONFIG, "b5: no manifest.json there")
def _(f: Fault) -> tuple[str, ...]:
    (f.root / "b5").write_text("x\n")
    return ("restore", "b5", "--yes")


@case("restore-manifest-is-a-folder", EXIT_CONFIG,
      "b4/manifest.json: cannot be read (Is a directory); name a backup folder")
def _(f: Fault) -> tuple[str, ...]:
    (f.root / "b4" / "manifest.json").mkdir(parents=True)
    return ("restore", "b4", "--yes")


@case("restore-manifest-corrupt", EXIT_PROBLEMS, "backup b1/manifest.json: the manifest does "
      "not parse; the backup cannot be trusted, use another one")
def _(f: Fault) -> tuple[str, ...]:
    (f.root / "b1").mkdir()
    (f.root / "b1" / "manifest.json").write_text('{"format": 1, "tables": "x"}')
    return ("restore", "b1", "--yes")


@case("backup-into-unwritable-place", EXIT_CONFIG, "backup: cannot create the backup folder "
      "/proc/nope (No such file or directory); name a folder you may write to")
def _(f: Fault) -> tuple[str, ...]:
    return ("backup", "/proc/nope/x")


@case("backup-into-non-empty-folder", EXIT_CONFIG, "backup: bk is not empty; name a new folder")
def _(f: Fault) -> tuple[str, ...]:
    (f.root / "bk").mkdir()
    (f.root / "bk" / "x").write_text("x\n")
    return ("backup", "bk")


# ---------------------------------------------------------------------------------------
# 5. Privileges (MariaDB)
# ---------------------------------------------------------------------------------------

LIMITED_PASSWORD = "li(mi)ted:p@ss%"


def no_trash_index(f: Fault) -> None:
    tables = f.scalar(f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                      f"'{f.database}' AND TABLE_NAME = '_ar_trash_index'")
    assert tables == 0, "the trash index was created although the drop was refused"


@case("trash-drop-without-alter-drop", EXIT_DATABASE,
      lambda f: "trash drop post: the server refused it (DROP, ALTER command denied to user "
      "'limited'@'127.0.0.1' for table `" + str(f.database) + "`.`post`); nothing changed; "
      "moving a table into the trash renames it (ALTER, DROP on the table; CREATE, INSERT "
      "under its new name) and records it in _ar_trash_index; an administrator can allow it "
      "with: GRANT ALTER, DROP, CREATE, INSERT, SELECT, DELETE ON " + str(f.database)
      + ".* TO 'limited'@'127.0.0.1'", backends=MARIADB, extra=no_trash_index)
def _(f: Fault) -> Call:
    url = f.user("limited", LIMITED_PASSWORD, "SELECT, INSERT, UPDATE, DELETE, CREATE")
    return Call(("trash", "drop", "post", "--yes"), url=url)


@case("restore-without-create-database", EXIT_DATABASE,
      ("the server refused it (Access denied for user 'limited'@'127.0.0.1' to database "
       "'_ar_restore_", "); nothing changed; a restore loads the backup into a scratch schema "
       "_ar_restore_* first (doctor replays into _ar_replay_*); an administrator can allow it "
       "with: GRANT ALL PRIVILEGES ON `\\_ar\\_%`.* TO 'limited'@'127.0.0.1'"),
      backends=MARIADB)
def _(f: Fault) -> Call:
    backup = f.run("backup", "--method", "dump")
    assert backup.code == 0, backup
    # The backup folder is the case's starting point; the rows go, so restore has work to do.
    f.sql("DELETE FROM post")
    url = f.user("limited", LIMITED_PASSWORD,
                 "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, "
                 "LOCK TABLES")
    folder = next((f.root / ".alembic_repair" / "backups").iterdir())
    return Call(("restore", str(folder), "--yes"), url=url)


# ---------------------------------------------------------------------------------------
# 6. Usage: unknown codes and nonsense arguments
# ---------------------------------------------------------------------------------------

USAGE = [
    ("only-unknown-code", ("fix", "--only", "AR999"),
     "fix: Invalid value for --only: 'AR999' is no finding code"),
    ("only-not-a-code", ("fix", "--only", "banana"),
     "fix: Invalid value for --only: 'banana' is no finding code"),
    ("backup-unknown-method", ("backup", "--method", "zip"),
     "backup: Invalid value for --method: expected auto, dump or python"),
    ("doctor-unknown-format", ("doctor", "--format", "xml"), "doctor: Invalid value for "
     "'--format'"),
    ("unknown-option", ("--bogus",), "No such option: --bogus"),
    ("unknown-command", ("nosuch",), "No such command 'nosuch'"),
    ("lock-timeout-not-a-number", ("bootstrap", "--lock-timeout", "soon"),
     "bootstrap: Invalid value for '--lock-timeout'"),
    ("purge-age-not-an-age", ("trash", "purge", "--older-than", "banana", "--yes"),
     "--older-than 'banana': not an age; write e.g. 7d, 12h, 1d12h, 2w"),
    ("squash-to-unknown-revision", ("squash", "--to", "nonexist", "--yes"),
     "squash: no revision 'nonexist' in the history; pass --to with one of its revision ids"),
    ("drop-unknown-table", ("drop", "no_such_table", "--yes"),
     "drop no_such_table: the database has no table 'no_such_table' (tables: author, post)"),
    ("drop-unknown-column", ("drop", "post.nocol", "--yes"),
     "drop post.nocol: table post has no column 'nocol'"),
    ("drop-into-unknown-revision", ("drop", "post", "--into", "zzz", "--yes"),
     "drop --into zzz: no such revision in alembic/versions"),
    ("trash-drop-unknown-table", ("trash", "drop", "nope", "--yes"), "has no table 'nope'; "
     "check the name"),
    ("trash-drop-version-table", ("trash", "drop", "alembic_version", "--yes"),
     "trash drop alembic_version: alembic_version is not an application table"),
    ("trash-restore-unknown", ("trash", "restore", "nothing", "--yes"),
     "trash restore nothing: no such table in the trash (the trash is empty)"),
    ("models-unknown-module", ("bootstrap", "--models", "nomod:Base"),
     "importing nomod failed with ModuleNotFoundError: No module named 'nomod'"),
    ("models-unknown-attribute", ("bootstrap", "--models", "app.models:Nope"),
     "--models app.models:Nope: app.models has no attribute 'Nope'"),
    ("url-not-a-url", ("--url", "not a url", "doctor"), "--url: 'not a url' is not a "
     "database URL"),
]

#: Usage errors that the database answers (unknown tables, revisions): both backends.
ASKS_THE_DATABASE = ("drop-unknown-table", "drop-unknown-column", "trash-drop-unknown-table",
                     "trash-restore-unknown", "squash-to-unknown-revision")

for _id, _args, _says in USAGE:
    case(_id, EXIT_CONFIG, _says, backends=BOTH if _id in ASKS_THE_DATABASE else SQLITE
         )(lambda f, args=_args: args)


# ---------------------------------------------------------------------------------------
# 7. Locks and a full disk
# ---------------------------------------------------------------------------------------


@contextmanager
def held_lock(f: Fault) -> Iterator[None]:
    """Another run's migration lock: flock on the SQLite lock file, GET_LOCK on MariaDB."""
    if f.backend == "sqlite":
        path = f.root / "app.db.alembic-repair.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:  # as a run does (engine/locking.py): its lock file goes when it ends
            path.unlink()
            os.close(fd)
        return
    from sqlalchemy import create_engine

    from alembic_repair.engine.locking import lock_name

    assert f.server is not None
    name = lock_name(create_engine(f.url))
    conn = pymysql.connect(host=f.server.host, port=f.server.port, user="root", password="",
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (name,))
            assert cur.fetchone()[0] == 1
        yield
    finally:
        conn.close()


@case("lock-held-by-another-run", EXIT_DATABASE, "another alembic-repair run held", backends=BOTH)
def _(f: Fault) -> Call:
    add_revision(f, "ccc_more.py", revision_py("ccc", HEAD))  # something to do under the lock
    return Call(("bootstrap", "--lock-timeout", "1"), hold=held_lock)


def small_files() -> None:
    """The child may not write a file beyond 16 KiB (writes fail with EFBIG), as on a full
    disk; Python ignores SIGXFSZ, so the write raises instead of killing the process."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


@case("disk-full-during-backup", EXIT_CONFIG, "backup: disk full while writing", backends=BOTH)
def _(f: Fault) -> Call:
    rows = ", ".join(f"({n}, 'title {n}', '{secrets.token_hex(100)}', 1)"  # incompressible
                     for n in range(10, 400))
    f.sql(f"INSERT INTO post (id, title, body, author_id) VALUES {rows}")
    # As after a first backup (with the folder's documented .gitignore): the partial backup
    # is removed, the folder that holds the backups stays.
    private_dir(f.root / ".alembic_repair" / "backups")
    return Call(("backup", "--method", "python"), preexec=small_files)


# ---------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------


def _params() -> list[object]:
    params = []
    for entry in CASES:
        for backend in entry.backends:
            marks = [pytest.mark.mariadb] if backend == "mariadb" else []
            params.append(pytest.param(backend, entry, id=f"{entry.id}-{backend}", marks=marks))
    return params


@pytest.mark.parametrize(("fault", "entry"), _params(), indirect=["fault"])
def test_fault(fault: Fault, entry: Case) -> None:
    call = entry.setup(fault)
    if isinstance(call, tuple):
        call = Call(call)
    before = fault.snapshot()
    if call.hold is not None:
        with call.hold(fault):  # type: ignore[attr-defined]
            run = fault.run(*call.args, url=call.url, preexec=call.preexec, timeout=30)
    else:
        run = fault.run(*call.args, url=call.url, preexec=call.preexec, timeout=60)
    check(fault, run, entry)
    assert fault.snapshot() == before, "the failed run changed files or rows"
    if entry.extra is not None:
        entry.extra(fault)


def test_the_table_is_big_enough() -> None:
    """Issue 10: at least 60 bad-input cases with the connection-level ones."""
    per_backend = {b: sum(b in c.backends for c in CASES) for b in BOTH}
    assert len({c.id for c in CASES}) == len(CASES)
    assert per_backend["sqlite"] >= 60 and per_backend["mariadb"] >= 20, per_backend
