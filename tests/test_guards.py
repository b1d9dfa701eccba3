"""The --allow-remote guard judges the host the driver will really connect to.

Every decision here is a pure function of the URL (`guards.decide`): nothing connects, except
the CLI tests, whose subprocess carries a socket filter that fails any connection to an
address other than loopback (so even a broken guard cannot send traffic elsewhere).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from helpers import cli, tree_digest, write_project
from hypothesis import given
from hypothesis import strategies as st
from pymysql.connections import Connection
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

from alembic_repair import guards
from alembic_repair.database import engine_for, is_loopback
from alembic_repair.errors import RefusedUnsafe, UrlError

PASSWORD = "s3cr3t-Pw"
LOOPBACK = ["localhost", "127.0.0.1", "127.0.0.2", "127.1", "::1", "0:0:0:0:0:0:0:1",
            "::ffff:127.0.0.1", "LOCALHOST", "localhost."]
REMOTE = ["192.0.2.2", "203.0.113.7", "10.0.0.1", "db.example.com", "2001:db8::1",
          "localhost.example.com", "127.0.0.1.nip.io", "mysql"]
SOCKET = "/tmp/alembic-repair-test-mysqld.sock"

# An option file per (host, socket) the driver may read; [client] is PyMySQL's default group.
OPTION_FILES = {
    "remote": "[client]\nhost=192.0.2.9\nport=3307\n",
    "loopback": "[client]\nhost=127.0.0.1\n",
    "socket": f"[client]\nsocket={SOCKET}\nhost=192.0.2.9\n",
    "none": "[client]\nuser=app\n",
    "groups": "[client]\nhost=127.0.0.1\n[app]\nhost=192.0.2.9\n",
}


@pytest.fixture(scope="module")
def cnf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cnf")
    paths = {}
    for name, body in OPTION_FILES.items():
        (folder / f"{name}.cnf").write_text(body)
        paths[name] = str(folder / f"{name}.cnf")
    paths["missing"] = str(folder / "missing.cnf")
    return paths


def pymysql_url(host: str | None, port: int | None, query: dict[str, str]) -> str:
    return URL.create("mysql+pymysql", username="app", password=PASSWORD, host=host, port=port,
                      database="db", query=query).render_as_string(hide_password=False)


# (url or a template using {cnf[...]}, expected local, text the place must contain)
TABLE = [
    # host in the netloc
    ("mysql+pymysql://app:pw@localhost:3306/db", True, "localhost:3306"),
    ("mysql+pymysql://app:pw@127.0.0.1/db", True, "127.0.0.1:3306"),
    ("mysql+pymysql://app:pw@127.0.0.2:3307/db", True, "127.0.0.2:3307"),
    ("mysql+pymysql://app:pw@[::1]:3306/db", True, "[::1]:3306"),
    ("mysql+pymysql://app:pw@/db", True, "localhost:3306"),
    ("mysql+pymysql://app:pw@192.0.2.2/db", False, "192.0.2.2:3306"),
    ("mysql+pymysql://app:pw@db.example.com:3306/db", False, "db.example.com:3306"),
    ("mysql+pymysql://app:pw@[2001:db8::1]:3306/db", False, "[2001:db8::1]:3306"),
    ("mysql+pymysql://app:pw@127.0.0.1.nip.io/db", False, "127.0.0.1.nip.io"),
    ("mariadb+pymysql://app:pw@127.0.0.1/db", True, "127.0.0.1:3306"),
    # ?host= overrides the netloc (the bypass of issue 10), both ways
    ("mysql+pymysql://app:pw@localhost:3306/db?host=192.0.2.2", False, "192.0.2.2:3306"),
    ("mysql+pymysql://app:pw@db.example.com/db?host=127.0.0.1", True, "127.0.0.1:3306"),
    ("mysql+pymysql://app:pw@localhost/db?host=%3A%3A1", True, "[::1]:3306"),
    # repeated keys: SQLAlchemy hands the driver a tuple; never guessed
    ("mysql+pymysql://app:pw@localhost/db?host=127.0.0.1&host=192.0.2.2", False, "localhost"),
    ("mysql+pymysql://app:pw@localhost/db?host=127.0.0.1&host=127.0.0.2", False, "localhost"),
    # a Unix socket wins over any host (PyMySQL connects AF_UNIX)
    (f"mysql+pymysql://app:pw@db.example.com/db?unix_socket={SOCKET}", True, SOCKET),
    (f"mysql+pymysql://app:pw@localhost/db?host=192.0.2.2&unix_socket={SOCKET}", True, SOCKET),
    # ports, source address and TLS options do not move the destination
    ("mysql+pymysql://app:pw@192.0.2.2:13306/db?ssl_ca=/nonexistent/ca.pem", False,
     "192.0.2.2:13306"),
    ("mysql+pymysql://app:pw@127.0.0.1/db?bind_address=192.0.2.5&ssl_check_hostname=false",
     True, "127.0.0.1:3306"),
    # option files, read as PyMySQL reads them: they fill only what the URL leaves empty
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[remote]}", False, "192.0.2.9:3307"),
    ("mysql+pymysql://app:pw@localhost/db?read_default_file={cnf[remote]}", True,
     "localhost:3307"),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[loopback]}", True, "127.0.0.1:3306"),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[socket]}", True, SOCKET),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[none]}", True, "localhost:3306"),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[missing]}", True, "localhost:3306"),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[groups]}", True, "127.0.0.1:3306"),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[groups]}&read_default_group=app",
     False, "192.0.2.9:3306"),
    # mysqlclient: localhost is its socket, another host ignores unix_socket, option files
    # are read by libmysqlclient (not provable here)
    ("mysql://app:pw@localhost/db", True, "localhost"),
    ("mysql+mysqldb://app:pw@192.0.2.2/db", False, "192.0.2.2:3306"),
    ("mysql+mysqldb://app:pw@192.0.2.2/db?unix_socket=/run/mysqld/mysqld.sock", False,
     "192.0.2.2"),
    ("mysql+mysqldb://app:pw@127.0.0.1/db?read_default_file={cnf[loopback]}", False,
     "127.0.0.1"),
    # SQLite: every form is a local file (or memory)
    ("sqlite://", True, "in-memory"),
    ("sqlite:///app.db", True, "app.db"),
    ("sqlite:////var/lib/app/app.db", True, "/var/lib/app/app.db"),
    ("sqlite+pysqlite:///file:app.db?mode=ro&uri=true", True, "app.db"),
    # PostgreSQL through libpq: hostaddr wins, sockets are local, every listed host counts
    ("postgresql+psycopg2://u:pw@localhost/db", True, "localhost"),
    ("postgresql+psycopg2://u:pw@/db", True, "socket"),
    ("postgresql+psycopg2://u:pw@/db?host=/run/postgresql", True, "/run/postgresql"),
    ("postgresql+psycopg2://u:pw@localhost/db?hostaddr=192.0.2.1", False, "192.0.2.1"),
    ("postgresql+psycopg2://u:pw@db.example.com/db?hostaddr=127.0.0.1", True, "127.0.0.1"),
    ("postgresql+psycopg2://u:pw@/db?host=localhost:5432&host=192.0.2.3:5433", False,
     "192.0.2.3:5433"),
    ("postgresql+psycopg2://u:pw@localhost/db?service=prod", False, "localhost"),
    ("postgresql://u:pw@127.0.0.1/db", True, "127.0.0.1"),
    # other drivers: local only when nothing in the URL could move them
    ("mysql+mysqlconnector://app:pw@127.0.0.1/db", True, "127.0.0.1"),
    ("mysql+mysqlconnector://app:pw@192.0.2.2/db", False, "192.0.2.2"),
    ("mysql+mysqlconnector://app:pw@127.0.0.1/db?option_files=/etc/my.cnf", False, "127.0.0.1"),
    ("nosuchdb+nodriver://app:pw@127.0.0.1/db", False, "127.0.0.1"),
    # an engine plugin may rewrite the URL
    ("mysql+pymysql://app:pw@127.0.0.1/db?plugin=anything", False, "127.0.0.1"),
]


@pytest.mark.parametrize(("template", "local", "place"), TABLE, ids=[t[0] for t in TABLE])
def test_decision_for_every_url_form(template: str, local: bool, place: str,
                                     cnf: dict[str, str]) -> None:
    url = template.format(cnf=cnf)
    found = guards.decide(url)
    assert found.local is local, found
    assert guards.is_local(url) is local
    assert place in found.place, found
    assert found.error == ""
    assert "pw" not in found.place and "pw" not in found.why


@pytest.mark.parametrize("template", [t[0] for t in TABLE if not t[1]])
def test_refusal_is_exit_4_naming_the_host_not_the_password(template: str,
                                                            cnf: dict[str, str]) -> None:
    url = template.format(cnf=cnf).replace(":pw@", f":{PASSWORD}@")
    project = _Project(url)
    with pytest.raises(RefusedUnsafe) as refused:
        guards.require_local(False, project, "trash drop x")  # type: ignore[arg-type]
    message = str(refused.value)
    assert refused.value.exit_code == 4
    assert message.startswith("trash drop x: refused, ")
    assert guards.decide(url).place in message
    assert PASSWORD not in message and "\n" not in message
    guards.require_local(True, project, "trash drop x")  # type: ignore[arg-type]


def test_options_the_driver_rejects_are_a_url_error() -> None:
    # PyMySQL refuses a str port before opening any socket: exit 2, not a refusal or a crash
    url = "mysql+pymysql://app:pw@localhost/db?port=3307"
    assert "port should be of type int" in guards.decide(url).error
    with pytest.raises(UrlError) as bad:
        guards.require_local(True, _Project(url), "fix")  # type: ignore[arg-type]
    assert bad.value.exit_code == 2


class _Project:
    """The two attributes the guard reads from a Project."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.url_source = "DATABASE_URL"


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_spellings(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", [*REMOTE, "", "[", "127.0.0.1 x", "0x7f.1.example"])
def test_non_loopback_spellings(host: str) -> None:
    assert not is_loopback(host)


# -- the guard and the engine we build can never disagree --------------------------------------


class _Stop(Exception):
    pass


@pytest.mark.parametrize("template", [t[0] for t in TABLE if t[0].startswith("mysql+pymysql")
                                      and "plugin" not in t[0] and "&host=" not in t[0]])
def test_engine_hands_the_driver_what_the_guard_judged(template: str,
                                                       cnf: dict[str, str]) -> None:
    """The keywords our own engine passes to PyMySQL (captured at do_connect, before any
    socket) give the same destination the guard judged."""
    url = make_url(template.format(cnf=cnf))
    engine = engine_for(url)
    captured: dict[str, object] = {}

    @event.listens_for(engine, "do_connect", insert=True)
    def _capture(_dialect: object, _record: object, _cargs: object,
                 cparams: dict[str, object]) -> None:
        captured.update(cparams)
        raise _Stop

    with pytest.raises(_Stop):
        engine.connect()
    engine.dispose()
    keys = ("host", "port", "unix_socket", "read_default_file", "read_default_group")
    conn = Connection(**{k: captured[k] for k in keys if k in captured}, defer_connect=True,
                      ssl_disabled=True)
    place = guards.decide(url).place
    if conn.unix_socket:
        assert place.startswith(f"Unix socket {conn.unix_socket}")
    else:
        host = f"[{conn.host}]" if ":" in conn.host else conn.host
        assert place == f"{host}:{conn.port}"


# -- property: whatever the URL, a non-loopback destination is refused --------------------------

HOSTS = st.sampled_from(LOOPBACK[:7] + REMOTE)
EXTRA = {"ssl_ca": "/x/ca.pem", "bind_address": "192.0.2.5", "charset": "utf8mb4",
         "connect_timeout": "5"}  # options that must not move the destination


@given(netloc=st.none() | HOSTS, query_host=st.none() | HOSTS,
       socket=st.sampled_from([None, SOCKET]),
       option=st.sampled_from([None, "remote", "loopback", "socket", "none", "groups",
                               "groups:app"]),
       port=st.sampled_from([None, 3306, 13306]),
       extra=st.sets(st.sampled_from(sorted(EXTRA))).map(lambda keys: {k: EXTRA[k]
                                                                         for k in keys}))
def test_property_effective_host_decides(netloc: str | None, query_host: str | None,
                                         socket: str | None, option: str | None,
                                         port: int | None, extra: dict[str, str],
                                         cnf: dict[str, str]) -> None:
    """A model of PyMySQL (query beats netloc, a socket beats any host, an option file only
    fills what is still empty) against the guard: loopback accepted, anything else refused."""
    query: dict[str, str] = dict(extra)
    file_host = file_socket = None
    if query_host is not None:
        query["host"] = query_host
    if socket is not None:
        query["unix_socket"] = socket
    if option is not None:
        name, _, group = option.partition(":")
        query["read_default_file"] = cnf[name]
        if group:
            query["read_default_group"] = group
        section = group or "client"
        for line in _section(OPTION_FILES[name], section):
            key, _, value = line.partition("=")
            file_host = value if key == "host" else file_host
            file_socket = value if key == "socket" else file_socket
    url = pymysql_url(netloc, port, query)
    host = query_host if query_host is not None else netloc
    host = host or file_host or "localhost"
    local = bool(socket or file_socket) or host.lower().rstrip(".") in {
        h.lower().rstrip(".") for h in LOOPBACK}
    found = guards.decide(url)
    assert found.local is local, (url, found)
    if not local:
        assert host in found.place
        with pytest.raises(RefusedUnsafe):
            guards.require_local(False, _Project(url), "drop")  # type: ignore[arg-type]


def _section(body: str, name: str) -> list[str]:
    lines, inside = [], False
    for line in body.splitlines():
        if line.startswith("["):
            inside = line == f"[{name}]"
        elif inside:
            lines.append(line)
    return lines


# -- through the CLI: refused before any connection, nothing changed ---------------------------

LOOPBACK_ONLY = textwrap.dedent('''
    """Test harness: any connection to an address other than loopback fails loudly."""
    import ipaddress
    import socket

    _connect = socket.socket.connect


    def _guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(str(address[0]).split("%")[0])
            mapped = getattr(ip, "ipv4_mapped", None)
            if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
                raise OSError(f"NON-LOOPBACK CONNECTION BLOCKED BY THE TEST: {address[0]}")
        return _connect(self, address)


    socket.socket.connect = _guarded
''')


@pytest.fixture
def loopback_only(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(LOOPBACK_ONLY)
    paths = [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def test_cli_trash_drop_with_query_host_is_refused(tmp_path: Path,
                                                   loopback_only: dict[str, str]) -> None:
    root = write_project(tmp_path / "proj")
    before = tree_digest(root)
    url = f"mysql+pymysql://app:{PASSWORD}@localhost:3306/db?host=192.0.2.2"
    run = cli("trash", "drop", "x", "--yes", cwd=root, url=url, env=loopback_only, timeout=60)
    assert run.code == 4, run
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1, run
    assert run.stderr.startswith("error: trash drop x: refused, the database at 192.0.2.2:3306 "
                                 "is not on this machine (host= in the URL's query overrides "
                                 "'localhost'); nothing changed")
    assert PASSWORD not in run.output and "Traceback" not in run.output
    assert "BLOCKED BY THE TEST" not in run.output
    assert tree_digest(root) == before
    assert not (root / ".alembic_repair").exists()


def test_cli_option_file_naming_a_remote_host_is_refused(tmp_path: Path, cnf: dict[str, str],
                                                         loopback_only: dict[str, str]) -> None:
    root = write_project(tmp_path / "proj")
    before = tree_digest(root)
    url = pymysql_url(None, None, {"read_default_file": cnf["remote"]})
    run = cli("fix", "--yes", cwd=root, url=url, env=loopback_only, timeout=60)
    assert run.code == 4, run
    assert "the database at 192.0.2.9:3307 is not on this machine (host from option file" in (
        run.stderr)
    assert PASSWORD not in run.output and "Traceback" not in run.output
    assert "BLOCKED BY THE TEST" not in run.output
    assert tree_digest(root) == before


def test_cli_unix_socket_passes_the_guard(tmp_path: Path, loopback_only: dict[str, str]) -> None:
    """A socket is local even with a remote host beside it: the guard lets it through and the
    connection (to a socket that does not exist) fails with exit 3, not 4."""
    root = write_project(tmp_path / "proj")
    url = pymysql_url("192.0.2.2", None, {"unix_socket": str(tmp_path / "no.sock")})
    run = cli("trash", "drop", "x", "--yes", cwd=root, url=url, env=loopback_only, timeout=60)
    assert run.code == 3, run
    assert f"Unix socket {tmp_path / 'no.sock'}" in run.stderr
    assert "BLOCKED BY THE TEST" not in run.output and "Traceback" not in run.output
    assert PASSWORD not in run.output
