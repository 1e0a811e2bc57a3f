"""Benchmark: a no-op podcast run over a catalog of 500 episodes.

    python tests/bench/bench_podcast.py [--runs 7] [--episodes 500] [--no-flow]

A no-op run is what the 15-minute schedule does almost every time: read show.yaml, load the
catalog, scan the inbox, find nothing to do. Target: zero uploads and under 200 ms of work
beyond Prefect's start-up.

Rows (median wall time of `--runs` runs, after one warm-up):
- plain, empty inbox:   `flows.podcast.run.publish` (no Prefect) on LocalStorage and on moto
                        in-process S3;
- plain, re-drop:       one already-published episode dropped again (inspected, tagged,
                        hashed, found unchanged: still zero uploads);
- flow, empty inbox:    the `publish-episodes` flow on Prefect's temporary local server,
                        minus the median of an empty flow run in the same process (so
                        Prefect's start-up and per-run overhead are left out). Skipped with
                        --no-flow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
# A busy 2-core machine can take longer than Prefect's default 20 s to start its server.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from flows.core.models import Episode  # noqa: E402
from flows.core.s3 import S3Storage  # noqa: E402
from flows.core.settings import Settings  # noqa: E402
from flows.core.storage import LocalStorage  # noqa: E402
from flows.podcast.catalog import Catalog, load_catalog, save_catalog  # noqa: E402
from flows.podcast.run import publish  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import Row, factor, verdict  # noqa: E402

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def fake_catalog(count: int) -> list[Episode]:
    """`count` realistic records (the audio objects themselves are not needed for a no-op)."""
    start = datetime(2016, 1, 4, 6, 0, tzinfo=UTC)
    description = "Vi pratar om öppna data, e-tjänster & kommunernas vardag. " * 8
    return [
        Episode(
            guid=f"00000000-0000-4000-8000-{n:012d}",
            slug=f"avsnitt-{n}",
            title=f"Avsnitt {n}: samtal om digitalisering",
            description=description,
            description_html=f"<p>{description}</p>",
            publish_at=start + timedelta(weeks=n),
            duration=1800 + n,
            size=28_000_000 + n,
            mime_type="audio/mpeg",
            sha256=f"{n:064x}",
            audio_key=f"podcast/audio/avsnitt-{n}-{n:08x}.mp3",
            episode=n,
            season=1 + n // 50,
            guests=["Cecilia Påhittad"],
            transcript_key=f"podcast/transcripts/avsnitt-{n}-{n:08x}.vtt",
            transcript_type="text/vtt",
            first_published=start + timedelta(weeks=n),
            last_updated=start + timedelta(weeks=n),
        )
        for n in range(1, count + 1)
    ]


def episodes_folder(root: Path) -> Path:
    folder = root / "episodes"
    (folder / "inbox").mkdir(parents=True)
    for name in ("show.yaml", "cover.jpg"):
        shutil.copy(ROOT / "episodes" / name, folder / name)
    return folder


def median_ms(action: Callable[[], object], runs: int) -> tuple[float, object]:
    result = action()  # warm-up (imports, caches)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def tone_mp3(path: Path) -> None:
    import imageio_ffmpeg

    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"),
            *("-i", "sine=frequency=440:duration=3", "-ac", "1", "-b:a", "64k", str(path)),
        ],
        check=True,
    )


def flow_row(
    show_dir: Path, storage_dir: Path, runs: int, extra: dict[str, float]
) -> tuple[str, float, int]:
    """The flow's no-op run: its time in the Running state (as the Prefect server records it)
    minus an empty flow's, so start-up and the per-run overhead (a sync run ends on a 1 s
    heartbeat step) are left out."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.podcast.flow import publish_episodes

    @flow(name="bench-empty")
    def empty_flow() -> None:
        return None

    def running_ms(state) -> float:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
        return run.total_run_time.total_seconds() * 1000

    start = time.perf_counter()
    empty_flow()  # pays Prefect's start-up (the temporary server)
    startup = (time.perf_counter() - start) * 1000
    empty, ours, walls, uploads = [], [], [], 0
    for _ in range(runs):
        empty.append(running_ms(empty_flow(return_state=True)))
        start = time.perf_counter()
        state = publish_episodes(
            episodes=str(show_dir),
            storage=str(storage_dir),
            now=NOW,
            settle_seconds=0,
            return_state=True,
        )
        walls.append((time.perf_counter() - start) * 1000)
        uploads += state.result().uploads
        ours.append(running_ms(state))
    base, mine = statistics.median(empty), statistics.median(ours)
    extra["empty"], extra["startup"] = base, startup
    print(
        f"Prefect: start-up {startup:.0f} ms; time in Running (median): empty flow "
        f"{base:.0f} ms, publish-episodes {mine:.0f} ms; publish-episodes wall time "
        f"{statistics.median(walls):.0f} ms"
    )
    return ("flow, empty inbox (Running time minus an empty flow's)", mine - base, uploads)


@dataclass
class Measured:
    """What `measure` found: (case, median ms, uploads) rows and their peers."""

    rows: list[tuple[str, float, int]]
    catalog_bytes: int
    load_catalog_ms: float  # the floor of a no-op run: reading the catalog from storage
    flow_empty_ms: float | None = None  # an empty flow's time in Running, when measured


def measure(episodes: int, runs: int, flow: bool) -> Measured:
    """Time the no-op cases over a catalog of `episodes` records (see the module docstring)."""
    rows: list[tuple[str, float, int]] = []
    extra: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="bench-podcast-") as tmp:
        root = Path(tmp)
        show_dir = episodes_folder(root)
        settings = Settings.load(episodes_dir=str(show_dir), settle_seconds=0)

        local = LocalStorage(root / "storage")
        save_catalog(local, Catalog(fake_catalog(episodes)), NOW)
        catalog_size = len(local.get_bytes("podcast/catalog.json")[0])
        load_ms, _ = median_ms(lambda: load_catalog(local), runs)

        def plain_local():
            return publish(settings, local, NOW)

        ms, report = median_ms(plain_local, runs)
        rows.append(("plain, empty inbox, LocalStorage", ms, report.uploads))

        # A published episode dropped again: found unchanged, nothing uploaded.
        source = root / "ep.mp3"
        tone_mp3(source)
        shutil.copy(source, show_dir / "inbox" / "avsnitt-9999.mp3")
        (show_dir / "inbox" / "avsnitt-9999.md").write_text("---\ntitle: Igen\n---\n")
        publish(settings, local, NOW)  # first publish (the catalog grows to N+1)

        def redrop():
            shutil.copy(source, show_dir / "inbox" / "avsnitt-9999.mp3")
            (show_dir / "inbox" / "avsnitt-9999.md").write_text("---\ntitle: Igen\n---\n")
            report = publish(settings, local, NOW)
            assert [o.status for o in report.outcomes] == ["unchanged"], report.summary()
            return report

        ms, report = median_ms(redrop, runs)
        rows.append(("plain, re-drop of 1 published episode", ms, report.uploads))
        shutil.rmtree(show_dir / "published")

        from moto import mock_aws

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        with mock_aws():
            import boto3

            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket="bench")
            puts: list[str] = []
            client.meta.events.register(
                "before-send.s3",
                lambda request, **_: puts.append(request.url) if request.method == "PUT" else None,
            )
            s3 = S3Storage("bench", "kraft", client=client)
            save_catalog(s3, Catalog(fake_catalog(episodes)), NOW)
            # Set-up: the first run builds the feed (and web pages) the new catalog gives, as
            # it did on LocalStorage above; the no-op runs are the ones after it.
            publish(settings, s3, NOW)
            puts.clear()
            ms, report = median_ms(lambda: publish(settings, s3, NOW), runs)
            rows.append(("plain, empty inbox, S3 (moto in-process)", ms, len(puts)))

        if flow:
            rows.append(flow_row(show_dir, root / "storage", runs, extra))
    return Measured(rows, catalog_size, load_ms, extra.get("empty"))


def run(quick: bool = False) -> list[Row]:
    """The table's rows: each no-op case beside the time to read the catalog alone."""
    count = 500
    # The flow row pays Prefect's start-up (~30 s on a busy machine): full run only.
    m = measure(count, 3 if quick else 7, flow=not quick)
    name = f"podcast no-op ({count} episodes)"
    rows = []
    for case, median, uploads in m.rows:
        if case.startswith("flow"):
            figure, peer = "publish-episodes flow, Running time", m.flow_empty_ms or 0.0
            peer_text = f"{peer:.1f} ms empty flow"
            median += peer  # the flow's own Running time, beside the empty flow's
            shown, over = median, median - peer
        else:
            figure, peer, peer_text = (
                case,
                m.load_catalog_ms,
                f"{m.load_catalog_ms:.1f} ms load_catalog",
            )
            shown, over = median, median
        rows.append(
            Row(
                name,
                f"{figure} (uploads: {uploads})",
                f"{shown:.1f} ms",
                peer_text,
                factor(shown / peer) if peer else "-",
                "< 200 ms, 0 uploads",
                verdict(over < 200 and uploads == 0),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--no-flow", action="store_true", help="skip the Prefect flow row")
    args = parser.parse_args()
    m = measure(args.episodes, args.runs, flow=not args.no_flow)
    rows, catalog_size = m.rows, m.catalog_bytes
    print(f"load_catalog alone (the floor of a no-op run): {m.load_catalog_ms:.1f} ms")
    print(
        f"\nNo-op publishing over a catalog of {args.episodes} episodes "
        f"({catalog_size / 1024:.0f} KiB), median of {args.runs} runs:\n"
    )
    print(f"| {'case':<55} | {'ms':>7} | {'uploads':>7} |")
    print(f"| {'-' * 55} | {'-' * 7}:| {'-' * 7}:|")
    for name, ms, uploads in rows:
        print(f"| {name:<55} | {ms:7.1f} | {uploads:7d} |")
    print("\nTarget: zero uploads and < 200 ms beyond Prefect's start-up.")


if __name__ == "__main__":
    main()
