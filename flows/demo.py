"""The README's first command: publish the shipped demo episodes and build the demo newsletter.

The demo names its own month and "now", so it gives the same issue on any day. It never
changes tracked files: demo audio is copied from `demo/episodes/` into a working drop folder
under `.demo/`, published to a local storage folder `.demo/storage/`, and the newsletter
is written to `newsletters/<month>/` (generated files there are git-ignored). Running it
twice works: the second run finds every episode already published and uploads nothing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect import flow

from flows.feed import regenerate_feed
from flows.models import STOCKHOLM
from flows.newsletter import newsletter
from flows.podcast import publish_episodes
from flows.settings import DEMO_DIR, REPO_ROOT

DEMO_MONTH = "2026-12"
DEMO_NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
DEMO_PUBLIC_URL = "https://kraftsamling.example/"


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo works and writes."""

    workdir: Path
    episodes: Path
    storage: Path
    newsletters: Path


def prepare_demo(workdir: Path) -> DemoPaths:
    """A fresh drop folder filled with the demo episodes; storage is kept between runs."""
    workdir = workdir.resolve()
    episodes = workdir / "episodes"
    if episodes.exists():
        shutil.rmtree(episodes)
    (episodes / "inbox").mkdir(parents=True)
    show_dir = REPO_ROOT / "episodes"
    for name in ("show.yaml", "cover.jpg"):
        shutil.copy2(show_dir / name, episodes / name)
    for source in sorted((DEMO_DIR / "episodes").iterdir()):
        if source.is_file() and not source.name.startswith("."):
            shutil.copy2(source, episodes / "inbox" / source.name)
    return DemoPaths(workdir, episodes, workdir / "storage", REPO_ROOT / "newsletters")


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, and where a person can look."""

    paths: DemoPaths
    podcast: object
    feed: object
    issue: object

    def summary(self) -> str:
        issue_dir = self.paths.newsletters / DEMO_MONTH
        lines = [
            self.podcast.summary(),
            "",
            self.feed.summary(),
            "",
            self.issue.summary(),
            "",
            "Look here:",
            f"  newsletter (open in a browser): {issue_dir / 'index.html'}",
            f"  newsletter, plain text:        {issue_dir / 'newsletter.txt'}",
            f"  podcast feed:                  {self.paths.storage / 'podcast' / 'feed.xml'}",
            f"  storage folder:                {self.paths.storage}",
            f"  drop folder after the run:     {self.paths.episodes}",
        ]
        return "\n".join(lines)


@flow(name="demo", log_prints=False)
def demo_flow(workdir: str = ".demo") -> DemoResult:
    """Publish the demo episodes, then build the demo month's newsletter (one Prefect start)."""
    paths = prepare_demo(Path(workdir))
    common = {"storage": str(paths.storage), "public_url": DEMO_PUBLIC_URL, "now": DEMO_NOW}
    podcast = publish_episodes(episodes=str(paths.episodes), settle_seconds=0, **common)
    feed = regenerate_feed(episodes=str(paths.episodes), **common)
    issue = newsletter(month=DEMO_MONTH, out=str(paths.newsletters), force=True, **common)
    return DemoResult(paths, podcast, feed, issue)


def run_demo(workdir: str = ".demo") -> DemoResult:
    """Entry point of `python -m flows demo`."""
    return demo_flow(workdir)
