"""The project's database URL, parsed once at discovery (engine/url.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from alembic_repair.data import guards
from alembic_repair.engine.project import Project
from alembic_repair.engine.url import DatabaseUrl, parse_url
from alembic_repair.errors import RefusedUnsafe, UrlError

SECRET = "pw@:/%x"
TEXT = "mysql+pymysql://app:pw%40%3A%2F%25x@127.0.0.1:3306/shop?host=db.example.com"


def test_the_text_stays_whole_and_the_parse_is_made_once(tmp_path: Path) -> None:
    project = Project.discover(tmp_path, url=TEXT, environ={})
    url = project.url
    assert isinstance(url, DatabaseUrl) and url == TEXT  # the full text, password included
    assert isinstance(url.parsed, URL) and url.parsed.password == SECRET
    assert parse_url(url) is url.parsed  # no second parse
    assert project.dialect == url.backend == "mysql"
    assert SECRET not in repr(url) and "***" in repr(url)
    assert project.masked_url == url.masked and SECRET not in url.masked
    assert json.loads(json.dumps({"url": url})) == {"url": TEXT}
    assert pickle.loads(pickle.dumps(url)).parsed.password == SECRET
    with pytest.raises(AttributeError):
        url.parsed = url.parsed  # type: ignore[misc]


def test_a_project_built_from_text_parses_it(tmp_path: Path) -> None:
    project = Project(tmp_path, tmp_path / "alembic.ini", tmp_path / "alembic",
                      "sqlite:///app.db")  # type: ignore[arg-type]
    assert isinstance(project.url, DatabaseUrl) and project.url.parsed.database == "app.db"
    with pytest.raises(UrlError, match="cannot be parsed"):
        DatabaseUrl("not a url")


def test_the_guard_judges_the_host_of_the_projects_own_parse(tmp_path: Path) -> None:
    project = Project.discover(tmp_path, url=TEXT, environ={})
    found = guards.decide(project.url)
    assert found.place == "db.example.com:3306" and not found.local  # ?host= wins, as in PyMySQL
    with pytest.raises(RefusedUnsafe) as refused:
        guards.require_local(False, project, "fix")
    assert "db.example.com" in str(refused.value) and SECRET not in str(refused.value)
