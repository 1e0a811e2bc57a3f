"""Command line: `python -m flows <command>` (or `kraftsamling <command>`).

Each command parses its arguments, calls one job and turns the project's errors into a
clean message and exit status 1. Any other exception (a bug, a missing module) is one line
too, `error: <step>: <type>: <message>`, with the file its full traceback was written to;
`--debug` prints the traceback instead. `demo`, `podcast`, `feed` and `newsletter` run their
jobs as Prefect flows when a Prefect server is configured, else directly without Prefect
(`flows.runner`); `newsletter --send` waiting for a decision, `approve` and `serve` always
use Prefect. Prefect is imported only by the commands that use it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.core.clock import system_clock
from flows.core.errors import KraftsamlingError

if TYPE_CHECKING:
    from flows.runner import Jobs


def _quiet_prefect() -> None:
    """Keep the terminal readable and the run offline unless the operator says otherwise."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server can take over 20 s (Prefect's default wait) on a busy 2-core box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


class _HideTracebacks(logging.Filter):
    """The command prints what failed in one line (and writes any traceback to a file);
    Prefect's log of the same failure with a traceback only buries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.exc_info


def _failure_line(command: str, exc: BaseException, debug: bool) -> str:
    """One line for an exception that is not one of ours, and where its traceback went."""
    step = getattr(exc, "step", None) or command
    message = " ".join(str(exc).split()) or "(no message)"
    line = f"error: {step}: {exc.__class__.__name__}: {message}"
    if debug:
        return line
    folder = Path(tempfile.gettempdir()) / f"kraftsamling-errors-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        stamp = system_clock().strftime("%Y%m%dT%H%M%S")
        path = folder / f"{stamp}-{command}-{os.getpid()}.txt"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return f"{line}\n  run again with --debug to see the traceback"
    return f"{line}\n  the full traceback is in {path} (or run again with --debug)"


def _hide_tracebacks() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_HideTracebacks())


class _QuietDrain(logging.Filter):
    """Prefect's "Still processing items: N remaining" while its event queue drains at exit:
    a short command ends before the queue is empty, and the items are sent all the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Still processing items")


def _plain_logging() -> None:
    """Without Prefect, warnings on stderr as Prefect's console would show them (a no-op
    when logging is already set up)."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s",
        datefmt="%H:%M:%S",
    )


def _add_storage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage", help="a folder, file:///path or s3://bucket/prefix (default: .storage)"
    )
    parser.add_argument("--public-url", help="public https base URL of the storage's objects")


def _instant(text: str) -> datetime:
    """`--now`: an ISO-8601 moment with its UTC offset (a bare local time is ambiguous)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time; write e.g. 2027-01-01T08:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add one, e.g. {text}+01:00 (Stockholm in winter)"
        )
    return moment


def _add_now_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--now",
        type=_instant,
        metavar="ISO-8601",
        help="run as if it were this moment (with offset, e.g. 2027-01-01T08:00:00+01:00): "
        "for re-running a past month or backfilling",
    )


class _Said:
    """A plain message for commands that return no result object."""

    def __init__(self, text: str) -> None:
        self.text = text

    def summary(self) -> str:
        return self.text


def _add_newsletter_parser(commands: Any) -> None:
    news = commands.add_parser("newsletter", help="build the month's newsletter draft")
    news.add_argument("--month", help="the issue's month, YYYY-MM (default: this month)")
    news.add_argument("--posts", nargs="+", metavar="SOURCE", help="posts feeds: URLs or paths")
    news.add_argument("--events", nargs="+", metavar="SOURCE", help=".ics/.yaml: URLs or paths")
    news.add_argument("--out", help="folder of issues (default: newsletters)")
    news.add_argument(
        "--force",
        action="store_true",
        help="build even with nothing new; with --send, rebuild instead of sending the "
        "existing draft (a sent issue is never rebuilt)",
    )
    news.add_argument(
        "--send",
        action="store_true",
        help="send the month's draft (built first when there is none) for review, wait for "
        "approval, send",
    )
    news.add_argument("--to", nargs="+", metavar="ADDRESS", help="recipients (a list address)")
    news.add_argument("--reviewers", nargs="+", metavar="ADDRESS", help="get a test copy first")
    news.add_argument(
        "--approve", action="store_true", help="approve up front instead of waiting (demo, tests)"
    )
    news.add_argument(
        "--timeout",
        type=int,
        default=3 * 24 * 3600,
        metavar="SECONDS",
        help="how long to wait for a decision (default: 3 days)",
    )
    news.add_argument(
        "--no-link-check",
        dest="link_check",
        action="store_false",
        default=None,
        help="do not check the draft's links before the test copy goes out",
    )
    _add_storage_args(news)
    _add_now_arg(news)

    commands.add_parser(
        "smtp-check",
        help="check the KRAFTSAMLING_SMTP_* settings: connect, start TLS, log in, quit; "
        "sends nothing",
    )

    approve = commands.add_parser(
        "approve", help="approve (or reject) the newsletter issue that waits for a decision"
    )
    approve.add_argument("month", help="the issue's month, YYYY-MM")
    approve.add_argument("--reject", action="store_true", help="reject: nothing is sent")
    approve.add_argument("--comment", default="", help="a comment for the run's record")


def _add_podcast_parsers(commands: Any) -> None:
    podcast = commands.add_parser("podcast", help="publish the episodes dropped in the inbox")
    podcast.add_argument("--episodes", help="the drop folder (default: episodes)")
    _add_storage_args(podcast)
    _add_now_arg(podcast)

    feed = commands.add_parser("feed", help="regenerate and publish the podcast feed")
    feed.add_argument("--episodes", help="folder with show.yaml (default: episodes)")
    feed.add_argument(
        "--remove",
        nargs="+",
        metavar="GUID",
        default=[],
        help="remove these episodes from the feed for good (the catalog keeps the record "
        "with removed_at; no audio is deleted)",
    )
    _add_storage_args(feed)
    _add_now_arg(feed)

    recover = commands.add_parser(
        "recover-catalog",
        help="rebuild a lost podcast/catalog.json from its newest backup, the live feed and "
        "the audio's tags (writes only where no catalog exists)",
    )
    recover.add_argument(
        "--dry-run", action="store_true", help="say what would be recovered, write nothing"
    )
    recover.add_argument("--storage", help="a folder, file:///path or s3://bucket/prefix")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows",
        description="Publish the Kraftsamling newsletter and the Digitalsamtal podcast.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="publish the shipped demo episodes and build the demo newsletter, offline"
    )
    demo.add_argument("--workdir", default=".demo", help="working folder (default: .demo)")
    _add_newsletter_parser(commands)
    _add_podcast_parsers(commands)
    commands.add_parser(
        "bench",
        add_help=False,
        help="run every benchmark and print one table (tests/bench/run_all.py; --quick)",
    )
    serve = commands.add_parser(
        "serve", help="serve all three deployments with their schedules (needs a Prefect server)"
    )
    _add_storage_args(serve)
    serve.add_argument(
        "--prefect-yaml",
        default="prefect.yaml",
        help="the deployments file (default: prefect.yaml in the working folder)",
    )
    return parser


# --- one function per command: each calls one job and returns what it made -----------------
# `args.jobs` (set by `main`) runs the jobs: directly, or as Prefect flows (flows.runner).


def _demo(args: argparse.Namespace) -> Any:
    from flows.demo import run_demo

    return run_demo(args.workdir, args.jobs)


def _newsletter(args: argparse.Namespace) -> Any:
    return args.jobs.newsletter(
        month=args.month,
        posts=args.posts,
        events=args.events,
        out=args.out,
        force=args.force,
        storage=args.storage,
        public_url=args.public_url,
        send=args.send,
        to=args.to,
        reviewers=args.reviewers,
        approve=True if args.approve else None,
        approval_timeout_seconds=args.timeout,
        now=args.now,
        link_check=args.link_check,
    )


def _approve(args: argparse.Namespace) -> Any:
    from flows.core.settings import Settings
    from flows.newsletter.approval import resume_with_decision
    from flows.newsletter.edition import edition_for

    # The waiting run is found by the edition's key: the one the settings select.
    edition = edition_for(Settings.load())
    run_id = resume_with_decision(
        args.month, approve=not args.reject, comment=args.comment, edition=edition
    )
    verdict = "rejected" if args.reject else "approved"
    return _Said(f"Issue {args.month} {verdict}; flow run {run_id} resumes.")


def _smtp_check(args: argparse.Namespace) -> Any:
    from flows.core.settings import Settings
    from flows.newsletter.release import resolve_smtp_password
    from flows.newsletter.smtp import check_smtp

    return _Said(check_smtp(resolve_smtp_password(Settings.load())))


def _podcast(args: argparse.Namespace) -> Any:
    return args.jobs.publish_episodes(
        episodes=args.episodes, storage=args.storage, public_url=args.public_url, now=args.now
    )


def _feed(args: argparse.Namespace) -> Any:
    return args.jobs.regenerate_feed(
        episodes=args.episodes,
        storage=args.storage,
        public_url=args.public_url,
        remove_guids=args.remove,
        now=args.now,
    )


def _recover_catalog(args: argparse.Namespace) -> Any:
    from flows.core.backends import open_storage
    from flows.core.settings import Settings
    from flows.podcast.recover import recover_catalog, write_recovered

    storage = open_storage(Settings.load(storage=args.storage))
    recovery = recover_catalog(storage, system_clock())
    if args.dry_run:
        return _Said(f"Would recover (nothing written):\n{recovery.summary()}")
    write_recovered(storage, recovery)
    return _Said(
        f"Recovered {storage.describe()}/podcast/catalog.json: {recovery.summary()}\n"
        "Run `python -m flows feed` to check the feed against it."
    )


def _bench(rest: Sequence[str]) -> int:
    import runpy

    script = Path("tests") / "bench" / "run_all.py"
    if not script.is_file():
        print(
            f"error: {script.resolve()} does not exist: the benchmarks live in the "
            "repository. Run `python -m flows bench` from the root of a checkout "
            "installed with its test extra (`pip install -e '.[test]'`).",
            file=sys.stderr,
        )
        return 1
    return runpy.run_path(str(script))["main"](rest, prog="python -m flows bench")


def _serve(args: argparse.Namespace) -> None:
    from flows.serve import serve_all

    # Blocks until Ctrl-C/SIGTERM; nothing to summarise.
    serve_all({"storage": args.storage, "public_url": args.public_url}, Path(args.prefect_yaml))


_RUN = {
    "demo": _demo,
    "newsletter": _newsletter,
    "approve": _approve,
    "smtp-check": _smtp_check,
    "podcast": _podcast,
    "feed": _feed,
    "recover-catalog": _recover_catalog,
}


def _refuse_future_now(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A future "now" would publish scheduled episodes before their time (and apps keep what
    they saw); for publishing, --now only re-runs the past. A newsletter draft may be built
    as of a later day: it is reviewed before anything goes out."""
    pinned: datetime | None = getattr(args, "now", None)
    future = pinned is not None and pinned > system_clock() + timedelta(minutes=5)
    if pinned is not None and future and args.command in ("podcast", "feed"):
        parser.error(
            f"--now {pinned.isoformat()} is in the future; for `{args.command}` --now re-runs "
            "a past moment (a backfill). Leave it out to run as of now."
        )


# Commands that run jobs (directly or as flows), and those that always need Prefect.
_JOBS = ("demo", "newsletter", "podcast", "feed")
_ON_PREFECT = ("approve", "serve")


def _waits_for_a_person(args: argparse.Namespace) -> bool:
    return args.command == "newsletter" and args.send and not args.approve


def _set_up_runs(args: argparse.Namespace, session: ExitStack) -> None:
    """`args.jobs` for the commands that run jobs, and Prefect set up when it is used."""
    jobs: Jobs | None = None
    if args.command in _JOBS:
        from flows.runner import choose

        jobs = choose(waits_for_a_person=_waits_for_a_person(args))
    args.jobs = jobs
    if args.command not in _ON_PREFECT and (jobs is None or jobs.mode == "direct"):
        _plain_logging()
        return
    import prefect  # noqa: F401  (configures Prefect's logging before we add a filter)

    from flows.runner import prefect_session

    if not args.debug:
        _hide_tracebacks()
    for service in ("EventsWorker", "APILogWorker"):
        logging.getLogger(service).addFilter(_QuietDrain())
    # A short command does not idle on the heartbeat; a run that waits for days keeps it.
    heartbeat = _waits_for_a_person(args) or args.command == "serve"
    session.enter_context(prefect_session(heartbeat=heartbeat))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in `argv` (default: this process's command line); its exit status."""
    status = _run_command(argv)
    if argv is None:
        # The process ends now: leave its objects to the operating system instead of a last
        # garbage collection over every module Prefect and the project loaded (~0.3 s).
        # Files, logs and Prefect's queues are flushed at exit all the same.
        gc.freeze()
    return status


def _run_command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "bench" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _refuse_future_now(parser, args)
    _quiet_prefect()
    try:
        with ExitStack() as session:
            _set_up_runs(args, session)
            if args.command == "bench":
                return _bench(rest)
            if args.command == "serve":
                _serve(args)
                return 0
            result = _RUN[args.command](args)
    except KraftsamlingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug or a broken install: one line, the traceback kept
        if args.debug:
            traceback.print_exc()
        print(_failure_line(args.command, exc, args.debug), file=sys.stderr)
        return 1
    release = getattr(result, "release", None)
    if release is not None and release.decision == "timed-out":
        # Nothing was sent although sending was asked for: not a success for cron or CI.
        print(result.summary(), file=sys.stderr)
        return 1
    print(result.summary())
    return 0
