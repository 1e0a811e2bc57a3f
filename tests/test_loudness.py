"""Loudness measurement and normalised MP3 encoding (flows/podcast/loudness.py, encode.py),
with real ffmpeg.

The test audio is generated once per session with the same ffmpeg: 1 kHz tones at known
levels. BS.1770 makes a 1 kHz sine easy to predict: in stereo (both channels) it measures its
peak level in LUFS, in mono 3 dB less. So the measurements are checked against arithmetic,
not against our own code.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from flows.core.errors import AudioError
from flows.core.settings import Settings
from flows.podcast.audio import inspect_audio
from flows.podcast.encode import encode_master, prepare_audio, reencode_lossy
from flows.podcast.ffmpeg import ffmpeg_exe
from flows.podcast.loudness import (
    Loudness,
    LoudnessTarget,
    check_lossy,
    master_format,
    master_key,
    measure_loudness,
    parse_ebur128_summary,
    parse_loudnorm_json,
    probe_master,
)
from flows.podcast.tags import EpisodeTags, tag_audio

TARGET = LoudnessTarget()
SECONDS = 4


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        capture_output=True,
    )


def _tone(path: Path, lufs: float, *, channels: int, seconds: float = SECONDS) -> Path:
    """A 1 kHz sine that measures `lufs` (stereo: peak = LUFS; mono: peak = LUFS + 3.01)."""
    amplitude = 10 ** ((lufs + (3.0103 if channels == 1 else 0.0)) / 20)
    layout = "mono" if channels == 1 else "stereo"
    expr = f"{amplitude:.8f}*sin(2*PI*1000*t)"
    _ffmpeg("-f", "lavfi", "-i", f"aevalsrc={expr}:s=48000:d={seconds}:c={layout}", str(path))
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loudness-media")
    files = {
        "stereo_quiet_wav": _tone(root / "stereo-30.wav", -30, channels=2),
        "stereo_loud_flac": _tone(root / "stereo-8.flac", -8, channels=2),
        "mono_quiet_aiff": _tone(root / "mono-30.aiff", -30, channels=1),
        "mono_wav": _tone(root / "mono-20.wav", -20, channels=1),
    }
    # A quiet tone with 2 ms clicks near full scale: linear gain would push the clicks past
    # the ceiling, so loudnorm must fall back to its dynamic mode (limiter).
    spiky = root / "spiky.wav"
    expr = "0.03*sin(2*PI*440*t)+0.9*sin(2*PI*1000*t)*lt(mod(t\\,0.5)\\,0.002)"
    _ffmpeg("-f", "lavfi", "-i", f"aevalsrc='{expr}':s=48000:d=5:c=stereo", str(spiky))
    files["spiky_wav"] = spiky
    # White noise: LAME at 128 kbps cuts its top octave, so the MP3 measures ~1.4 LU quieter
    # than loudnorm's output; the first encode misses and must be corrected.
    white = root / "white.wav"
    noise = "anoisesrc=color=white:seed=5:duration=5:sample_rate=48000:amplitude=0.3"
    _ffmpeg("-f", "lavfi", "-i", noise, "-ac", "2", str(white))
    files["white_wav"] = white
    silence = root / "silence.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "3", str(silence))
    files["silence_wav"] = silence
    zero = root / "zero.wav"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "0", str(zero))
    files["zero_wav"] = zero
    wav = files["mono_wav"].read_bytes()
    files["corrupt_wav"] = root / "corrupt.wav"
    files["corrupt_wav"].write_bytes(b"RIFF\x24\x10\x00\x00WAVE" + b"\xde\xad\xbe\xef" * 1024)
    for name, codec in (("wav24", "pcm_s24le"), ("adpcm_wav", "adpcm_ima_wav")):
        files[name] = root / f"{name}.wav"
        # `-f wav`: ffmpeg's content sniffing takes this tone for MPEG-TS too (a tie)
        _ffmpeg("-f", "wav", "-i", str(files["mono_wav"]), "-c:a", codec, str(files[name]))
    files["truncated_wav"] = root / "truncated.wav"
    files["truncated_wav"].write_bytes(wav[: len(wav) // 3])
    # Lossy files as producers export them: a quiet MP3 and a loud M4A.
    quiet = _tone(root / "quiet-src.wav", -24, channels=2)
    files["quiet_mp3"] = root / "quiet.mp3"
    _ffmpeg("-i", str(quiet), "-c:a", "libmp3lame", "-b:a", "128k", str(files["quiet_mp3"]))
    loud = _tone(root / "loud-src.wav", -12, channels=2)
    files["loud_m4a"] = root / "loud.m4a"
    _ffmpeg("-i", str(loud), "-c:a", "aac", "-b:a", "128k", str(files["loud_m4a"]))
    return files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_on_target(path: Path, lufs: float, ceiling: float = -1.0) -> None:
    measured = measure_loudness(path)
    assert abs(measured.integrated_lufs - lufs) <= 1.0, measured
    assert measured.true_peak_dbtp <= ceiling, measured


# --------------------------------------------------------------------------------------------
# Measuring


@pytest.mark.parametrize(
    ("name", "expected"),
    [("stereo_quiet_wav", -30), ("stereo_loud_flac", -8), ("mono_quiet_aiff", -30)],
)
def test_measure_loudness_matches_bs1770_arithmetic(media, name, expected):
    measured = measure_loudness(media[name])
    assert abs(measured.integrated_lufs - expected) <= 0.2
    # A sine's true peak is its amplitude: the LUFS in stereo, 3 dB above it in mono.
    peak = expected + (3.0 if name.startswith("mono") else 0.0)
    assert abs(measured.true_peak_dbtp - peak) <= 0.2
    assert measured.lra == 0.0  # a steady tone has no loudness range
    assert measured.threshold == pytest.approx(measured.integrated_lufs - 10, abs=0.2)


def test_silence_is_a_clear_error_naming_the_file(media):
    with pytest.raises(AudioError) as err:
        measure_loudness(media["silence_wav"])
    assert str(media["silence_wav"]) in str(err.value)
    assert "silent" in str(err.value) and "-inf" in str(err.value)


def test_encoding_silence_fails_before_writing_anything(media, tmp_path):
    with pytest.raises(AudioError, match="silent"):
        encode_master(media["silence_wav"], tmp_path / "out.mp3", target=TARGET)
    assert list(tmp_path.iterdir()) == []  # no MP3, no temporary file left behind


def test_parsers_read_ffmpeg_reports():
    summary = [
        "[Parsed_ebur128_0 @ 0x55d] Summary:",
        "",
        "  Integrated loudness:",
        "    I:         -22.4 LUFS",
        "    Threshold: -32.6 LUFS",
        "",
        "  Loudness range:",
        "    LRA:         6.1 LU",
        "    Threshold: -42.7 LUFS",
        "    LRA low:   -26.0 LUFS",
        "",
        "  True peak:",
        "    Peak:       -inf dBFS",
    ]
    assert parse_ebur128_summary(summary) == {
        "integrated_lufs": -22.4,
        "threshold": -32.6,
        "lra": 6.1,
        "true_peak_dbtp": -math.inf,
    }
    block = ["[Parsed_loudnorm_0 @ 0x7f]", "{", '\t"input_i" : "-inf",', '\t"x" : "1"', "}", "[out"]
    assert parse_loudnorm_json(block) == {"input_i": "-inf", "x": "1"}
    assert parse_loudnorm_json(["{ not json"]) == {}


# --------------------------------------------------------------------------------------------
# Masters


@pytest.mark.parametrize(
    ("name", "fmt", "channels"),
    [
        ("stereo_quiet_wav", "wav", 2),
        ("stereo_loud_flac", "flac", 2),
        ("mono_quiet_aiff", "aiff", 1),
    ],
)
def test_probe_master_reads_format_duration_channels(media, name, fmt, channels):
    info = probe_master(media[name])
    assert (info.format, info.channels, info.sample_rate) == (fmt, channels, 48000)
    assert info.duration == pytest.approx(SECONDS, abs=0.01)
    assert master_format(media[name]) == fmt


def test_probe_master_reads_24_bit_wav_and_refuses_compressed_wav(media):
    # The "cut short" check must not misfire on 3-byte samples.
    info = probe_master(media["wav24"])
    assert info.duration == pytest.approx(SECONDS, abs=0.01) and info.bits_per_sample == 24
    with pytest.raises(AudioError, match=r"compressed WAV \(format tag 17\).*PCM WAV"):
        probe_master(media["adpcm_wav"])


def test_master_format_is_none_for_lossy_files(media):
    assert master_format(media["quiet_mp3"]) is None
    assert master_format(media["loud_m4a"]) is None


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("zero_wav", "no audio (0 seconds)"),
        ("corrupt_wav", "damaged WAV"),
        ("truncated_wav", "cut short"),
    ],
)
def test_bad_masters_are_refused_with_the_file_and_the_fix(media, tmp_path, name, words):
    with pytest.raises(AudioError) as err:
        encode_master(media[name], tmp_path / "out.mp3", target=TARGET)
    message = str(err.value)
    assert str(media[name]) in message and words in message
    assert "again" in message  # the fix: export or copy it again
    assert not (tmp_path / "out.mp3").exists()


def test_master_key_is_private_and_content_addressed():
    assert (
        master_key("avsnitt-3", "0123456789abcdef", "wav")
        == "podcast/masters/avsnitt-3-01234567.wav"
    )


# --------------------------------------------------------------------------------------------
# Encoding


@pytest.mark.parametrize("name", ["stereo_quiet_wav", "stereo_loud_flac"])
def test_stereo_master_is_normalised_to_minus_16(media, tmp_path, name):
    out = tmp_path / "episode.mp3"
    result = encode_master(media[name], out, target=TARGET)
    _assert_on_target(out, -16.0)
    assert abs(result.measured.integrated_lufs + 16) <= 1.0
    assert result.measured.true_peak_dbtp <= -1.0
    assert result.mode == "linear" and result.attempts == 1 and result.warnings == ()
    info = inspect_audio(out)  # our own validator accepts it as a podcast MP3
    assert (info.format, info.sample_rate, info.channels) == ("mp3", 44100, 2)
    assert info.bitrate == pytest.approx(128_000, rel=0.01)
    assert info.duration == pytest.approx(SECONDS, abs=0.1)
    assert len(result.commands) == 3  # measure, encode, measure the MP3
    assert "loudnorm=I=-16.00:TP=-1.50" in " ".join(result.commands[1])


def test_mono_master_gets_the_mono_target_when_configured(media, tmp_path):
    mono_target = LoudnessTarget(mono_integrated=-19.0)
    result = encode_master(media["mono_quiet_aiff"], tmp_path / "m.mp3", target=mono_target)
    assert result.channels == 1 and result.target_lufs == -19.0
    _assert_on_target(tmp_path / "m.mp3", -19.0)
    assert inspect_audio(tmp_path / "m.mp3").channels == 1
    # Without a mono target, mono aims at -16 like stereo.
    default = encode_master(media["mono_wav"], tmp_path / "d.mp3", target=TARGET)
    assert default.target_lufs == -16.0
    _assert_on_target(tmp_path / "d.mp3", -16.0)


def test_forced_mono_downmixes_and_uses_the_mono_target(media, tmp_path):
    out = tmp_path / "forced.mp3"
    result = encode_master(
        media["stereo_quiet_wav"],
        out,
        target=LoudnessTarget(mono_integrated=-19.0),
        bitrate_kbps=64,
        channels=1,
    )
    info = inspect_audio(out)
    assert info.channels == 1 and info.bitrate == pytest.approx(64_000, rel=0.01)
    assert result.target_lufs == -19.0
    _assert_on_target(out, -19.0)


def test_peaky_master_falls_back_to_dynamic_mode_and_still_hits_target(media, tmp_path):
    out = tmp_path / "spiky.mp3"
    result = encode_master(media["spiky_wav"], out, target=TARGET)
    # The source's peaks sit far above its loudness: a plain gain would clip them.
    assert result.input.true_peak_dbtp - result.input.integrated_lufs > 15
    assert result.mode == "dynamic"
    _assert_on_target(out, -16.0)


def test_an_mp3_that_misses_is_encoded_again_with_a_corrected_aim(media, tmp_path):
    out = tmp_path / "white.mp3"
    result = encode_master(media["white_wav"], out, target=TARGET)
    assert result.attempts == 2 and len(result.commands) == 5
    first, second = (" ".join(c) for c in result.commands[1::2])
    assert "loudnorm=I=-16.00:" in first
    aim = float(re.search(r"loudnorm=I=(-?[\d.]+):", second).group(1))
    assert -15.5 < aim < -13.0  # aimed louder by what the first MP3 lost
    assert result.warnings == ()
    _assert_on_target(out, -16.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["white.mp3"]  # temp files removed


def test_encoding_is_deterministic(media, tmp_path):
    first = encode_master(media["stereo_loud_flac"], tmp_path / "a" / "x.mp3", target=TARGET)
    second = encode_master(media["stereo_loud_flac"], tmp_path / "b" / "y.mp3", target=TARGET)
    assert _sha256(first.output) == _sha256(second.output)
    # No tags and no version strings in the encode: tagging is flows.podcast.tags's job.
    assert b"ID3" not in first.output.read_bytes()[:3]
    assert re.search(rb"Lav[fc]\d", first.output.read_bytes()) is None
    assert os.stat(first.output).st_mode & 0o777 == 0o644


def test_encoded_mp3_takes_episode_tags(media, tmp_path):
    out = tmp_path / "enc.mp3"
    encode_master(media["stereo_quiet_wav"], out, target=TARGET)
    tagged = tmp_path / "tagged.mp3"
    tags = EpisodeTags(
        title="Avsnitt 1", artist="Digitalsamtal", album="Digitalsamtal", description="Om data"
    )
    tag_audio(out, tagged, tags, inspect_audio(out))
    assert str(ID3(tagged)["TIT2"]) == "Avsnitt 1"
    _assert_on_target(tagged, -16.0)


def test_bad_settings_are_refused(media, tmp_path):
    with pytest.raises(AudioError, match="bitrate 8 kbps"):
        encode_master(media["mono_wav"], tmp_path / "x.mp3", target=TARGET, bitrate_kbps=8)
    with pytest.raises(AudioError, match="forced channels 6"):
        encode_master(media["mono_wav"], tmp_path / "x.mp3", target=TARGET, channels=6)


# --------------------------------------------------------------------------------------------
# Lossy files


def test_check_lossy_says_by_how_much_and_what_to_do(tmp_path):
    quiet = Loudness(integrated_lufs=-22.4, true_peak_dbtp=-8.0, lra=5.0, threshold=-32.4)
    [warning] = check_lossy(tmp_path / "avsnitt.mp3", quiet, TARGET)
    swedish, english = warning.splitlines()  # Swedish first, English below
    assert swedish.startswith(
        "avsnitt.mp3: -22.4 LUFS, 6.4 LU tystare än målet -16 LUFS; lyssnarna får skruva upp "
    )
    assert english == (
        "avsnitt.mp3: -22.4 LUFS, 6.4 LU quieter than the -16 LUFS target; listeners have to "
        "turn it up between episodes. Drop the master (WAV/FLAC) instead, which we normalise, "
        "or raise the level by 6.4 dB in the editor and export again (a technician can also "
        "turn on re-encoding: KRAFTSAMLING_NORMALISE_LOSSY=true), e.g. `avsnitt.wav`."
    )
    loud = Loudness(integrated_lufs=-11.5, true_peak_dbtp=-0.2, lra=5.0, threshold=-21.5)
    louder, peak = check_lossy(tmp_path / "b.m4a", loud, TARGET)
    assert "4.5 LU louder than the -16 LUFS target" in louder
    assert "true peak -0.2 dBTP is above the -1 dBTP ceiling" in peak
    near = Loudness(integrated_lufs=-17.5, true_peak_dbtp=-2.0, lra=5.0, threshold=-27.5)
    assert check_lossy(tmp_path / "c.mp3", near, TARGET, margin_lu=2.0) == []
    # Mono files are held to the mono target when one is set.
    mono = Loudness(integrated_lufs=-19.2, true_peak_dbtp=-4.0, lra=3.0, threshold=-29.2)
    assert (
        check_lossy(tmp_path / "m.mp3", mono, LoudnessTarget(mono_integrated=-19), channels=1) == []
    )


def test_quiet_mp3_is_measured_and_warned_about(media, tmp_path):
    settings = Settings.load()
    prepared = prepare_audio(media["quiet_mp3"], tmp_path, settings)
    assert prepared.kind == "lossy" and prepared.publish_path == media["quiet_mp3"]
    assert prepared.loudness["integrated_lufs"] == pytest.approx(-24, abs=0.6)
    assert (
        len(prepared.warnings) == 1
        and "LU quieter than the -16 LUFS target" in prepared.warnings[0]
    )
    assert list(tmp_path.iterdir()) == []  # nothing encoded


def test_lossy_files_are_reencoded_when_the_setting_asks(media, tmp_path):
    settings = Settings.load(normalise_lossy=True)
    prepared = prepare_audio(media["loud_m4a"], tmp_path, settings)
    assert prepared.kind == "reencoded" and prepared.publish_path == tmp_path / "loud.mp3"
    assert "re-encoded" in prepared.warnings[0]
    _assert_on_target(prepared.publish_path, -16.0)
    direct = reencode_lossy(
        media["quiet_mp3"], tmp_path / "q.mp3", inspect_audio(media["quiet_mp3"]), target=TARGET
    )
    assert direct.input.integrated_lufs < -22
    _assert_on_target(direct.output, -16.0)


def test_prepare_audio_encodes_masters_with_the_settings(media, tmp_path):
    settings = Settings.load(mp3_bitrate_kbps=96, loudness_mono_lufs=-19.0)
    prepared = prepare_audio(media["mono_quiet_aiff"], tmp_path, settings)
    assert prepared.kind == "master" and prepared.master is not None
    assert prepared.master.mime_type == "audio/aiff"
    assert prepared.publish_path == tmp_path / "mono-30.mp3"
    assert inspect_audio(prepared.publish_path).bitrate == pytest.approx(96_000, rel=0.01)
    assert set(prepared.loudness) >= {"integrated_lufs", "true_peak_dbtp", "lra_lu"}
    assert abs(prepared.loudness["integrated_lufs"] + 19) <= 1.0
    assert prepared.loudness["source_integrated_lufs"] == pytest.approx(-30, abs=0.2)


# --------------------------------------------------------------------------------------------
# ffmpeg missing or failing


def _fake_ffmpeg(tmp_path: Path, body: str) -> str:
    script = tmp_path / "ffmpeg"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def test_failing_ffmpeg_error_quotes_its_last_lines(media, tmp_path):
    fake = _fake_ffmpeg(
        tmp_path,
        'i=1; while [ $i -le 500 ]; do echo "decoder noise $i" >&2; i=$((i+1)); done\n'
        'echo "[wav @ 0x1] Invalid data found when processing input" >&2\nexit 1',
    )
    with pytest.raises(AudioError) as err:
        encode_master(media["mono_wav"], tmp_path / "out.mp3", target=TARGET, ffmpeg=fake)
    message = str(err.value)
    assert str(media["mono_wav"]) in message and "exit status 1" in message
    assert "Invalid data found when processing input" in message
    assert "decoder noise 500" in message and "decoder noise 1\n" not in message
    assert not (tmp_path / "out.mp3").exists()


def test_endless_stderr_line_is_cut_not_buffered(media, tmp_path):
    fake = _fake_ffmpeg(
        tmp_path, "head -c 3000000 /dev/zero | tr '\\0' x >&2\necho >&2\necho 'the end' >&2\nexit 2"
    )
    with pytest.raises(AudioError) as err:
        measure_loudness(media["mono_wav"], ffmpeg=fake)
    assert "the end" in str(err.value) and len(str(err.value)) < 5000


def test_ffmpeg_without_a_report_is_an_error(media, tmp_path):
    fake = _fake_ffmpeg(tmp_path, "echo 'nothing to see' >&2\nexit 0")
    with pytest.raises(AudioError, match="gave no loudness figures"):
        measure_loudness(media["mono_wav"], ffmpeg=fake)


def test_hanging_ffmpeg_is_stopped_at_the_timeout(media, tmp_path):
    fake = _fake_ffmpeg(tmp_path, "echo 'waiting' >&2\nexec sleep 30")
    with pytest.raises(AudioError) as err:
        measure_loudness(media["mono_wav"], ffmpeg=fake, timeout=0.5)
    assert "did not finish" in str(err.value) and "waiting" in str(err.value)


def test_missing_ffmpeg_is_a_clear_error(media, tmp_path, monkeypatch):
    with pytest.raises(AudioError, match="cannot start ffmpeg"):
        measure_loudness(media["mono_wav"], ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "gone" / "ffmpeg"))
    with pytest.raises(AudioError, match="IMAGEIO_FFMPEG_EXE"):
        ffmpeg_exe()


def test_target_follows_the_settings():
    settings = Settings.load(loudness_mono_lufs=-19, loudness_target_lufs=-14)
    target = LoudnessTarget.from_settings(settings)
    assert (target.for_channels(1), target.for_channels(2), target.true_peak) == (-19, -14, -1)
