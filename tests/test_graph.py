"""The revision graph (engine/state/graph.py): every walk, on sound and broken histories."""

from __future__ import annotations

from pathlib import Path

from alembic_repair.engine.state.graph import RevisionGraph
from alembic_repair.engine.state.scripts import ScriptFile


def _file(rev: str | None, *parents: str, name: str | None = None) -> ScriptFile:
    return ScriptFile(Path(f"versions/{name or rev}.py"), rev, tuple(parents))


# a -> b -> c -> e (merge of c and d), b -> d
SOUND = RevisionGraph.of([_file("a"), _file("b", "a"), _file("c", "b"), _file("d", "b"),
                          _file("e", "c", "d")])


def test_links_heads_and_bases() -> None:
    assert SOUND.heads() == ("e",)
    assert SOUND.bases() == ("a",)
    assert SOUND.parents("e") == ("c", "d")
    assert SOUND.children("b") == ("c", "d")
    assert SOUND.parents("zzz") == () and SOUND.children("zzz") == ()
    assert SOUND.ok


def test_walks_up_and_down() -> None:
    assert SOUND.ancestors("e") == {"a", "b", "c", "d"}
    assert SOUND.ancestors("a") == set()
    assert SOUND.descendants("b") == {"c", "d", "e"}
    assert SOUND.applied(["c"]) == {"a", "b", "c"}
    assert SOUND.applied([]) == set()
    assert SOUND.applied(["zzz"]) == {"zzz"}  # unknown: counts as itself only


def test_orders_parents_first() -> None:
    assert SOUND.chain("c") == ["a", "b", "c"]
    assert SOUND.chain("e") == ["a", "b", "c", "d", "e"]
    assert SOUND.chain("zzz") == []
    order = SOUND.order()
    assert sorted(order) == ["a", "b", "c", "d", "e"]
    assert all(order.index(p) < order.index(r) for r in order for p in SOUND.parents(r))
    # what a database at e applied after the revisions below c and d, newest first
    assert SOUND.between("e", ["c", "d"]) == ["e", "d", "c"]
    assert SOUND.between("c", ["b"]) == ["c", "b"]


def test_a_broken_graph_is_walked_without_raising() -> None:
    broken = RevisionGraph.of([
        _file("a", "c"), _file("b", "a"), _file("c", "b"),  # a cycle
        _file("x", "gone"),  # a missing parent
        _file("d", name="d1"), _file("d", "x", name="d2"),  # one id, two files
        _file(None, "x", name="stray"),  # no id, but names x
    ])
    assert not broken.ok
    assert [s.revision for s in broken.cycle()] == ["a", "b", "c"]
    assert [(s.revision, parent) for s, parent in broken.dangling()] == [("x", "gone")]
    assert [s.path.name for s in broken.duplicates()["d"]] == ["d1.py", "d2.py"]
    assert broken.ancestors("a") == {"a", "b", "c"}  # in its own cycle
    assert broken.parents("d") == ("x",)  # the later file wins
    assert broken.chain("b") == ["c", "a", "b"]
    assert broken.named_as_parent("x") and broken.children("x") == ("d",)
    assert broken.applied(["d"]) == {"d", "x", "gone"}


def test_a_deep_history_does_not_recurse() -> None:
    files = [_file("r0")] + [_file(f"r{i}", f"r{i - 1}") for i in range(1, 5000)]
    deep = RevisionGraph.of(files)
    assert deep.cycle() == [] and deep.heads() == ("r4999",)
    assert len(deep.chain("r4999")) == 5000
