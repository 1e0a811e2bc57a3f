"""One policy for characters, and for HTML versus plain text.

Characters. Text that leaves this project (the feed's XML, an email, audio tags, a page)
never carries what readers choke on:
- C0 control characters other than tab, LF and CR (XML 1.0 forbids them);
- DEL and the C1 controls U+007F-U+009F (parsers misread them as Windows-1252 letters);
- lone surrogates (UTF-8 cannot encode them) and the non-characters U+FFFE/U+FFFF.
`clean_text` removes exactly these, everywhere; `multiline` and `one_line` then shape the
line breaks for fields that may or may not hold them. A header refuses (never strips) a
line break or control: a stripped one would silently change an address (`header_problem`).

HTML versus plain text. Only fields that are HTML are sanitised as HTML (with nh3, where
they enter); plain-text fields (titles, iCalendar fields, sidecar text) are cleaned here and
escaped by the writer (Jinja2 autoescape, lxml), never stripped of "tags".
"""

from __future__ import annotations

import re

# Everything outside XML 1.0's Char production, plus DEL and the C1 controls.
FORBIDDEN = re.compile("[^\t\n\r\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# What a mail header cannot carry: every line break str.splitlines() knows, and controls.
_HEADER_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def clean_text(text: str) -> str:
    """`text` without the characters no reader may get.

    >>> clean_text("Ljud\\x00 & bild\\x1b\\x85\\ud800")
    'Ljud & bild'
    """
    # Fast path: every character removed is a control (Cc), a surrogate (Cs) or a
    # noncharacter (Cn), none of them printable; a printable text has nothing to remove.
    if text.isprintable():
        return text
    return FORBIDDEN.sub("", text)


def multiline(text: str) -> str:
    """Clean text for a field with paragraphs: CRLF and lone CR become LF.

    >>> multiline("Rad ett\\r\\nRad två\\rRad tre\\x07")
    'Rad ett\\nRad två\\nRad tre'
    """
    return clean_text(text).replace("\r\n", "\n").replace("\r", "\n")


def one_line(text: str) -> str:
    """Clean text for a one-line field (titles, names): whitespace runs become one space.

    >>> one_line("  Avsnitt 1:\\r\\n Öppna data ")
    'Avsnitt 1: Öppna data'
    """
    return " ".join(clean_text(text).split())


def header_problem(value: str) -> str | None:
    """The first character a mail header cannot carry, or None.

    >>> header_problem("Kraftsamling <a@b.example>") is None
    True
    >>> header_problem("x\\nBcc: evil@example.org")
    '\\n'
    """
    found = _HEADER_UNSAFE.search(value)
    return found.group() if found else None
