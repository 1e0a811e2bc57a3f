"""An unexpected exception (a bug, a missing module) at each step of a publish run is handled
at the step's boundary (issue 20, point 4): what was finished stays finished and recorded,
the drop folder's files are moved with their journal or left in place, the lock is released,
and the run says which step failed."""

from __future__ import annotations

# ruff: noqa: F811  (the fixtures imported from test_podcast are test arguments here)
import pytest
from test_podcast import audio, cover_bytes, inbox_names, put, run, show_dir  # noqa: F401

import flows.podcast.episode
import flows.podcast.run
from flows.core.storage import LocalStorage
from flows.podcast.catalog import load_catalog
from flows.podcast.lock import LOCK_KEY


def boom(*_args: object, **_kwargs: object) -> None:
    raise KeyError("a bug")


def two_episodes(show_dir, audio) -> None:
    put(show_dir, "ett.mp3", audio["mp3"])
    put(show_dir, "ett.md", "---\ntitle: Ett\n---\n")
    put(show_dir, "tva.mp3", audio["mp3_other"])
    put(show_dir, "tva.md", "---\ntitle: Två\n---\n")


@pytest.mark.parametrize(
    ("module", "name", "step"),
    [
        (flows.podcast.episode, "prepare_episode", "prepare"),
        (flows.podcast.run, "upload_episode", "upload"),
        (flows.podcast.run, "commit_catalog", "catalog"),
    ],
)
def test_an_unexpected_exception_leaves_the_episodes_waiting_and_the_lock_free(
    show_dir, audio, tmp_path, monkeypatch, module, name, step
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    two_episodes(show_dir, audio)
    monkeypatch.setattr(module, name, boom)

    report = run(show_dir, storage)

    assert {o.status for o in report.outcomes} == {"retry"}
    for outcome in report.outcomes:
        assert f"an internal error at step {step} (KeyError: 'a bug')" in outcome.reason
        assert "ett internt fel i steget" in outcome.reason
    assert inbox_names(show_dir) >= {"ett.mp3", "ett.md", "tva.mp3", "tva.md"}  # left in place
    assert storage.head(LOCK_KEY) is None  # the lock is released
    assert load_catalog(storage).episodes == []  # nothing half recorded

    monkeypatch.undo()  # the bug is fixed: the next run publishes both
    again = run(show_dir, storage)
    assert sorted(o.status for o in again.outcomes) == ["published", "published"]


def test_a_bug_in_one_episodes_preparation_never_holds_the_other(
    show_dir, audio, tmp_path, monkeypatch
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    two_episodes(show_dir, audio)
    real = flows.podcast.episode.prepare_episode

    def only_the_second(candidate, context):
        if candidate.audio.name == "tva.mp3":
            raise AttributeError("'NoneType' object has no attribute 'info'")
        return real(candidate, context)

    monkeypatch.setattr(flows.podcast.episode, "prepare_episode", only_the_second)
    report = run(show_dir, storage)
    assert {o.name: o.status for o in report.outcomes} == {
        "ett.mp3": "published",
        "tva.mp3": "retry",
    }
    assert [e.title for e in load_catalog(storage).episodes] == ["Ett"]  # finished: recorded
    assert "tva.mp3" in inbox_names(show_dir) and "ett.mp3" not in inbox_names(show_dir)


def test_an_unexpected_exception_in_the_feed_keeps_the_catalog_and_moves_the_files(
    show_dir, audio, tmp_path, monkeypatch
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    two_episodes(show_dir, audio)
    monkeypatch.setattr(flows.podcast.run, "publish_feed", boom)
    report = run(show_dir, storage)
    assert "feed: an internal error (KeyError: 'a bug')" in report.feed_error
    assert len(load_catalog(storage).episodes) == 2  # what was finished stays recorded
    assert storage.head(LOCK_KEY) is None
    monkeypatch.undo()
    assert run(show_dir, storage).feed_error == ""  # the next run publishes the feed
