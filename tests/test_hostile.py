"""Hostile input: feed HTML that tries to reach the email, names that try to leave the drop
folder or the storage prefix, header values that try to add headers, sidecars that try
to crash the run."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime
from pathlib import Path

import lxml.html
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.errors import DeliveryError, InputError, StorageError
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import LocalStorage, check_key
from flows.newsletter.delivery import build_message
from flows.newsletter.posts import DEFAULT_KIND_MAP, parse_posts
from flows.newsletter.render import render_issue
from flows.newsletter.select import select_issue
from flows.podcast.episode import audio_key
from flows.podcast.inbox import read_inbox, refuse_clashes, slugify
from flows.podcast.sidecar import parse_sidecar

DATA = Path(__file__).parent / "data" / "hostile"
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
SETTINGS = Settings.load()


# --- feed HTML never reaches the email ---------------------------------------------------


@pytest.fixture(scope="module")
def evil_issue():
    posts, status = parse_posts((DATA / "evil-feed.xml").read_bytes(), "evil", DEFAULT_KIND_MAP)
    selection = select_issue(posts, [], month="2026-12", now=NOW, previous=[], settings=SETTINGS)
    return posts, status, render_issue(selection, SETTINGS)


def test_script_handlers_and_bad_urls_never_reach_the_email(evil_issue):
    _, _, rendered = evil_issue
    # The first title is plain text that reads "<script>...": words, shown as such (escaped in
    # the HTML, verbatim in the text part); everything else marked EVIL is markup or a URL.
    title = "Skript <script>alert('EVIL-title')</script> i rubriken"
    html_title = "Skript &lt;script&gt;alert(&#39;EVIL-title&#39;)&lt;/script&gt; i rubriken"
    html_rest = rendered.html.replace(html_title, "")
    text_rest = rendered.text.replace(title, "")
    assert html_rest != rendered.html and text_rest != rendered.text
    for part, body in (("HTML", html_rest), ("text", text_rest)):
        assert "EVIL" not in body, f"hostile feed content reached the {part} part"
        for marker in ("javascript:", "data:", "expression(", "<script", "onerror", "onclick"):
            assert marker not in body.lower(), f"{marker!r} in the {part} part"
    document = lxml.html.document_fromstring(rendered.html)
    assert document.find(".//script") is None and document.find(".//iframe") is None
    for element in document.iter():
        assert not [a for a in element.attrib if a.lower().startswith("on")], element.tag
        for name in ("href", "src"):
            url = element.get(name)
            if url is not None:
                assert url.startswith(("https://", "http://", "mailto:")), (element.tag, url)


def test_tracking_pixels_and_unsafe_image_urls_are_not_the_post_image(evil_issue):
    posts, status, rendered = evil_issue
    by_id = {post.id: post for post in posts}
    # The 1x1 pixel comes first in the HTML; the real picture after it wins.
    assert by_id["evil-1"].image == "https://kraftsamling.example/bilder/riktig-bild.jpg"
    assert by_id["evil-1"].image_alt == "Riktig bild"
    # Only a pixel thumbnail, a javascript: enclosure, javascript:/data: imgs and known
    # trackers: no picture at all.
    assert by_id["evil-2"].image is None
    images = [img.get("src") for img in lxml.html.document_fromstring(rendered.html).iter("img")]
    assert images == ["https://kraftsamling.example/bilder/riktig-bild.jpg"]
    # A javascript: link is no link: the entry is skipped and the reason recorded.
    assert "evil-3" not in by_id
    assert any("no absolute http(s) link" in w for w in status.warnings)


def test_titles_and_summaries_are_plain_text(evil_issue):
    posts, _, _ = evil_issue
    post = next(p for p in posts if p.id == "evil-1")
    # feedparser reads this RSS title as plain text: what stands in brackets is kept as words.
    assert post.title == "Skript <script>alert('EVIL-title')</script> i rubriken"
    assert post.summary.startswith("Första stycket.")
    assert "<" not in post.summary and "alert" not in post.summary


# --- names never leave the drop folder or the storage prefix -------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_name_gives_a_safe_slug(name):
    slug = slugify(name)
    assert re.fullmatch(r"(?:[a-z0-9]+(?:-[a-z0-9]+)*)?", slug), slug
    assert len(slug) <= 80
    if slug:  # a slug makes a key storage accepts, inside the audio prefix
        assert check_key(audio_key(slug, "0" * 64, "mp3")).startswith("podcast/audio/")


HOSTILE_NAMES = [
    "..\\..\\x.mp3",
    "..%2F..%2Fx.mp3",
    "%2e%2e%2fetc%2fpasswd.mp3",
    "x" * 250 + ".mp3",
    "Ödmjukhet på Åland – 🎙 #3.mp3",
    "\u202eevil\u202c.mp3",
    "con.mp3",
    "-.mp3",
]


def test_hostile_file_names_stay_in_the_inbox_and_get_plain_slugs(tmp_path):
    inbox = tmp_path / "episodes" / "inbox"
    inbox.mkdir(parents=True)
    for name in HOSTILE_NAMES:
        (inbox / name).write_bytes(b"ID3" + b"\0" * 64)
    result = refuse_clashes(read_inbox(inbox, 4_000_000_000, 0), [])
    seen = [*result.candidates, *result.refused]
    # Names starting with "." are hidden files: never published, but refused with a note (a
    # producer would otherwise never learn why the episode did not appear).
    hidden = [n for n in HOSTILE_NAMES if n.startswith(".")]
    assert len(hidden) == 2 and len(seen) == len(HOSTILE_NAMES)
    assert not {c.audio.name for c in result.candidates} & set(hidden)
    assert {r.files[0].name for r in result.refused} >= set(hidden)
    for item in seen:
        assert re.fullmatch(r"(?:[a-z0-9]+(?:-[a-z0-9]+)*)?", item.slug), item.slug
    for candidate in result.candidates:
        assert candidate.audio.parent == inbox
        assert candidate.audio.resolve().is_relative_to(inbox.resolve())
    slugs = {c.slug for c in result.candidates}
    assert "odmjukhet-pa-aland-3" in slugs
    assert all(len(s) <= 80 for s in slugs)
    # "-.mp3" has nothing to name an episode by: refused with the fix, not published.
    refused = {r.name: r.reason for r in result.refused}
    assert "Rename it" in refused["-"]


@pytest.mark.parametrize("value", ["../x.vtt", "..\\x.vtt", "/etc/passwd.vtt", ".hidden.vtt"])
def test_sidecar_cannot_point_outside_the_inbox(value):
    sidecar = f'---\ntitle: Avsnitt\ntranscript: "{value}"\n---\n'.replace("\\", "\\\\")
    with pytest.raises(InputError, match="plain file name"):
        parse_sidecar(sidecar, "ep.md")


BAD_KEYS = [
    "../x.mp3",
    "podcast/../../x.mp3",
    "/etc/passwd",
    "podcast//x.mp3",
    "podcast\\..\\x.mp3",
    "podcast/./x",
    ".meta/podcast/feed.xml.json",
    "podcast/.tmp-x",
    "podcast/x\nmp3",
    "",
    "a" * 1025,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_storage_refuses_keys_that_leave_the_folder(tmp_path, key):
    root = tmp_path / "store"
    storage = LocalStorage(root)
    with pytest.raises(StorageError, match="Refused storage key"):
        storage.put_bytes(key, b"x", content_type="text/plain", cache_control="x", public=False)
    with pytest.raises(StorageError, match="Refused storage key"):
        storage.get_bytes(key)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("key", ["../x.mp3", "podcast/../../x", "/x", "a\\b"])
def test_s3_storage_refuses_keys_that_leave_the_prefix(s3_inprocess, key):
    storage = s3_inprocess.storage(prefix="kraft")
    with pytest.raises(StorageError, match="Refused storage key"):
        storage.put_bytes(key, b"x", content_type="text/plain", cache_control="x", public=False)
    assert s3_inprocess.request_log.count("PUT") == 0
    listed = s3_inprocess.client.list_objects_v2(Bucket=s3_inprocess.bucket)
    assert listed.get("KeyCount", 0) == 0


# --- a line break in a header value is refused -------------------------------------------

BREAKS = ["\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\x00"]
HEADER_CASES = [
    ("Subject", {"subject": "Nyhetsbrev{b}Bcc: offer@example.org"}),
    ("From", {"mail_from": "Kraftsamling <nyhetsbrev@kraftsamling.example>{b}Bcc: x@example.org"}),
    ("Reply-To", {"reply_to": "kontakt@kraftsamling.example{b}Bcc: x@example.org"}),
    ("To", {"to": "lasare@example.org{b}Bcc: x@example.org"}),
]


@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
@pytest.mark.parametrize(("header", "change"), HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_line_break_in_any_header_is_refused(header, change, brk):
    args = {"subject": "Kraftsamling update", "to": "lasare@example.org"}
    overrides = {}
    for name, value in change.items():
        value = value.format(b=brk)
        if name in args:
            args[name] = value
        else:
            overrides[name] = value
    with pytest.raises(DeliveryError, match=f"Header {header} contains a line break"):
        build_message(
            html="<p>Hej</p>",
            text="Hej",
            settings=Settings.load(**overrides),
            month="2026-12",
            now=NOW,
            **args,
        )


def test_a_unicode_title_in_the_subject_stays_one_header():
    title = "Kraftsamling 🎙 – ”nyheter” åäö \u202e"
    message = build_message(
        html="<p>Hej</p>",
        text="Hej",
        subject=title,
        settings=SETTINGS,
        to="lasare@example.org",
        month="2026-12",
        now=NOW,
    )
    back = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert back["Subject"] == title
    assert sorted(back.keys()) == sorted(
        ["Subject", "From", "Reply-To", "To", "Date", "Message-ID", "List-Unsubscribe",
         "List-Unsubscribe-Post", "Content-Type", "MIME-Version"]
    )  # fmt: skip


# --- sidecars that tried to crash the run --------------------------------------------------


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        ("chapters: [{start: .nan, title: x}]", "is not a time"),
        ("chapters: [{start: .inf, title: x}]", "is not a time"),
        ("episode: 99999999999999999999999", "at most 65535"),
        ("season: 70000", "at most 65535"),
        ('guests: ["\\x00\\x01"]', "guests[1] (line 3): is empty"),
        ('title: "\\ud800"', "lone surrogate"),
    ],
)
def test_hostile_sidecar_values_are_input_errors(front, expected):
    text = (
        f"---\ntitle: Avsnitt\n{front}\n---\n" if "title" not in front else f"---\n{front}\n---\n"
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        parse_sidecar(text, "ep.md")
