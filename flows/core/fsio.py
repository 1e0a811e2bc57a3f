"""The one way a file is written: whole or not at all.

A temporary file beside the target, written, flushed and fsynced, then renamed over the
target: a crash or a full disk leaves the old file or the new one, never half of either.
The temporary name starts with a dot (and `prefix`), so folder scans skip it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def atomic_write(
    path: Path,
    data: bytes | Iterable[bytes],
    *,
    mode: int | None = None,
    prefix: str = TMP_PREFIX,
) -> str:
    """Write `data` (bytes, or an iterable of chunks) to `path` atomically.

    `mode` is the file's permissions; by default those of any new file, 0666 less the
    process umask (mkstemp alone would make 0600). Returns the SHA-256 of what was written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [data] if isinstance(data, bytes | bytearray) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    digest = hashlib.sha256()
    try:
        os.fchmod(fd, default_mode() if mode is None else mode)
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


def default_mode() -> int:
    """The permissions `open()` gives a new file: 0666 less the process umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask; from /proc where there is one, since `os.umask` can only read it
    by setting it, and a file another thread creates meanwhile would get the wrong mode."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_json(
    path: Path, data: Any, *, sort_keys: bool = False, indent: int | None = 2
) -> str:
    """Write `data` as UTF-8 JSON (non-ASCII kept, a final newline) with `atomic_write`."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, sort_keys=sort_keys) + "\n"
    return atomic_write(path, text.encode("utf-8"))


def atomic_replace(temporary: Path, path: Path, *, mode: int = 0o644, durable: bool = True) -> None:
    """Publish a temporary file that a tool (ffmpeg, mutagen) wrote beside `path`.

    `durable=False` skips the fsync, for a work copy that a crash makes worthless anyway (the
    run starts over): the rename alone keeps readers from ever seeing half of it.
    """
    os.chmod(temporary, mode)
    if durable:
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(temporary, path)
