"""Atomic writes (flows.core.fsio): the written file's permissions."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from flows.core.fsio import atomic_replace, atomic_write, atomic_write_json


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_follow_the_umask_like_any_other_file(tmp_path, umask, mask, expected):
    """Issue 16, point 5: draft files were 0600 (or a fixed 0644) whatever the umask."""
    umask(mask)
    atomic_write(tmp_path / "index.html", b"<p>Hej</p>")
    atomic_write_json(tmp_path / "manifest.json", {"month": "2026-12"})
    with open(tmp_path / "plain.txt", "wb"):
        pass
    assert mode_of(tmp_path / "plain.txt") == expected
    assert mode_of(tmp_path / "index.html") == expected
    assert mode_of(tmp_path / "manifest.json") == expected


def test_a_given_mode_is_kept_whatever_the_umask(tmp_path, umask):
    umask(0o022)
    atomic_write(tmp_path / "cache.body", b"x", mode=0o600)
    assert mode_of(tmp_path / "cache.body") == 0o600
    tmp = tmp_path / "audio.mp3.tmp"
    tmp.write_bytes(b"audio")
    umask(0o077)
    atomic_replace(tmp, tmp_path / "audio.mp3")
    assert mode_of(tmp_path / "audio.mp3") == 0o644


def test_the_write_is_whole_and_returns_the_sha256(tmp_path):
    digest = atomic_write(tmp_path / "a" / "b.txt", [b"ett ", b"tv\xc3\xa5"])
    assert (tmp_path / "a" / "b.txt").read_bytes() == "ett två".encode()
    assert digest == hashlib.sha256("ett två".encode()).hexdigest()
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]
