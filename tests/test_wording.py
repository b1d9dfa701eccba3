"""Counts agree in number in everything the tool prints (issue 16)."""

import pytest

from alembic_repair.wording import counted


@pytest.mark.parametrize(("n", "noun", "plural", "expected"), [
    (1, "row", None, "1 row"),
    (2, "row", None, "2 rows"),
    (0, "table", None, "0 tables"),
    (1, "entry", "entries", "1 entry"),
    (2, "entry", "entries", "2 entries"),
    (0, "entry", "entries", "0 entries"),
])
def test_counted_agrees_in_number(n: int, noun: str, plural: str | None, expected: str) -> None:
    assert counted(n, noun, plural) == expected
