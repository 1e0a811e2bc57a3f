"""Storage: the same behaviour from a folder, moto in-process and moto over HTTP.

The behavioural tests run against all three stores; the S3-only tests check what only S3 has
(multipart, headers on the wire, ACLs, retries, endpoints, error messages).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import free_port

from flows.core.backends import open_storage, storage_from_url
from flows.core.errors import ConcurrentWriteError, SettingsError, StorageError
from flows.core.s3 import S3Storage
from flows.core.settings import Settings
from flows.core.storage import (
    CACHE_LONG,
    CACHE_PRIVATE,
    CACHE_SHORT,
    LocalStorage,
    Storage,
    check_key,
    plain_etag,
    public_url,
)

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3-inprocess", "s3-http"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """One storage of each kind; the behaviour below must not depend on which."""
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    place = request.getfixturevalue(
        "s3_inprocess" if request.param == "s3-inprocess" else "s3_http"
    )
    return place.storage("kraft")


def _put(store: Storage, key: str, data: bytes, **conditions: object):
    return store.put_bytes(
        key,
        data,
        content_type="application/json",
        cache_control=CACHE_PRIVATE,
        public=False,
        **conditions,
    )


# --- the same behaviour everywhere ------------------------------------------------------


def test_bytes_round_trip_with_one_etag_form(store: Storage) -> None:
    written = _put(store, "podcast/catalog.json", b'{"episodes": []}')
    data, etag = store.get_bytes("podcast/catalog.json")
    info = store.head("podcast/catalog.json")

    assert data == b'{"episodes": []}'
    assert written.etag == etag == info.etag
    assert etag and '"' not in etag
    assert (info.size, info.content_type, info.cache_control) == (
        16,
        "application/json",
        CACHE_PRIVATE,
    )


def test_missing_objects_are_none_and_delete_is_idempotent(store: Storage) -> None:
    assert store.get_bytes("podcast/nothing.json") is None
    assert store.head("podcast/nothing.json") is None
    store.delete("podcast/nothing.json")

    _put(store, "podcast/gone.json", b"x")
    store.delete("podcast/gone.json")
    assert store.head("podcast/gone.json") is None
    assert store.list_keys() == []


def test_put_file_streams_a_file_with_its_headers(store: Storage, tmp_path: Path) -> None:
    audio = tmp_path / "avsnitt.mp3"
    audio.write_bytes(os.urandom(300_000))

    info = store.put_file(
        "podcast/audio/avsnitt-1.mp3",
        audio,
        content_type="audio/mpeg",
        cache_control=CACHE_LONG,
        public=True,
    )

    assert info == store.head("podcast/audio/avsnitt-1.mp3")
    assert (info.size, info.content_type, info.cache_control) == (
        300_000,
        "audio/mpeg",
        CACHE_LONG,
    )
    data, etag = store.get_bytes("podcast/audio/avsnitt-1.mp3")
    assert data == audio.read_bytes()
    assert etag == info.etag


def test_overwrite_replaces_content_and_etag(store: Storage) -> None:
    first = _put(store, "podcast/feed.xml", b"<rss>1</rss>")
    second = _put(store, "podcast/feed.xml", b"<rss>2</rss>")

    assert first.etag != second.etag
    assert store.get_bytes("podcast/feed.xml") == (b"<rss>2</rss>", second.etag)


def test_list_keys_is_sorted_and_filters_by_prefix(store: Storage) -> None:
    for key in ["podcast/feed.xml", "podcast/audio/b.mp3", "podcast/audio/a.mp3", "news/x"]:
        _put(store, key, b"x")

    assert store.list_keys() == [
        "news/x",
        "podcast/audio/a.mp3",
        "podcast/audio/b.mp3",
        "podcast/feed.xml",
    ]
    assert store.list_keys("podcast/audio/") == ["podcast/audio/a.mp3", "podcast/audio/b.mp3"]
    assert store.list_keys("podcast/f") == ["podcast/feed.xml"]
    assert store.list_keys("nope/") == []


def test_if_none_match_creates_only_once(store: Storage) -> None:
    created = _put(store, "podcast/catalog.json", b"first", if_none_match=True)

    with pytest.raises(ConcurrentWriteError, match=r"podcast/catalog\.json"):
        _put(store, "podcast/catalog.json", b"second", if_none_match=True)
    assert store.get_bytes("podcast/catalog.json") == (b"first", created.etag)


def test_if_match_refuses_a_stale_etag_and_keeps_the_other_write(store: Storage) -> None:
    base = _put(store, "podcast/catalog.json", b"v1")
    theirs = _put(store, "podcast/catalog.json", b"v2 by another run", if_match=base.etag)

    with pytest.raises(ConcurrentWriteError, match=r"podcast/catalog\.json.*run again"):
        _put(store, "podcast/catalog.json", b"v2 by this run", if_match=base.etag)
    assert store.get_bytes("podcast/catalog.json") == (b"v2 by another run", theirs.etag)

    # A quoted ETag (as S3 sends it) is the same ETag.
    ours = _put(store, "podcast/catalog.json", b"v3", if_match=f'"{theirs.etag}"')
    assert store.get_bytes("podcast/catalog.json") == (b"v3", ours.etag)


def test_if_match_on_a_missing_object_is_a_conflict(store: Storage) -> None:
    with pytest.raises(ConcurrentWriteError):
        _put(store, "podcast/catalog.json", b"v1", if_match="0123456789abcdef")
    assert store.head("podcast/catalog.json") is None


BAD_KEYS = [
    "",
    "../outside.mp3",
    "podcast/../../outside.mp3",
    "/etc/passwd",
    "podcast\\audio.mp3",
    "podcast/\naudio.mp3",
    "podcast/a\x00b",
    "podcast//a.mp3",
    "podcast/./a.mp3",
    "podcast/",
    ".meta/podcast/feed.xml.json",
    "podcast/.tmp-abc",
    "x" * 1025,
]


def test_keys_that_could_escape_are_refused_everywhere(store: Storage, tmp_path: Path) -> None:
    source = tmp_path / "a.mp3"
    source.write_bytes(b"x")
    for key in BAD_KEYS:
        with pytest.raises(StorageError, match="Refused storage key"):
            _put(store, key, b"x")
        with pytest.raises(StorageError, match="Refused storage key"):
            store.put_file(
                key, source, content_type="audio/mpeg", cache_control=CACHE_LONG, public=True
            )
        for read in (store.get_bytes, store.head, store.delete):
            with pytest.raises(StorageError, match="Refused storage key"):
                read(key)
    assert store.list_keys() == []
    assert not (tmp_path / "outside.mp3").exists()


# --- keys and links (pure) ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_an_accepted_key_always_stays_inside_the_root(key: str) -> None:
    root = Path("/srv/storage")
    try:
        check_key(key)
    except StorageError:
        return
    resolved = Path(os.path.normpath(root / key))
    assert resolved.is_relative_to(root) and resolved != root


def test_public_url_quotes_the_key_and_refuses_bad_ones() -> None:
    assert (
        public_url("https://media.example/pod", "podcast/audio/å ä.mp3")
        == "https://media.example/pod/podcast/audio/%C3%A5%20%C3%A4.mp3"
    )
    with pytest.raises(StorageError):
        public_url("https://media.example/", "../x")


def test_plain_etag_strips_quotes_only() -> None:
    assert plain_etag('"abc-3"') == "abc-3"
    assert plain_etag("abc") == "abc"
    assert plain_etag(None) == ""


# --- choosing a store ---------------------------------------------------------------------


def test_storage_from_url_accepts_the_three_forms(tmp_path: Path) -> None:
    folder = storage_from_url(str(tmp_path / "out"))
    assert isinstance(folder, LocalStorage) and folder.root == tmp_path / "out"

    file_url = storage_from_url(f"file://{tmp_path}/with%20space")
    assert isinstance(file_url, LocalStorage) and file_url.root == tmp_path / "with space"

    s3 = storage_from_url("s3://media-bucket/pod/cast/", Settings.load(s3_region="eu-north-1"))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.describe()) == (
        "media-bucket",
        "pod/cast",
        "s3://media-bucket/pod/cast",
    )
    assert s3.client.meta.region_name == "eu-north-1"
    assert storage_from_url("s3://media-bucket").describe() == "s3://media-bucket"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://media.example/pod",
        "ftp://host/x",
        "s3://",
        "s3:///prefix-without-bucket",
        "s3://bad bucket/x",
        "s3://bucket/../x",
        "s3://bucket/x?region=eu-north-1",
        "file://otherhost/srv/x",
    ],
)
def test_storage_from_url_refuses_other_forms_with_the_accepted_ones(url: str) -> None:
    with pytest.raises(SettingsError, match=r"s3://bucket/prefix"):
        storage_from_url(url)


def test_open_storage_uses_the_settings(tmp_path: Path) -> None:
    store = open_storage(Settings.load(storage=str(tmp_path / "s")))
    assert isinstance(store, LocalStorage) and store.describe() == str(tmp_path / "s")


# --- LocalStorage details --------------------------------------------------------------


def test_local_writes_are_atomic_readable_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    _put(store, "podcast/catalog.json", b"{}")
    audio = tmp_path / "a.mp3"
    audio.write_bytes(b"ID3" + bytes(5000))
    store.put_file(
        "podcast/audio/a.mp3",
        audio,
        content_type="audio/mpeg",
        cache_control=CACHE_LONG,
        public=True,
    )

    every_file = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*"))
    assert not [name for name in every_file if ".tmp-" in name]
    assert (store.path_of("podcast/audio/a.mp3").stat().st_mode & 0o777) == 0o644
    assert store.metadata("podcast/audio/a.mp3")["public"] is True
    assert store.metadata("podcast/catalog.json")["content_type"] == "application/json"
    assert store.list_keys() == ["podcast/audio/a.mp3", "podcast/catalog.json"]


def test_local_list_keys_hides_metadata_and_unfinished_files(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    _put(store, "podcast/feed.xml", b"<rss/>")
    (store.root / "podcast" / ".tmp-half-written").write_bytes(b"half")
    (store.root / ".tmp-x").mkdir()
    (store.root / ".tmp-x" / "y").write_bytes(b"half")

    assert (store.root / ".meta" / "podcast" / "feed.xml.json").is_file()
    assert store.list_keys() == ["podcast/feed.xml"]


def test_local_failed_write_keeps_the_old_object(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    _put(store, "podcast/feed.xml", b"<rss>old</rss>")

    with pytest.raises(StorageError, match=r"podcast/feed\.xml/inner"):
        _put(store, "podcast/feed.xml/inner", b"x")  # a file stands where a folder must be
    with pytest.raises(StorageError, match=r"missing\.mp3.*Check that the source file exists"):
        store.put_file(
            "podcast/feed.xml",
            tmp_path / "missing.mp3",
            content_type="audio/mpeg",
            cache_control=CACHE_LONG,
            public=True,
        )

    assert store.get_bytes("podcast/feed.xml")[0] == b"<rss>old</rss>"
    assert store.list_keys() == ["podcast/feed.xml"]


def test_local_head_notices_a_file_changed_behind_its_back(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    written = _put(store, "podcast/feed.xml", b"<rss>1</rss>")
    store.path_of("podcast/feed.xml").write_bytes(b"<rss>edited by hand</rss>")

    info = store.head("podcast/feed.xml")
    assert info.etag != written.etag
    assert info.etag == hashlib.sha256(b"<rss>edited by hand</rss>").hexdigest()
    assert info.etag == store.get_bytes("podcast/feed.xml")[1]


def test_local_conditional_writes_have_exactly_one_winner(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    base = _put(store, "podcast/catalog.json", b"v0")
    results: list[str] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        try:
            _put(store, "podcast/catalog.json", f"v1 by {n}".encode(), if_match=base.etag)
            results.append("won")
        except ConcurrentWriteError:
            results.append("lost")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == ["lost"] * 7 + ["won"]


# --- S3 only ----------------------------------------------------------------------------


def test_multipart_upload_over_http_streams_parts_with_headers(s3_http, tmp_path: Path) -> None:
    big = tmp_path / "long-episode.mp3"
    with big.open("wb") as handle:
        for _ in range(12):
            handle.write(os.urandom(MiB))
    store = s3_http.storage("kraft", multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)

    info = store.put_file(
        "podcast/audio/long-episode.mp3",
        big,
        content_type="audio/mpeg",
        cache_control=CACHE_LONG,
        public=True,
    )

    assert info.size == 12 * MiB
    assert info.etag.endswith("-3")  # three parts: 5 + 5 + 2 MiB
    parts = [r for r in s3_http.request_log.requests if "partNumber=" in r.query]
    assert len(parts) == 3 and {r.method for r in parts} == {"PUT"}
    raw = s3_http.client.head_object(
        Bucket=s3_http.bucket, Key="kraft/podcast/audio/long-episode.mp3"
    )
    assert (raw["ContentType"], raw["CacheControl"]) == ("audio/mpeg", CACHE_LONG)
    data, etag = store.get_bytes("podcast/audio/long-episode.mp3")
    assert hashlib.sha256(data).digest() == hashlib.sha256(big.read_bytes()).digest()
    assert etag == info.etag


@pytest.mark.parametrize("where", ["s3_inprocess", "s3_http"])
def test_s3_headers_and_prefix_on_the_wire(where: str, request, tmp_path: Path) -> None:
    place = request.getfixturevalue(where)
    store = place.storage("site/kraft")
    small = tmp_path / "cover.jpg"
    small.write_bytes(b"\xff\xd8\xff" + bytes(100))
    store.put_file(
        "podcast/art/cover.jpg",
        small,
        content_type="image/jpeg",
        cache_control=CACHE_LONG,
        public=True,
    )
    store.put_bytes(
        "podcast/feed.xml",
        b"<rss/>",
        content_type="application/rss+xml",
        cache_control=CACHE_SHORT,
        public=True,
    )

    raw_keys = [o["Key"] for o in place.client.list_objects_v2(Bucket=place.bucket)["Contents"]]
    assert raw_keys == ["site/kraft/podcast/art/cover.jpg", "site/kraft/podcast/feed.xml"]
    feed = place.client.head_object(Bucket=place.bucket, Key="site/kraft/podcast/feed.xml")
    assert (feed["ContentType"], feed["CacheControl"]) == ("application/rss+xml", CACHE_SHORT)
    art = place.client.head_object(Bucket=place.bucket, Key="site/kraft/podcast/art/cover.jpg")
    assert (art["ContentType"], art["CacheControl"]) == ("image/jpeg", CACHE_LONG)
    assert place.request_log.count("PUT", key="site/kraft/podcast/feed.xml") == 1
    # A sibling prefix that merely starts with the same letters is not ours.
    place.client.put_object(Bucket=place.bucket, Key="site/kraftwerk/x", Body=b"x")
    assert store.list_keys() == ["podcast/art/cover.jpg", "podcast/feed.xml"]


def _all_users_can_read(place, key: str) -> bool:
    grants = place.client.get_object_acl(Bucket=place.bucket, Key=key)["Grants"]
    return any(
        g["Grantee"].get("URI", "").endswith("/global/AllUsers") and g["Permission"] == "READ"
        for g in grants
    )


def test_public_read_acl_only_when_asked(s3_inprocess) -> None:
    with_acl = s3_inprocess.storage("acl", public_acl=True)
    _put_public = dict(content_type="text/plain", cache_control=CACHE_SHORT)
    with_acl.put_bytes("public.txt", b"x", public=True, **_put_public)
    with_acl.put_bytes("private.txt", b"x", public=False, **_put_public)
    s3_inprocess.storage("plain").put_bytes("public.txt", b"x", public=True, **_put_public)

    assert _all_users_can_read(s3_inprocess, "acl/public.txt")
    assert not _all_users_can_read(s3_inprocess, "acl/private.txt")
    assert not _all_users_can_read(s3_inprocess, "plain/public.txt")


def test_own_client_has_standard_retries_and_timeouts() -> None:
    store = S3Storage(
        "media-bucket", "p", region="eu-north-1", max_attempts=7, connect_timeout=3, read_timeout=30
    )
    config = store.client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 7}
    assert (config.connect_timeout, config.read_timeout) == (3, 30)
    assert store.client.meta.region_name == "eu-north-1"

    from_settings = storage_from_url("s3://media-bucket/p", Settings.load(s3_max_attempts=2))
    assert from_settings.client.meta.config.retries["total_max_attempts"] == 2


def test_endpoint_from_settings_else_from_aws_environment(s3_http, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_http.endpoint)
    from_env = storage_from_url(f"s3://{s3_http.bucket}/env", Settings.load())
    assert from_env.client.meta.endpoint_url == s3_http.endpoint
    _put(from_env, "podcast/catalog.json", b"{}")
    assert s3_http.request_log.count("PUT", key="env/podcast/catalog.json") == 1

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    explicit = open_storage(s3_http.settings("explicit"))
    assert explicit.client.meta.endpoint_url == s3_http.endpoint
    _put(explicit, "podcast/catalog.json", b"{}")
    assert s3_http.request_log.count("PUT", key="explicit/podcast/catalog.json") == 1


def test_missing_bucket_says_so_and_how_to_fix(s3_inprocess, tmp_path: Path) -> None:
    store = S3Storage(
        "no-such-bucket", "kraft", client=s3_inprocess.client, multipart_threshold=5 * MiB
    )
    with pytest.raises(
        StorageError,
        match=r"s3://no-such-bucket/kraft/podcast/feed\.xml.*"
        r"bucket 'no-such-bucket' does not exist.*Create the bucket",
    ):
        _put(store, "podcast/feed.xml", b"x")

    audio = tmp_path / "a.mp3"
    audio.write_bytes(bytes(1000))
    with pytest.raises(
        StorageError,
        match=r"s3://no-such-bucket/kraft/podcast/a\.mp3.*"
        r"does not exist",
    ):
        store.put_file(
            "podcast/a.mp3", audio, content_type="audio/mpeg", cache_control=CACHE_LONG, public=True
        )
    with pytest.raises(StorageError, match="does not exist"):
        store.get_bytes("podcast/catalog.json")


def test_storage_down_is_a_storage_error_naming_the_object(tmp_path: Path) -> None:
    store = S3Storage(
        "media-bucket",
        "kraft",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens
        max_attempts=1,
        connect_timeout=0.5,
        read_timeout=0.5,
    )
    audio = tmp_path / "a.mp3"
    audio.write_bytes(bytes(1000))

    with pytest.raises(
        StorageError, match=r"s3://media-bucket/kraft/podcast/a\.mp3.*did not answer"
    ):
        store.put_file(
            "podcast/a.mp3", audio, content_type="audio/mpeg", cache_control=CACHE_LONG, public=True
        )
    with pytest.raises(StorageError, match=r"s3://media-bucket/kraft/podcast/catalog\.json"):
        store.get_bytes("podcast/catalog.json")
    with pytest.raises(StorageError, match=r"s3://media-bucket/kraft/podcast/catalog\.json"):
        store.head("podcast/catalog.json")
    with pytest.raises(StorageError, match=r"s3://media-bucket/kraft/podcast/\*"):
        store.list_keys("podcast/")


class _SlowDown(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that is always overloaded (503 SlowDown), counting the attempts."""

    protocol_version = "HTTP/1.1"  # answers botocore's "Expect: 100-continue" at once
    hits = 0

    def do_PUT(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_down_endpoint() -> Iterator[type[_SlowDown]]:
    _SlowDown.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowDown)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _SlowDown.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield _SlowDown
    finally:
        server.shutdown()
        server.server_close()


def test_throttling_is_retried_then_reported(slow_down_endpoint) -> None:
    store = S3Storage(
        "media-bucket",
        "kraft",
        endpoint_url=slow_down_endpoint.endpoint,
        max_attempts=2,
        read_timeout=2,
    )

    with pytest.raises(StorageError, match=r"s3://media-bucket/kraft/podcast/feed\.xml.*SlowDown"):
        _put(store, "podcast/feed.xml", b"<rss/>")
    assert slow_down_endpoint.hits == 2


def test_server_log_sees_clients_that_flows_build_from_settings(s3_http) -> None:
    # The recipe other tests use: Settings point at the moto server; the code under test
    # builds its own client; the server-side log still counts its requests.
    store = open_storage(s3_http.settings("kraft"))
    assert store.client is not s3_http.client
    _put(store, "podcast/catalog.json", b"{}")
    assert s3_http.request_log.puts == 1

    s3_http.request_log.clear()
    assert store.head("podcast/catalog.json") is not None
    assert store.get_bytes("podcast/catalog.json")[0] == b"{}"
    assert s3_http.request_log.puts == 0
    assert s3_http.request_log.count("HEAD", key="kraft/podcast/catalog.json") == 1
    assert s3_http.request_log.count("GET", prefix="kraft/") == 1
