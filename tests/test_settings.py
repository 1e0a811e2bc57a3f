"""Settings: defaults work offline, environment and overrides win, bad values explain."""

from __future__ import annotations

import pytest

from flows.core.errors import InputError, SettingsError
from flows.core.settings import Settings
from flows.podcast.show import parse_show


def test_sources_have_no_default_so_production_never_reads_the_demo():
    settings = Settings.load()
    assert settings.storage == ".storage"
    assert settings.posts is None
    assert settings.events is None


def test_sources_from_the_environment_as_words_or_json(monkeypatch):
    monkeypatch.setenv("KRAFTSAMLING_POSTS", "https://a.example/feed/  site/news.xml")
    monkeypatch.setenv("KRAFTSAMLING_EVENTS", "[]")
    settings = Settings.load()
    assert settings.posts == ["https://a.example/feed/", "site/news.xml"]
    assert settings.events == []
    monkeypatch.setenv("KRAFTSAMLING_EVENTS", '["my events.ics"]')
    assert Settings.load().events == ["my events.ics"]
    monkeypatch.setenv("KRAFTSAMLING_EVENTS", "[not json")
    with pytest.raises(SettingsError, match="events"):
        Settings.load()


def test_environment_then_overrides(monkeypatch):
    monkeypatch.setenv("KRAFTSAMLING_STORAGE", "s3://bucket-from-env/prefix")
    monkeypatch.setenv("KRAFTSAMLING_MAX_ITEMS", "12")
    settings = Settings.load(storage=None)
    assert settings.storage == "s3://bucket-from-env/prefix"
    assert settings.max_items == 12
    assert Settings.load(storage="/tmp/x").storage == "/tmp/x"


def test_public_url_gets_a_trailing_slash():
    assert Settings.load(public_url="https://media.example.org").public_url == (
        "https://media.example.org/"
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("public_url", "media.example.org", "public_url"),
        ("max_items", 0, "max_items"),
        ("smtp_security", "tls-please", "smtp_security"),
        ("not_a_setting", 1, "not_a_setting"),
    ],
)
def test_bad_values_name_the_setting(field, value, expected):
    with pytest.raises(SettingsError, match=expected) as info:
        Settings.load(**{field: value})
    assert "Fix the flag" in str(info.value)


def test_show_yaml_errors_name_file_and_field():
    with pytest.raises(InputError, match=r"show\.yaml.*owner_email"):
        parse_show("title: T\ndescription: D\nauthor: A\nowner_name: O\n", "show.yaml")
    with pytest.raises(InputError, match=r"line 2"):
        parse_show("title: T\n  bad: [\n", "show.yaml")
