"""The plain records that flow between the modules.

Posts and events are frozen dataclasses (built by `sources`, read by `select` and `render`).
The show and the catalog's episodes are pydantic models because they are read from and
written to YAML/JSON and must be validated with clear messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

STOCKHOLM = ZoneInfo("Europe/Stockholm")


class PostKind(enum.StrEnum):
    """What a post from the site is; decides its section in the newsletter."""

    NEWS = "news"
    FUNDING = "funding"
    PODCAST = "podcast"
    VIDEO = "video"
    EVENT = "event"
    OTHER = "other"


@dataclass(frozen=True)
class Post:
    """One entry of a posts feed, cleaned for the newsletter."""

    id: str  # stable: the entry's id/guid, else its link
    title: str  # plain text
    link: str  # absolute http(s) URL
    published: datetime  # timezone-aware
    summary: str  # plain text: HTML removed with nh3, shortened
    kind: PostKind
    source: str  # the feed URL or path it came from
    image: str | None = None  # absolute http(s) URL
    image_alt: str = ""
    deadline: date | None = None  # a funding call's last application day
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """One occurrence of an event (recurring events are expanded into occurrences)."""

    id: str  # stable: UID + occurrence start
    title: str
    start: datetime  # timezone-aware; for all-day events midnight Europe/Stockholm
    end: datetime | None
    all_day: bool
    source: str
    location: str = ""  # a place; empty when online only
    online_url: str | None = None  # a link to join online
    url: str | None = None  # a page about the event
    description: str = ""  # plain text, short


@dataclass(frozen=True)
class SourceStatus:
    """How reading one source went; recorded in the newsletter manifest."""

    source: str
    ok: bool
    items: int = 0
    skipped: int = 0
    message: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Posts feeds: usable entries older than the window, counted in `items` but not
    # read further (see flows.newsletter.posts.parse_posts).
    old: int = 0
    # Links and images changed on their way to the email (http upgraded, left out...).
    links: tuple[str, ...] = ()


class Show(BaseModel):
    """The podcast's own metadata, from `episodes/show.yaml`."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    author: str = Field(min_length=1)
    owner_name: str = Field(min_length=1)
    owner_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    language: str = "sv"
    category: str = Field(min_length=1)  # Apple's category, e.g. "Government"
    subcategory: str | None = None
    explicit: bool = False
    website: str = Field(pattern=r"^https?://")
    image: str = Field(min_length=1)  # path relative to show.yaml
    copyright: str = ""
    type: Literal["episodic", "serial"] = "episodic"
    public_base_url: str | None = None  # overridden by settings/--public-url when given
    locked: bool = True
    medium: Literal["podcast", "music", "video", "audiobook", "newsletter", "blog"] = "podcast"
    funding_url: str | None = None
    funding_text: str | None = None
    new_feed_url: str | None = None
    block: bool = False
    complete: bool = False
    hosts: list[str] = Field(default_factory=list)
    # Told by email what each podcast run published, refused or warned about (flows.notify).
    producers: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(
        default_factory=list
    )
    # Podcasting 2.0 guid of the show. Set it once the feed is live, so that a later move of
    # the feed to another host keeps it; when unset it is derived from the feed URL.
    podcast_guid: str | None = None
    # The show's pages in Apple Podcasts and Spotify, linked from the show's web page
    # (podcast/index.html) under "Prenumerera" when set.
    apple_podcasts_url: str | None = Field(default=None, pattern=r"^https://")
    spotify_url: str | None = Field(default=None, pattern=r"^https://")


class Chapter(BaseModel):
    """A chapter mark: start in seconds from the beginning, and a title."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(ge=0)
    title: str = Field(min_length=1)


class Episode(BaseModel):
    """One published episode: a record of `podcast/catalog.json`, the truth about the feed."""

    model_config = ConfigDict(extra="ignore")

    guid: str  # assigned once at first publish (a UUID); never changes
    slug: str
    title: str
    description: str = ""  # plain text / Markdown as the producer wrote it
    description_html: str = ""  # sanitised HTML for the feed
    publish_at: AwareDatetime
    duration: int = Field(ge=0)  # whole seconds
    size: int = Field(ge=0)  # bytes of the published audio object
    mime_type: str
    sha256: str
    audio_key: str  # storage key of the published audio, relative to the storage prefix
    episode: int | None = Field(default=None, ge=0)
    season: int | None = Field(default=None, ge=0)
    episode_type: Literal["full", "trailer", "bonus"] = "full"
    explicit: bool = False
    guests: list[str] = Field(default_factory=list)
    image_key: str | None = None
    transcript_key: str | None = None
    transcript_type: str | None = None  # "text/vtt" or "application/x-subrip"
    chapters_key: str | None = None
    chapters: list[Chapter] = Field(default_factory=list)
    first_published: AwareDatetime
    last_updated: AwareDatetime
    source_sha256: str | None = None  # hash of the dropped file, to recognise a re-drop
    master_key: str | None = None  # private lossless master kept for a later re-encode
    loudness: dict[str, float] | None = None  # integrated LUFS, true peak, range
    warnings: list[str] = Field(default_factory=list)
    # Set when a person removed the episode from the feed on purpose (`feed --remove GUID`).
    # The record stays, so the guid is never reused and the removal is not undone by a re-run.
    removed_at: AwareDatetime | None = None
