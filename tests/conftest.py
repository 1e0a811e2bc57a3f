"""Shared test set-up.

Unit tests call plain functions and need no Prefect server. Tests that run whole flows take
the opt-in `prefect_harness` fixture (one temporary Prefect server per session, ~10 s).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Offline and quiet before anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="kraftsamling-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(Path(_PREFECT_HOME) / "results")
# No test may reach a real AWS account.
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_name, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
for _name in [n for n in os.environ if n.startswith("KRAFTSAMLING_")]:
    os.environ.pop(_name)
# Tests never touch the internet: the draft's link check runs only where a test turns it on
# (against a server on 127.0.0.1, tests/test_linkcheck.py).
os.environ["KRAFTSAMLING_LINK_CHECK"] = "false"

pytest_plugins = ["s3fixtures", "httpserver"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "demo"
# The demo's sources, which production never uses by default: tests name them explicitly.
DEMO_POSTS = [str(DEMO_DIR / "posts.xml")]
DEMO_EVENTS = [str(DEMO_DIR / "events.ics"), str(DEMO_DIR / "events.yaml")]


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server for the whole session; only tests that ask for it pay."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
