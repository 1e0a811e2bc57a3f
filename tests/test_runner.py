"""Commands run directly without a Prefect server, and as flows with one (issue 22).

- The configured Prefect API is read as Prefect reads it, without importing Prefect.
- Run directly, the jobs make the same files, reports and notes as the flows do.
- A direct run that fails tells the KRAFTSAMLING_NOTIFY_FAILURES addresses.
- A no-op command with no server configured never imports Prefect (a fresh process).
- With a server, the commands run as flows, without the flow-run heartbeat.
"""

# ruff: noqa: F811  (the fixtures imported from test_podcast are test arguments here)

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO_EVENTS, DEMO_POSTS, REPO_ROOT
from loopback import smtp_server
from test_podcast import T0, T1, audio, cover_bytes, put, show_dir  # noqa: F401  (fixtures)
from test_release import Recorder

from flows.core.errors import PublishIncompleteError, SettingsError
from flows.demo import DEMO_MONTH, DEMO_NOW
from flows.runner import Direct, OnPrefect, choose, read_api_url

PUBLIC_URL = "https://media.runner.example/"
FAILURES = "drift@kraftsamling.example"

# --- which mode: the configured API, read as Prefect reads it ----------------------------------


def _profiles(path: Path, active: str, url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'active = "{active}"\n\n[profiles.ephemeral]\nPREFECT_SERVER_EPHEMERAL_ENABLED = "true"\n'
        f'\n[profiles.srv]\nPREFECT_API_URL = "{url}"\n',
        encoding="utf-8",
    )


def api_cases(tmp: Path) -> dict[str, tuple[dict[str, str], Path]]:
    """{case: (environment, working folder)}, each with its own PREFECT_HOME."""
    cases: dict[str, tuple[dict[str, str], Path]] = {}
    for name in (
        "nothing",
        "environment",
        "active profile",
        "PREFECT_PROFILE",
        "ephemeral profile",
        "PREFECT_PROFILES_PATH",
        "prefect.toml",
        "pyproject.toml",
        ".env",
        "test mode",
    ):
        folder = tmp / name.replace(" ", "-").replace(".", "")
        (folder / "cwd").mkdir(parents=True)
        cases[name] = ({"PREFECT_HOME": str(folder / "home")}, folder / "cwd")
    url = "http://127.0.0.1:4301/api"
    cases["environment"][0]["PREFECT_API_URL"] = url
    _profiles(tmp / "active-profile" / "home" / "profiles.toml", "srv", url)
    _profiles(tmp / "PREFECT_PROFILE" / "home" / "profiles.toml", "ephemeral", url)
    cases["PREFECT_PROFILE"][0]["PREFECT_PROFILE"] = "srv"
    _profiles(tmp / "ephemeral-profile" / "home" / "profiles.toml", "ephemeral", url)
    _profiles(tmp / "PREFECT_PROFILES_PATH" / "elsewhere.toml", "srv", url)
    cases["PREFECT_PROFILES_PATH"][0]["PREFECT_PROFILES_PATH"] = str(
        tmp / "PREFECT_PROFILES_PATH" / "elsewhere.toml"
    )
    (cases["prefect.toml"][1] / "prefect.toml").write_text(f'[api]\nurl = "{url}"\n')
    (cases["pyproject.toml"][1] / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n\n[tool.prefect.api]\nurl = "{url}"\n'
    )
    (cases[".env"][1] / ".env").write_text(f"# Prefect\nPREFECT_API_URL={url}\n")
    _profiles(tmp / "test-mode" / "home" / "profiles.toml", "srv", url)
    cases["test mode"][0]["PREFECT_TEST_MODE"] = "1"
    return cases


# Prefect's own answer for each case, in one fresh process (os.environ and cwd per case).
PREFECTS_ANSWER = """
import json, os, sys
from prefect.settings import Settings
answers = {}
for name, (env, cwd) in json.loads(sys.argv[1]).items():
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        del os.environ[key]
    os.environ.update(env)
    os.chdir(cwd)
    answers[name] = Settings().api.url
print(json.dumps(answers))
"""


def test_the_configured_api_is_read_as_prefect_reads_it(tmp_path) -> None:
    cases = api_cases(tmp_path)
    ours = {name: read_api_url(env, cwd) for name, (env, cwd) in cases.items()}
    arg = json.dumps({name: (env, str(cwd)) for name, (env, cwd) in cases.items()})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(
        [sys.executable, "-c", PREFECTS_ANSWER, arg],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    prefects = json.loads(done.stdout)
    assert ours == prefects
    configured = {name for name, url in ours.items() if url}
    assert configured == set(cases) - {"nothing", "ephemeral profile", "test mode"}


def test_a_command_that_waits_for_a_person_runs_on_prefect() -> None:
    # With or without a server: the approval gate is a Prefect pause.
    assert choose(waits_for_a_person=True).mode == "prefect"
    with pytest.raises(ValueError, match="needs a Prefect flow run"):
        Direct().newsletter(send=True, to=["a@example.org"])


# --- direct and flow runs make the same things --------------------------------------------------


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path, with the run's folder names made equal
    and the wall clock left out: LocalStorage's record of when each object was written
    (`mtime_ns`) and the names of catalog backups (named when they were saved)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        name = re.sub(r"catalog-\d{8}T\d{6}Z", "catalog-<saved>", name)
        content = path.read_bytes().replace(str(folder).encode(), b"<root>")
        if name.startswith("storage/.meta/") and name.endswith(".json"):
            meta = json.loads(content)
            meta.pop("mtime_ns")
            content = json.dumps(meta, sort_keys=True).encode()
        files[name] = content
    return files


def all_jobs(runner: Direct | OnPrefect, root: Path) -> list[str]:
    """A publish run with a good and a broken episode, a feed run, a newsletter build:
    what each reported, with `root` made equal."""
    place = {"storage": str(root / "storage"), "public_url": PUBLIC_URL}
    episodes = str(root / "episodes")
    said = []
    with pytest.raises(PublishIncompleteError) as failed:
        runner.publish_episodes(episodes=episodes, now=T0, settle_seconds=0, **place)
    said.append(str(failed.value))
    said.append(runner.regenerate_feed(episodes=episodes, now=T1, **place).summary())
    issue = runner.newsletter(
        month=DEMO_MONTH,
        now=DEMO_NOW,
        out=str(root / "newsletters"),
        posts=DEMO_POSTS,
        events=DEMO_EVENTS,
        **place,
    )
    said.append(issue.summary())
    return [text.replace(str(root), "<root>") for text in said]


@pytest.mark.prefect
def test_direct_runs_make_what_the_flows_make(prefect_harness, show_dir, audio, tmp_path) -> None:
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Ett bra avsnitt\nepisode: 1\n---\nOm AI.\n")
    put(show_dir, "trasig.mp3", b"ID3 this is no audio at all" * 10)
    put(show_dir, "trasig.md", "---\ntitle: Trasigt\n---\n")
    roots = {"direct": tmp_path / "direct", "flow": tmp_path / "flow"}
    for root in roots.values():
        root.mkdir()
        shutil.copytree(show_dir, root / "episodes")

    direct = all_jobs(Direct(), roots["direct"])
    flow = all_jobs(OnPrefect(), roots["flow"])

    assert direct == flow
    assert "1 published" in direct[0] and "trasig.mp3" in direct[0]
    made = {mode: tree(root) for mode, root in roots.items()}
    assert made["direct"] == made["flow"]
    assert "storage/podcast/feed.xml" in made["direct"]
    assert "episodes/failed/trasig.error.txt" in made["direct"]
    assert f"newsletters/{DEMO_MONTH}/index.html" in made["direct"]


# --- a failed direct run tells the failure addresses -------------------------------------------


def mails(recorder: Recorder) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(raw, policy=email.policy.default) for _, raw in recorder.envelopes
    ]


@pytest.fixture
def failures_told(monkeypatch):
    recorder = Recorder()
    with smtp_server(recorder) as port:
        monkeypatch.setenv("KRAFTSAMLING_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("KRAFTSAMLING_SMTP_PORT", str(port))
        monkeypatch.setenv("KRAFTSAMLING_SMTP_SECURITY", "none")
        monkeypatch.setenv("KRAFTSAMLING_NOTIFY_FAILURES", FAILURES)
        yield recorder


def test_a_failed_direct_run_emails_the_failure_addresses(
    failures_told, show_dir, audio, tmp_path
) -> None:
    put(show_dir, "trasig.mp3", b"ID3 this is no audio at all" * 10)
    put(show_dir, "trasig.md", "---\ntitle: Trasigt\n---\n")
    with pytest.raises(PublishIncompleteError):  # the run's own outcome is unchanged
        Direct().publish_episodes(
            episodes=str(show_dir), storage=str(tmp_path / "storage"), settle_seconds=0
        )
    (message,) = mails(failures_told)
    assert message["To"] is None and failures_told.envelopes[0][0] == [FAILURES]
    assert "publish-episodes" in message["Subject"] and "failed" in message["Subject"]
    text = message.get_content()
    assert "PublishIncompleteError: Some episodes were not published" in text
    assert f"pid {os.getpid()}" in text  # a direct run is named by when and where it ran


def test_a_direct_command_that_fails_emails_the_failure_addresses(failures_told, tmp_path):
    # The command as cron runs it: a new process, no Prefect server configured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    missing = tmp_path / "no-episodes-here"
    done = subprocess.run(
        [sys.executable, "-m", "flows", "feed", "--episodes", str(missing)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "error:" in done.stderr, done.stderr
    (message,) = mails(failures_told)
    assert "regenerate-feed" in message["Subject"]
    assert str(missing) in message.get_content()


def test_a_bad_setting_is_told_too(failures_told) -> None:
    with pytest.raises(SettingsError, match="public_url"):
        Direct().regenerate_feed(public_url="http://media.example/")
    (message,) = mails(failures_told)
    assert "regenerate-feed" in message["Subject"]


# --- no Prefect where it is not needed ---------------------------------------------------------

# Runs the command in a fresh process and says whether Prefect was imported.
WHO_IMPORTED = """
import sys
from flows.cli import main
status = main(sys.argv[1:])
print("prefect imported:", any(m.split(".")[0] == "prefect" for m in sys.modules))
sys.exit(status)
"""


def test_a_no_op_command_without_a_server_never_imports_prefect(show_dir, audio, tmp_path):
    place = ["--storage", str(tmp_path / "storage"), "--public-url", PUBLIC_URL]
    episodes = ["--episodes", str(show_dir)]
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Ett bra avsnitt\n---\n")
    Direct().publish_episodes(
        episodes=str(show_dir), storage=place[1], public_url=PUBLIC_URL, settle_seconds=0
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), KRAFTSAMLING_EVENTS="[]")
    news = ["--month", "2027-01", "--now", "2027-01-01T08:00:00+01:00"]
    news += ["--posts", DEMO_POSTS[0], "--out", str(tmp_path / "n")]
    news += ["--storage", str(tmp_path / "no-catalog")]  # no new episode to list either
    commands = {
        "podcast": (["podcast", *episodes, *place], "Nothing new in the inbox"),
        "feed": (["feed", *episodes, *place], "nothing uploaded"),
        "newsletter": (["newsletter", *news], "Nothing new for 2027-01"),
    }
    for name, (argv, expect) in commands.items():
        done = subprocess.run(
            [sys.executable, "-c", WHO_IMPORTED, *argv],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (name, done.stderr)
        assert expect in done.stdout, (name, done.stdout)
        assert "prefect imported: False" in done.stdout, name


# --- with a server: flows, and no heartbeat ------------------------------------------------------


def test_a_short_command_turns_the_heartbeat_off_and_a_wait_keeps_it() -> None:
    from prefect.settings import get_current_settings

    from flows.runner import prefect_session

    default = get_current_settings().flows.heartbeat_frequency
    with prefect_session(heartbeat=False):
        assert get_current_settings().flows.heartbeat_frequency is None
    with prefect_session(heartbeat=True):
        assert get_current_settings().flows.heartbeat_frequency == default
    assert default is not None


@pytest.mark.prefect
def test_with_a_server_the_command_runs_as_a_flow(
    prefect_harness, show_dir, audio, tmp_path, capsys, monkeypatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
    )

    from flows.cli import main

    def feed_runs() -> tuple[int, int]:
        """(runs of regenerate-feed, versions of its artifact)"""
        only = FlowFilter(name=FlowFilterName(any_=["regenerate-feed"]))
        key = ArtifactFilter(key=ArtifactFilterKey(any_=["podcast-feed"]))
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_filter=only, limit=200)
            return len(runs), len(client.read_artifacts(artifact_filter=key, limit=200))

    monkeypatch.setenv("KRAFTSAMLING_SETTLE_SECONDS", "0")
    put(show_dir, "bra.mp3", audio["mp3"])
    put(show_dir, "bra.md", "---\ntitle: Ett bra avsnitt\n---\n")
    place = ["--storage", str(tmp_path / "storage"), "--public-url", PUBLIC_URL]
    assert choose().mode == "prefect"  # the harness is the configured server
    assert main(["podcast", "--episodes", str(show_dir), *place]) == 0
    runs, artifacts = feed_runs()
    assert main(["feed", "--episodes", str(show_dir), *place]) == 0
    assert "1 episode(s), unchanged, nothing uploaded" in capsys.readouterr().out
    # One more run on the server; a run that changed nothing shows no new artifact.
    assert feed_runs() == (runs + 1, artifacts)
