"""An edition of the newsletter: its language, words, sections, subject, sender, list and keys.

Everything that differs between two editions of the newsletter (the Swedish one, and say an
English one for international partners) is one `Edition`. The flow resolves it once
(`edition_for`) and passes it down: `select` keeps it on the `Selection` (so `render` and
`build` follow it), and `delivery`, `archive`, `release` and the issue's storage keys
(`issue.web_copy_key`...) take it as a parameter. No module reads it from a global.

- `SWEDISH` is the default edition: the package's templates and the words the newsletter
  has always used; its storage keys are `newsletters/<YYYY-MM>/...` and its output is
  byte-identical to what it was before editions existed.
- Another edition is a YAML file read by `load_edition` and selected by the `edition`
  setting (`KRAFTSAMLING_EDITION`). Its optional `templates` folder (relative to the file)
  holds templates that replace the package's templates of the same name; the others come
  from the package and take their words from the edition. Every key is checked when the
  file is read, and an error names the file and the key.

Words with `{placeholders}` are format strings: each key allows only its own placeholders
(`PLACEHOLDERS`), checked on load. Dates are Babel patterns in the edition's locale, never
the process locale; they are tried on load, so a bad pattern fails before any build.

Functions that take `settings` and `edition=None` use the edition the settings select.
"""

from __future__ import annotations

import string
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml
from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from flows.core.errors import InputError, SettingsError
from flows.core.models import STOCKHOLM
from flows.newsletter.sources import YamlLoader, is_http

if TYPE_CHECKING:
    from flows.core.settings import Settings

Section = Literal["news", "funding", "events", "listen"]

# Shipped inside the package (package-data), so an installed copy finds them from anywhere.
PACKAGE_TEMPLATES = Path(str(resources.files("flows.newsletter") / "templates"))

# The placeholders each format string may use; any other is refused when the file is read.
PLACEHOLDERS: dict[str, set[str]] = {
    "subject": {"title", "month"},
    "footer_reason": {"title"},
    "preheader": {"month", "listed"},
    "preheader_empty": {"month"},
    "seconds": {"n"},
    "minutes": {"n"},
    "hours": {"h", "m"},
    "feed_summary": {"title"},
    "counts": {"n"},
}

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _check_placeholders(key: str, text: str) -> str:
    """`text` when it uses only the placeholders allowed for `key`, else ValueError."""
    allowed = PLACEHOLDERS[key]
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = sorted(used - allowed)
    if unknown:
        names = ", ".join("{" + name + "}" for name in sorted(allowed))
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} in {text!r}; use {names}")
    return text


class Dates(BaseModel):
    """Babel date patterns (https://babel.pocoo.org/en/latest/dates.html#pattern-syntax)."""

    model_config = _FROZEN

    day: str = Field(description="A day: posts, deadlines, the archive ('d MMMM y').")
    day_in_year: str = Field(description="A day of the issue's year ('d MMMM').")
    weekday: str = Field(description="An event's day ('EEEE d MMMM y').")
    weekday_in_year: str = Field(description="An event's day in the issue's year.")
    at_time: str = Field(description="After an event's day: its start (\"'kl.' HH.mm\").")
    time: str = Field(description="An end time on the same day ('HH.mm').")
    month: str = Field(description="The issue's month ('LLLL y').")


class Wording(BaseModel):
    """Every word the email, its plain text, the preheader and the archive use."""

    model_config = _FROZEN

    # The email and its plain text (templates).
    kicker: str
    view_in_browser: str
    deadline: str
    more_dates: str
    place: str
    online: str
    join_online: str
    join_here: str
    footer_reason: str
    questions: str
    website: str
    unsubscribe: str
    podcast: str
    video: str
    # The intro, the preheader, lengths.
    default_intro: str
    preheader: str
    preheader_empty: str
    list_and: str
    counts: dict[Section, tuple[str, str]] = Field(
        description="Per section: the words for one and for more, with {n}."
    )
    seconds: str
    minutes: str
    hours: str
    # The List-Unsubscribe mailto, the archive page and feed.
    unsubscribe_subject: str
    all_issues: str
    archive_intro: str
    sent: str
    no_issues: str
    follow_feed: str
    to_site: str
    feed_subtitle: str
    feed_summary: str

    @field_validator(
        "footer_reason", "preheader", "preheader_empty", "seconds", "minutes", "hours",
        "feed_summary",
    )  # fmt: skip
    @classmethod
    def _format_string(cls, value: str, info: ValidationInfo) -> str:
        return _check_placeholders(str(info.field_name), value)

    @field_validator("counts")
    @classmethod
    def _every_count(cls, value: dict[Section, tuple[str, str]]) -> dict[Section, tuple[str, str]]:
        missing = [name for name in get_args(Section) if name not in value]
        if missing:
            raise ValueError(f"missing the section(s) {', '.join(missing)}")
        for forms in value.values():
            for form in forms:
                _check_placeholders("counts", form)
        return value

    def count(self, section: Section, n: int) -> str:
        """`n` items of a section in words.

        >>> SWEDISH.words.count("news", 1), SWEDISH.words.count("news", 3)
        ('1 nyhet', '3 nyheter')
        """
        one, many = self.counts[section]
        return (one if n == 1 else many).format(n=n)


class Edition(BaseModel):
    """One edition of the newsletter. Build another with `load_edition`."""

    model_config = _FROZEN

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$", description="A short id, e.g. `en`.")
    language: str = Field(
        pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", description="lang of the email and archive."
    )
    locale: str = Field(description="Babel locale of dates, e.g. sv_SE or en_GB.")
    subject: str = Field(description="The subject line and title: {title} and {month}.")
    sections: dict[Section, str] = Field(description="Section names, in display order.")
    dates: Dates
    words: Wording
    storage_prefix: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$",
        description="Where the web copies and the archive live in storage.",
    )
    templates: Path = Field(description="Templates that replace the package's of the same name.")
    sender_name: str | None = Field(
        default=None, description="The From display name; unset keeps the mail_from setting's."
    )
    list_address: str | None = Field(
        default=None,
        description="The list's address for List-Unsubscribe's mailto; unset: the "
        "unsubscribe_email setting (or the Reply-To address).",
    )
    unsubscribe_url: str | None = Field(
        default=None, description="The unsubscribe page; unset: the unsubscribe_url setting."
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return _check_placeholders("subject", value)

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        try:
            Locale.parse(value)
        except (UnknownLocaleError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a locale Babel knows ({exc}); e.g. en_GB") from None
        return value

    @field_validator("sections")
    @classmethod
    def _every_section(cls, value: dict[Section, str]) -> dict[Section, str]:
        missing = [name for name in get_args(Section) if name not in value]
        if missing:
            raise ValueError(f"name every section, in display order; missing: {', '.join(missing)}")
        names = [name.strip() for name in value.values()]
        if not all(names) or len(set(names)) != len(names):
            raise ValueError("each section needs its own, non-empty name")
        return value

    @field_validator("storage_prefix")
    @classmethod
    def _not_the_podcast(cls, value: str) -> str:
        if value.split("/")[0] == "podcast":
            raise ValueError("podcast/ belongs to the podcast; choose e.g. newsletters-en")
        return value

    @field_validator("templates")
    @classmethod
    def _a_folder(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a folder")
        return value

    @field_validator("list_address", "sender_name")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\r" in value or "\n" in value or not value.strip()):
            raise ValueError("must be one non-empty line (it goes into a mail header)")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not is_http(value):
            raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _dates_work(self) -> Edition:
        # Needs the locale, so it is checked on the whole edition.
        sample = datetime(2026, 12, 1, 10, 0, tzinfo=STOCKHOLM)
        for key, pattern in self.dates.model_dump().items():
            try:
                format_datetime(sample, pattern, tzinfo=STOCKHOLM, locale=self.locale)
            except (ValueError, KeyError, AttributeError) as exc:
                raise ValueError(
                    f"dates.{key}: {pattern!r} is not a Babel pattern ({exc})"
                ) from None
        return self

    @property
    def order(self) -> tuple[Section, ...]:
        """The sections in display order."""
        return tuple(self.sections)

    @property
    def template_folders(self) -> tuple[Path, ...]:
        """Where templates are looked up: the edition's folder first, then the package's."""
        if self.templates.resolve() == PACKAGE_TEMPLATES.resolve():
            return (PACKAGE_TEMPLATES,)
        return (self.templates, PACKAGE_TEMPLATES)

    def label(self, month: str) -> str:
        """The issue's name where editions share a namespace (the approval's pause key,
        Prefect artifacts); the Swedish edition keeps the bare month it always had.

        >>> SWEDISH.label("2026-12"), SWEDISH.model_copy(update={"name": "en"}).label("2026-12")
        ('2026-12', 'en-2026-12')
        """
        return month if self.name == SWEDISH_NAME else f"{self.name}-{month}"

    def subject_line(self, title: str, month_name: str) -> str:
        """The subject line (and the email's title, the archive's entry)."""
        return self.subject.format(title=title, month=month_name)

    def unsubscribe_page(self, settings: Settings) -> str:
        """The unsubscribe page: the edition's, else the `unsubscribe_url` setting."""
        return self.unsubscribe_url or settings.unsubscribe_url


SWEDISH_NAME = "sv"

SWEDISH = Edition(
    name=SWEDISH_NAME,
    language="sv",
    locale="sv_SE",
    subject="{title} – {month}",
    sections={
        "news": "Det här har hänt",
        "funding": "Utlysningar",
        "events": "På gång",
        "listen": "Lyssna och titta",
    },
    dates=Dates(
        day="d MMMM y",
        day_in_year="d MMMM",
        weekday="EEEE d MMMM y",
        weekday_in_year="EEEE d MMMM",
        at_time="'kl.' HH.mm",
        time="HH.mm",
        month="LLLL y",
    ),
    words=Wording(
        kicker="Nyhetsbrev från Kraftsamling",
        view_in_browser="Visa i webbläsaren",
        deadline="Sista ansökningsdag",
        more_dates="Fler tillfällen",
        place="Plats",
        online="Digitalt",
        join_online="Delta digitalt",
        join_here="Anslut här",
        footer_reason="Du får {title} för att du prenumererar på nyheter från Kraftsamling.",
        questions="Frågor eller tips? Skriv till",
        website="Webbplats",
        unsubscribe="Avregistrera dig",
        podcast="Podd",
        video="Video",
        default_intro=(
            "Hej! Här kommer månadens Kraftsamling update: nyheter från programmet, "
            "utlysningar att söka, evenemang att boka in och något att lyssna på. "
            "Trevlig läsning!"
        ),
        preheader="Kraftsamling i {month}: {listed}.",
        preheader_empty="Kraftsamling i {month}.",
        list_and="och",
        counts={
            "news": ("{n} nyhet", "{n} nyheter"),
            "funding": ("{n} utlysning", "{n} utlysningar"),
            "events": ("{n} evenemang", "{n} evenemang"),
            "listen": (
                "{n} tips att lyssna på och titta på",
                "{n} tips att lyssna på och titta på",
            ),
        },
        seconds="{n} sek",
        minutes="{n} min",
        hours="{h} tim {m} min",
        unsubscribe_subject="avregistrera",
        all_issues="alla nummer",
        archive_intro=(
            "Nyhetsbrevet kommer en gång i månaden. Här finns alla nummer, det senaste först."
        ),
        sent="skickat",
        no_issues="Inga nummer ännu.",
        follow_feed="Följ nyhetsbrevet i en flödesläsare (Atom)",
        to_site="Till webbplatsen",
        feed_subtitle="Nyhetsbrevet från Kraftsamling, en gång i månaden.",
        feed_summary="{title}: läs numret på webben.",
    ),
    storage_prefix="newsletters",
    templates=PACKAGE_TEMPLATES,
)


# --- another edition: a YAML file ------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(
            f"The edition file {path} does not exist. Fix the `edition` setting "
            "(KRAFTSAMLING_EDITION); leave it empty for the Swedish edition."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"The edition file {path} cannot be read ({exc}); save it as UTF-8."
        ) from None
    try:
        data = yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"The edition file {path} is not valid YAML{where}: {exc}.") from None
    if not isinstance(data, dict):
        raise InputError(f"The edition file {path} must be a mapping of keys (name: en, ...).")
    return data


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """One validation error: the key (words.deadline) and what is wrong with it."""
    message = message.removeprefix("Value error, ")
    return f"{'.'.join(str(part) for part in loc)}: {message}" if loc else message


def load_edition(path: Path | str) -> Edition:
    """The edition described by the YAML file at `path`; `templates` is relative to its folder.

    Raises SettingsError when the file is missing, InputError naming the file and the key
    when something in it is wrong.
    """
    path = Path(path)
    data = _read_yaml(path)
    folder = data.get("templates")
    data["templates"] = (path.parent / str(folder)) if folder is not None else PACKAGE_TEMPLATES
    try:
        return Edition.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["msg"]) for err in exc.errors())
        raise InputError(
            f"The edition file {path} is invalid: {problems}. Fix the key named (the "
            "Swedish edition in flows/newsletter/edition.py shows every key)."
        ) from None


def edition_for(settings: Settings) -> Edition:
    """The edition the settings select: the `edition` file, else the Swedish edition."""
    return SWEDISH if settings.edition is None else load_edition(settings.edition)
