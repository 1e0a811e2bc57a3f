"""Where published things live: one small interface, a local folder or any S3-compatible store.

Keys are relative to the storage's prefix (e.g. `podcast/feed.xml`); the storage adds the
prefix. Every write says whether the object is public (audio, art, feed, web copies) or
private (catalog, masters, drafts), and what it is (Content-Type, Cache-Control).

`open_storage(settings)` picks the implementation from the `storage` setting:
a folder path or `file:///path` gives `LocalStorage`, `s3://bucket/prefix` gives `S3Storage`.

ETags are opaque strings **without surrounding quotes** in every `ObjectInfo` and from
`get_bytes`, whichever store they come from (S3 sends `"abc"`, we hand out `abc`). Pass one back
as `put_bytes(..., if_match=etag)` unchanged; the store re-quotes it when its protocol wants
quotes. A local ETag is the content's SHA-256; an S3 ETag is the store's own (MD5, or
`md5-N` for an object uploaded in N parts). Compare ETags only with ETags of the same store.

Errors: every failure is a `StorageError` whose message names `<store>/<key>`, the reason and
the fix; a lost conditional write is a `ConcurrentWriteError` (a `StorageError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlparse
from urllib.request import url2pathname

from flows.core.errors import ConcurrentWriteError, SettingsError, StorageError

try:  # POSIX only; without it LocalStorage's conditional writes are checked but not locked.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from flows.core.settings import Settings

CACHE_LONG = "public, max-age=31536000, immutable"  # content-addressed audio and art
CACHE_SHORT = "public, max-age=300"  # the feed and web pages
CACHE_PRIVATE = "private, no-store"  # the catalog and other private objects

MiB = 1024 * 1024
_CHUNK = MiB  # read/copy/hash block size: memory stays flat whatever the file size
_MIN_PART = 5 * MiB  # S3's smallest allowed multipart part (except the last)
_META_DIR = ".meta"  # LocalStorage keeps per-object metadata here
_TMP_PREFIX = ".tmp-"  # LocalStorage's in-progress files; never listed, never a key


@dataclass(frozen=True)
class ObjectInfo:
    """What storage knows of one object. `etag` never has surrounding quotes."""

    key: str
    size: int
    etag: str
    content_type: str | None = None
    cache_control: str | None = None


class Storage(Protocol):
    """The operations the flows need from object storage."""

    def describe(self) -> str:
        """A short human name, e.g. `s3://bucket/prefix` or a folder path."""
        ...

    def put_file(
        self, key: str, path: Path, *, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        """Upload a file from disk, streaming (memory does not grow with its size)."""
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str,
        public: bool,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Write small data. `if_match`: only if the current ETag is this one;
        `if_none_match`: only if the object does not exist. Else ConcurrentWriteError."""
        ...

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None if it does not exist."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size, ETag and type of an object, or None if it does not exist."""
        ...

    def list_keys(self, prefix: str = "") -> list[str]:
        """All keys that start with `prefix` (a plain string prefix, as in S3), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object (no error if it is already gone)."""
        ...


def retry_on_storage_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only storage failures; bad input will not fix itself."""
    try:
        state.result()
    except StorageError:
        return True
    except Exception:
        return False
    return False


def check_key(key: str) -> str:
    """Refuse keys that could leave the storage prefix or that only one store could hold.

    A key is `/`-separated segments; none may be empty, `.` or `..`, start with `.tmp-`
    (LocalStorage's in-progress files), and the first may not be `.meta` (its metadata).
    No leading `/`, backslashes or control characters; at most 1024 bytes (S3's limit).

    >>> check_key("podcast/feed.xml")
    'podcast/feed.xml'
    >>> check_key("podcast/../../etc/passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    flows.core.errors.StorageError: Refused storage key 'podcast/../../etc/passwd': ...
    """
    segments = key.split("/") if isinstance(key, str) else [""]
    if (
        not key
        or "\\" in key
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in key)
        or any(segment in ("", ".", "..") for segment in segments)
        or any(segment.startswith(_TMP_PREFIX) for segment in segments)
        or segments[0] == _META_DIR
        or len(key.encode("utf-8", "surrogatepass")) > 1024
    ):
        raise StorageError(
            f"Refused storage key {key!r}: keys must be relative paths like "
            "'podcast/audio/name.mp3' without empty, '.' or '..' segments, a leading '/', "
            "backslashes or control characters. Fix the name (or slug) that produced it."
        )
    return key


def public_url(base_url: str, key: str) -> str:
    """The public https link of a key under the public base URL.

    >>> public_url("https://cdn.example/", "podcast/audio/a b.mp3")
    'https://cdn.example/podcast/audio/a%20b.mp3'
    """
    return base_url.rstrip("/") + "/" + quote(check_key(key))


def plain_etag(etag: str | None) -> str:
    """An ETag without surrounding quotes (or a weak `W/` marker).

    >>> plain_etag('"9b2cf535f27731c974343645a3985328"')
    '9b2cf535f27731c974343645a3985328'
    >>> plain_etag('W/"abc-2"')
    'abc-2'
    """
    value = (etag or "").strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _conflict(where: str, *, existed: bool) -> ConcurrentWriteError:
    what = "appeared" if existed else "changed"
    return ConcurrentWriteError(
        f"{where} {what} while this run was working: another run wrote it. Nothing was "
        "overwritten; run again to build on the other run's result."
    )


class LocalStorage:
    """A folder on disk; the default, so the demo needs no credentials.

    Writes are atomic (a temporary file in the same folder, then `os.replace`), so a reader
    sees the old object or the new one, never half of one. Object metadata (type, cache,
    public, ETag) is kept in `.meta/<key>.json`, so a local folder can be checked like a
    bucket. The ETag is the SHA-256 of the content; `head` reuses the stored one while the
    file's size and mtime are unchanged, so it does not re-read large audio.
    Conditional writes are serialised with a lock file (`.meta/.lock`), so two processes
    cannot both win an `if_match`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def path_of(self, key: str) -> Path:
        """The file that holds an object (whether or not it exists)."""
        return self.root / check_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / _META_DIR / (check_key(key) + ".json")

    def _where(self, key: str) -> str:
        return f"{self.root}/{key}"

    def metadata(self, key: str) -> dict[str, Any]:
        """Stored content_type, cache_control, public, etag, size, mtime_ns ({} if none)."""
        try:
            return json.loads(self._meta_path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.root / _META_DIR / ".lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
            yield

    @staticmethod
    def _write_atomically(path: Path, chunks: Iterator[bytes]) -> str:
        """Write chunks to a temporary file beside `path`, fsync, then rename over it.
        Returns the SHA-256 of what was written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
        digest = hashlib.sha256()
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes 0600; published files must be readable
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())  # the rename must not expose an empty file
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def _record(
        self, key: str, etag: str, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        stat = self.path_of(key).stat()
        meta = {
            "cache_control": cache_control,
            "content_type": content_type,
            "etag": etag,
            "mtime_ns": stat.st_mtime_ns,
            "public": public,
            "size": stat.st_size,
        }
        self._write_atomically(self._meta_path(key), iter([json.dumps(meta).encode()]))
        return ObjectInfo(key, stat.st_size, etag, content_type, cache_control)

    def put_file(
        self, key: str, path: Path, *, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        target = self.path_of(key)
        try:
            with Path(path).open("rb") as src:
                etag = self._write_atomically(target, iter(lambda: src.read(_CHUNK), b""))
            with self._locked():
                return self._record(key, etag, content_type, cache_control, public)
        except OSError as exc:
            raise StorageError(
                f"Could not copy {path} to {target}: {exc.strerror or exc}. Check that the "
                "source file exists and the storage folder is writable."
            ) from exc

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str,
        public: bool,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        target = self.path_of(key)
        try:
            with self._locked():
                if if_match is not None or if_none_match:
                    current = self.head(key)
                    if if_none_match and current is not None:
                        raise _conflict(self._where(key), existed=True)
                    if if_match is not None and (
                        current is None or current.etag != plain_etag(if_match)
                    ):
                        raise _conflict(self._where(key), existed=False)
                etag = self._write_atomically(target, iter([bytes(data)]))
                return self._record(key, etag, content_type, cache_control, public)
        except OSError as exc:
            raise StorageError(
                f"Could not write {target}: {exc.strerror or exc}. Check that the storage "
                "folder is writable and no folder has the name of a file in the key."
            ) from exc

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        path = self.path_of(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"Could not read {path}: {exc.strerror or exc}.") from exc
        return data, hashlib.sha256(data).hexdigest()

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_of(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        meta = self.metadata(key)
        etag = meta.get("etag")
        if meta.get("size") != stat.st_size or meta.get("mtime_ns") != stat.st_mtime_ns:
            etag = None  # changed behind our back: the stored ETag is stale
        if etag is None:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(chunk)
            etag = digest.hexdigest()
        return ObjectInfo(
            key, stat.st_size, etag, meta.get("content_type"), meta.get("cache_control")
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for folder, dirs, files in os.walk(self.root):
            rel_folder = Path(folder).relative_to(self.root).as_posix()
            base = "" if rel_folder == "." else rel_folder + "/"
            # Skip metadata and in-progress files; prune folders that cannot match.
            dirs[:] = [
                name
                for name in dirs
                if not (base == "" and name == _META_DIR)
                and not name.startswith(_TMP_PREFIX)
                and (base + name + "/").startswith(prefix[: len(base + name) + 1])
            ]
            keys.extend(
                base + name
                for name in files
                if not name.startswith(_TMP_PREFIX) and (base + name).startswith(prefix)
            )
        return sorted(keys)

    def delete(self, key: str) -> None:
        try:
            with self._locked():
                self.path_of(key).unlink(missing_ok=True)
                self._meta_path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Could not delete {self._where(key)}: {exc.strerror or exc}."
            ) from exc


def _error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError, also when boto3 wrapped it (S3UploadFailedError)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
        seen = seen.__cause__ or seen.__context__
    return ""


_LOADER: Any = None  # botocore's parsed service models, shared: parsing them costs ~0.1 s


def _new_session() -> Any:
    """A boto3 session of our own (sessions are not safe to share across threads) that reuses
    the already parsed service models. Credentials and endpoint are read afresh each time."""
    global _LOADER
    import boto3
    import botocore.session

    core = botocore.session.Session()
    if _LOADER is None:
        _LOADER = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)


class S3Storage:
    """Any S3-compatible store through boto3, with the standard AWS credential chain.

    Uploads stream from disk (`upload_file`), in parts of `multipart_chunksize` from
    `multipart_threshold` up, with `max_concurrency` parts in flight. botocore retries
    throttling, 5xx and network errors with exponential backoff ("standard" mode,
    `max_attempts` tries in all) and every request has connect/read timeouts. The endpoint
    is `endpoint_url`, else `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (boto3 reads them),
    else AWS. A `client` passed in is used as it is (its own retry and timeout config).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        public_acl: bool = False,
        multipart_threshold: int = 8 * MiB,
        multipart_chunksize: int | None = None,
        max_concurrency: int = 10,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.public_acl = public_acl
        if client is None:
            from botocore.config import Config

            config = Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                max_pool_connections=max(10, max_concurrency),
            )
            client = _new_session().client(
                "s3", region_name=region, endpoint_url=endpoint_url, config=config
            )
        self.client = client
        from boto3.s3.transfer import TransferConfig

        self.transfer_config = TransferConfig(
            multipart_threshold=max(multipart_threshold, _MIN_PART),
            multipart_chunksize=max(multipart_chunksize or multipart_threshold, _MIN_PART),
            max_concurrency=max_concurrency,
            use_threads=True,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _extra(self, content_type: str, cache_control: str, public: bool) -> dict[str, str]:
        extra = {"ContentType": content_type, "CacheControl": cache_control}
        if self.public_acl:
            extra["ACL"] = "public-read" if public else "private"
        return extra

    def _error(self, action: str, key: str, exc: BaseException) -> StorageError:
        """A StorageError that names the object, what went wrong and what to do."""
        from botocore.exceptions import (
            ConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )
        from urllib3.exceptions import HTTPError

        where = f"{self.describe()}/{key}"
        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", None) or "AWS"
        code = _error_code(exc)
        if code == "NoSuchBucket":
            reason = f"bucket {self.bucket!r} does not exist at {endpoint}"
            fix = "Create the bucket, or fix the bucket name in --storage / KRAFTSAMLING_STORAGE."
        elif code in (
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "403",
        ):
            reason = f"access denied ({code})"
            fix = (
                "Check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE) and that they may read and write this bucket."
            )
        elif isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            reason = "no usable AWS credentials were found"
            fix = "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE."
        # botocore does not wrap (or retry) a connection lost while it reads a response's
        # body outside its streaming reader (error responses): a bare urllib3 error.
        elif isinstance(exc, (ConnectionError, ReadTimeoutError, HTTPError)):
            reason = f"the endpoint {endpoint} did not answer ({exc})"
            fix = (
                "Check the network and the endpoint (KRAFTSAMLING_S3_ENDPOINT_URL or "
                "AWS_ENDPOINT_URL_S3), then run again; nothing was changed by this attempt."
            )
        else:
            reason = str(exc)
            fix = "Check the bucket, credentials and endpoint, then run again."
        return StorageError(f"Could not {action} {where}: {reason}. {fix}")

    def put_file(
        self, key: str, path: Path, *, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        full = self._full(key)
        try:
            size = Path(path).stat().st_size
        except OSError as exc:
            raise StorageError(
                f"Could not upload {path} to {self.describe()}/{key}: {exc.strerror or exc}. "
                "Check that the file exists."
            ) from exc
        try:
            self.client.upload_file(
                str(path),
                self.bucket,
                full,
                ExtraArgs=self._extra(content_type, cache_control, public),
                Config=self.transfer_config,
            )
        except (BotoCoreError, ClientError, Boto3Error, HTTPError, OSError) as exc:
            raise self._error("upload to", key, exc) from exc
        info = self.head(key)
        if info is None or info.size != size:
            raise StorageError(
                f"{self.describe()}/{key} is missing or has the wrong size right after its "
                f"upload from {path}; run again to upload it anew."
            )
        return info

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str,
        public: bool,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        args: dict[str, Any] = self._extra(content_type, cache_control, public)
        if if_match is not None:
            args["IfMatch"] = f'"{plain_etag(if_match)}"'
        if if_none_match:
            args["IfNoneMatch"] = "*"
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=bytes(data), **args
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "412"):
                where = f"{self.describe()}/{key}"
                raise _conflict(where, existed=if_none_match and if_match is None) from exc
            if code == "ConditionalRequestConflict":  # 409: a concurrent conditional write
                raise _conflict(f"{self.describe()}/{key}", existed=False) from exc
            if code == "NoSuchKey" and if_match is not None:  # S3: If-Match on a missing key
                raise _conflict(f"{self.describe()}/{key}", existed=False) from exc
            raise self._error("write", key, exc) from exc
        except (BotoCoreError, HTTPError) as exc:
            raise self._error("write", key, exc) from exc
        return ObjectInfo(
            key, len(data), plain_etag(response.get("ETag")), content_type, cache_control
        )

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return response["Body"].read(), plain_etag(response.get("ETag"))
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error("read", key, exc) from exc
        except (BotoCoreError, HTTPError) as exc:
            raise self._error("read", key, exc) from exc

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            # HEAD has no body, so a missing bucket also reads as 404: the next write says so.
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error("check", key, exc) from exc
        except (BotoCoreError, HTTPError) as exc:
            raise self._error("check", key, exc) from exc
        return ObjectInfo(
            key,
            response["ContentLength"],
            plain_etag(response.get("ETag")),
            response.get("ContentType"),
            response.get("CacheControl"),
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        except (BotoCoreError, ClientError, HTTPError) as exc:
            raise self._error("list", prefix + "*", exc) from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except (BotoCoreError, ClientError, HTTPError) as exc:
            raise self._error("delete", key, exc) from exc


_ACCEPTED = "a folder path, file:///absolute/path or s3://bucket/prefix"
# Generous on purpose (S3-compatible stores and legacy buckets allow more than AWS today).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")


def storage_from_url(url: str, settings: Settings | None = None, client: Any = None) -> Storage:
    """`LocalStorage` for a folder path or file:// URL, `S3Storage` for s3://bucket/prefix.

    S3 options (region, endpoint, ACL, attempts) come from `settings` when given; `client`
    replaces the boto3 client (tests pass moto's).
    """
    if not isinstance(url, str) or not url.strip():
        raise SettingsError(f"Storage is empty: use {_ACCEPTED}.")
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not _BUCKET.fullmatch(parsed.netloc):
            raise SettingsError(
                f"Storage URL {url!r} has no valid bucket name: use s3://bucket/prefix "
                "(bucket: 3-255 letters, digits, '.', '-' or '_')."
            )
        if parsed.query or parsed.fragment or parsed.params:
            raise SettingsError(
                f"Storage URL {url!r} has a '?', ';' or '#' part: use s3://bucket/prefix and "
                "set region and endpoint with KRAFTSAMLING_S3_REGION / _S3_ENDPOINT_URL."
            )
        prefix = parsed.path.strip("/")
        try:
            if prefix:
                check_key(prefix)
        except StorageError:
            raise SettingsError(
                f"Storage URL {url!r} has an unusable prefix {prefix!r}: use s3://bucket/prefix "
                "with a prefix of plain folder names (no '.', '..', '//' or backslashes)."
            ) from None
        return S3Storage(
            parsed.netloc,
            prefix,
            client=client,
            region=settings.s3_region if settings else None,
            endpoint_url=settings.s3_endpoint_url if settings else None,
            public_acl=settings.s3_public_acl if settings else False,
            max_attempts=settings.s3_max_attempts if settings else 5,
        )
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path:
            raise SettingsError(
                f"Storage URL {url!r} names another host: a file URL needs three slashes, "
                f"file:///absolute/path. Use {_ACCEPTED}."
            )
        return LocalStorage(Path(url2pathname(parsed.path)))
    windows_drive = len(parsed.scheme) == 1 and url[1:2] == ":"
    if parsed.scheme == "" or windows_drive:
        return LocalStorage(Path(url).expanduser())
    raise SettingsError(f"Storage {url!r} is not understood: use {_ACCEPTED}.")


def open_storage(settings: Settings, client: Any = None) -> Storage:
    """The storage the settings name."""
    return storage_from_url(settings.storage, settings, client=client)
