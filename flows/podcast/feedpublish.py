"""Publishing the podcast feed: read the catalog's episodes and the live feed, build, gate, upload.

`publish_feed(storage, show, show_dir, catalog, settings, now)` is the I/O edge around the
pure builder (`flows.podcast.feed`) and the gate (`flows.podcast.feedgate`): it uploads the
cover art under its content hash, screens each episode's item, and uploads `podcast/feed.xml`
only when its bytes changed and the gate passes, with one put conditional on the live feed it
compared with. Right after that upload (and only then) the WebSub hub and Podping, when
configured, are told of the change (`flows.podcast.announce`; a failure warns, never fails).

One episode never holds the feed, and the feed never shrinks by accident. Each due episode is
screened first: its record against `flows.podcast.limits.record_problems`, and its enclosure
(HEAD: it exists with the size the feed announces) unless the live feed already carries that
very enclosure, so a feed build costs requests for new or changed audio only. An episode that
fails is `Unfit`: a new one is left out of the feed and named with its fix; one already live
keeps its last good `<item>`, copied from the live feed. If the gate still refuses the feed,
each new item is gated alone and the ones refused alone are left out too; a problem of the
channel (or the shrink gate) still refuses the whole feed, and the live one stays.

Beside the feed, a small private object (`FEED_STATE_KEY`) records what the live feed was built
from: a hash of its inputs (the catalog's ETag, show.yaml, the cover art's key, the public URL,
analytics prefix and WebSub hub, and the builder's own code), the feed's ETag, and the window
of "now" in which no episode becomes due. `feed_staleness` compares that record with storage in
three requests (HEAD catalog, HEAD feed, GET record), whatever the catalog's size; a publish run
with an empty inbox rebuilds the feed only when they disagree. The web pages of the show and
its episodes (`flows.web.publish`, one GET when none changed) go up after the feed and before
that record, and the builder's version includes the pages' templates, so it covers them too.

Removal is lasting and lives in the catalog: `regenerate_feed(remove_guids=[...])`
(`python -m flows feed --remove GUID`) first sets `removed_at` on those records and saves the
catalog (If-Match, with a backup; `flows.podcast.catalog.remove_episodes`), then builds and
publishes. Episodes with `removed_at` are never in the feed, and the shrink gate accepts the
absence of guids that the catalog marks removed, so every later run (hourly, or after
`publish_episodes`) passes without `--remove`. The records stay, so a guid is never reused.
Unknown guids are refused before anything changes. A live guid that the catalog does not know
at all (a catalog restored from an old backup) is still refused by the gate.

Audio objects are never deleted, neither of removed nor of replaced episodes: apps that
cached the old enclosure URL keep working, and restoring a removal needs no re-upload.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from pathlib import Path

from lxml import etree

from flows.core.errors import FeedGateError, InputError
from flows.core.models import Episode, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, CACHE_PRIVATE, CACHE_SHORT, Storage, public_url
from flows.core.text import clean_text
from flows.podcast import feed as feed_module
from flows.podcast import feedgate as feedgate_module
from flows.podcast import feeditems as feeditems_module
from flows.podcast import limits as limits_module
from flows.podcast.announce import Announcement, announce_feed_change
from flows.podcast.catalog import CATALOG_KEY, Catalog
from flows.podcast.feed import (
    FEED_CONTENT_TYPE,
    FEED_KEY,
    build_feed,
    cover_art_key,
    enclosure_url,
    feed_episodes,
    feed_url_for,
    resolve_public_url,
)
from flows.podcast.feedgate import COVER_FORMATS, check_cover_art, check_feed, cover_format
from flows.podcast.inbox import read_regular
from flows.podcast.limits import record_note, record_problems
from flows.web.publish import publish_feed_pages
from flows.web.render import site_version

log = logging.getLogger(__name__)

FEED_STATE_KEY = "podcast/feed-state.json"  # private: what the live feed was built from


@dataclass(frozen=True)
class Unfit:
    """A due episode whose item cannot be built into the feed, and why (with the fix)."""

    guid: str
    slug: str
    reason: str
    kept: bool  # already live: its last good item stays; else it is left out

    def describe(self) -> str:
        """One sentence for the report: the episode, what happened to it, why and the fix."""
        what = "keeps its last good item in the feed" if self.kept else "was left out of the feed"
        return f"{self.slug} ({self.guid}) {what}: {self.reason}"


@dataclass(frozen=True)
class FeedResult:
    """What one feed run did."""

    feed_url: str
    items: int  # episodes in the feed
    scheduled: int  # in the catalog, publish_at still in the future
    uploaded: bool  # False when the feed was unchanged
    cover_url: str
    cover_uploaded: bool = False
    removed: tuple[str, ...] = field(default_factory=tuple)  # removed for good by this run
    already_removed: tuple[str, ...] = field(default_factory=tuple)  # named, but removed before
    unfit: tuple[Unfit, ...] = field(default_factory=tuple)  # left out, or kept as they were
    announced: tuple[Announcement, ...] = field(default_factory=tuple)  # hub, Podping told

    @property
    def left_out(self) -> tuple[Unfit, ...]:
        """The episodes that are due but not in the feed (each named with its fix)."""
        return tuple(u for u in self.unfit if not u.kept)

    def summary(self) -> str:
        """One line for the terminal and the Prefect artifact."""
        state = "uploaded" if self.uploaded else "unchanged, nothing uploaded"
        parts = [f"Feed {self.feed_url}: {self.items} episode(s), {state}"]
        if self.scheduled:
            parts.append(f"{self.scheduled} scheduled, not yet published")
        if self.removed:
            parts.append(
                f"removed for good on request (kept in the catalog): {', '.join(self.removed)}"
            )
        if self.already_removed:
            parts.append(
                f"already removed before, nothing to do: {', '.join(self.already_removed)}"
            )
        if self.cover_uploaded:
            parts.append(f"cover art uploaded to {self.cover_url}")
        parts += [u.describe().rstrip(".") for u in self.unfit]
        parts += [a.describe() for a in self.announced]
        return "; ".join(parts) + "."


def read_cover_art(path: Path) -> tuple[bytes, str, str]:
    """The cover art's bytes, checked (`check_cover_art`), its key and its content type."""
    try:
        data = read_regular(path, path.parent)  # never through a link (the drop folder rule)
    except FileNotFoundError:
        raise InputError(
            f"{path}: the cover art named in show.yaml is missing. Put it there or fix 'image'."
        ) from None
    check_cover_art(data, str(path))
    extension, content_type = COVER_FORMATS[cover_format(data)]
    return data, cover_art_key(data, extension), content_type


def _publish_cover_art(storage: Storage, path: Path) -> tuple[str, bool]:
    """Check the cover art and upload it under its content hash if it is not there yet."""
    data, key, content_type = read_cover_art(path)
    if storage.head(key) is not None:
        return key, False
    storage.put_bytes(key, data, content_type=content_type, cache_control=CACHE_LONG, public=True)
    return key, True


def _check_audio(storage: Storage, episodes: Sequence[Episode], workers: int) -> dict[str, str]:
    """guid -> why, for each enclosure that is not in storage with the size in the catalog."""

    def problem(episode: Episode) -> str | None:
        info = storage.head(episode.audio_key)
        if info is None:
            return (
                f"its audio {episode.audio_key} is missing from storage, so its item would "
                "point at a 404. Publish the episode again, or remove it from the feed for good "
                f"with --remove {episode.guid}"
            )
        if info.size != episode.size:
            return (
                f"its audio {episode.audio_key} is {info.size} bytes in storage but "
                f"{episode.size} in the catalog. Publish the episode again"
            )
        return None

    if not episodes:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(episodes)))) as pool:
        found = pool.map(problem, episodes)
        return {e.guid: p for e, p in zip(episodes, found, strict=True) if p}


# --- screening: which items go in, which stay as they were, which are left out ----------------


def live_items(live_xml: bytes | None) -> dict[str, etree._Element]:
    """guid -> <item> of the live feed ({} when there is none or it cannot be read)."""
    if not live_xml:
        return {}
    try:
        root = etree.fromstring(live_xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return {}
    found: dict[str, etree._Element] = {}
    for item in root.iterfind("channel/item"):
        found.setdefault((item.findtext("guid") or "").strip(), item)
    return found


def _enclosure(item: etree._Element) -> tuple[str, str]:
    enclosure = item.find("enclosure")
    if enclosure is None:
        return "", ""
    return enclosure.get("url", ""), enclosure.get("length", "")


@dataclass(frozen=True)
class _Items:
    """What goes into the feed: the catalog's episodes without the ones left out, the due
    ones among them, the live items kept as they were, and every unfit episode."""

    episodes: list[Episode]
    due: list[Episode]
    kept: dict[str, etree._Element]
    unfit: tuple[Unfit, ...]
    screened: Sequence[Episode]  # every due episode, before any was left out


def _items(
    episodes: Sequence[Episode],
    due: Sequence[Episode],
    reasons: Mapping[str, str],
    live: Mapping[str, etree._Element],
) -> _Items:
    """Sort the due episodes by their screening `reasons` (guid -> why)."""
    unfit = tuple(
        Unfit(e.guid, e.slug, reasons[e.guid], kept=e.guid in live)
        for e in due
        if e.guid in reasons
    )
    out = {u.guid for u in unfit if not u.kept}
    kept = {u.guid: live[u.guid] for u in unfit if u.kept}
    return _Items(
        [e for e in episodes if e.guid not in out],
        [e for e in due if e.guid not in out],
        kept,
        unfit,
        due,
    )


def _screen(
    storage: Storage,
    due: Sequence[Episode],
    live: Mapping[str, etree._Element],
    settings: Settings,
    base: str,
) -> dict[str, str]:
    """guid -> why its item cannot go in: its record (`limits.record_problems`), or its
    enclosure (HEAD), for an enclosure the live feed does not already carry as it is."""
    reasons = {e.guid: record_note(found) for e in due if (found := record_problems(e))}

    def unchanged(episode: Episode) -> bool:
        item = live.get(episode.guid)
        url = clean_text(enclosure_url(base, episode.audio_key, settings.analytics_prefix))
        return item is not None and _enclosure(item) == (url, str(episode.size))

    to_check = [e for e in due if e.guid not in reasons and not unchanged(e)]
    reasons.update(_check_audio(storage, to_check, settings.upload_concurrency))
    return reasons


def _refused_alone(
    build: Callable[[Sequence[Episode], Mapping[str, etree._Element]], bytes],
    items: _Items,
    live: Mapping[str, etree._Element],
) -> dict[str, str]:
    """guid -> the gate's problems, for each new item that the gate refuses on its own.

    Runs only when the gate refused a whole feed. Nothing is blamed on an item when the
    channel alone is refused: that is not one episode's fault.
    """
    if check_feed(build([], {}), live_xml=None, episodes=[]):
        return {}
    found: dict[str, str] = {}
    for episode in items.due:
        if episode.guid in live:
            continue
        problems = check_feed(build([episode], {}), live_xml=None, episodes=[episode])
        if problems:
            found[episode.guid] = "the feed gate refuses its item: " + "; ".join(problems)
    return found


def publish_feed(
    storage: Storage,
    show: Show,
    show_dir: Path,
    catalog: Catalog,
    settings: Settings,
    now: datetime,
) -> FeedResult:
    """Build the feed from the catalog and upload it if it changed and passes the gate.

    Episodes the catalog marks removed are left out, and the gate accepts their absence
    (removing is `remove_episodes`' job, see `regenerate_feed`). A due episode whose item
    cannot go in is left out (new) or keeps its last good item (live), and is named in
    `FeedResult.unfit` (see the module docstring). Then the record of what the feed was
    built from is updated (`FEED_STATE_KEY`). Nothing is ever deleted from storage.
    Raises InputError for bad cover art and FeedGateError (nothing uploaded, the live feed
    untouched) when the gate refuses the feed for a reason that is not one new episode's.
    """
    base = resolve_public_url(show, settings)
    feed_url = feed_url_for(base)
    cover_key, cover_uploaded = _publish_cover_art(storage, Path(show_dir) / show.image)

    def build(episodes: Sequence[Episode], kept: Mapping[str, etree._Element]) -> bytes:
        return build_feed(
            show,
            list(episodes),  # all of them: removed ones count for lastBuildDate
            public_url=base,
            now=now,
            analytics_prefix=settings.analytics_prefix,
            feed_url=feed_url,
            cover_key=cover_key,
            kept=kept,
            hub=settings.websub_hub,
        )

    live = storage.get_bytes(FEED_KEY)
    current = live_items(live[0] if live else None)
    due = feed_episodes(catalog.episodes, now)
    items = _items(catalog.episodes, due, _screen(storage, due, current, settings, base), current)
    xml = build(items.episodes, items.kept)
    if live is None or live[0] != xml:
        xml, items, problems = _gated(
            xml, items, build, live[0] if live else None, catalog, current
        )
        if problems:
            raise FeedGateError(
                f"The feed {feed_url} was not published (the live feed is unchanged): "
                + "; ".join(problems)
                + "."
            )
    result = FeedResult(
        feed_url=feed_url,
        items=len(items.due),
        scheduled=sum(1 for e in catalog.episodes if e.publish_at > now and e.removed_at is None),
        uploaded=False,
        cover_url=public_url(base, cover_key),
        cover_uploaded=cover_uploaded,
        unfit=items.unfit,
    )
    for unfit in items.unfit:
        log.warning("Feed %s: %s", feed_url, unfit.describe())
    etag = live[1] if live else ""
    if live is None or live[0] != xml:
        # One put, conditional on the live feed we compared with: a concurrent run makes this
        # fail (ConcurrentWriteError) instead of overwriting a feed our gate never saw.
        etag = storage.put_bytes(
            FEED_KEY,
            xml,
            content_type=FEED_CONTENT_TYPE,
            cache_control=CACHE_SHORT,
            public=True,
            if_match=live[1] if live else None,
            if_none_match=live is None,
        ).etag
        result = replace(result, uploaded=True, announced=announce_feed_change(feed_url, settings))
    # The web pages follow the feed (flows.web.publish); its state is recorded after them.
    publish_feed_pages(storage, show, settings, base, cover_key, catalog, items.due)
    inputs = feed_inputs(catalog.etag, show, cover_key, base, settings)
    record_state(storage, FeedState.of(inputs, etag, catalog.episodes, now))
    return result


def _gated(
    xml: bytes,
    items: _Items,
    build: Callable[[Sequence[Episode], Mapping[str, etree._Element]], bytes],
    live_xml: bytes | None,
    catalog: Catalog,
    live: Mapping[str, etree._Element],
) -> tuple[bytes, _Items, list[str]]:
    """The feed, its items and the gate's problems with it (none: publish it). When the gate
    refuses the feed, the new items it refuses on their own are left out and it gates again."""

    def problems(xml: bytes, items: _Items) -> list[str]:
        return check_feed(
            xml,
            live_xml=live_xml,
            episodes=items.due,
            remove_guids={e.guid for e in catalog.episodes if e.removed_at is not None},
            catalog_guids={e.guid for e in catalog.episodes},
        )

    found = problems(xml, items)
    refused = _refused_alone(build, items, live) if found else {}
    if refused:
        reasons = {**{u.guid: u.reason for u in items.unfit}, **refused}
        items = _items(catalog.episodes, items.screened, reasons, live)
        xml = build(items.episodes, items.kept)
        found = problems(xml, items)
    return xml, items, found


# --- the record of the live feed's inputs: a cheap check that it is current -----------------


@cache
def builder_version() -> str:
    """A hash of the code that decides the feed's bytes (builder, screening, gate): a new
    version of it makes every live feed stale once, so the next run rebuilds it."""
    modules = (feed_module, feeditems_module, feedgate_module, limits_module)
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(str(module.__file__)).read_bytes())
    digest.update(Path(__file__).read_bytes())
    digest.update(site_version().encode())  # the web pages' templates and code (flows.web)
    return digest.hexdigest()


def feed_inputs(
    catalog_etag: str | None,
    show: Show,
    cover_key: str,
    base_url: str,
    settings: Settings,
) -> str:
    """A hash of everything the feed is built from, apart from "now" (see `FeedState`).

    The catalog is stood for by its ETag, so checking it is one HEAD request. Of the
    settings, the analytics prefix and the WebSub hub are in the feed's bytes.
    """
    document = {
        "catalog_etag": catalog_etag,
        "show": show.model_dump(mode="json"),
        "cover_key": cover_key,
        "base_url": base_url,
        "analytics_prefix": settings.analytics_prefix,
        "websub_hub": settings.websub_hub,
        "builder": builder_version(),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class FeedState:
    """What the live feed was built from (`feed_inputs`), its ETag, and the span of "now" in
    which the same inputs give the same feed: no episode becomes due or is removed in it."""

    inputs: str
    feed_etag: str
    valid_from: datetime | None  # the last publish/removal time at or before the build
    valid_until: datetime | None  # the next one after it

    @classmethod
    def of(
        cls, inputs: str, feed_etag: str, episodes: Iterable[Episode], now: datetime
    ) -> FeedState:
        """The state of a feed built from `episodes` at `now`."""
        moments = [
            moment
            for e in episodes
            for moment in (e.publish_at, e.removed_at)
            if moment is not None
        ]
        return cls(
            inputs,
            feed_etag,
            max((m for m in moments if m <= now), default=None),
            min((m for m in moments if m > now), default=None),
        )

    def covers(self, now: datetime) -> bool:
        """Whether a feed built at `now` from the same inputs is this one."""
        after_start = self.valid_from is None or self.valid_from <= now
        return after_start and (self.valid_until is None or now < self.valid_until)

    def to_bytes(self) -> bytes:
        document = {
            "inputs": self.inputs,
            "feed_etag": self.feed_etag,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }
        return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> FeedState | None:
        """The recorded state, or None when it is not one (the feed is then rebuilt)."""
        try:
            document = json.loads(data)

            def moment(key: str) -> datetime | None:
                value = document[key]
                return datetime.fromisoformat(value) if value is not None else None

            return cls(
                str(document["inputs"]),
                str(document["feed_etag"]),
                moment("valid_from"),
                moment("valid_until"),
            )
        except (ValueError, TypeError, KeyError):
            return None


def record_state(storage: Storage, state: FeedState) -> None:
    """Write the state beside the feed when it changed (a private object)."""
    data = state.to_bytes()
    found = storage.get_bytes(FEED_STATE_KEY)
    if found is not None and found[0] == data:
        return
    storage.put_bytes(
        FEED_STATE_KEY,
        data,
        content_type="application/json",
        cache_control=CACHE_PRIVATE,
        public=False,
    )


def feed_staleness(
    storage: Storage, show: Show, show_dir: Path, settings: Settings, now: datetime
) -> str:
    """Why the live feed may not be what the catalog gives at `now` ("" when it is).

    Three requests whatever the catalog's size: HEAD the catalog, HEAD the feed, GET the
    state recorded by the last `publish_feed`. No catalog and no feed is current too: there
    is nothing to publish yet. The cover art is read from the episodes folder.
    """
    catalog = storage.head(CATALOG_KEY)
    live = storage.head(FEED_KEY)
    if catalog is None and live is None:
        return ""
    if live is None:
        return "there is no live feed"
    found = storage.get_bytes(FEED_STATE_KEY)
    state = FeedState.from_bytes(found[0]) if found else None
    if state is None:
        return f"there is no readable record of what it was built from ({FEED_STATE_KEY})"
    _, cover_key, _ = read_cover_art(Path(show_dir) / show.image)
    base = resolve_public_url(show, settings)
    etag = catalog.etag if catalog else None
    if state.inputs != feed_inputs(etag, show, cover_key, base, settings):
        return "the catalog, show.yaml, the cover art or a feed setting changed since it was built"
    if live.etag != state.feed_etag:
        return "it is not the feed last built from the catalog"
    if not state.covers(now):
        return "an episode's publish time came (or a removal took effect) since it was built"
    return ""
