"""The image reaches the database the way an engine will: the URL in a mounted file.

With host networking a container reaches PostgreSQL on the host's loopback; a SQLite file is
bind-mounted. The URL's password is in neither the image nor what `docker inspect` shows.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_database_url
from tests.docker.conftest import docker_cli, postroom

IMAGE_UID = 10001  # the image's postroom user
SECRET_PATH = "/run/secrets/postroom_database_url"
# PostgreSQL trusts loopback logins here, so any password is accepted: this one is only
# there to be looked for where it must not be.
PASSWORD = "pw-" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["postgresql", "sqlite"])
def engine_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """(URL seen from the host, URL seen from the container, what to mount)."""
    if request.param == "postgresql":
        for url in make_database_url("postgresql", tmp_path):
            inside = url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
            yield {"host_url": url, "url": inside, "mount": ""}
        return
    folder = tmp_path / "sqlite"
    folder.mkdir()
    os.chown(folder, IMAGE_UID, IMAGE_UID)
    yield {
        "host_url": f"sqlite:///{folder / 'postroom.sqlite3'}",
        "url": "sqlite:////var/lib/postroom/data/postroom.sqlite3",
        "mount": f"{folder}:/var/lib/postroom/data",
    }


def test_postroom_in_the_image_uses_the_database_named_by_the_secret_file(
    engine_image: dict[str, Any], engine_database: dict[str, str], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the secret file is handed to the image's user with chown, as root")
    secret = tmp_path / "database-url"
    secret.write_text(engine_database["url"] + "\n", encoding="utf-8")
    secret.chmod(0o400)
    os.chown(secret, IMAGE_UID, IMAGE_UID)
    mounts = ["-v", f"{secret}:{SECRET_PATH}:ro"]
    if engine_database["mount"]:
        mounts += ["-v", engine_database["mount"]]
    created = docker_cli(
        "create",
        "--network",
        "host",
        *mounts,
        "-e",
        f"POSTROOM_DATABASE_URL_FILE={SECRET_PATH}",
        "--label",
        "app.postroom.test=database",
        engine_image["image_id"],
        "postroom",
        "groups",
        "add",
        "Engines in containers",
    )
    assert created.returncode == 0, created.stderr
    container = created.stdout.strip()
    try:
        ran = docker_cli("start", "--attach", container, timeout=180)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        inspected = docker_cli("inspect", container).stdout
        assert json.loads(inspected)[0]["State"]["ExitCode"] == 0
    finally:
        docker_cli("rm", "--force", container)
    assert PASSWORD not in inspected
    assert engine_database["url"] not in inspected

    listed = postroom("--database", engine_database["host_url"], "groups", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "Engines in containers" in {row["name"] for row in json.loads(listed.stdout)}
