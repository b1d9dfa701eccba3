"""The pytest plugin: ready tests that prove a project's migrations on every CI run.

Installed with the package (the ``pytest11`` entry point), so it is loaded into every pytest
run: until a project enables it (``-p alembic_repair``, or ``alembic_repair = true`` in its
pytest settings) it only registers its options, imports nothing heavy and adds no item.
Enabled, it adds the items ``alembic_repair::<name>`` (`settings.READY_TESTS`) to a run that
does not name single test files. Modules: `settings` (the options), `backends` (scratch
databases), `checks` (the ready tests as plain functions; Alembic runs through env.py on the
scratch databases in `testing.through_env`), `items` (pytest's side: items, one-line
failures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .settings import ENABLE, INI, URL_OPTION

_BACKENDS = pytest.StashKey[Any]()
#: xdist's workerinput keys: the controller's throwaway server, or why it did not start
_SERVER, _FAILED = "alembic_repair_server_url", "alembic_repair_server_failed"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(ENABLE, "run alembic_repair's ready tests (the pytest plugin)", type="bool",
                  default=False)
    for name, help_text, default in INI:
        parser.addini(name, help_text, default=default)
    parser.getgroup("alembic_repair").addoption(
        URL_OPTION, dest="alembic_repair_url", default=None, metavar="URL",
        help="MySQL/MariaDB server URL for the ready tests' scratch databases, or `mariadbd`")


def enabled(config: pytest.Config) -> bool:
    plugins = getattr(config.known_args_namespace, "plugins", None) or []
    named = {"alembic_repair", __name__}  # `-p alembic_repair` (the entry point's name)
    return bool(named.intersection(plugins)) or bool(config.getini(ENABLE))


def _narrowed(config: pytest.Config) -> bool:
    """The run names single test files or tests: the ready tests are not wanted there."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    root = Path(config.invocation_params.dir)
    return any("::" in arg or (root / arg).is_file() for arg in config.args)


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, the controller starts the throwaway mariadbd once for every worker."""
    if (hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist")
            or getattr(config.option, "dist", "no") == "no"
            or not enabled(config) or _narrowed(config)):
        return
    from .backends import Backends
    from .settings import THROWAWAY, Settings

    settings = Settings.from_config(config)
    if settings.url != THROWAWAY or not settings.tests:
        return
    backends = config.stash[_BACKENDS] = Backends(settings.url)
    try:
        server, failed = backends.server_url(), None
    except Exception as err:  # noqa: BLE001  (Unusable: said by every worker's tests)
        server, failed = None, str(err)
    config.pluginmanager.register(_Controller(server, failed), "alembic_repair_controller")


class _Controller:
    """xdist's hook, registered only where xdist is (an unknown hook is an error)."""

    def __init__(self, server: str | None, failed: str | None) -> None:
        self.server, self.failed = server, failed

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_SERVER], node.workerinput[_FAILED] = self.server, self.failed


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect, so they select ready tests too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not enabled(config) or _narrowed(config):
        return
    from .backends import Backends
    from .items import ready_items
    from .settings import Settings

    settings = Settings.from_config(config)
    given = getattr(config, "workerinput", {})  # the controller's throwaway server
    backends = config.stash[_BACKENDS] = Backends(settings.url, server=given.get(_SERVER),
                                                  failed=given.get(_FAILED))
    items.extend(ready_items(session, settings, backends))


def pytest_unconfigure(config: pytest.Config) -> None:
    backends = config.stash.get(_BACKENDS, None)
    if backends is not None:
        backends.close()  # a throwaway mariadbd stops here
