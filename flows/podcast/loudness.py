"""Measure loudness, and turn lossless masters (WAV/FLAC/AIFF) into loudness-normalised MP3.

Everything runs through the ffmpeg binary that imageio-ffmpeg ships, so no system package is
needed. Reading, top to bottom:

1. Targets and results: `LoudnessTarget` (-16 LUFS integrated, at most -1 dBTP true peak,
   optionally -19 LUFS for mono), `Loudness` (one measurement), `MasterInfo`, `EncodeResult`.
2. Running ffmpeg: `run_ffmpeg` streams stderr and keeps only its last lines (a 6-hour file
   does not fill memory) plus the filter's report block (loudnorm's JSON, ebur128's summary);
   a timeout proportional to the audio's duration; a failure raises `AudioError` that quotes
   ffmpeg's own last lines.
3. Measuring: `measure_loudness(path)` runs the `ebur128` filter (integrated loudness, its
   relative gate, loudness range, true peak). It is 4-6x faster than loudnorm's first pass,
   which resamples to 192 kHz; both implement BS.1770 and agree to 0.05 LU. ebur128 prints
   one decimal, so figures have 0.1 resolution. Silence (-inf) is a clear `AudioError`.
4. Masters: `master_format(path)` names a WAV/FLAC/AIFF by content, `probe_master(path)`
   reads duration, channels and sample rate with mutagen and refuses corrupt, truncated and
   empty files.
5. Encoding: `encode_master(src, dst, target=...)` is a two-pass loudnorm:
   pass 1 measures, pass 2 runs `loudnorm=...:measured_*=...:linear=true` into libmp3lame
   at 44.1 kHz, then the MP3 itself is measured (the figures listeners get). Linear mode
   (a plain gain) is used when the peaks allow; otherwise loudnorm falls back to its dynamic
   mode (compressor and limiter). Checked behaviour (ffmpeg n9.0, libmp3lame):
   * MP3 encoding can overshoot the peak, so pass 2 aims 0.5 dB below the ceiling (-1.5
     dBTP for -1); an MP3 still above the ceiling is encoded again with its overshoot (+0.5
     dB) as extra headroom. Bright material overshoots most: white noise aimed at -1.0
     dBTP measured 0.0 dBTP as a 128 kbps MP3; tones and speech-like audio do not overshoot.
   * Dynamic mode can miss the integrated target badly on short, peaky audio (5 s of tone
     with clicks came out at -22 instead of -16 LUFS); an MP3 off by more than the tolerance
     (1 LU) is encoded again with the aim corrected by the error. At most
     `MAX_ENCODE_ATTEMPTS` encodes; what still misses is a warning, not an error.
   * LAME at 128 kbps measures 0.3-0.5 LU below its input on tones and pink noise (not at
     320 kbps); that is inside the tolerance and not corrected.
   * loudnorm reads a measured LRA of 0 as "not measured" and then refuses linear mode, so
     steady audio passes 0.1; the LRA target is 11 LU or the source's own range if wider,
     so a wide-range programme gets a plain gain instead of compression.
   * ffmpeg's content sniffing can tie (a 1 kHz tone in a WAV or AIFF also probes as
     MPEG-TS, and the file fails to open), so a format we know is passed with `-f`.
   Output is deterministic: bit-exact flags, no metadata, no ID3 tag (tag_audio writes the
   tags), one thread; the same input and settings give the same bytes.
6. Lossy files (MP3/M4A): `check_lossy` words a warning when a file is more than a margin off
   target; `reencode_lossy` runs the same two-pass path when the settings ask for it.
7. `prepare_audio(...)`: the one call the podcast pipeline makes per dropped file.

Concurrency: each encode uses `-threads 1 -filter_threads 1`; ffmpeg's pipeline threads keep
it to about one core. Bound the number of encodes at once with `max_parallel_encodes()`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import mutagen
from mutagen.aiff import AIFF
from mutagen.flac import FLAC
from mutagen.wave import WAVE

from flows.core.errors import AudioError

if TYPE_CHECKING:
    from flows.core.settings import Settings
    from flows.podcast.audio import AudioInfo

OUTPUT_SAMPLE_RATE = 44_100  # loudnorm works at 192 kHz; the MP3 is always resampled to this
ENCODE_TP_HEADROOM = 0.5  # pass 2 aims this far below the true-peak ceiling (MP3 overshoot)
MAX_ENCODE_ATTEMPTS = 3
DEFAULT_LRA = 11.0  # loudnorm's loudness-range target; raised to the source's own LRA
MAX_LRA = 50.0  # loudnorm's upper limit for LRA
QUIET_GAIN_WARNING = 24.0  # dB of gain above which the source's noise floor becomes audible
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: at or below it there is nothing to measure
TAIL_LINES = 40  # how much of ffmpeg's stderr is kept
ERROR_LINES = 12  # how much of it an error message quotes
REPORT_LINES = 40  # lines kept after a filter's report marker
MAX_LINE_CHARS = 500  # a longer stderr line is cut when kept
_MAX_PARTIAL_LINE = 64 * 1024  # a line longer than this (no newline) is cut, not buffered
TIMEOUT_BASE_SECONDS = 60.0
TIMEOUT_PER_AUDIO_SECOND = 0.5  # ffmpeg must manage 2x real time; it does 20-100x
MIN_BYTES_PER_SECOND = 4_000  # 32 kbps: an upper bound on duration when nothing else is known

MASTER_FORMATS = ("wav", "flac", "aiff")
WAV_PCM_FORMATS = (1, 3, 0xFFFE)  # PCM, IEEE float, extensible (PCM or float inside)
INPUT_DEMUXERS = {"wav": "wav", "flac": "flac", "aiff": "aiff", "mp3": "mp3", "m4a": "mov"}
MASTER_MIME_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "aiff": "audio/aiff"}
_FIX_MASTER = (
    "Export the master again from the editor (WAV, FLAC or AIFF, 16 or 24 bit, "
    "44.1 or 48 kHz) and drop it in again."
)
_FIX_FFMPEG = (
    "Reinstall imageio-ffmpeg (`pip install --force-reinstall imageio-ffmpeg`), or point "
    "IMAGEIO_FFMPEG_EXE at a working ffmpeg with libmp3lame."
)


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


@dataclass(frozen=True)
class EncodeResult:
    """What `encode_master` / `reencode_lossy` did and what the MP3 measures."""

    source: Path
    output: Path
    duration: float  # of the source, seconds
    input: Loudness  # the source, as measured before encoding
    measured: Loudness  # the MP3 as written (what listeners get)
    target_lufs: float  # the integrated target used (mono or stereo)
    true_peak_ceiling: float
    channels: int
    sample_rate: int
    bitrate_kbps: int
    mode: str  # loudnorm's normalisation type of the kept encode: "linear" or "dynamic"
    attempts: int  # encodes run (1 unless the MP3 missed and was encoded again)
    commands: tuple[tuple[str, ...], ...]  # every ffmpeg command run, in order
    warnings: tuple[str, ...] = ()

    def loudness_record(self) -> dict[str, float]:
        """`Episode.loudness` for the published MP3, with the source's loudness beside it."""
        return {
            **self.measured.as_record(),
            "source_integrated_lufs": self.input.integrated_lufs,
            "source_true_peak_dbtp": self.input.true_peak_dbtp,
        }


def max_parallel_encodes() -> int:
    """How many encodes may run at once: one per core (each encode keeps to one thread)."""
    return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Running ffmpeg


def ffmpeg_exe() -> str:
    """The ffmpeg that imageio-ffmpeg ships (or IMAGEIO_FFMPEG_EXE); AudioError if missing."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise AudioError(
            "ffmpeg is not available: the imageio-ffmpeg package is not installed. "
            "Install it with `pip install imageio-ffmpeg`."
        ) from None
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise AudioError(f"ffmpeg could not be found ({exc}). {_FIX_FFMPEG}") from None
    # imageio-ffmpeg returns IMAGEIO_FFMPEG_EXE without checking it.
    if os.sep in exe and not os.access(exe, os.X_OK):
        raise AudioError(f"ffmpeg {exe} does not exist or is not executable. {_FIX_FFMPEG}")
    return exe


@dataclass(frozen=True)
class FfmpegRun:
    """What a finished ffmpeg run left on stderr: its last lines and the filter's report."""

    command: tuple[str, ...]
    tail: tuple[str, ...]
    report: tuple[str, ...]  # lines from the last `[Parsed_<filter>_N @ ...]` marker on


class _StderrKeeper:
    """Reads ffmpeg's stderr in chunks; keeps the last lines and one report block.

    Lines end at \\n or \\r (ffmpeg's progress line uses \\r); nothing grows with run time.
    """

    def __init__(self, report_marker: str | None) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.report: list[str] = []
        self._marker = re.compile(rf"^\[Parsed_{report_marker}_\d+ @") if report_marker else None
        self._capturing = False

    def feed_line(self, line: str) -> None:
        line = line.rstrip()[:MAX_LINE_CHARS]
        if not line:
            return
        self.tail.append(line)
        if self._marker is not None and self._marker.match(line):
            self.report, self._capturing = [line], True
        elif self._capturing:
            self.report.append(line)
            self._capturing = len(self.report) < REPORT_LINES

    def consume(self, stream: BinaryIO) -> None:
        partial = b""
        try:
            while chunk := stream.read(65536):
                parts = re.split(rb"[\r\n]", partial + chunk)
                partial = parts.pop()[-_MAX_PARTIAL_LINE:]
                for part in parts:
                    self.feed_line(part.decode("utf-8", "replace"))
        except (OSError, ValueError):  # the pipe broke under us
            pass
        self.feed_line(partial.decode("utf-8", "replace"))


def ffmpeg_timeout(duration: float) -> float:
    """Seconds an ffmpeg pass over `duration` seconds of audio may take before it is killed."""
    return TIMEOUT_BASE_SECONDS + TIMEOUT_PER_AUDIO_SECOND * max(duration, 0.0)


def _quote_tail(lines: Sequence[str]) -> str:
    shown = list(lines)[-ERROR_LINES:]
    return "\n".join(f"    {line}" for line in shown) if shown else "    (nothing)"


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)


def run_ffmpeg(
    command: Sequence[str],
    *,
    subject: Path,
    doing: str,
    timeout: float,
    report: str | None = None,
) -> FfmpegRun:
    """Run one ffmpeg command (stdin closed, stdout discarded, stderr streamed).

    `report`: the filter whose end-of-run report to keep ("loudnorm", "ebur128").
    A non-zero exit, a timeout or a missing binary raises AudioError naming `subject`, what
    was being done, and ffmpeg's own last lines.
    """
    command = tuple(str(part) for part in command)
    keeper = _StderrKeeper(report)
    try:
        # Its own process group, so a timeout can stop it and anything it started.
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise AudioError(
            f"{subject}: cannot start ffmpeg ({command[0]}) for {doing}: "
            f"{exc.strerror or exc}. {_FIX_FFMPEG}"
        ) from None
    assert proc.stderr is not None
    timed_out = threading.Event()

    def stop() -> None:
        if proc.returncode is None:  # not reaped yet, so its group id is still its own
            timed_out.set()
            _kill_group(proc)

    # A timer, not Popen.wait(timeout): wait() polls with sleeps, which adds up to 50 ms to
    # every run; reading stderr to its end and then waiting blocks without polling.
    timer = threading.Timer(timeout, stop)
    timer.daemon = True
    timer.start()
    try:
        with proc.stderr:
            keeper.consume(proc.stderr)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # interrupted (KeyboardInterrupt): never leave it running
            _kill_group(proc)
            proc.wait()
    if timed_out.is_set():
        raise AudioError(
            f"{subject}: ffmpeg did not finish {doing} within {timeout:.0f} s and was stopped. "
            f"Its last lines:\n{_quote_tail(keeper.tail)}\n"
            "Check that the file is not on a stalled network drive, then run again."
        )
    if proc.returncode != 0:
        raise AudioError(
            f"{subject}: ffmpeg failed {doing} (exit status {proc.returncode}). "
            f"ffmpeg said:\n{_quote_tail(keeper.tail)}\n"
            "If the file plays in an audio editor, export it again from there and drop it in."
        )
    return FfmpegRun(command, tuple(keeper.tail), tuple(keeper.report))


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


def _input_args(path: Path, fmt: str | None) -> list[str]:
    """`-f DEMUXER -i path`: content sniffing can tie (a 1 kHz tone in an AIFF probes as
    MPEG-TS as well), so a format we know is named."""
    demuxer = INPUT_DEMUXERS.get(fmt or "")
    return [*(["-f", demuxer] if demuxer else []), "-i", str(path)]


def measure_command(ffmpeg: str, path: Path, fmt: str | None = None) -> list[str]:
    """The ffmpeg command that measures `path` (first audio stream) with ebur128.
    `fmt`: "wav", "flac", "aiff", "mp3" or "m4a" when known."""
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-threads", "1", *_input_args(path, fmt),
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
    run = run_ffmpeg(
        command, subject=path, doing="measuring loudness", timeout=timeout, report="ebur128"
    )
    return loudness_from_report(path, run)


def loudness_from_report(path: Path, run: FfmpegRun) -> Loudness:
    """Turn an ebur128 run's summary into a `Loudness`; silence and a missing report raise."""
    figures = parse_ebur128_summary(run.report)
    missing = sorted(set(_EBUR128_FIELDS.values()) - set(figures))
    if missing:
        raise AudioError(
            f"{path}: ffmpeg gave no loudness figures ({', '.join(missing)} missing); the file "
            f"may hold no audio stream. ffmpeg said:\n{_quote_tail(run.tail)}\n{_FIX_MASTER}"
        )
    integrated = figures["integrated_lufs"]
    if not math.isfinite(integrated) or integrated <= SILENCE_LUFS:
        raise AudioError(
            f"{path}: the audio is silent (integrated loudness -inf: nothing above "
            f"{SILENCE_LUFS:g} LUFS), so it cannot be normalised. Check the export: a muted "
            "track, an empty timeline or the wrong channels? Export it again and drop it in."
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
    try:
        size = path.stat().st_size
        kind = master_format(path) if size else None
    except OSError as exc:
        raise AudioError(
            f"{path}: cannot be read ({exc.strerror or exc}). Check that the file exists and "
            "is readable, then drop it in again."
        ) from None
    if size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes): the copy failed. Copy it again.")
    if kind is None:
        raise AudioError(f"{path}: not a WAV, FLAC or AIFF file (by its content). {_FIX_MASTER}")
    with path.open("rb") as f:
        header = f.read(12)
        if header[:4] in (b"RF64", b"BW64"):
            raise AudioError(
                f"{path}: an RF64 WAV (over 4 GB), which we cannot read. "
                "Export the master as FLAC instead (it is lossless and far smaller)."
            )
    loader = {"wav": WAVE, "flac": FLAC, "aiff": AIFF}[kind]
    try:
        info = loader(path).info
    except (mutagen.MutagenError, ValueError, EOFError, OSError) as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise AudioError(
            f"{path}: a damaged {kind.upper()} file: its header cannot be read ({detail}). "
            f"{_FIX_MASTER}"
        ) from None
    if kind == "wav" and getattr(info, "audio_format", 1) not in WAV_PCM_FORMATS:
        # ADPCM, MP3-in-WAV...: mutagen cannot tell their duration, and no editor exports
        # them for podcast masters by default.
        raise AudioError(
            f"{path}: a compressed WAV (format tag {info.audio_format}), not PCM. Export the "
            "master as a PCM WAV (16 or 24 bit) or as FLAC and drop it in again."
        )
    duration = float(info.length or 0.0)
    channels = int(getattr(info, "channels", 0) or 0)
    sample_rate = int(getattr(info, "sample_rate", 0) or 0)
    bits = getattr(info, "bits_per_sample", None)
    if duration <= 0:
        raise AudioError(
            f"{path}: the {kind.upper()} file holds no audio (0 seconds). {_FIX_MASTER}"
        )
    if channels < 1 or sample_rate < 1:
        raise AudioError(
            f"{path}: the {kind.upper()} header names {channels} channels at {sample_rate} Hz; "
            f"the file is damaged. {_FIX_MASTER}"
        )
    if bits and _is_plain_pcm(kind, header, info):
        # PCM: the header promises duration x rate x frame size bytes; a cut copy holds fewer.
        bytes_per_second = sample_rate * channels * ((int(bits) + 7) // 8)
        if size < duration * bytes_per_second * 0.99:
            held = size / bytes_per_second
            raise AudioError(
                f"{path}: the {kind.upper()} file is cut short: its header promises "
                f"{duration:.1f} s of audio but the file holds about {held:.1f} s (the copy "
                f"or export did not finish). Copy or export it again."
            )
    return MasterInfo(
        path=path,
        format=kind,
        duration=duration,
        channels=channels,
        sample_rate=sample_rate,
        bits_per_sample=int(bits) if bits else None,
    )


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
# Encoding


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def loudnorm_filter(
    measured: Loudness, *, integrated: float, true_peak: float, lra: float | None = None
) -> str:
    """The second-pass loudnorm filter for audio that measured `measured`.

    A measured LRA of 0.0 (a steady tone) is passed as 0.1: loudnorm reads 0 as "not
    measured" and would refuse linear mode. LRA defaults to 11 LU, or the source's own range
    when that is wider, so a wide-range programme keeps linear mode instead of being squeezed.
    """
    lra_target = lra if lra is not None else min(max(DEFAULT_LRA, measured.lra), MAX_LRA)
    return (
        f"loudnorm=I={_fmt(integrated)}:TP={_fmt(max(true_peak, -9.0))}:LRA={_fmt(lra_target)}"
        f":measured_I={_fmt(measured.integrated_lufs)}"
        f":measured_TP={_fmt(min(measured.true_peak_dbtp, 99.0))}"
        f":measured_LRA={_fmt(max(measured.lra, 0.1))}"
        f":measured_thresh={_fmt(measured.threshold)}"
        ":offset=0.00:linear=true:print_format=json"
    )


def encode_command(
    ffmpeg: str,
    src: Path,
    dst: Path,
    *,
    fmt: str | None,
    loudnorm: str,
    channels: int,
    bitrate_kbps: int,
) -> list[str]:
    """The second-pass command: first audio stream -> loudnorm -> 44.1 kHz -> MP3, no tags,
    bit-exact (no version strings), so the same input and settings give the same bytes."""
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-y",
        "-threads", "1", *_input_args(src, fmt),
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1",
        "-filter_threads", "1", "-af", loudnorm,
        "-ar", str(OUTPUT_SAMPLE_RATE), "-ac", str(channels),
        "-c:a", "libmp3lame", "-b:a", f"{bitrate_kbps}k", "-threads", "1",
        "-fflags", "+bitexact", "-flags:a", "+bitexact",
        "-id3v2_version", "0", "-write_id3v1", "0",
        "-f", "mp3", str(dst),
    ]  # fmt: skip


def _check_settings(src: Path, bitrate_kbps: int, channels: int | None) -> None:
    if not 32 <= bitrate_kbps <= 320:
        raise AudioError(f"{src}: MP3 bitrate {bitrate_kbps} kbps: choose 32 to 320 kbps.")
    if channels not in (None, 1, 2):
        raise AudioError(f"{src}: forced channels {channels}: choose 1 (mono) or 2 (stereo).")


def _describe_miss(out: Loudness, aim: float, ceiling: float, tolerance: float) -> list[str]:
    misses = []
    if abs(out.integrated_lufs - aim) > tolerance:
        misses.append(
            f"measures {out.integrated_lufs:.1f} LUFS, {abs(out.integrated_lufs - aim):.1f} LU "
            f"off the {aim:g} LUFS target"
        )
    if out.true_peak_dbtp > ceiling:
        misses.append(f"peaks at {out.true_peak_dbtp:.1f} dBTP, above the {ceiling:g} dBTP limit")
    return misses


def normalise_to_mp3(
    src: Path,
    dst: Path,
    *,
    duration: float,
    source_channels: int,
    fmt: str | None,
    target: LoudnessTarget,
    bitrate_kbps: int = 128,
    channels: int | None = None,
    ffmpeg: str | None = None,
) -> EncodeResult:
    """Two-pass loudnorm of any audio ffmpeg reads into an MP3 at `dst` (written whole or
    not at all). `encode_master` and `reencode_lossy` are the entry points."""
    src, dst = Path(src), Path(dst)
    _check_settings(src, bitrate_kbps, channels)
    exe = ffmpeg or ffmpeg_exe()
    out_channels = channels or min(source_channels, 2)
    goal = target.for_channels(out_channels)
    timeout = ffmpeg_timeout(duration)
    commands: list[tuple[str, ...]] = []

    measure = measure_command(exe, src, fmt)
    commands.append(tuple(measure))
    source_run = run_ffmpeg(
        measure, subject=src, doing="measuring loudness", timeout=timeout, report="ebur128"
    )
    source = loudness_from_report(src, source_run)

    dst.parent.mkdir(parents=True, exist_ok=True)
    aim, tp_aim = goal, target.true_peak - ENCODE_TP_HEADROOM
    temps: list[Path] = []
    best: tuple[tuple[bool, float], Path, str, Loudness] | None = None
    try:
        while True:
            fd, name = tempfile.mkstemp(
                prefix=f".{dst.name}.", suffix=".encoding.mp3", dir=dst.parent
            )
            os.close(fd)
            tmp = Path(name)
            temps.append(tmp)
            command = encode_command(
                exe,
                src,
                tmp,
                fmt=fmt,
                loudnorm=loudnorm_filter(source, integrated=aim, true_peak=tp_aim),
                channels=out_channels,
                bitrate_kbps=bitrate_kbps,
            )
            check = measure_command(exe, tmp, "mp3")
            commands += [tuple(command), tuple(check)]
            run = run_ffmpeg(
                command, subject=src, doing="encoding MP3", timeout=timeout, report="loudnorm"
            )
            mode = parse_loudnorm_json(run.report).get("normalization_type", "unknown")
            check_run = run_ffmpeg(
                check, subject=src, doing="measuring the MP3", timeout=timeout, report="ebur128"
            )
            out = loudness_from_report(src, check_run)
            # The best attempt is kept: the peak ceiling first, then the closest loudness.
            score = (out.true_peak_dbtp > target.true_peak, abs(out.integrated_lufs - goal))
            if best is None or score < best[0]:
                best = (score, tmp, mode, out)
            if not _describe_miss(out, goal, target.true_peak, target.tolerance_lu):
                break
            if len(temps) == MAX_ENCODE_ATTEMPTS:
                break
            # Why it missed decides the next aim: peaks need the overshoot as extra headroom,
            # loudness a correction by the error.
            overshoot = out.true_peak_dbtp - target.true_peak
            if overshoot > 0:
                tp_aim -= overshoot + ENCODE_TP_HEADROOM
            if abs(out.integrated_lufs - goal) > target.tolerance_lu:
                aim += goal - out.integrated_lufs
        _, kept, mode, out = best
        os.chmod(kept, 0o644)  # mkstemp's 0600 would make the published copy private
        os.replace(kept, dst)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    attempts = len(temps)
    warnings = [
        f"{src.name}: the encoded MP3 {miss} after {attempts} attempts; "
        "check the master for clipping or extreme dynamics."
        for miss in _describe_miss(out, goal, target.true_peak, target.tolerance_lu)
    ]
    gain = goal - source.integrated_lufs
    if gain > QUIET_GAIN_WARNING:
        warnings.append(
            f"{src.name}: the source is very quiet ({source.integrated_lufs:.1f} LUFS) and was "
            f"raised {gain:.0f} dB, which makes its noise audible; record or export it louder."
        )
    return EncodeResult(
        source=src,
        output=dst,
        duration=duration,
        input=source,
        measured=out,
        target_lufs=goal,
        true_peak_ceiling=target.true_peak,
        channels=out_channels,
        sample_rate=OUTPUT_SAMPLE_RATE,
        bitrate_kbps=bitrate_kbps,
        mode=mode,
        attempts=attempts,
        commands=tuple(commands),
        warnings=tuple(warnings),
    )


def encode_master(
    src: Path,
    dst: Path,
    *,
    target: LoudnessTarget,
    bitrate_kbps: int = 128,
    channels: int | None = None,
    ffmpeg: str | None = None,
) -> EncodeResult:
    """Encode a WAV/FLAC/AIFF master to a loudness-normalised MP3 at `dst`.

    `channels`: None keeps mono as mono and makes everything else stereo; 1 or 2 forces it.
    The MP3 is measured after encoding; `EncodeResult.measured` is what listeners get.
    """
    info = probe_master(src)
    return normalise_to_mp3(
        info.path,
        dst,
        duration=info.duration,
        source_channels=info.channels,
        fmt=info.format,
        target=target,
        bitrate_kbps=bitrate_kbps,
        channels=channels,
        ffmpeg=ffmpeg,
    )


def reencode_lossy(
    src: Path,
    dst: Path,
    info: AudioInfo,
    *,
    target: LoudnessTarget,
    bitrate_kbps: int = 128,
    channels: int | None = None,
    ffmpeg: str | None = None,
) -> EncodeResult:
    """Decode an MP3/M4A (already checked by `flows.podcast.audio.inspect_audio`, giving `info`) and
    run it through the same two-pass path into a new MP3. A second lossy generation: only
    when the settings ask for it (`normalise_lossy`)."""
    return normalise_to_mp3(
        src,
        dst,
        duration=info.duration,
        source_channels=info.channels,
        fmt=info.format,
        target=target,
        bitrate_kbps=bitrate_kbps,
        channels=channels,
        ffmpeg=ffmpeg,
    )


# --------------------------------------------------------------------------------------------
# Lossy files: tell the producer


def check_lossy(
    path: Path,
    loudness: Loudness,
    target: LoudnessTarget,
    margin_lu: float = 2.0,
    *,
    channels: int = 2,
) -> list[str]:
    """Warnings for an MP3/M4A published as it is: more than `margin_lu` off the integrated
    target, or peaking above the true-peak ceiling. Each says by how much and what to do."""
    name = Path(path).name
    goal = target.for_channels(channels)
    fix = "set KRAFTSAMLING_NORMALISE_LOSSY=true to re-encode, or fix it in the editor"
    warnings = []
    off = loudness.integrated_lufs - goal
    if abs(off) > margin_lu:
        direction = "quieter" if off < 0 else "louder"
        warnings.append(
            f"{name}: {loudness.integrated_lufs:.1f} LUFS, {abs(off):.1f} LU {direction} than "
            f"the {goal:g} LUFS target; {fix}"
        )
    if loudness.true_peak_dbtp > target.true_peak:
        warnings.append(
            f"{name}: true peak {loudness.true_peak_dbtp:.1f} dBTP is above the "
            f"{target.true_peak:g} dBTP ceiling, so it may distort on some players; {fix}"
        )
    return warnings


# --------------------------------------------------------------------------------------------
# The pipeline's one call


@dataclass(frozen=True)
class PreparedAudio:
    """The file to tag and publish, and what the catalog and the run's artifact record."""

    publish_path: Path  # the MP3 to tag (an encode in `work_dir`) or the dropped file itself
    kind: Literal["master", "lossy", "reencoded"]
    loudness: dict[str, float]  # for Episode.loudness
    warnings: tuple[str, ...]
    master: MasterInfo | None = None  # a lossless master to keep in private storage
    encode: EncodeResult | None = None  # what the encode did (commands, modes) for the artifact


def prepare_audio(
    src: Path,
    work_dir: Path,
    settings: Settings,
    *,
    info: AudioInfo | None = None,
    ffmpeg: str | None = None,
) -> PreparedAudio:
    """Decide what to publish for one dropped file.

    - A WAV/FLAC/AIFF master is encoded to `work_dir/<stem>.mp3` (normalised) and returned
      with `master` set: keep `src` privately under `master_key(...)`.
    - An MP3/M4A (`info` from `inspect_audio`, which the caller has already run) is measured;
      off-target files get a warning, or are re-encoded when `settings.normalise_lossy`.
    """
    src = Path(src)
    target = LoudnessTarget.from_settings(settings)
    if master_format(src) is not None:
        out = Path(work_dir) / f"{src.stem}.mp3"
        master = probe_master(src)
        result = normalise_to_mp3(
            src,
            out,
            duration=master.duration,
            source_channels=master.channels,
            fmt=master.format,
            target=target,
            bitrate_kbps=settings.mp3_bitrate_kbps,
            channels=settings.force_channels,
            ffmpeg=ffmpeg,
        )
        return PreparedAudio(
            publish_path=out,
            kind="master",
            loudness=result.loudness_record(),
            warnings=result.warnings,
            master=master,
            encode=result,
        )
    if info is None:
        from flows.podcast.audio import inspect_audio

        info = inspect_audio(src)
    measured = measure_loudness(src, fmt=info.format, ffmpeg=ffmpeg, duration=info.duration)
    warnings = check_lossy(
        src, measured, target, settings.loudness_margin_lu, channels=info.channels
    )
    if warnings and settings.normalise_lossy:
        out = Path(work_dir) / f"{src.stem}.mp3"
        result = reencode_lossy(
            src,
            out,
            info,
            target=target,
            bitrate_kbps=settings.mp3_bitrate_kbps,
            channels=settings.force_channels,
            ffmpeg=ffmpeg,
        )
        return PreparedAudio(
            publish_path=out,
            kind="reencoded",
            loudness=result.loudness_record(),
            warnings=(
                f"{src.name}: re-encoded to MP3 (normalise_lossy is on): "
                f"{measured.integrated_lufs:.1f} -> {result.measured.integrated_lufs:.1f} LUFS",
                *result.warnings,
            ),
            encode=result,
        )
    return PreparedAudio(
        publish_path=src, kind="lossy", loudness=measured.as_record(), warnings=tuple(warnings)
    )
