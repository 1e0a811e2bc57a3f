"""Crash points for tests/test_crash.py: run a publish (or a newsletter send) and SIGKILL
ourselves at a chosen point, as a power cut, an OOM kill or a lost worker would.

Importing flows.podcast.run imports Prefect (~2-5 s), too slow to pay 20 times. So this script
is a small fork server: started once, it imports everything, then reads one JSON job per line
on stdin, forks a child per job and prints one JSON result line per job:

    job:    {"kind": "publish", "point": "catalog-after", "episodes": DIR,
             "storage": "DIR or s3://bucket/prefix", "endpoint": URL or null, "now": ISO}
            {"kind": "send", "point": "after-batch-2", "issue": DIR, "smtp_port": N,
             "recipients": [...], "batch_size": 2, "now": ISO}
    result: {"point": ..., "killed": true, "status": "SIGKILL"}   (or "exit 0": never reached)

The child installs the crash point by wrapping a function (this process only; the test's
process is untouched) and calls the plain `publish` / `send_issue`; when the point is
reached it does `os.kill(os.getpid(), SIGKILL)`: no cleanup, no `finally`, no flush.

The helpers at the top (`make_tone`, `make_show`, `drop`) build the drop folder for the
crash and fault tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: `python tests/crashpoints.py`
    sys.path.insert(0, str(REPO_ROOT))


# --- the drop folder ----------------------------------------------------------------------


def make_tone(path: Path, seconds: float = 1.0, frequency: int = 440) -> Path:
    """A small real MP3 (mono, 44.1 kHz, 64 kbit/s) made with imageio-ffmpeg's ffmpeg."""
    import imageio_ffmpeg

    source = f"sine=frequency={frequency}:duration={seconds}"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source),
            *("-ac", "1", "-ar", "44100", "-b:a", "64k", str(path)),
        ],
        check=True,
    )
    return path


def make_show(folder: Path) -> Path:
    """An episodes folder with the real show.yaml and cover, and an empty inbox."""
    (folder / "inbox").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "episodes" / "show.yaml", folder / "show.yaml")
    shutil.copy(REPO_ROOT / "episodes" / "cover.jpg", folder / "cover.jpg")
    return folder


def drop(
    show_dir: Path,
    name: str,
    audio: Path,
    *,
    title: str,
    number: int,
    publish_at: str,
    transcript: bool = False,
) -> list[Path]:
    """Put one episode in the inbox: the audio (made its own, see below), a sidecar and
    optionally a WebVTT transcript."""
    inbox = show_dir / "inbox"
    files = [inbox / f"{name}.mp3", inbox / f"{name}.md"]
    shutil.copy(audio, files[0])
    # An ID3v1 tag naming the episode makes each episode's audio its own: the same audio
    # under two names is refused as a copy (issue 19). 3 + 30 + 94 + 1 = 128 bytes.
    with files[0].open("ab") as handle:
        handle.write(b"TAG" + name.encode()[:30].ljust(30, b"\0") + b"\0" * 94 + b"\xff")
    front = [f'title: "{title}"', f"episode: {number}", f"publish_at: {publish_at}"]
    if transcript:
        files.append(inbox / f"{name}.vtt")
        files[-1].write_text(f"WEBVTT\n\n00:00.000 --> 00:00.900\n{title}\n", encoding="utf-8")
        front.append(f"transcript: {name}.vtt")
    body = f"Avsnitt {number} av Digitalsamtal, om {title.lower()}."
    files[1].write_text("---\n" + "\n".join(front) + "\n---\n" + body + "\n", encoding="utf-8")
    return files


# --- crash points -------------------------------------------------------------------------


def die() -> None:
    """The crash: SIGKILL to ourselves (nothing runs after this line)."""
    os.kill(os.getpid(), signal.SIGKILL)


def wrap(
    owner: Any, name: str, *, nth: int, when: str, match: Callable[..., bool] | None = None
) -> None:
    """Replace `owner.name` so that its `nth` matching call dies `before` or `after` running."""
    original = getattr(owner, name)
    raw = owner.__dict__.get(name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if match is None or match(*args, **kwargs):
            calls += 1
            if calls == nth and when == "before":
                die()
            result = original(*args, **kwargs)
            if calls == nth and when == "after":
                die()
            return result
        return original(*args, **kwargs)

    setattr(owner, name, staticmethod(wrapper) if isinstance(raw, staticmethod) else wrapper)


def key_is(test: Callable[[str], bool]) -> Callable[..., bool]:
    """A `match` for Storage methods: (self, key, ...) whose key passes `test`."""
    return lambda _self, key, *args, **kwargs: test(key)


def audio_key(key: str) -> bool:
    return key.startswith("podcast/audio/")


def _mid_local_write(nth: int, after_bytes: int) -> None:
    """The nth LocalStorage write of an audio object dies after `after_bytes` are written
    to its temporary file (blocks of 4 KiB, so a 16 KB episode is several blocks).

    Only the objects' own writes count, not their metadata (`.meta/`): uploads run
    concurrently, so which metadata write falls between them varies from run to run."""
    import flows.core.storage as storage_module

    storage_module._CHUNK = 4096
    original = storage_module.LocalStorage._write_atomically
    calls = 0

    def write(path: Path, chunks: Iterator[bytes]) -> str:
        nonlocal calls
        posix = path.as_posix()
        if "/podcast/audio/" not in posix or "/.meta/" in posix:
            return original(path, chunks)
        calls += 1
        if calls != nth:
            return original(path, chunks)

        def counted() -> Iterator[bytes]:
            written = 0
            for chunk in chunks:
                yield chunk
                written += len(chunk)
                if written >= after_bytes:
                    die()  # the block is in the temporary file; no fsync, no rename

        return original(path, counted())

    storage_module.LocalStorage._write_atomically = staticmethod(write)


def _mid_http_upload(storage: Any, nth: int) -> None:
    """The nth PUT of an audio object dies after the headers and part of the body are on
    the wire (the server sees a connection that ends mid-body).

    Armed per thread: uploads run concurrently, and the PUT that botocore is about to send
    goes out on the thread that announced it."""
    import http.client
    import threading

    armed = threading.local()
    seen = 0

    def before_send(request: Any, **_: Any) -> None:
        nonlocal seen
        if request.method == "PUT" and "/podcast/audio/" in request.url:
            seen += 1
            armed.on = seen == nth

    storage.client.meta.events.register("before-send.s3", before_send)
    original = http.client.HTTPConnection.send

    def send(self: Any, data: Any) -> None:
        if not getattr(armed, "on", False):
            return original(self, data)
        if hasattr(data, "read"):
            self.sock.sendall(data.read(4096))
            die()
        data = bytes(data)
        end = data.find(b"\r\n\r\n")
        if data.startswith(b"PUT ") and end >= 0 and end + 4 == len(data):
            return original(self, data)  # the header block alone: the body follows
        self.sock.sendall(data[: max(1, len(data) // 2)])
        die()

    http.client.HTTPConnection.send = send


def install(point: str, storage: Any) -> None:
    """Arrange for this process to die at `point` (names as in POINTS)."""
    import flows.core.storage
    import flows.podcast.tags
    from flows.podcast.catalog import BACKUP_PREFIX, CATALOG_KEY
    from flows.podcast.feed import FEED_KEY

    store = type(storage)
    local = point.removeprefix("http-")
    if point == "http-audio-2-mid":
        _mid_http_upload(storage, 2)
    elif local == "tag-1-before":
        wrap(flows.podcast.tags, "tag_audio", nth=1, when="before")
    elif local == "tag-2-mid":
        wrap(
            flows.podcast.tags, "_write_mp3", nth=2, when="after"
        )  # temp file written, not renamed
    elif local == "tag-4-after":
        wrap(flows.podcast.tags, "tag_audio", nth=4, when="after")
    elif local == "audio-1-before":
        wrap(store, "put_file", nth=1, when="before", match=key_is(audio_key))
    elif local == "audio-3-mid":
        _mid_local_write(3, 8192)
    elif local == "audio-2-unrecorded":  # data renamed into place, metadata not written
        wrap(store, "_record", nth=2, when="before", match=key_is(audio_key))
    elif local == "transcript-after":
        wrap(store, "put_file", nth=1, when="after", match=key_is(lambda k: k.endswith(".vtt")))
    elif local == "audio-4-after":
        wrap(store, "put_file", nth=4, when="after", match=key_is(audio_key))
    elif local == "catalog-reread":
        wrap(store, "get_bytes", nth=2, when="before", match=key_is(lambda k: k == CATALOG_KEY))
    elif local == "backup-after":
        wrap(store, "put_bytes", nth=1, when="after", match=key_is(lambda k: BACKUP_PREFIX in k))
    elif local == "catalog-after":
        wrap(store, "put_bytes", nth=1, when="after", match=key_is(lambda k: k == CATALOG_KEY))
    elif local == "feed-check":  # 4 HEADs by upload_episode, then the feed's check
        wrap(store, "head", nth=7, when="before", match=key_is(audio_key))
    elif local == "feed-before":
        wrap(store, "put_bytes", nth=1, when="before", match=key_is(lambda k: k == FEED_KEY))
    elif local == "feed-after":
        wrap(store, "put_bytes", nth=1, when="after", match=key_is(lambda k: k == FEED_KEY))
    elif local.startswith("move-"):  # move-<n>-<before|after>: the nth file moved
        _, nth, when = local.split("-")
        wrap(shutil, "move", nth=int(nth), when=when)
    else:
        raise SystemExit(f"unknown crash point {point!r}")


# The points over LocalStorage, in the order a run reaches them; "http-" ones run over moto.
# A batch of episodes is tagged and uploaded concurrently, so "second", "third" … count what
# happens, whichever episode it happens to.
POINTS = (
    "tag-1-before",  # nothing done yet
    "audio-1-before",  # an episode tagged, nothing uploaded
    "tag-2-mid",  # a second tagged copy half made
    "audio-2-unrecorded",  # a second audio in place, its metadata not written
    "audio-3-mid",  # a third audio half copied into storage
    "transcript-after",  # ep04's transcript uploaded
    "tag-4-after",  # every episode tagged, uploads under way
    "audio-4-after",  # every audio uploaded, catalog untouched
    "catalog-reread",  # committing: the catalog read again before the write
    "backup-after",  # the dated backup written, the conditional put not done
    "catalog-after",  # the catalog written, the feed not
    "feed-check",  # the feed's check that every enclosure exists
    "feed-before",  # the feed built and checked, not uploaded
    "feed-after",  # the feed uploaded, no file moved yet
    "move-1-after",  # the first episode's audio moved to published/, its sidecar not
    "move-6-after",  # the fourth episode's audio and sidecar moved, its transcript not
)
HTTP_POINTS = ("http-audio-2-mid", "http-backup-after", "http-catalog-after", "http-feed-before")


# --- jobs -----------------------------------------------------------------------------------


def run_publish(job: dict[str, Any]) -> None:
    from flows.core.backends import open_storage
    from flows.core.settings import Settings
    from flows.podcast.run import publish

    settings = Settings.load(
        episodes_dir=job["episodes"],
        storage=job["storage"],
        s3_endpoint_url=job.get("endpoint"),
        s3_region="us-east-1",
        settle_seconds=0,
    )
    storage = open_storage(settings)
    install(job["point"], storage)
    publish(settings, storage, datetime.fromisoformat(job["now"]))


def run_send(job: dict[str, Any]) -> None:
    import flows.newsletter.delivery
    from flows.core.settings import Settings
    from flows.newsletter.delivery import send_issue
    from flows.newsletter.issue import Progress

    nth = int(job["point"].removeprefix("after-batch-"))
    original = flows.newsletter.delivery.write_progress

    def record(folder: Path, progress: Progress, now: datetime) -> None:
        original(folder, progress, now)
        if progress.batches == nth:
            die()  # the batch is sent and recorded; the next one never starts

    flows.newsletter.delivery.write_progress = record
    settings = Settings.load(
        smtp_host="127.0.0.1", smtp_port=job["smtp_port"], smtp_security="none"
    )
    send_issue(
        Path(job["issue"]),
        job["recipients"],
        settings,
        datetime.fromisoformat(job["now"]),
        batch_size=job["batch_size"],
    )


def run_child(job: dict[str, Any]) -> None:
    """In the forked child: run the job; exit 0 if the crash point was never reached."""
    try:
        (run_send if job["kind"] == "send" else run_publish)(job)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)
    os._exit(0)


def serve() -> None:
    """The fork server: import once, then one forked child per job line."""
    import importlib

    for name in (
        "flows.podcast.audio",
        "flows.podcast.tags",
        "flows.podcast.catalog",
        "flows.newsletter.delivery",
        "flows.podcast.feed",
        "flows.podcast.run",
    ):
        importlib.import_module(name)  # what every child needs, imported once
    from flows.core.s3 import _new_session

    _new_session().client("s3", region_name="us-east-1")  # parse botocore's models once
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(job)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            result = {"killed": sig == signal.SIGKILL, "status": signal.Signals(sig).name}
        else:
            result = {"killed": False, "status": f"exit {os.WEXITSTATUS(status)}"}
        print(json.dumps({"point": job["point"], **result}), flush=True)


if __name__ == "__main__":
    serve()
