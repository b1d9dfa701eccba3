"""The catalogue and its docs pages."""

from __future__ import annotations

from pathlib import Path

from alembic_repair.diagnose.findings import CATALOGUE, page, write_docs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "findings"


def test_codes_are_unique_grouped_and_complete() -> None:
    assert len(CATALOGUE) >= 25
    for code, entry in CATALOGUE.items():
        assert code == entry.code and code[:2] == "AR" and code[2] in "12345"
        assert entry.title and entry.explanation.endswith(".") and entry.fix


def test_docs_pages_are_generated_from_the_catalogue(tmp_path: Path) -> None:
    """docs/findings is the catalogue's own text: regenerate with
    `python -m alembic_repair.diagnose.findings docs/findings` when this fails."""
    fresh = {p.name: p.read_text() for p in write_docs(tmp_path)}
    committed = {p.name: p.read_text() for p in DOCS.glob("*.md")}
    assert committed == fresh
    assert page(CATALOGUE["AR302"]).startswith("# AR302: recorded revision is unknown\n")
