"""Regenerate the podcast's demo assets: the cover art and the three demo episodes' audio.

    python demo/make_assets.py            # cover + audio + transcript
    python demo/make_assets.py --cover    # only episodes/cover.jpg

Writes:
- episodes/cover.jpg: the show's cover art, 1400x1400 RGB JPEG, drawn with Pillow and its
  bundled font (so every machine draws the same picture);
- demo/episodes/<slug>.mp3|.m4a: short Swedish speech from espeak-ng (voice "sv"), a small
  chime in front, loudness-normalised and encoded with the ffmpeg that imageio-ffmpeg ships;
- demo/episodes/<slug>.vtt for the episode that ships a transcript, timed from the speech.

The sidecars demo/episodes/<slug>.md are written by hand; this script only checks that their
chapter marks fall inside the audio it made, and prints where each sentence starts.

Needs espeak-ng for the audio (`apt-get install -y espeak-ng`); only this script uses it,
never the flows or the tests. The output is byte-for-byte stable for the same espeak-ng and
ffmpeg versions (bit-exact encoding, no timestamps or encoder tags).
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import struct
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import yaml
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
COVER = ROOT / "episodes" / "cover.jpg"
EPISODES = ROOT / "demo" / "episodes"

RATE = 22050  # espeak-ng's own rate; ffmpeg resamples to 44.1 kHz
PAUSE = 0.45  # seconds of silence between sentences
VOICE, SPEED = "sv", 165


@dataclass(frozen=True)
class DemoEpisode:
    slug: str
    extension: str  # ".mp3" or ".m4a"
    sentences: tuple[str, ...]
    transcript: bool = False


DEMO_EPISODES = (
    DemoEpisode(
        "ai-i-kommunens-vardag",
        ".mp3",
        (
            "Hej och välkommen till Digitalsamtal.",
            "I dag: AI i kommunens vardag.",
            "Tack för att du lyssnade!",
        ),
        transcript=True,
    ),
    DemoEpisode(
        "foreningar-som-provar-ai",
        ".m4a",
        (
            "Välkommen till Digitalsamtal.",
            "Hur kan en liten förening använda AI?",
            "Det pratar vi om i dag.",
        ),
    ),
    DemoEpisode(
        "julspecial-2026",
        ".mp3",
        (
            "Ett extra avsnitt av Digitalsamtal.",
            "Vi blickar tillbaka på året.",
            "God jul och gott nytt år!",
        ),
    ),
)


# ---------------------------------------------------------------------------------------------
# Cover art

SIZE = 1400
SCALE = 2  # draw large, then shrink: smooth edges without an anti-aliasing library
INK = (20, 52, 64)  # deep blue-green
CREAM = (246, 239, 226)
ORANGE = (240, 150, 72)
TEAL = (70, 168, 160)


def _font(size: int, weight: int = 400) -> ImageFont.FreeTypeFont:
    """Geist (OFL), shipped inside the prefect package we depend on; else DejaVu Sans.

    Pillow's own bundled font has no "ö", so it is not an option for "Kraftsamling för AI".
    """
    import prefect

    candidates = sorted(Path(prefect.__file__).parent.glob("server/ui*/fonts/Geist-Variable*"))
    if candidates:
        font = ImageFont.truetype(str(candidates[0]), size * SCALE)
        font.set_variation_by_axes([weight])
        return font
    dejavu = Path("/usr/share/fonts/truetype/dejavu")  # Debian: fonts-dejavu-core
    name = "DejaVuSans-Bold.ttf" if weight >= 600 else "DejaVuSans.ttf"
    if (dejavu / name).exists():
        return ImageFont.truetype(str(dejavu / name), size * SCALE)
    raise SystemExit("no font with Swedish letters found: apt-get install -y fonts-dejavu-core")


def draw_cover() -> Image.Image:
    """The show's cover: two speech bubbles with a sound wave, the title and the sender."""
    s = SCALE
    img = Image.new("RGB", (SIZE * s, SIZE * s), INK)
    d = ImageDraw.Draw(img)
    # two overlapping speech bubbles: a conversation
    d.rounded_rectangle((170 * s, 190 * s, 880 * s, 640 * s), radius=110 * s, fill=ORANGE)
    d.polygon([(300 * s, 620 * s), (260 * s, 760 * s), (430 * s, 630 * s)], fill=ORANGE)
    d.rounded_rectangle((560 * s, 400 * s, 1230 * s, 800 * s), radius=110 * s, fill=TEAL)
    d.polygon([(1090 * s, 780 * s), (1140 * s, 910 * s), (960 * s, 790 * s)], fill=TEAL)
    # a sound wave across the teal bubble
    heights = (40, 90, 150, 210, 130, 250, 170, 100, 200, 120, 60)
    for i, h in enumerate(heights):
        x = 640 + i * 52
        d.rounded_rectangle(
            ((x) * s, (600 - h / 2) * s, (x + 26) * s, (600 + h / 2) * s), radius=13 * s, fill=CREAM
        )
    d.text((700 * s, 1010 * s), "Digitalsamtal", font=_font(160, 700), fill=CREAM, anchor="mm")
    d.line((420 * s, 1115 * s, 980 * s, 1115 * s), fill=ORANGE, width=8 * s)
    d.text((700 * s, 1200 * s), "Kraftsamling för AI", font=_font(72, 500), fill=CREAM, anchor="mm")
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def write_cover(path: Path = COVER) -> int:
    buf = io.BytesIO()
    draw_cover().save(buf, "JPEG", quality=88, optimize=True, progressive=False)
    path.write_bytes(buf.getvalue())
    return len(buf.getvalue())


# ---------------------------------------------------------------------------------------------
# Audio


def _silence(seconds: float) -> bytes:
    return b"\0\0" * round(seconds * RATE)


def chime(seconds: float = 0.9) -> bytes:
    """Two soft bell notes (E5 then A5) with a quick decay: the show's little signature."""
    frames = []
    for n in range(round(seconds * RATE)):
        t = n / RATE
        value = 0.0
        for start, freq in ((0.0, 659.25), (0.22, 880.0)):
            if t >= start:
                u = t - start
                value += math.sin(2 * math.pi * freq * u) * math.exp(-5 * u) * 0.25
        frames.append(struct.pack("<h", round(max(-1.0, min(1.0, value)) * 32767)))
    return b"".join(frames)


def speak(text: str, workdir: Path) -> bytes:
    """16-bit mono PCM at RATE of one sentence, from espeak-ng."""
    out = workdir / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(SPEED), "-w", str(out), text], check=True)
    with wave.open(str(out)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"espeak-ng gave an unexpected format for {text!r}")
        return w.readframes(w.getnframes())


def assemble(sentences: tuple[str, ...], workdir: Path) -> tuple[bytes, list[tuple[float, float]]]:
    """PCM of chime + sentences with pauses, and (start, end) seconds of each sentence."""
    pcm = chime() + _silence(0.2)
    times = []
    for text in sentences:
        speech = speak(text, workdir)
        start = len(pcm) / 2 / RATE
        pcm += speech
        times.append((start, len(pcm) / 2 / RATE))
        pcm += _silence(PAUSE)
    return pcm + _silence(0.3), times


def encode(pcm: bytes, dst: Path, workdir: Path) -> None:
    """Encode with bit-exact flags and no metadata, so reruns give the same bytes."""
    src = workdir / "episode.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    codec = (
        ["-c:a", "libmp3lame", "-b:a", "64k", "-id3v2_version", "0"]
        if dst.suffix == ".mp3"
        else ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"]
    )
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(src),
            "-af",
            "loudnorm=I=-16:TP=-1.5:LRA=11",
            "-ar",
            "44100",
            "-ac",
            "1",
            "-map_metadata",
            "-1",
            "-fflags",
            "+bitexact",
            "-flags:a",
            "+bitexact",
            *codec,
            str(dst),
        ],
        check=True,
    )


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def webvtt(sentences: tuple[str, ...], times: list[tuple[float, float]]) -> str:
    cues = [
        f"{i}\n{_vtt_time(a)} --> {_vtt_time(b)}\n{text}\n"
        for i, (text, (a, b)) in enumerate(zip(sentences, times, strict=True), start=1)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def _chapter_seconds(value: str) -> int:
    h, m, s = (int(p) for p in str(value).split(":"))
    return h * 3600 + m * 60 + s


def check_sidecar(episode: DemoEpisode, duration: float) -> list[str]:
    """Problems with the hand-written sidecar's chapters against the new audio."""
    sidecar = EPISODES / f"{episode.slug}.md"
    if not sidecar.exists():
        return [f"{sidecar.name}: missing"]
    front = sidecar.read_text(encoding="utf-8").split("---")[1]
    chapters = yaml.safe_load(front).get("chapters") or []
    return [
        f"{sidecar.name}: chapter {c['title']!r} starts at {c['start']}, after the audio ends"
        for c in chapters
        if _chapter_seconds(c["start"]) >= duration
    ]


def make_audio() -> list[str]:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: apt-get install -y espeak-ng")
    EPISODES.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for episode in DEMO_EPISODES:
            pcm, times = assemble(episode.sentences, workdir)
            dst = EPISODES / f"{episode.slug}{episode.extension}"
            encode(pcm, dst, workdir)
            duration = len(pcm) / 2 / RATE
            if episode.transcript:
                vtt = EPISODES / f"{episode.slug}.vtt"
                vtt.write_text(webvtt(episode.sentences, times), encoding="utf-8")
            starts = ", ".join(f"{a:.2f}" for a, _ in times)
            print(
                f"{dst.name}: {dst.stat().st_size} bytes, {duration:.2f} s; sentences at {starts}"
            )
            problems += check_sidecar(episode, duration)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cover", action="store_true", help="only draw the cover art")
    args = parser.parse_args(argv)
    print(f"{COVER.relative_to(ROOT)}: {write_cover()} bytes, {SIZE}x{SIZE}")
    if args.cover:
        return 0
    problems = make_audio()
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
