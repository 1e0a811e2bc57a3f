"""Every benchmark in one table: each figure beside its peer, measured in the same run.

    python tests/bench/run_all.py [--quick] [--only NAME ...] [--markdown]

NAME is one of: newsletter, feed, tag, storage, loudness, load, commands, podcast (the
default runs all, in that order; podcast last because it leaves Prefect's temporary server
running in this process). `--quick` takes smaller inputs and fewer runs (about 3 minutes
on 2 cores); the full run takes about 10-15. The table goes to stdout, the benches' own
chatter and progress to stderr. The exit status is 1 when a benchmark failed to run (its row
says ERROR), else 0; a missed target is a verdict in the table, not a failure.

Peers: feed build vs feedgen and a string-join floor (bench_feed.py); the first tag of a
60 MB MP3 vs `cat` of the same file (bench_tag.py); S3 upload throughput vs plain boto3
to the same moto server, peak memory vs file size (bench_storage.py);
newsletter build split by stage (bench_newsletter.py); no-op podcast runs vs reading the
catalog alone (bench_podcast.py); encode+normalise vs the same ffmpeg commands by hand
(bench_loudness.py, run as a subprocess and read from its output); the load scenarios at
10x the size (load.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _path in (str(HERE), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# Prefect reads its settings once, when first imported (here by whichever bench imports the
# flows first), so the podcast bench's start-up timeout must be in the environment already.
# A busy 2-core machine can take longer than Prefect's default 20 s to start its server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from table import Row, factor, format_table, machine_line, verdict  # noqa: E402


def _newsletter(quick: bool) -> list[Row]:
    import bench_newsletter

    return bench_newsletter.run(quick)


def _feed(quick: bool) -> list[Row]:
    import bench_feed

    return bench_feed.run(quick)


def _tag(quick: bool) -> list[Row]:
    import bench_tag

    return bench_tag.run(quick)


def _storage(quick: bool) -> list[Row]:
    import bench_storage

    return bench_storage.run(quick)


def _load(quick: bool) -> list[Row]:
    import load

    return load.run(quick)


def _commands(quick: bool) -> list[Row]:
    import bench_commands

    return bench_commands.run(quick)


def _podcast(quick: bool) -> list[Row]:
    import bench_podcast

    return bench_podcast.run(quick)


# bench_loudness.py only prints, so it runs as a subprocess and these read its lines.
_SPEED = re.compile(
    r"^\s+(encode_master|same 3 ffmpeg|classic by hand)\D.*?\s([\d.]+)\s+([\d.]+)\s+[\d.]+x\s*$"
)
_MEMORY = re.compile(r"^\s+([\d.]+) m\s+\d+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+(\d+)\s")


def _loudness(quick: bool) -> list[Row]:
    # The full run uses 3 and 30 minutes (not the bench's own 5 and 60) to stay near 15 min.
    minutes, long_minutes, rounds = (1, 3, 2) if quick else (3, 30, 3)
    command = [sys.executable, str(HERE / "bench_loudness.py"), "--minutes", str(minutes),
               "--rounds", str(rounds), "--long-minutes", str(long_minutes)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    print(done.stdout, file=sys.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"bench_loudness.py failed:\n{done.stderr[-2000:]}")
    speed = {m[1]: float(m[3]) for line in done.stdout.splitlines() if (m := _SPEED.match(line))}
    memory = [m.groups() for line in done.stdout.splitlines() if (m := _MEMORY.match(line))]
    if len(speed) != 3 or len(memory) < 2:
        raise RuntimeError(f"could not read bench_loudness.py's output:\n{done.stdout[-2000:]}")
    name = f"loudness ({minutes:g} min stereo WAV)"
    ours, same, classic = speed["encode_master"], speed["same 3 ffmpeg"], speed["classic by hand"]
    rows = [
        Row(
            name,
            "encode_master vs the same ffmpeg commands by hand (s per audio minute)",
            f"{ours:.3f} s",
            f"{same:.3f} s by hand",
            factor(ours / same),
            "within 10%",
            verdict(ours / same <= 1.10),
        ),
        Row(
            name,
            "encode_master vs classic 2-pass loudnorm, no MP3 check (s per audio minute)",
            f"{ours:.3f} s",
            f"{classic:.3f} s classic",
            factor(ours / classic),
        ),
    ]
    (short_m, short_py, short_ff, _), (long_m, long_py, long_ff, long_rt) = memory[0], memory[-1]
    name = f"loudness memory ({float(long_m):g} min vs {float(short_m):g} min FLAC)"
    for label, big, small in (("python", long_py, short_py), ("ffmpeg", long_ff, short_ff)):
        big_f, small_f = float(big), float(small)
        rows.append(
            Row(
                name,
                f"{label} peak RSS during encode_master",
                f"{big_f:.1f} MiB",
                f"{small_f:.1f} MiB ({float(short_m):g} min)",
                factor(big_f / small_f),
                f"flat (file {float(long_m) / float(short_m):g}x)",
                verdict(big_f <= small_f * 1.15 + 4),
            )
        )
    rows.append(Row(name, "encode speed, long file", f"{long_rt}x real time"))
    return rows


BENCHES: dict[str, Callable[[bool], list[Row]]] = {
    "newsletter": _newsletter,
    "feed": _feed,
    "tag": _tag,
    "storage": _storage,
    "loudness": _loudness,
    "load": _load,
    "commands": _commands,
    "podcast": _podcast,
}


def run(names: list[str], quick: bool) -> tuple[list[Row], bool]:
    """Run the named benches in order; (rows, all ran). A bench that fails gives an ERROR row."""
    rows: list[Row] = []
    ok = True
    for name in names:
        started = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the table alone goes to stdout
                rows += BENCHES[name](quick)
        except Exception as exc:  # one broken bench must not hide the others' figures
            traceback.print_exc(file=sys.stderr)
            rows.append(Row(name, "did not run", "-", "-", "-", "-", f"ERROR: {exc}"[:120]))
            ok = False
        print(f"== {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows, ok


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmarks named in `argv` (default: sys.argv) and print the table.

    `python -m flows bench` calls this with `prog="python -m flows bench"`."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, ~3 minutes")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHES),
        metavar="NAME",
        help=f"run only these: {', '.join(BENCHES)}",
    )
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    names = [n for n in BENCHES if n in args.only] if args.only else list(BENCHES)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows, ok = run(names, args.quick)
    minutes = (time.perf_counter() - started) / 60
    mode = "quick" if args.quick else "full"
    header = (
        f"Machine: {machine_line()}. {mode} run, {minutes:.1f} min; "
        f"load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end."
    )
    print(header + ("\n" if args.markdown else ""))
    print(format_table(rows, markdown=args.markdown))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
