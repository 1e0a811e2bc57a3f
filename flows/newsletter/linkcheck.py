"""Check the links of a draft before reviewers read it (as mail tools check a campaign).

- Only HEAD and GET are ever sent (GET when a server refuses HEAD), with the project's
  User-Agent; a GET's body is never read.
- Redirects are followed and reported; 4xx and 5xx answers, timeouts, TLS errors and
  servers that cannot be reached are problems, each listed with the item the link belongs to.
- At most `concurrency` links at a time, each within `timeout` seconds all told (a server
  that sends one byte at a time cannot hold it), and the whole check within `budget`
  seconds: links not checked by then are listed as such. Nothing here raises for a link;
  sending is never blocked, the reviewer decides.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from lxml import html as lxml_html

LINK_TIMEOUT = 10.0  # seconds for one link, redirects included; capped by the budget
CONCURRENCY = 8
MAX_REDIRECTS = 10

Verdict = Literal["ok", "redirected", "broken", "timeout", "tls", "unreachable", "unchecked"]
# The verdicts that are problems, with how a report names them (good links are not named).
PROBLEMS: dict[Verdict, str] = {
    "broken": "broken",
    "timeout": "timed out",
    "tls": "TLS error",
    "unreachable": "not reached",
    "unchecked": "not checked",
}


@dataclass(frozen=True)
class Link:
    url: str
    item: str  # what the reader sees the link under: an item's title, or the link's text


@dataclass(frozen=True)
class LinkOutcome:
    link: Link
    verdict: Verdict
    detail: str = ""  # "HTTP 404 Not Found", "no answer within 10 s", the final URL...

    @property
    def problem(self) -> bool:
        return self.verdict in PROBLEMS


@dataclass(frozen=True)
class LinkReport:
    outcomes: tuple[LinkOutcome, ...] = ()
    seconds: float = 0.0
    off: str = ""  # why the check did not run ("turned off ..."), else ""

    @property
    def problems(self) -> list[LinkOutcome]:
        return [o for o in self.outcomes if o.problem]

    @property
    def redirects(self) -> list[LinkOutcome]:
        return [o for o in self.outcomes if o.verdict == "redirected"]

    def summary(self) -> str:
        """One line: how many links, how many with problems, how long it took."""
        if self.off:
            return f"Link check: {self.off}."
        count = len(self.outcomes)
        links = "1 link" if count == 1 else f"{count} links"
        return (
            f"Link check: {links} checked in {self.seconds:.1f} s; "
            f"{len(self.problems)} with a problem, {len(self.redirects)} redirected."
        )

    def lines(self) -> list[str]:
        """The summary, then one line per problem and per redirect (good links are not named)."""
        lines = [self.summary()]
        for outcome in self.problems:
            lines.append(f"  {PROBLEMS[outcome.verdict]}: {outcome.link.url} ({outcome.detail})")
            lines.append(f"      in: {outcome.link.item}")
        for outcome in self.redirects:
            lines.append(f"  redirected: {outcome.link.url} -> {outcome.detail}")
            lines.append(f"      in: {outcome.link.item}")
        if self.problems:
            lines.append(
                "  Fix the link in the source (the post, the event or intro.md) and build the "
                "draft again, or approve as it is: sending is not blocked."
            )
        return lines

    def to_json(self) -> dict[str, Any]:
        """What review.json keeps, so a resumed review shows the same result."""
        return {
            "seconds": round(self.seconds, 2),
            "off": self.off,
            "outcomes": [
                {"url": o.link.url, "item": o.link.item, "verdict": o.verdict, "detail": o.detail}
                for o in self.outcomes
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinkReport:
        outcomes = tuple(
            LinkOutcome(Link(row["url"], row["item"]), row["verdict"], row.get("detail", ""))
            for row in data.get("outcomes") or []
        )
        return cls(outcomes, float(data.get("seconds") or 0.0), str(data.get("off") or ""))


def draft_links(
    html: str, items: Iterable[tuple[str, str | None]], skip: Iterable[str] = ()
) -> list[Link]:
    """The distinct http(s) links of a draft's HTML, in order, each named by the item whose
    link it is (from `items`: (title, link) pairs) or else by its own text. `skip` holds URLs
    that cannot answer yet, such as the web copy published only when the issue is sent."""
    titles = {link: title for title, link in items if link}
    skipped = set(skip)
    links: dict[str, Link] = {}
    for anchor in lxml_html.fromstring(html or "<html/>").iter("a"):
        url = (anchor.get("href") or "").strip()
        if not url.lower().startswith(("http://", "https://")) or url in skipped:
            continue
        if url not in links:
            text = " ".join(anchor.text_content().split()) or url
            links[url] = Link(url, titles.get(url, text))
    return list(links.values())


def check_links(
    links: Sequence[Link],
    user_agent: str,
    budget: float,
    *,
    timeout: float = LINK_TIMEOUT,
    concurrency: int = CONCURRENCY,
) -> LinkReport:
    """Check `links` within `budget` seconds in all (see the module's docstring)."""
    started = time.monotonic()
    outcomes = asyncio.run(_check_all(links, user_agent, budget, min(timeout, budget), concurrency))
    return LinkReport(tuple(outcomes), time.monotonic() - started)


@dataclass
class _Run:
    client: httpx.AsyncClient
    slots: asyncio.Semaphore
    timeout: float
    begun: set[str] = field(default_factory=set)


async def _check_all(
    links: Sequence[Link], user_agent: str, budget: float, timeout: float, concurrency: int
) -> list[LinkOutcome]:
    client = httpx.AsyncClient(
        headers={"User-Agent": user_agent},
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        timeout=timeout,
    )
    async with client:
        run = _Run(client, asyncio.Semaphore(concurrency), timeout)
        tasks = {asyncio.create_task(_check_one(run, link)): link for link in links}
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return [
        task.result() if task in done else _out_of_budget(link, run, budget)
        for task, link in tasks.items()
    ]


def _out_of_budget(link: Link, run: _Run, budget: float) -> LinkOutcome:
    if link.url in run.begun:
        return LinkOutcome(link, "timeout", f"no answer before the check's {budget:g} s ran out")
    return LinkOutcome(link, "unchecked", f"the check's {budget:g} s ran out first")


async def _check_one(run: _Run, link: Link) -> LinkOutcome:
    async with run.slots:
        run.begun.add(link.url)
        try:
            response = await asyncio.wait_for(_ask(run.client, link.url), run.timeout)
        except (TimeoutError, httpx.TimeoutException):
            return LinkOutcome(link, "timeout", f"no answer within {run.timeout:g} s")
        except httpx.TooManyRedirects:
            return LinkOutcome(link, "broken", f"more than {MAX_REDIRECTS} redirects")
        except httpx.HTTPError as exc:
            return _transport_problem(link, exc)
    if response.status_code >= 400:
        return LinkOutcome(link, "broken", f"HTTP {response.status_code} {response.reason_phrase}")
    final = str(response.url)
    if response.history and final != link.url:
        return LinkOutcome(link, "redirected", final)
    return LinkOutcome(link, "ok")


async def _ask(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """HEAD; GET (headers only) when the server refuses HEAD, as many do with 403/404/405."""
    response = await client.head(url)
    if response.status_code < 400:
        return response
    async with client.stream("GET", url) as answer:
        return answer  # the body is never read


def _transport_problem(link: Link, exc: httpx.HTTPError) -> LinkOutcome:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return LinkOutcome(link, "tls", f"TLS error: {cause.__class__.__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    reason = str(exc) or exc.__class__.__name__
    return LinkOutcome(link, "unreachable", f"could not connect: {reason}")
