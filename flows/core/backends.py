"""Which storage a URL names: a folder (`LocalStorage`) or s3://bucket/prefix (`S3Storage`).

Kept apart from `storage.py` (the interface and the local folder) so that neither backend
module imports the other.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from flows.core.errors import SettingsError, StorageError
from flows.core.s3 import S3Storage
from flows.core.settings import Settings
from flows.core.storage import LocalStorage, Storage, check_key

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
        return _local(Path(url2pathname(parsed.path)), url)
    windows_drive = len(parsed.scheme) == 1 and url[1:2] == ":"
    if parsed.scheme == "" or windows_drive:
        return _local(Path(url).expanduser(), url)
    raise SettingsError(f"Storage {url!r} is not understood: use {_ACCEPTED}.")


def _local(folder: Path, url: str) -> LocalStorage:
    if folder.exists() and not folder.is_dir():
        raise SettingsError(
            f"Storage {url!r} is a file: give a folder (it is made when missing), or "
            f"s3://bucket/prefix."
        )
    return LocalStorage(folder)


def open_storage(settings: Settings, client: Any = None) -> Storage:
    """The storage the settings name."""
    return storage_from_url(settings.storage, settings, client=client)
