"""S3Storage: the `Storage` interface on any S3-compatible store, through boto3.

Chosen by `open_storage` for a `s3://bucket/prefix` storage setting. Keys, ETags and errors
follow `flows.core.storage`: keys are checked with `check_key`, ETags are handed out without
quotes, and every failure is a `StorageError` naming `s3://bucket/prefix/key`, the reason and
the fix (a lost conditional write is a `ConcurrentWriteError`).

boto3 and botocore are imported inside the methods, so a run on local storage never loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.core.errors import SettingsError, StorageError
from flows.core.storage import (
    MiB,
    ObjectInfo,
    check_key,
    concurrent_write_error,
    plain_etag,
)

_MIN_PART = 5 * MiB  # S3's smallest allowed multipart part (except the last)


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


def _client(region: str | None, endpoint_url: str | None, config: Any) -> Any:
    """An S3 client; SettingsError naming the setting when the AWS configuration is wrong
    (a profile that does not exist, a malformed endpoint or config file)."""
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        return _new_session().client(
            "s3", region_name=region, endpoint_url=endpoint_url, config=config
        )
    except ProfileNotFound as exc:
        raise SettingsError(
            f"The AWS profile {exc.kwargs.get('profile')!r} (AWS_PROFILE) is not in "
            "~/.aws/config or ~/.aws/credentials. Set AWS_PROFILE to a profile that exists "
            "(`aws configure list-profiles`), or unset it and set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY."
        ) from None
    except (BotoCoreError, ValueError) as exc:
        raise SettingsError(
            f"The S3 client cannot be set up: {exc}. Check the endpoint (AWS_ENDPOINT_URL, "
            "KRAFTSAMLING_S3_ENDPOINT_URL), the region and ~/.aws/config."
        ) from None


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
            client = _client(region, endpoint_url, config)
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
            where = f"{self.describe()}/{key}"
            if code in ("PreconditionFailed", "412"):
                existed = if_none_match and if_match is None
                raise concurrent_write_error(where, existed=existed) from exc
            if code == "ConditionalRequestConflict":  # 409: a concurrent conditional write
                raise concurrent_write_error(where, existed=False) from exc
            if code == "NoSuchKey" and if_match is not None:  # S3: If-Match on a missing key
                raise concurrent_write_error(where, existed=False) from exc
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
