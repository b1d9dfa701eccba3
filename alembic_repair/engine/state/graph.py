"""The revision graph: every walk over ``down_revision`` links, in one place.

Built once from the files read with `ast` (`RevisionGraph.of(scripts)`), never from Alembic's
loader, so a broken history (a cycle, a missing parent, a duplicated id, a file without an id)
is walked without raising: the walks skip what they cannot follow, and `dangling`, `cycle` and
`duplicates` say what is broken. When one id is defined twice the later file (by name) wins, as
in every walk this replaced. The walks are iterative: a history thousands of revisions deep
does not hit Python's recursion limit. `history_chain` and `history_order` walk Alembic's own
`ScriptDirectory` instead, for the steps that need its loaded `Script` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .scripts import ScriptFile

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory


@dataclass(frozen=True)
class RevisionGraph:
    """The revision files as a graph: ids, parents, children; read-only, built once."""

    scripts: tuple[ScriptFile, ...]
    files: dict[str, ScriptFile] = field(init=False, compare=False, repr=False)
    _children: dict[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        files = {s.revision: s for s in self.scripts if s.revision is not None}
        children: dict[str, list[str]] = {}
        for script in self.scripts:
            if script.revision is not None:
                for parent in script.down_revisions:
                    children.setdefault(parent, []).append(script.revision)
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "_children", {p: tuple(c) for p, c in children.items()})

    @classmethod
    def of(cls, scripts: Iterable[ScriptFile]) -> RevisionGraph:
        return cls(tuple(scripts))

    # -- links -----------------------------------------------------------------------------

    def parents(self, revision: str) -> tuple[str, ...]:
        """`revision`'s down_revisions (empty for a base or an unknown id)."""
        script = self.files.get(revision)
        return script.down_revisions if script is not None else ()

    def children(self, revision: str) -> tuple[str, ...]:
        """The revisions naming `revision` as a parent, in file order (known or not)."""
        return self._children.get(revision, ())

    def named_as_parent(self, revision: str) -> bool:
        """Some file, even one without a revision id, names `revision` as its down_revision:
        the conservative 'has a child' (such a file is never moved or skipped)."""
        return any(revision in s.down_revisions for s in self.scripts)

    def heads(self) -> tuple[str, ...]:
        """Revision ids that no other revision names as its parent, sorted."""
        return tuple(sorted(set(self.files) - set(self._children)))

    def bases(self) -> tuple[str, ...]:
        """Revision ids without a down_revision, sorted."""
        return tuple(sorted(r for r, s in self.files.items() if r and not s.down_revisions))

    # -- walks -----------------------------------------------------------------------------

    def ancestors(self, revision: str) -> set[str]:
        """Every revision `revision` descends from (not itself, unless in a cycle)."""
        return self._reach(self.parents(revision), self.parents)

    def descendants(self, revision: str) -> set[str]:
        """Every revision descending from `revision` (not itself, unless in a cycle)."""
        return self._reach(self.children(revision), self.children)

    def lineage(self, heads: Iterable[str]) -> set[str]:
        """`heads` and all their ancestors."""
        return self._reach(heads, self.parents)

    def applied(self, recorded_heads: Iterable[str]) -> set[str]:
        """Every revision a database recording `recorded_heads` has applied (the heads and
        their ancestors; an unknown recorded id counts as itself only)."""
        return self.lineage(recorded_heads)

    def chain(self, revision: str) -> list[str]:
        """`revision` and its known ancestors, parents first (base -> `revision`); empty when
        `revision` is unknown."""
        order: list[str] = []
        if revision not in self.files:
            return order
        seen = {revision}
        stack = [(revision, iter(self.parents(revision)))]
        while stack:
            rev, parents = stack[-1]
            parent = next(parents, None)
            if parent is None:
                stack.pop()
                order.append(rev)
            elif parent not in seen and parent in self.files:
                seen.add(parent)
                stack.append((parent, iter(self.parents(parent))))
        return order

    def order(self) -> list[str]:
        """Every known revision, parents before children (base -> heads)."""
        seen: set[str] = set()
        order: list[str] = []
        for head in sorted(self.files):
            for rev in self.chain(head):
                if rev not in seen:
                    seen.add(rev)
                    order.append(rev)
        return order

    def between(self, recorded: str, stop: Iterable[str]) -> list[str]:
        """The revisions between `stop` (included) and `recorded`, newest first: what a
        database at `recorded` applied after the revisions below `stop`."""
        below: set[str] = set()
        for rev in set(stop):
            below |= set(self.chain(rev)) - {rev}
        return [r for r in reversed(self.chain(recorded)) if r not in below]

    # -- what is broken ------------------------------------------------------------------------

    def duplicates(self) -> dict[str, list[ScriptFile]]:
        """Revision id -> its files, for every id defined more than once."""
        seen: dict[str, list[ScriptFile]] = {}
        for script in self.scripts:
            if script.revision is not None:
                seen.setdefault(script.revision, []).append(script)
        return {rev: files for rev, files in seen.items() if len(files) > 1}

    def dangling(self) -> list[tuple[ScriptFile, str]]:
        """(file, missing parent id) for every down_revision no file defines."""
        return [(s, parent) for s in self.scripts for parent in s.down_revisions
                if parent not in self.files]

    def cycle(self) -> list[ScriptFile]:
        """The files of one cycle in the down_revision graph, sorted by id (empty when none)."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in sorted(self.files):
            if start in state:
                continue
            path = [start]
            state[start] = 1
            stack = [iter(self.parents(start))]
            while stack:
                parent = next(stack[-1], None)
                if parent is None:
                    stack.pop()
                    state[path.pop()] = 2
                elif parent not in self.files:
                    continue
                elif state.get(parent) == 1:
                    return [self.files[r] for r in sorted(path[path.index(parent):])]
                elif parent not in state:
                    state[parent] = 1
                    path.append(parent)
                    stack.append(iter(self.parents(parent)))
        return []

    @property
    def ok(self) -> bool:
        """Every file has an id and no id is duplicated, dangling or in a cycle."""
        return not (any(s.error or s.revision is None for s in self.scripts)
                    or self.duplicates() or self.dangling() or self.cycle())

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _reach(start: Iterable[str], step: Callable[[str], Iterable[str]]) -> set[str]:
        seen: set[str] = set()
        todo = list(start)
        while todo:
            rev = todo.pop()
            if rev not in seen:
                seen.add(rev)
                todo.extend(step(rev))
        return seen


def history_chain(directory: ScriptDirectory, to: str) -> list[Script]:
    """`to` and its ancestors as Alembic loaded them, parents first."""
    return list(reversed(list(directory.iterate_revisions(to, "base"))))


def history_order(directory: ScriptDirectory) -> list[Script]:
    """Every revision as Alembic loaded them, base -> heads."""
    return list(reversed(list(directory.walk_revisions("base", "heads"))))
