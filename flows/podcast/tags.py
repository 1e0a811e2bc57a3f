"""Tag episode audio with mutagen: ID3v2.3 for MP3, MP4 atoms for M4A.

1. `build_id3_frames(tags, duration)` and `build_mp4_atoms(tags)`: pure, EpisodeTags -> tags.
   Tags carry plain text: the description (the producer's Markdown) goes into the ID3 comment
   and the MP4 description as `markdown_to_text` reads it (no `**`, links as `text (url)`),
   since players show a tag as it is.
2. `tag_audio(src, dst, tags, info)`: copy the audio without its old tags and write the new ones
   with fixed padding, so the output bytes depend only on the audio and the tags. `info` comes
   from `flows.podcast.audio.inspect_audio`, which has already checked the file.

Errors are `AudioError` (flows/core/errors.py); each is a note that names the file, what is
wrong, the fix and an example, in Swedish and English (`flows.podcast.report.file_note`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import mutagen
from mutagen.id3 import (
    APIC,
    CHAP,
    COMM,
    CTOC,
    ID3,
    TALB,
    TCON,
    TDRC,
    TGID,
    TIT2,
    TLAN,
    TPE1,
    TPOS,
    TRCK,
    WOAS,
    CTOCFlags,
    Encoding,
    Frame,
    ID3v1SaveOptions,
    PictureType,
)
from mutagen.mp4 import MP4, MP4Cover

from flows.core.errors import AudioError
from flows.core.fsio import atomic_replace
from flows.core.models import Chapter
from flows.core.schema import Problem, Text, note
from flows.core.text import multiline, one_line
from flows.podcast.audio import AudioInfo, mp3_audio_range
from flows.podcast.report import file_note

if TYPE_CHECKING:
    from markdown_it.token import Token

COVER_MIME_TYPES = ("image/jpeg", "image/png")
# Fixed tag padding: the output must not depend on how much room the old tags left.
ID3_PADDING = 1024
MP4_PADDING = 1024
MP4_DESC_LIMIT = 255  # iTunes shows at most this much of `desc`; the full text goes in `ldes`
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class EpisodeTags:
    """The tags `tag_audio` writes; built by the podcast pipeline from show + sidecar."""

    title: str
    artist: str
    album: str
    description: str
    track: int | None = None
    disc: int | None = None
    date: datetime | None = None  # TDRC / ©day, written in UTC
    genre: str = "Podcast"
    language: str = "swe"
    url: str | None = None  # WOAS (MP3) / purl (M4A)
    chapters: tuple[Chapter, ...] = ()
    cover: bytes | None = None
    cover_mime: str | None = None  # image/jpeg or image/png; sniffed from the bytes when None
    # The episode's feed guid (TGID / egid): with it the stored audio says which episode it
    # is, so a lost catalog can be rebuilt with the same guids (`flows.podcast.recover`).
    guid: str | None = None


# --------------------------------------------------------------------------------------------
# Tag building: pure

_SAVE_AS: Text = ("Spara omslaget som JPEG eller PNG", "Save the cover as JPEG or PNG")


def cover_mime(cover: bytes, declared: str | None = None) -> str:
    """The cover's MIME type: the declared one if allowed, else sniffed from its bytes."""
    if declared is not None:
        if declared not in COVER_MIME_TYPES:
            what = (f"är av typen {declared!r}", f"is of type {declared!r}")
            raise AudioError(file_note("cover art", what, _SAVE_AS, "cover.jpg"))
        return declared
    if cover.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if cover.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    what = ("är varken JPEG eller PNG", "is neither JPEG nor PNG")
    raise AudioError(file_note("cover art", what, _SAVE_AS, "cover.jpg"))


def tag_date(value: datetime) -> str:
    """A tag timestamp: tags carry no time zone, so it is written in UTC."""
    if value.tzinfo is None:
        what = (f"{value.isoformat()} saknar tidszon", f"{value.isoformat()} has no time zone")
        fix = ("Ge en tid med tidszon", "Give an aware time")
        raise AudioError(file_note("tag date", what, fix, "2026-03-05T07:00+01:00"))
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def markdown_to_text(markdown: str) -> str:
    """The producer's Markdown as the plain text a tag carries: no `**` or `#`, a link as
    `text (url)`, list items on their own lines, paragraphs apart by a blank line.

    >>> markdown_to_text("Om **öppna data** &amp; [mer](https://k.example).\\n\\n- ett\\n- två")
    'Om öppna data & mer (https://k.example).\\n\\n- ett\\n- två'
    """
    from markdown_it import MarkdownIt

    blocks: list[tuple[str, bool]] = []  # (text, a list item's)
    depth, marker = 0, ""
    for token in MarkdownIt("commonmark", {"html": False}).parse(markdown):
        if token.type.endswith("_list_open") or token.type.endswith("_list_close"):
            depth += 1 if token.type.endswith("open") else -1
        elif token.type == "list_item_open":
            marker = f"{token.info}{token.markup}" if token.info else "-"
        elif token.type == "inline":
            text = _inline_text(token.children or [])
            if marker:
                text = f"{'  ' * (depth - 1)}{marker} {text}"
            blocks.append((text, bool(marker)))
            marker = ""
        elif token.type in ("fence", "code_block"):
            blocks.append((token.content.rstrip("\n"), False))
    out = ""
    for index, (text, item) in enumerate(blocks):
        tight = item and index > 0 and blocks[index - 1][1]
        out += ("\n" if tight else "\n\n" if index else "") + text
    return out.strip()


def _inline_text(children: list[Token]) -> str:
    """One paragraph's inline Markdown as plain text: soft line breaks kept as line breaks."""
    out: list[str] = []
    links: list[tuple[int, str]] = []
    for child in children:
        if child.type in ("text", "code_inline", "image"):  # an image: its alt text
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.type == "link_open":
            links.append((len(out), str(child.attrs.get("href", ""))))
        elif child.type == "link_close" and links:
            start, url = links.pop()
            label = "".join(out[start:])
            if url and url not in (label, f"mailto:{label}"):
                out.append(f" ({url})")
    return "".join(out)


def chapter_times(chapters: tuple[Chapter, ...], duration: float) -> list[tuple[int, int, str]]:
    """(start ms, end ms, title) per chapter: each ends where the next starts, the last at the end.

    >>> chapter_times((Chapter(start=0, title="A"), Chapter(start=1.5, title="B")), 3.0)
    [(0, 1500, 'A'), (1500, 3000, 'B')]
    """
    starts = [round(c.start * 1000) for c in chapters]
    end_ms = round(duration * 1000)
    if any(b <= a for a, b in itertools.pairwise(starts)):
        what = ("kapitlen är inte i tidsordning", "chapters are not in order")
        fix = (
            "Ge varje kapitel en senare start än kapitlet före",
            "Give each chapter a later start than the one before",
        )
        raise AudioError(note("chapters", [Problem((), None, what, fix, 'start: "00:04:30"')]))
    if starts and starts[-1] >= end_ms:
        last = chapters[-1]
        what = (
            f"kapitlet {last.title!r} börjar vid {last.start:g} s, vid eller efter ljudets slut "
            f"({duration:.1f} s)",
            f"chapter {last.title!r} starts at {last.start:g} s, at or after the end of the "
            f"audio ({duration:.1f} s)",
        )
        fix = ("Rätta dess starttid", "Fix its start time")
        raise AudioError(note("chapters", [Problem((), None, what, fix, 'start: "00:04:30"')]))
    ends = [*starts[1:], end_ms]
    return [(s, e, one_line(c.title)) for s, e, c in zip(starts, ends, chapters, strict=True)]


def build_id3_frames(tags: EpisodeTags, duration: float) -> list[Frame]:
    """The ID3v2 frames for an episode (before the v2.3 conversion `tag_audio` does)."""
    enc = Encoding.UTF16  # ID3v2.3 has no UTF-8
    frames: list[Frame] = [
        TIT2(encoding=enc, text=one_line(tags.title)),
        TPE1(encoding=enc, text=one_line(tags.artist)),
        TALB(encoding=enc, text=one_line(tags.album)),
        COMM(encoding=enc, lang="swe", desc="", text=markdown_to_text(multiline(tags.description))),
        TCON(encoding=enc, text=one_line(tags.genre)),
        TLAN(encoding=enc, text=one_line(tags.language)),
    ]
    if tags.track is not None:
        frames.append(TRCK(encoding=enc, text=str(tags.track)))
    if tags.disc is not None:
        frames.append(TPOS(encoding=enc, text=str(tags.disc)))
    if tags.date is not None:
        # A date only: mutagen's v2.3 conversion keeps TIME only when hour and minute are set.
        frames.append(TDRC(encoding=enc, text=tag_date(tags.date)[:10]))
    if tags.url:
        frames.append(WOAS(url=tags.url))
    if tags.guid:
        frames.append(TGID(encoding=enc, text=tags.guid))
    if tags.cover is not None:
        frames.append(
            APIC(
                encoding=Encoding.LATIN1,
                mime=cover_mime(tags.cover, tags.cover_mime),
                type=PictureType.COVER_FRONT,
                desc="",
                data=tags.cover,
            )
        )
    frames += _chapter_frames(tags.chapters, duration)
    return frames


def _chapter_frames(chapters: tuple[Chapter, ...], duration: float) -> list[Frame]:
    if not chapters:
        return []
    unknown = 0xFFFFFFFF  # byte offsets: "not given", times are what players use
    ids = [f"chp{i}" for i in range(len(chapters))]
    frames: list[Frame] = [
        CHAP(
            element_id=element_id,
            start_time=start,
            end_time=end,
            start_offset=unknown,
            end_offset=unknown,
            sub_frames=[TIT2(encoding=Encoding.UTF16, text=title)],
        )
        for element_id, (start, end, title) in zip(
            ids, chapter_times(chapters, duration), strict=True
        )
    ]
    frames.append(
        CTOC(
            element_id="toc",
            flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
            child_element_ids=ids,
            sub_frames=[TIT2(encoding=Encoding.UTF16, text="Kapitel")],
        )
    )
    return frames


def build_mp4_atoms(tags: EpisodeTags) -> dict[str, list]:
    """The MP4 (iTunes) atoms for an episode."""
    description = markdown_to_text(multiline(tags.description))
    atoms: dict[str, list] = {
        "©nam": [one_line(tags.title)],
        "©ART": [one_line(tags.artist)],
        "©alb": [one_line(tags.album)],
        "desc": [description[:MP4_DESC_LIMIT]],
        "ldes": [description],
        "©cmt": [description],
        "©gen": [one_line(tags.genre)],
    }
    if tags.track is not None:
        atoms["trkn"] = [(tags.track, 0)]
    if tags.disc is not None:
        atoms["disk"] = [(tags.disc, 0)]
    if tags.date is not None:
        atoms["©day"] = [tag_date(tags.date) + "Z"]
    if tags.url:
        atoms["purl"] = [tags.url]
    if tags.guid:
        atoms["egid"] = [tags.guid]
    if tags.cover is not None:
        fmt = {"image/jpeg": MP4Cover.FORMAT_JPEG, "image/png": MP4Cover.FORMAT_PNG}
        atoms["covr"] = [MP4Cover(tags.cover, fmt[cover_mime(tags.cover, tags.cover_mime)])]
    return atoms


def id3_tag_bytes(frames: list[Frame]) -> bytes:
    """Serialise frames as one ID3v2.3 tag with fixed padding (mutagen writes to memory)."""
    tag = ID3()
    for frame in frames:
        tag.add(frame)
    tag.update_to_v23()  # TDRC -> TYER/TDAT/TIME, as v2.3 readers expect
    buf = io.BytesIO()
    tag.save(buf, v2_version=3, v1=ID3v1SaveOptions.REMOVE, padding=lambda _info: ID3_PADDING)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Writing


# copy_file_range's answers for "not here" (an old kernel, another file system, a file system
# without it): the copy then goes through a buffer instead.
_NO_KERNEL_COPY = {errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


def _kernel_copy(src: int, dst: int, start: int, end: int) -> int:
    """Append src[start:end] to dst inside the kernel (no pass through Python, a reflink where
    the file system has them); the bytes copied, fewer when the kernel cannot (or src ends)."""
    copy = getattr(os, "copy_file_range", None)  # Linux only
    done = 0
    while copy is not None and start + done < end:
        try:
            copied = copy(src, dst, end - start - done, start + done)
        except OSError as exc:
            if exc.errno in _NO_KERNEL_COPY:
                break
            raise
        if copied == 0:
            break
        done += copied
    return done


def _copy_range(src: BinaryIO, dst: BinaryIO, start: int, end: int) -> None:
    dst.flush()  # the kernel copy appends at the file's own position
    start += _kernel_copy(src.fileno(), dst.fileno(), start, end)
    src.seek(start)
    remaining = end - start
    while remaining > 0:
        chunk = src.read(min(_COPY_CHUNK, remaining))
        if not chunk:
            break
        dst.write(chunk)
        remaining -= len(chunk)


def _write_mp3(src: Path, tmp: Path, tags: EpisodeTags, info: AudioInfo) -> None:
    header = id3_tag_bytes(build_id3_frames(tags, info.duration))
    start, end = mp3_audio_range(src)
    # "r+b", not "wb": `tmp` is new and empty, and truncating it anyway makes ext4 start
    # writing the whole file back to disk when it is closed (its auto_da_alloc).
    with src.open("rb") as fin, tmp.open("r+b") as fout:
        fout.write(header)
        fout.flush()
        _reserve(fout.fileno(), len(header) + end - start)
        _copy_range(fin, fout, start, end)
        fout.flush()
        # A source that ended early (it changed meanwhile) leaves reserved room: cut it off.
        os.ftruncate(fout.fileno(), os.lseek(fout.fileno(), 0, os.SEEK_CUR))


def _reserve(fd: int, size: int) -> None:
    """Give the file its blocks at once, so the copy only fills them: on ext4 a fifth faster
    than allocating as the copy goes. Where it cannot be done, the copy allocates as before."""
    allocate = getattr(os, "posix_fallocate", None)  # not on macOS
    if allocate is None:
        return
    with contextlib.suppress(OSError):  # no such call for this file system
        allocate(fd, 0, size)


def _write_m4a(src: Path, tmp: Path, tags: EpisodeTags) -> None:
    shutil.copyfile(src, tmp)
    audio = MP4(tmp)
    if audio.tags is None:
        audio.add_tags()
    atoms = audio.tags
    assert atoms is not None  # add_tags() made them
    atoms.clear()
    atoms.update(build_mp4_atoms(tags))
    audio.save(padding=lambda _info: MP4_PADDING)


def tag_audio(src: Path, dst: Path, tags: EpisodeTags, info: AudioInfo) -> None:
    """Write `src`'s audio to `dst` with exactly `tags` (old tags dropped); deterministic.

    `dst` appears whole or not at all: mutagen writes a dot-named file beside it, which
    `flows.core.fsio.atomic_replace` then publishes.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        what = ("att tagga filen på plats går inte", "tagging in place is not supported")
        fix = ("Ge ett annat mål", "Give another destination")
        raise AudioError(file_note(dst, what, fix, f"work/{dst.name}"))
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tagging", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if info.format == "mp3":
            _write_mp3(src, tmp, tags, info)
        elif info.format == "m4a":
            _write_m4a(src, tmp, tags)
        else:
            what = (f"okänt ljudformat {info.format!r}", f"unknown audio format {info.format!r}")
            raise AudioError(file_note(src, what, ("Ge mp3 eller m4a", "Expected mp3 or m4a")))
        # A tagged copy is a work file (uploaded, then dropped): no fsync, which cost more
        # than the copy itself for a long episode.
        atomic_replace(tmp, dst, durable=False)
    except AudioError as exc:
        if str(exc).startswith(str(src)):
            raise
        # A note on the cover or the chapters: every line names the episode's file too.
        raise AudioError("\n".join(f"{src}: {line}" for line in str(exc).splitlines())) from None
    except (OSError, mutagen.MutagenError) as exc:
        what = (
            f"den taggade kopian {dst} gick inte att skriva ({exc})",
            f"writing the tagged copy {dst} failed ({exc})",
        )
        fix = (
            "Kontrollera diskutrymmet och behörigheterna, och kör igen",
            "Check the disk space and permissions, then run again",
        )
        raise AudioError(file_note(src, what, fix, "df -h")) from exc
    finally:
        tmp.unlink(missing_ok=True)
