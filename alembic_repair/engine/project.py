"""Project: where the migration setup lives and which database it talks to.

Everything else starts from a `Project`. Discovery only reads files; it never writes and never
connects. The URL is resolved once, in a fixed order (``--url`` > ``DATABASE_URL`` > the compose
file's ``MYSQL_*`` variables > ``alembic.ini`` > ``.alembic_repair/database_url`` > an SQLite
file in the project), and the source is kept so that reports can say where it came from.
Print `masked_url`, never `url`.
"""

from __future__ import annotations

import ast
import configparser
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError, IniError, PyprojectError, UrlError
from ..masking import mask_url
from ..private import STATE_DIR
from .compose import database_from_compose, find_compose_file
from .url import DatabaseUrl, encode_credentials

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

INI_NAME = "alembic.ini"
DEFAULT_SCRIPT_DIR = "alembic"
DEFAULT_DB_FILE = "app.db"
#: What ``alembic init`` writes: a placeholder, not a database.
PLACEHOLDER_URLS = ("driver://user:pass@localhost/dbname",)
#: A URL with a password that `reset` carried from the old alembic.ini (in STATE_DIR, 0600).
URL_FILE = "database_url"
T = TypeVar("T")


@dataclass(frozen=True)
class Project:
    """The files of one Alembic setup and its resolved database URL (which holds the password)."""

    root: Path
    ini_path: Path
    script_location: Path
    #: parsed once (a plain str given here is parsed on construction); holds the password:
    #: print masked_url
    url: DatabaseUrl = field(repr=False)
    url_source: str = ""
    models: str | None = None
    notes: tuple[str, ...] = ()
    problems: tuple[ConfigError, ...] = ()  # only with discover(strict=False)
    #: ``[tool.alembic_repair] ignore_tables``: tables kept out of autogenerate and doctor
    ignore_tables: tuple[str, ...] = ()
    #: ``[tool.alembic_repair] setup``: what the application runs before Alembic (the replay
    #: runs it first on its scratch database; see `setup_from_pyproject`)
    setup: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, DatabaseUrl):
            object.__setattr__(self, "url", DatabaseUrl(self.url))

    @property
    def masked_url(self) -> str:
        return self.url.masked

    def rel(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the project root when inside it (how every message names files)."""
        given = Path(path)
        try:  # a link is named as itself (not its target, which may not even exist)
            resolved = (given.parent.resolve() / given.name if given.is_symlink()
                        else given.resolve())
        except (OSError, RuntimeError):  # a symlink loop above it
            resolved = Path(os.path.abspath(given))
        try:
            return str(resolved.relative_to(self.root))
        except ValueError:
            return str(path)

    @property
    def versions_dir(self) -> Path:
        return self.script_location / "versions"

    @property
    def env_py(self) -> Path:
        return self.script_location / "env.py"

    @property
    def script_template(self) -> Path:
        return self.script_location / "script.py.mako"

    @property
    def state_dir(self) -> Path:
        """Where backups and journals go (``.alembic_repair/`` beside alembic.ini)."""
        return self.root / STATE_DIR

    @property
    def dialect(self) -> str:
        return self.url.backend

    @classmethod
    def discover(
        cls,
        root: str | os.PathLike[str] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        url: str | None = None,
        models: str | None = None,
        environ: Mapping[str, str] | None = None,
        strict: bool = True,
    ) -> Project:
        """Find the setup under `root` (default: the current directory); read-only.

        With ``strict=False`` (doctor) an unreadable alembic.ini or an unusable URL does not
        raise: the defaults are used instead and the errors are kept in `problems`.
        """
        environ = os.environ if environ is None else environ
        if config is not None:
            ini_path = Path(config).expanduser().resolve()
            base = Path(root).expanduser().resolve() if root is not None else ini_path.parent
        else:
            base = Path(root if root is not None else os.getcwd()).expanduser().resolve()
            ini_path = base / INI_NAME
        if not base.is_dir():
            raise ConfigError(f"{base}: no such project folder; pass --project DIR")
        if config is not None and not ini_path.is_file():
            raise ConfigError(
                f"{ini_path}: file not found; check -c/--config, or run "
                "`alembic-repair bootstrap` without -c to create alembic.ini"
            )
        problems: list[ConfigError] = []

        def attempt(fn: Callable[[], T], fallback: Callable[[], T]) -> T:
            try:
                return fn()
            except ConfigError as err:
                if strict:
                    raise
                if str(err) not in map(str, problems):  # one unreadable file, said once
                    problems.append(err)
                return fallback()

        ini = attempt(lambda: read_ini(ini_path) if ini_path.exists() else None, lambda: None)
        script_location = attempt(lambda: _script_location(ini_path, ini),
                                  lambda: _script_location(ini_path, None))
        resolved_url, source, notes = attempt(
            lambda: resolve_url(base, ini_path, ini, url, environ),
            lambda: _as_meant(base, ini_path, ini, url, environ))
        if not strict and not any(isinstance(p, UrlError) for p in problems):
            # the URL came from elsewhere (DATABASE_URL): plain alembic still reads the ini's
            problems.extend(p for p in [ini_url_problem(ini_path, ini)] if p is not None)
        # a pyproject.toml that cannot be read, or a bad value in it, stops every command but
        # doctor, which reports it (AR114; read before `problems` is frozen)
        models = models or attempt(lambda: models_from_pyproject(base), lambda: None)
        ignore_tables = attempt(lambda: ignore_tables_from_pyproject(base), lambda: ())
        setup = attempt(lambda: setup_from_pyproject(base), lambda: None)
        return cls(
            root=base,
            ini_path=ini_path,
            script_location=script_location,
            url=resolved_url,
            url_source=source,
            models=models,
            notes=tuple(notes),
            problems=tuple(problems),
            ignore_tables=ignore_tables,
            setup=setup,
        )


def read_ini(path: Path) -> configparser.ConfigParser:
    """alembic.ini parsed the way Alembic parses it (``%(here)s`` defined), or a ConfigError."""
    parser = configparser.ConfigParser(defaults={"here": str(path.parent)})
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.ParsingError, configparser.MissingSectionHeaderError,
            configparser.DuplicateSectionError, configparser.DuplicateOptionError) as err:
        line = getattr(err, "lineno", None)
        reason = str(err).splitlines()[0].rstrip(":")
        if isinstance(err, configparser.MissingSectionHeaderError):
            reason = "text before the first [section] header"
        elif isinstance(err, configparser.ParsingError) and err.errors:
            line, text = err.errors[0][0], str(err.errors[0][1])
            with suppress(ValueError, SyntaxError):
                text = str(ast.literal_eval(text))  # ConfigParser stores repr(line)
            reason = f"{text.strip()!r} is neither key = value nor a [section] header"
        elif isinstance(err, (configparser.DuplicateOptionError,
                              configparser.DuplicateSectionError)):
            reason = str(err).split(": ", 1)[-1].split(" in section")[0].split(" (")[0]
            reason = f"duplicate {reason}"
        where = f"{path}:{line}" if line else str(path)
        raise IniError(
            f"{where}: cannot be parsed ({reason}); fix that line, or move the file away and "
            "run `alembic-repair bootstrap` to write a fresh one"
        ) from None
    except UnicodeDecodeError as err:
        raise IniError(f"{path}: not a UTF-8 text file; restore alembic.ini") from err
    except OSError as err:  # a folder named alembic.ini, a file we may not read
        raise IniError(
            f"{path}: cannot be read ({err.strerror}); make it a readable file, or move it "
            "away and run `alembic-repair bootstrap` to write a fresh one") from None
    if not parser.has_section("alembic"):
        raise IniError(
            f"{path}: no [alembic] section; add one with script_location, or move the file "
            "away and run `alembic-repair bootstrap`"
        )
    return parser


def _line_of(path: Path, key: str) -> int | None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.split("=", 1)[0].strip() == key:
            return number
    return None


def _script_location(ini_path: Path, ini: configparser.ConfigParser | None) -> Path:
    if ini is None:
        return ini_path.parent / DEFAULT_SCRIPT_DIR
    raw = ini.get("alembic", "script_location", raw=True, fallback=None)
    if not raw:
        raise IniError(
            f"{ini_path}: [alembic] has no script_location; add "
            "`script_location = %(here)s/alembic`"
        )
    try:
        value = ini.get("alembic", "script_location")
    except configparser.InterpolationError as err:
        raise IniError(
            f"{ini_path}:{_line_of(ini_path, 'script_location')}: script_location has a bad "
            "'%' interpolation; write %(here)s/alembic"
        ) from err
    location = Path(value).expanduser()
    if location.is_absolute():
        return location
    # Alembic resolves a relative script_location against the working directory (a classic
    # source of "Path doesn't exist"); we prefer the folder beside alembic.ini when that exists.
    beside = ini_path.parent / location
    cwd = Path.cwd() / location
    return beside if beside.is_dir() or not cwd.is_dir() else cwd


def _ini_url(ini_path: Path, ini: configparser.ConfigParser | None) -> str | None:
    if ini is None or not ini.has_option("alembic", "sqlalchemy.url"):
        return None
    missing = None
    try:
        value = ini.get("alembic", "sqlalchemy.url")
    except configparser.InterpolationMissingOptionError as err:
        missing = err.reference  # no stray '%': an option env.py may set at run time
    except configparser.InterpolationError:
        line = _line_of(ini_path, "sqlalchemy.url")
        raise UrlError(
            f"{ini_path}:{line}: sqlalchemy.url contains a '%' that alembic.ini reads as "
            "interpolation; write each '%' as '%%', or remove the line and set DATABASE_URL"
        ) from None  # ConfigParser's own message quotes the raw value, password included
    if missing is not None:  # raised outside the except: no InterpolationError context
        raw = ini.get("alembic", "sqlalchemy.url", raw=True)
        at = raw.lower().find(f"%({missing})")  # ConfigParser lower-cases the name
        missing = raw[at + 2:at + 2 + len(missing)] if at >= 0 else missing
        raise UrlError(
            f"{ini_path}:{_line_of(ini_path, 'sqlalchemy.url')}: sqlalchemy.url uses "
            f"%({missing})s, which alembic.ini does not define (env.py may set it when alembic "
            "runs); the URL cannot be known without it: set DATABASE_URL or pass --url")
    value = value.strip()
    if not value or value in PLACEHOLDER_URLS or "${" in value:
        return None
    return value


def _check_url(url: str, source: str) -> DatabaseUrl:
    try:
        parsed = DatabaseUrl(url)
    except UrlError:
        shown = mask_url(url) if ("@" in url or ":" in url) else url
        raise UrlError(
            f"{source}: {shown!r} is not a database URL "
            "(expected dialect+driver://user:password@host:port/database)"
        ) from None
    if parsed.parsed.host and "@" in parsed.parsed.host:
        raise UrlError(
            f"{source}: the password (or user) in the database URL contains a raw '@'; write it "
            "URL-encoded as %40 (and ':' as %3A, '/' as %2F, '%' as %25)"
        )
    return parsed


def _check_ini_url(ini_path: Path, value: str) -> DatabaseUrl:
    """`_check_url` of the ini's URL, first refusing credentials written as they are (a raw
    '@' in the password): the parse would cut the password elsewhere, and a message showing
    the URL "masked" would show the rest of it."""
    if encode_credentials(value) is not None:
        raise UrlError(
            f"{ini_path}:{_line_of(ini_path, 'sqlalchemy.url')}: the password (or user) in "
            "sqlalchemy.url is not URL-encoded; write '@' as %40, ':' as %3A, '/' as %2F and "
            "'%' as %25 (then each '%' as '%%' for alembic.ini), or remove the line and set "
            "DATABASE_URL")
    return _check_url(value, str(ini_path))


def ini_url_problem(ini_path: Path, ini: configparser.ConfigParser | None) -> UrlError | None:
    """Why plain Alembic cannot use the ini's ``sqlalchemy.url`` (a '%' ConfigParser reads as
    interpolation, credentials not URL-encoded), or None: reported even when the URL in use
    comes from elsewhere, since `alembic` run without DATABASE_URL reads the ini's. An option
    the ini does not define (``%(DB_USER)s``, set by env.py) is none: that URL is not ours."""
    try:
        if ini is not None and ini.has_option("alembic", "sqlalchemy.url"):
            ini.get("alembic", "sqlalchemy.url")
    except configparser.InterpolationMissingOptionError:
        return None  # options env.py sets (from the environment): normal, not a stray '%'
    except configparser.InterpolationError:
        pass  # `_ini_url` says it
    try:
        value = _ini_url(ini_path, ini)
        if value:
            _check_ini_url(ini_path, value)
    except UrlError as err:
        return err
    return None


def require_ini_url(project: Project) -> Project:
    """`project`, or the UrlError plain Alembic meets in its alembic.ini's ``sqlalchemy.url``
    (`ini_url_problem`): a strict discovery with the URL from elsewhere never reads that line,
    and fix must not call healthy what doctor reports (AR107)."""
    if project.ini_path.is_file():
        problem = ini_url_problem(project.ini_path, read_ini(project.ini_path))
        if problem is not None:
            raise problem
    return project


def ini_url_as_meant(ini_path: Path, ini: configparser.ConfigParser | None) -> str | None:
    """The URL the ini's ``sqlalchemy.url`` means when plain Alembic cannot read it (a raw '%'
    or '@' of a password written by ``sed``): its raw text, credentials percent-encoded.
    None when there is none or it still is no URL."""
    if ini is None or not ini.has_option("alembic", "sqlalchemy.url"):
        return None
    raw = ini.get("alembic", "sqlalchemy.url", raw=True).strip()
    if "%(" in raw.replace("%%", "").replace("%(here)s", ""):
        return None  # an option (%(DB_USER)s) only env.py knows: no URL is meant literally
    raw = raw.replace("%(here)s", str(ini_path.parent)).replace("%%", "%")
    try:
        return str(_check_url(encode_credentials(raw) or raw, str(ini_path)))
    except UrlError:
        return None


def _as_meant(root: Path, ini_path: Path, ini: configparser.ConfigParser | None,
              explicit: str | None, environ: Mapping[str, str]
              ) -> tuple[DatabaseUrl, str, list[str]]:
    """The URL doctor diagnoses when the ini's cannot be read as written: the one it means
    (never the SQLite default beside a MySQL project), the problem itself being reported."""
    meant = None if explicit or environ.get("DATABASE_URL") else ini_url_as_meant(ini_path, ini)
    if meant is None:
        return resolve_url(root, ini_path, None, explicit, environ)
    return DatabaseUrl(meant), ini_path.name, [
        f"{ini_path.name}: sqlalchemy.url read as meant; plain alembic cannot read it as written"]


def resolve_url(
    root: Path,
    ini_path: Path,
    ini: configparser.ConfigParser | None,
    explicit: str | None,
    environ: Mapping[str, str],
) -> tuple[DatabaseUrl, str, list[str]]:
    """(url, parsed once here, where it came from, notes on sources that were skipped)."""
    notes: list[str] = []
    if explicit:
        return _check_url(explicit, "--url"), "--url", notes
    if environ.get("DATABASE_URL"):
        return _check_url(environ["DATABASE_URL"], "DATABASE_URL"), "DATABASE_URL", notes
    compose_file = find_compose_file(root)
    if compose_file is not None:
        found = database_from_compose(compose_file, environ)
        if found is not None and found.reachable:
            rel = os.path.relpath(found.compose_file, root)
            return DatabaseUrl(found.url), \
                f"{rel} (service {found.service})", notes
        if found is not None:
            notes.append(
                f"{found.compose_file.name}: service {found.service!r} is not reachable by name "
                "from here (not inside the compose network); set DATABASE_URL to use it"
            )
    ini_url = _ini_url(ini_path, ini)
    if ini_url:
        return _check_ini_url(ini_path, ini_url), ini_path.name, notes
    stored = root / STATE_DIR / URL_FILE
    if stored.is_file():
        source = f"{STATE_DIR}/{URL_FILE}"
        try:
            value = stored.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UrlError(f"{stored}: cannot be read ({type(err).__name__}); fix its "
                           "permissions or set DATABASE_URL") from None
        if value:
            return _check_url(value, source), source, notes
    return (DatabaseUrl(f"sqlite:///{root / DEFAULT_DB_FILE}"),
            "default (SQLite in the project folder)", notes)


def store_url(root: Path, url: str) -> Path:
    """Write `url` (it holds a password) to ``.alembic_repair/database_url``, 0600 in the 0700
    folder, atomically: the URL source `resolve_url` reads after alembic.ini."""
    from ..private import private_dir

    folder = private_dir(root / STATE_DIR)
    path = folder / URL_FILE
    temporary = folder / f".{URL_FILE}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(url + "\n")
    os.replace(temporary, path)
    return path


def tool_settings(text: str) -> object:
    """``[tool.alembic_repair]`` of a pyproject.toml's `text` ({} when it has none; not
    necessarily a table); a ValueError (TOMLDecodeError) when it is no TOML. The one place
    TOML is read."""
    tool = tomllib.loads(text).get("tool", {})
    return tool.get("alembic_repair", {}) if isinstance(tool, dict) else {}


def _tool_section(root: Path) -> tuple[Path, dict[str, object]]:
    """``[tool.alembic_repair]`` of the project's pyproject.toml (empty when there is none),
    or a PyprojectError naming the file: the one reader `models` and `ignore_tables` share."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return path, {}
    try:
        section = tool_settings(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise PyprojectError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8"
                             ) from None
    except tomllib.TOMLDecodeError as err:
        reason = (str(err).splitlines() or ["?"])[0]
        raise PyprojectError(f"{path}: not valid TOML ({reason}); fix the file") from None
    except OSError as err:
        raise PyprojectError(f"{path}: cannot read it ({type(err).__name__}); fix its "
                             "permissions") from None
    if not isinstance(section, dict):
        raise PyprojectError(f"{path}: [tool.alembic_repair] must be a table; fix the file")
    return path, section


def models_from_pyproject(root: Path) -> str | None:
    """``[tool.alembic_repair] models = "pkg.module:Base"`` from the project's pyproject.toml."""
    value = _tool_section(root)[1].get("models")
    return str(value) if value else None


def setup_from_pyproject(root: Path) -> str | None:
    """``[tool.alembic_repair] setup = "module:attr"``: the set-up the application runs before
    Alembic, which the replay runs first on its empty scratch database. A MetaData or a
    declarative Base gets ``create_all``; a callable is called with one argument, the scratch
    database's URL as a string (``def setup(url: str) -> None``)."""
    path, section = _tool_section(root)
    value = section.get("setup")
    if value is None:
        return None
    module, colon, attr = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not colon or not all(p.isidentifier() for p in (*module.split("."), *attr.split("."))):
        raise PyprojectError(f"{path}: [tool.alembic_repair] setup must be \"module:attr\" (a "
                             'MetaData, a declarative Base or a function of the database URL), '
                             'e.g. setup = "myapp.db:Base"')
    return str(value)


def ignore_tables_from_pyproject(root: Path) -> tuple[str, ...]:
    """``[tool.alembic_repair] ignore_tables = ["legacy", ...]``: tables nobody's models or
    revisions own, kept out of autogenerate (env_filter) and of doctor's comparisons."""
    path, section = _tool_section(root)
    value = section.get("ignore_tables", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PyprojectError(f"{path}: [tool.alembic_repair] ignore_tables must be a list of "
                             'table names, e.g. ignore_tables = ["legacy_audit"]')
    return tuple(dict.fromkeys(value))
