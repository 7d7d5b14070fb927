"""A real Docker engine, and the base and send-engine images built once per run.

The images are made through the command line (``postroom sendengine base`` and ``build``,
``--json``), as an administrator would. Both skip the work when an image made from the same
inputs exists, so only the first run on a machine pays for debootstrap and pip.

``POSTROOM_TEST_BASE_IMAGE`` builds on another base (e.g. ``python:3.11-slim`` where a
registry is reachable) instead of making ``postroom/base:bookworm``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import peer_missing

REPO = Path(__file__).resolve().parents[2]
BASE_TAG = "postroom/base:bookworm"
# The builds run once per session; the limit is for a cold machine with a slow mirror.
BUILD_TIMEOUT_S = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs the engine: ``-m docker`` selects them, ``-m 'not docker'``
    leaves them out."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


def postroom(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Any:
    """``python -m app ARGS`` from this checkout; the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


def docker_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    from app.engine.docker_api import DockerUnreachable, connect

    try:
        client = connect()
    except DockerUnreachable as exc:
        peer_missing(f"dockerd: {exc} (scripts/test starts it)")
    # Each test removes its containers in a `finally`, which a run killed with SIGKILL never
    # reaches: what such a run left (labelled by the test that made it) goes first.
    for leftover in client.containers.list(all=True, filters={"label": "app.postroom.test"}):
        leftover.remove(force=True)
    yield client
    client.close()


def make_image(what: str, *args: str) -> dict[str, Any]:
    """Run a ``sendengine`` build command with --json; its result, timed."""
    started = time.monotonic()
    done = postroom("sendengine", what, *args, "--json", timeout=BUILD_TIMEOUT_S)
    assert done.returncode == 0, f"sendengine {what} failed:\n{done.stderr[-4000:]}"
    made: dict[str, Any] = json.loads(done.stdout)
    # Shown with -s, and in the report of a failing test: how long the run paid for images.
    verb = "built" if made["built"] else "up to date"
    print(f"sendengine {what}: {made['tags'][0]} {verb} in {time.monotonic() - started:.1f} s")
    return made


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The image the send engine is built on: made here unless the environment names one."""
    chosen = os.environ.get("POSTROOM_TEST_BASE_IMAGE")
    if chosen:
        return chosen
    if os.geteuid() != 0:
        peer_missing("making the base image runs debootstrap, which needs root")
    made = make_image("base", "--tag", BASE_TAG)
    return str(made["tags"][0])


@pytest.fixture(scope="session")
def engine_image(base_image: str) -> dict[str, Any]:
    """The send-engine image's build result (tags, id, size, inputs hash)."""
    return make_image("build", "--base", base_image)
