"""Scratch schemas on a MySQL/MariaDB server, and removing the ones a killed run left behind.

Replay (``_ar_replay_<stamp>_<hex>``) and restore (``_ar_restore_<stamp>_<hex>``) work in a
scratch schema on the user's server. A run that is killed cannot drop it, so each one is
*claimed*: before ``CREATE DATABASE`` the run takes the server-wide named lock
``GET_LOCK('alembic_repair:<schema>', 0)`` on a session that lives as long as the schema
(`claim`), and releases it only after the drop. The server releases a named lock when its
session ends, however the process ended (kill -9 closes the socket). So `sweep`, run before a
run creates its own scratch schema, drops exactly the scratch schemas whose lock it can take
itself: their creator is gone. A live run's schema (this process's or a concurrent one's, on
any host) is never touched, and a name that does not have our exact form is left alone.

Names of the form earlier versions used (``_ar_replay_<12 hex>``, ``_ar_restore_<stamp>_<6
hex>``) were never locked; they are removed when no table in them was created in the last
`LEGACY_AGE` seconds (those runs take seconds).

`created` makes one. An account that may not create databases (a Docker user with ``GRANT ALL
ON app.*`` only) gets it from the server's root when the project's compose file declares
root's password (``MYSQL_ROOT_PASSWORD``; `compose.admin_from_compose`): root, on the same host
and port, creates the schema and grants the account ALL on that one schema, and drops it and
revokes the grant afterwards; everything in it runs as the project's account. Otherwise the
error names the one GRANT that lets the account create every scratch schema and nothing else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from functools import partial

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import AlembicRepairError, ConfigError, PrivilegeMissing
from ..masking import redact
from .compose import AdminLogin, admin_from_compose, find_compose_file
from .database import engine_for
from .driver_errors import ACCESS_DENIED, driver_message
from .privileges import current_account, denied, spelled
from .project import Project

__all__ = ["SCRATCH_GRANT_ON", "ScratchDenied", "claim", "created", "new_name", "sweep"]

_STAMP = r"\d{8}T\d{6}"
_CURRENT = re.compile(rf"_ar_(?:replay|restore)_{_STAMP}_[0-9a-f]{{8}}")
_LEGACY = re.compile(rf"_ar_replay_[0-9a-f]{{12}}|_ar_restore_{_STAMP}_[0-9a-f]{{6}}")
#: A legacy (never locked) scratch schema with a table younger than this may be in use.
LEGACY_AGE = 600
_held: set[str] = set()  # the scratch schemas this process holds now


def new_name(kind: str) -> str:
    """A fresh scratch schema name: ``_ar_<kind>_<UTC stamp>_<8 hex>`` (kind: replay or
    restore; at most 36 characters)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"_ar_{kind}_{stamp}_{os.urandom(4).hex()}"


def lock_name(name: str) -> str:
    return f"alembic_repair:{name}"


def _get_lock(conn: Connection, name: str) -> bool:
    return conn.exec_driver_sql("SELECT GET_LOCK(%s, 0)", (lock_name(name),)).scalar() == 1


def _release(conn: Connection, name: str) -> None:
    with suppress(DBAPIError):  # the session is gone: so is the lock
        conn.exec_driver_sql("SELECT RELEASE_LOCK(%s)", (lock_name(name),))


@contextmanager
def claim(conn: Connection, name: str) -> Iterator[None]:
    """Hold scratch schema `name`'s lock on `conn` for the block; create the schema inside
    the block and drop it before the block ends. `conn` must stay open as long as the schema
    exists (its session holds the lock). Commits `conn`."""
    if not _get_lock(conn, name):
        raise AlembicRepairError(f"the scratch schema name {name} is in use by another run; "
                                 "run the command again")
    conn.commit()
    _held.add(name)
    try:
        yield
    finally:
        _held.discard(name)
        _release(conn, name)


def _legacy_stale(conn: Connection, name: str) -> bool:
    age = conn.exec_driver_sql(
        "SELECT TIMESTAMPDIFF(SECOND, MAX(CREATE_TIME), NOW()) FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s", (name,)).scalar()
    if age is not None:
        return int(age) >= LEGACY_AGE
    stamp = re.search(_STAMP, name)
    if stamp is None:
        return True  # an empty replay schema: its run died before the first table
    made = datetime.strptime(stamp.group(0), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - made).total_seconds() >= LEGACY_AGE


def sweep(conn: Connection) -> list[str]:
    """Drop the scratch schemas on `conn`'s server that no live run holds (see the module
    docstring); returns their names. Housekeeping: a schema the user may not see or drop is
    skipped silently. Commits `conn`."""
    dropped: list[str] = []
    try:
        names = [str(n) for n in conn.exec_driver_sql(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
            "OR SCHEMA_NAME LIKE %s", (r"\_ar\_replay\_%", r"\_ar\_restore\_%")).scalars()]
    except DBAPIError:
        conn.rollback()
        return dropped
    quote = conn.dialect.identifier_preparer.quote
    for name in names:
        if name in _held:
            continue
        current = _CURRENT.fullmatch(name) is not None
        if not current and _LEGACY.fullmatch(name) is None:
            continue
        try:
            if not current and not _legacy_stale(conn, name):
                continue
            if not _get_lock(conn, name):
                continue  # a live run holds it
            try:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)}")
                dropped.append(name)
            finally:
                _release(conn, name)
        except DBAPIError:
            conn.rollback()
    conn.commit()
    return dropped


#: What a GRANT names to let an account create every scratch schema and nothing else: ``_ar_``
#: followed by anything, its underscores escaped (in a GRANT's database name ``_`` is a
#: LIKE wildcard). The named locks and the sweep's information_schema query need no privilege.
SCRATCH_GRANT_ON = r"`\_ar\_%`.*"
_LOOPBACK = {"localhost", "127.0.0.1", "::1", ""}


class ScratchDenied(PrivilegeMissing, SQLAlchemyError):
    """The account may not create a scratch schema and no admin login could. Both kinds on
    purpose: doctor records a database refusal during the replay as AR408 (an
    SQLAlchemyError); a command that needs the schema exits as a missing privilege."""


def _escaped(name: str) -> str:
    """`name` as a GRANT's database name that matches only itself."""
    return name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


#: Builds the error for an account that may not create a scratch schema, from the server's
#: refusal and why root did not step in ("" when the project declares no root password).
Refuse = Callable[[DBAPIError, str], Exception]


@contextmanager
def created(holder: Connection, project: Project, name: str, refused: Refuse | None = None
            ) -> Iterator[None]:
    """Claim scratch schema `name` on `holder` (see `claim`), create it, and drop it when the
    block ends: as the project's account, or as root from the compose file when the account
    may not create databases (module docstring). When neither can, raises `refused`'s error
    (by default a ScratchDenied naming the GRANT); nothing is left behind then. Commits
    `holder`."""
    quote = holder.dialect.identifier_preparer.quote_identifier
    refusal: DBAPIError | None = None  # the server's answer when the account may not
    with claim(holder, name):
        try:
            holder.exec_driver_sql(create_sql(holder, name))
            holder.commit()
        except DBAPIError as err:
            if not denied(err):
                raise
            holder.rollback()
            refusal = err
        if refusal is not None:
            refuse = partial(refused or partial(_refused, holder, project), refusal)
            with _by_admin(holder, project, name, refuse):
                yield
            return
        try:
            yield
        finally:
            holder.rollback()
            holder.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)}")
            holder.commit()


@contextmanager
def held_schema(live: Engine, project: Project, kind: str = "replay"
                ) -> Iterator[tuple[str, Connection]]:
    """A new scratch schema on `live`'s server and the session that holds its lock: stale
    ones swept first, created (`created`: root's if need be), dropped when the block ends."""
    name = new_name(kind)
    with live.connect() as holder:
        sweep(holder)
        with created(holder, project, name):
            yield name, holder


def create_sql(live: Connection, name: str) -> str:
    """``CREATE DATABASE`` for scratch schema `name` with the live database's default
    character set and collation: a revision that names a collation (``utf8mb4_bin``) must
    build there as it did on the live database, whatever the server's own default is."""
    quote = live.dialect.identifier_preparer.quote_identifier
    row = live.exec_driver_sql(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
        "information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()").first()
    live.rollback()
    if row is None or not all(isinstance(v, str) and v.isidentifier() for v in row):
        return f"CREATE DATABASE {quote(name)}"
    return f"CREATE DATABASE {quote(name)} CHARACTER SET {row[0]} COLLATE {row[1]}"


def _admin_login(project: Project) -> tuple[AdminLogin | None, str]:
    """The compose file's root login for the project's server, or None and why it is not
    used (empty when the project declares none)."""
    compose_file = find_compose_file(project.root)
    if compose_file is None:
        return None, ""
    try:
        login = admin_from_compose(compose_file)
    except ConfigError as err:
        return None, f"the root password in {compose_file.name} was not read ({err})"
    if login is None:
        return None, ""
    host = project.url.parsed.host or ""
    if host not in login.hosts and host not in _LOOPBACK:
        return None, (f"{compose_file.name}'s root password (service {login.service}) was not "
                      f"tried: the database is at {host}, not that service")
    port = project.url.parsed.port or 3306
    if host in _LOOPBACK and host not in login.hosts and port not in login.ports:
        return None, (f"{compose_file.name}'s root password (service {login.service}) was not "
                      f"tried: the service publishes no port {port} (a server on this "
                      "machine's port may be another one, a tunnel for one)")
    return login, ""


def _refused(holder: Connection, project: Project, err: DBAPIError, why: str) -> ScratchDenied:
    """One line: the server's refusal, why root did not step in, the GRANT that would do."""
    account = spelled(current_account(holder))
    refusal = redact(driver_message(err), project.url)
    return ScratchDenied(
        f"{refusal}{'; ' + why if why else ''}; an administrator can allow it (scratch schemas "
        f"_ar_*) with: GRANT ALL ON {SCRATCH_GRANT_ON} TO {account}")


@contextmanager
def _by_admin(holder: Connection, project: Project, name: str,
              refuse: Callable[[str], Exception]) -> Iterator[None]:
    """Root creates `name`, grants the account ALL on it alone; drops and revokes after."""
    login, why = _admin_login(project)
    if login is None:
        raise refuse(why)
    url = project.url.parsed.set(username="root", password=login.password, database=None)
    where = f"root@{url.host or 'localhost'}:{url.port or 3306}"
    source = f"{login.variable} from {login.compose_file.name}"
    account = current_account(holder)
    quote = holder.dialect.identifier_preparer.quote_identifier
    on = f"{quote(_escaped(name))}.*"
    engine = engine_for(url)
    try:
        try:
            admin = engine.connect()
        except DBAPIError as err:
            code = getattr(err.orig, "args", (None,))[0]
            what = ("refused the password" if code in ACCESS_DENIED else
                    redact(driver_message(err), url, project.url))
            raise refuse(f"the login as {where} with {source} failed: {what}") from None
        with admin:
            try:
                sweep(admin)  # schemas and grants of killed runs the account cannot see
                _revoke_stale(admin, account)
                admin.exec_driver_sql(f"GRANT ALL PRIVILEGES ON {on} TO %s@%s", account)
                admin.exec_driver_sql(create_sql(holder, name))
                admin.commit()
            except DBAPIError as err:
                admin.rollback()
                _drop(admin, name, on, account)
                raise refuse(f"{where} ({source}) could not create it: "
                             f"{redact(driver_message(err), url, project.url)}") from None
            try:
                yield
            finally:
                try:
                    _drop(admin, name, on, account)
                except DBAPIError:  # root's session died: the account may still drop it
                    holder.rollback()
                    holder.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)}")
                    holder.commit()  # the grant stays until the next run's _revoke_stale
    finally:
        engine.dispose()


def _drop(admin: Connection, name: str, on: str, account: tuple[str, str]) -> None:
    quote = admin.dialect.identifier_preparer.quote_identifier
    admin.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)}")
    with suppress(DBAPIError):  # never granted (the GRANT itself failed)
        admin.exec_driver_sql(f"REVOKE ALL PRIVILEGES ON {on} FROM %s@%s", account)
    admin.commit()


def _revoke_stale(admin: Connection, account: tuple[str, str]) -> None:
    """Revoke the account's grants on scratch schemas whose run is gone (killed between its
    DROP and its REVOKE): the same proof as `sweep`, the schema's lock."""
    quote = admin.dialect.identifier_preparer.quote_identifier
    try:
        rows = admin.exec_driver_sql("SELECT Db FROM mysql.db WHERE User = %s AND Host = %s",
                                     account).scalars()
    except DBAPIError:  # housekeeping only: an admin who may not read mysql.db skips it
        admin.rollback()
        return
    for granted in [str(db) for db in rows]:
        name = granted.replace("\\_", "_")
        if name in _held or _CURRENT.fullmatch(name) is None or not _get_lock(admin, name):
            continue
        try:
            with suppress(DBAPIError):  # housekeeping: the next run tries again
                admin.exec_driver_sql(f"REVOKE ALL PRIVILEGES ON {quote(granted)}.* FROM "
                                      "%s@%s", account)
        finally:
            _release(admin, name)
    admin.commit()
