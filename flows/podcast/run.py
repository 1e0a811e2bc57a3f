"""Publishing podcast episodes: audio dropped in `episodes/inbox/` becomes tagged episodes
in storage and records in the catalog.

Plan, then execute:

0. `acquire_run_lock`: one publish run at a time per storage (`podcast/.lock`, private,
   created with If-None-Match). A second run stops cleanly and does nothing; a lock older
   than `lock_stale_seconds` (a crashed run) is taken over with If-Match on its ETag.
   The lock is released in a `finally`. The catalog's own If-Match still guards its writes;
   the lock keeps two runs from encoding, uploading and moving the same files. Holding it,
   a run first finishes the file moves of a run killed while moving (`complete_moves`), and
   after taking over a stale lock it rebuilds the feed even if it publishes nothing.
1. `plan_run`: read show.yaml and the cover, scan the inbox (pure sorting of files into
   candidates, refused and waiting), and load the catalog only if the inbox holds work.
2. `prepare_episode` (per candidate): make the audio to publish (`flows.podcast.loudness`: a
   WAV/FLAC/AIFF master is encoded to a loudness-normalised MP3; an MP3/M4A is measured and
   published as it is, with a warning when it is off target, or re-encoded if the settings
   ask), inspect it, check the metadata, tag a work copy, hash it, and describe every object
   to upload (a master goes to private storage, for a later re-encode). Bad input becomes a
   `Failed` with the reason; nothing is uploaded yet. At most `max_parallel_encodes()`
   ffmpeg jobs run at once, whatever the number of episodes prepared concurrently.
3. `upload_episode` (per prepared episode): upload what storage does not have yet
   (content-addressed keys, so a re-run uploads nothing; the encode is deterministic, so a
   re-dropped master gives the same MP3 and key).
4. `commit_catalog`: ONE catalog update for all good episodes, conditional on the ETag the
   plan read, so a concurrent run is detected instead of overwritten.
5. `settle_files`: move each episode's files to `published/` or `failed/` (with an
   `<name>.error.txt`), each group through a journal (`inbox/.moving-<slug>.json`) that
   the next run completes if this one is killed halfway; files of episodes that storage
   could not take stay in the inbox and are retried by the next run. Producers' files are
   never deleted.

An episode that an operator removed from the feed (`removed_at` in the catalog) stays
removed when its audio is dropped again: the drop is recorded, and the report says
"removed" with the way back (an operator restores it, see the README).

`publish` runs these in order as plain functions (tests, benchmarks); the Prefect flow
`publish_episodes` runs the same steps as tasks, several episodes at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.core.errors import (
    AudioError,
    CatalogError,
    ConcurrentWriteError,
    InputError,
    KraftsamlingError,
    StorageError,
)
from flows.core.models import STOCKHOLM, Episode, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, CACHE_PRIVATE, Storage
from flows.core.storage import public_url as object_url
from flows.podcast.catalog import Catalog, load_catalog, prune_backups, save_catalog, upsert
from flows.podcast.feed import publish_feed, resolve_public_url
from flows.podcast.inbox import (
    MAX_TITLE,
    TRANSCRIPT_TYPES,
    Candidate,
    ScanResult,
    clean_text,
    master_title_reason,
    open_regular,
    read_inbox,
    read_regular,
    refuse_clashes,
    slugify,
)
from flows.podcast.loudness import (
    PreparedAudio,
    master_format,
    master_key,
    max_parallel_encodes,
    prepare_audio,
    probe_master,
)
from flows.podcast.show import load_show

log = logging.getLogger(__name__)

AUDIO_PREFIX = "podcast/audio/"
TRANSCRIPT_PREFIX = "podcast/transcripts/"
CHAPTERS_PREFIX = "podcast/chapters/"
ART_PREFIX = "podcast/art/"
CHAPTERS_TYPE = "application/json+chapters"
CHAPTERS_VERSION = "1.2.0"
IMAGE_TYPES = {"JPEG": (".jpg", "image/jpeg"), "PNG": (".png", "image/png")}
DESCRIPTION_TAGS = {"p", "br", "a", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote"}
LOCK_KEY = "podcast/.lock"
MOVE_JOURNAL = ".moving-{}.json"  # in the inbox: hidden, so the scan never sees it
_BLOCK = r"</?(?:p|br|ul|ol|li|blockquote)\b[^>]*>"
# A newline right after or right before a block-level tag (with the spaces around it).
_BLOCK_NEWLINE = re.compile(rf"({_BLOCK})[ \t]*\n[ \t\n]*|[ \t]*\n[ \t\n]*(?={_BLOCK})")
LOSSY_EXTENSIONS = {"mp3": (".mp3",), "m4a": (".m4a", ".mp4", ".aac")}

# Encodes (and loudness measurements) at once in this process: one per core, since each
# ffmpeg job keeps to about one core. Episodes are prepared concurrently by the flow.
_ENCODE_SLOTS = threading.BoundedSemaphore(max_parallel_encodes())


# --- the records the steps pass on ------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """One object to put in storage: a file on disk or small bytes."""

    key: str
    content_type: str
    path: Path | None = None
    data: bytes | None = None
    public: bool = True  # audio, art, transcripts; a kept master is private
    cache_control: str = CACHE_LONG

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data or b"")


@dataclass(frozen=True)
class RunContext:
    """What every episode of one run shares."""

    settings: Settings
    show: Show
    cover: bytes
    cover_mime: str
    base_url: str
    workdir: Path
    now: datetime
    published: dict[str, Episode] = field(default_factory=dict)  # by slug


@dataclass(frozen=True)
class Prepared:
    """An episode checked and tagged, with everything it needs uploaded."""

    candidate: Candidate
    record: Episode  # guid "" for an episode not yet in the catalog
    uploads: tuple[Upload, ...]
    warnings: tuple[str, ...] = ()
    audio_note: str = ""  # how the published audio was made, for the report


@dataclass(frozen=True)
class Failed:
    """An episode that cannot be published as dropped; the reason names the file and fix."""

    name: str  # the audio file's name
    slug: str
    files: tuple[Path, ...]
    reason: str
    retry: bool = False  # storage or catalog trouble: leave the files in the inbox


@dataclass(frozen=True)
class Plan:
    """What one run will work on."""

    context: RunContext
    catalog: Catalog
    scan: ScanResult
    show_dir: Path


@dataclass(frozen=True)
class EpisodeOutcome:
    """One line of the report."""

    name: str
    slug: str
    status: str  # published | replaced | updated | unchanged | removed | failed | retry
    title: str = ""
    guid: str = ""
    url: str = ""
    reason: str = ""
    moved_to: str = ""
    warnings: tuple[str, ...] = ()
    loudness: dict[str, float] | None = None  # the published audio's figures
    audio_note: str = ""  # e.g. "WAV master -> MP3 128 kbps (linear, 1 encode)"

    @property
    def loudness_text(self) -> str:
        """`-16.2 LUFS, -1.6 dBTP, LRA 3.1 LU`, or "" when not measured."""
        if not self.loudness:
            return ""
        figures = self.loudness
        return (
            f"{figures['integrated_lufs']:.1f} LUFS, {figures['true_peak_dbtp']:.1f} dBTP, "
            f"LRA {figures.get('lra_lu', 0.0):.1f} LU"
        )


@dataclass
class PublishReport:
    """What a run did; `summary()` is what the CLI prints."""

    storage: str
    outcomes: list[EpisodeOutcome] = field(default_factory=list)
    waiting: tuple[str, ...] = ()
    uploads: int = 0  # objects actually written to storage
    feed: str = ""
    feed_error: str = ""
    locked_by: str = ""  # another run held the lock: this run did nothing
    notes: tuple[str, ...] = ()  # run-level remarks (e.g. a stale lock taken over)

    @property
    def failed(self) -> list[EpisodeOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "retry")]

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    def summary(self) -> str:
        """One line per episode, then totals."""
        if self.locked_by:
            return (
                f"Another run is publishing to {self.storage} since {self.locked_by}; "
                "this run did nothing. Run again when it has finished."
            )
        lines = []
        for o in self.outcomes:
            if o.status in ("failed", "retry"):
                where = f" -> {o.moved_to}" if o.moved_to else " (left in the inbox)"
                lines.append(f"  {o.status:<9} {o.name}{where}: {o.reason}")
                continue
            lines.append(f"  {o.status:<9} {o.name}: {o.title!r} {o.url}")
            if o.status == "removed":
                lines.append(f"            {o.reason}")
            if o.loudness:
                how = f" ({o.audio_note})" if o.audio_note else ""
                lines.append(f"            loudness: {o.loudness_text}{how}")
            lines.extend(f"            warning: {w}" for w in o.warnings)
        for name in self.waiting:
            lines.append(f"  waiting   {name}: still being copied, left for the next run")
        totals = (
            f"Episodes to {self.storage}: {self.count('published')} published, "
            f"{self.count('replaced', 'updated')} updated, {self.count('unchanged')} unchanged, "
            + (f"{self.count('removed')} removed from the feed, " if self.count("removed") else "")
            + f"{len(self.failed)} failed, {len(self.waiting)} waiting; "
            f"{self.uploads} object(s) uploaded."
        )
        if not lines:
            totals = f"Nothing new in the inbox. {totals}"
        tail = list(self.notes)
        if self.feed:
            tail.append(self.feed)
        if self.feed_error:
            tail.append(f"Feed not updated: {self.feed_error}")
        return "\n".join([totals, *lines, *tail])


# --- pure helpers -----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_dropped(path: Path, folder: Path, target: Path) -> str:
    """Copy a file of the drop folder `folder` to `target`, reading it once and never through
    a link (`open_regular`); returns its SHA-256.

    The checks, ffmpeg, mutagen and the upload then open the copy, so a dropped file swapped
    for a link halfway through the run is never followed.
    """
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_regular(path, folder) as source, target.open("wb") as copy:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            copy.write(chunk)
    return digest.hexdigest()


def audio_key(slug: str, sha256: str, extension: str) -> str:
    """The content-addressed key of an episode's audio; never overwritten in place.

    >>> audio_key("avsnitt-1", "0123456789abcdef", "mp3")
    'podcast/audio/avsnitt-1-01234567.mp3'
    """
    return f"{AUDIO_PREFIX}{slug}-{sha256[:8]}.{extension.lstrip('.')}"


def chapters_json(title: str, podcast_name: str, chapters: Sequence[Any]) -> bytes:
    """Podcasting 2.0 JSON chapters (version 1.2.0), deterministic bytes.

    >>> from flows.core.models import Chapter
    >>> json.loads(chapters_json("Ep", "Show", [Chapter(start=0, title="Intro")]))["chapters"]
    [{'startTime': 0, 'title': 'Intro'}]
    """
    document = {
        "version": CHAPTERS_VERSION,
        "title": title,
        "podcastName": podcast_name,
        "chapters": [
            {
                "startTime": int(c.start) if float(c.start).is_integer() else c.start,
                "title": c.title,
            }
            for c in chapters
        ],
    }
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def description_to_html(markdown: str) -> str:
    """The producer's Markdown as sanitised HTML for the feed (raw HTML is escaped), on
    one line: newlines beside block tags go, a soft line break becomes a space.

    >>> description_to_html("Hej **du** & <b>x</b>")
    '<p>Hej <strong>du</strong> &amp; &lt;b&gt;x&lt;/b&gt;</p>'
    >>> description_to_html("styrelsen\\nanvänder **AI**\\n*nu*\\n\\n- ett\\n- två")
    '<p>styrelsen använder <strong>AI</strong> <em>nu</em></p><ul><li>ett</li><li>två</li></ul>'
    """
    import nh3
    from markdown_it import MarkdownIt

    if not markdown.strip():
        return ""
    rendered = MarkdownIt("commonmark", {"html": False}).render(markdown)
    cleaned = nh3.clean(
        rendered,
        tags=DESCRIPTION_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
    )
    # markdown-it puts a newline after each block tag (layout, dropped) and keeps a soft
    # line break inside a paragraph as a newline (a space between words, kept as one).
    cleaned = _BLOCK_NEWLINE.sub(lambda m: m.group(1) or "", cleaned.strip())
    return re.sub(r"[ \t]*\n[ \t\n]*", " ", cleaned)


# --- 1. the plan ------------------------------------------------------------------------------


def read_cover(show: Show, show_dir: Path) -> tuple[bytes, str]:
    """The show's cover art bytes and MIME type (embedded in every episode's tags)."""
    path = show_dir / show.image
    data = read_regular(path, show_dir)  # a regular file in the episodes folder, no link
    if data.startswith(b"\x89PNG"):
        return data, "image/png"
    if data.startswith(b"\xff\xd8"):
        return data, "image/jpeg"
    raise InputError(f"{path}: the cover art must be a JPEG or PNG file. Export it as one.")


def plan_run(
    settings: Settings,
    storage: Storage,
    now: datetime,
    scan_time: float,
    workdir: Path,
    *,
    need_catalog: bool = False,
) -> Plan:
    """Read show.yaml, the inbox and the catalog; decide which files to work on.

    `now` is the run's time (catalog dates, default publish time); `scan_time` is the wall
    clock as a POSIX timestamp, for telling whether a file is still being copied. The
    catalog is read only when the inbox holds something to work on (or `need_catalog`):
    the 15-minute run with an empty inbox reads no catalog, however long it is, and its
    plan carries an empty, unread `Catalog` (etag None) that nothing writes.
    """
    show_dir = Path(settings.episodes_dir)
    show = load_show(show_dir / "show.yaml")
    cover, cover_mime = read_cover(show, show_dir)
    found = read_inbox(show_dir / "inbox", scan_time, settings.settle_seconds)
    if found.candidates or found.refused or need_catalog:
        catalog = load_catalog(storage)
    else:
        catalog = Catalog([], None)
    scan = refuse_clashes(found, catalog.episodes)
    context = RunContext(
        settings=settings,
        show=show,
        cover=cover,
        cover_mime=cover_mime,
        base_url=resolve_public_url(show, settings),
        workdir=workdir,
        now=now,
        published={ep.slug: ep for ep in catalog.episodes},
    )
    return Plan(context, catalog, scan, show_dir)


# --- 2. one episode: check, tag, describe uploads ---------------------------------------------


def _check_transcript(path: Path) -> None:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(
            f"{path.name}: the transcript is not UTF-8 text. Save it as UTF-8 and drop it again."
        ) from None
    if path.suffix.lower() == ".vtt" and not text.startswith("WEBVTT"):
        raise InputError(
            f"{path.name}: a WebVTT transcript must start with the line 'WEBVTT'. "
            "Export it again as WebVTT (.vtt)."
        )
    if not text.strip():
        raise InputError(f"{path.name}: the transcript is empty. Export it again.")


def _check_image(path: Path) -> tuple[str, str, list[str]]:
    """Extension, MIME type and warnings of an episode image (JPEG/PNG, ideally square)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError):
        raise InputError(
            f"{path.name}: the episode image is not a readable JPEG or PNG. Export it again."
        ) from None
    if fmt not in IMAGE_TYPES:
        raise InputError(f"{path.name}: the episode image is {fmt}; use JPEG or PNG.")
    warnings = []
    if width != height or not 1400 <= width <= 3000:
        warnings.append(
            f"{path.name}: Apple wants square episode art of 1400-3000 px; this is "
            f"{width}x{height}."
        )
    extension, mime = IMAGE_TYPES[fmt]
    return extension, mime, warnings


def _content_format(path: Path) -> str | None:
    """`master_format`, with an unreadable file left for the audio checks to explain."""
    try:
        return master_format(path)
    except OSError:
        return None


def audio_note(prepared: PreparedAudio, source_format: str) -> str:
    """How the published audio was made, for the report and the artifact.

    >>> audio_note(PreparedAudio(Path("a.mp3"), "lossy", {}, ()), "mp3")
    'MP3 as dropped'
    """
    if prepared.encode is None:
        return f"{source_format.upper()} as dropped"
    enc = prepared.encode
    what = f"{source_format.upper()} master" if prepared.kind == "master" else source_format.upper()
    attempts = f"{enc.attempts} encode" + ("s" if enc.attempts != 1 else "")
    return (
        f"{what} -> MP3 {enc.bitrate_kbps} kbps {'mono' if enc.channels == 1 else 'stereo'} "
        f"({enc.mode}, {attempts}, target {enc.target_lufs:g} LUFS)"
    )


def make_audio(
    candidate: Candidate, source: Path, context: RunContext
) -> tuple[PreparedAudio, Any, str]:
    """The audio to publish: (prepared audio, its AudioInfo, the source's format).

    `source` is the run's copy of the dropped audio (`copy_dropped`). A lossless master (by
    content) is encoded to a loudness-normalised MP3; an MP3/M4A is inspected, measured and
    published as it is (or re-encoded, see `prepare_audio`).
    Raises AudioError (bad audio, silence, ffmpeg failing: never retried).
    """
    from flows.podcast.audio import inspect_audio

    lossless = _content_format(source)
    if lossless is not None and candidate.meta.title is None:
        # The scan refuses a .wav without a title; this is a master under another name.
        raise InputError(master_title_reason(source, candidate.sidecar, lossless))
    # Each slug gets its own folder: the encode is named after the source's stem, the tagged
    # copy after the slug, and neither may overwrite the other.
    encode_dir = context.workdir / "encode" / candidate.slug
    encode_dir.mkdir(parents=True, exist_ok=True)
    source_info = None
    if lossless is None:
        try:
            source_info = inspect_audio(source)
        except AudioError:
            if candidate.is_master:  # named .wav/.flac/.aiff: say what a master must be
                probe_master(source)
            raise
    with _ENCODE_SLOTS:
        prepared = prepare_audio(source, encode_dir, context.settings, info=source_info)
    if source_info is None:  # a master: its encode is what gets tagged and published
        return prepared, inspect_audio(prepared.publish_path), str(lossless)
    if prepared.publish_path == source:
        return prepared, source_info, source_info.format
    return prepared, inspect_audio(prepared.publish_path), source_info.format


def _name_warning(candidate: Candidate, source_format: str) -> list[str]:
    """A warning when the file name's extension does not say what the content is."""
    suffix = candidate.audio.suffix.lower()
    fits = {
        "wav": (".wav",),
        "flac": (".flac",),
        "aiff": (".aiff", ".aif"),
        **LOSSY_EXTENSIONS,
    }.get(source_format, ())
    if suffix in fits or not fits:
        return []
    return [
        f"{candidate.audio.name} holds {source_format.upper()} audio, whatever its name says, "
        f"and was treated as {source_format.upper()}. Name it {candidate.audio.stem}{fits[0]} "
        "next time."
    ]


def prepare_episode(candidate: Candidate, context: RunContext) -> Prepared:
    """Make, inspect, check and tag one episode into the work folder.

    Raises InputError/AudioError (the episode goes to failed/).
    """
    from flows.podcast.audio import EpisodeTags, tag_audio

    meta = candidate.meta
    show = context.show
    existing = context.published.get(candidate.slug)
    # Each dropped file is copied once, never through a link; the steps below read the copy.
    inbox, dropped = candidate.audio.parent, _dropped_dir(candidate, context)
    source = dropped / candidate.audio.name
    source_sha256 = copy_dropped(candidate.audio, inbox, source)
    prepared_audio, info, source_format = make_audio(candidate, source, context)
    warnings = [
        *meta.warnings,
        *_name_warning(candidate, source_format),
        *prepared_audio.warnings,
        *info.warnings,
    ]

    title = meta.title
    if title is None and info.title:
        title, _ = clean_text(info.title, multiline=False)
    if not title:
        raise InputError(
            f"{candidate.audio.name} has no title: neither a sidecar nor the file's own tags "
            f"give one. Drop a {candidate.name}.md next to it with 'title: …' in its front "
            "matter (see episodes/README.md)."
        )
    if len(title) > MAX_TITLE:
        raise InputError(
            f"{candidate.audio.name}: the title is {len(title)} characters; at most {MAX_TITLE} "
            "are allowed. Shorten it in the sidecar."
        )
    description = meta.description
    if not description and candidate.sidecar is None and info.description:
        description, _ = clean_text(info.description, multiline=True)
    if not description:
        warnings.append(f"{candidate.audio.name}: no description; apps will show only the title.")

    for chapter in meta.chapters:
        if chapter.start >= info.duration:
            raise InputError(
                f"{candidate.sidecar.name if candidate.sidecar else candidate.audio.name}: "
                f"chapter {chapter.title!r} starts at {chapter.start:g} s but the audio is only "
                f"{info.duration:.1f} s long. Fix the chapter's start time."
            )

    publish_at = meta.publish_at or (existing.publish_at if existing else context.now)
    tags = EpisodeTags(
        title=title,
        artist=show.author,
        album=show.title,
        description=description,
        track=meta.episode,
        disc=meta.season,
        date=publish_at,
        url=show.website,
        chapters=tuple(meta.chapters),
        cover=context.cover,
        cover_mime=context.cover_mime,
    )
    extension = info.extension.lstrip(".")
    work = context.workdir / f"{candidate.slug}.{extension}"
    tag_audio(prepared_audio.publish_path, work, tags, info)
    digest = sha256_file(work)
    key = audio_key(candidate.slug, digest, extension)
    uploads = [Upload(key, info.mime_type, path=work)]
    kept_master = None
    if prepared_audio.master is not None:
        # The dropped master itself, privately, so the episode can be encoded again later.
        kept_master = master_key(candidate.slug, source_sha256, prepared_audio.master.format)
        uploads.append(
            Upload(
                kept_master,
                prepared_audio.master.mime_type,
                path=source,
                public=False,
                cache_control=CACHE_PRIVATE,
            )
        )

    transcript_key = transcript_type = None
    if candidate.transcript is not None:
        transcript = dropped / candidate.transcript.name
        transcript_hash = copy_dropped(candidate.transcript, inbox, transcript)
        _check_transcript(transcript)
        suffix = candidate.transcript.suffix.lower()
        transcript_type = TRANSCRIPT_TYPES[suffix]
        transcript_key = f"{TRANSCRIPT_PREFIX}{candidate.slug}-{transcript_hash[:8]}{suffix}"
        uploads.append(Upload(transcript_key, transcript_type, path=transcript))

    chapters_key = None
    if meta.chapters:
        data = chapters_json(title, show.title, meta.chapters)
        chapters_key = (
            f"{CHAPTERS_PREFIX}{candidate.slug}-{hashlib.sha256(data).hexdigest()[:8]}.json"
        )
        uploads.append(Upload(chapters_key, CHAPTERS_TYPE, data=data))

    image_key = None
    if candidate.image is not None:
        art = dropped / candidate.image.name
        art_hash = copy_dropped(candidate.image, inbox, art)
        ext, mime, image_warnings = _check_image(art)
        warnings.extend(image_warnings)
        image_key = f"{ART_PREFIX}{candidate.slug}-{art_hash[:8]}{ext}"
        uploads.append(Upload(image_key, mime, path=art))

    record = Episode(
        guid=existing.guid if existing else "",
        slug=candidate.slug,
        title=title,
        description=description,
        description_html=description_to_html(description),
        publish_at=publish_at,
        duration=max(1, round(info.duration)),
        size=work.stat().st_size,
        mime_type=info.mime_type,
        sha256=digest,
        audio_key=key,
        episode=meta.episode,
        season=meta.season,
        episode_type=meta.episode_type,
        explicit=show.explicit if meta.explicit is None else meta.explicit,
        guests=list(meta.guests),
        image_key=image_key,
        transcript_key=transcript_key,
        transcript_type=transcript_type,
        chapters_key=chapters_key,
        chapters=list(meta.chapters),
        first_published=existing.first_published if existing else context.now,
        last_updated=existing.last_updated if existing else context.now,
        source_sha256=source_sha256,
        master_key=kept_master,
        loudness=dict(prepared_audio.loudness),
        warnings=list(dict.fromkeys(warnings)),
    )
    return Prepared(
        candidate,
        record,
        tuple(uploads),
        tuple(dict.fromkeys(warnings)),
        audio_note=audio_note(prepared_audio, source_format),
    )


def _dropped_dir(candidate: Candidate, context: RunContext) -> Path:
    """Where the run keeps its copies of an episode's dropped files, under their names."""
    return context.workdir / "dropped" / candidate.slug


def try_prepare(candidate: Candidate, context: RunContext) -> Prepared | Failed:
    """`prepare_episode`, with bad input turned into a `Failed` (it goes to failed/)."""
    try:
        return prepare_episode(candidate, context)
    except InputError as exc:  # AudioError is an InputError
        # Producers know their inbox: "x.wav: …" reads better than the full path.
        reason = str(exc)
        for folder in (candidate.audio.parent, _dropped_dir(candidate, context)):
            reason = reason.replace(f"{folder}{os.sep}", "")
        return Failed(candidate.audio.name, candidate.slug, candidate.files, reason)


# --- 3. upload ----------------------------------------------------------------------------------


def upload_episode(storage: Storage, prepared: Prepared) -> int:
    """Upload what storage does not have yet (same key and size = already there; keys are
    content-addressed, so that is the same object). A kept master is uploaded privately.

    Returns the number of objects written. Raises StorageError.
    """
    written = 0
    for item in prepared.uploads:
        existing = storage.head(item.key)
        if existing is not None and existing.size == item.size:
            continue  # content-addressed: the same key and size is the same object
        if item.path is not None:
            storage.put_file(
                item.key,
                item.path,
                content_type=item.content_type,
                cache_control=item.cache_control,
                public=item.public,
            )
        else:
            storage.put_bytes(
                item.key,
                item.data or b"",
                content_type=item.content_type,
                cache_control=item.cache_control,
                public=item.public,
            )
        written += 1
    return written


def storage_failure(prepared: Prepared, exc: Exception) -> Failed:
    """An upload that failed: the files stay in the inbox for the next run."""
    cand = prepared.candidate
    return Failed(
        cand.audio.name,
        cand.slug,
        cand.files,
        f"{cand.audio.name}: storage failed ({exc}). The files stay in the inbox and the "
        "next run tries again; the catalog and the feed were not changed for this episode.",
        retry=True,
    )


# --- 4. the catalog -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogUpdate:
    """The catalog after the run and what happened to each slug."""

    catalog: Catalog
    changes: dict[str, str]  # slug -> new | unchanged | replaced | updated
    guids: dict[str, str]  # slug -> guid

    @property
    def changed(self) -> bool:
        return any(change != "unchanged" for change in self.changes.values())


def apply_records(base: Catalog, records: Iterable[Episode], now: datetime) -> CatalogUpdate:
    """Upsert each record (pure)."""
    catalog, changes = base, {}
    for record in records:
        catalog, changes[record.slug] = upsert(catalog, record, now)
    guids = {slug: catalog.by_slug(slug).guid for slug in changes}  # type: ignore[union-attr]
    return CatalogUpdate(catalog, changes, guids)


def commit_catalog(
    storage: Storage, base: Catalog, records: Sequence[Episode], now: datetime
) -> CatalogUpdate:
    """One catalog update for all good episodes, conditional on `base`'s ETag.

    Raises CatalogError when another run changed the catalog since `base` was read.
    """
    update = apply_records(base, records, now)
    if not update.changed:
        return update
    saved = save_catalog(storage, update.catalog, now)
    return CatalogUpdate(saved, update.changes, update.guids)


# --- 5. the files -------------------------------------------------------------------------------


def _free_names(folder: Path, files: Sequence[Path], extra_suffix: str | None) -> dict[Path, Path]:
    """Targets in `folder` for a group of files, numbered (`name-2.mp3`) if a name is taken."""
    number = 1
    while True:
        tag = "" if number == 1 else f"-{number}"
        targets = {f: folder / f"{f.stem}{tag}{f.suffix}" for f in files}
        names = list(targets.values())
        if extra_suffix is not None:
            names.append(folder / f"{files[0].stem}{tag}{extra_suffix}")
        if not any(os.path.lexists(path) for path in names):
            return targets
        number += 1


def _journal_path(files: Sequence[Path]) -> Path:
    """`inbox/.moving-<slug>.json` for a group (named after its audio file)."""
    audio = files[0]
    return audio.parent / MOVE_JOURNAL.format(slugify(audio.stem) or "episode")


def _write_journal(path: Path, document: dict[str, Any]) -> None:
    """Write the journal whole or not at all (temporary file, fsync, rename)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _do_moves(journal: Path, document: dict[str, Any]) -> None:
    """Carry out a journal's moves (those not done yet), its error file, then delete it.

    Paths are relative to the journal's folder, so a copied drop folder still works.
    """
    here = journal.parent
    for source_name, target_name in document["moves"]:
        source, target = here / source_name, here / target_name
        # lexists: a refused link is moved as itself, even when it points to nothing.
        if not os.path.lexists(source):
            continue  # moved before the crash
        if os.path.lexists(target):  # taken meanwhile (by hand): never overwrite it
            target = _free_names(target.parent, [target], None)[target]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    if document.get("error_file"):
        error_file = here / document["error_file"]
        if not error_file.exists():
            error_file.write_text(document["error_text"], encoding="utf-8")
    journal.unlink()


def move_group(files: Sequence[Path], folder: Path, error_text: str | None = None) -> Path:
    """Move a group of files (audio first) into `folder`; never overwrites, never deletes.

    With `error_text`, `<name>.error.txt` is written beside them. Returns the audio's path.
    The moves are first written to a journal (`inbox/.moving-<slug>.json`): a run killed
    halfway leaves it, and the next run completes it (`complete_moves`), so no sidecar or
    transcript is left alone in the inbox.
    """
    folder.mkdir(parents=True, exist_ok=True)
    present = [f for f in files if os.path.lexists(f)]
    targets = _free_names(folder, present, ".error.txt" if error_text is not None else None)
    audio_target = targets.get(files[0], folder / files[0].name)
    journal = _journal_path(files)

    def relative(path: Path) -> str:
        return os.path.relpath(path, journal.parent)

    document = {
        "moves": [[relative(source), relative(target)] for source, target in targets.items()],
        "error_file": None,
        "error_text": error_text,
    }
    if error_text is not None:
        document["error_file"] = relative(folder / f"{audio_target.stem}.error.txt")
    _write_journal(journal, document)
    _do_moves(journal, document)
    return audio_target


def complete_moves(inbox: Path) -> list[str]:
    """Finish the file moves of a run that was killed while moving (its journals).

    Call it holding the publish lock, before scanning. Returns what it did, for the report;
    a journal that cannot be read is left in place and named.
    """
    done: list[str] = []
    for leftover in sorted(Path(inbox).glob(MOVE_JOURNAL.format("*") + ".tmp")):
        leftover.unlink()  # killed while writing the journal: nothing was moved yet
    for journal in sorted(Path(inbox).glob(MOVE_JOURNAL.format("*"))):
        try:
            document = json.loads(journal.read_text(encoding="utf-8"))
            moves = [(str(a), str(b)) for a, b in document["moves"]]
        except (OSError, ValueError, KeyError, TypeError):
            done.append(
                f"{journal} is not a readable move journal; left in place. Move the files "
                "it names by hand, then delete it."
            )
            continue
        _do_moves(journal, document)
        names = ", ".join(
            Path(os.path.normpath(Path(inbox.name) / target)).as_posix() for _, target in moves
        )
        done.append(f"Finished moving the files of an interrupted run: {names}.")
    return done


def error_text(failed: Failed, now: datetime) -> str:
    """The content of `<name>.error.txt`: what is wrong and how to fix it, Swedish + English."""
    return (
        "Avsnittet kunde inte publiceras. / The episode could not be published.\n"
        "\n"
        f"Fil / File: {failed.name}\n"
        f"Tid / Time: {now.astimezone(STOCKHOLM):%Y-%m-%d %H:%M} (Stockholm)\n"
        "\n"
        "Vad är fel och hur du rättar det / What is wrong and how to fix it:\n"
        f"  {failed.reason}\n"
        "\n"
        "Rätta felet och lägg sedan ljudfilen (och .md-filen) i inbox/ igen, med det\n"
        "ursprungliga filnamnet (utan -2, -3 …). Inget som redan är publicerat har ändrats.\n"
        "Fix the problem, then drop the audio (and its .md sidecar) in inbox/ again under its\n"
        "original name (without -2, -3 …). Nothing already published was changed.\n"
    )


def settle_files(
    show_dir: Path,
    published: Sequence[Prepared],
    failed: Sequence[Failed],
    now: datetime,
) -> dict[str, str]:
    """Move published episodes to published/ and refused ones to failed/ (with error files).

    `retry` failures stay in the inbox. Returns {audio file name: where it went}.
    """
    moved: dict[str, str] = {}
    for prep in published:
        cand = prep.candidate
        target = move_group(cand.files, show_dir / "published")
        moved[cand.audio.name] = str(target.relative_to(show_dir))
    for fail in failed:
        if fail.retry or not fail.files:
            continue
        target = move_group(fail.files, show_dir / "failed", error_text(fail, now))
        moved[fail.name] = str(target.relative_to(show_dir))
    return moved


# --- 0. one run at a time ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunLock:
    """The content of `podcast/.lock`: which run holds it, since when, from where."""

    run_id: str
    started_at: datetime
    host: str
    etag: str = ""  # of the lock object as written or read

    def describe(self) -> str:
        """`2026-03-01 09:00 (run 1a2b…, host web-1)`, for messages."""
        return (
            f"{self.started_at.astimezone(STOCKHOLM):%Y-%m-%d %H:%M:%S} Stockholm time "
            f"(run id {self.run_id}, host {self.host})"
        )

    def to_bytes(self) -> bytes:
        body = {"run_id": self.run_id, "started_at": self.started_at.isoformat(), "host": self.host}
        return (json.dumps(body, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, etag: str) -> RunLock | None:
        """The lock as read back; None when it is not one of ours (unreadable)."""
        try:
            body = json.loads(data.decode("utf-8"))
            started = datetime.fromisoformat(body["started_at"])
            if started.tzinfo is None:
                return None
            return cls(str(body["run_id"]), started, str(body.get("host", "?")), etag)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class LockAttempt:
    """The outcome of `acquire_run_lock`: ours, or held by another run."""

    acquired: bool
    lock: RunLock  # ours when acquired, else the holder's
    took_over: RunLock | None = None  # a stale lock we replaced


def _write_lock(storage: Storage, lock: RunLock, *, if_match: str | None) -> RunLock:
    info = storage.put_bytes(
        LOCK_KEY,
        lock.to_bytes(),
        content_type="application/json",
        cache_control=CACHE_PRIVATE,
        public=False,
        if_match=if_match,
        if_none_match=if_match is None,
    )
    return RunLock(lock.run_id, lock.started_at, lock.host, info.etag)


def acquire_run_lock(
    storage: Storage,
    now: datetime,
    stale_seconds: float,
    *,
    run_id: str | None = None,
    host: str | None = None,
) -> LockAttempt:
    """Take the publish lock `podcast/.lock`, or find who holds it.

    Created with If-None-Match, so of two runs starting together exactly one wins. A lock
    older than `stale_seconds` (by its `started_at`, against `now`), or one that is not
    readable, is left by a crashed run and is taken over with If-Match on its ETag, so two
    runs cannot both take over. Raises StorageError when storage cannot be reached.
    """
    ours = RunLock(
        run_id or uuid.uuid4().hex,
        now,
        host or f"{socket.gethostname()} pid {os.getpid()}",
    )
    for _ in range(3):  # the holder may release between our write and our read
        try:
            return LockAttempt(True, _write_lock(storage, ours, if_match=None))
        except ConcurrentWriteError:
            pass
        found = storage.get_bytes(LOCK_KEY)
        if found is None:
            continue
        data, etag = found
        holder = RunLock.from_bytes(data, etag)
        if holder is not None and holder.run_id == ours.run_id:
            # Our own create, applied but its answer lost: the client's retry got 412.
            return LockAttempt(True, holder)
        age = (now - holder.started_at).total_seconds() if holder else None
        if holder is not None and age is not None and age <= stale_seconds:
            return LockAttempt(False, holder)
        try:
            taken = _write_lock(storage, ours, if_match=etag)
        except ConcurrentWriteError:
            continue  # another run took it over (or released it) first: look again
        stale = holder or RunLock("unreadable", now, "?", etag)
        log.warning("Took over the stale publish lock of %s", stale.describe())
        return LockAttempt(True, taken, took_over=stale)
    found = storage.get_bytes(LOCK_KEY)
    holder = RunLock.from_bytes(*found) if found else None
    return LockAttempt(False, holder or RunLock("unknown", now, "?"))


def release_run_lock(storage: Storage, lock: RunLock) -> None:
    """Remove our lock; leave it if another run has taken it over meanwhile.

    Never raises: a lock that cannot be removed is logged, and the next run takes it over
    once it is stale.
    """
    try:
        found = storage.get_bytes(LOCK_KEY)
        if found is None:
            return
        current = RunLock.from_bytes(*found)
        if current is None or current.run_id != lock.run_id:
            log.warning("The publish lock was taken over by another run; left in place.")
            return
        storage.delete(LOCK_KEY)
    except StorageError as exc:
        log.warning(
            "Could not remove the publish lock %s (%s); the next run takes it over once it is "
            "stale, or delete it by hand when no run is active.",
            LOCK_KEY,
            exc,
        )


def inbox_has_work(settings: Settings, scan_time: float) -> bool:
    """Whether the inbox holds anything to publish or to refuse (read-only).

    A run with nothing to do takes no lock, so a no-op run writes nothing at all. Its own
    scan uses the same `scan_time`, so it cannot find a file this scan did not (a newer file
    counts as still being copied).
    """
    # show.yaml first: a broken one stops the run before its lock, the first thing it writes.
    load_show(Path(settings.episodes_dir) / "show.yaml")
    inbox = Path(settings.episodes_dir) / "inbox"
    scan = read_inbox(inbox, scan_time, settings.settle_seconds)
    if scan.candidates or scan.refused:
        return True
    # A run killed while moving files left a journal: finishing it is work (under the lock).
    return any(inbox.glob(MOVE_JOURNAL.format("*")))


def locked_run(
    storage: Storage,
    settings: Settings,
    now: datetime,
    scan_time: float,
    work: Callable[[bool], PublishReport],
    *,
    run_id: str | None = None,
) -> PublishReport:
    """Run `work` holding the publish lock; if another run holds it, do nothing and say so.

    With nothing in the inbox to work on, `work` runs without the lock (it only reads).
    Holding the lock, the file moves of a run killed halfway are finished first
    (`complete_moves`). `work(repair_feed)` is told whether a stale lock was taken over:
    the run before crashed, maybe between its catalog and its feed, so the feed is rebuilt
    even if this run changes nothing (`publish_feed` uploads nothing when it is current).
    """
    if not inbox_has_work(settings, scan_time):
        return work(False)
    run_id = run_id or uuid.uuid4().hex
    try:
        attempt = acquire_run_lock(storage, now, settings.lock_stale_seconds, run_id=run_id)
    except StorageError:
        # Our create may have been applied with its answer lost: remove it if it is ours
        # (release only deletes a lock with our run id), so later runs are not held off.
        release_run_lock(storage, RunLock(run_id, now, "?"))
        raise
    if not attempt.acquired:
        return PublishReport(storage.describe(), locked_by=attempt.lock.describe())
    try:
        finished = complete_moves(Path(settings.episodes_dir) / "inbox")
        report = work(attempt.took_over is not None)
    finally:
        release_run_lock(storage, attempt.lock)
    notes = list(finished)
    if attempt.took_over is not None:
        notes.append(
            f"Took over a stale publish lock from {attempt.took_over.describe()}; that run "
            "seems to have stopped without finishing. Check the inbox for its files."
        )
    report.notes = (*report.notes, *notes)
    return report


# --- the whole run, as plain functions ----------------------------------------------------------


def removed_reason(candidate: Candidate, record: Episode) -> str:
    """What a re-drop of an episode that an operator removed from the feed tells the producer."""
    when = record.removed_at.astimezone(STOCKHOLM) if record.removed_at else None
    since = f" on {when:%Y-%m-%d %H:%M}" if when else ""
    return (
        f"{candidate.audio.name}: the episode {record.slug!r} was removed from the feed by an "
        f"operator{since}. This drop was recorded, but the episode stays out of the feed: ask "
        'an operator to restore it (see README): they set its "removed_at" back to null in '
        "podcast/catalog.json."
    )


def refused_as_failed(plan: Plan) -> list[Failed]:
    """The scan's refusals, in the shape of per-episode failures."""
    return [Failed(r.files[0].name, r.slug, r.files, r.reason) for r in plan.scan.refused]


def publish_feed_step(
    plan: Plan, storage: Storage, catalog: Catalog, now: datetime
) -> tuple[str, str]:
    """Regenerate the feed from the new catalog: (summary, error)."""
    try:
        result = publish_feed(
            storage, plan.context.show, plan.show_dir, catalog, plan.context.settings, now
        )
    except KraftsamlingError as exc:
        return "", str(exc)
    return result.summary(), ""


def prune_catalog_backups(storage: Storage, keep: int) -> None:
    """Keep the newest `keep` catalog backups; a failure only warns (the catalog is saved,
    and the next run that changes it prunes again)."""
    try:
        deleted = prune_backups(storage, keep)
    except StorageError as exc:
        log.warning("Old catalog backups were not pruned (the next run tries again): %s", exc)
        return
    if deleted:
        log.info("Pruned %d old catalog backup(s), keeping the newest %d.", len(deleted), keep)


def finish(
    plan: Plan,
    storage: Storage,
    prepared: Sequence[Prepared],
    failures: Sequence[Failed],
    uploads: int,
    commit: Any,
    *,
    repair_feed: bool = False,
) -> PublishReport:
    """Catalog, feed, files and report: the common tail of `publish` and the flow.

    `commit(base, records)` performs the catalog update (a plain call or a Prefect task).
    The feed is rebuilt whenever episodes reached the catalog (changed or not), and with
    `repair_feed` (a crashed run's lock was taken over) also when none did; the plan must
    then have read the catalog (`plan_run(need_catalog=True)`).
    """
    context, now = plan.context, plan.context.now
    failures = list(failures)
    report = PublishReport(storage.describe(), uploads=uploads)
    update: CatalogUpdate | None = None
    good = list(prepared)
    if good:
        try:
            update = commit(plan.catalog, [p.record for p in good])
        except (CatalogError, StorageError) as exc:
            failures.extend(
                Failed(
                    p.candidate.audio.name,
                    p.candidate.slug,
                    p.candidate.files,
                    f"the catalog was not updated: {exc}",
                    retry=True,
                )
                for p in good
            )
            good = []
    if update is not None and update.changed:
        prune_catalog_backups(storage, context.settings.catalog_backups_keep)
    if update is not None:
        # Also when the catalog did not change: a run that crashed between its catalog and
        # its feed leaves a stale feed, and a re-drop must repair it. publish_feed uploads
        # nothing when the live feed is already what the catalog gives.
        report.feed, report.feed_error = publish_feed_step(plan, storage, update.catalog, now)
    elif repair_feed and not prepared:
        # Nothing was committed (and no commit failed): the catalog as planned is current.
        report.feed, report.feed_error = publish_feed_step(plan, storage, plan.catalog, now)

    moved = settle_files(plan.show_dir, good, failures, now)
    for prep in good:
        slug = prep.candidate.slug
        change = update.changes[slug] if update else "unchanged"
        record = (update.catalog.by_slug(slug) if update else None) or prep.record
        status, reason = ("published" if change == "new" else change), ""
        if record.removed_at is not None:
            # Recorded, but an operator took it out of the feed and it stays out.
            status, reason = "removed", removed_reason(prep.candidate, record)
            log.warning(reason)
        report.outcomes.append(
            EpisodeOutcome(
                name=prep.candidate.audio.name,
                slug=slug,
                status=status,
                title=prep.record.title,
                guid=update.guids[slug] if update else "",
                url=object_url(context.base_url, record.audio_key),
                reason=reason,
                moved_to=moved.get(prep.candidate.audio.name, ""),
                warnings=prep.warnings,
                loudness=prep.record.loudness,
                audio_note=prep.audio_note,
            )
        )
    for fail in failures:
        report.outcomes.append(
            EpisodeOutcome(
                name=fail.name,
                slug=fail.slug,
                status="retry" if fail.retry else "failed",
                reason=fail.reason,
                moved_to=moved.get(fail.name, ""),
            )
        )
    report.waiting = tuple(
        sorted({p.name for p in plan.scan.waiting if not p.name.startswith(".")})
    )
    return report


def publish(
    settings: Settings,
    storage: Storage,
    now: datetime,
    scan_time: float | None = None,
    *,
    run_id: str | None = None,
) -> PublishReport:
    """The whole run without Prefect, one episode after the other, holding the publish lock.

    Does not raise for failed episodes: check `report.failed` (the flow turns them into
    PublishIncompleteError). When another run holds the lock, nothing is done and
    `report.locked_by` says who.
    """
    scanned = time.time() if scan_time is None else scan_time
    return locked_run(
        storage,
        settings,
        now,
        scanned,
        lambda repair: _publish_unlocked(settings, storage, now, scanned, repair),
        run_id=run_id,
    )


def _publish_unlocked(
    settings: Settings, storage: Storage, now: datetime, scan_time: float, repair_feed: bool
) -> PublishReport:
    with tempfile.TemporaryDirectory(prefix="kraftsamling-publish-") as work:
        plan = plan_run(settings, storage, now, scan_time, Path(work), need_catalog=repair_feed)
        failures = refused_as_failed(plan)
        prepared: list[Prepared] = []
        uploads = 0
        for candidate in plan.scan.candidates:
            result = try_prepare(candidate, plan.context)
            if isinstance(result, Failed):
                failures.append(result)
                continue
            try:
                uploads += upload_episode(storage, result)
            except StorageError as exc:
                failures.append(storage_failure(result, exc))
                continue
            prepared.append(result)
        return finish(
            plan,
            storage,
            prepared,
            failures,
            uploads,
            lambda base, records: commit_catalog(storage, base, records, now),
            repair_feed=repair_feed,
        )
