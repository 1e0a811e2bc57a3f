"""Reading the show's metadata (`episodes/show.yaml`) with clear errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from flows.errors import InputError
from flows.models import Show


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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InputError(f"{source}: {problems}. Fix these fields and run again.") from None


def load_show(path: Path) -> Show:
    """Read and validate `show.yaml`; the cover image path is checked to exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"{path}: the show's metadata file is missing. Create it (see episodes/README.md)."
        ) from None
    show = parse_show(text, str(path))
    if not (path.parent / show.image).is_file():
        raise InputError(
            f"{path}: image {show.image!r} does not exist next to show.yaml. "
            "Put the cover art there or fix the path."
        )
    return show
