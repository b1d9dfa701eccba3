"""The database a Docker Compose file describes, read from its MySQL/MariaDB service.

In a Dev Container the backend reaches the database by the compose service name, with the
credentials in that service's ``MYSQL_*`` (or ``MARIADB_*``) variables. We only use this source
when the service name resolves, i.e. when we are inside that compose network; elsewhere the
published port belongs to whoever runs the stack and the user should say ``DATABASE_URL``.

The same service's root password (`admin_from_compose`) is read only to create scratch
schemas for an account that may not (scratch.py); it is never printed or stored.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from ..errors import ConfigError

COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
                  r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class ComposeDatabase:
    """The MySQL-family service found in a compose file."""

    compose_file: Path
    service: str
    url: URL
    reachable: bool


def find_compose_file(root: Path) -> Path | None:
    for folder in (root, root / ".devcontainer", root.parent):
        for name in COMPOSE_NAMES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a ``.env`` file (quotes stripped, comments and blanks ignored)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _substitute(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        default = match.group("default")
        found = env.get(name)
        return found if found not in (None, "") else (default or "")

    return _VAR.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


def _environment(service: Mapping[str, Any], base: Path, env: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    env_files = service.get("env_file") or []
    for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
        path = entry.get("path") if isinstance(entry, dict) else entry
        if path:
            values.update(read_dotenv(base / str(path)))
    raw = service.get("environment") or {}
    items = raw.items() if isinstance(raw, dict) else (
        item.partition("=")[::2] for item in raw if isinstance(item, str)
    )
    for key, value in items:
        values[str(key)] = _substitute("" if value is None else str(value), env)
    return values


def _is_mysql_service(name: str, service: Mapping[str, Any]) -> bool:
    image = str(service.get("image") or "").lower()
    return any(word in image for word in ("mysql", "mariadb", "percona")) or name in (
        "mysql", "mariadb", "db"
    ) and bool(service.get("environment"))


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


def _mysql_service(
    compose_file: Path, environ: Mapping[str, str] | None
) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """(name, service, its variables) of the first MySQL/MariaDB service, or None."""
    import yaml  # only projects with a compose file pay for it

    try:
        document = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{compose_file}:{mark.line + 1}" if mark else str(compose_file)
        raise ConfigError(
            f"{where}: not valid YAML ({getattr(err, 'problem', err)}); fix the file or set "
            "DATABASE_URL"
        ) from err
    services = (document or {}).get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict):
        return None
    env = {**read_dotenv(compose_file.parent / ".env"), **(environ or os.environ)}
    for name, service in services.items():
        if isinstance(service, dict) and _is_mysql_service(str(name), service):
            return str(name), service, _environment(service, compose_file.parent, env)
    return None


def _getter(variables: dict[str, str]) -> Callable[[str], str | None]:
    def get(key: str) -> str | None:
        return variables.get(f"MYSQL_{key}") or variables.get(f"MARIADB_{key}")

    return get


def database_from_compose(
    compose_file: Path, environ: Mapping[str, str] | None = None
) -> ComposeDatabase | None:
    """The first MySQL/MariaDB service of `compose_file` as a URL, or None when there is none."""
    found = _mysql_service(compose_file, environ)
    if found is None:
        return None
    name, service, variables = found
    get = _getter(variables)
    user, password = get("USER"), get("PASSWORD")
    if not user:
        user, password = "root", get("ROOT_PASSWORD")
    host = str(service.get("hostname") or name)
    url = URL.create(
        "mysql+pymysql",
        username=user,
        password=password or None,
        host=host,
        port=3306,
        database=get("DATABASE"),
        query={"charset": "utf8mb4"},
    )
    return ComposeDatabase(compose_file, name, url, reachable=_resolves(host))


@dataclass(frozen=True)
class AdminLogin:
    """The server's root password a compose file declares for its database service (the
    official images' ``MYSQL_ROOT_PASSWORD``/``MARIADB_ROOT_PASSWORD``, or an explicitly
    allowed empty one). Used only for scratch schemas (scratch.py); never printed."""

    compose_file: Path
    service: str
    hosts: frozenset[str]  # the names the service answers to on the compose network
    variable: str  # where the password came from, for messages
    password: str = field(repr=False)
    #: the host ports the service publishes (``ports: ["3307:3306"]``): on loopback, only a
    #: server on one of these is this service, not a tunnel to another server
    ports: frozenset[int] = frozenset()


_EMPTY_ALLOWED = ("MYSQL_ALLOW_EMPTY_PASSWORD", "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD",
                  "MARIADB_ALLOW_EMPTY_PASSWORD")


def admin_from_compose(
    compose_file: Path, environ: Mapping[str, str] | None = None
) -> AdminLogin | None:
    """The root login the compose file's database service declares, or None (none declared,
    a random one, or a password kept in a secret file we do not read)."""
    found = _mysql_service(compose_file, environ)
    if found is None:
        return None
    name, service, variables = found
    hosts = frozenset(str(h) for h in (name, service.get("hostname"),
                                       service.get("container_name")) if h)
    ports = published_ports(service.get("ports"))
    for variable in ("MYSQL_ROOT_PASSWORD", "MARIADB_ROOT_PASSWORD"):
        if variables.get(variable):
            return AdminLogin(compose_file, name, hosts, variable, variables[variable], ports)
    for variable in _EMPTY_ALLOWED:
        if variables.get(variable):  # the images' test: set and not empty
            return AdminLogin(compose_file, name, hosts, variable, "", ports)
    return None


def published_ports(entries: object) -> frozenset[int]:
    """The host ports of a service's ``ports:`` list (short ``[ip:]host:container[/proto]``
    and long ``{published: ...}`` forms); a container port alone publishes a random one."""
    found: set[int] = set()
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            host = str(entry.get("published", ""))
        else:
            parts = str(entry).split("/")[0].rsplit(":", 2)
            host = parts[-2] if len(parts) >= 2 else ""
        first, _, last = host.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            found.update(range(int(first), int(last or first) + 1))
    return frozenset(found)
