"""Any Unicode in the text of episodes, the show, posts and events: the feed and the email
either carry it exactly (modulo the normalisations stated below as pure functions) or refuse
it with a clear error. Never a crash, never XML or HTML that does not parse.

Normalisations, on purpose (flows/podcast/feed.py, flows/newsletter/sources.py,
flows/newsletter/render.py):

- `xml_chars`: characters XML 1.0 forbids (C0 controls except tab/LF/CR, lone surrogates,
  U+FFFE/U+FFFF) are removed from everything the feed holds.
- `expected_title`: one-line fields (titles, names) are also put on one line: runs of
  whitespace (Unicode's definition) become one space, ends trimmed.
- Episode titles are plain text as the sidecar reads them (`flows.podcast.sidecar_values.
  plain_text`): an HTML entity is read as its character, HTML tags of a title with a closing
  tag and direction overrides are removed. The feed gets titles only that way; a title that
  still held "&amp;" beside "<>" could not be written so that readers agree: feedparser takes
  an RSS title with an entity or a closing tag for HTML (its `lookslikehtml` guess), so it
  shows '&amp;' for '<>&amp;' where podcastparser shows '<>&amp;'.
- `expected_lines`: a plain description becomes HTML paragraphs, split at blank lines
  (as given); inside one, each line break is a <br>. Read back the way a browser shows it:
  ASCII whitespace runs collapse to a space, empty paragraphs show nothing.
- `expected_email_text`: the email removes what no email may carry, by the same one policy
  as the feed (`flows.core.text.clean_text`: C0 controls except tab/LF/CR, DEL, the C1
  controls, lone surrogates, U+FFFE/U+FFFF); line ends become
  LF after the SMTP round trip (the wire uses CRLF).

Guests and hosts are read back with lxml: neither client parser exposes podcast:person.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import json
import re
from datetime import datetime, timedelta

import feedparser
import lxml.etree
import lxml.html
import podcastparser
import pytest
from conftest import REPO_ROOT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.core.errors import CatalogError, InputError
from flows.core.models import STOCKHOLM, Event, Post, PostKind
from flows.core.schema import Wrong
from flows.core.settings import Settings
from flows.newsletter.delivery import build_message
from flows.newsletter.render import render_issue
from flows.newsletter.select import select_issue
from flows.podcast.catalog import dump_catalog, parse_catalog
from flows.podcast.feed import PODCAST, _example_episode, build_feed
from flows.podcast.show import load_show, parse_show
from flows.podcast.sidecar import parse_sidecar
from flows.podcast.sidecar_values import plain_text

# A failing 10,000-character example makes a large repr; hypothesis warns about that.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
FEED_NOW = datetime(2027, 1, 1, tzinfo=STOCKHOLM)
SHOW = load_show(REPO_ROOT / "episodes" / "show.yaml")
SETTINGS = Settings.load()
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the documented normalisations, as pure functions ------------------------------------

# The one character policy (flows/core/text.py), written out here independently: the feed and
# the email remove XML 1.0's forbidden characters, DEL and the C1 controls.
_XML_FORBIDDEN = re.compile("[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_EMAIL_FORBIDDEN = _XML_FORBIDDEN
_HTML_SPACE = re.compile("[ \t\n\r\f]+")


def xml_chars(text: str) -> str:
    return _XML_FORBIDDEN.sub("", text)


def expected_title(text: str) -> str:
    return " ".join(xml_chars(text).split())


def _shown(line: str) -> str:
    return _HTML_SPACE.sub(" ", line).strip(" ")


def expected_lines(description: str, title: str) -> list[list[str]]:
    """Paragraphs -> visible lines of the item description (see the module docstring)."""
    text = description.strip() or title
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out = []
    for paragraph in paragraphs:
        one = xml_chars(paragraph).replace("\r\n", "\n").replace("\r", "\n")
        lines = [_shown(line) for line in one.split("\n")]
        if any(lines):
            out.append(lines)
    return out


def read_lines(html: str) -> list[list[str]]:
    """Visible lines per paragraph of description HTML, as a browser shows them."""
    root = lxml.html.fragment_fromstring(html or "<p></p>", create_parent="div")
    out = []
    for paragraph in root.iter("p"):
        segments = [paragraph.text or ""]
        for child in paragraph:
            assert child.tag == "br", f"unexpected <{child.tag}> in a plain description"
            segments.append(child.tail or "")
        lines = [_shown(s) for s in segments]
        if any(lines):
            out.append(lines)
    return out


def feedparser_reads(expected: str) -> set[str]:
    """What feedparser shows for a text: the text, or, when the whole text looks like UTF-8
    misread as Latin-1 ("Â¡"), its repaired form ("¡"). That repair is feedparser's own
    heuristic (podcastparser and lxml read the text exactly), so both are accepted."""
    shown = {expected}
    for codec in ("latin-1", "cp1252"):
        with contextlib.suppress(UnicodeError):
            shown.add(expected.encode(codec).decode("utf-8"))
    return shown


def expected_email_text(text: str) -> str:
    return _EMAIL_FORBIDDEN.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


# --- strategies ------------------------------------------------------------------------------

# Hypothesis' default alphabet excludes surrogates (WITH_SURROGATES below adds them; see the
# refusal tests below). Mixed in: the characters that break things most often.
TRICKY = st.sampled_from(
    ["\x00", "\x01", "\x1b", "\x7f", "\r", "\n", "\r\n", "\t", "\x0b", "\x0c", "\x85", "\u2028",
     "\u202e", "\u200f", "\ufeff", "\ufffe", "\uffff", "\xa0", "\u3000", "<", ">", "&", '"',
     "]]>", "&amp;", "<script>", "😀", "\U0010ffff", "א", " "]
)  # fmt: skip
SOME_TEXT = st.lists(st.one_of(st.text(max_size=8), TRICKY), max_size=8).map("".join)
LONG_TEXT = st.text(min_size=1, max_size=4).map(lambda s: (s * 10_000)[:10_000])
ANY_TEXT = st.one_of(SOME_TEXT, SOME_TEXT, SOME_TEXT, LONG_TEXT)
# For the email: surrogates included, since a source could hand them over.
WITH_SURROGATES = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
EMAIL_TEXT = st.one_of(
    ANY_TEXT, WITH_SURROGATES, st.tuples(SOME_TEXT, WITH_SURROGATES).map("".join)
)
# C1 controls (U+0080-U+009F) are left out of the feed properties: feedparser reads them as
# Windows-1252 (U+0080 -> "€"), so the feed must remove them; see
# test_c1_controls_are_removed_from_the_feed, which covers them on its own.
_C1 = re.compile("[\x80-\x9f]")
FEED_TEXT = st.one_of(ANY_TEXT, WITH_SURROGATES).map(lambda s: _C1.sub("", s))
# A lone CR is not a line break in the feed's description yet (test_a_lone_cr_in_a_...):
# descriptions in the property carry CR only as part of CRLF.
DESCRIPTION_TEXT = FEED_TEXT.map(lambda s: re.sub("\r(?!\n)", "\r\n", s))
TITLE_TEXT = FEED_TEXT.filter(lambda s: expected_title(s) != "")


def sidecar_title(text: str) -> str:
    """A title as the sidecar reads what a producer wrote: plain text, on one line ("" when
    the sidecar refuses it: a code such as "&#b;" that looks like a character but is none)."""
    try:
        return " ".join(plain_text(text)[0].split())
    except Wrong:
        return ""


EPISODE_TITLE = FEED_TEXT.map(sidecar_title).filter(lambda s: expected_title(s) != "")


# --- the feed --------------------------------------------------------------------------------


def _parse_all(xml: bytes) -> tuple[lxml.etree._Element, dict, dict]:
    root = lxml.etree.fromstring(xml, lxml.etree.XMLParser(resolve_entities=False))
    parsed = feedparser.parse(io.BytesIO(xml))
    assert not parsed.bozo, f"feedparser cannot read the feed: {parsed.bozo_exception}"
    gpodder = podcastparser.parse("feed.xml", io.BytesIO(xml))
    return root, parsed, gpodder


@FAST
@given(
    title=EPISODE_TITLE,
    description=DESCRIPTION_TEXT,
    guests=st.lists(FEED_TEXT.filter(lambda s: expected_title(s) != ""), max_size=3),
)
@example(title="Å🎙\u202e" * 3_334, description="rad\r\n" * 2_500, guests=["x" * 10_000])
def test_episode_text_round_trips_through_the_feed(title, description, guests):
    episode = _example_episode(title=title, description=description, guests=guests)
    xml = build_feed(SHOW, [episode], public_url="https://cdn.example/", now=FEED_NOW)
    root, parsed, gpodder = _parse_all(xml)

    want = expected_title(title)
    assert parsed.entries[0].title in feedparser_reads(want)
    assert gpodder["episodes"][0]["title"] == want
    lines = expected_lines(description, title)
    shown = parsed.entries[0].content[0].value
    assert read_lines(shown) == lines or any(
        read_lines(shown) == expected_lines(d, t)
        # feedparser repairs what the feed holds: the text without XML's forbidden characters
        for d in feedparser_reads(xml_chars(description))
        for t in feedparser_reads(xml_chars(title))
    ), "content:encoded (feedparser)"
    assert read_lines(gpodder["episodes"][0]["description_html"]) == lines, "podcastparser"
    persons = root.findall(f"channel/item/{{{PODCAST}}}person[@role='guest']")
    assert [p.text or "" for p in persons] == [expected_title(g) for g in guests]


@FAST
@given(
    title=TITLE_TEXT,
    author=TITLE_TEXT,
    description=FEED_TEXT.filter(lambda s: xml_chars(s).strip() != ""),
    copyright_=FEED_TEXT,
    hosts=st.lists(TITLE_TEXT, max_size=2),
)
def test_show_text_round_trips_through_the_feed(title, author, description, copyright_, hosts):
    show = SHOW.model_copy(
        update={
            "title": title,
            "author": author,
            "description": description,
            "copyright": copyright_,
            "hosts": hosts,
        }
    )
    xml = build_feed(show, [_example_episode()], public_url="https://cdn.example/", now=FEED_NOW)
    root, parsed, gpodder = _parse_all(xml)
    channel = root.find("channel")

    assert gpodder["title"] == expected_title(title)
    assert parsed.feed.title in feedparser_reads(expected_title(title))
    # Free text fields keep their line breaks and spaces; only forbidden characters go.
    assert channel.findtext("description") == xml_chars(description)
    assert channel.findtext("{http://www.itunes.com/dtds/podcast-1.0.dtd}author") == xml_chars(
        author
    )
    assert channel.findtext("copyright") == xml_chars(copyright_ or f"© {author}")
    persons = channel.findall(f"{{{PODCAST}}}person[@role='host']")
    assert [p.text or "" for p in persons] == [expected_title(h) for h in hosts]


def test_forbidden_characters_never_make_the_feed_invalid():
    nasty = "".join(chr(c) for c in range(0x20)) + "\x7f\ufffe\uffff]]>\U0010ffff"
    episode = _example_episode(title=nasty, description=nasty, guests=[nasty])
    show = SHOW.model_copy(update={"title": nasty, "description": nasty + "x", "hosts": [nasty]})
    xml = build_feed(show, [episode], public_url="https://cdn.example/", now=FEED_NOW)
    root, parsed, _ = _parse_all(xml)
    assert parsed.entries[0].title == expected_title(nasty) == "]]>\U0010ffff"
    assert root.find("channel/description").text == xml_chars(nasty + "x")


def test_a_lone_cr_in_a_description_is_a_line_break():
    episode = _example_episode(description="Rad ett\rRad två")
    xml = build_feed(SHOW, [episode], public_url="https://cdn.example/", now=FEED_NOW)
    _, parsed, _ = _parse_all(xml)
    assert read_lines(parsed.entries[0].content[0].value) == [["Rad ett", "Rad två"]], (
        "A lone CR in an episode description must be a line break in the feed, like LF and "
        "CRLF: 'Rad ett\\rRad två' must read back as two lines."
    )


def test_c1_controls_are_removed_from_the_feed():
    title = "Avsnitt\x85 ett\x80"
    episode = _example_episode(title=title, description=title)
    xml = build_feed(SHOW, [episode], public_url="https://cdn.example/", now=FEED_NOW)
    _, parsed, _ = _parse_all(xml)
    assert parsed.entries[0].title == "Avsnitt ett", (
        "C1 control characters (U+0080-U+009F) must not reach the feed: feedparser would show "
        "them as Windows-1252 letters ('\\x80' -> '€', '\\x85' -> '…')."
    )


# --- lone surrogates are refused where text enters ---------------------------------------------

SURROGATE_SIDECARS = [
    '---\ntitle: "Avsnitt \\ud800"\n---\nText.\n',
    '---\ntitle: Avsnitt\nguests: ["Gäst \\udfff"]\n---\n',
    '---\ntitle: Avsnitt\nchapters: [{start: 0, title: "Intro \\ud83d"}]\n---\n',
    "---\ntitle: Avsnitt\n---\nBeskrivning \ud800\n",
]


@pytest.mark.parametrize("sidecar", SURROGATE_SIDECARS)
def test_sidecar_with_a_lone_surrogate_is_refused_cleanly(sidecar):
    with pytest.raises(InputError, match=r"ep\.md: .*lone surrogate"):
        parse_sidecar(sidecar, "ep.md")


def test_show_yaml_with_a_lone_surrogate_is_refused_cleanly():
    text = (REPO_ROOT / "episodes" / "show.yaml").read_text(encoding="utf-8")
    text = text.replace("title: Digitalsamtal", 'title: "Digitalsamtal \\ud800"')
    with pytest.raises(InputError, match=r"show\.yaml: title"):
        parse_show(text)


def test_catalog_with_a_lone_surrogate_is_refused_cleanly():
    record = _example_episode().model_dump(mode="json")
    text = json.dumps({"version": 1, "episodes": [record]})
    # A JSON escape, as a hand-edited catalog could hold: json.loads makes it a lone surrogate.
    raw = text.replace('"title": "Exempel"', '"title": "Exempel \\ud800"').encode()
    try:
        episodes = parse_catalog(raw, "podcast/catalog.json")
    except CatalogError as exc:
        assert "podcast/catalog.json" in str(exc)
        return
    # Accepted: then saving it again must not crash either.
    try:
        dump_catalog(episodes)
    except UnicodeEncodeError as exc:
        pytest.fail(
            "A catalog that parse_catalog accepts must save again with dump_catalog, but a "
            f"lone surrogate from a JSON escape crashed it ({exc}); such a catalog must be "
            "refused with a CatalogError that names it."
        )


# --- the email ---------------------------------------------------------------------------------


def _email_text_part(html: str, text: str) -> str:
    message = build_message(
        html=html,
        text=text,
        subject="Kraftsamling update – december 2026",
        settings=SETTINGS,
        to="lasare@example.org",
        month="2026-12",
        now=NOW,
    )
    back = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    plain = back.get_body(("plain",)).get_content()
    html_back = back.get_body(("html",)).get_content()
    # The email package ends each part with a line end; line ends travel as CRLF.
    assert expected_email_text(html_back).rstrip("\n") == expected_email_text(html).rstrip("\n")
    return plain.replace("\r\n", "\n")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    post_texts=st.lists(st.tuples(EMAIL_TEXT, EMAIL_TEXT), min_size=1, max_size=3),
    event_text=st.tuples(EMAIL_TEXT, EMAIL_TEXT, EMAIL_TEXT),
)
@example(post_texts=[("Ö\x00" * 5_000, "ord " * 2_500)], event_text=("🎙" * 10_000, "", ""))
def test_post_and_event_text_reaches_the_email_whole_or_cleaned(post_texts, event_text):
    posts = [
        Post(
            id=f"p{number}",
            title=title,
            link=f"https://kraftsamling.example/nyheter/{number}",
            published=NOW - timedelta(days=number + 1),
            summary=summary,
            kind=PostKind.NEWS,
            source="test",
        )
        for number, (title, summary) in enumerate(post_texts)
    ]
    title, place, description = event_text
    events = [
        Event(
            id="e1",
            title=title,
            start=NOW + timedelta(days=3),
            end=None,
            all_day=False,
            source="test",
            location=place,
            description=description,
        )
    ]
    selection = select_issue(
        posts, events, month="2026-12", now=NOW, previous=[], settings=SETTINGS
    )
    rendered = render_issue(selection, SETTINGS)

    document = lxml.html.document_fromstring(rendered.html)
    assert document.find(".//script") is None
    assert not any(name.lower().startswith("on") for el in document.iter() for name in el.attrib)
    headings = [" ".join(h.text_content().split()) for h in document.iter("h3")]
    for item in [*post_texts, event_text]:
        wanted = " ".join(expected_email_text(item[0]).split())
        assert wanted in headings, f"title {item[0]!r} is not shown as {wanted!r}"

    text = _email_text_part(rendered.html, rendered.text)
    for item in [*post_texts, event_text]:
        assert expected_email_text(item[0]) in text, f"title {item[0]!r} not in the text part"
