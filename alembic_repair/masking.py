"""Keeping passwords out of every line we print or log.

URLs are masked with SQLAlchemy's own renderer; free text (driver errors, tracebacks from the
user's env.py) is scrubbed of the password in every spelling it may take inside a URL.
"""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"


def _parse(url: str | URL) -> URL:
    """The URL's parse: the one a project's URL carries (``.parsed``), else made now."""
    parsed = getattr(url, "parsed", None)
    return parsed if isinstance(parsed, URL) else make_url(url)


def mask_url(url: str | URL) -> str:
    """`url` with its password replaced by ``***``; unparsable text is masked after the scheme."""
    text = str(url)
    if "://" in text and text.count("@") > 1:  # a raw '@' in the password: hide up to the last
        scheme, _, rest = text.partition("://")
        return f"{scheme}://{MASK}@{rest.rsplit('@', 1)[1]}"
    try:
        return _parse(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        text = str(url)
        scheme, sep, rest = text.partition("://")
        return f"{scheme}{sep}{MASK}" if sep else MASK


def password_of(url: str | URL | None) -> str | None:
    if url is None:
        return None
    try:
        return _parse(url).password
    except (ArgumentError, ValueError):
        return None


def redact(text: str, *urls: str | URL | None) -> str:
    """`text` with the passwords of `urls` removed: raw, URL-encoded, `%`-escaped, and as the
    escaped bytes a driver's repr shows."""
    for url in urls:
        password = password_of(url)
        if not password:
            continue
        spellings = {password, quote(password, safe=""), quote_plus(password)}
        for encoding in ("utf-8", "latin-1"):  # a driver may print the bytes it sent: b'p\xc3..'
            try:
                raw = password.encode(encoding)
            except UnicodeEncodeError:
                continue
            spellings.add(repr(raw)[2:-1])
        spellings |= {s.replace("%", "%%") for s in list(spellings)}
        for spelling in sorted(spellings, key=len, reverse=True):
            text = text.replace(spelling, MASK)
    return text
