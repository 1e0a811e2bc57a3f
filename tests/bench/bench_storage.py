"""Storage benchmark: peak memory of put_file by file size, and S3 upload throughput.

    python tests/bench/bench_storage.py [--files 10] [--mb 50] [--rounds 3]
                                        [--only memory|throughput]

1. Memory: each upload runs in a fresh subprocess that reports its peak RSS (VmHWM) and
   the peak of Python allocations (tracemalloc) for 10, 100 and 300 MB files, for
   LocalStorage, S3Storage and plain boto3. Target: the peak does not grow with file size
   (S3 uploads hold at most `max_concurrency` parts in flight, so the peak levels off once
   a file has that many parts).
2. Throughput: S3Storage.put_file versus plain `boto3 upload_file` (boto3's default transfer
   settings) of the same files to the same moto server, alternating, median of `--rounds`.
   Target: S3Storage reaches at least 90% of boto3's MB/s.

The moto server runs in its own process on 127.0.0.1 so its memory and CPU are not counted
as ours. Not a test: figures vary with the machine; read them, do not assert them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import Row, factor, mib, verdict  # noqa: E402

MB = 1_000_000
BUCKET = "bench"

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_name, None)


def _make_file(path: Path, size: int) -> Path:
    """Incompressible content written in chunks (the bench itself must not hold it)."""
    with path.open("wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MB))
            handle.write(chunk)
            left -= len(chunk)
    return path


def _plain_client(endpoint: str):
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _upload(kind: str, endpoint: str, path: Path, key: str, local_root: Path | None) -> None:
    from flows.core.s3 import S3Storage
    from flows.core.storage import CACHE_LONG, LocalStorage

    if kind == "boto3":
        _plain_client(endpoint).upload_file(
            str(path), BUCKET, key, ExtraArgs={"ContentType": "audio/mpeg"}
        )
        return
    store = (
        LocalStorage(local_root)
        if kind == "local"
        else S3Storage(BUCKET, "", endpoint_url=endpoint, region="us-east-1")
    )
    store.put_file(key, path, content_type="audio/mpeg", cache_control=CACHE_LONG, public=True)


# --- child processes ----------------------------------------------------------------------


def child_server() -> None:
    """Run moto on a free loopback port, print its URL, stop when stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    sys.stdin.read()
    server.stop()


def child_upload(kind: str, endpoint: str, path: str, local_root: str) -> None:
    """One upload in a fresh process; prints peak RSS and peak traced allocations (bytes)."""
    import boto3  # noqa: F401 - imported before measuring, as in a real run

    import flows.core.s3
    import flows.core.storage  # noqa: F401

    tracemalloc.start()
    if kind != "baseline":
        _upload(kind, endpoint, Path(path), f"mem/{kind}/{Path(path).name}", Path(local_root))
    _, traced_peak = tracemalloc.get_traced_memory()
    print(json.dumps({"rss": _peak_rss(), "traced": traced_peak}))


def _peak_rss() -> int:
    """Peak resident memory of this process in bytes. VmHWM belongs to this process's own
    memory map; ru_maxrss can carry the parent's peak over a fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# --- the bench ---------------------------------------------------------------------------


def _run_child(*args: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reset(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=30).close()
    _plain_client(endpoint).create_bucket(Bucket=BUCKET)


KINDS = ("local", "s3", "boto3")


def measure_memory(
    endpoint: str, work: Path, sizes: tuple[int, ...] = (10, 100, 300)
) -> dict[str, dict[str, int]]:
    """Peak RSS and traced peak per "kind size" (e.g. "s3 300"), plus the "baseline"."""
    found = {"baseline": _run_child("baseline", endpoint, "-", str(work / "local"))}
    files = {size: _make_file(work / f"mem-{size}.mp3", size * MB) for size in sizes}
    for kind in KINDS:
        for size, path in files.items():
            _reset(endpoint)
            found[f"{kind} {size}"] = _run_child(kind, endpoint, str(path), str(work / "local"))
    for path in files.values():
        path.unlink()
    return found


def bench_memory(endpoint: str, work: Path, sizes: tuple[int, ...] = (10, 100, 300)) -> None:
    found = measure_memory(endpoint, work, sizes)
    print("\nPeak memory of one put_file, fresh process per row (MiB)")
    print(f"{'store':<10} {'file':>7} {'peak RSS':>9} {'over baseline':>14} {'traced peak':>12}")
    base = found["baseline"]
    print(f"{'baseline':<10} {'-':>7} {base['rss'] / 2**20:>9.1f} {'':>14} {'':>12}")
    for kind in KINDS:
        for size in sizes:
            got = found[f"{kind} {size}"]
            print(
                f"{kind:<10} {size:>4} MB {got['rss'] / 2**20:>9.1f} "
                f"{(got['rss'] - base['rss']) / 2**20:>14.1f} {got['traced'] / 2**20:>12.2f}"
            )


def measure_throughput(
    endpoint: str, work: Path, files: int, mb: int, rounds: int
) -> dict[str, list[float]]:
    """MB/s of each round, for "S3Storage.put_file" and "boto3 upload_file"."""
    from flows.core.s3 import S3Storage
    from flows.core.storage import CACHE_LONG

    paths = [_make_file(work / f"episode-{n:02d}.mp3", mb * MB) for n in range(files)]
    total = files * mb
    store = S3Storage(BUCKET, "ours", endpoint_url=endpoint, region="us-east-1")
    client = _plain_client(endpoint)

    def ours() -> None:
        for path in paths:
            store.put_file(
                f"audio/{path.name}",
                path,
                content_type="audio/mpeg",
                cache_control=CACHE_LONG,
                public=True,
            )

    def plain() -> None:
        for path in paths:
            client.upload_file(
                str(path),
                BUCKET,
                f"plain/audio/{path.name}",
                ExtraArgs={"ContentType": "audio/mpeg"},
            )

    rates: dict[str, list[float]] = {"S3Storage.put_file": [], "boto3 upload_file": []}
    for round_ in range(rounds):
        # Alternate who goes first: the shared machine's noise should hit both alike.
        order = [("boto3 upload_file", plain), ("S3Storage.put_file", ours)]
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            _reset(endpoint)
            started = time.perf_counter()
            run()
            rates[name].append(total / (time.perf_counter() - started))
    for path in paths:
        path.unlink()
    return rates


def bench_throughput(endpoint: str, work: Path, files: int, mb: int, rounds: int) -> None:
    rates = measure_throughput(endpoint, work, files, mb, rounds)
    print(f"\nThroughput to moto over HTTP: {files} files x {mb} MB, {rounds} rounds (MB/s)")
    print(f"{'uploader':<20} {'median':>7} {'best':>7} {'median vs boto3':>16}")
    reference = statistics.median(rates["boto3 upload_file"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<20} {median:>7.1f} {max(values):>7.1f} {median / reference:>16.0%}")


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in its own process on loopback; yields its endpoint URL."""
    server = subprocess.Popen(
        [sys.executable, __file__, "child", "server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield server.stdout.readline().strip()
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def run(quick: bool = False) -> list[Row]:
    """The table's rows: put_file's peak memory by file size, and throughput vs boto3."""
    sizes = (10, 100, 200) if quick else (10, 100, 300)
    files, mb, rounds = (5, 20, 3) if quick else (10, 50, 3)
    rows = []
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        found = measure_memory(endpoint, Path(tmp), sizes)
        rates = measure_throughput(endpoint, Path(tmp), files, mb, rounds)
    base = found["baseline"]["rss"]
    # 100 MB is 12 parts of 8 MB: past that, max_concurrency (10) parts in flight cap the peak.
    small, large = sizes[1], sizes[-1]
    name = "storage: peak memory"
    for kind, label in (("local", "LocalStorage"), ("s3", "S3Storage"), ("boto3", "boto3")):
        big = found[f"{kind} {large}"]["rss"] - base
        little = found[f"{kind} {small}"]["rss"] - base
        tiny = found[f"{kind} {sizes[0]}"]["rss"] - base
        rows.append(
            Row(
                name,
                f"{label}: RSS over baseline, {large} MB vs {small} MB file "
                f"({sizes[0]} MB: {mib(tiny)})",
                mib(big),
                mib(little) + f" ({small} MB)",
                factor(big / max(little, 1)),
                f"flat (file {large / small:g}x)",
                verdict(big <= little * 1.15 + 4 * 2**20),
            )
        )
    ours, plain = found[f"s3 {large}"]["rss"] - base, found[f"boto3 {large}"]["rss"] - base
    rows.append(
        Row(
            name,
            f"S3Storage vs plain boto3, {large} MB file",
            mib(ours),
            mib(plain) + " boto3",
            factor(ours / max(plain, 1)),
        )
    )
    ours_rate = statistics.median(rates["S3Storage.put_file"])
    plain_rate = statistics.median(rates["boto3 upload_file"])
    rows.append(
        Row(
            "storage: throughput to moto (HTTP)",
            f"S3Storage.put_file vs boto3 upload_file, {files} x {mb} MB",
            f"{ours_rate:.1f} MB/s",
            f"{plain_rate:.1f} MB/s boto3",
            f"{ours_rate / plain_rate:.0%}",
            ">= 90%",
            verdict(ours_rate / plain_rate >= 0.9),
        )
    )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        if sys.argv[2] == "server":
            child_server()
        else:
            child_upload(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10, help="files per throughput round")
    parser.add_argument("--mb", type=int, default=50, help="size of each file in MB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["memory", "throughput"], help="run one part")
    args = parser.parse_args()

    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        if args.only != "throughput":
            bench_memory(endpoint, Path(tmp))
        if args.only != "memory":
            bench_throughput(endpoint, Path(tmp), args.files, args.mb, args.rounds)


if __name__ == "__main__":
    main()
