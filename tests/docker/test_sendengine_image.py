"""The send-engine image, built for real by ``postroom sendengine base`` and ``build``.

It must carry no Qt, run as a non-root user, stay within 250 MB, label itself (OCI labels,
its role, the hash of its inputs), check its engine's health, run ``postroom`` and, under
supervisord, pass what the engine prints on to the container's output.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from datetime import datetime
from typing import Any

import pytest

from app import __version__
from tests.docker.conftest import docker_cli, make_image

MAX_IMAGE_BYTES = 250 * 1000 * 1000
SUPERVISOR_WAIT_S = 30


def run_in_image(image: dict[str, Any], *command: str) -> str:
    done = docker_cli("run", "--rm", "--network", "host", image["image_id"], *command)
    assert done.returncode == 0, done.stderr
    return done.stdout


def inspect(docker_client: Any, image: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = docker_client.images.get(image["image_id"]).attrs
    return attrs


def test_the_image_is_tagged_with_the_version_and_latest(
    docker_client: Any, engine_image: dict[str, Any]
) -> None:
    assert engine_image["tags"] == [
        f"postroom/sendengine:{__version__}",
        "postroom/sendengine:latest",
    ]
    for tag in engine_image["tags"]:
        assert docker_client.images.get(tag).id == engine_image["image_id"]


def test_postroom_runs_inside(engine_image: dict[str, Any]) -> None:
    assert run_in_image(engine_image, "postroom", "--version").strip() == (
        f"postroom, version {__version__}"
    )


def test_the_image_has_no_qt(engine_image: dict[str, Any]) -> None:
    probe = (
        "import importlib.util, json, pathlib, sys\n"
        "mods = {m: importlib.util.find_spec(m) is not None "
        "for m in ('PySide6', 'shiboken6', 'qasync', 'app.cli', 'supervisor')}\n"
        "site = pathlib.Path(sys.prefix, 'lib')\n"
        "qt = sorted(p.name for p in site.rglob('*') if p.name.lower().startswith"
        "(('pyside6', 'shiboken6', 'libqt6')))\n"
        "print(json.dumps({'modules': mods, 'qt_files': qt}))\n"
    )
    report = json.loads(run_in_image(engine_image, "python3", "-c", probe))
    assert report["modules"] == {
        "PySide6": False,
        "shiboken6": False,
        "qasync": False,
        "app.cli": True,
        "supervisor": True,
    }
    assert report["qt_files"] == []


def test_the_engine_runs_as_a_user_without_root(
    docker_client: Any, engine_image: dict[str, Any]
) -> None:
    assert inspect(docker_client, engine_image)["Config"]["User"] == "postroom"
    uid, gid = run_in_image(engine_image, "sh", "-c", "id -u; id -g").split()
    assert int(uid) != 0 and int(gid) != 0


def test_the_image_stays_within_250_mb(engine_image: dict[str, Any], docker_client: Any) -> None:
    size = inspect(docker_client, engine_image)["Size"]
    assert size == engine_image["size_bytes"]
    print(f"send-engine image: {size / 1e6:.0f} MB")
    assert 0 < size <= MAX_IMAGE_BYTES


def test_the_image_is_labelled(docker_client: Any, engine_image: dict[str, Any]) -> None:
    labels = inspect(docker_client, engine_image)["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "Postroom send engine"
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"].startswith("https://")
    created = datetime.fromisoformat(labels["org.opencontainers.image.created"])
    assert created.tzinfo is not None
    assert labels["app.postroom.role"] == "sendengine-image"
    assert labels["app.postroom.inputs-sha256"] == engine_image["inputs_sha256"]


def test_the_healthcheck_asks_the_engine(docker_client: Any, engine_image: dict[str, Any]) -> None:
    check = inspect(docker_client, engine_image)["Config"]["Healthcheck"]
    assert check["Test"] == ["CMD", "/usr/local/bin/postroom-engine", "health"]
    assert 0 < check["Interval"] <= 60 * 10**9 and check["Retries"] >= 1
    script = run_in_image(engine_image, "cat", "/usr/local/bin/postroom-engine")
    assert "postroom engine health --engine-id" in script
    assert "--max-age" in script


def test_no_secret_is_in_the_image_environment(
    docker_client: Any, engine_image: dict[str, Any]
) -> None:
    env = inspect(docker_client, engine_image)["Config"]["Env"]
    names = {entry.split("=", 1)[0] for entry in env}
    assert not names & {"POSTROOM_DATABASE_URL", "POSTROOM_VAULT_KEY"}


def test_supervisord_runs_the_engine_and_passes_its_output_on(
    engine_image: dict[str, Any],
) -> None:
    """Without its secret files the engine stops at once: what it says must reach
    `docker logs`, and supervisord must report and restart it."""
    started = docker_cli(
        "run",
        "--detach",
        "--network",
        "host",
        "--label",
        "app.postroom.test=image",
        engine_image["image_id"],
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        deadline = time.monotonic() + SUPERVISOR_WAIT_S
        logs = ""
        while time.monotonic() < deadline:
            logs = docker_cli("logs", container).stdout
            if logs.count("spawned: 'engine'") >= 2:
                break
            time.sleep(0.5)
        assert logs.count("spawned: 'engine'") >= 2, logs
        # The engine's own complaint, from the container's output.
        assert "/run/secrets/postroom_vault_key" in logs
        # supervisord's log lines appear once each, not also copied from a log file.
        spawned = [line for line in logs.splitlines() if "spawned: 'engine'" in line]
        assert len(spawned) == len(set(spawned))
        status = docker_cli("exec", container, "supervisorctl", "status", "engine")
        assert status.stdout.split()[0] == "engine", status.stdout + status.stderr
    finally:
        docker_cli("rm", "--force", container)


def test_a_second_build_with_unchanged_inputs_is_skipped(engine_image: dict[str, Any]) -> None:
    again = make_image("build", "--base", engine_image_base(engine_image))
    assert again["built"] is False
    assert again["image_id"] == engine_image["image_id"]
    assert again["inputs_sha256"] == engine_image["inputs_sha256"]


def engine_image_base(engine_image: dict[str, Any]) -> str:
    done = docker_cli(
        "image",
        "inspect",
        "--format",
        '{{ index .Config.Labels "app.postroom.base-image" }}',
        engine_image["image_id"],
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_second_base_with_unchanged_inputs_is_skipped(
    base_image: str, docker_client: Any
) -> None:
    labels = docker_client.images.get(base_image).attrs["Config"]["Labels"] or {}
    if labels.get("app.postroom.role") != "base-image":
        pytest.skip(f"{base_image} was not made by `postroom sendengine base`")
    again = make_image("base", "--tag", base_image)
    assert again["built"] is False
    assert again["image_id"] == docker_client.images.get(base_image).id


def image_files(image: str, names: set[str]) -> dict[str, bytes]:
    """Files as the image's layers hold them (a container would see Docker's own mounts)."""
    found: dict[str, bytes] = {}
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as saved:
        assert saved.stdout is not None
        with tarfile.open(fileobj=saved.stdout, mode="r|") as outer:
            for member in outer:
                layer = outer.extractfile(member) if member.name.endswith("layer.tar") else None
                if layer is None:
                    continue
                with tarfile.open(fileobj=layer, mode="r|") as inner:
                    for entry in inner:
                        name = entry.name.removeprefix("./")
                        content = inner.extractfile(entry) if name in names else None
                        if content is not None:
                            found[name] = content.read()
    assert saved.returncode == 0
    return found


def test_the_base_keeps_nothing_of_the_machine_that_made_it(
    base_image: str, docker_client: Any
) -> None:
    labels = docker_client.images.get(base_image).attrs["Config"]["Labels"] or {}
    if labels.get("app.postroom.role") != "base-image":
        pytest.skip(f"{base_image} was not made by `postroom sendengine base`")
    files = image_files(
        base_image, {"etc/hostname", "etc/resolv.conf", "usr/lib/python3.11/venv/__init__.py"}
    )
    assert files.pop("usr/lib/python3.11/venv/__init__.py")
    assert files == {"etc/hostname": b"localhost\n", "etc/resolv.conf": b""}
