"""A transcript (WebVTT or SRT, as producers drop them) as paragraphs of plain text, pure.

Cue numbers, timings, `NOTE`/`STYLE`/`REGION` blocks and inline tags go; a voice tag
(`<v Anna>`) names the speaker. Consecutive cues of one speaker make one paragraph; without
voice tags each cue is a paragraph. The text stays text: the page's template escapes it.

>>> paragraphs("WEBVTT\\n\\n1\\n00:00:01.100 --> 00:00:03.780\\nHej &amp; <i>välkommen</i>.\\n")
[Paragraph(speaker='', text='Hej & välkommen.')]
>>> cue = "00:0{}.000 --> 00:0{}.000\\n<v Anna>{}\\n\\n"
>>> paragraphs("WEBVTT\\n\\n" + cue.format(1, 2, "Hej.") + cue.format(2, 3, "Du."))
[Paragraph(speaker='Anna', text='Hej. Du.')]
>>> paragraphs("1\\n00:00:01,000 --> 00:00:02,000\\nSRT-rad ett\\noch två\\n")
[Paragraph(speaker='', text='SRT-rad ett och två')]
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_TIMING = re.compile(r"^\s*(?:\d+:)?\d{1,2}:\d{2}[.,]\d{3}\s+-->\s+")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]*)>")
_TAG = re.compile(r"<[^>]*>")
_SKIPPED_BLOCKS = ("WEBVTT", "NOTE", "STYLE", "REGION")


@dataclass(frozen=True)
class Paragraph:
    """What one speaker said in a row ("" when the transcript names no one)."""

    speaker: str
    text: str


def _cue_text(lines: list[str]) -> tuple[str, str]:
    """(speaker, text) of one cue's text lines."""
    raw = " ".join(line.strip() for line in lines if line.strip())
    voice = _VOICE.search(raw)
    speaker = html.unescape(voice.group(1)).strip() if voice else ""
    text = html.unescape(_TAG.sub("", raw))
    return speaker, " ".join(text.split())


def paragraphs(transcript: str) -> list[Paragraph]:
    """The transcript's text as paragraphs (see the module docstring)."""
    text = transcript.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    blocks = re.split(r"\n\s*\n", text)
    found: list[Paragraph] = []
    for block in blocks:
        lines = block.strip("\n").split("\n")
        if not lines or lines[0].strip().startswith(_SKIPPED_BLOCKS):
            continue
        timing = next((i for i, line in enumerate(lines) if _TIMING.match(line)), None)
        if timing is None:
            continue  # not a cue
        speaker, text = _cue_text(lines[timing + 1 :])
        if not text:
            continue
        if found and speaker and found[-1].speaker == speaker:
            found[-1] = Paragraph(speaker, f"{found[-1].text} {text}")
        else:
            found.append(Paragraph(speaker, text))
    return found


def plain_transcript(data: bytes) -> list[Paragraph]:
    """`paragraphs` of a transcript's bytes (UTF-8, as the podcast flow checked them)."""
    return paragraphs(data.decode("utf-8-sig", errors="replace"))
