"""The README's first command: publish the shipped demo episodes and build the demo newsletter.

The demo names its own month and "now", so it gives the same issue on any day. It runs in a
checkout of the repository (the working folder) and writes only under `.demo/`: demo audio
is copied from `demo/episodes/` into a working drop folder `.demo/episodes/`, published to a
local storage folder `.demo/storage/`, and the newsletter, with the shipped intro
`newsletters/<month>/intro.md`, is written to `.demo/newsletters/<month>/`, never into the
real `newsletters/` (a production checkout's issue of that month stays as it is). Its
posts and events are the files in `demo/`; no other command ever uses them by default.
Running it twice works: the second run finds every episode already published and uploads nothing.
With no Prefect server configured the three jobs run directly, without Prefect; with one,
as three flows inside one `demo` flow run (`flows.runner`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flows.core.errors import SettingsError
from flows.core.models import STOCKHOLM

if TYPE_CHECKING:
    from flows.newsletter.build import IssueResult
    from flows.podcast.feedpublish import FeedResult
    from flows.podcast.report import PublishReport
    from flows.runner import Jobs

DEMO_MONTH = "2026-12"
DEMO_NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
DEMO_PUBLIC_URL = "https://kraftsamling.example/"


# What the demo reads from the checkout.
DEMO_FILES = (
    "demo/posts.xml",
    "demo/events.ics",
    "demo/events.yaml",
    "episodes/show.yaml",
    "episodes/cover.jpg",
    f"newsletters/{DEMO_MONTH}/intro.md",
)


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo works and writes."""

    workdir: Path
    episodes: Path
    storage: Path
    newsletters: Path


def find_checkout(folder: Path) -> Path:
    """The repository checkout the demo runs in: `folder` itself, which must hold the demo."""
    folder = folder.resolve()
    missing = [name for name in DEMO_FILES if not (folder / name).is_file()]
    if missing:
        raise SettingsError(
            f"{folder} is not the repository's root (no {', '.join(missing)}): the demo "
            "publishes the demo content shipped in the repository. Clone it, `cd` into it "
            "and run `python -m flows demo` there."
        )
    return folder


def demo_sources(root: Path) -> tuple[list[str], list[str]]:
    """The demo's posts and events sources in checkout `root`."""
    demo = root / "demo"
    return [str(demo / "posts.xml")], [str(demo / "events.ics"), str(demo / "events.yaml")]


def prepare_demo(workdir: Path, root: Path) -> DemoPaths:
    """A fresh drop folder filled with the demo episodes; storage is kept between runs."""
    workdir = workdir.resolve()
    episodes = workdir / "episodes"
    if episodes.exists():
        shutil.rmtree(episodes)
    (episodes / "inbox").mkdir(parents=True)
    show_dir = root / "episodes"
    for name in ("show.yaml", "cover.jpg"):
        shutil.copy2(show_dir / name, episodes / name)
    for source in sorted((root / "demo" / "episodes").iterdir()):
        if source.is_file() and not source.name.startswith("."):
            shutil.copy2(source, episodes / "inbox" / source.name)
    newsletters = workdir / "newsletters"
    (newsletters / DEMO_MONTH).mkdir(parents=True, exist_ok=True)
    intro = f"{DEMO_MONTH}/intro.md"
    shutil.copy2(root / "newsletters" / intro, newsletters / intro)
    return DemoPaths(workdir, episodes, workdir / "storage", newsletters)


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, and where a person can look."""

    paths: DemoPaths
    podcast: PublishReport
    feed: FeedResult
    issue: IssueResult

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


def demo_body(workdir: str, jobs: Jobs) -> DemoResult:
    """Publish the demo episodes, then build the demo month's newsletter."""
    root = find_checkout(Path.cwd())
    paths = prepare_demo(root / workdir, root)
    posts, events = demo_sources(root)
    storage, episodes = str(paths.storage), str(paths.episodes)
    podcast = jobs.publish_episodes(
        episodes=episodes,
        storage=storage,
        public_url=DEMO_PUBLIC_URL,
        now=DEMO_NOW,
        settle_seconds=0,
    )
    feed = jobs.regenerate_feed(
        episodes=episodes, storage=storage, public_url=DEMO_PUBLIC_URL, now=DEMO_NOW
    )
    issue = jobs.newsletter(
        month=DEMO_MONTH,
        out=str(paths.newsletters),
        posts=posts,
        events=events,
        force=True,
        storage=storage,
        public_url=DEMO_PUBLIC_URL,
        now=DEMO_NOW,
    )
    return DemoResult(paths, podcast, feed, issue)


def run_demo(workdir: str = ".demo", jobs: Jobs | None = None) -> DemoResult:
    """Entry point of `python -m flows demo`; checks the checkout before anything starts.

    `jobs` runs the three jobs (`flows.runner`): directly, or as flows inside one `demo`
    flow run on a Prefect server (default: as `runner.choose` decides)."""
    from flows.runner import choose

    find_checkout(Path.cwd())
    chosen = jobs or choose()

    def demo() -> DemoResult:
        return demo_body(workdir, chosen)

    return chosen.group("demo", demo)
