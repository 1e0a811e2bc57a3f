"""Choose what goes into one issue: pure functions, no I/O, no clock.

The rules (issue 2, "Selection"):

- Posts count when published after the previous issue's cutoff (from the latest earlier
  manifest) or, for the first issue, in the `first_issue_days` before the month's start,
  and at the latest at this issue's cutoff, which is `now`.
- A post id included in any earlier issue is never repeated.
- Events are listed when they start within `events_days` from the later of `now` and
  the first day of the issue's month (an issue built the month before goes out then, so
  earlier events would be past); they may be listed again next month: "coming up" is a
  reminder, not news.
- Funding calls are ordered by deadline and dropped once closed (deadline before today in
  Europe/Stockholm).
- Listen & watch: podcast and video posts, plus published catalog episodes that no podcast
  post already announces (same link or same title).
- At most `max_items` items, counted as the reader sees them: a repeating event is one
  entry (its later dates listed under it), however many occurrences it has. The trimming
  keeps every section visible, then deadlines and upcoming events, then the newest. What
  was left out is listed.

The `Selection` keeps the edition it was made for (its sections' order, its words), so
rendering and planning the issue follow the same edition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from flows.core.errors import SettingsError
from flows.core.models import STOCKHOLM, Episode, Event, Post, PostKind
from flows.core.storage import public_url
from flows.newsletter.edition import Edition, Section, edition_for
from flows.newsletter.issue import month_start
from flows.newsletter.sources import html_to_text
from flows.web.keys import episode_page_key

if TYPE_CHECKING:
    from flows.core.settings import Settings


@dataclass(frozen=True)
class ListenItem:
    """Something to listen to or watch: a podcast/video post or a catalog episode."""

    id: str
    title: str
    link: str
    published: datetime
    summary: str
    kind: Literal["podcast", "video"]
    image: str | None = None
    image_alt: str = ""
    duration: int | None = None  # seconds, known for catalog episodes


@dataclass(frozen=True)
class LeftOut:
    """An item that qualified but did not fit under `max_items`."""

    id: str
    section: Section
    title: str
    link: str


@dataclass(frozen=True)
class Selection:
    """Everything one issue shows, in display order, and what it left out."""

    month: str
    window_start: datetime  # posts published after this ...
    cutoff: datetime  # ... and at the latest at this (= now); the next issue starts here
    events_until: datetime
    news: tuple[Post, ...]
    funding: tuple[Post, ...]
    events: tuple[Event, ...]
    listen: tuple[ListenItem, ...]
    edition: Edition  # the sections' order and names, the words and dates of the issue
    left_out: tuple[LeftOut, ...] = ()
    closed_calls: tuple[str, ...] = ()  # ids of funding calls dropped because they closed
    new_items: int = 0  # posts/episodes/events no earlier issue showed

    def section(self, name: Section) -> tuple[Any, ...]:
        """The items of one section by its name."""
        return getattr(self, name)

    def counts(self) -> dict[str, int]:
        """Number of items per section as the reader sees them (a repeating event once),
        in the edition's order."""
        return {
            name: len(_entries(self.events)) if name == "events" else len(self.section(name))
            for name in self.edition.order
        }

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    @property
    def is_empty(self) -> bool:
        """True when nothing is new since the earlier issues (no draft is worth sending)."""
        return self.new_items == 0


def window_start(month: str, previous: Sequence[dict[str, Any]], first_issue_days: int) -> datetime:
    """Where this issue's window opens: the latest earlier issue's cutoff, else N days back."""
    earlier = [m for m in previous if m.get("month", "") < month and m.get("cutoff")]
    if earlier:
        latest = max(earlier, key=lambda m: m["month"])
        start = datetime.fromisoformat(latest["cutoff"])
        if start.tzinfo is None:
            raise SettingsError(
                f"The manifest of issue {latest['month']} has a cutoff without a time zone "
                f"({latest['cutoff']!r}); add the offset, e.g. +01:00."
            )
        return start.astimezone(STOCKHOLM)
    return month_start(month) - timedelta(days=first_issue_days)


def included_ids(previous: Iterable[dict[str, Any]]) -> set[str]:
    """Every item id that an earlier issue's manifest lists in any section."""
    seen: set[str] = set()
    for manifest in previous:
        for ids in (manifest.get("sections") or {}).values():
            seen.update(ids)
    return seen


def _norm_title(title: str) -> str:
    return " ".join(title.casefold().split())


def episode_item(episode: Episode, settings: Settings) -> ListenItem:
    """A catalog episode as a listen item, linked to its web page (player, chapters,
    transcript, how to subscribe: `flows.web`), published with the feed."""
    return ListenItem(
        id=f"episode:{episode.guid}",
        title=episode.title,
        link=public_url(settings.public_url, episode_page_key(episode.slug)),
        published=episode.publish_at.astimezone(STOCKHOLM),
        # The producer's description is Markdown: its sanitised HTML gives the plain text
        # (no "**" or list numbers in the email); a record without HTML keeps the raw text.
        summary=_shorten(html_to_text(episode.description_html) or episode.description),
        kind="podcast",
        duration=episode.duration,
    )


def post_item(post: Post) -> ListenItem:
    """A podcast or video post as a listen item."""
    return ListenItem(
        id=post.id,
        title=post.title,
        link=post.link,
        published=post.published,
        summary=post.summary,
        kind="video" if post.kind is PostKind.VIDEO else "podcast",
        image=post.image,
        image_alt=post.image_alt,
    )


def _shorten(text: str, limit: int = 300) -> str:
    """Plain text cut at a word boundary, with an ellipsis when cut.

    >>> _shorten("ett två tre", 7)
    'ett två…'
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit + 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def entry_key(event: Event) -> tuple[str, str, str]:
    """What makes occurrences one entry for the reader (title, link, place): listed once with
    its later dates (render) and counted once against `max_items`."""
    return (event.title, event.url or event.online_url or "", event.location)


def _entries(events: Sequence[Event]) -> list[list[Event]]:
    """Occurrences grouped into entries, in the order of their first occurrence."""
    entries: dict[tuple[str, str, str], list[Event]] = {}
    for event in events:
        entries.setdefault(entry_key(event), []).append(event)
    return list(entries.values())


def _lead(item: Any) -> Any:
    """An item of a section as trimming sees it: an event entry by its first occurrence."""
    return item[0] if isinstance(item, list) else item


def _item_date(section: Section, item: Any) -> datetime | date:
    if section == "events":
        return item.start
    if section == "funding" and item.deadline is not None:
        return item.deadline
    return item.published


def _trim(
    sections: dict[Section, list[Any]], max_items: int, order: tuple[Section, ...]
) -> tuple[dict[Section, list[Any]], list[LeftOut]]:
    """Keep at most `max_items`, fairly.

    First every non-empty section keeps its top few (a share of half the budget), so no
    section disappears; then the remaining places go to funding calls with a deadline and
    events (soonest first), then to the newest of the rest.
    """
    total = sum(len(items) for items in sections.values())
    if total <= max_items:
        return sections, []
    nonempty = [name for name in order if sections[name]]
    share = max(1, max_items // (2 * len(nonempty)))
    kept: set[tuple[Section, int]] = set()
    for name in nonempty:
        for index in range(min(share, len(sections[name]))):
            if len(kept) < max_items:
                kept.add((name, index))

    def rank(key: tuple[Section, int]) -> tuple[int, float, str]:
        name, index = key
        item = _lead(sections[name][index])
        dated = name == "events" or (name == "funding" and item.deadline is not None)
        when = _item_date(name, item)
        stamp = (
            datetime(when.year, when.month, when.day, tzinfo=STOCKHOLM)
            if not isinstance(when, datetime)
            else when
        ).timestamp()
        # dated items: soonest first; others: newest first
        return (0, stamp, item.id) if dated else (1, -stamp, item.id)

    rest = sorted(
        ((name, i) for name in nonempty for i in range(len(sections[name]))),
        key=rank,
    )
    for key in rest:
        if len(kept) >= max_items:
            break
        kept.add(key)

    trimmed: dict[Section, list[Any]] = {name: [] for name in order}
    left_out: list[LeftOut] = []
    for name in order:
        for index, entry in enumerate(sections[name]):
            item = _lead(entry)
            if (name, index) in kept:
                trimmed[name].append(entry)
            else:
                link = (item.url or item.online_url or "") if name == "events" else item.link
                left_out.append(LeftOut(item.id, name, item.title, link))
    return trimmed, left_out


def select_issue(
    posts: Sequence[Post],
    events: Sequence[Event],
    *,
    month: str,
    now: datetime,
    previous: Sequence[dict[str, Any]],
    settings: Settings,
    episodes: Sequence[Episode] | None = None,
    edition: Edition | None = None,
) -> Selection:
    """Decide the content of the issue for `month`, given everything read and `now`, for
    `edition` (None: the one the settings select)."""
    edition = edition or edition_for(settings)
    month_start(month)  # validates the form
    if now.tzinfo is None:
        raise SettingsError(f"'now' must be timezone-aware, got {now.isoformat()}.")
    now = now.astimezone(STOCKHOLM)
    start = window_start(month, previous, settings.first_issue_days)
    events_from, until = events_window(month, now, settings.events_days)
    seen = included_ids(previous)

    upcoming = _upcoming_events(events, events_from, until)
    news, funding, closed, listen = _sort_posts(
        _fresh_posts(posts, start, now, seen), upcoming, now.date()
    )
    listen = _with_new_episodes(listen, episodes or (), start, now, seen, settings)

    sections, left_out = _trim(
        {"news": news, "funding": funding, "events": _entries(upcoming), "listen": listen},
        settings.max_items,
        edition.order,
    )
    listed = _upcoming_events(
        [e for entry in sections["events"] for e in entry], events_from, until
    )
    new_posts = len(news) + len(funding) + len(listen)
    new_events = sum(1 for e in upcoming if e.id not in seen)
    return Selection(
        month=month,
        window_start=start,
        cutoff=now,
        events_until=until,
        news=tuple(sections["news"]),
        funding=tuple(sections["funding"]),
        events=tuple(listed),
        listen=tuple(sections["listen"]),
        edition=edition,
        left_out=tuple(left_out),
        closed_calls=tuple(closed),
        new_items=new_posts + new_events,
    )


def _fresh_posts(
    posts: Sequence[Post], start: datetime, now: datetime, seen: set[str]
) -> list[Post]:
    """Posts of the window not in an earlier issue, newest first, each id once."""
    fresh = sorted(
        (p for p in posts if start < p.published <= now and p.id not in seen),
        key=lambda p: (-p.published.timestamp(), p.id),
    )
    # A post id may appear in two feeds: keep its first (newest) copy only.
    unique: dict[str, Post] = {}
    for post in fresh:
        unique.setdefault(post.id, post)
    return list(unique.values())


def events_window(month: str, now: datetime, events_days: int) -> tuple[datetime, datetime]:
    """The events an issue lists: [start, until), starting at the later of `now` and the
    first day of `month`, and running `events_days` from there.

    >>> start, until = events_window("2027-01", datetime(2026, 12, 1, tzinfo=STOCKHOLM), 45)
    >>> start.isoformat(), until.isoformat()
    ('2027-01-01T00:00:00+01:00', '2027-02-15T00:00:00+01:00')
    """
    start = max(now.astimezone(STOCKHOLM), month_start(month))
    return start, start + timedelta(days=events_days)


def _upcoming_events(events: Sequence[Event], start: datetime, until: datetime) -> list[Event]:
    """Events starting from `start` until `until`, soonest first."""
    return sorted(
        (e for e in events if start <= e.start < until),
        key=lambda e: (e.start.timestamp(), e.title, e.id),
    )


def _sort_posts(
    fresh: list[Post], upcoming: list[Event], today: date
) -> tuple[list[Post], list[Post], list[str], list[ListenItem]]:
    """Posts into news, open funding calls (by deadline), closed calls' ids and listen items.

    An event post the calendar already lists (same link or title) is left out.
    """
    event_keys = {e.url for e in upcoming if e.url} | {_norm_title(e.title) for e in upcoming}
    news: list[Post] = []
    funding: list[Post] = []
    closed: list[str] = []
    listen: list[ListenItem] = []
    for post in fresh:
        if post.kind is PostKind.FUNDING:
            if post.deadline is not None and post.deadline < today:
                closed.append(post.id)
            else:
                funding.append(post)
        elif post.kind in (PostKind.PODCAST, PostKind.VIDEO):
            listen.append(post_item(post))
        elif post.kind is PostKind.EVENT and (
            post.link in event_keys or _norm_title(post.title) in event_keys
        ):
            continue  # the calendar already lists it under "På gång"
        else:
            news.append(post)
    funding.sort(key=lambda p: (p.deadline or date.max, -p.published.timestamp(), p.id))
    return news, funding, closed, listen


def _with_new_episodes(
    listen: list[ListenItem],
    episodes: Iterable[Episode],
    start: datetime,
    now: datetime,
    seen: set[str],
    settings: Settings,
) -> list[ListenItem]:
    """`listen` plus the catalog episodes of the window that no podcast post announces,
    newest first."""
    announced = {item.link for item in listen} | {_norm_title(i.title) for i in listen}
    for episode in episodes:
        published = episode.publish_at.astimezone(STOCKHOLM)
        if not (start < published <= now) or episode.removed_at is not None:
            continue  # outside the window, scheduled for later, or taken out of the feed
        item = episode_item(episode, settings)
        if item.id in seen:
            continue  # shown in an earlier issue
        if item.link in announced or _norm_title(item.title) in announced:
            continue  # a podcast post on the site already announces this episode
        listen.append(item)
    listen.sort(key=lambda i: (-i.published.timestamp(), i.id))
    return listen
