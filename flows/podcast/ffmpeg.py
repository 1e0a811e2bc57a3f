"""Running the ffmpeg that imageio-ffmpeg ships (no system package needed), safely.

- `ffmpeg_exe()` finds the binary (or IMAGEIO_FFMPEG_EXE); a missing one, or one that cannot
  be started, is an `FfmpegMissing` (an `AudioError`) that says how to reinstall it. It is the
  server's trouble, not the file's: the episode stays in the inbox as a `retry`, and the
  producer reads `waiting_for_ffmpeg` (`flows.podcast.episode.try_prepare`).
- `run_ffmpeg(command, ...)` streams stderr and keeps only its last lines (a 6-hour file does
  not fill memory) plus the filter's report block (loudnorm's JSON, ebur128's summary); a
  timeout proportional to the audio's duration (`ffmpeg_timeout`) stops ffmpeg and anything
  it started; a failure raises `AudioError`, a note in Swedish and English (what ffmpeg was
  doing, the fix, an example) followed once by ffmpeg's own last lines.
- `input_args(path, fmt)` names the demuxer of a format we know: ffmpeg's content sniffing
  can tie (a 1 kHz tone in a WAV or AIFF also probes as MPEG-TS, and the file fails to open).

Measuring (`flows.podcast.loudness`) and encoding (`flows.podcast.encode`) build the commands.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flows.core.errors import AudioError
from flows.core.schema import Text
from flows.podcast.report import file_note

TAIL_LINES = 40  # how much of ffmpeg's stderr is kept
ERROR_LINES = 12  # how much of it an error message quotes
REPORT_LINES = 40  # lines kept after a filter's report marker
MAX_LINE_CHARS = 500  # a longer stderr line is cut when kept
_MAX_PARTIAL_LINE = 64 * 1024  # a line longer than this (no newline) is cut, not buffered
TIMEOUT_BASE_SECONDS = 60.0
TIMEOUT_PER_AUDIO_SECOND = 0.5  # ffmpeg must manage 2x real time; it does 20-100x
INPUT_DEMUXERS = {"wav": "wav", "flac": "flac", "aiff": "aiff", "mp3": "mp3", "m4a": "mov"}
_FIX_FFMPEG: Text = (
    "Be en tekniker installera om imageio-ffmpeg, eller peka IMAGEIO_FFMPEG_EXE på en "
    "fungerande ffmpeg med libmp3lame",
    "Reinstall imageio-ffmpeg, or point IMAGEIO_FFMPEG_EXE at a working ffmpeg with libmp3lame",
)
_REINSTALL = "pip install --force-reinstall imageio-ffmpeg"
# What a run was doing, for its notes: (Swedish, English).
MEASURING: Text = ("mäta ljudnivån", "measuring loudness")
ENCODING: Text = ("koda MP3-filen", "encoding MP3")
CHECKING: Text = ("mäta den kodade MP3-filen", "measuring the MP3")


class FfmpegMissing(AudioError):
    """ffmpeg cannot be found or started: nothing is wrong with the episode's files, so it
    stays in the inbox for the next run (a `retry`) and an operator installs ffmpeg."""


def waiting_for_ffmpeg(name: str, missing: FfmpegMissing) -> str:
    """The note for an episode left in the inbox because ffmpeg is missing: nothing for the
    producer to do; the operator's fix (`missing`'s own note) follows once.

    >>> print(waiting_for_ffmpeg("a.wav", FfmpegMissing("ffmpeg: x")).splitlines()[1])
    a.wav: could not be prepared: ffmpeg is missing on the server, so the files stay in the \
inbox and the next run tries again. Nothing to do for you: an operator must install ffmpeg \
(see below), e.g. `pip install --force-reinstall imageio-ffmpeg`.
    """
    what = (
        "kunde inte förberedas: ffmpeg saknas på servern, så filerna ligger kvar i inkorgen "
        "och nästa körning försöker igen",
        "could not be prepared: ffmpeg is missing on the server, so the files stay in the inbox "
        "and the next run tries again",
    )
    fix = (
        "Du behöver inte göra något: en tekniker måste installera ffmpeg (se nedan)",
        "Nothing to do for you: an operator must install ffmpeg (see below)",
    )
    return file_note(name, what, fix, _REINSTALL, str(missing))


def ffmpeg_exe() -> str:
    """The ffmpeg that imageio-ffmpeg ships (or IMAGEIO_FFMPEG_EXE); FfmpegMissing if missing."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise FfmpegMissing(
            file_note(
                "ffmpeg",
                ("finns inte: paketet imageio-ffmpeg är inte installerat",
                 "is not available: the imageio-ffmpeg package is not installed"),
                ("Be en tekniker installera det", "Install it"),
                "pip install imageio-ffmpeg",
            )
        ) from None  # fmt: skip
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        what = (f"hittades inte ({exc})", f"could not be found ({exc})")
        raise FfmpegMissing(file_note("ffmpeg", what, _FIX_FFMPEG, _REINSTALL)) from None
    # imageio-ffmpeg returns IMAGEIO_FFMPEG_EXE without checking it.
    if os.sep in exe and not os.access(exe, os.X_OK):
        what = ("finns inte eller är inte körbar", "does not exist or is not executable")
        raise FfmpegMissing(file_note(f"ffmpeg {exe}", what, _FIX_FFMPEG, _REINSTALL))
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

    def consume(self, stream: IO[bytes]) -> None:
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


def quote_tail(lines: Sequence[str]) -> str:
    """The last lines of ffmpeg's stderr, indented, for an error message."""
    shown = list(lines)[-ERROR_LINES:]
    return "\n".join(f"    {line}" for line in shown) if shown else "    (nothing)"


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)


def run_ffmpeg(
    command: Sequence[str],
    *,
    subject: Path,
    doing: Text,
    timeout: float,
    report: str | None = None,
) -> FfmpegRun:
    """Run one ffmpeg command (stdin closed, stdout discarded, stderr streamed).

    `doing`: what the run does, (Swedish, English), e.g. `MEASURING`. `report`: the filter
    whose end-of-run report to keep ("loudnorm", "ebur128"). A non-zero exit or a timeout
    raises AudioError naming `subject`, what was being done, the fix, and ffmpeg's own last
    lines; a binary that cannot be started raises FfmpegMissing.
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
        cause = exc.strerror or exc
        what = (
            f"ffmpeg ({command[0]}) gick inte att starta för att {doing[0]}: {cause}",
            f"cannot start ffmpeg ({command[0]}) for {doing[1]}: {cause}",
        )
        raise FfmpegMissing(file_note(subject, what, _FIX_FFMPEG, _REINSTALL)) from None
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
    said = f"ffmpeg said:\n{quote_tail(keeper.tail)}"
    if timed_out.is_set():
        what = (
            f"ffmpeg blev inte klar med att {doing[0]} inom {timeout:.0f} s och stoppades",
            f"ffmpeg did not finish {doing[1]} within {timeout:.0f} s and was stopped",
        )
        fix = (
            "Kontrollera att filen inte ligger på en nätverksenhet som hänger, och kör igen",
            "Check that the file is not on a stalled network drive, then run again",
        )
        raise AudioError(file_note(subject, what, fix, "python -m flows podcast", said))
    if proc.returncode != 0:
        what = (
            f"ffmpeg misslyckades med att {doing[0]} (slutstatus {proc.returncode})",
            f"ffmpeg failed {doing[1]} (exit status {proc.returncode})",
        )
        fix = (
            "Går filen att spela i ett ljudprogram: exportera den igen därifrån och lägg in den",
            "If the file plays in an audio editor, export it again from there and drop it in",
        )
        raise AudioError(file_note(subject, what, fix, "WAV, 24 bit, 48000 Hz", said))
    return FfmpegRun(command, tuple(keeper.tail), tuple(keeper.report))


def input_args(path: Path, fmt: str | None) -> list[str]:
    """`-f DEMUXER -i path`: content sniffing can tie (a 1 kHz tone in an AIFF probes as
    MPEG-TS as well), so a format we know is named."""
    demuxer = INPUT_DEMUXERS.get(fmt or "")
    return [*(["-f", demuxer] if demuxer else []), "-i", str(path)]
