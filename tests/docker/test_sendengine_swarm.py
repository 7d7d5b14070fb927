"""``postroom sendengine --swarm``: the engines as a replicated service on a one-node swarm
(made here with ``docker swarm init`` unless this engine is in one already, and left
afterwards), with Docker secrets and a real PostgreSQL database on the host's loopback.

The tests run in file order on one service. The first uses the node's own image (no
registry: enough for one node). Then the image is pushed to a real registry (Debian's
docker-registry on 127.0.0.1:5000, started by scripts/test), the service is made to pull
it from there, and two replicas deliver a campaign into an SMTP sink in this process (the
engines use the host's network). Last, a task that cannot pull its image shows why in
``status``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from app.engine.fleet_samples import fresh_consumers
from app.models.database import Database
from app.services.vault import generate_vault_key
from tests.conftest import PG_ADMIN_URL, _server_database, peer_missing
from tests.docker.conftest import docker_cli, postroom
from tests.docker.test_sendengine_fleet import Sink, item_counts, sent_per_engine
from tests.engine.test_engine import make_campaign, make_route

REGISTRY = "127.0.0.1:5000"
DELIVERY_WAIT_S = 240

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
    "node",
    "error",
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
        # Left only when no service is on it: another run sharing this engine may have
        # come to the swarm since (its fixture found it active and leaves it to this one).
        if made_here and not docker_client.services.list():
            docker_cli("swarm", "leave", "--force")


class Swarm:
    def __init__(self, env: dict[str, str], name: str, image: str, db: Database) -> None:
        self.env, self.name, self.image, self.db = env, name, image, db

    def run(self, *args: str, expect: int = 0, env: dict[str, str] | None = None) -> Any:
        started = time.monotonic()
        done = postroom("sendengine", *args, timeout=300, env={**self.env, **(env or {})})
        print(f"sendengine {' '.join(args[:3])}: {time.monotonic() - started:.1f} s")
        assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "--swarm", "--json", env=env).stdout)

    @property
    def pushed_tag(self) -> str:
        return self.image.split(":", 1)[1]

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
            try:
                SwarmFleet(docker_client, FleetSettings(fleet=name)).remove()
            finally:  # (a swarm gone under the tests took the service with it)
                docker_client.images.remove(tag)
                forget_pushed(docker_client, tag)
                db.dispose()


def forget_pushed(docker_client: Any, tag: str) -> None:
    """This run's tag, out of the registry and off this engine (if it was pushed)."""
    from docker.errors import NotFound

    reference = f"{REGISTRY}/{tag}"
    try:
        docker_client.images.remove(reference)
    except NotFound:
        return
    repository, name = tag.split(":", 1)
    manifest = f"http://{REGISTRY}/v2/{repository}/manifests"
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    try:
        head = urllib.request.Request(
            f"{manifest}/{name}", method="HEAD", headers={"Accept": accept}
        )
        with urllib.request.urlopen(head, timeout=10) as answer:
            digest = answer.headers["Docker-Content-Digest"]
        delete = urllib.request.Request(f"{manifest}/{digest}", method="DELETE")
        urllib.request.urlopen(delete, timeout=10).close()
    except (OSError, KeyError):
        pass  # a tag left in a test registry harms nothing


@pytest.fixture(scope="module")
def registry() -> str:
    """The local registry, answering without a login; skipped on a developer machine
    without one, a failure under scripts/test (POSTROOM_REQUIRE_REAL_PEERS=1)."""
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5) as answer:
            assert answer.status == 200
    except (OSError, AssertionError) as exc:
        peer_missing(
            f"no registry answers at http://{REGISTRY}/v2/ ({exc}); scripts/test starts "
            "Debian's docker-registry there"
        )
    return REGISTRY


def registry_tags(repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{REGISTRY}/v2/{repository}/tags/list", timeout=10) as a:
        return list(json.load(a)["tags"] or [])


def node_hostname(docker_client: Any) -> str:
    (node,) = docker_client.nodes.list()
    return str(node.attrs["Description"]["Hostname"])


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


def test_push_puts_the_image_in_the_registry(service: Swarm, registry: str) -> None:
    pushed = json.loads(
        service.run("push", "--registry", registry, "--image", service.image, "--json").stdout
    )
    assert pushed["reference"] == f"{registry}/{service.image}"
    assert pushed["digest"].startswith("sha256:")
    assert service.pushed_tag in registry_tags("postroom/sendengine")
    # Pushed again, the layers are there already: the same digest.
    again = json.loads(
        service.run(
            "push", "--image", service.image, "--json", env={"POSTROOM_REGISTRY": registry}
        ).stdout
    )
    assert again["digest"] == pushed["digest"]


def test_an_image_the_registry_lacks_is_one_sentence(service: Swarm, registry: str) -> None:
    absent = f"postroom/sendengine:absent-{service.name}"
    done = service.run("start", "--swarm", "--registry", registry, "--image", absent, expect=1)
    assert done.stderr == (
        f"postroom: the image {registry}/{absent} is not in the registry; push it with "
        f"`postroom sendengine push --registry {registry}`.\n"
    )
    bad = service.run("status", "--swarm", "--registry", "http://127.0.0.1:5000", expect=1)
    assert "is not HOST[:PORT]" in bad.stderr and bad.stderr.count("\n") == 1


def test_two_replicas_from_the_registry_deliver_each_recipient_once(
    service: Swarm, registry: str, docker_client: Any
) -> None:
    recipients = [f"swarm{n}@example.org" for n in range(800)]
    with Sink() as sink:
        make_route(service.db, sink.port, max_connections=20)
        started = time.monotonic()
        result = service.json(
            "start", "--scale", "2", "--image", service.image, "--registry", registry
        )
        assert len(result["started"]) == 2
        (found,) = docker_client.services.list(
            filters={"label": f"app.postroom.fleet={service.name}"}
        )
        image = found.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        pushed_digest = docker_client.images.get_registry_data(f"{registry}/{service.image}").id
        assert image == f"{registry}/{service.image}@{pushed_digest}"
        wait_for(
            "two engines from the registry beat", lambda: fresh_consumers(service.db) == 2, 120
        )
        make_campaign(service.db, recipients, name="Swarm")
        wait_for(
            "800 recipients delivered by the service",
            lambda: item_counts(service.db)["sent"] == len(recipients),
            DELIVERY_WAIT_S,
        )
        print(f"start 2 replicas and deliver 800: {time.monotonic() - started:.1f} s")
        with sink.lock:
            received = Counter(sink.recipients)
    assert set(received) == set(recipients) and max(received.values()) == 1

    # Both replicas took part: each one's heartbeat counts what it sent.
    engines = {f"{service.name}-sendengine-{n}" for n in (1, 2)}

    def both_counted() -> dict[str, int] | None:
        sent = {e: n for e, n in sent_per_engine(service.db).items() if e in engines}
        return sent if sum(sent.values()) == len(recipients) else None

    wait_for("the heartbeats count every message", both_counted, 30)
    sent = both_counted() or {}
    assert set(sent) == engines and all(sent.values()), sent

    # status: both tasks, on this node, with their node's name (the registry in the
    # environment this time, as an administrator would set it once).
    status = service.json("status", env={"POSTROOM_REGISTRY": registry})
    assert status["mode"] == "swarm"
    hostname = node_hostname(docker_client)
    assert [(e["instance"], e["node"], e["state"], e["error"]) for e in status["engines"]] == [
        (1, hostname, "running", None),
        (2, hostname, "running", None),
    ]
    assert all(set(e) == STATUS_KEYS for e in status["engines"])
    assert all(e["memory_bytes"] for e in status["engines"])
    human = service.run("status", "--swarm", "--registry", registry)
    assert human.stdout.splitlines()[0].startswith("NODE ") and hostname in human.stdout
    assert "Made with other settings" not in human.stderr  # the pinned digest is today's

    stopped = service.json("stop")
    assert len(stopped["stopped"]) == 2


def test_a_task_that_cannot_pull_its_image_shows_why_in_status(
    service: Swarm, registry: str, docker_client: Any
) -> None:
    """The service is pointed (through the API, as an administrator's mistake or a wiped
    registry would leave it) at an image the registry does not have."""
    (found,) = docker_client.services.list(filters={"label": f"app.postroom.fleet={service.name}"})
    spec = found.attrs["Spec"]
    template = spec["TaskTemplate"]
    missing = f"{registry}/postroom/absent:{service.name}"
    template["ContainerSpec"]["Image"] = missing
    docker_client.api.update_service(
        found.id,
        found.version,
        task_template=template,
        name=spec["Name"],
        labels=spec.get("Labels"),
        mode={"Replicated": {"Replicas": 1}},
        fetch_current_spec=False,
    )

    def failing() -> dict[str, Any] | None:
        engines = service.json("status")["engines"]
        return engines[0] if engines and engines[0]["error"] else None

    engine = wait_for_value("the task's pull error in status", failing, 60)
    assert engine["instance"] == 1 and engine["state"] != "running"
    assert engine["node"] == node_hostname(docker_client)
    print(f"status of a task that cannot pull: {engine['state']}: {engine['error']}")
    assert "absent" in engine["error"] or "No such image" in engine["error"]
    human = service.run("status", "--swarm").stdout
    assert f"Engine 1 ({engine['state']} on {engine['node']}): " in human


def wait_for_value(what: str, check: Any, timeout: float) -> Any:
    started = time.monotonic()
    while True:
        found = check()
        if found:
            print(f"{what}: {time.monotonic() - started:.1f} s")
            return found
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(1)
