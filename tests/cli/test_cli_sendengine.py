"""``postroom sendengine base|build`` where they must refuse, and what they build from.

The refusals need no Docker engine: one that is not there is the point. The images
themselves are built against the real engine in tests/docker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine import base_image, images

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postroom(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize("command", [["sendengine", "build"], ["sendengine", "base"]], ids=str)
def test_an_unreachable_engine_is_one_sentence_naming_docker_host(command: list[str]) -> None:
    port = closed_port()
    done = postroom(command, DOCKER_HOST=f"tcp://127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"postroom: no Docker engine answers at DOCKER_HOST=tcp://127.0.0.1:{port} "
        "(connection refused); check that the engine runs there and that DOCKER_HOST, "
        "DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are right.\n"
    )


def test_a_missing_socket_and_missing_certificates_are_named(tmp_path: Path) -> None:
    socket_path = tmp_path / "docker.sock"
    done = postroom(["sendengine", "build"], DOCKER_HOST=f"unix://{socket_path}")
    assert done.returncode == 1
    assert f"DOCKER_HOST=unix://{socket_path} (no such socket)" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr

    certs = tmp_path / "certs"
    certs.mkdir()
    done = postroom(
        ["sendengine", "build"],
        DOCKER_HOST=f"tcp://127.0.0.1:{closed_port()}",
        DOCKER_TLS_VERIFY="1",
        DOCKER_CERT_PATH=str(certs),
    )
    assert done.returncode == 1
    assert f"with TLS (DOCKER_TLS_VERIFY=1, certificates in {certs})" in done.stderr
    assert "(TLS certificate files not found)" in done.stderr
    assert done.stderr.count("\n") == 1


def test_without_docker_host_the_sentence_says_how_to_start_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.engine.docker_api import unreachable_sentence

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    sentence = unreachable_sentence(ConnectionRefusedError(111, "Connection refused"))
    assert sentence.startswith(
        "no Docker engine answers at unix:///var/run/docker.sock (connection refused); start it"
    )
    assert "dockerd" in sentence and "DOCKER_HOST" in sentence
    denied = unreachable_sentence(PermissionError(13, "Permission denied"))
    assert denied.startswith("this user may not use the Docker engine")


def test_debootstrap_refusals(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The user id is faked (the suite runs as root, and debootstrap needs root); the
    missing debootstrap is real: PATH names an empty folder."""
    monkeypatch.setattr(base_image.os, "geteuid", lambda: 1000)
    with pytest.raises(images.ImageBuildError, match=r"needs root; run it as root \(sudo "):
        base_image.check_can_debootstrap()
    monkeypatch.setattr(base_image.os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(images.ImageBuildError, match=r"^debootstrap is not installed; install"):
        base_image.check_can_debootstrap()


def test_the_mirror_is_the_one_apt_uses_for_the_suite(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    assert base_image.apt_mirror("bookworm", apt) == base_image.FALLBACK_MIRROR
    (apt / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64] https://nodesource.example/node nodistro main\n",
        encoding="utf-8",
    )
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "URIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb deb-src\n"
        "# a comment inside the stanza\n"
        "URIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n",
        encoding="utf-8",
    )
    assert base_image.apt_mirror("bookworm", apt) == "http://mirror.example/debian"
    assert base_image.apt_mirror("trixie", apt) == base_image.FALLBACK_MIRROR
    (apt / "sources.list").write_text(
        "deb [signed-by=/k.gpg] http://first.example/debian trixie main\n", encoding="utf-8"
    )
    assert base_image.apt_mirror("trixie", apt) == "http://first.example/debian"


def fake_checkout(root: Path) -> Path:
    for name in (*images.PROJECT_FILES, *(f"sendengine_image/{n}" for n in images.IMAGE_FILES)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"contents of {name}\n", encoding="utf-8")
    (root / "app" / "engine").mkdir(parents=True)
    (root / "app" / "engine" / "runner.py").write_text("RUN = 1\n", encoding="utf-8")
    (root / "resources").mkdir()
    return root


def test_the_inputs_hash_follows_what_goes_into_the_image(tmp_path: Path) -> None:
    root = fake_checkout(tmp_path)
    first = images.engine_inputs_sha256(root, "postroom/base:bookworm", "sha256:aaa")
    assert first == images.engine_inputs_sha256(root, "postroom/base:bookworm", "sha256:aaa")

    # Byte code and caches are not inputs.
    cache = root / "app" / "engine" / "__pycache__"
    cache.mkdir()
    (cache / "runner.cpython-311.pyc").write_bytes(b"\0compiled")
    assert images.engine_inputs_sha256(root, "postroom/base:bookworm", "sha256:aaa") == first

    changed = {
        "a new base image": images.engine_inputs_sha256(root, "postroom/base:bookworm", "sha256:b"),
        "another base": images.engine_inputs_sha256(root, "python:3.11-slim", "sha256:aaa"),
    }
    (root / "app" / "engine" / "runner.py").write_text("RUN = 2\n", encoding="utf-8")
    changed["the code"] = images.engine_inputs_sha256(root, "postroom/base:bookworm", "sha256:aaa")
    (root / "app" / "engine" / "runner.py").write_text("RUN = 1\n", encoding="utf-8")
    (root / "sendengine_image" / "postroom-engine").chmod(0o755)
    changed["the entry point's mode"] = images.engine_inputs_sha256(
        root, "postroom/base:bookworm", "sha256:aaa"
    )
    assert all(value != first for value in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_building_outside_a_checkout_says_where_to_run_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An installed Postroom has no sendengine_image/ next to its package."""
    installed = tmp_path / "site-packages" / "app" / "engine" / "images.py"
    installed.parent.mkdir(parents=True)
    monkeypatch.setattr(images, "__file__", str(installed))
    with pytest.raises(images.ImageBuildError, match="is not one"):
        images.find_source_root()


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["sendengine", "push"],
            "the registry is missing; give --registry HOST:PORT or set POSTROOM_REGISTRY.",
        ),
        (
            ["sendengine", "build", "--push"],
            "--push needs the registry; give --registry HOST:PORT or set POSTROOM_REGISTRY.",
        ),
        (
            ["sendengine", "push", "--registry", "http://127.0.0.1:5000"],
            "the registry 'http://127.0.0.1:5000' is not HOST[:PORT]; give it as Docker writes "
            "it, without http:// and without a path, e.g. --registry 127.0.0.1:5000.",
        ),
    ],
    ids=["push without a registry", "build --push without one", "a registry with http://"],
)
def test_a_missing_or_malformed_registry_is_one_sentence_before_docker_is_asked(
    args: list[str], sentence: str
) -> None:
    """DOCKER_HOST names a closed port: reaching for the engine would be another sentence."""
    env = {k: v for k, v in os.environ.items() if k != "POSTROOM_REGISTRY"}
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "DOCKER_HOST": f"tcp://127.0.0.1:{closed_port()}"},
        timeout=120,
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"postroom: {sentence}\n")
