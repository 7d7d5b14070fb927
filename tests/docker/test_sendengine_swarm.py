"""``postroom sendengine --swarm``: the engines as a replicated service on a one-node swarm
(made here with ``docker swarm init`` unless this engine is in one already, and left
afterwards), with Docker secrets and a real PostgreSQL database on the host's loopback.

The image reaches the node because it is the node's own (no registry on this machine).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from app.engine.fleet_samples import fresh_consumers
from app.models.database import Database
from app.services.vault import generate_vault_key
from tests.conftest import PG_ADMIN_URL, _server_database
from tests.docker.conftest import docker_cli, postroom

STATUS_KEYS = {
    "name",
    "instance",
    "state",
    "health",
    "uptime_s",
    "cpu_percent",
    "memory_bytes",
    "campaigns",
    "programs",
}


@pytest.fixture(scope="module")
def swarm(docker_client: Any) -> Iterator[None]:
    state = (docker_client.info().get("Swarm") or {}).get("LocalNodeState")
    made_here = state != "active"
    if made_here:
        done = docker_cli("swarm", "init", "--advertise-addr", "127.0.0.1")
        assert done.returncode == 0, done.stderr
    try:
        yield
    finally:
        if made_here:
            docker_cli("swarm", "leave", "--force")


class Swarm:
    def __init__(self, env: dict[str, str], name: str, image: str, db: Database) -> None:
        self.env, self.name, self.image, self.db = env, name, image, db

    def json(self, *args: str) -> Any:
        started = time.monotonic()
        done = postroom("--json", "sendengine", *args, "--swarm", timeout=300, env=self.env)
        print(f"sendengine {' '.join(args[:3])} --swarm: {time.monotonic() - started:.1f} s")
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)

    def containers(self, docker_client: Any) -> list[Any]:
        labels = ["app.postroom.role=sendengine", f"app.postroom.fleet={self.name}"]
        return [
            c
            for c in docker_client.containers.list(filters={"label": labels})
            if c.status == "running"
        ]


@pytest.fixture(scope="module")
def service(swarm: None, engine_image: dict[str, Any], docker_client: Any) -> Iterator[Swarm]:
    from app.engine.fleet import FleetSettings
    from app.engine.fleet_swarm import SwarmFleet

    name = f"s{uuid.uuid4().hex[:8]}"
    # A tag of this run's own: services name images by tag, and others may move :latest.
    tag = f"postroom/sendengine:test-{name}"
    docker_client.images.get(engine_image["image_id"]).tag(tag)
    for database_url in _server_database(PG_ADMIN_URL, "postgresql"):
        url = (
            make_url(database_url)
            .set(password=f"pw-{uuid.uuid4().hex}")
            .render_as_string(hide_password=False)
        )
        env = {
            **os.environ,
            "POSTROOM_DATABASE_URL": url,
            "POSTROOM_VAULT_KEY": generate_vault_key(),
            "POSTROOM_SENDENGINE_FLEET": name,
        }
        db = Database(url)
        try:
            yield Swarm(env, name, tag, db)
        finally:
            SwarmFleet(docker_client, FleetSettings(fleet=name)).remove()
            docker_client.images.remove(tag)
            db.dispose()


def wait_for(what: str, check: Any, timeout: float) -> None:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(1)
    print(f"{what}: {time.monotonic() - started:.1f} s")


def test_a_service_starts_scales_shows_and_stops_with_docker_secrets(
    service: Swarm, docker_client: Any
) -> None:
    started = service.json("start", "--scale", "2", "--image", service.image)
    assert len(started["started"]) == 2
    wait_for("two engines beat", lambda: fresh_consumers(service.db) == 2, 120)

    # The secrets: Docker secrets mounted for the engine's user only, nowhere in inspect.
    services = docker_client.services.list(filters={"label": f"app.postroom.fleet={service.name}"})
    assert len(services) == 1
    refs = services[0].attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert sorted(r["File"]["Name"] for r in refs) == [
        "postroom_database_url",
        "postroom_vault_key",
    ]
    assert {(r["File"]["UID"], r["File"]["Mode"]) for r in refs} == {("10001", 0o400)}
    ids = [c.id for c in service.containers(docker_client)]
    inspected = docker_cli("inspect", services[0].id, *ids).stdout
    password = make_url(service.env["POSTROOM_DATABASE_URL"]).password or ""
    assert password and password not in inspected
    assert service.env["POSTROOM_VAULT_KEY"] not in inspected
    engine_ids = {
        c.exec_run(["printenv", "POSTROOM_ENGINE_ID"]).output.decode().strip()
        for c in service.containers(docker_client)
    }
    assert engine_ids == {f"{service.name}-sendengine-1", f"{service.name}-sendengine-2"}

    scaled = service.json("scale", "3", "--image", service.image)
    assert len(scaled["added"]) == 1 and scaled["removed"] == []
    # the two running engines are left alone
    assert set(ids) < {c.id for c in service.containers(docker_client)}
    assert len(service.containers(docker_client)) == 3
    status = service.json("status")
    assert status["mode"] == "swarm"
    assert sorted(e["instance"] for e in status["engines"]) == [1, 2, 3]
    assert all(set(e) == STATUS_KEYS for e in status["engines"])

    stopped = service.json("stop")
    assert len(stopped["stopped"]) == 3
    assert service.containers(docker_client) == []
