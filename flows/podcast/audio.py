"""Inspect and validate episode audio with mutagen: is this a whole MP3 or M4A we can publish?

Reading, top to bottom:

1. `inspect_audio(path)`: identify the file by its CONTENT (never the extension), check it is
   a whole MP3 or MP4/AAC stream with a duration, and describe it as an `AudioInfo`.
   * detection: mutagen's own content scoring, with no file name, names what a file really is
     (a WAV or FLAC renamed `.mp3` is called a WAV or FLAC);
   * MP3 validation: mutagen finds the stream; our small MPEG frame walker then demands a run of
     consistent frames at the start, compares the Xing/Info byte count with the file, and checks
     that the last frame is whole (mutagen alone accepts a truncated file with its old length);
   * MP4 validation: an AAC audio track, and top-level boxes that end exactly at the file end.
2. `mp3_audio_range(path)`: where the MPEG stream lies between leading and trailing tags
   (`flows.podcast.tags` copies exactly that range when it writes new tags).

Writing tags is `flows.podcast.tags`.

Errors are `AudioError` (flows/core/errors.py) and warnings are strings; each is a note
(`flows.podcast.report.file_note`) that names the file, what is wrong, the fix and an
example, in Swedish and English.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import mutagen
from mutagen.aac import AAC
from mutagen.ac3 import AC3
from mutagen.aiff import AIFF
from mutagen.asf import ASF
from mutagen.dsf import DSF
from mutagen.flac import FLAC
from mutagen.id3 import ID3, ID3FileType
from mutagen.monkeysaudio import MonkeysAudio
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.musepack import Musepack
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from mutagen.wavpack import WavPack

from flows.core.errors import AudioError
from flows.core.schema import Text
from flows.podcast.loudness import recommendation_warnings
from flows.podcast.report import file_note

MIME_TYPES = {"mp3": "audio/mpeg", "m4a": "audio/mp4"}
_FIX_EXPORT: Text = (
    "Exportera avsnittet igen som MP3 (44,1 kHz, 64 kbit/s mono eller 128 kbit/s stereo) eller "
    "M4A (AAC), eller lägg in mastern (WAV/FLAC), och lägg in det igen",
    "Export the episode again as MP3 (44.1 kHz, 64 kbps mono or 128 kbps stereo) or M4A (AAC), "
    "or drop the master (WAV/FLAC), and drop it in again",
)
_EXPORT_EXAMPLE = "MP3, 128 kbps, 44100 Hz"
_FIX_COPY: Text = (
    "Kopiera in hela filen igen och vänta tills kopieringen är klar",
    "Copy the complete file again and let the copy finish",
)


def _refused(path: Path, what: Text, fix: Text = _FIX_EXPORT, example: str = "") -> AudioError:
    """The error for audio we cannot publish: a note on `path` (Swedish, then English)."""
    return AudioError(file_note(path, what, fix, example or _EXPORT_EXAMPLE))


@dataclass(frozen=True)
class AudioInfo:
    """What `inspect_audio` learned about a usable episode file."""

    path: Path
    format: str  # "mp3" or "m4a"
    extension: str  # ".mp3" / ".m4a"
    mime_type: str  # "audio/mpeg" / "audio/mp4"
    duration: float  # seconds, > 0
    sample_rate: int
    channels: int
    bitrate: int  # bits per second
    title: str | None  # from the file's own tags, for episodes without a sidecar
    description: str | None  # COMM / ldes / desc / ©cmt from the file's own tags
    warnings: tuple[str, ...]  # recorded with the episode, not fatal


# --------------------------------------------------------------------------------------------
# Detection: what is this file, by content?

# Every mutagen type but MP3/MP4, to name what a refused file really is.
_OTHER_KINDS = {
    WAVE: "a WAV", FLAC: "a FLAC", AIFF: "an AIFF", OggVorbis: "an Ogg Vorbis",
    OggOpus: "an Opus", OggFLAC: "an Ogg FLAC", OggSpeex: "an Ogg Speex", ASF: "a WMA/ASF",
    AAC: "a raw AAC (ADTS, not inside an M4A container)", AC3: "an AC-3",
    WavPack: "a WavPack", MonkeysAudio: "a Monkey's Audio (APE)", Musepack: "a Musepack",
    DSF: "a DSD (DSF)",
}  # fmt: skip


def _sv_kind(kind: str) -> str:
    """A type's name of `_OTHER_KINDS` in Swedish: "a WAV" -> "WAV-ljud"."""
    if kind.startswith("a raw AAC"):
        return "rå AAC-ljud (ADTS, inte i en M4A-fil)"
    return f"{kind.split(' ', 1)[-1]}-ljud"


def sniff_kind(fileobj: BinaryIO) -> str | None:
    """Name the file's type from its first bytes: "mp3", "m4a", another type's name, or None.

    mutagen's own `score` decides, given no file name so the extension cannot sway it.
    """
    fileobj.seek(0)
    header = fileobj.read(128)
    # (score, preference on a tie, name): our two formats win ties
    kinds = [
        (MP3.score("", fileobj, header), 1, "mp3"),
        (ID3FileType.score("", fileobj, header), 0, "mp3"),  # an ID3 tag in front
        (MP4.score("", fileobj, header), 1, "m4a"),
    ]
    kinds += [(kind.score("", fileobj, header), 0, name) for kind, name in _OTHER_KINDS.items()]
    fileobj.seek(0)
    score, _, name = max((int(score), pref, name) for score, pref, name in kinds)
    return name if score > 0 else None


# --------------------------------------------------------------------------------------------
# MPEG audio frames: just enough of the header to walk a stream (Layer III only).

_L3_BITRATES = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 25: (11025, 12000, 8000)}
MIN_HEAD_FRAMES = 8  # consecutive consistent frames demanded at the start of the stream
MIN_TAIL_FRAMES = 3  # ... and at the end, before trusting where the last frame ends
_TAIL_WINDOW = 16 * 1024
_HEAD_WINDOW = 64 * 1024


@dataclass(frozen=True)
class MpegFrame:
    """One MPEG Layer III frame header."""

    version: int  # 1, 2 or 25 (MPEG 2.5)
    sample_rate: int
    channels: int
    length: int  # bytes, header included

    def same_stream(self, other: MpegFrame) -> bool:
        return (self.version, self.sample_rate, self.channels) == (
            other.version,
            other.sample_rate,
            other.channels,
        )


def parse_mpeg_header(data: bytes) -> MpegFrame | None:
    """Parse 4 bytes as an MPEG Layer III frame header; None if they are not one.

    >>> parse_mpeg_header(bytes.fromhex("fffb50c0"))
    MpegFrame(version=1, sample_rate=44100, channels=1, length=208)
    >>> parse_mpeg_header(b"RIFF") is None
    True
    """
    if len(data) < 4:
        return None
    (h,) = struct.unpack(">I", data[:4])
    version_bits, layer_bits = (h >> 19) & 3, (h >> 17) & 3
    bitrate_idx, rate_idx = (h >> 12) & 0xF, (h >> 10) & 3
    if (h >> 21) != 0x7FF or version_bits == 1 or layer_bits != 1:
        return None
    if bitrate_idx in (0, 15) or rate_idx == 3:
        return None
    version = {3: 1, 2: 2, 0: 25}[version_bits]
    bitrate = _L3_BITRATES[1 if version == 1 else 2][bitrate_idx] * 1000
    sample_rate = _SAMPLE_RATES[version][rate_idx]
    slots = 144 if version == 1 else 72
    length = slots * bitrate // sample_rate + ((h >> 9) & 1)
    channels = 1 if (h >> 6) & 3 == 3 else 2
    return MpegFrame(version, sample_rate, channels, length)


def walk_frames(buf: bytes, pos: int) -> tuple[int, int, MpegFrame | None]:
    """Follow consistent frames from `pos`: (count, where the chain ends, first frame).

    The end may lie past `len(buf)` when the last frame is cut off.
    """
    first = parse_mpeg_header(buf[pos : pos + 4])
    if first is None:
        return 0, pos, None
    count = 0
    while pos + 4 <= len(buf):
        frame = parse_mpeg_header(buf[pos : pos + 4])
        if frame is None or not frame.same_stream(first):
            break
        pos += frame.length
        count += 1
    return count, pos, first


def _sync_positions(buf: bytes) -> Iterator[int]:
    pos = buf.find(b"\xff")
    while pos != -1:
        yield pos
        pos = buf.find(b"\xff", pos + 1)


def find_stream_start(head: bytes, whole: bool) -> tuple[int, MpegFrame] | None:
    """The first offset in `head` where a run of consistent frames starts.

    `whole` says `head` is the entire stream, so a short file may end its run at the end.
    """
    for pos in _sync_positions(head):
        count, end, first = walk_frames(head, pos)
        if first is None:
            continue
        if count >= MIN_HEAD_FRAMES or (whole and count >= 1 and end == len(head)):
            return pos, first
    return None


def tail_is_cut(tail: bytes, ref: MpegFrame) -> bool | None:
    """Does the stream's last frame run past the end? None when no frame run is found."""
    for pos in _sync_positions(tail):
        count, end, first = walk_frames(tail, pos)
        if first is None or not first.same_stream(ref) or count < MIN_TAIL_FRAMES:
            continue
        if end > len(tail):
            return True
        rest = tail[end:]
        # A header cut short is truncation; other trailing bytes are junk we leave alone.
        return 0 < len(rest) < 4 and rest[0] == 0xFF
    return None


def xing_byte_count(frame_bytes: bytes) -> int | None:
    """The stream size a Xing/Info header (LAME, ffmpeg) records in its first frame, if any."""
    for marker in (b"Xing", b"Info"):
        at = frame_bytes.find(marker, 4)
        if at == -1 or at + 8 > len(frame_bytes):
            continue
        (flags,) = struct.unpack(">I", frame_bytes[at + 4 : at + 8])
        offset = at + 8 + (4 if flags & 1 else 0)
        if flags & 2 and offset + 4 <= len(frame_bytes):
            return struct.unpack(">I", frame_bytes[offset : offset + 4])[0]
    return None


# --------------------------------------------------------------------------------------------
# Where the audio is, between the tags.


def id3v2_span(head: bytes) -> int:
    """Bytes taken by (possibly stacked) ID3v2 tags at the start of `head`."""
    pos = 0
    while head[pos : pos + 3] == b"ID3" and len(head) >= pos + 10:
        size_bytes = head[pos + 6 : pos + 10]
        if any(b & 0x80 for b in size_bytes):
            break  # not a syncsafe size: not a tag
        size = 0
        for b in size_bytes:
            size = (size << 7) | b
        footer = 10 if head[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


def trailing_tags_span(tail: bytes) -> int:
    """Bytes taken by an ID3v1 and/or APEv2 tag at the end; `tail` is the file's last bytes.

    160 bytes of tail are enough: the APEv2 size is read from its footer.
    """
    end = len(tail)
    if end >= 128 and tail[end - 128 : end - 125] == b"TAG":
        end -= 128
    span = len(tail) - end
    if end >= 32 and tail[end - 32 : end - 24] == b"APETAGEX":
        size, _, flags = struct.unpack("<III", tail[end - 20 : end - 8])
        span += size + (32 if flags & 0x80000000 else 0)  # the size excludes the header
    return span


def mp3_audio_range(path: Path) -> tuple[int, int]:
    """(start, end) byte offsets of the MPEG stream without leading or trailing tags."""
    size = path.stat().st_size
    with path.open("rb") as f:
        start = 0
        while True:  # stacked tags: skip each by its own header
            f.seek(start)
            step = id3v2_span(f.read(10))
            if step == 0:
                break
            start += step
        f.seek(max(0, size - 160))
        end = size - trailing_tags_span(f.read())
    start = min(start, size)
    return start, max(end, start)


# --------------------------------------------------------------------------------------------
# Validation


def _load(kind: type, path: Path, what: Text) -> mutagen.FileType:
    try:
        return kind(path)
    except mutagen.MutagenError as exc:
        raise _refused(
            path,
            (
                f"ser ut som {what[0]} men går inte att läsa ({exc}); den är troligen skadad "
                "eller avklippt",
                f"looks like {what[1]} but cannot be read ({exc}); it is probably damaged or "
                "cut short",
            ),
        ) from None


def _read_range(path: Path, start: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(start)
        return f.read(length)


def _check_mp3_stream(path: Path, start: int, end: int) -> None:
    """Raise unless [start, end) is a whole, consistent MPEG Layer III stream."""
    head = _read_range(path, start, min(end - start, _HEAD_WINDOW))
    found = find_stream_start(head, whole=end - start <= _HEAD_WINDOW)
    if found is None:
        raise _refused(
            path,
            (
                "inga MPEG-ljudramar i början av filen: det är inte MP3-ljud, eller så är "
                "filen skadad",
                "no run of MPEG audio frames at the start of the file: it is not MP3 audio, "
                "or it is damaged",
            ),
        )
    offset, first = found
    declared = xing_byte_count(head[offset : offset + first.length])
    # Encoders differ on whether the count includes a leading ID3 tag: allow for it.
    available = end - offset
    if declared is not None and available < declared:
        there = end - start - offset
        raise _refused(
            path,
            (
                f"filen är avklippt: MP3-huvudet utlovar {declared} byte ljud men bara {there} "
                "finns (en avbruten kopiering eller nedladdning?)",
                f"the file is cut short: its MP3 header announces {declared} bytes of audio "
                f"but only {there} are there (an interrupted copy or download?)",
            ),
            _FIX_COPY,
            f"inbox/{path.name}",
        )
    tail_start = max(start + offset, end - _TAIL_WINDOW)
    if tail_is_cut(_read_range(path, tail_start, end - tail_start), first):
        raise _refused(
            path,
            (
                "filen är avklippt: den sista MP3-ramen är ofullständig (en avbruten "
                "kopiering eller nedladdning?)",
                "the file is cut short: its last MP3 frame is incomplete (an interrupted "
                "copy or download?)",
            ),
            _FIX_COPY,
            f"inbox/{path.name}",
        )


def _check_mp4_boxes(path: Path) -> None:
    """Raise unless the top-level MP4 boxes end exactly where the file ends."""
    size = path.stat().st_size
    with path.open("rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            box_size, _ = struct.unpack(">I4s", f.read(8))
            if box_size == 1:
                (box_size,) = struct.unpack(">Q", f.read(8))
            elif box_size == 0:
                box_size = size - pos  # "to the end of the file"
            if box_size < 8:
                break
            pos += box_size
    if pos != size:
        raise _refused(
            path,
            (
                f"M4A-filen är avklippt eller skadad: dess delar (boxar) utlovar {pos} byte men "
                f"filen har {size}",
                f"the M4A file is cut short or damaged: its boxes announce {pos} bytes but the "
                f"file has {size}",
            ),
            (
                "Kopiera in hela filen igen, eller exportera den igen som M4A",
                "Copy the complete file again, or export it again as M4A",
            ),
            f"inbox/{path.name}",
        )


def _first_text(tags: object, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        values = tags.get(key) if tags is not None else None  # type: ignore[attr-defined]
        for value in getattr(values, "text", values) or ():
            text = str(value).strip()
            if text:
                return text
    return None


def _id3_description(tags: ID3 | None) -> str | None:
    if tags is None:
        return None
    # COMM frames with a description ("iTunNORM", ...) are machine data, not text for people.
    for frame in tags.getall("COMM"):
        text = "\n".join(str(t) for t in frame.text).strip()
        if not frame.desc and text:
            return text
    # ffmpeg writes `-metadata comment=...` as TXXX:comment.
    return _first_text(tags, ("TDES", "TXXX:comment", "TXXX:description"))


def _inspect_mp3(path: Path) -> AudioInfo:
    audio = _load(MP3, path, ("MP3-ljud", "MP3 audio"))
    info: Any = audio.info  # mutagen declares FileType.info as None
    if info.layer != 3:
        kind = f"MPEG-{info.version} Layer {info.layer}"
        raise _refused(
            path,
            (f"är {kind}-ljud, inte MP3 (Layer III)", f"this is {kind} audio, not MP3 (Layer III)"),
        )
    if info.sketchy:
        raise _refused(
            path,
            (
                "för få MPEG-ramar för att vara säkert MP3-ljud; filen är skadad eller inget ljud",
                "too few MPEG frames to be sure this is MP3 audio; it is damaged or not audio",
            ),
        )
    _check_duration(path, info.length)
    start, end = mp3_audio_range(path)
    _check_mp3_stream(path, start, end)
    return AudioInfo(
        path=path,
        format="mp3",
        extension=".mp3",
        mime_type=MIME_TYPES["mp3"],
        duration=float(info.length),
        sample_rate=int(info.sample_rate),
        channels=int(info.channels),
        bitrate=int(info.bitrate),
        title=_first_text(audio.tags, ("TIT2",)),
        description=_id3_description(audio.tags),
        warnings=recommendation_warnings(info.sample_rate, info.channels, info.bitrate, path.name),
    )


def _inspect_m4a(path: Path) -> AudioInfo:
    audio = _load(MP4, path, ("en MP4/M4A-fil", "an MP4/M4A file"))
    info: Any = audio.info  # mutagen declares FileType.info as None
    codec = getattr(info, "codec", "")
    if not codec.startswith("mp4a"):
        found = codec or "none"
        raise _refused(
            path,
            (
                f"MP4-filen har inget AAC-ljudspår (hittade {found})",
                f"the MP4 file has no AAC audio track (found {found})",
            ),
        )
    _check_duration(path, info.length)
    _check_mp4_boxes(path)
    # Some encoders leave the average bitrate at 0; the file size gives a fair estimate.
    bitrate = int(info.bitrate) or int(path.stat().st_size * 8 / info.length)
    return AudioInfo(
        path=path,
        format="m4a",
        extension=".m4a",
        mime_type=MIME_TYPES["m4a"],
        duration=float(info.length),
        sample_rate=int(info.sample_rate),
        channels=int(info.channels),
        bitrate=bitrate,
        title=_first_text(audio.tags, ("©nam",)),
        description=_first_text(audio.tags, ("ldes", "desc", "©cmt")),
        warnings=recommendation_warnings(info.sample_rate, info.channels, bitrate, path.name),
    )


def _check_duration(path: Path, length: float) -> None:
    if not length or length <= 0:
        raise _refused(
            path,
            (
                "ljudet är 0 sekunder långt: exporten innehåller inget ljud",
                "the audio has no duration (0 seconds): the export holds no sound",
            ),
        )


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb") as f:
            first = f.read(1)
    except FileNotFoundError:
        raise _refused(
            path,
            ("filen finns inte", "the file does not exist"),
            ("Kopiera in ljudfilen i inbox/ igen", "Copy the audio file into inbox/ again"),
            f"inbox/{path.name}",
        ) from None
    except OSError as exc:
        cause = exc.strerror or exc
        raise _refused(
            path,
            (f"går inte att läsa ({cause})", f"cannot be read ({cause})"),
            (
                "Kontrollera att det är en vanlig fil som får läsas och lägg in den igen",
                "Check that it is a regular file with read permission, then drop it in again",
            ),
            f"inbox/{path.name}",
        ) from None
    if not first:
        raise _refused(
            path,
            (
                "filen är tom (0 byte): kopieringen misslyckades eller är inte klar",
                "the file is empty (0 bytes): the copy failed or is not finished",
            ),
            _FIX_COPY,
            f"inbox/{path.name}",
        )


def inspect_audio(path: Path) -> AudioInfo:
    """Identify `path` by content, validate it as an episode and describe it.

    Raises AudioError naming the file, what is wrong and the fix.
    """
    path = Path(path)
    _check_readable(path)
    with path.open("rb") as f:
        kind = sniff_kind(f)
    if kind == "m4a":
        return _inspect_m4a(path)
    if kind in ("mp3", None):
        # Unknown content may still be MPEG audio after some junk; the MP3 checks decide.
        try:
            return _inspect_mp3(path)
        except AudioError:
            if kind is None:
                raise _refused(
                    path,
                    (
                        "ingen ljudfil vi kan publicera: inget MP3- eller M4A-ljud hittades "
                        "(slumpdata eller en skadad fil?)",
                        "not an audio file we can publish: no MP3 or M4A audio was found "
                        "(random or damaged data?)",
                    ),
                ) from None
            raise
    raise _refused(
        path,
        (
            f"innehåller {_sv_kind(kind)}, inte MP3 eller M4A, vad filnamnet än säger",
            f"this is {kind} file, not MP3 or M4A, whatever its name says",
        ),
    )
