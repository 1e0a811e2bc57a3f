"""Measure loudness (EBU R128 / BS.1770) with ffmpeg, and read lossless masters.

Reading, top to bottom:

1. Targets and results: `LoudnessTarget` (-16 LUFS integrated, at most -1 dBTP true peak,
   optionally -19 LUFS for mono), `Loudness` (one measurement), `MasterInfo`.
2. Parsing ffmpeg's reports (pure): ebur128's summary, loudnorm's JSON.
3. Measuring: `measure_loudness(path)` runs the `ebur128` filter (integrated loudness, its
   relative gate, loudness range, true peak). It is 4-6x faster than loudnorm's first pass,
   which resamples to 192 kHz; both implement BS.1770 and agree to 0.05 LU. ebur128 prints
   one decimal, so figures have 0.1 resolution. Silence (-inf) is a clear `AudioError`.
4. Masters: `master_format(path)` names a WAV/FLAC/AIFF by content, `probe_master(path)`
   reads duration, channels and sample rate with mutagen and refuses corrupt, truncated and
   empty files; `master_key` is where a kept master lives in private storage.
5. Lossy files (MP3/M4A): `check_lossy` words a warning when a file is more than a margin off
   target, `recommendation_warnings` when its bitrate or sample rate is below what apps
   recommend.

Errors and warnings are notes a producer can act on (`flows.podcast.report.file_note`): the
file, what is wrong, the fix and an example, in Swedish and English.

ffmpeg is run by `flows.podcast.ffmpeg`; encoding to a normalised MP3 is `flows.podcast.encode`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mutagen
from mutagen.aiff import AIFF
from mutagen.flac import FLAC
from mutagen.wave import WAVE

from flows.core.errors import AudioError
from flows.core.schema import Text
from flows.podcast.ffmpeg import (
    MEASURING,
    FfmpegRun,
    ffmpeg_exe,
    ffmpeg_timeout,
    input_args,
    quote_tail,
    run_ffmpeg,
)
from flows.podcast.report import file_note

if TYPE_CHECKING:
    from flows.core.settings import Settings

SILENCE_LUFS = -70.0  # BS.1770's absolute gate: at or below it there is nothing to measure
MIN_BYTES_PER_SECOND = 4_000  # 32 kbps: an upper bound on duration when nothing else is known

WAV_PCM_FORMATS = (1, 3, 0xFFFE)  # PCM, IEEE float, extensible (PCM or float inside)
MASTER_MIME_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "aiff": "audio/aiff"}
_FIX_MASTER: Text = (
    "Exportera mastern igen från redigeringsprogrammet (WAV, FLAC eller AIFF, 16 eller 24 "
    "bitar, 44,1 eller 48 kHz) och lägg in den igen",
    "Export the master again from the editor (WAV, FLAC or AIFF, 16 or 24 bit, 44.1 or 48 "
    "kHz) and drop it in again",
)
_MASTER_EXAMPLE = "WAV, 24 bit, 48000 Hz"


def _refused(
    path: Path, what: Text, fix: Text = _FIX_MASTER, example: str = "", detail: str = ""
) -> AudioError:
    """The error for a master (or any audio) we cannot use: a note on `path`."""
    return AudioError(file_note(path, what, fix, example or _MASTER_EXAMPLE, detail))


# --------------------------------------------------------------------------------------------
# Targets and results


@dataclass(frozen=True)
class LoudnessTarget:
    """Where an episode should end up. Mono has its own target when `mono_integrated` is set
    (-19 LUFS: a mono file played on two speakers sounds ~3 LU louder than it measures)."""

    integrated: float = -16.0  # LUFS
    true_peak: float = -1.0  # dBTP, a ceiling
    mono_integrated: float | None = None  # LUFS; None: mono uses `integrated` too
    tolerance_lu: float = 1.0  # the encoded MP3 must measure within this of the target

    def for_channels(self, channels: int) -> float:
        """The integrated target for audio with this many channels."""
        if channels == 1 and self.mono_integrated is not None:
            return self.mono_integrated
        return self.integrated

    @classmethod
    def from_settings(cls, settings: Settings) -> LoudnessTarget:
        """The target the settings name (`loudness_*`)."""
        return cls(
            integrated=settings.loudness_target_lufs,
            true_peak=settings.loudness_true_peak_dbtp,
            mono_integrated=settings.loudness_mono_lufs,
        )


@dataclass(frozen=True)
class Loudness:
    """One EBU R128 / BS.1770 measurement of a file."""

    integrated_lufs: float
    true_peak_dbtp: float
    lra: float  # loudness range, LU
    threshold: float  # the integrated measurement's relative gate, LUFS (loudnorm's input)

    def as_record(self) -> dict[str, float]:
        """The figures as the catalog stores them (`Episode.loudness`)."""
        return {
            "integrated_lufs": self.integrated_lufs,
            "true_peak_dbtp": self.true_peak_dbtp,
            "lra_lu": self.lra,
        }


@dataclass(frozen=True)
class MasterInfo:
    """What `probe_master` learned about a lossless master."""

    path: Path
    format: str  # "wav", "flac" or "aiff"
    duration: float  # seconds, > 0
    channels: int
    sample_rate: int
    bits_per_sample: int | None

    @property
    def mime_type(self) -> str:
        return MASTER_MIME_TYPES[self.format]


# --------------------------------------------------------------------------------------------
# Parsing ffmpeg's reports (pure)

_EBUR128_FIELDS = {
    # (section, label) -> field; the labels "Threshold" repeat, so the section decides
    ("Integrated loudness", "I"): "integrated_lufs",
    ("Integrated loudness", "Threshold"): "threshold",
    ("Loudness range", "LRA"): "lra",
    ("True peak", "Peak"): "true_peak_dbtp",
}
_NUMBER = r"([-+]?(?:inf|nan|\d+(?:\.\d*)?))"


def _number(text: str) -> float:
    value = float(text)
    return value if not math.isnan(value) else -math.inf


def parse_ebur128_summary(lines: Sequence[str]) -> dict[str, float]:
    """The figures of ebur128's end-of-run summary.

    >>> parse_ebur128_summary(["Summary:", "  Integrated loudness:", "    I:  -16.1 LUFS",
    ...     "    Threshold: -26.2 LUFS", "  True peak:", "    Peak:  -inf dBFS"])
    {'integrated_lufs': -16.1, 'threshold': -26.2, 'true_peak_dbtp': -inf}
    """
    found: dict[str, float] = {}
    section = ""
    for line in lines:
        stripped = line.strip()
        if stripped.endswith(":") and not stripped.startswith("["):
            section = stripped[:-1]
            continue
        match = re.match(rf"^(\w+):\s*{_NUMBER}\s*(?:LUFS|LU|dBFS|dBTP)\b", stripped)
        if match:
            name = _EBUR128_FIELDS.get((section, match.group(1)))
            if name and name not in found:
                found[name] = _number(match.group(2))
    return found


def parse_loudnorm_json(lines: Sequence[str]) -> dict[str, str]:
    """loudnorm's `print_format=json` block (the first {...} after its marker line).

    >>> parse_loudnorm_json(["[Parsed_loudnorm_0 @ 0x1]", "{", '"input_i" : "-inf"', "}"])
    {'input_i': '-inf'}
    """
    text = "\n".join(lines)
    start = text.find("{")
    end = text.find("}", start)
    if start < 0 or end < 0:
        return {}
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# Measuring


def _sniff_format(path: Path) -> str | None:
    try:
        return master_format(path)
    except OSError:
        return None  # ffmpeg will say what is wrong with the file


def _duration_hint(path: Path) -> float:
    """The duration mutagen reads, or an upper bound from the size (for the timeout only)."""
    try:
        audio = mutagen.File(path)
        if audio is not None and audio.info.length:
            return float(audio.info.length)
    except (mutagen.MutagenError, OSError, ValueError):
        pass
    try:
        return path.stat().st_size / MIN_BYTES_PER_SECOND
    except OSError:
        return 0.0


def measure_command(ffmpeg: str, path: Path, fmt: str | None = None) -> list[str]:
    """The ffmpeg command that measures `path` (first audio stream) with ebur128.
    `fmt`: "wav", "flac", "aiff", "mp3" or "m4a" when known."""
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-threads", "1", *input_args(path, fmt),
        "-map", "0:a:0", "-filter_threads", "1",
        "-af", "ebur128=peak=true:framelog=quiet", "-f", "null", "-",
    ]  # fmt: skip


def measure_loudness(
    path: Path,
    *,
    fmt: str | None = None,
    ffmpeg: str | None = None,
    duration: float | None = None,
    timeout: float | None = None,
) -> Loudness:
    """Integrated loudness, true peak, loudness range and gate of `path` (any audio ffmpeg
    reads). Silence is an AudioError naming the file, not -inf in the catalog."""
    path = Path(path)
    command = measure_command(ffmpeg or ffmpeg_exe(), path, fmt or _sniff_format(path))
    if timeout is None:
        timeout = ffmpeg_timeout(duration if duration is not None else _duration_hint(path))
    run = run_ffmpeg(command, subject=path, doing=MEASURING, timeout=timeout, report="ebur128")
    return loudness_from_report(path, run)


def loudness_from_report(path: Path, run: FfmpegRun) -> Loudness:
    """Turn an ebur128 run's summary into a `Loudness`; silence and a missing report raise."""
    figures = parse_ebur128_summary(run.report)
    missing = sorted(set(_EBUR128_FIELDS.values()) - set(figures))
    if missing:
        gone = ", ".join(missing)
        raise _refused(
            path,
            (
                f"ffmpeg gav inga ljudnivåsiffror ({gone} saknas); filen har kanske inget ljudspår",
                f"ffmpeg gave no loudness figures ({gone} missing); the file may hold no audio "
                "stream",
            ),
            detail=f"ffmpeg said:\n{quote_tail(run.tail)}",
        )
    integrated = figures["integrated_lufs"]
    if not math.isfinite(integrated) or integrated <= SILENCE_LUFS:
        raise _refused(
            path,
            (
                f"ljudet är helt tyst (inget över {SILENCE_LUFS:g} LUFS), så det går inte att "
                "normalisera",
                f"the audio is silent (integrated loudness -inf: nothing above {SILENCE_LUFS:g} "
                "LUFS), so it cannot be normalised",
            ),
            (
                "Kontrollera exporten (ett avstängt spår, en tom tidslinje, fel kanaler?), "
                "exportera igen och lägg in filen",
                "Check the export: a muted track, an empty timeline or the wrong channels? "
                "Export it again and drop it in",
            ),
        )
    return Loudness(
        integrated_lufs=integrated,
        true_peak_dbtp=figures["true_peak_dbtp"],
        lra=max(figures["lra"], 0.0),
        threshold=figures["threshold"],
    )


# --------------------------------------------------------------------------------------------
# Masters


def master_format(path: Path) -> str | None:
    """ "wav", "flac" or "aiff" when `path` holds a lossless master (by content), else None."""
    with Path(path).open("rb") as f:
        header = f.read(128)
        if header[:4] in (b"RF64", b"BW64"):
            return "wav"
        scores = {
            name: kind.score("", f, header)
            for name, kind in (("wav", WAVE), ("flac", FLAC), ("aiff", AIFF))
        }
    name, score = max(scores.items(), key=lambda item: item[1])
    return name if score > 0 else None


def probe_master(path: Path) -> MasterInfo:
    """Duration, channels and sample rate of a WAV/FLAC/AIFF master, read with mutagen.

    Corrupt, truncated, empty and 0-second files raise AudioError naming the file and the fix.
    """
    path = Path(path)
    size, kind, header = _master_kind(path)
    info = _master_header(path, kind)
    duration = float(info.length or 0.0)
    channels = int(getattr(info, "channels", 0) or 0)
    sample_rate = int(getattr(info, "sample_rate", 0) or 0)
    bits = getattr(info, "bits_per_sample", None)
    name = kind.upper()
    if duration <= 0:
        raise _refused(
            path,
            (f"{name}-filen innehåller inget ljud (0 sekunder)",
             f"the {name} file holds no audio (0 seconds)"),
        )  # fmt: skip
    if channels < 1 or sample_rate < 1:
        raise _refused(
            path,
            (
                f"{name}-huvudet anger {channels} kanaler med {sample_rate} Hz; filen är skadad",
                f"the {name} header names {channels} channels at {sample_rate} Hz; the file "
                "is damaged",
            ),
        )
    if bits and _is_plain_pcm(kind, header, info):
        # PCM: the header promises duration x rate x frame size bytes; a cut copy holds fewer.
        bytes_per_second = sample_rate * channels * ((int(bits) + 7) // 8)
        if size < duration * bytes_per_second * 0.99:
            held = size / bytes_per_second
            raise _refused(
                path,
                (
                    f"{name}-filen är avklippt: huvudet utlovar {duration:.1f} s ljud men filen "
                    f"har ungefär {held:.1f} s (kopieringen eller exporten blev inte klar)",
                    f"the {name} file is cut short: its header promises {duration:.1f} s of "
                    f"audio but the file holds about {held:.1f} s (the copy or export did not "
                    "finish)",
                ),
                ("Kopiera eller exportera den igen", "Copy or export it again"),
                f"inbox/{path.name}",
            )
    return MasterInfo(
        path=path,
        format=kind,
        duration=duration,
        channels=channels,
        sample_rate=sample_rate,
        bits_per_sample=int(bits) if bits else None,
    )


def _master_kind(path: Path) -> tuple[int, str, bytes]:
    """(size, format by content, first 12 bytes) of a master; AudioError when the file
    cannot be read, is empty, is no WAV/FLAC/AIFF, or is an RF64 WAV."""
    try:
        size = path.stat().st_size
        kind = master_format(path) if size else None
    except OSError as exc:
        cause = exc.strerror or exc
        raise _refused(
            path,
            (f"går inte att läsa ({cause})", f"cannot be read ({cause})"),
            (
                "Kontrollera att filen finns och får läsas, och lägg in den igen",
                "Check that the file exists and is readable, then drop it in again",
            ),
            f"inbox/{path.name}",
        ) from None
    if size == 0:
        raise _refused(
            path,
            ("filen är tom (0 byte): kopieringen misslyckades",
             "the file is empty (0 bytes): the copy failed"),
            ("Kopiera in den igen", "Copy it again"),
            f"inbox/{path.name}",
        )  # fmt: skip
    if kind is None:
        raise _refused(
            path,
            ("är ingen WAV-, FLAC- eller AIFF-fil (efter innehållet)",
             "not a WAV, FLAC or AIFF file (by its content)"),
        )  # fmt: skip
    with path.open("rb") as f:
        header = f.read(12)
        if header[:4] in (b"RF64", b"BW64"):
            raise _refused(
                path,
                ("en RF64-WAV (över 4 GB), som vi inte kan läsa",
                 "an RF64 WAV (over 4 GB), which we cannot read"),
                ("Exportera mastern som FLAC i stället (förlustfri och mycket mindre)",
                 "Export the master as FLAC instead (it is lossless and far smaller)"),
                "FLAC, 24 bit, 48000 Hz",
            )  # fmt: skip
    return size, kind, header


def _master_header(path: Path, kind: str) -> Any:
    """mutagen's stream info of a master; AudioError when it is damaged or a compressed WAV."""
    loader = {"wav": WAVE, "flac": FLAC, "aiff": AIFF}[kind]
    try:
        info: Any = loader(path).info  # mutagen declares FileType.info as None
    except (mutagen.MutagenError, ValueError, EOFError, OSError) as exc:
        cause = str(exc).strip() or type(exc).__name__
        raise _refused(
            path,
            (
                f"en skadad {kind.upper()}-fil: huvudet går inte att läsa ({cause})",
                f"a damaged {kind.upper()} file: its header cannot be read ({cause})",
            ),
        ) from None
    if kind == "wav" and getattr(info, "audio_format", 1) not in WAV_PCM_FORMATS:
        # ADPCM, MP3-in-WAV...: mutagen cannot tell their duration, and no editor exports
        # them for podcast masters by default.
        tag = info.audio_format
        if not tag:  # 0 is no format at all: a damaged header, not a codec
            what = ("WAV-huvudet är skadat (formatkod 0)", "the WAV header is damaged (format 0)")
            raise _refused(path, what)
        raise _refused(
            path,
            (f"en komprimerad WAV (formatkod {tag}), inte PCM",
             f"a compressed WAV (format tag {tag}), not PCM"),
            ("Exportera mastern som PCM-WAV (16 eller 24 bitar) eller som FLAC och lägg in den "
             "igen", "Export the master as a PCM WAV (16 or 24 bit) or as FLAC and drop it in "
             "again"),
            "WAV (PCM), 24 bit, 48000 Hz",
        )  # fmt: skip
    return info


def _is_plain_pcm(kind: str, header: bytes, info: object) -> bool:
    """Uncompressed samples, so the size follows from duration and format (WAV PCM or IEEE
    float or extensible; AIFF but not AIFF-C, which may be compressed)."""
    if kind == "wav":
        return getattr(info, "audio_format", None) in WAV_PCM_FORMATS
    return kind == "aiff" and header[8:12] == b"AIFF"


def master_key(slug: str, sha256: str, fmt: str, prefix: str = "podcast/masters") -> str:
    """Private storage key of a kept master: `podcast/masters/<slug>-<hash8>.<ext>`.

    >>> master_key("avsnitt-1", "ab12cd34ef", "flac")
    'podcast/masters/avsnitt-1-ab12cd34.flac'
    """
    return f"{prefix}/{slug}-{sha256[:8]}.{fmt}"


# --------------------------------------------------------------------------------------------
# Lossy files: tell the producer

# Apple Podcasts' recommendation; below it a warning is recorded, not an error.
RECOMMENDED_BITRATE = {1: 64_000, 2: 128_000}
RECOMMENDED_SAMPLE_RATES = (44_100, 48_000)


def recommendation_warnings(
    sample_rate: int, channels: int, bitrate: int, name: str = "audio"
) -> tuple[str, ...]:
    """Warnings (notes on the file `name`) for audio that works but is below what podcast
    apps recommend; the episode is published all the same."""
    warnings: list[str] = []
    wanted = RECOMMENDED_BITRATE.get(min(channels, 2), 128_000) // 1000
    if bitrate < wanted * 1000 * 0.95:
        kbps, layout = round(bitrate / 1000), ("mono" if channels == 1 else "stereo")
        warnings.append(
            file_note(
                name,
                (
                    f"bithastigheten {kbps} kbit/s är lägre än de {wanted} kbit/s för {layout} "
                    "som Apple rekommenderar; rösten kan låta burkig",
                    f"bitrate {kbps} kbps is below Apple's recommended {wanted} kbps for "
                    f"{layout}; voices may sound muffled",
                ),
                (
                    f"Exportera med {wanted} kbit/s eller mer nästa gång, eller lägg in mastern",
                    f"Export at {wanted} kbps or more next time, or drop the master",
                ),
                f"MP3, {wanted} kbps, {layout}",
            )
        )
    if sample_rate not in RECOMMENDED_SAMPLE_RATES:
        warnings.append(
            file_note(
                name,
                (
                    f"samplingsfrekvensen {sample_rate} Hz är ovanlig för poddar",
                    f"sample rate {sample_rate} Hz is unusual for podcasts",
                ),
                ("Exportera med 44100 eller 48000 Hz", "Export at 44100 or 48000 Hz"),
                "MP3, 128 kbps, 44100 Hz",
            )
        )
    if channels > 2:
        warnings.append(
            file_note(
                name,
                (f"{channels} kanaler; en podd ska vara mono eller stereo",
                 f"{channels} channels; podcasts should be mono or stereo"),
                ("Exportera i mono eller stereo", "Export in mono or stereo"),
                "MP3, 128 kbps, stereo",
            )
        )  # fmt: skip
    return tuple(warnings)


def check_lossy(
    path: Path,
    loudness: Loudness,
    target: LoudnessTarget,
    margin_lu: float = 2.0,
    *,
    channels: int = 2,
) -> list[str]:
    """Warnings for an MP3/M4A published as it is: more than `margin_lu` off the integrated
    target, or peaking above the true-peak ceiling. Each says by how much and what to do.

    >>> quiet = Loudness(-30.0, -9.0, 5.0, -40.0)
    >>> check_lossy(Path("tyst.mp3"), quiet, LoudnessTarget())[0].splitlines()[1][:62]
    'tyst.mp3: -30.0 LUFS, 14.0 LU quieter than the -16 LUFS target'
    """
    name, stem = Path(path).name, Path(path).stem
    goal = target.for_channels(channels)
    warnings = []
    off = loudness.integrated_lufs - goal
    if abs(off) > margin_lu:
        quiet = off < 0
        warnings.append(
            file_note(
                name,
                (
                    f"{loudness.integrated_lufs:.1f} LUFS, {abs(off):.1f} LU "
                    f"{'tystare' if quiet else 'starkare'} än målet {goal:g} LUFS; lyssnarna "
                    f"får skruva {'upp' if quiet else 'ner'} ljudet mellan avsnitten",
                    f"{loudness.integrated_lufs:.1f} LUFS, {abs(off):.1f} LU "
                    f"{'quieter' if quiet else 'louder'} than the {goal:g} LUFS target; "
                    f"listeners have to turn it {'up' if quiet else 'down'} between episodes",
                ),
                _fix_lossy(("höj" if quiet else "sänk", "raise" if quiet else "lower"), abs(off)),
                f"{stem}.wav",
            )
        )
    if loudness.true_peak_dbtp > target.true_peak:
        peak, ceiling = loudness.true_peak_dbtp, target.true_peak
        warnings.append(
            file_note(
                name,
                (
                    f"toppar på {peak:.1f} dBTP, över taket {ceiling:g} dBTP, så det kan "
                    "spraka i vissa spelare",
                    f"true peak {peak:.1f} dBTP is above the {ceiling:g} dBTP ceiling, so it "
                    "may distort on some players",
                ),
                _fix_lossy(("sänk", "lower"), peak - ceiling),
                f"{stem}.wav",
            )
        )
    return warnings


def _fix_lossy(verb: Text, by: float) -> Text:
    """What a producer can do about a lossy file off target (and what a technician can)."""
    return (
        f"Lägg hellre in mastern (WAV/FLAC), som vi normaliserar själva, eller {verb[0]} nivån "
        f"{by:.1f} dB i redigeringsprogrammet och exportera igen (en tekniker kan också slå på "
        "omkodning: KRAFTSAMLING_NORMALISE_LOSSY=true)",
        f"Drop the master (WAV/FLAC) instead, which we normalise, or {verb[1]} the level by "
        f"{by:.1f} dB in the editor and export again (a technician can also turn on "
        "re-encoding: KRAFTSAMLING_NORMALISE_LOSSY=true)",
    )
