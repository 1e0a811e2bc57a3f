"""Turn lossless masters (WAV/FLAC/AIFF), and lossy files when asked, into loudness-normalised MP3.

1. `EncodeResult`: what an encode did and what the MP3 measures.
2. Encoding: `encode_master(src, dst, target=...)` is a two-pass loudnorm:
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
   Output is deterministic: bit-exact flags, no metadata, no ID3 tag (`flows.podcast.tags`
   writes the tags), one thread; the same input and settings give the same bytes.
   `reencode_lossy` runs the same two-pass path on an MP3/M4A when the settings ask for it.
3. `prepare_audio(...)`: the one call the podcast pipeline makes per dropped file.

Measuring is `flows.podcast.loudness`; running ffmpeg is `flows.podcast.ffmpeg`.

Concurrency: each encode uses `-threads 1 -filter_threads 1`; ffmpeg's pipeline threads keep
it to about one core. Bound the number of encodes at once with `max_parallel_encodes()`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flows.core.errors import AudioError
from flows.core.fsio import atomic_replace
from flows.core.schema import Text
from flows.podcast.ffmpeg import (
    CHECKING,
    ENCODING,
    MEASURING,
    ffmpeg_exe,
    ffmpeg_timeout,
    input_args,
    run_ffmpeg,
)
from flows.podcast.loudness import (
    Loudness,
    LoudnessTarget,
    MasterInfo,
    check_lossy,
    loudness_from_report,
    master_format,
    measure_command,
    measure_loudness,
    parse_loudnorm_json,
    probe_master,
)
from flows.podcast.report import file_note

if TYPE_CHECKING:
    from flows.core.settings import Settings
    from flows.podcast.audio import AudioInfo

OUTPUT_SAMPLE_RATE = 44_100  # loudnorm works at 192 kHz; the MP3 is always resampled to this
ENCODE_TP_HEADROOM = 0.5  # pass 2 aims this far below the true-peak ceiling (MP3 overshoot)
MAX_ENCODE_ATTEMPTS = 3
DEFAULT_LRA = 11.0  # loudnorm's loudness-range target; raised to the source's own LRA
MAX_LRA = 50.0  # loudnorm's upper limit for LRA
QUIET_GAIN_WARNING = 24.0  # dB of gain above which the source's noise floor becomes audible


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
        "-threads", "1", *input_args(src, fmt),
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1",
        "-filter_threads", "1", "-af", loudnorm,
        "-ar", str(OUTPUT_SAMPLE_RATE), "-ac", str(channels),
        "-c:a", "libmp3lame", "-b:a", f"{bitrate_kbps}k", "-threads", "1",
        "-fflags", "+bitexact", "-flags:a", "+bitexact",
        "-id3v2_version", "0", "-write_id3v1", "0",
        "-f", "mp3", str(dst),
    ]  # fmt: skip


def _check_settings(src: Path, bitrate_kbps: int, channels: int | None) -> None:
    """The encode settings a technician chose (mp3_bitrate_kbps, force_channels)."""
    if not 32 <= bitrate_kbps <= 320:
        what = (f"MP3-bithastigheten {bitrate_kbps} kbit/s", f"MP3 bitrate {bitrate_kbps} kbps")
        fix = ("Välj 32 till 320 kbit/s", "Choose 32 to 320 kbps")
        raise AudioError(file_note(src, what, fix, "KRAFTSAMLING_MP3_BITRATE_KBPS=128"))
    if channels not in (None, 1, 2):
        what = (f"tvingade kanaler {channels}", f"forced channels {channels}")
        fix = ("Välj 1 (mono) eller 2 (stereo)", "Choose 1 (mono) or 2 (stereo)")
        raise AudioError(file_note(src, what, fix, "KRAFTSAMLING_FORCE_CHANNELS=2"))


def _describe_miss(out: Loudness, aim: float, ceiling: float, tolerance: float) -> list[Text]:
    """How an encoded MP3 missed the target, (Swedish, English) per miss."""
    misses = []
    off = abs(out.integrated_lufs - aim)
    if off > tolerance:
        misses.append(
            (
                f"mäter {out.integrated_lufs:.1f} LUFS, {off:.1f} LU från målet {aim:g} LUFS",
                f"measures {out.integrated_lufs:.1f} LUFS, {off:.1f} LU off the {aim:g} LUFS "
                "target",
            )
        )
    if out.true_peak_dbtp > ceiling:
        misses.append(
            (
                f"toppar på {out.true_peak_dbtp:.1f} dBTP, över gränsen {ceiling:g} dBTP",
                f"peaks at {out.true_peak_dbtp:.1f} dBTP, above the {ceiling:g} dBTP limit",
            )
        )
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
    not at all: ffmpeg writes dot-named files beside it, and the best one is published with
    `flows.core.fsio.atomic_replace`). `encode_master` and `reencode_lossy` are the entry
    points."""
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
        measure, subject=src, doing=MEASURING, timeout=timeout, report="ebur128"
    )
    source = loudness_from_report(src, source_run)

    dst.parent.mkdir(parents=True, exist_ok=True)
    encode = _Encode(exe, src, fmt, source, out_channels, bitrate_kbps, timeout, commands)
    mode, out, attempts = _encode_best(encode, dst, goal, target)
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
        warnings=tuple(_encode_warnings(src, source, out, goal, target, attempts)),
    )


@dataclass(frozen=True)
class _Encode:
    """What every encode attempt of one source shares; `commands` collects what ran."""

    exe: str
    src: Path
    fmt: str | None
    source: Loudness
    channels: int
    bitrate_kbps: int
    timeout: float
    commands: list[tuple[str, ...]]

    def attempt(self, tmp: Path, aim: float, tp_aim: float) -> tuple[str, Loudness]:
        """Encode into `tmp` aiming at `aim` LUFS and `tp_aim` dBTP: (loudnorm mode, measured)."""
        command = encode_command(
            self.exe,
            self.src,
            tmp,
            fmt=self.fmt,
            loudnorm=loudnorm_filter(self.source, integrated=aim, true_peak=tp_aim),
            channels=self.channels,
            bitrate_kbps=self.bitrate_kbps,
        )
        check = measure_command(self.exe, tmp, "mp3")
        self.commands.extend([tuple(command), tuple(check)])
        run = run_ffmpeg(
            command, subject=self.src, doing=ENCODING, timeout=self.timeout, report="loudnorm"
        )
        mode = parse_loudnorm_json(run.report).get("normalization_type", "unknown")
        check_run = run_ffmpeg(
            check,
            subject=self.src,
            doing=CHECKING,
            timeout=self.timeout,
            report="ebur128",
        )
        return mode, loudness_from_report(self.src, check_run)


def _encode_best(
    encode: _Encode, dst: Path, goal: float, target: LoudnessTarget
) -> tuple[str, Loudness, int]:
    """Encode until on target (at most `MAX_ENCODE_ATTEMPTS`), publish the best attempt at
    `dst` and remove the others: (its loudnorm mode, its loudness, the attempts made)."""
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
            mode, out = encode.attempt(tmp, aim, tp_aim)
            # The best attempt is kept: the peak ceiling first, then the closest loudness.
            score = (out.true_peak_dbtp > target.true_peak, abs(out.integrated_lufs - goal))
            if best is None or score < best[0]:
                best = (score, tmp, mode, out)
            if not _describe_miss(out, goal, target.true_peak, target.tolerance_lu):
                break
            if len(temps) == MAX_ENCODE_ATTEMPTS:
                break
            aim, tp_aim = _next_aim(out, goal, target, aim, tp_aim)
        _, kept, mode, out = best
        atomic_replace(kept, dst)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return mode, out, len(temps)


def _next_aim(
    out: Loudness, goal: float, target: LoudnessTarget, aim: float, tp_aim: float
) -> tuple[float, float]:
    """Why an attempt missed decides the next aim: peaks need the overshoot as extra
    headroom, loudness a correction by the error."""
    overshoot = out.true_peak_dbtp - target.true_peak
    if overshoot > 0:
        tp_aim -= overshoot + ENCODE_TP_HEADROOM
    if abs(out.integrated_lufs - goal) > target.tolerance_lu:
        aim += goal - out.integrated_lufs
    return aim, tp_aim


def _encode_warnings(
    src: Path, source: Loudness, out: Loudness, goal: float, target: LoudnessTarget, attempts: int
) -> list[str]:
    """An encode still off target after every attempt, and a very quiet source."""
    warnings = [
        file_note(
            src.name,
            (f"den kodade MP3-filen {sv} efter {attempts} försök",
             f"the encoded MP3 {en} after {attempts} attempts"),
            ("Kontrollera mastern: är den överstyrd (klipper) eller har den mycket stor "
             "dynamik? Exportera den igen", "Check the master for clipping or extreme "
             "dynamics, and export it again"),
            "WAV, 24 bit, 48000 Hz, -1 dBTP",
        )
        for sv, en in _describe_miss(out, goal, target.true_peak, target.tolerance_lu)
    ]  # fmt: skip
    gain = goal - source.integrated_lufs
    if gain > QUIET_GAIN_WARNING:
        level = source.integrated_lufs
        warnings.append(
            file_note(
                src.name,
                (f"källan är mycket tyst ({level:.1f} LUFS) och höjdes {gain:.0f} dB, så "
                 "bruset i den hörs", f"the source is very quiet ({level:.1f} LUFS) and was "
                 f"raised {gain:.0f} dB, which makes its noise audible"),
                ("Spela in eller exportera den starkare", "Record or export it louder"),
                f"{src.stem}.wav, -16 LUFS",
            )
        )  # fmt: skip
    return warnings


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


def _reencoded_note(src: Path, measured: Loudness, result: EncodeResult) -> str:
    """The note on an MP3/M4A that was off target and re-encoded (`normalise_lossy`)."""
    before, after = measured.integrated_lufs, result.measured.integrated_lufs
    return file_note(
        src.name,
        (f"kodades om till MP3 (normalise_lossy är på): {before:.1f} -> {after:.1f} LUFS; "
         "varje omkodning kostar lite ljudkvalitet",
         f"re-encoded to MP3 (normalise_lossy is on): {before:.1f} -> {after:.1f} LUFS; "
         "each re-encode costs some sound quality"),
        ("Lägg hellre in mastern (WAV/FLAC) nästa gång",
         "Drop the master (WAV/FLAC) next time instead"),
        f"{src.stem}.wav",
    )  # fmt: skip


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
            warnings=(_reencoded_note(src, measured, result), *result.warnings),
            encode=result,
        )
    return PreparedAudio(
        publish_path=src, kind="lossy", loudness=measured.as_record(), warnings=tuple(warnings)
    )
