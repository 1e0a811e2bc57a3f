"""Work that does not grow with the archive (issue 23): a feed run with nothing to do makes
the same storage requests for 100 episodes as for 400 (the bench counts them at 100, 1,000
and 10,000).

The `feed` command's steps run as its job runs them (`load_catalog`, then `publish_feed`)
on a real LocalStorage, through a wrapper that counts every request. The setup publishes
the feed once with the episodes' audio "there" (HEAD answered from the catalog, so the
audio files need not be written); the counted run then sees plain storage, where no audio
exists: a run that looked at every enclosure again would find them all missing.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from test_feed import SHOW_YAML, image_bytes, make_episode, make_show

from flows.core.settings import Settings
from flows.core.storage import LocalStorage, ObjectInfo
from flows.podcast.catalog import Catalog, load_catalog, save_catalog
from flows.podcast.feed import FEED_KEY
from flows.podcast.feedpublish import FeedResult, publish_feed

BASE = "https://cdn.kraftsamling.example/"
REQUESTS = ("head", "get_bytes", "put_bytes", "put_file", "list_keys", "delete")


class Counting:
    """A storage that counts the requests made through it, and passes them on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name not in REQUESTS:
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.requests[name] += 1
            return found(*args, **kwargs)

        return counted


class AudioThere:
    """A storage whose HEAD finds each catalog episode's audio with its size (setup only)."""

    def __init__(self, inner: LocalStorage, sizes: dict[str, int]) -> None:
        self.inner, self.sizes = inner, sizes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def head(self, key: str) -> ObjectInfo | None:
        if key in self.sizes:
            return ObjectInfo(key, self.sizes[key], "setup")
        return self.inner.head(key)


def feed_noop(tmp_path: Path, count: int) -> tuple[Counter[str], bool]:
    """A published feed of `count` episodes, then a feed run with nothing new: its requests
    by kind, and whether it uploaded the feed."""
    show_dir = tmp_path / "episodes"
    show_dir.mkdir(parents=True)
    (show_dir / "show.yaml").write_text(SHOW_YAML, encoding="utf-8")
    (show_dir / "cover.jpg").write_bytes(image_bytes())
    storage = LocalStorage(tmp_path / "storage")
    settings = Settings.load(storage=str(tmp_path / "storage"), public_url=BASE)
    episodes = [make_episode(n) for n in range(1, count + 1)]
    now = max(e.publish_at for e in episodes) + timedelta(days=1)
    save_catalog(storage, Catalog(episodes), now)
    there = AudioThere(storage, {e.audio_key: e.size for e in episodes})

    def run(store: Any) -> FeedResult:
        return publish_feed(store, make_show(), show_dir, load_catalog(store), settings, now)

    assert run(there).uploaded
    counting = Counting(storage)
    result = run(counting)
    assert result.items == count
    return counting.requests, result.uploaded


def test_a_feed_run_with_nothing_new_costs_the_same_requests_for_100_and_400_episodes(
    tmp_path: Path,
) -> None:
    small, small_uploaded = feed_noop(tmp_path / "small", 100)
    large, large_uploaded = feed_noop(tmp_path / "large", 400)
    assert not small_uploaded and not large_uploaded
    assert small == large
    assert small["head"] <= 2, small  # the cover art, nothing per episode
    assert sum(small.values()) <= 8, small


def test_the_counting_storage_sees_a_new_episode_checked(tmp_path: Path) -> None:
    """The counter is honest: an episode new since the live feed costs one HEAD (and, its
    audio missing here, is left out of the feed)."""
    requests, _ = feed_noop(tmp_path / "base", 100)
    storage = LocalStorage(tmp_path / "base" / "storage")
    catalog = load_catalog(storage)
    late = make_episode(101, publish_at=catalog.episodes[-1].publish_at + timedelta(hours=1))
    save_catalog(storage, Catalog([*catalog.episodes, late], catalog.etag))
    counting = Counting(storage)
    settings = Settings.load(storage=str(tmp_path / "base" / "storage"), public_url=BASE)
    result = publish_feed(
        counting,
        make_show(),
        tmp_path / "base" / "episodes",
        load_catalog(counting),
        settings,
        late.publish_at + timedelta(hours=1),
    )
    assert counting.requests["head"] == requests["head"] + 1
    assert [u.guid for u in result.left_out] == [late.guid]
    assert storage.head(FEED_KEY) is not None
