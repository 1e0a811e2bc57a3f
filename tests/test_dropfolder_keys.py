"""A misspelt key never publishes: unknown sidecar and show.yaml keys stop before any upload.

A sidecar with a key the project does not know refuses its episode (with a suggestion such
as `publish-at`: did you mean `publish_at`?); the other episodes of the run are published.
An unknown key in show.yaml stops the run before anything is written to storage.
"""

# ruff: noqa: F811  (the fixtures imported from test_podcast are test arguments here)

from __future__ import annotations

import pytest
from test_podcast import (  # noqa: F401  (audio, cover_bytes, show_dir are fixtures)
    audio,
    cover_bytes,
    inbox_names,
    put,
    run,
    show_dir,
)

from flows.core.errors import InputError
from flows.core.storage import LocalStorage
from flows.podcast.catalog import load_catalog


class RecordingStorage(LocalStorage):
    """LocalStorage that remembers every key written, the run's lock included."""

    def __init__(self, root):
        super().__init__(root)
        self.written: list[str] = []

    def put_bytes(self, key, data, **kwargs):
        self.written.append(key)
        return super().put_bytes(key, data, **kwargs)

    def put_file(self, key, path, **kwargs):
        self.written.append(key)
        return super().put_file(key, path, **kwargs)


def test_a_misspelt_publish_at_refuses_the_episode_before_upload(show_dir, audio, tmp_path):
    put(show_dir, "julspecial.mp3", audio["mp3"])
    put(show_dir, "julspecial.md", "---\ntitle: Julspecial\npublish-at: 2026-12-24 07:00\n---\n")
    put(show_dir, "bra.mp3", audio["mp3_other"])
    put(show_dir, "bra.md", "---\ntitle: Bra avsnitt\n---\n")
    storage = RecordingStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    status = {o.name: o for o in report.outcomes}
    assert status["bra.mp3"].status == "published"
    jul = status["julspecial.mp3"]
    assert jul.status == "failed"
    assert "julspecial.md: publish-at (rad 3): okänd nyckel (menade du 'publish_at'?)" in jul.reason
    assert (
        "julspecial.md: publish-at (line 3): unknown key (did you mean 'publish_at'?)" in jul.reason
    )
    assert "Known keys: title, episode" in jul.reason
    text = (show_dir / "failed" / "julspecial.error.txt").read_text(encoding="utf-8")
    assert "did you mean 'publish_at'?" in text
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]
    assert not [key for key in storage.written if "julspecial" in key]
    assert not [key for key in storage.list_keys() if "julspecial" in key]


def test_a_sidecar_with_keys_but_no_front_matter_refuses_the_episode(show_dir, audio, tmp_path):
    put(show_dir, "julspecial.mp3", audio["mp3"])
    put(show_dir, "julspecial.md", "title: Julspecial\npublish_at: 2026-12-24 07:00\n")
    put(show_dir, "bra.mp3", audio["mp3_other"])
    put(show_dir, "bra.md", "---\ntitle: Bra avsnitt\n---\n")
    storage = RecordingStorage(tmp_path / "storage")

    report = run(show_dir, storage)

    status = {o.name: o for o in report.outcomes}
    assert status["bra.mp3"].status == "published"
    jul = status["julspecial.mp3"]
    assert jul.status == "failed", report.summary()
    assert jul.reason.startswith("julspecial.md: rad 1: 'title: Julspecial' ser ut som")
    assert "has keys but no '---' lines around them" in jul.reason
    assert "Add a line '---' before and after" in jul.reason
    assert [ep.slug for ep in load_catalog(storage).episodes] == ["bra"]
    assert not [key for key in storage.written if "julspecial" in key]


def test_a_misspelt_title_names_the_key_not_a_missing_title(show_dir, audio, tmp_path):
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitel: Öppna data\n---\nBeskrivning.\n")
    put(show_dir, "master.wav", audio["wav"])
    put(show_dir, "master.md", "---\ntitel: Mastern\n---\n")

    report = run(show_dir, LocalStorage(tmp_path / "storage"))

    for outcome in report.outcomes:
        assert outcome.status == "failed"
        assert "titel (line 2): unknown key (did you mean 'title'?)" in outcome.reason
        assert "titel (rad 2): okänd nyckel (menade du 'title'?)" in outcome.reason
        assert "has no title" not in outcome.reason
        assert "has no episode title" not in outcome.reason


def test_an_unknown_show_yaml_key_stops_the_run_before_any_upload(show_dir, audio, tmp_path):
    show_yaml = show_dir / "show.yaml"
    show_yaml.write_text(
        show_yaml.read_text(encoding="utf-8") + "copyrigth: Kraftsamling\n", encoding="utf-8"
    )
    put(show_dir, "ep.mp3", audio["mp3"])
    put(show_dir, "ep.md", "---\ntitle: Hej\n---\n")
    storage = RecordingStorage(tmp_path / "storage")

    with pytest.raises(InputError) as raised:
        run(show_dir, storage)

    message = str(raised.value)
    assert "show.yaml" in message
    assert "copyrigth (line 23): unknown key (did you mean 'copyright'?)" in message
    assert storage.written == []  # not even the run's lock
    assert inbox_names(show_dir) == {"ep.mp3", "ep.md"}
