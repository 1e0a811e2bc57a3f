"""One episode of a publish run: check it, make its audio, tag it, describe its uploads,
upload them.

`prepare_episode` makes the audio to publish (`flows.podcast.encode`: a WAV/FLAC/AIFF
master is encoded to a loudness-normalised MP3; an MP3/M4A is measured and published as it
is, with a warning when it is off target, or re-encoded if the settings ask), inspects it,
checks the metadata, decides a new episode's guid, tags a work copy (with the guid), hashes
it, and describes every object to upload (a master goes to private storage). Bad input is a
`Failed` with a note in Swedish and English (`try_prepare`, `flows.podcast.limits`); a missing
ffmpeg is the server's trouble: its episode stays in the inbox. Nothing is uploaded yet. Tag
texts are read as a sidecar's are (`limits.tag_text`). At most `max_parallel_encodes()`
ffmpeg jobs run at once in this process, however many episodes are prepared concurrently.

`upload_episode` uploads what storage does not have yet: keys are content-addressed, so a
re-run uploads nothing (the encode is deterministic, so a re-dropped master gives the same
MP3 and key).

The records the run passes from step to step live here too: `RunContext` (what every episode
of a run shares), `Upload`, `Prepared` and `Failed`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.core.errors import AudioError, InputError
from flows.core.models import Episode, Show
from flows.core.settings import Settings
from flows.core.storage import CACHE_LONG, CACHE_PRIVATE, Storage
from flows.podcast.catalog import episode_guid
from flows.podcast.encode import PreparedAudio, max_parallel_encodes, prepare_audio
from flows.podcast.ffmpeg import FfmpegMissing, waiting_for_ffmpeg
from flows.podcast.inbox import Candidate, master_title_reason, open_regular, read_chunk
from flows.podcast.limits import (
    check_image,
    check_transcript,
    duplicate_note,
    episode_problems,
    late_chapter_note,
    misnamed_note,
    no_description_note,
    no_title_note,
    refusal,
    tag_text,
)
from flows.podcast.loudness import master_format, master_key, probe_master
from flows.podcast.report import file_note
from flows.podcast.sidecar import TRANSCRIPT_TYPES

log = logging.getLogger(__name__)

AUDIO_PREFIX = "podcast/audio/"
TRANSCRIPT_PREFIX = "podcast/transcripts/"
CHAPTERS_PREFIX = "podcast/chapters/"
ART_PREFIX = "podcast/art/"
CHAPTERS_TYPE = "application/json+chapters"
CHAPTERS_VERSION = "1.2.0"
DESCRIPTION_TAGS = {"p", "br", "a", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote"}
_BLOCK = r"</?(?:p|br|ul|ol|li|blockquote)\b[^>]*>"
# A newline right after or right before a block-level tag (with the spaces around it).
_BLOCK_NEWLINE = re.compile(rf"({_BLOCK})[ \t]*\n[ \t\n]*|[ \t]*\n[ \t\n]*(?={_BLOCK})")
LOSSY_EXTENSIONS = {"mp3": (".mp3",), "m4a": (".m4a", ".mp4", ".aac")}

# Encodes (and loudness measurements) at once in this process: one per core, since each
# ffmpeg job keeps to about one core. Episodes are prepared concurrently by the run loop.
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
    record: Episode  # a new episode's guid is decided here, as its audio's tags carry it
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


# --- pure helpers -----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def copy_dropped(path: Path, folder: Path, target: Path) -> str:
    """Copy a file of the drop folder `folder` to `target`, reading it once and never through
    a link (`open_regular`); returns its SHA-256.

    The checks, ffmpeg, mutagen and the upload then open the copy, so a dropped file swapped
    for a link halfway through the run is never followed. A dropped file that vanished or
    cannot be read raises InputError naming it (`flows.podcast.inbox.unreadable`), so only
    its episode fails.
    """
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_regular(path, folder) as source, target.open("wb") as copy:
        # A read error is the dropped file's (InputError: its episode fails); a write error
        # is the run's own work folder, and stops the run.
        for chunk in iter(lambda: read_chunk(source, path, 1 << 20), b""):
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


# --- prepare: check, make the audio, tag, describe uploads -------------------------------------


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
    return [misnamed_note(candidate.audio.name, candidate.audio.stem, source_format, fits[0])]


def prepare_episode(candidate: Candidate, context: RunContext) -> Prepared:
    """Make, inspect, check and tag one episode into the work folder.

    Raises InputError/AudioError (the episode goes to failed/).
    """
    meta = candidate.meta
    existing = context.published.get(candidate.slug)
    # What apps refuse is refused first, before the audio is encoded (`flows.podcast.limits`).
    _check_limits(candidate, meta.title or "", meta.description)
    # Each dropped file is copied once, never through a link; the steps below read the copy.
    inbox, dropped = candidate.audio.parent, _dropped_dir(candidate, context)
    source = dropped / candidate.audio.name
    source_sha256 = copy_dropped(candidate.audio, inbox, source)
    _refuse_duplicate(candidate, source_sha256, context.published.values())
    prepared_audio, info, source_format = make_audio(candidate, source, context)
    warnings = [
        *meta.warnings,
        *_name_warning(candidate, source_format),
        *prepared_audio.warnings,
        *info.warnings,
    ]
    title, description = _episode_texts(candidate, info, warnings)
    _check_chapters(candidate, info.duration)

    publish_at = meta.publish_at or (existing.publish_at if existing else context.now)
    guid = existing.guid if existing else episode_guid(candidate.slug, source_sha256)
    texts = (title, description, guid)
    work = _tag_work_copy(candidate, context, prepared_audio, info, texts, publish_at)
    digest = sha256_file(work)
    key = audio_key(candidate.slug, digest, info.extension.lstrip("."))
    uploads = [Upload(key, info.mime_type, path=work)]
    kept_master = _master_upload(candidate, prepared_audio, source, source_sha256)
    transcript = _transcript_upload(candidate, inbox, dropped)
    chapters = _chapters_upload(candidate, title, context.show.title)
    image, image_warnings = _image_upload(candidate, inbox, dropped)
    warnings.extend(image_warnings)
    uploads += [upload for upload in (kept_master, transcript, chapters, image) if upload]

    show = context.show
    record = Episode(
        guid=guid,
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
        image_key=image.key if image else None,
        transcript_key=transcript.key if transcript else None,
        transcript_type=transcript.content_type if transcript else None,
        chapters_key=chapters.key if chapters else None,
        chapters=list(meta.chapters),
        first_published=existing.first_published if existing else context.now,
        last_updated=existing.last_updated if existing else context.now,
        source_sha256=source_sha256,
        master_key=kept_master.key if kept_master else None,
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


def _episode_texts(candidate: Candidate, info: Any, warnings: list[str]) -> tuple[str, str]:
    """The title and the description, the sidecar's, else the file's own tags' read as plain
    text (`tag_text`); refused when there is no title or either is too long. Their warnings
    (a change to the tags' text, no description) are added to `warnings`."""
    meta, audio, stem = candidate.meta, candidate.audio.name, candidate.name
    title = meta.title
    if title is None and info.title:
        title, notes = tag_text(audio, stem, "title", info.title)
        warnings += notes
    if not title:
        sidecar = candidate.sidecar.name if candidate.sidecar else None
        raise InputError(no_title_note(audio, stem, sidecar))
    description = meta.description
    if not description and candidate.sidecar is None and info.description:
        description, notes = tag_text(audio, stem, "description", info.description)
        warnings += notes
    _check_limits(candidate, title, description)  # the file's own tags may be longer
    if not description:
        warnings.append(no_description_note(audio, stem))
    return title, description


def _check_limits(candidate: Candidate, title: str, description: str) -> None:
    """Refuse an episode whose text podcast apps would refuse (`limits.episode_problems`)."""
    meta = candidate.meta
    found = episode_problems(title, description, meta.chapters, meta.guests)
    if found:
        source = candidate.sidecar.name if candidate.sidecar else candidate.audio.name
        raise InputError(refusal(source, found))


def _refuse_duplicate(candidate: Candidate, sha256: str, published: Iterable[Episode]) -> None:
    """Refuse audio that another episode of the catalog already is (the same SHA-256 as its
    dropped file or its published audio); a re-drop under its own slug is not a duplicate."""
    for record in published:
        if record.slug != candidate.slug and sha256 in (record.source_sha256, record.sha256):
            raise InputError(duplicate_note(candidate.audio.name, record))


def _check_chapters(candidate: Candidate, duration: float) -> None:
    """Refuse a chapter that starts after the audio ends."""
    source = candidate.sidecar.name if candidate.sidecar else candidate.audio.name
    for number, chapter in enumerate(candidate.meta.chapters):
        if chapter.start >= duration:
            raise InputError(late_chapter_note(source, number, chapter, duration))


def _tag_work_copy(
    candidate: Candidate,
    context: RunContext,
    prepared_audio: PreparedAudio,
    info: Any,
    texts: tuple[str, str, str],
    publish_at: datetime,
) -> Path:
    """Tag a copy of the audio into the work folder, named after the slug (`texts`: the
    title, the description and the guid)."""
    from flows.podcast.tags import EpisodeTags, tag_audio

    meta, show = candidate.meta, context.show
    title, description, guid = texts
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
        guid=guid,
    )
    work = context.workdir / f"{candidate.slug}.{info.extension.lstrip('.')}"
    tag_audio(prepared_audio.publish_path, work, tags, info)
    return work


def _master_upload(
    candidate: Candidate, prepared_audio: PreparedAudio, source: Path, source_sha256: str
) -> Upload | None:
    """The dropped master itself, privately, so the episode can be encoded again later."""
    if prepared_audio.master is None:
        return None
    return Upload(
        master_key(candidate.slug, source_sha256, prepared_audio.master.format),
        prepared_audio.master.mime_type,
        path=source,
        public=False,
        cache_control=CACHE_PRIVATE,
    )


def _transcript_upload(candidate: Candidate, inbox: Path, dropped: Path) -> Upload | None:
    """The dropped transcript, copied and checked (its content type is the record's)."""
    if candidate.transcript is None:
        return None
    transcript = dropped / candidate.transcript.name
    transcript_hash = copy_dropped(candidate.transcript, inbox, transcript)
    check_transcript(transcript)
    suffix = candidate.transcript.suffix.lower()
    key = f"{TRANSCRIPT_PREFIX}{candidate.slug}-{transcript_hash[:8]}{suffix}"
    return Upload(key, TRANSCRIPT_TYPES[suffix], path=transcript)


def _chapters_upload(candidate: Candidate, title: str, podcast_name: str) -> Upload | None:
    """The sidecar's chapters as a Podcasting 2.0 JSON chapters file."""
    if not candidate.meta.chapters:
        return None
    data = chapters_json(title, podcast_name, candidate.meta.chapters)
    key = f"{CHAPTERS_PREFIX}{candidate.slug}-{hashlib.sha256(data).hexdigest()[:8]}.json"
    return Upload(key, CHAPTERS_TYPE, data=data)


def _image_upload(
    candidate: Candidate, inbox: Path, dropped: Path
) -> tuple[Upload | None, list[str]]:
    """The dropped episode art, copied and checked, and the warnings its check gives."""
    if candidate.image is None:
        return None, []
    art = dropped / candidate.image.name
    art_hash = copy_dropped(candidate.image, inbox, art)
    ext, mime, image_warnings = check_image(art)
    key = f"{ART_PREFIX}{candidate.slug}-{art_hash[:8]}{ext}"
    return Upload(key, mime, path=art), image_warnings


def _dropped_dir(candidate: Candidate, context: RunContext) -> Path:
    """Where the run keeps its copies of an episode's dropped files, under their names."""
    return context.workdir / "dropped" / candidate.slug


def try_prepare(candidate: Candidate, context: RunContext) -> Prepared | Failed:
    """`prepare_episode`, with bad input turned into a `Failed` (it goes to failed/).

    A missing ffmpeg (`FfmpegMissing`) is the server's trouble, not the file's: the episode
    stays in the inbox (a retry, which fails the run, so operators are told) and the note
    says the producer need do nothing.
    """
    try:
        return prepare_episode(candidate, context)
    except InputError as exc:  # AudioError is an InputError
        # Producers know their inbox: "x.wav: …" reads better than the full path.
        reason = str(exc)
        for folder in (candidate.audio.parent, _dropped_dir(candidate, context)):
            reason = reason.replace(f"{folder}{os.sep}", "")
        name = candidate.audio.name
        if isinstance(exc, FfmpegMissing):
            log.error("ffmpeg is missing; %s stays in the inbox: %s", name, exc)
            reason = waiting_for_ffmpeg(name, FfmpegMissing(reason))
            return Failed(name, candidate.slug, candidate.files, reason, retry=True)
        return Failed(name, candidate.slug, candidate.files, reason)
    except Exception as exc:  # a bug or a broken install: this episode waits, the others go on
        return internal_failure(candidate, "prepare", exc)


def internal_failure(candidate: Candidate, step: str, exc: BaseException) -> Failed:
    """An unexpected exception at `step` for one episode: its files stay in the inbox (a
    retry, so the run fails and operators are told), the traceback goes to the log."""
    name = candidate.audio.name
    log.error("%s: unexpected error at step %s", name, step, exc_info=exc)
    error = f"{exc.__class__.__name__}: {exc}"
    reason = file_note(
        name,
        (
            f"ett internt fel i steget {step} ({error})",
            f"an internal error at step {step} ({error})",
        ),
        (
            "Du behöver inte göra något: filerna ligger kvar i inkorgen och driften har fått "
            "besked",
            "Nothing to do on your side: the files stay in the inbox and the operators are told",
        ),
    )
    return Failed(name, candidate.slug, candidate.files, reason, retry=True)


# --- upload --------------------------------------------------------------------------------------


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
