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
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

from alembic_repair.data import guards
from alembic_repair.engine.database import engine_for
from alembic_repair.engine.endpoint import is_loopback
from alembic_repair.errors import RefusedUnsafe, UrlError

PASSWORD = "s3cr3t-Pw"
LOOPBACK = ["localhost", "127.0.0.1", "127.0.0.2", "127.1", "::1", "0:0:0:0:0:0:0:1",
            "::ffff:127.0.0.1", "LOCALHOST"]
#: Names a resolver may send to DNS (or a search domain) are never taken as this machine,
#: whatever /etc/hosts says today: only ``localhost`` and numeric literals are.
REMOTE = ["192.0.2.2", "203.0.113.7", "10.0.0.1", "db.example.com", "2001:db8::1",
          "localhost.example.com", "127.0.0.1.nip.io", "mysql", "localhost.",
          "localhost.localdomain", "ip6-localhost", "ip6-loopback"]
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
    # names only /etc/hosts or DNS could make local
    ("mysql+pymysql://app:pw@localhost./db", False, "localhost.:3306"),
    ("mysql+pymysql://app:pw@ip6-localhost/db", False, "ip6-localhost:3306"),
    ("mysql+pymysql://app:pw@localhost.localdomain/db", False, "localhost.localdomain:3306"),
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
    # drivers the project does not support (mysqlclient, libpq, ...): local only for
    # localhost or a loopback literal with no query key that could move them
    ("mysql://app:pw@localhost/db", True, "localhost:3306"),
    ("mysql+mysqldb://app:pw@127.0.0.1/db?charset=utf8mb4", True, "127.0.0.1:3306"),
    ("mysql+mysqldb://app:pw@192.0.2.2/db", False, "192.0.2.2:3306"),
    ("mysql+mysqldb://app:pw@localhost/db?unix_socket=/run/mysqld/mysqld.sock", False,
     "localhost"),
    ("mysql+mysqldb://app:pw@127.0.0.1/db?read_default_file={cnf[loopback]}", False,
     "127.0.0.1"),
    ("mysql+mysqldb://app:pw@/db", False, "localhost"),
    # SQLite: every form is a local file (or memory)
    ("sqlite://", True, "in-memory"),
    ("sqlite:///app.db", True, "app.db"),
    ("sqlite:////var/lib/app/app.db", True, "/var/lib/app/app.db"),
    ("sqlite+pysqlite:///file:app.db?mode=ro&uri=true", True, "app.db"),
    ("postgresql+psycopg2://u:pw@localhost/db", True, "localhost:5432"),
    ("postgresql+psycopg2://u:pw@localhost/db?connect_timeout=5", True, "localhost:5432"),
    ("postgresql+psycopg2://u:pw@/db", False, "localhost:5432"),
    ("postgresql+psycopg2://u:pw@/db?host=/run/postgresql", False, "localhost"),
    ("postgresql+psycopg2://u:pw@localhost/db?hostaddr=192.0.2.1", False, "localhost"),
    ("postgresql+psycopg2://u:pw@localhost/db?service=prod", False, "localhost"),
    ("postgresql://u:pw@127.0.0.1/db", True, "127.0.0.1:5432"),
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


SECRET = "S3cretXYZ"


# (query, text the one-line error holds): options that fail before any socket is opened
URL_ERRORS = [
    ("port=3307", "PyMySQL rejects the URL's options (port should be of type int)"),
    ("host=127.0.0.1&host=10.0.0.1", "the URL gives host= more than once"),
    ("host=127.0.0.1&host=127.0.0.2", "the URL gives host= more than once"),
    ("connect_timeout=abc", "SQLAlchemy cannot read the URL's options (invalid literal"),
    ("read_default_file={nohead}", "cannot read option file {nohead} (MissingSectionHeaderError)"),
    ("read_default_file=/etc/passwd",
     "cannot read option file /etc/passwd (MissingSectionHeaderError)"),
]


@pytest.mark.parametrize(("query", "says"), URL_ERRORS, ids=[q for q, _ in URL_ERRORS])
def test_options_the_driver_rejects_are_a_url_error(query: str, says: str,
                                                    tmp_path: Path) -> None:
    """Exit 2 and one line, whatever the driver or parser raised; configparser's text (which
    quotes the offending line: a password, /etc/passwd's first line) is never shown."""
    nohead = tmp_path / "nohead.cnf"
    nohead.write_text(f"password={SECRET}\nuser=app\n")
    url = f"mysql+pymysql://app:{PASSWORD}@localhost/db?{query.format(nohead=nohead)}"
    found = guards.decide(url)
    assert says.format(nohead=nohead) in found.error
    for allow_remote in (True, False):
        with pytest.raises(UrlError) as bad:
            guards.require_local(allow_remote, _Project(url), "fix")  # type: ignore[arg-type]
        message = str(bad.value)
        assert bad.value.exit_code == 2 and "\n" not in message
        assert SECRET not in message and PASSWORD not in message and "root:" not in message


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


KEYS = ("host", "port", "unix_socket", "read_default_file", "read_default_group")

# (url template, the keywords our engine hands PyMySQL, where the guard says it connects as
# (host, port, socket)): both written out, so neither side is computed by the code under test
ENGINE_TABLE = [
    ("mysql+pymysql://app:pw@localhost:3306/db", {"host": "localhost", "port": 3306},
     ("localhost", 3306, None)),
    ("mysql+pymysql://app:pw@/db", {}, ("localhost", 3306, None)),
    ("mysql+pymysql://app:pw@[::1]:3307/db", {"host": "::1", "port": 3307}, ("::1", 3307, None)),
    ("mysql+pymysql://app:pw@localhost:3306/db?host=192.0.2.2",
     {"host": "192.0.2.2", "port": 3306}, ("192.0.2.2", 3306, None)),
    (f"mysql+pymysql://app:pw@db.example.com/db?unix_socket={SOCKET}",
     {"host": "db.example.com", "unix_socket": SOCKET}, (None, None, SOCKET)),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[remote]}",
     {"read_default_file": "{cnf[remote]}"}, ("192.0.2.9", 3307, None)),
    ("mysql+pymysql://app:pw@localhost/db?read_default_file={cnf[remote]}",
     {"host": "localhost", "read_default_file": "{cnf[remote]}"}, ("localhost", 3307, None)),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[groups]}&read_default_group=app",
     {"read_default_file": "{cnf[groups]}", "read_default_group": "app"},
     ("192.0.2.9", 3306, None)),
    ("mysql+pymysql://app:pw@/db?read_default_file={cnf[socket]}",
     {"read_default_file": "{cnf[socket]}"}, (None, None, SOCKET)),
]


@pytest.mark.parametrize(("template", "handed", "endpoint"), ENGINE_TABLE,
                         ids=[t[0] for t in ENGINE_TABLE])
def test_engine_hands_the_driver_what_the_guard_judged(
        template: str, handed: dict[str, object], endpoint: tuple[object, object, object],
        cnf: dict[str, str]) -> None:
    """The keywords our own engine passes to PyMySQL (captured at do_connect, before any
    socket) and the guard's endpoint, each against a literal expectation."""
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
    expected = {k: v.format(cnf=cnf) if isinstance(v, str) else v for k, v in handed.items()}
    assert {k: captured[k] for k in KEYS if k in captured} == expected
    found = guards.decide(url)
    assert (found.host, found.port, found.socket) == endpoint, found


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
    local = bool(socket or file_socket) or host.lower() in {h.lower() for h in LOOPBACK}
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
