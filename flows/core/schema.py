"""Declared schemas for hand-written files, and one way to say what is wrong with them.

A hand-written file (a sidecar's front matter, `show.yaml`, an events YAML) is a pydantic
model: it declares the keys, their types, ranges, defaults, descriptions and an example.
The plain functions of each module still do the work; the model only says what is valid.

This module turns what pydantic found into `Problem`s a person can act on: the key, the
line it is on (from the YAML nodes, `yaml_lines`), what is wrong, the fix and an example,
in Swedish and English. `note` writes all the problems of one file as one message, Swedish
lines first, English below, each line starting with the file:

    ep.md: episode (rad 3): 'tre' är inget heltal. Skriv ett heltal, t.ex. `episode: 3`.
    ep.md: episode (line 3): 'tre' is not a whole number. Write a whole number, e.g. ...

A validator says what is wrong by raising `Wrong` (a ValueError, so pydantic records it);
an unknown key (`extra="forbid"`) gets a "did you mean" from the model's own keys.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

Text = tuple[str, str]  # (Swedish, English)
Loc = tuple[str | int, ...]  # a key's path: ("chapters", 0, "start")
SV, EN = 0, 1
_LINE = ("rad", "line")
_EG = ("t.ex.", "e.g.")
_SHORT = reprlib.Repr()  # a value as shown in a message: short, even for an alias bomb
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 2


class Wrong(ValueError):
    """What is wrong with one value and the fix, in Swedish and English (a plain string is
    the same in both); `example` replaces the key's declared example."""

    def __init__(self, what: Text | str, fix: Text | str, example: str | None = None) -> None:
        self.what = _both(what)
        self.fix = _both(fix)
        self.example = example
        super().__init__(self.what[EN])


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where (key path, line), what, the fix and an example."""

    loc: Loc
    line: int | None
    what: Text
    fix: Text
    example: str = ""  # a line as it could be written, e.g. "episode: 3"

    def render(self, lang: int) -> str:
        """The problem in one language (`SV` or `EN`), without the file.

        >>> Problem(("season",), 4, ("är -1", "is -1"), ("Ta bort", "Remove it")).render(EN)
        'season (line 4): is -1. Remove it.'
        """
        key = key_name(self.loc)
        line = f"{_LINE[lang]} {self.line}" if self.line is not None else ""
        where = f"{key} ({line})" if key and line else key or line
        text = f"{where}: {self.what[lang]}" if where else self.what[lang]
        example = f", {_EG[lang]} `{self.example}`" if self.example else ""
        return f"{text}. {self.fix[lang].rstrip('.')}{example}."


def note(source: str, found: Iterable[Problem], languages: Sequence[int] = (SV, EN)) -> str:
    """All problems of one file as one message: by line, each language below the previous."""
    ordered = sorted(found, key=lambda p: (p.line is None, p.line or 0))
    return "\n".join(f"{source}: {p.render(lang)}" for lang in languages for p in ordered)


def key_name(loc: Loc) -> str:
    """A key path as a person reads it; list items count from 1.

    >>> key_name(("chapters", 0, "start"))
    'chapters[1].start'
    """
    text = ""
    for part in loc:
        text += f"[{part + 1}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def did_you_mean(key: str, known: Sequence[str]) -> str:
    """The known key closest to a misspelt one, or "" when none is close.

    >>> did_you_mean("publish-at", ["title", "publish_at"])
    'publish_at'
    """
    close = difflib.get_close_matches(key.lower(), list(known), n=1)
    return close[0] if close else ""


# --- YAML: documents and the lines of their keys ----------------------------------------


def load_yaml(text: str, loader: type[yaml.SafeLoader]) -> tuple[Any, yaml.Node | None]:
    """The document and its root node (for `yaml_lines`), parsed once; yaml.YAMLError."""
    reader = loader(text)
    try:
        node = reader.get_single_node()
        return (reader.construct_document(node) if node is not None else None), node
    finally:
        reader.dispose()


def yaml_lines(node: yaml.Node | None, first_line: int = 1) -> dict[Loc, int]:
    """The line of every key and list item under `node`: {("chapters", 0, "start"): 7}.

    `first_line` is the file's line of the node text's first line. A node reached again
    through a YAML alias is walked once (an alias bomb stays small).

    >>> yaml_lines(yaml.compose("a: 1\\nb:\\n  - x\\n"))
    {('a',): 1, ('b',): 2, ('b', 0): 3}
    """
    found: dict[Loc, int] = {}
    seen: set[int] = set()
    todo: list[tuple[yaml.Node, Loc]] = [(node, ())] if node is not None else []
    while todo:
        here, loc = todo.pop()
        if id(here) in seen:
            continue
        seen.add(id(here))
        if isinstance(here, yaml.MappingNode):
            for key, value in here.value:
                if isinstance(key, yaml.ScalarNode):
                    found.setdefault((*loc, key.value), key.start_mark.line + first_line)
                    todo.append((value, (*loc, key.value)))
        elif isinstance(here, yaml.SequenceNode):
            for index, item in enumerate(here.value):
                found[(*loc, index)] = item.start_mark.line + first_line
                todo.append((item, (*loc, index)))
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


def yaml_problem(exc: yaml.YAMLError, first_line: int = 1) -> Problem:
    """Broken YAML as a Problem, at the line PyYAML names."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return Problem(
        (),
        mark.line + first_line if mark is not None else None,
        (f"trasig YAML: {problem}", f"broken YAML: {problem}"),
        (
            "Kontrollera indraget och sätt citattecken runt värden som innehåller ':' eller '#'",
            "Check the indentation and put quotes around values that contain ':' or '#'",
        ),
    )


# --- pydantic's errors as Problems -------------------------------------------------------


def problems(
    error: ValidationError,
    model: type[BaseModel],
    lines: Mapping[Loc, int],
    examples: Mapping[str, str] | None = None,
    default_line: int | None = None,
) -> list[Problem]:
    """Every error of a validation as a Problem: its line (the key's, else the nearest
    enclosing key's, else `default_line`), what is wrong, the fix and the key's example
    (`examples`, else the field's declared `examples`)."""
    found = []
    for err in error.errors():
        loc = tuple(err["loc"])
        (what, fix), example = _explain(err, model), None
        top = str(loc[0]) if loc else ""
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, Wrong):
            what, fix, example = cause.what, cause.fix, cause.example
            if example is not None:  # an example of the value itself, so of the innermost key
                top = next((str(p) for p in reversed(loc) if isinstance(p, str)), top)
        if err["type"] == "extra_forbidden" and len(loc) == 1:  # the example of the key meant
            top = did_you_mean(top, list(model.model_fields))
        if example is None:
            example = _example(model, top, examples or {})
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        shown = f"{top}: {example}" if example and top else ""
        found.append(Problem(loc, line or default_line, what, fix, shown))
    return found


def _both(text: Text | str) -> Text:
    return (text, text) if isinstance(text, str) else text


def _example(model: type[BaseModel], key: str, examples: Mapping[str, str]) -> str:
    if key in examples:
        return examples[key]
    field = model.model_fields.get(key)
    return str(field.examples[0]) if field is not None and field.examples else ""


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel]:
    """The (nested) model that validates the mapping at `loc`."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        inner = _model_in(field.annotation) if field is not None else None
        if inner is not None:
            model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg))), None)


_TABLE: dict[str, tuple[Text, Text]] = {
    "missing": (("saknas", "is missing"), ("Lägg till raden", "Add the line")),
    "int": (
        ("{v} är inget heltal", "{v} is not a whole number"),
        ("Skriv ett heltal", "Write a whole number"),
    ),
    "bool": (
        ("{v} är varken true eller false", "{v} is not true or false"),
        ("Skriv true eller false", "Write true or false"),
    ),
    "string_type": (("{v} är ingen text", "{v} is not text"), ("Skriv text", "Write text")),
    "too_short": (
        ("är tom", "is empty"),
        ("Skriv något, eller ta bort raden", "Write something, or remove the line"),
    ),
    "too_long": (
        (
            "är {actual_length} tecken; högst {max_length} går",
            "is {actual_length} characters; at most {max_length} are allowed",
        ),
        ("Korta den", "Shorten it"),
    ),
    "negative": (
        ("är {v}; det får inte vara negativt", "is {v}; it cannot be negative"),
        ("Skriv 1, 2, 3 … (eller ta bort raden)", "Use 1, 2, 3 … (or leave it out)"),
    ),
    "greater_than_equal": (
        ("är {v}; minst {ge} går", "is {v}; at least {ge} is allowed"),
        ("Skriv ett större tal", "Use a larger number"),
    ),
    "less_than_equal": (
        ("är {v}; högst {le} går", "is {v}; at most {le} is allowed"),
        ("Skriv ett mindre tal", "Use a smaller number"),
    ),
    "literal_error": (
        ("{v} är inte {expected_sv}", "{v} is not one of {expected}"),
        ("Välj ett av dem", "Use one of them"),
    ),
    "string_pattern_mismatch": (
        ("{v} har fel form", "{v} is not in the right form"),
        ("Skriv som i exemplet", "Write it as in the example"),
    ),
    "list_type": (("{v} är ingen lista", "{v} is not a list"), ("Skriv en lista", "Write a list")),
    "mapping": (
        ("{v} är inte 'nyckel: värde'-rader", "{v} is not 'key: value' lines"),
        ("Skriv 'nyckel: värde'", "Write 'key: value'"),
    ),
    "string_unicode": (
        (
            "innehåller ett ensamt surrogattecken, som inte är text",
            "contains a lone surrogate character, which is not text",
        ),
        (
            "Ta bort \\uD800-\\uDFFF-koden eller skriv tecknet självt",
            "Remove the \\uD800-\\uDFFF escape, or write the character itself",
        ),
    ),
    "other": (
        ("fel värde {v}: {msg}", "wrong value {v}: {msg}"),
        ("Rätta värdet", "Correct the value"),
    ),
}
# pydantic's error types that read alike share one entry of _TABLE.
_KINDS = {
    "int_type": "int", "int_parsing": "int", "int_from_float": "int", "bool_type": "bool",
    "bool_parsing": "bool", "string_too_short": "too_short", "string_too_long": "too_long",
    "model_type": "mapping", "dict_type": "mapping", "model_attributes_type": "mapping",
}  # fmt: skip


def _explain(err: Mapping[str, Any], model: type[BaseModel]) -> tuple[Text, Text]:
    """What is wrong and the fix, for one of pydantic's errors."""
    kind, ctx = err["type"], dict(err.get("ctx") or {})
    if kind == "extra_forbidden":
        known = list(_model_at(model, tuple(err["loc"][:-1])).model_fields)
        close = did_you_mean(str(err["loc"][-1]), known)
        return (
            ("okänd nyckel" + (f" (menade du {close!r}?)" if close else ""),
             "unknown key" + (f" (did you mean {close!r}?)" if close else "")),
            (f"Rätta stavningen. Nycklar som finns: {', '.join(known)}",
             f"Correct the spelling. Known keys: {', '.join(known)}"),
        )  # fmt: skip
    kind = _KINDS.get(kind, kind)
    if kind == "greater_than_equal" and ctx.get("ge") == 0:
        kind = "negative"
    what, fix = _TABLE.get(kind, _TABLE["other"])
    values = {
        **ctx,
        "v": _SHORT.repr(err.get("input")),
        "msg": err["msg"],
        "expected_sv": str(ctx.get("expected", "")).replace(" or ", " eller "),
    }
    return (what[SV].format(**values), what[EN].format(**values)), fix
