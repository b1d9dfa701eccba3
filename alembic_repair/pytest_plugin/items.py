"""The ready tests as pytest items: ``alembic_repair::<name>``, selectable with ``-k``.

A failure is reported as the check's lines (each with its fix), never a traceback of the
plugin: the package's own errors (an unreadable alembic.ini, a history that does not load)
become one line too. Anything else is a bug and keeps pytest's usual report.

The plugin's modules import each other's names with ``from .module import name``, never
``from . import module``: pytester's in-process runs drop the modules a run imported from
sys.modules, and the package's stale attribute would then pair an old module's exception
class with a new one's ``except``.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..errors import AlembicRepairError
from ..testing.through_env import Elsewhere
from .backends import Backends
from .checks import CHECKS, Context
from .outcome import Failure, Skipped, Unusable
from .settings import Settings


class ReadyFailed(Exception):  # noqa: N818
    def __init__(self, failures: tuple[Failure, ...]) -> None:
        super().__init__("\n".join(f.line for f in failures))
        self.failures = failures


class ReadyTests(pytest.Collector):
    """The parent of the ready tests (node id ``alembic_repair``)."""

    def __init__(self, *, context: Context, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context

    def collect(self) -> list[pytest.Item]:
        return [ReadyTest.from_parent(self, name=name, context=self.context)
                for name in self.context.settings.tests]


class ReadyTest(pytest.Item):
    def __init__(self, *, context: Context, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context

    def runtest(self) -> None:
        problem = self.context.settings.problem
        failures: tuple[Failure, ...]
        try:
            if problem:
                raise Unusable(problem)
            failures = CHECKS[self.name](self.context)
        except Skipped as why:  # reported at the item (alembic_repair::up_down), not here
            raise pytest.skip.Exception(str(why), _use_item_location=True) from None
        except Elsewhere as err:
            failures = (Failure(err.line, err.fix),)
        except (Unusable, AlembicRepairError) as err:
            failures = (Failure(str(err)),)
        if failures:
            raise ReadyFailed(failures)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, ReadyFailed):
            return "\n".join(f.text() for f in excinfo.value.failures)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """Where a skip is reported: the project's alembic.ini (line 0: no line of its)."""
        return self.path / "alembic.ini", 0, f"alembic_repair::{self.name}"


def ready_items(session: pytest.Session, settings: Settings, backends: Backends
                ) -> list[pytest.Item]:
    """The ready tests, reported as collected (so pytest counts them and ``--co`` lists
    them) though they are added after the project's own collection."""
    parent = ReadyTests.from_parent(session, name="alembic_repair", nodeid="alembic_repair",
                                    path=settings.project, context=Context(settings, backends))
    session.ihook.pytest_collectstart(collector=parent)
    items = parent.collect()
    session.ihook.pytest_collectreport(report=pytest.CollectReport(
        parent.nodeid, "passed", None, list[pytest.Item | pytest.Collector](items)))
    return items
