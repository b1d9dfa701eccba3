"""What a finding is about (its subject) and the facts a repair needs, as data.

A finding's `location` (the text doctor prints and the JSON contract carries) is rendered from
its subject, never the other way round: the planner reads the subject and the facts, so a change
of wording in a finding cannot change what `fix` does. Every class is a frozen dataclass;
nothing here imports more than the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


def _at(path: str, line: int | None) -> str:
    return f"{path}:{line}" if line else path


def split_location(text: str) -> tuple[str, int | None]:
    """'path:12' -> ('path', 12); anything else -> (text, None). For places the engine reports
    as one string (an error's first words, Alembic's traceback), read once, in the rule."""
    path, _, line = text.rpartition(":")
    return (path, int(line)) if path and line.isdigit() else (text, None)


# -- subjects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """The base of every subject: where doctor says the finding is (None: nowhere in a file)."""

    @property
    def location(self) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True)
class SetupFile(Subject):
    """One of the files Alembic runs on: alembic.ini, env.py, script.py.mako, pyproject.toml."""

    path: str
    line: int | None = None

    @property
    def location(self) -> str:
        return _at(self.path, self.line)


@dataclass(frozen=True)
class IniSetting(Subject):
    """One setting of alembic.ini (`path` as doctor names the file)."""

    path: str
    key: str
    line: int | None = None

    @property
    def location(self) -> str:
        return _at(self.path, self.line)


@dataclass(frozen=True)
class DatabaseUrl(Subject):
    """The database URL, and the file (and line) it was read from when it came from one."""

    path: str | None = None
    line: int | None = None

    @property
    def location(self) -> str | None:
        return _at(self.path, self.line) if self.path else None


@dataclass(frozen=True)
class SourceFile(Subject):
    """A line of the project's Python code (a model module, or a file env.py imports)."""

    path: str
    line: int | None = None

    @property
    def location(self) -> str:
        return _at(self.path, self.line)


@dataclass(frozen=True)
class RevisionFile(Subject):
    """A file in versions/ (its revision id when it has one), or a line of it."""

    path: str | None
    revision: str | None = None
    line: int | None = None

    @property
    def location(self) -> str | None:
        return _at(self.path, self.line) if self.path else None


@dataclass(frozen=True)
class RevisionFiles(Subject):
    """Several revision files at once: the copies of one id, the members of a cycle."""

    paths: tuple[str, ...]
    revisions: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        return ", ".join(self.paths)


@dataclass(frozen=True)
class VersionsDir(Subject):
    """The versions/ folder as a whole (its heads, its replay)."""

    path: str

    @property
    def location(self) -> str:
        return self.path


@dataclass(frozen=True)
class VersionTable(Subject):
    """The ``alembic_version`` table: its rows, its column, its key."""

    @property
    def location(self) -> str:
        return "alembic_version"


@dataclass(frozen=True)
class Table(Subject):
    name: str

    @property
    def location(self) -> str:
        return self.name


@dataclass(frozen=True)
class Column(Subject):
    table: str
    name: str

    @property
    def location(self) -> str:
        return f"{self.table}.{self.name}"


# -- facts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrlProblem:
    """AR107: whether ConfigParser's interpolation of a '%' is what breaks the URL."""

    interpolation: bool


@dataclass(frozen=True)
class KeptModels:
    """AR113: kept tables the models now define (only a human can say which is right)."""

    tables: tuple[str, ...]


@dataclass(frozen=True)
class Visible:
    """AR113: tables plain autogenerate would drop; `readable` is False when env.py cannot be
    read, so whether it hides them is unknown."""

    tables: tuple[str, ...]
    readable: bool = True


@dataclass(frozen=True)
class SchemaEquals:
    """AR301, AR302, AR306, AR401: the revisions whose replayed schema equals the live one,
    oldest first (empty: none)."""

    revisions: tuple[str, ...]


@dataclass(frozen=True)
class MissingParent:
    """AR203: the down_revision no file defines."""

    parent: str


@dataclass(frozen=True)
class PendingChange:
    """AR5xx: the operation of a pending revision the finding is about. `new_column`: the
    problem is what the existing rows get in a column the revision adds."""

    operation: str
    new_column: bool = False


@dataclass(frozen=True)
class HiddenDrops:
    """AR511: the hidden tables (trash, kept) a pending revision drops or takes parts of."""

    tables: tuple[str, ...]
