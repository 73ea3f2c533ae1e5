"""Settings: names, defaults, comma lists, and the documented example file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import Settings
from service.store import DatabaseUrlError, async_url

ROOT = Path(__file__).parent.parent


def test_env_example_documents_every_setting_with_a_comment() -> None:
    text = (ROOT / ".env.example").read_text()
    lines = text.splitlines()
    for name in Settings.model_fields:
        matches = [i for i, line in enumerate(lines) if re.match(rf"{name}=", line)]
        assert matches, f"{name} is missing from .env.example"
        above = lines[matches[0] - 1]
        assert above.startswith("#") or re.match(r"[A-Z_]+=", above), f"{name} has no comment"


def test_env_example_parses_to_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    from_file = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_file.model_dump() == defaults.model_dump()


def test_comma_separated_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISMA_WEBHOOK_SECRETS", "old, new")
    monkeypatch.setenv("WATCH_COMPONENTS", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.webhook_secrets() == ["old", "new"]
    assert settings.WATCH_COMPONENTS == []
    assert settings.DATABASE_URL == "sqlite:///./data/visma-hooks.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./data/x.db", "sqlite+aiosqlite:///./data/x.db"),
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url_picks_the_async_driver(url: str, expected: str) -> None:
    assert async_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db"])
def test_database_url_refuses_what_we_cannot_drive(url: str) -> None:
    with pytest.raises(DatabaseUrlError):
        async_url(url)
