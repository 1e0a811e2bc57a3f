"""Benchmark: each command's wall time as a user runs it, beside `python -c "import prefect"`.

    python tests/bench/bench_commands.py [--runs 5] [--modes direct server]

Every command runs as a new process from the repository's root, the way a person or a cron
line runs it, on the demo's content (published once first, in a temporary folder):

- `podcast` with nothing to do (an empty inbox, a current feed);
- `feed` with nothing to do (the live feed is what the catalog gives);
- `newsletter` with nothing new (the month after the demo's, no new posts or events);
- `demo` a second time (three episodes found unchanged, the newsletter rebuilt).

Two modes: **direct**, no Prefect server configured (a fresh `PREFECT_HOME`, no
`PREFECT_API_URL`), and **server**, a `prefect server start` on a free port of 127.0.0.1
(its own temporary `PREFECT_HOME`), started here and stopped at the end. Each command's
runs alternate with `python -c "import prefect"` in the same environment (A B A B ...), and
the ratio is the median of the pairs' ratios, so a machine that slows down during the run
moves both. Targets (issue 22): a no-op `podcast` or `feed` at most 2.0x `import prefect`
with no server, at most 1.5x with a running server; `newsletter` and `demo` are shown for
information.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from table import Row, factor, verdict  # noqa: E402

PUBLIC_URL = "https://kraftsamling.example/"
IMPORT_PREFECT = [sys.executable, "-c", "import prefect"]
TARGETS = {"direct": 2.0, "server": 1.5}  # x `import prefect`, for podcast and feed
WITH_TARGET = ("podcast", "feed")


def commands(work: Path) -> dict[str, tuple[list[str], str]]:
    """{name: (argv, what its output must say)} for the commands above."""
    flows = [sys.executable, "-m", "flows"]
    place = ["--storage", str(work / "storage"), "--public-url", PUBLIC_URL]
    episodes = ["--episodes", str(work / "episodes")]
    month = ["--month", "2027-01", "--now", "2027-01-01T08:00:00+01:00"]
    news = ["--out", str(work / "newsletters"), "--posts", str(ROOT / "demo" / "posts.xml")]
    return {
        "podcast": ([*flows, "podcast", *episodes, *place], "Nothing new in the inbox"),
        "feed": ([*flows, "feed", *episodes, *place], "nothing uploaded"),
        "newsletter": (
            [*flows, "newsletter", *month, *news, "--storage", str(work / "no-catalog")],
            "Nothing new for 2027-01",
        ),
        "demo": ([*flows, "demo", "--workdir", str(work)], "3 unchanged"),
    }


def base_env(prefect_home: Path) -> dict[str, str]:
    """The environment of every process: no Prefect server, no project settings, offline."""
    drop = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH")
    env = {
        k: v for k, v in os.environ.items() if k not in drop and not k.startswith("KRAFTSAMLING_")
    }
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        KRAFTSAMLING_EVENTS="[]",  # the newsletter's "nothing new" needs no events either
    )
    return env


def run_once(argv: list[str], env: dict[str, str], expect: str = "") -> float:
    """Wall seconds of one run; raises when it fails or does not say `expect`."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(
            f"{' '.join(argv[2:])} exited {done.returncode} without {expect!r}:\n"
            f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
        )
    return wall


def paired(
    argv: list[str], expect: str, env: dict[str, str], runs: int
) -> tuple[float, float, float]:
    """(median wall of the command, median wall of `import prefect`, median of the pairs'
    ratios), after one warm-up of each."""
    run_once(argv, env, expect)
    run_once(IMPORT_PREFECT, env)
    ours, base, ratios = [], [], []
    for _ in range(runs):
        a = run_once(argv, env, expect)
        b = run_once(IMPORT_PREFECT, env)
        ours.append(a)
        base.append(b)
        ratios.append(a / b)
    return statistics.median(ours), statistics.median(base), statistics.median(ratios)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def prefect_server(env: dict[str, str], home: Path) -> Iterator[str]:
    """`prefect server start` on a free port of 127.0.0.1 with its own PREFECT_HOME; yields
    its API URL and stops it (its whole process group) at the end."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "PREFECT_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not _healthy(api):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start; see {home}/server.log")
            time.sleep(0.5)
        yield api
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def measure_mode(mode: str, env: dict[str, str], work: Path, runs: int) -> list[Row]:
    """The rows of one mode."""
    rows = []
    for name, (argv, expect) in commands(work).items():
        print(f"  {mode}: {name} ...", file=sys.stderr, flush=True)
        ours, base, ratio = paired(argv, expect, env, runs)
        target = TARGETS[mode]
        has_target = name in WITH_TARGET
        rows.append(
            Row(
                f"commands, {'no server' if mode == 'direct' else 'running server'}",
                f"`{name}`"
                + (" with nothing to do" if has_target else "")
                + (" with nothing new" if name == "newsletter" else "")
                + (", a second time" if name == "demo" else "")
                + " (wall)",
                f"{ours:.2f} s",
                f"{base:.2f} s import prefect",
                factor(ratio),
                f"<= {target:.1f}x" if has_target else "-",
                verdict(ratio <= target) if has_target else "info",
            )
        )
    return rows


def run(
    quick: bool, modes: tuple[str, ...] = ("direct", "server"), runs: int | None = None
) -> list[Row]:
    """Rows for `run_all.py`: `runs` pairs per command (default 3 with --quick, else 5)."""
    runs = runs or (3 if quick else 5)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        root = Path(tmp)
        homes = root / "prefect-client", root / "prefect-server"
        for home in homes:
            home.mkdir()
        env = base_env(homes[0])
        work = root / "demo"
        run_once(commands(work)["demo"][0], env)  # the demo's content, published once
        if "direct" in modes:
            rows += measure_mode("direct", env, work, runs)
        if "server" in modes:
            with prefect_server(env, homes[1]) as api:
                rows += measure_mode("server", {**env, "PREFECT_API_URL": api}, work, runs)
    return rows


def main() -> None:
    from table import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="pairs per command (default 5)")
    parser.add_argument("--modes", nargs="+", choices=["direct", "server"], default=None)
    args = parser.parse_args()
    rows = run(False, tuple(args.modes or ("direct", "server")), args.runs)
    print(format_table(rows, markdown=False))


if __name__ == "__main__":
    main()
