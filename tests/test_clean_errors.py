"""Mistakes in credentials, endpoints and paths, and unexpected exceptions, end in one clean
line, never a traceback (issue 20, points 3 and 4 at the command line)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import flows.cli
from flows.cli import main
from flows.core.backends import storage_from_url
from flows.core.errors import SettingsError
from flows.core.settings import Settings


def test_an_aws_profile_that_does_not_exist_is_named(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_PROFILE", "doesnotexist")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    with pytest.raises(SettingsError) as raised:
        storage_from_url("s3://bucket/prefix")
    message = str(raised.value)
    assert "'doesnotexist' (AWS_PROFILE)" in message and "aws configure list-profiles" in message


def test_a_malformed_endpoint_is_a_settings_error(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "notaurl")
    with pytest.raises(SettingsError, match="Invalid endpoint: notaurl"):
        storage_from_url("s3://bucket/prefix")


@pytest.mark.parametrize("name", ["newsletters_dir", "episodes_dir"])
def test_a_file_where_a_folder_belongs_is_named(tmp_path, name) -> None:
    file = tmp_path / "afile"
    file.write_text("x")
    with pytest.raises(SettingsError, match=f"{name}: .*'{file}' is a file; give a folder"):
        Settings.load(**{name: str(file)})


def test_a_storage_path_that_is_a_file_is_named(tmp_path) -> None:
    file = tmp_path / "afile"
    file.write_text("x")
    with pytest.raises(SettingsError, match="is a file: give a folder"):
        storage_from_url(str(file))


def _explode(_args: object) -> None:
    raise KeyError("episode")


def test_an_unexpected_exception_is_one_line_with_its_traceback_kept(monkeypatch, capsys):
    monkeypatch.setitem(flows.cli._RUN, "feed", _explode)
    assert main(["feed"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, second = err.strip().splitlines()
    assert first == "error: feed: KeyError: 'episode'"
    path = Path(re.search(r"the full traceback is in (\S+)", second)[1])
    kept = path.read_text(encoding="utf-8")
    assert kept.startswith("Traceback") and "_explode" in kept and "KeyError" in kept
    assert path.stat().st_mode & 0o077 == 0 or path.parent.stat().st_mode & 0o077 == 0


def test_debug_prints_the_traceback(monkeypatch, capsys) -> None:
    monkeypatch.setitem(flows.cli._RUN, "feed", _explode)
    assert main(["--debug", "feed"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "_explode" in err
    assert err.rstrip().endswith("error: feed: KeyError: 'episode'")


def test_an_http_public_url_is_refused_except_on_this_machine() -> None:
    with pytest.raises(SettingsError, match=r"public_url: .*must be https"):
        Settings.load(public_url="http://cdn.kraftsamling.example/")
    assert Settings.load(public_url="http://127.0.0.1:9000/bucket/").public_url.startswith("http:")
