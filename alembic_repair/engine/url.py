"""The project's database URL, parsed once when the project is discovered.

`DatabaseUrl` is the URL's text exactly as resolved (it holds the password: print `masked`,
never the text) carrying SQLAlchemy's parse of it (`parsed`). It stays a `str` so that every
place that hands the URL on (Alembic's config, a subprocess, a comparison, JSON) keeps working
with the full text: ``str(URL)`` would hide the password, and an engine built from it could not
log in. Everything that needs the parts (host, driver, database) reads `parsed` (or
`parse_url`, which accepts either form) instead of parsing the text again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import UrlError
from ..masking import mask_url

__all__ = ["DatabaseUrl", "encode_credentials", "ini_url_fix", "parse_url"]


class DatabaseUrl(str):
    """A database URL's full text (password included) and its parse; immutable."""

    parsed: URL

    def __new__(cls, value: str | URL) -> DatabaseUrl:
        if isinstance(value, DatabaseUrl):
            return value
        if isinstance(value, URL):
            parsed, text = value, value.render_as_string(hide_password=False)
        else:
            try:
                parsed, text = make_url(value), value
            except (ArgumentError, ValueError):
                raise UrlError("the database URL cannot be parsed; fix it (see --url / "
                               "DATABASE_URL)") from None
        self = super().__new__(cls, text)
        self.__dict__["parsed"] = parsed
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"DatabaseUrl is immutable (cannot set {name})")

    def __repr__(self) -> str:  # a repr lands in tracebacks and logs: never the password
        return f"DatabaseUrl({self.masked!r})"

    def __reduce__(self) -> tuple[type[DatabaseUrl], tuple[str]]:
        return DatabaseUrl, (str(self),)

    @property
    def backend(self) -> str:
        """The dialect's name: ``sqlite``, ``mysql``, ``mariadb``..."""
        return self.parsed.get_backend_name()

    @property
    def masked(self) -> str:
        """The URL with its password replaced by ``***``: the only form to print."""
        return mask_url(self)


def parse_url(url: str | URL) -> URL:
    """SQLAlchemy's `URL` of `url`: the parse a `DatabaseUrl` carries, else parsed now (text
    from elsewhere: a message's URL, a test's). Raises what `make_url` raises."""
    if isinstance(url, URL):
        return url
    if isinstance(url, DatabaseUrl):
        return url.parsed
    return make_url(url)


def encode_credentials(raw: str) -> str | None:
    """`raw` with its user and password percent-encoded, when they were written as they are
    (``sed`` of a password into alembic.ini): a raw '@' in the password makes SQLAlchemy read
    part of it as the host. Only an '@' in the authority (SQLAlchemy's host: after the first
    '@', before the next '/' or '?') is the password's; an '@' in the database or the query is
    theirs, and SQLAlchemy's reading stands (None). The password then ends at the authority's
    last '@'. A URL SQLAlchemy cannot read at all (a '/' or ':' after a raw '@' of the
    password) is read with the password ending at the last '@'. None also when `raw` has no
    credentials, or parses as written (a '%XX' in it is an escape, as render_as_string
    writes)."""
    scheme, sep, rest = raw.partition("://")
    first = rest.find("@")
    if not sep or not scheme or first < 0 or rest.startswith("/"):
        return None
    try:
        read: URL | None = make_url(raw)
    except (ArgumentError, ValueError):
        read = None
    tail = rest[first + 1:]
    authority = tail[:min([i for i in (tail.find("/"), tail.find("?")) if i >= 0] or
                          [len(tail)])]
    if "@" in authority:
        end = first + 1 + authority.rindex("@")
    elif read is None:
        end = rest.rindex("@")
    else:
        return None
    userinfo, hostpart = rest[:end], rest[end + 1:]
    user, _, password = userinfo.partition(":")
    try:
        meant = make_url(f"{scheme}://{hostpart}")
    except (ArgumentError, ValueError):
        return None
    return meant.set(username=user, password=password or None).render_as_string(
        hide_password=False)


def ini_url_fix(raw: str) -> str | None:
    """The value of alembic.ini's ``sqlalchemy.url`` that makes plain Alembic (ConfigParser's
    interpolation, then SQLAlchemy's parse) read the URL `raw` means: credentials
    percent-encoded (`encode_credentials`), then each '%' doubled. None when `raw` is right
    already (or no spelling can be told)."""
    from configparser import ConfigParser, Error

    url = encode_credentials(raw) or raw
    value = url.replace("%%", "\0").replace("%(", "\1").replace("%", "%%")
    value = value.replace("\0", "%%").replace("\1", "%(")
    if value == raw:
        return None
    parser = ConfigParser()
    parser.read_string("[alembic]\nhere = .\n")
    parser.set("alembic", "sqlalchemy.url", value)
    try:
        read = parser.get("alembic", "sqlalchemy.url")
        make_url(read)
    except (Error, ArgumentError, ValueError):
        return None
    return value
