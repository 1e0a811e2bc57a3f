"""How `tag_audio` copies the audio (issue 23): in the kernel where it can
(`os.copy_file_range`), through a buffer where it cannot, with the same bytes either way,
into room reserved at once; and a tagged work copy is not fsynced (the run starts over
after a crash anyway)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from test_audio import _tags, media  # noqa: F401  (media is a fixture)

import flows.podcast.tags
from flows.podcast.audio import inspect_audio, mp3_audio_range
from flows.podcast.tags import tag_audio


def tagged(media: Path, dst: Path) -> bytes:  # noqa: F811  (media: the fixture's value)
    tag_audio(media / "mono64.mp3", dst, _tags(), inspect_audio(media / "mono64.mp3"))
    return dst.read_bytes()


@pytest.mark.parametrize("refusal", [errno.ENOSYS, errno.EXDEV, errno.EINVAL, None])
def test_the_copy_falls_back_to_a_buffer_where_the_kernel_cannot(
    media: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    refusal: int | None,
) -> None:
    kernel = tagged(media, tmp_path / "kernel.mp3")
    if refusal is None:  # no copy_file_range at all (not Linux)
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    else:

        def refuse(*_: Any) -> int:
            raise OSError(refusal, os.strerror(refusal))

        monkeypatch.setattr(os, "copy_file_range", refuse)
    assert tagged(media, tmp_path / "buffer.mp3") == kernel


def test_a_kernel_copy_that_stops_halfway_is_finished_through_a_buffer(
    media: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = tagged(media, tmp_path / "kernel.mp3")
    real = os.copy_file_range
    calls: list[int] = []

    def once(src: int, dst: int, count: int, offset_src: int | None = None) -> int:
        calls.append(count)
        if len(calls) > 1:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return real(src, dst, 1000, offset_src)

    monkeypatch.setattr(os, "copy_file_range", once)
    assert tagged(media, tmp_path / "half.mp3") == kernel
    assert len(calls) == 2


def test_a_tagged_work_copy_is_not_fsynced(
    media: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    tagged(media, tmp_path / "work.mp3")
    assert synced == []


def test_a_source_shorter_than_its_range_leaves_no_reserved_room(
    media: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The room reserved for the copy is cut back to what the source really had (a file
    that changed between inspection and tagging): no zeros at the end."""
    whole = tagged(media, tmp_path / "whole.mp3")
    start, end = mp3_audio_range(media / "mono64.mp3")
    monkeypatch.setattr(flows.podcast.tags, "mp3_audio_range", lambda _: (start, end + 50_000))
    assert tagged(media, tmp_path / "short.mp3") == whole
