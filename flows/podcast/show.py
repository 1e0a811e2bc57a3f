"""Reading the show's metadata (`episodes/show.yaml`) with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from flows.core.errors import InputError
from flows.core.models import Show
from flows.podcast.inbox import not_readable, read_regular
from flows.podcast.sidecar import did_you_mean


def parse_show(text: str, source: str = "show.yaml") -> Show:
    """Validate show metadata from YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(
            f"{source}: broken YAML{where}: {getattr(exc, 'problem', exc)}. "
            "Fix the indentation or quoting there."
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected 'key: value' lines, got {type(data).__name__}.")
    try:
        return Show.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise InputError(f"{source}: {problems}. Fix these fields and run again.") from None


def _problem(err: dict) -> str:
    """One validation error in words; an unknown key (`extra="forbid"`) with a suggestion."""
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}{did_you_mean(where, list(Show.model_fields))}"
    return f"{where}: {err['msg']}"


def load_show(path: Path) -> Show:
    """Read and validate `show.yaml`; the cover image is checked to exist.

    Both are files of the episodes folder, read as the inbox is: a regular file inside the
    folder, never through a link (see `flows.podcast.inbox.not_readable`).
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise InputError(
            f"{path}: the show's metadata file is missing. Create it (see episodes/README.md)."
        )
    data = read_regular(path, path.parent, fix="check the file and its folder, and run again")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}: {path.name} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line "
            f"{line}). Save it as UTF-8 (in the editor's Save As, choose the encoding UTF-8) "
            "and run again."
        ) from None
    show = parse_show(text, str(path))
    try:
        problem = not_readable(path.parent / show.image, path.parent)
    except (FileNotFoundError, NotADirectoryError):
        problem = (
            f"image {show.image!r} does not exist next to show.yaml. "
            "Put the cover art there or fix the path."
        )
    if problem is not None:
        raise InputError(f"{path}: {problem}")
    return show
