"""Credentials never leak, and every upload says public or private correctly.

The flows run with fake credentials (AWS keys for the moto server, an SMTP login for an
aiosmtpd server on 127.0.0.1 that requires AUTH). Then every place a secret could end up is
searched: log records of every logger at DEBUG, stdout/stderr, Prefect's stored logs and
artifacts, the issue folder (manifest, review, progress), the drop folder, the catalog and
every stored object.

Secret values (the AWS secret key, the SMTP password) may appear nowhere. Identifiers (the
AWS access key id, the SMTP user) may appear only in third-party DEBUG wire logs (botocore
signs each request with the key id); nowhere in our logs, files, artifacts or objects.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import DEMO_DIR, DEMO_EVENTS, DEMO_POSTS, REPO_ROOT
from loopback import smtp_server

from flows.core.backends import open_storage
from flows.core.models import STOCKHOLM
from flows.core.settings import Settings
from flows.core.storage import LocalStorage
from flows.newsletter.archive import publish_web_copy
from flows.newsletter.build import build_issue
from flows.newsletter.delivery import send_issue
from flows.podcast.run import publish

# The test server asks for AUTH without TLS on loopback on purpose; aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

AWS_KEY_ID = "FAKEAKIDKRAFT4F9C1B"
AWS_SECRET = "FAKE-SECRET-4f9c1b-aws-do-not-use"
SMTP_USER = "fake-smtp-user-4f9c1b"
SMTP_PASSWORD = "FAKE-SECRET-4f9c1b-smtp-do-not-use"
SECRETS = (AWS_SECRET, SMTP_PASSWORD)
IDENTIFIERS = (AWS_KEY_ID, SMTP_USER)
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=STOCKHOLM)
MONTH = "2026-12"
READERS = ["lasare01@example.org", "lasare02@example.org"]

PUBLIC_PREFIXES = (
    "podcast/audio/",
    "podcast/art/",
    "podcast/transcripts/",
    "podcast/chapters/",
    "podcast/feed.xml",
    "newsletters/index.html",
    "newsletters/feed.xml",
    "index.html",  # the start page (issue 25)
    "podcast/index.html",  # the show page and the episode pages (issue 24)
    "podcast/episodes/",
)
PRIVATE_PREFIXES = (
    "podcast/catalog.json",
    "podcast/feed-state.json",
    "podcast/pages.json",  # the hashes of the web pages
    "home.json",  # what each channel shows on the start page
    "podcast/catalog-backups/",
    "podcast/masters/",
    "newsletters/archive.json",
)


def expected_public(key: str) -> bool:
    if key.startswith("newsletters/") and key.endswith("/index.html"):
        return True  # an issue's web copy (and the archive page)
    if key.startswith(PUBLIC_PREFIXES):
        return True
    if key.startswith("newsletters/") and key.endswith("/sent.json"):
        return False  # an issue's sent state: for the flows, not for readers
    assert key.startswith(PRIVATE_PREFIXES), f"{key}: no rule says whether it is public"
    return False


# --- a real SMTP server that requires AUTH ---------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            self.logins.append((auth_data.login, auth_data.password))
            ok = auth_data.login == SMTP_USER.encode() and auth_data.password == (
                SMTP_PASSWORD.encode()
            )
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


def smtp_with_auth(mailbox: Mailbox):
    return smtp_server(
        mailbox,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
        auth_required=True,
    )


@pytest.fixture
def fake_credentials(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("KRAFTSAMLING_SMTP_USER", SMTP_USER)
    monkeypatch.setenv("KRAFTSAMLING_SMTP_PASSWORD", SMTP_PASSWORD)


@pytest.fixture
def show_dir(tmp_path) -> Path:
    """The shipped show and demo episodes in a fresh drop folder."""
    folder = tmp_path / "episodes"
    (folder / "inbox").mkdir(parents=True)
    for name in ("show.yaml", "cover.jpg"):
        shutil.copy(REPO_ROOT / "episodes" / name, folder / name)
    for source in (DEMO_DIR / "episodes").iterdir():
        shutil.copy(source, folder / "inbox" / source.name)
    return folder


# --- searching for secrets ---------------------------------------------------------------------


def _files_under(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.is_file()]


def assert_nowhere(texts: dict[str, str | bytes], values: tuple[str, ...]) -> None:
    for where, content in texts.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8", "replace")
        for value in values:
            assert value.encode() not in data, f"{value!r} leaked into {where}"


def record_text(record: logging.LogRecord) -> str:
    return f"{record.name} {record.getMessage()} {record.exc_text or ''} {record.args!r}"


def check_logs(records: list[logging.LogRecord], captured: str) -> None:
    assert_nowhere({f"log {r.name}:{r.lineno}": record_text(r) for r in records}, SECRETS)
    ours = {
        f"log {r.name}:{r.lineno}": record_text(r)
        for r in records
        if r.name.startswith(("flows", "prefect")) or r.levelno >= logging.INFO
    }
    # aiosmtpd's own server log is the fake server's, not ours.
    ours = {k: v for k, v in ours.items() if not k.startswith("log mail.log")}
    assert_nowhere(ours, IDENTIFIERS)
    assert_nowhere({"stdout/stderr": captured}, SECRETS)


# --- the tests ---------------------------------------------------------------------------------


def test_podcast_and_newsletter_leak_no_credentials(
    fake_credentials, show_dir, s3_http, tmp_path, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the fake server's chatter

    # The podcast over real HTTP to moto, signed with the fake keys, ACLs on.
    settings = s3_http.settings(episodes_dir=str(show_dir), settle_seconds=0, s3_public_acl=True)
    report = publish(settings, open_storage(settings), NOW)
    assert not report.failed and len(report.outcomes) == 3, report.summary()

    # The newsletter: build, send through an SMTP server that requires the login.
    mailbox = Mailbox()
    storage = LocalStorage(tmp_path / "web")
    with smtp_with_auth(mailbox) as port:
        letters = Settings.load(
            newsletters_dir=str(tmp_path / "newsletters"),
            posts=DEMO_POSTS,
            events=DEMO_EVENTS,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security="none",
        )
        assert letters.smtp_user == SMTP_USER  # read from the environment
        result = build_issue(letters, MONTH, NOW, force=True)
        assert result.written
        publish_web_copy(storage, result.issue_dir, MONTH, letters, NOW)
        sent = send_issue(result.issue_dir, READERS, letters, NOW)
    assert sent.sent == 2 and len(mailbox.messages) == 2
    assert mailbox.logins and mailbox.logins[-1] == (SMTP_USER.encode(), SMTP_PASSWORD.encode())

    captured = capfd.readouterr()
    # The search sees the wire: botocore's DEBUG log carries the key id in each signature.
    assert any(AWS_KEY_ID in record_text(r) for r in caplog.records if r.name.startswith("bot"))
    check_logs(caplog.records, captured.out + captured.err)
    texts: dict[str, str | bytes] = {str(p): p.read_bytes() for p in _files_under(tmp_path)}
    texts.update({"report": report.summary(), "result": result.summary(), "sent": repr(sent)})
    for raw in mailbox.messages:
        texts[f"message {len(texts)}"] = raw
    for key in s3_http.client.list_objects_v2(Bucket=s3_http.bucket)["Contents"]:
        body = s3_http.client.get_object(Bucket=s3_http.bucket, Key=key["Key"])["Body"].read()
        texts[f"s3://{s3_http.bucket}/{key['Key']}"] = body
    assert any("catalog.json" in where for where in texts)
    assert_nowhere(texts, SECRETS + IDENTIFIERS)


def test_s3_acl_says_public_or_private_for_every_object(fake_credentials, show_dir, s3_http):
    settings = s3_http.settings(episodes_dir=str(show_dir), settle_seconds=0, s3_public_acl=True)
    publish(settings, open_storage(settings), NOW)
    # A second run after a change writes a catalog backup too.
    (show_dir / "inbox").mkdir(exist_ok=True)
    for source in (DEMO_DIR / "episodes").glob("julspecial-2026.*"):
        shutil.copy(source, show_dir / "inbox" / source.name)
    sidecar = show_dir / "inbox" / "julspecial-2026.md"
    sidecar.write_text(sidecar.read_text(encoding="utf-8") + "\nTillägg.\n", encoding="utf-8")
    publish(settings, open_storage(settings), datetime(2026, 12, 2, 8, 0, tzinfo=STOCKHOLM))

    keys = [o["Key"] for o in s3_http.client.list_objects_v2(Bucket=s3_http.bucket)["Contents"]]
    assert any("/catalog-backups/" in k for k in keys) and any("/audio/" in k for k in keys)
    for full in keys:
        key = full.removeprefix("kraft/")
        grants = s3_http.client.get_object_acl(Bucket=s3_http.bucket, Key=full)["Grants"]
        everyone = any(
            g["Grantee"].get("URI", "").endswith("/global/AllUsers") and g["Permission"] == "READ"
            for g in grants
        )
        assert everyone == expected_public(key), f"{key}: public-read is {everyone}"


@pytest.mark.prefect
def test_whole_flows_leak_nothing_into_prefect_logs_or_artifacts(
    prefect_harness, fake_credentials, show_dir, tmp_path, monkeypatch, caplog, capfd
):
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    from flows.newsletter.flow import newsletter
    from flows.podcast.flow import publish_episodes

    caplog.set_level(logging.DEBUG)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Run loggers at DEBUG so Prefect stores every line the runs log (conftest: WARNING).
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        caplog.set_level(logging.DEBUG, logger=name)
    storage_dir = tmp_path / "storage"
    mailbox = Mailbox()
    with smtp_with_auth(mailbox) as port:
        monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
        monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", "none")
        podcast = publish_episodes(
            episodes=str(show_dir), storage=str(storage_dir), now=NOW, settle_seconds=0
        )
        issue = newsletter(
            month=MONTH,
            out=str(tmp_path / "newsletters"),
            storage=str(storage_dir),
            posts=DEMO_POSTS,
            events=DEMO_EVENTS,
            now=NOW,
            force=True,
            send=True,
            to=READERS,
            reviewers=["granskare@example.org"],
            approve=True,
        )
    assert len(podcast.outcomes) == 3 and issue.release.decision == "approved"
    assert len(mailbox.messages) == 3  # the test copy, then the two readers

    APILogWorker.drain_all(timeout=5)  # the run logs are sent in the background

    async def stored() -> tuple[list, list]:
        async with get_client() as client:
            return await client.read_artifacts(), await client.read_logs()

    artifacts, logs = asyncio.run(stored())
    assert logs, "Prefect stored no logs to search"
    assert {"publish-episodes", f"newsletter-{MONTH}"} <= {a.key for a in artifacts}
    texts: dict[str, str | bytes] = {
        f"artifact {a.key}": f"{a.data!r} {a.description!r}" for a in artifacts
    }
    texts.update({f"prefect log {n}": log.message for n, log in enumerate(logs)})
    texts.update({str(p): p.read_bytes() for p in _files_under(tmp_path)})
    assert any(p.name == "review.json" for p in _files_under(tmp_path))
    assert_nowhere(texts, SECRETS + IDENTIFIERS)
    captured = capfd.readouterr()
    check_logs(caplog.records, captured.out + captured.err)

    # Every object in the local store says public or private as its key demands.
    store = LocalStorage(storage_dir)
    keys = store.list_keys()
    assert any(k.startswith("newsletters/2026-12/") for k in keys)
    for key in keys:
        meta = store.metadata(key)
        assert meta, f"{key} has no metadata"
        assert meta["public"] is expected_public(key), f"{key}: public is {meta['public']}"
        if not meta["public"]:
            assert meta["cache_control"].startswith("private"), key
