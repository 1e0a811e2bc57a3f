"""Benchmark: the first tag of a 60 MB MP3, beside `cat` of the same file in the same run.

    python tests/bench/bench_tag.py [--runs 7] [--mb 60]

The file is a 3-minute tone encoded by ffmpeg, its MPEG frames repeated to 60 MB (about an
hour at 128 kbit/s). Runs alternate: `cat src > out` as a shell runs it (a new process;
coreutils copies in the kernel), then `tag_audio(src, dst)` into a new destination, so each
is a first tag of the file (the old tags dropped, the audio copied behind the new ones).
Both are wall times on the same folder; the ratio is the median of each pair's ratio, so a
machine that slows down during the run moves both. Target (issue 23): at most 1.5x `cat`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from table import Row, factor, verdict  # noqa: E402

TARGET = 1.5  # tag / cat, at most


def long_mp3(folder: Path, size: int) -> Path:
    """An MP3 of at least `size` bytes: a short encode, its frames repeated."""
    import imageio_ffmpeg

    from flows.podcast.audio import mp3_audio_range

    short, long = folder / "short.mp3", folder / "long.mp3"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"),
            *("-i", "sine=frequency=440:duration=180", "-ac", "2", "-b:a", "128k", str(short)),
        ],
        check=True,
    )
    start, end = mp3_audio_range(short)
    data = short.read_bytes()
    with long.open("wb") as out:
        out.write(data[:start])  # ffmpeg's own ID3 tag, which tagging drops
        while out.tell() < size:
            out.write(data[start:end])
    return long


def measure(runs: int, megabytes: int) -> dict[str, float]:
    """Median wall seconds of cat and of the first tag, and the median pair ratio."""
    from flows.podcast.audio import inspect_audio
    from flows.podcast.tags import EpisodeTags, tag_audio

    tags = EpisodeTags(title="Avsnitt 1", artist="Kraftsamling", album="Digitalsamtal",
                       description="Ett samtal om **öppna data**.")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-tag-") as tmp:
        folder = Path(tmp)
        src = long_mp3(folder, megabytes * 1_000_000)
        info = inspect_audio(src)
        out, dst = folder / "cat.out", folder / "tagged.mp3"

        def cat() -> None:
            with out.open("wb") as target:
                subprocess.run(["cat", str(src)], stdout=target, check=True)

        def tag() -> None:
            tag_audio(src, dst, tags, info)

        cat(), tag()  # warm-up: the source in the page cache, imports
        cats, tagged = [], []
        for _ in range(runs):
            for action, times, result in ((cat, cats, out), (tag, tagged, dst)):
                result.unlink()
                started = time.perf_counter()
                action()
                times.append(time.perf_counter() - started)
        size = src.stat().st_size
    return {
        "cat": statistics.median(cats),
        "tag": statistics.median(tagged),
        "ratio": statistics.median(t / c for t, c in zip(tagged, cats, strict=True)),
        "mb": size / 1e6,
    }


def run(quick: bool = False) -> list[Row]:
    """The table's row: the first tag beside cat."""
    r = measure(3 if quick else 7, 60)
    return [
        Row(
            f"tag ({r['mb']:.1f} MB MP3)",
            "tag_audio, first tag of the file (wall clock)",
            f"{r['tag'] * 1000:.1f} ms",
            f"{r['cat'] * 1000:.1f} ms cat",
            factor(r["ratio"]),
            f"<= {TARGET:g}x cat",
            verdict(r["ratio"] <= TARGET),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mb", type=int, default=60, help="size of the MP3 in MB")
    args = parser.parse_args()
    r = measure(args.runs, args.mb)
    print(
        f"{r['mb']:.1f} MB MP3, median of {args.runs} alternating runs (wall clock): "
        f"cat {r['cat'] * 1000:.1f} ms, first tag {r['tag'] * 1000:.1f} ms, "
        f"tag/cat {r['ratio']:.2f}x (target <= {TARGET:g}x)"
    )


if __name__ == "__main__":
    main()
