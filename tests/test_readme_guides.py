"""The README's guides, run as written: the commands are read from README.md, not copied here.

Each guide's commands run as separate processes in a temporary copy of the repository, the
way a person types them, with SMTP pointed at a real server on 127.0.0.1 and storage in a
temporary folder. The sources are configured the way the staff guide says (the
KRAFTSAMLING_POSTS / KRAFTSAMLING_EVENTS environment variables). Only `--now` is added, so
the outcome does not depend on today's date. The processes talk to the session's Prefect
test server (as under the operators' guide) instead of each starting a temporary one, which
would cost ~10 s a command. The operators' guide (server, deploy, worker) is run by
`.ci/deploy-smoke.sh`.
"""

from __future__ import annotations

import email
import email.utils
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import podcastparser
import pytest
from conftest import DEMO_DIR, REPO_ROOT
from loopback import smtp_server

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
NOW = "2026-12-01T11:00:00+01:00"  # 1 December: the guide builds the January issue
# Publishing refuses a future --now (it would release scheduled episodes early): the
# producers' guide runs as of a moment that is past on any day this test runs.
PUBLISH_NOW = "2026-11-20T10:00:00+01:00"
PUBLIC_URL = "https://media.guide.example/"


def guide(title: str) -> str:
    """The text of one `## ...` section of the README."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def commands_of(section: str) -> list[str]:
    """Every `python -m flows ...` command the section shows, whitespace as one space."""
    return [" ".join(c.split()) for c in re.findall(r"`(python -m flows [^`]+)`", section)]


def the_command(commands: list[str], *, has: str, lacks: str = "\0") -> str:
    found = [c for c in commands if has in c and lacks not in c]
    assert len(found) == 1, f"expected one command with {has!r} in the guide, found {found}"
    return found[0]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def count(self) -> Counter[str]:
        return Counter(rcpt for rcpts, _ in self.messages for rcpt in rcpts)

    def subjects(self, rcpt: str) -> list[str]:
        return [
            str(email.message_from_bytes(raw)["Subject"])
            for rcpts, raw in self.messages
            if rcpt in rcpts
        ]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The parts of a fresh clone that the guides use."""
    root = tmp_path / "kraftsamling"
    root.mkdir()
    for name in ("episodes", "newsletters"):
        shutil.copytree(
            REPO_ROOT / name,
            root / name,
            ignore=shutil.ignore_patterns("published", "failed", "20??-??"),
        )
    for name in ("prefect.yaml", "README.md"):
        shutil.copy(REPO_ROOT / name, root / name)
    (root / "episodes" / "inbox").mkdir(exist_ok=True)
    return root


@pytest.fixture
def shell(prefect_harness, checkout: Path, tmp_path: Path):
    """Runs a README command as a person would in the checkout; returns the process."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("KRAFTSAMLING_")}
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        KRAFTSAMLING_STORAGE=str(tmp_path / "storage"),
        KRAFTSAMLING_PUBLIC_URL=PUBLIC_URL,
        KRAFTSAMLING_APPROVAL_POLL_SECONDS="1",
    )

    def start(command: str, **extra_env: str) -> subprocess.Popen[str]:
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "flows"], command
        if argv[3] == "newsletter":
            argv += ["--now", NOW]
        elif argv[3] in ("podcast", "feed"):
            argv += ["--now", PUBLISH_NOW]
        return subprocess.Popen(
            [sys.executable, *argv[1:]],
            cwd=checkout,
            env={**env, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(command: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        process = start(command, **extra_env)
        out, err = process.communicate(timeout=180)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    run.start = start  # type: ignore[attr-defined]
    return run


def finish(process: subprocess.Popen[str], seconds: float = 90) -> tuple[str, str]:
    out, err = process.communicate(timeout=seconds)
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err}"
    return out, err


def wait_until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


@pytest.mark.prefect
def test_staff_guide_a_month_from_draft_to_sent(shell, checkout, tmp_path):
    text = guide("Communications staff: a month's newsletter")
    commands = commands_of(text)
    build = the_command(commands, has="newsletter --month", lacks="--send")
    send = the_command(commands, has="--send")
    approve = the_command(commands, has="approve", lacks="--reject")
    reject = the_command(commands, has="--reject")
    # The guide says where the sources are set; the test sets them there.
    assert "KRAFTSAMLING_POSTS" in text and "KRAFTSAMLING_EVENTS" in text
    posts = tmp_path / "site-feed.xml"
    shutil.copy(REPO_ROOT / "tests" / "data" / "guide" / "posts.xml", posts)
    sources = {
        "KRAFTSAMLING_POSTS": str(posts),
        "KRAFTSAMLING_EVENTS": str(DEMO_DIR / "events.yaml"),
    }
    list_address = re.search(r"--to (\S+)", send).group(1)
    reviewer = re.search(r"--reviewers (\S+)", send).group(1)
    month = re.search(r"--month (\S+)", build).group(1)
    issue = checkout / "newsletters" / month

    mailbox = Mailbox()
    with smtp_server(mailbox) as port:
        smtp = {
            "KRAFTSAMLING_SMTP_HOST": "127.0.0.1",
            "KRAFTSAMLING_SMTP_PORT": str(port),
            "KRAFTSAMLING_SMTP_SECURITY": "none",
        }
        # Step 2: the draft, and where it is.
        built = shell(build, **sources)
        assert built.returncode == 0, built.stderr
        assert f"newsletters/{month}/index.html" in built.stdout  # the path the guide names
        assert (issue / "newsletter.txt").is_file()
        draft = (issue / "index.html").read_bytes()
        # Built on 1 December, the January issue lists January's events, none of December's.
        text = (issue / "newsletter.txt").read_text("utf-8")
        assert "Frågestund om utlysningen Kompetensstöd för AI" in text  # 20 January
        assert "Workshop: AI-stöd i föreningens vardag" not in text  # 9 December
        # While staff read the draft, the site publishes a post: what goes to review and out
        # is still the draft they read (step 3 "takes the draft you built in step 2").
        new_post = (
            "<item><title>Ny utlysning: Kompetensstöd för AI</title>"
            "<link>https://kraftsamling.example/2026/12/01/ny-utlysning/</link>"
            "<pubDate>Tue, 01 Dec 2026 08:30:00 +0000</pubDate>"
            "<guid>https://kraftsamling.example/?p=1310</guid></item>"
        )
        posts.write_text(posts.read_text("utf-8").replace("<item>", new_post + "<item>", 1))

        # Step 3, then step 4's rejection: a test copy, nothing to the list.
        waiting = shell.start(send, **sources, **smtp)
        wait_until(lambda: mailbox.count()[reviewer] == 1, 90, "the test copy")
        assert mailbox.subjects(reviewer)[0].startswith("[Test] ")
        rejected = shell(reject)
        assert rejected.returncode == 0, rejected.stderr
        out, _ = finish(waiting)
        assert "Rejected: nothing was sent" in out
        assert mailbox.count()[list_address] == 0

        # Step 3 again (the same draft), then step 4's approval: the issue arrives.
        waiting = shell.start(send, **sources, **smtp)
        wait_until(lambda: shell(approve).returncode == 0, 90, "the run to wait for approval")
        out, err = finish(waiting)
        assert "Approved." in out, err
        # After the rejection the reviewers got a new test copy (the guide's step 4).
        assert mailbox.count() == Counter({reviewer: 2, list_address: 1})
        assert (issue / "index.html").read_bytes() == draft  # what was reviewed went out
        # The issue is dated when it was sent, not when the (pinned) run started.
        sent = email.message_from_bytes(mailbox.messages[-1][1])
        dated = email.utils.parsedate_to_datetime(sent["Date"])
        assert abs(dated - datetime.now(UTC)) < timedelta(minutes=10), sent["Date"]

        # Step 5: the web copy, the archive page and its feed are in storage.
        storage = tmp_path / "storage" / "newsletters"
        assert (storage / month / "index.html").read_bytes() == draft
        assert (storage / "index.html").is_file()
        assert feedparser.parse((storage / "feed.xml").read_bytes()).entries

        # A sent issue is never rebuilt, --force included (test_release covers a second send).
        refused = shell(f"{build} --force", **sources, **smtp)
        assert refused.returncode == 1 and "immutable" in refused.stderr, refused
        assert (issue / "index.html").read_bytes() == draft
        assert sum(mailbox.count().values()) == 3


@pytest.mark.prefect
def test_producers_and_listeners_guides_an_episode_from_inbox_to_feed(shell, checkout, tmp_path):
    text = guide("Producers: publishing an episode")
    publish = the_command(commands_of(text), has="podcast")
    assert "`episodes/inbox/`" in text
    inbox = checkout / "episodes" / "inbox"
    for suffix in (".mp3", ".md", ".vtt"):
        shutil.copy(DEMO_DIR / "episodes" / f"ai-i-kommunens-vardag{suffix}", inbox)
    (inbox / "trasig.mp3").write_bytes(b"not audio at all" * 100)
    (inbox / "trasig.md").write_text("---\ntitle: Trasig\n---\nBeskrivning.\n", "utf-8")
    # Files just copied count as still being copied for 10 s; the guide's next scheduled run
    # takes them then. Here the run takes them at once.
    done = shell(publish, KRAFTSAMLING_SETTLE_SECONDS="0")
    # One file was refused, so the command says so and exits 1; the other is published.
    assert done.returncode == 1, done.stderr
    assert "Some episodes were not published (the others were)" in done.stderr
    assert "1 published" in done.stderr and "1 failed" in done.stderr

    published = checkout / "episodes" / "published"
    failed = checkout / "episodes" / "failed"
    assert (published / "ai-i-kommunens-vardag.mp3").is_file()
    assert (failed / "trasig.mp3").is_file()
    note = (failed / "trasig.error.txt").read_text("utf-8")
    assert "trasig.mp3" in note
    assert sorted(p.name for p in inbox.iterdir()) == [".gitkeep"]  # the rest moved

    # The listeners' guide: the feed at <public URL>/podcast/feed.xml, read by real clients.
    listeners = guide("Listeners")
    assert "<public URL>/podcast/feed.xml" in listeners
    feed = tmp_path / "storage" / "podcast" / "feed.xml"
    parsed = podcastparser.parse(PUBLIC_URL + "podcast/feed.xml", feed.open("rb"))
    titles = [episode["title"] for episode in parsed["episodes"]]
    assert titles == ["AI i kommunens vardag"]
    enclosure = parsed["episodes"][0]["enclosures"][0]["url"]
    assert enclosure.startswith(PUBLIC_URL + "podcast/audio/")
    assert feedparser.parse(feed.read_bytes()).entries[0].title == "AI i kommunens vardag"
