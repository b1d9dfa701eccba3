"""The app's own tests run beside alembic-repair's ready tests (``pytest -rA`` lists both)."""

from __future__ import annotations

import pytest

from server.db import DEFAULT_DATABASE_URL, get_database_url


def test_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("MYSQL_HOST", "mysql")
    assert get_database_url() == "sqlite:///elsewhere.db"


def test_mysql_variables_build_an_escaped_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in {"MYSQL_HOST": "mysql", "MYSQL_USER": "app",
                        "MYSQL_PASSWORD": "ch%nge@me", "MYSQL_DATABASE": "app"}.items():
        monkeypatch.setenv(name, value)
    assert get_database_url() == "mysql+pymysql://app:ch%25nge%40me@mysql:3306/app"


def test_sqlite_in_the_project_folder_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MYSQL_HOST", raising=False)
    assert get_database_url() == DEFAULT_DATABASE_URL
