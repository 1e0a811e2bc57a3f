"""Publishing podcast episodes: audio dropped in `episodes/inbox/` becomes tagged episodes
in storage and records in the catalog.

Plan, then execute:

1. `plan_run`: read show.yaml and the cover, load the catalog, scan the inbox (pure sorting
   of files into candidates, refused and waiting).
2. `prepare_episode` (per candidate): inspect the audio, check the metadata, tag a work copy,
   hash it, and describe every object to upload. Bad input becomes a `Failed` with the
   reason; nothing is uploaded yet.
3. `upload_episode` (per prepared episode): upload what storage does not have yet
   (content-addressed keys, so a re-run uploads nothing).
4. `commit_catalog`: ONE catalog update for all good episodes, conditional on the ETag the
   plan read, so a concurrent run is detected instead of overwritten.
5. `settle_files`: move each episode's files to `published/` or `failed/` (with an
   `<name>.error.txt`); files of episodes that storage could not take stay in the inbox
   and are retried by the next run. Producers' files are never deleted.

`publish` runs these in order as plain functions (tests, benchmarks); the Prefect flow
`publish_episodes` runs the same steps as tasks, several episodes at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from flows.catalog import Catalog, load_catalog, save_catalog, upsert
from flows.errors import (
    CatalogError,
    InputError,
    KraftsamlingError,
    PublishIncompleteError,
    StorageError,
)
from flows.inbox import (
    MAX_TITLE,
    TRANSCRIPT_TYPES,
    Candidate,
    ScanResult,
    clean_text,
    scan_inbox,
)
from flows.models import STOCKHOLM, Episode, Show
from flows.settings import Settings
from flows.show import load_show
from flows.storage import CACHE_LONG, Storage, open_storage
from flows.storage import public_url as object_url

log = logging.getLogger(__name__)

AUDIO_PREFIX = "podcast/audio/"
TRANSCRIPT_PREFIX = "podcast/transcripts/"
CHAPTERS_PREFIX = "podcast/chapters/"
ART_PREFIX = "podcast/art/"
CHAPTERS_TYPE = "application/json+chapters"
CHAPTERS_VERSION = "1.2.0"
IMAGE_TYPES = {"JPEG": (".jpg", "image/jpeg"), "PNG": (".png", "image/png")}
DESCRIPTION_TAGS = {"p", "br", "a", "strong", "em", "b", "i", "ul", "ol", "li", "blockquote"}


# --- the records the steps pass on ------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """One object to put in storage: a file on disk or small bytes."""

    key: str
    content_type: str
    path: Path | None = None
    data: bytes | None = None

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
    status: str  # published | replaced | updated | unchanged | failed | retry
    title: str = ""
    guid: str = ""
    url: str = ""
    reason: str = ""
    moved_to: str = ""
    warnings: tuple[str, ...] = ()


@dataclass
class PublishReport:
    """What a run did; `summary()` is what the CLI prints."""

    storage: str
    outcomes: list[EpisodeOutcome] = field(default_factory=list)
    waiting: tuple[str, ...] = ()
    uploads: int = 0  # objects actually written to storage
    feed: str = ""
    feed_error: str = ""

    @property
    def failed(self) -> list[EpisodeOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "retry")]

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    def summary(self) -> str:
        """One line per episode, then totals."""
        lines = []
        for o in self.outcomes:
            if o.status in ("failed", "retry"):
                where = f" -> {o.moved_to}" if o.moved_to else " (left in the inbox)"
                lines.append(f"  {o.status:<9} {o.name}{where}: {o.reason}")
            else:
                lines.append(f"  {o.status:<9} {o.name}: {o.title!r} {o.url}")
                lines.extend(f"            warning: {w}" for w in o.warnings)
        for name in self.waiting:
            lines.append(f"  waiting   {name}: still being copied, left for the next run")
        totals = (
            f"Episodes to {self.storage}: {self.count('published')} published, "
            f"{self.count('replaced', 'updated')} updated, {self.count('unchanged')} unchanged, "
            f"{len(self.failed)} failed, {len(self.waiting)} waiting; "
            f"{self.uploads} object(s) uploaded."
        )
        if not lines:
            totals = f"Nothing new in the inbox. {totals}"
        tail = []
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


def audio_key(slug: str, sha256: str, extension: str) -> str:
    """The content-addressed key of an episode's audio; never overwritten in place.

    >>> audio_key("avsnitt-1", "0123456789abcdef", "mp3")
    'podcast/audio/avsnitt-1-01234567.mp3'
    """
    return f"{AUDIO_PREFIX}{slug}-{sha256[:8]}.{extension.lstrip('.')}"


def chapters_json(title: str, podcast_name: str, chapters: Sequence[Any]) -> bytes:
    """Podcasting 2.0 JSON chapters (version 1.2.0), deterministic bytes.

    >>> from flows.models import Chapter
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
    """The producer's Markdown as sanitised HTML for the feed (raw HTML is escaped).

    >>> description_to_html("Hej **du** & <b>x</b>")
    '<p>Hej <strong>du</strong> &amp; &lt;b&gt;x&lt;/b&gt;</p>'
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
    return cleaned.strip().replace("\n", "")


def resolve_base_url(show: Show, settings: Settings) -> str:
    """Public base URL: an explicitly set `public_url` wins, then show.yaml, then the default.

    The same rule as the feed's, so links in the report are the feed's links.
    """
    if "public_url" in settings.model_fields_set or not show.public_base_url:
        return settings.public_url
    base = show.public_base_url
    return base if base.endswith("/") else base + "/"


# --- 1. the plan ------------------------------------------------------------------------------


def read_cover(show: Show, show_dir: Path) -> tuple[bytes, str]:
    """The show's cover art bytes and MIME type (embedded in every episode's tags)."""
    path = show_dir / show.image
    data = path.read_bytes()
    if data.startswith(b"\x89PNG"):
        return data, "image/png"
    if data.startswith(b"\xff\xd8"):
        return data, "image/jpeg"
    raise InputError(f"{path}: the cover art must be a JPEG or PNG file. Export it as one.")


def plan_run(
    settings: Settings, storage: Storage, now: datetime, scan_time: float, workdir: Path
) -> Plan:
    """Read show.yaml, the catalog and the inbox; decide which files to work on.

    `now` is the run's time (catalog dates, default publish time); `scan_time` is the wall
    clock as a POSIX timestamp, for telling whether a file is still being copied.
    """
    show_dir = Path(settings.episodes_dir)
    show = load_show(show_dir / "show.yaml")
    cover, cover_mime = read_cover(show, show_dir)
    catalog = load_catalog(storage)
    scan = scan_inbox(show_dir / "inbox", scan_time, settings.settle_seconds, catalog.episodes)
    context = RunContext(
        settings=settings,
        show=show,
        cover=cover,
        cover_mime=cover_mime,
        base_url=resolve_base_url(show, settings),
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


def prepare_episode(candidate: Candidate, context: RunContext) -> Prepared:
    """Inspect, check and tag one episode into the work folder; raises InputError/AudioError."""
    from flows.audio import EpisodeTags, inspect_audio, tag_audio

    meta = candidate.meta
    show = context.show
    existing = context.published.get(candidate.slug)
    info = inspect_audio(candidate.audio)
    warnings = [*meta.warnings, *info.warnings]

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
    tag_audio(candidate.audio, work, tags, info)
    digest = sha256_file(work)
    key = audio_key(candidate.slug, digest, extension)
    uploads = [Upload(key, info.mime_type, path=work)]

    transcript_key = transcript_type = None
    if candidate.transcript is not None:
        _check_transcript(candidate.transcript)
        suffix = candidate.transcript.suffix.lower()
        transcript_type = TRANSCRIPT_TYPES[suffix]
        transcript_hash = sha256_file(candidate.transcript)
        transcript_key = f"{TRANSCRIPT_PREFIX}{candidate.slug}-{transcript_hash[:8]}{suffix}"
        uploads.append(Upload(transcript_key, transcript_type, path=candidate.transcript))

    chapters_key = None
    if meta.chapters:
        data = chapters_json(title, show.title, meta.chapters)
        chapters_key = (
            f"{CHAPTERS_PREFIX}{candidate.slug}-{hashlib.sha256(data).hexdigest()[:8]}.json"
        )
        uploads.append(Upload(chapters_key, CHAPTERS_TYPE, data=data))

    image_key = None
    if candidate.image is not None:
        ext, mime, image_warnings = _check_image(candidate.image)
        warnings.extend(image_warnings)
        image_key = f"{ART_PREFIX}{candidate.slug}-{sha256_file(candidate.image)[:8]}{ext}"
        uploads.append(Upload(image_key, mime, path=candidate.image))

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
        source_sha256=sha256_file(candidate.audio),
        warnings=list(dict.fromkeys(warnings)),
    )
    return Prepared(candidate, record, tuple(uploads), tuple(dict.fromkeys(warnings)))


def try_prepare(candidate: Candidate, context: RunContext) -> Prepared | Failed:
    """`prepare_episode`, with bad input turned into a `Failed` (it goes to failed/)."""
    try:
        return prepare_episode(candidate, context)
    except InputError as exc:  # AudioError is an InputError
        return Failed(candidate.audio.name, candidate.slug, candidate.files, str(exc))


# --- 3. upload ----------------------------------------------------------------------------------


def upload_episode(storage: Storage, prepared: Prepared) -> int:
    """Upload what storage does not have yet (same key and size = already there).

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
                cache_control=CACHE_LONG,
                public=True,
            )
        else:
            storage.put_bytes(
                item.key,
                item.data or b"",
                content_type=item.content_type,
                cache_control=CACHE_LONG,
                public=True,
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
        if not any(path.exists() for path in names):
            return targets
        number += 1


def move_group(files: Sequence[Path], folder: Path, error_text: str | None = None) -> Path:
    """Move a group of files (audio first) into `folder`; never overwrites, never deletes.

    With `error_text`, `<name>.error.txt` is written beside them. Returns the audio's path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    present = [f for f in files if f.exists()]
    targets = _free_names(folder, present, ".error.txt" if error_text is not None else None)
    for source, target in targets.items():
        shutil.move(str(source), str(target))
    audio_target = targets.get(files[0], folder / files[0].name)
    if error_text is not None:
        (folder / f"{audio_target.stem}.error.txt").write_text(error_text, encoding="utf-8")
    return audio_target


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


# --- the whole run, as plain functions ----------------------------------------------------------


def refused_as_failed(plan: Plan) -> list[Failed]:
    """The scan's refusals, in the shape of per-episode failures."""
    return [Failed(r.files[0].name, r.slug, r.files, r.reason) for r in plan.scan.refused]


def publish_feed_step(
    plan: Plan, storage: Storage, catalog: Catalog, now: datetime
) -> tuple[str, str]:
    """Regenerate the feed from the new catalog: (summary, error). Skipped if unavailable."""
    try:
        from flows.feed import publish_feed
    except ImportError as exc:  # the feed module is built separately; publishing goes on
        return f"Feed step skipped: flows.feed is not available ({exc}).", ""
    try:
        result = publish_feed(
            storage, plan.context.show, plan.show_dir, catalog, plan.context.settings, now
        )
    except KraftsamlingError as exc:
        return "", str(exc)
    return result.summary(), ""


def finish(
    plan: Plan,
    storage: Storage,
    prepared: Sequence[Prepared],
    failures: Sequence[Failed],
    uploads: int,
    commit: Any,
) -> PublishReport:
    """Catalog, feed, files and report: the common tail of `publish` and the flow.

    `commit(base, records)` performs the catalog update (a plain call or a Prefect task).
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
        report.feed, report.feed_error = publish_feed_step(plan, storage, update.catalog, now)
    elif good:
        report.feed = "Feed not rebuilt: the catalog did not change."

    moved = settle_files(plan.show_dir, good, failures, now)
    for prep in good:
        slug = prep.candidate.slug
        change = update.changes[slug] if update else "unchanged"
        record = update.catalog.by_slug(slug) if update else prep.record
        report.outcomes.append(
            EpisodeOutcome(
                name=prep.candidate.audio.name,
                slug=slug,
                status="published" if change == "new" else change,
                title=prep.record.title,
                guid=update.guids[slug] if update else "",
                url=object_url(
                    context.base_url, record.audio_key if record else prep.record.audio_key
                ),
                moved_to=moved.get(prep.candidate.audio.name, ""),
                warnings=prep.warnings,
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
    settings: Settings, storage: Storage, now: datetime, scan_time: float | None = None
) -> PublishReport:
    """The whole run without Prefect, one episode after the other. Does not raise for
    failed episodes: check `report.failed` (the flow turns them into PublishIncompleteError).
    """
    with tempfile.TemporaryDirectory(prefix="kraftsamling-publish-") as work:
        plan = plan_run(
            settings, storage, now, time.time() if scan_time is None else scan_time, Path(work)
        )
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
        )


# --- Prefect: thin wrappers ---------------------------------------------------------------------


def _storage_trouble(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only storage failures; bad input does not fix itself."""
    try:
        state.result()
    except StorageError:
        return True
    except Exception:
        return False
    return False


@task(name="prepare-episode", cache_policy=NO_CACHE)
def prepare_task(candidate: Candidate, context: RunContext) -> Prepared | Failed:
    """Inspect, check and tag one episode."""
    return try_prepare(candidate, context)


@task(
    name="upload-episode",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_storage_trouble,
    cache_policy=NO_CACHE,  # the inputs include a storage client
)
def upload_task(storage: Storage, prepared: Prepared) -> int:
    """Upload one episode's objects (retried with backoff on storage errors only)."""
    return upload_episode(storage, prepared)


@task(name="update-catalog", cache_policy=NO_CACHE)
def catalog_task(
    storage: Storage, base: Catalog, records: list[Episode], now: datetime
) -> CatalogUpdate:
    """One catalog update for all good episodes."""
    return commit_catalog(storage, base, records, now)


def _artifact_rows(report: PublishReport) -> list[dict[str, str]]:
    return [
        {
            "episode": o.name,
            "status": o.status,
            "title": o.title,
            "link": o.url,
            "guid": o.guid,
            "reason": o.reason or "; ".join(o.warnings),
            "moved to": o.moved_to or ("inbox" if o.status == "retry" else ""),
        }
        for o in report.outcomes
    ]


@flow(name="publish-episodes")
def publish_episodes(
    episodes: str | None = None,
    storage: str | None = None,
    public_url: str | None = None,
    now: datetime | None = None,
    settle_seconds: float | None = None,
) -> PublishReport:
    """Publish what producers dropped in the inbox: tag, upload, catalog, feed."""
    settings = Settings.load(
        episodes_dir=episodes,
        storage=storage,
        public_url=public_url,
        settle_seconds=settle_seconds,
    )
    scan_time = time.time()  # the only places the clock is read
    now = now or datetime.now(UTC)
    store = open_storage(settings)
    with tempfile.TemporaryDirectory(prefix="kraftsamling-publish-") as work:
        plan = plan_run(settings, store, now, scan_time, Path(work))
        failures = refused_as_failed(plan)
        prepared: list[Prepared] = []
        uploads = 0
        candidates = list(plan.scan.candidates)
        step = settings.upload_concurrency
        for start in range(0, len(candidates), step):  # at most `step` episodes at a time
            batch = [
                prepare_task.submit(c, quote(plan.context))
                for c in candidates[start : start + step]
            ]
            ready = []
            for future in batch:
                result = future.result()
                if isinstance(result, Failed):
                    failures.append(result)
                else:
                    ready.append((result, upload_task.submit(store, result)))
            for result, future in ready:
                try:
                    uploads += future.result()
                except StorageError as exc:
                    failures.append(storage_failure(result, exc))
                else:
                    prepared.append(result)
        report = finish(
            plan,
            store,
            prepared,
            failures,
            uploads,
            lambda base, records: catalog_task(store, quote(base), records, now),
        )
    create_table_artifact(
        table=_artifact_rows(report),
        key="publish-episodes",
        description=report.summary().splitlines()[0],
    )
    if report.failed or report.feed_error:
        raise PublishIncompleteError(
            "Some episodes were not published (the others were):\n" + report.summary()
        )
    return report
