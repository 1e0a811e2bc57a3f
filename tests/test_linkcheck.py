"""The link check of a draft, against a real HTTP server on 127.0.0.1 (tests/httpserver.py)."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import time

from loopback import smtp_server
from test_release import Recorder

from flows.core.settings import Settings
from flows.demo import DEMO_MONTH, DEMO_NOW
from flows.newsletter.approval import Decision
from flows.newsletter.build import build_issue
from flows.newsletter.edition import SWEDISH
from flows.newsletter.issue import issue_dir, read_issue, read_review, web_copy_url
from flows.newsletter.linkcheck import Link, LinkReport, check_links, draft_links
from flows.newsletter.release import release_issue

UA = "KraftsamlingPublishing/test"


def five_links(server) -> list[Link]:
    return [
        Link(server.url("files/feeds/rss2.xml"), "Nyheter: the good one"),
        Link(server.url("redirect/files/feeds/rss2.xml"), "Nyheter: the moved one"),
        Link(server.url("status/404"), "Utlysningar: the gone one"),
        Link(server.url("status/500"), "Evenemang: the failing one"),
        Link(server.url("hang"), "Lyssna: the silent one"),
    ]


def test_five_links_problems_and_redirect_named_with_their_items(feed_server) -> None:
    links = five_links(feed_server)
    started = time.monotonic()
    report = check_links(links, UA, budget=4.0, timeout=1.5)
    took = time.monotonic() - started

    verdicts = {o.link.item: o.verdict for o in report.outcomes}
    assert verdicts == {
        "Nyheter: the good one": "ok",
        "Nyheter: the moved one": "redirected",
        "Utlysningar: the gone one": "broken",
        "Evenemang: the failing one": "broken",
        "Lyssna: the silent one": "timeout",
    }
    text = "\n".join(report.lines())
    assert "HTTP 404 Not Found" in text and "Utlysningar: the gone one" in text
    assert "HTTP 500" in text and "Evenemang: the failing one" in text
    assert "timed out" in text and "Lyssna: the silent one" in text
    assert f"-> {links[0].url}" in text  # the redirect names where it leads
    assert "the good one" not in text  # a good link is not named
    assert "5 links" in report.summary() and "3 with a problem, 1 redirected" in report.summary()
    assert took < 4.0 + 0.5  # within the budget (plus start-up)


def test_only_head_and_get_with_our_user_agent(feed_server) -> None:
    check_links(five_links(feed_server)[:4], UA, budget=4.0, timeout=1.5)
    assert feed_server.requests
    assert {r.method for r in feed_server.requests} <= {"HEAD", "GET"}
    assert {r.headers.get("user-agent") for r in feed_server.requests} == {UA}
    # HEAD answered 404: asked again with GET before calling the link broken.
    assert [r.method for r in feed_server.seen("status/404")] == ["HEAD", "GET"]


def test_a_server_refusing_head_is_asked_with_get(feed_server) -> None:
    link = Link(feed_server.url("nohead/files/feeds/rss2.xml"), "item")
    report = check_links([link], UA, budget=4.0, timeout=1.5)
    assert report.outcomes[0].verdict == "ok"


def test_the_budget_bounds_the_whole_check(feed_server) -> None:
    # Ten silent links, two at a time, 1 s each would take 5 s; the budget is 1.5 s.
    links = [Link(feed_server.url(f"hang?{n}"), f"item {n}") for n in range(10)]
    started = time.monotonic()
    report = check_links(links, UA, budget=1.5, timeout=1.0, concurrency=2)
    assert time.monotonic() - started < 1.5 + 0.5
    verdicts = [o.verdict for o in report.outcomes]
    assert verdicts.count("timeout") >= 2
    assert "unchecked" in verdicts  # listed, not silently dropped
    assert len(report.problems) == 10


def test_no_network_reports_what_it_could_not_reach() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = check_links([Link(f"http://127.0.0.1:{port}/x", "item")], UA, budget=3.0)
    outcome = report.outcomes[0]
    assert outcome.verdict == "unreachable" and "could not connect" in outcome.detail
    assert "not reached" in "\n".join(report.lines())


def test_draft_links_names_items_and_skips_what_cannot_answer_yet() -> None:
    html = (
        '<a href="https://a.se/1">Läs mer</a> <a href="https://a.se/2">Anmäl dig</a>'
        '<a href="mailto:x@y.se">mejla</a> <a href="https://a.se/1">dubblett</a>'
        '<a href="https://web.se/newsletters/2026-12/">webbversion</a>'
    )
    links = draft_links(
        html, [("Titel ett", "https://a.se/1")], skip=["https://web.se/newsletters/2026-12/"]
    )
    assert links == [Link("https://a.se/1", "Titel ett"), Link("https://a.se/2", "Anmäl dig")]


def test_report_survives_review_json() -> None:
    from flows.newsletter.linkcheck import LinkOutcome

    outcome = LinkOutcome(Link("https://a.se/1", "Titel"), "broken", "HTTP 404 Not Found")
    report = LinkReport((outcome,), 1.25, "")
    assert LinkReport.from_json(report.to_json()) == report


# --- the check in the review: test copy, artifact (show_review) and console -----------------

ITEM = """<item><title>{title}</title><link>{link}</link><guid>{guid}</guid>
<pubDate>{day} Nov 2026 09:00:00 +0100</pubDate><category>Nyheter</category>
<description>Om {title}.</description></item>"""


def five_link_draft(tmp_path, server, monkeypatch) -> Settings:
    titles = ["Bra länk", "Flyttad sida", "Borttagen sida", "Trasig server", "Tyst server"]
    paths = ["files/feeds/rss2.xml", "redirect/files/feeds/rss2.xml", "status/404"]
    paths += ["status/500", "hang"]
    items = "".join(
        ITEM.format(title=t, link=server.url(p), guid=f"g{n}", day=10 + n)
        for n, (t, p) in enumerate(zip(titles, paths, strict=True))
    )
    feed = tmp_path / "posts.xml"
    feed.write_text(
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<link>{server.url('files/')}</link>{items}</channel></rss>",
        encoding="utf-8",
    )
    monkeypatch.setenv("KRAFTSAMLING_LINK_CHECK", "true")
    monkeypatch.setenv("KRAFTSAMLING_LINK_CHECK_BUDGET", "6")
    monkeypatch.setenv("KRAFTSAMLING_HTTP_ONLY_HOSTS", "127.0.0.1")  # the test server has no TLS
    # Every link of the draft on 127.0.0.1: the footer's too.
    monkeypatch.setenv("KRAFTSAMLING_SITE_URL", server.url("files/feeds/rss2.xml"))
    monkeypatch.setenv("KRAFTSAMLING_UNSUBSCRIBE_URL", server.url("files/feeds/atom.xml"))
    settings = Settings.load(
        posts=[str(feed)],
        events=[],
        newsletters_dir=str(tmp_path / "newsletters"),
        storage=str(tmp_path / "storage"),
    )
    assert build_issue(settings, DEMO_MONTH, DEMO_NOW).written
    return settings


def test_the_review_lists_broken_links_with_their_items(tmp_path, feed_server, monkeypatch, caplog):
    settings = five_link_draft(tmp_path, feed_server, monkeypatch)
    draft = read_issue(issue_dir(settings, DEMO_MONTH))
    links = draft_links(draft.html, [], skip=[web_copy_url(settings, DEMO_MONTH, SWEDISH)])
    assert len(links) == 6  # the five items' and the unsubscribe page (the site's is item 1's)
    assert all(link.url.startswith(feed_server.base) for link in links)

    recorder = Recorder()
    shown: list[str] = []
    with smtp_server(recorder) as port:
        smtp = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            release_issue(
                settings.model_copy(update=smtp),
                DEMO_MONTH,
                recipients=["lista@kraftsamling.example"],
                reviewers=["granskare@kraftsamling.example"],
                wait_for_decision=lambda *_: Decision(decision="reject", comment="länkar"),
                show_review=lambda _month, markdown: shown.append(markdown),
            )
        took = time.monotonic() - started
    assert took < 6 + 5  # the check's budget, plus building the messages

    copy = email.message_from_bytes(recorder.envelopes[0][1], policy=email.policy.default)
    text = copy.get_body(("plain",)).get_content()
    html = copy.get_body(("html",)).get_content()
    for where, body in (("test copy text", text), ("test copy HTML", html), ("review", shown[0])):
        for expected in ("HTTP 404 Not Found", "Borttagen sida", "HTTP 500", "Trasig server"):
            assert expected in body, (where, expected)
        assert "timed out" in body and "Tyst server" in body, where
        assert "redirected" in body and "Flyttad sida" in body, where
        assert "Bra länk" not in body.split("Link check:")[1].split("Fix the link")[0], where
    console = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "HTTP 404 Not Found" in console and "Tyst server" in console
    # Sending is not blocked by the check: the reviewer decided (here: rejected).
    assert read_review(issue_dir(settings, DEMO_MONTH))["status"] == "rejected"


def test_the_check_can_be_turned_off(tmp_path, feed_server, monkeypatch):
    settings = five_link_draft(tmp_path, feed_server, monkeypatch)
    shown: list[str] = []
    release_issue(
        settings.model_copy(update={"link_check": False}),
        DEMO_MONTH,
        recipients=["lista@kraftsamling.example"],
        wait_for_decision=lambda *_: Decision(decision="reject"),
        show_review=lambda _month, markdown: shown.append(markdown),
    )
    assert feed_server.requests == []  # not one request
    assert "Link check" not in shown[0]


def test_the_flag_turns_the_check_off() -> None:
    from flows.cli import build_parser

    args = build_parser().parse_args(["newsletter", "--send", "--to", "x@y.se", "--no-link-check"])
    assert args.link_check is False
    assert build_parser().parse_args(["newsletter"]).link_check is None
