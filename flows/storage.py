"""Where published things live: one small interface, a local folder or any S3-compatible store.

Keys are relative to the storage's prefix (e.g. `podcast/feed.xml`); the storage adds the
prefix. Every write says whether the object is public (audio, art, feed, web copies) or
private (catalog, masters, drafts), and what it is (Content-Type, Cache-Control).

`open_storage(settings)` picks the implementation from the `storage` setting:
a folder path or `file:///path` gives `LocalStorage`, `s3://bucket/prefix` gives `S3Storage`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from flows.errors import ConcurrentWriteError, SettingsError, StorageError

if TYPE_CHECKING:
    from flows.settings import Settings

CACHE_LONG = "public, max-age=31536000, immutable"  # content-addressed audio and art
CACHE_SHORT = "public, max-age=300"  # the feed and web pages
CACHE_PRIVATE = "private, no-store"  # the catalog and other private objects


@dataclass(frozen=True)
class ObjectInfo:
    """What storage knows of one object."""

    key: str
    size: int
    etag: str
    content_type: str | None = None


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
        """All keys under a prefix, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object (no error if it is already gone)."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could leave the storage prefix.

    >>> check_key("podcast/feed.xml")
    'podcast/feed.xml'
    """
    parts = PurePosixPath(key).parts
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(part in ("..", ".") for part in parts)
        or any(ord(ch) < 32 for ch in key)
    ):
        raise StorageError(
            f"Refused storage key {key!r}: keys must be relative paths without '..', "
            "backslashes or control characters."
        )
    return key


def public_url(base_url: str, key: str) -> str:
    """The public https link of a key under the public base URL.

    >>> public_url("https://cdn.example/", "podcast/audio/a b.mp3")
    'https://cdn.example/podcast/audio/a%20b.mp3'
    """
    from urllib.parse import quote

    return base_url.rstrip("/") + "/" + quote(check_key(key))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LocalStorage:
    """A folder on disk; the default, so the demo needs no credentials.

    Object metadata (type, cache, public) is kept beside each object in
    `.meta/<key>.json`, so a local folder can be checked like a bucket.
    The ETag is the SHA-256 of the content.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / ".meta" / (check_key(key) + ".json")

    def _write_meta(self, key: str, content_type: str, cache_control: str, public: bool) -> None:
        meta = {"content_type": content_type, "cache_control": cache_control, "public": public}
        self._atomic_write(self._meta_path(key), json.dumps(meta, sort_keys=True).encode())

    def metadata(self, key: str) -> dict[str, Any]:
        """The stored Content-Type, Cache-Control and public flag of an object."""
        path = self._meta_path(key)
        return json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(
        self, key: str, path: Path, *, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, Path(path).open("rb") as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    out.write(chunk)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"Could not write {target}: {exc}. Check the folder.") from exc
        self._write_meta(key, content_type, cache_control, public)
        return ObjectInfo(key, target.stat().st_size, _sha256_file(target), content_type)

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
        current = self.head(key)
        if if_none_match and current is not None:
            raise ConcurrentWriteError(
                f"{self.describe()}/{key} appeared while this run was working; "
                "another run wrote it. Run again to build on its result."
            )
        if if_match is not None and (current is None or current.etag != if_match):
            raise ConcurrentWriteError(
                f"{self.describe()}/{key} changed while this run was working; "
                "another run wrote it. Run again to build on its result."
            )
        try:
            self._atomic_write(self.path_of(key), data)
        except OSError as exc:
            raise StorageError(f"Could not write {self.path_of(key)}: {exc}.") from exc
        self._write_meta(key, content_type, cache_control, public)
        return ObjectInfo(key, len(data), hashlib.sha256(data).hexdigest(), content_type)

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        path = self.path_of(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_of(key)
        if not path.is_file():
            return None
        return ObjectInfo(
            key, path.stat().st_size, _sha256_file(path), self.metadata(key).get("content_type")
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        keys = []
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not rel.startswith(".meta/") and "/.tmp-" not in "/" + rel:
                if rel.startswith(prefix):
                    keys.append(rel)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)
        self._meta_path(key).unlink(missing_ok=True)


class S3Storage:
    """Any S3-compatible store through boto3, with the standard AWS credential chain.

    Uploads stream from disk with multipart above `multipart_threshold`; botocore retries
    throttling and 5xx with backoff ("standard" mode); every call has connect/read timeouts.
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
        multipart_threshold: int = 16 * 1024 * 1024,
        max_attempts: int = 6,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.public_acl = public_acl
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=10,
                read_timeout=60,
                retries={"mode": "standard", "max_attempts": max_attempts},
            )
            client = boto3.client(
                "s3", region_name=region, endpoint_url=endpoint_url, config=config
            )
        self.client = client
        from boto3.s3.transfer import TransferConfig

        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold // 2, 5 * 1024 * 1024),
            max_concurrency=4,
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

    def _error(self, action: str, key: str, exc: Exception) -> StorageError:
        return StorageError(
            f"Could not {action} {self.describe()}/{key}: {exc}. Check the bucket name, "
            "credentials (AWS_* environment or profile) and endpoint, then run again."
        )

    def put_file(
        self, key: str, path: Path, *, content_type: str, cache_control: str, public: bool
    ) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(
                str(path),
                self.bucket,
                self._full(key),
                ExtraArgs=self._extra(content_type, cache_control, public),
                Config=self.transfer_config,
            )
        except (BotoCoreError, ClientError, OSError) as exc:
            raise self._error("upload to", key, exc) from exc
        info = self.head(key)
        if info is None:
            raise StorageError(f"{self.describe()}/{key} is missing right after its upload.")
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

        args: dict[str, Any] = self._extra(content_type, cache_control, public)
        if if_match is not None:
            args["IfMatch"] = if_match
        if if_none_match:
            args["IfNoneMatch"] = "*"
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=data, **args
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                raise ConcurrentWriteError(
                    f"{self.describe()}/{key} changed while this run was working; "
                    "another run wrote it. Run again to build on its result."
                ) from exc
            raise self._error("write", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("write", key, exc) from exc
        return ObjectInfo(key, len(data), response.get("ETag", ""), content_type)

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return response["Body"].read(), response.get("ETag", "")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._error("read", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("read", key, exc) from exc

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error("check", key, exc) from exc
        except BotoCoreError as exc:
            raise self._error("check", key, exc) from exc
        return ObjectInfo(
            key, response["ContentLength"], response.get("ETag", ""), response.get("ContentType")
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", prefix or "/", exc) from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._error("delete", key, exc) from exc


def storage_from_url(url: str, settings: Settings | None = None, client: Any = None) -> Storage:
    """`LocalStorage` for a path or file:// URL, `S3Storage` for s3://bucket/prefix."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise SettingsError(f"Storage URL {url!r} has no bucket: use s3://bucket/prefix.")
        return S3Storage(
            parsed.netloc,
            parsed.path.strip("/"),
            client=client,
            region=settings.s3_region if settings else None,
            endpoint_url=settings.s3_endpoint_url if settings else None,
            public_acl=settings.s3_public_acl if settings else False,
        )
    if parsed.scheme == "file":
        return LocalStorage(Path(parsed.path))
    if parsed.scheme in ("", ) or len(parsed.scheme) == 1:  # a plain path (or C:\ on Windows)
        return LocalStorage(Path(url))
    raise SettingsError(
        f"Storage URL {url!r} is not understood: use a folder path, file:///path "
        "or s3://bucket/prefix."
    )


def open_storage(settings: Settings, client: Any = None) -> Storage:
    """The storage the settings name."""
    return storage_from_url(settings.storage, settings, client=client)
