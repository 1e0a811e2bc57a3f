"""Loudness benchmark: encode + normalise time per minute of audio, and memory on long files.

    python tests/bench/bench_loudness.py [--minutes 5] [--rounds 3] [--long-minutes 60]
                                         [--six-hours] [--only speed|memory]

1. Speed: a generated speech-like stereo WAV (44.1 kHz, 16 bit; harmonics with syllable and
   phrase modulation, so it has a loudness range and a podcast-like crest factor) goes
   through `encode_master`, against running by hand, with plain `subprocess.run`:
   a. the very same ffmpeg commands `encode_master` ran (measure, encode, measure the MP3):
      the cost of our wrapper (target: within 10%);
   b. the classic by-hand recipe: loudnorm first pass + second pass, no check of the MP3.
   Rounds alternate between the three; the median counts. Figures are seconds of work per
   minute of audio.
2. Memory: `encode_master` on a short and a long file (FLAC, generated on disk first), each in
   a fresh process that reports its own peak RSS and the peak RSS of its ffmpeg children.
   Target: neither grows with the file's length. `--six-hours` adds a 6-hour file
   (~1.5 GB of FLAC and several minutes per pass).

Not a test: figures vary with the machine and its load; read them, do not assert them.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flows.podcast.encode import encode_master  # noqa: E402
from flows.podcast.ffmpeg import ffmpeg_exe  # noqa: E402
from flows.podcast.loudness import LoudnessTarget  # noqa: E402

# Speech-like: a 140 Hz voice with harmonics, syllables at ~4 Hz, phrases and pauses.
SPEECH = (
    "0.25*(0.30*sin(2*PI*140*t)+0.20*sin(2*PI*280*t)+0.12*sin(2*PI*420*t)+0.06*sin(2*PI*1130*t))"
    "*(0.55+0.45*sin(2*PI*4.1*t))*(0.6+0.4*sin(2*PI*0.23*t))*gt(sin(2*PI*0.07*t)\\,-0.8)"
)


def generate(path: Path, seconds: float, codec: list[str]) -> Path:
    subprocess.run(
        [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"aevalsrc='{SPEECH}':s=44100:d={seconds}:c=stereo",
            *codec, str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def _run_commands(commands: list[list[str]]) -> None:
    for command in commands:
        subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=True)


def classic_recipe(src: Path, dst: Path) -> list[list[str]]:
    """What an operator types: loudnorm's own first pass, then the second pass."""
    exe = ffmpeg_exe()
    first = [exe, "-nostdin", "-hide_banner", "-i", str(src), "-af",
             "loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json", "-f", "null", "-"]  # fmt: skip
    out = subprocess.run(first, capture_output=True, text=True, check=True).stderr
    m = json.loads(out[out.rindex("{") : out.rindex("}") + 1])
    second = [
        exe, "-nostdin", "-hide_banner", "-y", "-i", str(src), "-af",
        f"loudnorm=I=-16:TP=-1.5:LRA=11:measured_I={m['input_i']}:measured_TP={m['input_tp']}"
        f":measured_LRA={m['input_lra']}:measured_thresh={m['input_thresh']}"
        f":offset={m['target_offset']}:linear=true:print_format=json",
        "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "128k", str(dst),
    ]  # fmt: skip
    subprocess.run(second, capture_output=True, check=True)
    return [first, second]


def bench_speed(work: Path, minutes: float, rounds: int) -> None:
    src = generate(work / "speech.wav", minutes * 60, ["-c:a", "pcm_s16le"])
    target = LoudnessTarget()
    result = encode_master(src, work / "warm.mp3", target=target)  # warm the page cache
    same = [list(c) for c in result.commands]
    for command in same:  # by hand, into its own file
        for i, part in enumerate(command):
            if part.endswith(".encoding.mp3"):
                command[i] = str(work / "hand.mp3")
    times: dict[str, list[float]] = {"encode_master": [], "same commands": [], "classic": []}
    for _ in range(rounds):
        start = time.perf_counter()
        encode_master(src, work / "ours.mp3", target=target)
        times["encode_master"].append(time.perf_counter() - start)
        start = time.perf_counter()
        _run_commands(same)
        times["same commands"].append(time.perf_counter() - start)
        start = time.perf_counter()
        classic_recipe(src, work / "classic.mp3")
        times["classic"].append(time.perf_counter() - start)
    ours = statistics.median(times["encode_master"])
    print(f"\nSpeed: {minutes:g} min stereo WAV -> 128 kbps MP3, median of {rounds} rounds")
    print(
        f"  source {result.input.integrated_lufs:.1f} LUFS / {result.input.true_peak_dbtp:.1f} "
        f"dBTP / LRA {result.input.lra:.1f}; MP3 {result.measured.integrated_lufs:.1f} LUFS / "
        f"{result.measured.true_peak_dbtp:.1f} dBTP; loudnorm mode {result.mode}, "
        f"{result.attempts} encode(s)"
    )
    print(f"  {'way':<44} {'s total':>8} {'s per min':>10} {'ours÷this':>9}")
    labels = {
        "encode_master": "encode_master (measure, encode, check MP3)",
        "same commands": "same 3 ffmpeg commands by hand",
        "classic": "classic by hand (loudnorm 2 passes, no check)",
    }
    for key, label in labels.items():
        median = statistics.median(times[key])
        print(f"  {label:<44} {median:8.2f} {median / minutes:10.3f} {ours / median:9.2f}x")
    overhead = ours / statistics.median(times["same commands"]) - 1
    print(f"  wrapper overhead vs the same commands: {overhead:+.1%} (target: within 10%)")


def _child(path: str) -> None:
    """Encode one file; print our peak RSS and the ffmpeg children's peak RSS (MiB)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = encode_master(Path(path), Path(path).with_suffix(".mp3"), target=LoudnessTarget())
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "before_mib": before / 1024,
                "self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "ffmpeg_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "lufs": result.measured.integrated_lufs,
                "tp": result.measured.true_peak_dbtp,
                "mode": result.mode,
            }
        )
    )


def bench_memory(work: Path, lengths: list[float]) -> None:
    print("\nMemory: encode_master in a fresh process per file (peak RSS, MiB)")
    print(
        f"  {'audio':>8} {'FLAC MB':>8} {'python at start':>16} {'python peak':>12} "
        f"{'ffmpeg peak':>12} {'seconds':>8} {'x real time':>12} {'MP3 LUFS/dBTP':>14}"
    )
    for minutes in lengths:
        src = generate(work / f"long-{minutes:g}.flac", minutes * 60, ["-c:a", "flac"])
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(src)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"  {minutes:>6g} m {src.stat().st_size / 1e6:8.0f} {r['before_mib']:16.1f} "
            f"{r['self_mib']:12.1f} {r['ffmpeg_mib']:12.1f} {r['seconds']:8.1f} "
            f"{minutes * 60 / r['seconds']:12.0f} {r['lufs']:7.1f}/{r['tp']:.1f}"
        )
        src.unlink()
        src.with_suffix(".mp3").unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=60.0)
    parser.add_argument("--six-hours", action="store_true")
    parser.add_argument("--only", choices=("speed", "memory"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-loudness-") as tmp:
        work = Path(tmp)
        if args.only in (None, "speed"):
            bench_speed(work, args.minutes, args.rounds)
        if args.only in (None, "memory"):
            lengths = [1.0, args.long_minutes] + ([360.0] if args.six_hours else [])
            bench_memory(work, lengths)


if __name__ == "__main__":
    main()
