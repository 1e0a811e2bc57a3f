"""Every setting in one place.

Values come from (highest first) explicit overrides (command-line flags, flow parameters),
environment variables prefixed `KRAFTSAMLING_` (e.g. `KRAFTSAMLING_STORAGE=s3://bucket/p`),
then the defaults below, which run the shipped demo offline with no credentials.
The object is validated once and passed down; no module reads the environment itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flows.core.errors import SettingsError

# A list of sources from the environment: a JSON list, or URLs/paths separated by spaces.
SourceList = Annotated[list[str] | None, NoDecode]


class Settings(BaseSettings):
    """Validated settings for all flows. Build with `Settings.load(...)`."""

    model_config = SettingsConfigDict(
        env_prefix="KRAFTSAMLING_", extra="forbid", validate_default=True
    )

    # --- storage and public links -------------------------------------------------------
    storage: str = Field(
        default=".storage",
        description="Where published things live: a folder, file:///path or s3://bucket/prefix.",
    )
    public_url: str = Field(
        default="https://kraftsamling.example/",
        description="Public https base URL under which the storage's public objects are served.",
    )
    s3_region: str | None = Field(default=None, description="AWS region of the bucket.")
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint; AWS_ENDPOINT_URL(_S3) is honoured when unset.",
    )
    s3_public_acl: bool = Field(
        default=False,
        description="Send ACL public-read on public objects (for buckets that use ACLs).",
    )
    s3_max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts per S3 request, retrying throttling, 5xx and network errors.",
    )

    # --- the newsletter -----------------------------------------------------------------
    newsletters_dir: Path = Field(
        default=Path("newsletters"), description="Folder of newsletter issues (`--out`)."
    )
    edition: Path | None = Field(
        default=None,
        description="The newsletter's edition: a YAML file of its language, words, sections, "
        "storage prefix and templates (see Editions); empty = the Swedish edition.",
    )
    # No default: production must never build an issue from the demo content by accident.
    posts: SourceList = Field(
        default=None,
        description="Posts feeds (RSS/Atom): http(s) URLs or local paths, separated by spaces.",
    )
    events: SourceList = Field(
        default=None,
        description="Events: iCalendar (.ics) and YAML URLs or paths, separated by spaces; "
        "`[]` for none.",
    )
    kind_map: Path | None = Field(
        default=None, description="YAML file mapping feed categories to post kinds."
    )
    events_days: int = Field(
        default=60, ge=1, le=366, description="Events starting this many days ahead are listed."
    )
    event_occurrence_limit: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Occurrences of one repeating event read per issue; the rest are dropped.",
    )
    first_issue_days: int = Field(
        default=31, ge=1, le=366, description="Window of the first issue, in days before its month."
    )
    max_items: int = Field(
        default=25,
        ge=1,
        le=200,
        description="At most this many items per issue (Gmail clips at ~102 KB).",
    )
    newsletter_title: str = Field(
        default="Kraftsamling update", description="The newsletter's name in the email and subject."
    )
    site_url: str = Field(
        default="https://kraftsamling.example/",
        description="The programme's site, linked from the email.",
    )
    contact_email: str = Field(
        default="kontakt@kraftsamling.example", description="Contact address in the email's footer."
    )
    unsubscribe_url: str = Field(
        default="https://kraftsamling.example/nyhetsbrev/avregistrera",
        description="Unsubscribe page (footer and List-Unsubscribe).",
    )
    http_timeout: float = Field(
        default=10.0, gt=0, description="Seconds per connect/read when fetching feeds."
    )
    http_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of a feed fetch on network errors, 5xx and 429.",
    )
    http_backoff: float = Field(
        default=0.5, ge=0, le=60, description="First retry delay in seconds; doubles each retry."
    )
    http_deadline: float = Field(
        default=60.0,
        gt=0,
        description="Seconds one source may take in all (connect, every read, retries).",
    )
    user_agent: str = Field(
        default="KraftsamlingPublishing/0.1 (+https://kraftsamling.example/)",
        description="User-Agent of feed fetches and of the link check.",
    )
    http_only_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts with no https: their links stay http (flagged), their images go.",
    )
    link_check: bool = Field(
        default=True,
        description="Check the draft's links when the test copy goes out (`--no-link-check`).",
    )
    link_check_budget: float = Field(
        default=30.0, gt=0, description="Seconds the whole link check may take."
    )

    # --- the podcast --------------------------------------------------------------------
    episodes_dir: Path = Field(
        default=Path("episodes"),
        description="The producers' folder with show.yaml and inbox/ (`--episodes`).",
    )
    settle_seconds: float = Field(
        default=10.0, ge=0, description="Files changed this recently are still being copied."
    )
    upload_concurrency: int = Field(
        default=4, ge=1, le=32, description="Episodes processed and uploaded at once."
    )
    analytics_prefix: str | None = Field(
        default=None, description="Prefix put before enclosure URLs, e.g. a stats redirect."
    )
    mp3_bitrate_kbps: int = Field(
        default=128, ge=32, le=320, description="Bitrate of MP3s encoded from WAV/FLAC/AIFF."
    )
    force_channels: int | None = Field(
        default=None, ge=1, le=2, description="1 or 2 forces mono/stereo; unset keeps the source."
    )
    loudness_target_lufs: float = Field(
        default=-16.0,
        ge=-70,
        le=-5,
        description="Integrated loudness target of published episodes.",
    )
    loudness_true_peak_dbtp: float = Field(
        default=-1.0, ge=-9, le=0, description="True-peak ceiling of published episodes."
    )
    loudness_mono_lufs: float | None = Field(
        default=None, ge=-70, le=-5, description="Target for mono episodes (-19); unset: as stereo."
    )
    loudness_margin_lu: float = Field(
        default=2.0, ge=0, description="MP3/M4A further than this off target get a warning."
    )
    normalise_lossy: bool = Field(
        default=False, description="Re-encode MP3/M4A that are off target instead of warning."
    )
    catalog_backups_keep: int = Field(
        default=200,
        ge=0,
        description="Newest catalog backups kept (podcast/catalog-backups/); 0 keeps all.",
    )
    lock_stale_seconds: float = Field(
        default=7200,
        ge=60,
        description="A publish run's lock (podcast/.lock) older than this is taken over.",
    )

    # --- apps told of a changed feed (flows/podcast/announce.py) ------------------------
    websub_hub: str | None = Field(
        default=None,
        description="WebSub hub (https URL): named in the feed, and told of every feed change.",
    )
    podping_url: str | None = Field(
        default=None,
        description="Podping endpoint (e.g. https://podping.cloud/) told of every feed change; "
        "needs KRAFTSAMLING_PODPING_TOKEN.",
    )
    podping_token: SecretStr | None = Field(
        default=None,
        description="Podping token, sent as the Authorization header (from the environment, "
        "never in files).",
    )

    # --- sending ------------------------------------------------------------------------
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server.")
    smtp_port: int = Field(default=25, description="SMTP port.")
    smtp_security: Literal["none", "starttls", "ssl"] = Field(
        default="starttls", description="`none`, `starttls` or `ssl`."
    )
    smtp_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds to wait for the SMTP server to connect or answer; an unreachable "
        "server fails after this.",
    )
    smtp_user: str | None = Field(
        default=None, description="SMTP login (from the environment, never in files)."
    )
    smtp_password: SecretStr | None = Field(
        default=None, description="SMTP password (from the environment or a Prefect Secret block)."
    )
    smtp_password_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block with the SMTP password (when "
        "KRAFTSAMLING_SMTP_PASSWORD is unset).",
    )
    mail_from: str = Field(
        default="Kraftsamling <nyhetsbrev@kraftsamling.example>",
        description="From header of the newsletter.",
    )
    reply_to: str = Field(
        default="kontakt@kraftsamling.example", description="Reply-To header of the newsletter."
    )
    approval_poll_seconds: int = Field(
        default=10, ge=1, le=3600, description="How often a paused run checks for a decision."
    )
    unsubscribe_email: str | None = Field(
        default=None,
        description="Address of the List-Unsubscribe mailto link (default: the Reply-To address).",
    )

    # --- people told ---------------------------------------------------------------------
    notify: bool = Field(
        default=True,
        description="Email producers after podcast runs and operators about failed runs.",
    )
    notify_failures: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses told of every failed or crashed run (flow, step, error, link).",
    )

    @field_validator("posts", "events", "http_only_hosts", "notify_failures", mode="before")
    @classmethod
    def _source_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else text.split()
        return value

    @field_validator("edition", "websub_hub", "podping_url", "podping_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # KRAFTSAMLING_EDITION= (empty) selects the Swedish edition, as unset does; an empty
        # hub or Podping setting tells no one.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("newsletters_dir", "episodes_dir")
    @classmethod
    def _a_folder(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{str(value)!r} is a file; give a folder (it is made when missing)")
        return value

    @field_validator("public_url", "site_url", "unsubscribe_url")
    @classmethod
    def _absolute_https(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
        return value

    @field_validator("public_url")
    @classmethod
    def _https_for_listeners(cls, value: str) -> str:
        # Apps and mail clients refuse or warn about http media; only a test server on this
        # machine may go without TLS.
        host = (urlsplit(value).hostname or "").lower()
        if value.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError(
                f"must be https (podcast apps refuse http enclosures), got {value!r}; "
                "use the https address of the storage or its CDN"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("websub_hub", "podping_url")
    @classmethod
    def _https_announcements(cls, value: str | None) -> str | None:
        # The Podping token travels in a header: only a test server on this machine may go
        # without TLS, as for public_url.
        if value is None:
            return None
        scheme, host = urlsplit(value).scheme.lower(), (urlsplit(value).hostname or "").lower()
        loopback = scheme == "http" and host in ("localhost", "127.0.0.1", "::1")
        if not host or (scheme != "https" and not loopback):
            raise ValueError(f"must be an absolute https URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _podping_pair(self) -> Settings:
        if (self.podping_url is None) != (self.podping_token is None):
            missing = "TOKEN" if self.podping_token is None else "URL"
            raise ValueError(
                f"Podping needs both its URL and its token; set KRAFTSAMLING_PODPING_{missing} "
                "as well, or unset "
                "the other to tell Podping nothing"
            )
        return self

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Build settings from defaults, the environment and non-None overrides."""
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors()
            )
            raise SettingsError(
                f"Invalid settings: {problems}. Fix the flag, parameter or "
                f"KRAFTSAMLING_* environment variable named."
            ) from None
