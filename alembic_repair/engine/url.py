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

__all__ = ["DatabaseUrl", "parse_url"]


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
