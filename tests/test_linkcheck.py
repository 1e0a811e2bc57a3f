"""The link check of a draft, against a real HTTP server on 127.0.0.1 (tests/httpserver.py)."""

from __future__ import annotations

import socket
import time

from flows.newsletter.linkcheck import Link, LinkReport, check_links, draft_links

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
