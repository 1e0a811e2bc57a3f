"""Reading the show's own files (`episodes/show.yaml` and its cover art) with clear errors.

The schema of show.yaml is `flows.core.models.Show` (keys, types, ranges, defaults; an
unknown key is refused). Everything wrong in the file is refused at once with one InputError
that names, for each problem, the line, the key, the fix and an example (`SHOW_EXAMPLES`),
in Swedish and English, as for a sidecar (`flows.core.schema.note`).

`read_show_files` reads both and checks the cover art as podcast apps will
(`flows.podcast.feedgate.check_cover_art`): a publish run calls it first, so a problem with
the show's own files stops the run before anything is uploaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from flows.core.errors import InputError
from flows.core.models import Show
from flows.core.schema import (
    Problem,
    Text,
    load_yaml,
    note,
    problems,
    yaml_lines,
    yaml_problem,
)
from flows.core.settings import Settings
from flows.podcast.feedgate import check_cover_art
from flows.podcast.inbox import not_readable, read_regular
from flows.podcast.report import file_note

# A line as it could be written, for each key of show.yaml (the example in a message).
SHOW_EXAMPLES = {
    "title": "Digitalsamtal",
    "description": "Podden om AI i kommuner och civilsamhälle.",
    "author": "Kraftsamling",
    "owner_name": "Kraftsamling",
    "owner_email": "podd@kraftsamling.example",
    "language": "sv",
    "category": "Government",
    "subcategory": "Local",
    "explicit": "false",
    "website": "https://kraftsamling.example/digitalsamtal",
    "image": "cover.jpg",
    "copyright": "© 2026 Kraftsamling",
    "type": "episodic",
    "public_base_url": "https://kraftsamling.example/",
    "locked": "true",
    "medium": "podcast",
    "funding_url": "https://kraftsamling.example/stod",
    "funding_text": "Stöd podden",
    "new_feed_url": "https://ny.example/feed.xml",
    "block": "false",
    "complete": "false",
    "hosts": "[Anna Exempelsson, Bo Testström]",
    "podcast_guid": "917393e3-1b1e-5cef-ace4-edaa54e1f810",
    "apple_podcasts_url": "https://podcasts.apple.com/se/podcast/digitalsamtal/id1234567890",
    "spotify_url": "https://open.spotify.com/show/4rOoJ6Egrf8K2IrywzwOMk",
}
# What to do when a show file cannot be read (`read_regular`'s fix).
_CHECK_FILE: Text = (
    "Kontrollera filen och mappen den ligger i, och kör igen",
    "Check the file and its folder, and run again",
)
_CHECK_COVER: Text = (
    "Kontrollera omslagsbilden och kör igen",
    "Check the cover art file and run again",
)
_EXPORT_COVER: Text = (
    "Exportera den som en RGB-JPEG eller -PNG på 3000x3000 px och kör igen",
    "Export it as a 3000x3000 px RGB JPEG or PNG and run again",
)


def parse_show(text: str, source: str = "show.yaml") -> Show:
    """Validate show metadata from YAML text; InputError names every problem at once."""
    try:
        data, node = load_yaml(text, yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise InputError(note(source, [yaml_problem(exc)])) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        what = (
            f"ska vara 'nyckel: värde'-rader, inte {kind}",
            f"expected 'key: value' lines, got {kind}",
        )
        fix = ("Se episodes/show.yaml i projektet", "See episodes/show.yaml in the project")
        raise InputError(note(source, [Problem((), None, what, fix)]))  # fmt: skip
    try:
        return Show.model_validate(data)
    except ValidationError as exc:
        found = problems(exc, Show, yaml_lines(node), SHOW_EXAMPLES)
        raise InputError(note(source, found)) from None


def load_show(path: Path) -> Show:
    """Read and validate `show.yaml`; the cover image is checked to exist.

    Both are files of the episodes folder, read as the inbox is: a regular file inside the
    folder, never through a link (see `flows.podcast.inbox.not_readable`).
    """
    path = Path(path)
    if not os.path.lexists(path):
        what = ("showens metadatafil saknas", "the show's metadata file is missing")
        fix = ("Skapa den (se episodes/README.md)", "Create it (see episodes/README.md)")
        raise InputError(file_note(path, what, fix, "title: Digitalsamtal"))
    data = read_regular(path, path.parent, fix=_CHECK_FILE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, byte = data[: exc.start].count(b"\n") + 1, data[exc.start]
        what = (
            f"{path.name} är inte UTF-8-text (byten 0x{byte:02x} på rad {line})",
            f"{path.name} is not UTF-8 text (byte 0x{byte:02x} on line {line})",
        )
        fix = (
            "Spara den som UTF-8 (välj kodningen UTF-8 under Spara som i redigeraren) och kör igen",
            "Save it as UTF-8 (in the editor's Save As, choose the encoding UTF-8) and run again",
        )
        raise InputError(file_note(path, what, fix, "UTF-8")) from None
    show = parse_show(text, str(path))
    try:
        problem = not_readable(path.parent / show.image, path.parent)
    except (FileNotFoundError, NotADirectoryError):
        what = (
            f"bilden {show.image!r} (image:) finns inte bredvid show.yaml",
            f"the image {show.image!r} (image:) does not exist next to show.yaml",
        )
        fix = (
            "Lägg omslagsbilden där, eller rätta sökvägen i 'image:'",
            "Put the cover art there, or fix the path in 'image:'",
        )
        problem = file_note(path, what, fix, f"image: {SHOW_EXAMPLES['image']}")
    if problem is not None:
        raise InputError(problem)
    return show


def read_cover(show: Show, show_dir: Path) -> tuple[bytes, str]:
    """The show's cover art bytes and MIME type (embedded in every episode's tags)."""
    path = show_dir / show.image
    # A regular file in the episodes folder, never through a link.
    data = read_regular(path, show_dir, fix=_CHECK_COVER)
    check_cover_art(data, str(path))  # what Apple accepts: square, 1400-3000 px, RGB, opaque
    if data.startswith(b"\x89PNG"):
        return data, "image/png"
    if data.startswith(b"\xff\xd8"):
        return data, "image/jpeg"
    what = ("omslagsbilden är ingen JPEG- eller PNG-fil", "the cover art is not a JPEG or PNG file")
    raise InputError(file_note(path, what, _EXPORT_COVER, "cover.jpg"))


def read_show_files(settings: Settings) -> tuple[Show, bytes, str]:
    """show.yaml and the cover art, checked: (show, cover bytes, cover MIME type).

    The show's own files come first: a problem there (a broken show.yaml, cover art that is
    not square, too small or large, CMYK or transparent) stops the run before its lock, the
    first thing it writes, and so before any upload.
    """
    show_dir = Path(settings.episodes_dir)
    show = load_show(show_dir / "show.yaml")
    cover, cover_mime = read_cover(show, show_dir)
    return show, cover, cover_mime
