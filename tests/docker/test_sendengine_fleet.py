"""Send engines as containers, driven through ``postroom sendengine ...`` against the real
dockerd, with a real PostgreSQL database on the host's loopback (host networking) and a real
SMTP sink (aiosmtpd) in this process.

The tests share one fleet (a label of its own, so a real fleet on the machine is never
touched) and run in file order: start 3, look inside, scale to 1, deliver with 2, stop.
Every container is removed at the end, whatever happened. Each step's time is printed.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.engine.fleet_samples import fresh_consumers
from app.models import Campaign, EngineHeartbeat, QueueItem
from app.models.base import QueueStatus
from app.models.database import Database
from app.services.vault import generate_vault_key
from tests.conftest import PG_ADMIN_URL, _server_database
from tests.docker.conftest import docker_cli, postroom
from tests.engine.test_engine import make_campaign, make_route

HEALTHY_WAIT_S = 150
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
}
STATS_ENGINE_KEYS = {"name", "cpu_percent", "memory_bytes", "net_rx_bytes", "net_tx_bytes"}
QUEUE_KEYS = {"campaign", "queued", "in_flight", "deferred", "held"}


# ---------------------------------------------------------------------- the shared fleet


class Fleet:
    """The command line with this module's database, vault key and fleet label."""

    def __init__(self, env: dict[str, str], name: str, image: str, db: Database, url: str):
        self.env, self.name, self.image, self.db, self.url = env, name, image, db, url
        self.password = make_url(url).password or ""
        self.vault_key = env["POSTROOM_VAULT_KEY"]

    def run(self, *args: str, timeout: float = 240, expect: int = 0) -> Any:
        started = time.monotonic()
        done = postroom(*args, timeout=timeout, env=self.env)
        print(f"postroom {' '.join(args[:4])}: {time.monotonic() - started:.1f} s")
        assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run("--json", *args).stdout)

    def engine_id(self, instance: int) -> str:
        return f"{self.name}-sendengine-{instance}"


def containers(docker_client: Any, fleet: Fleet, every: bool = True) -> list[Any]:
    found = docker_client.containers.list(
        all=every,
        filters={"label": ["app.postroom.role=sendengine", f"app.postroom.fleet={fleet.name}"]},
    )
    return sorted(found, key=lambda c: int(c.labels["app.postroom.instance"]))


@pytest.fixture(scope="module")
def fleet(
    engine_image: dict[str, Any], docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    name = f"t{uuid.uuid4().hex[:8]}"
    home = tmp_path_factory.mktemp("fleet-home")
    for database_url in _server_database(PG_ADMIN_URL, "postgresql"):
        # The server trusts local connections, so any password works: one to look for.
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
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
        }
        db = Database(url)
        try:
            yield Fleet(env, name, engine_image["image_id"], db, url)
        finally:
            for container in containers(docker_client, Fleet(env, name, "", db, url)):
                container.remove(force=True)
            db.dispose()


def wait_for(what: str, check: Any, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        result = check()
        if result:
            print(f"{what}: {time.monotonic() - started:.1f} s")
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def health(container: Any) -> str:
    container.reload()
    return str(((container.attrs["State"].get("Health") or {}).get("Status")) or "none")


def item_counts(db: Database, campaign: str | None = None) -> Counter[str]:
    query = select(QueueItem.status, func.count()).group_by(QueueItem.status)
    if campaign is not None:
        query = query.join(Campaign, Campaign.id == QueueItem.campaign_id).where(
            Campaign.name == campaign
        )
    with db.session() as session:
        rows = session.execute(query).all()
    return Counter({QueueStatus(status).value: count for status, count in rows})


def sent_per_engine(db: Database) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(
            select(EngineHeartbeat.engine, EngineHeartbeat.sent).where(
                EngineHeartbeat.campaign_id.is_(None)
            )
        ).all()
    return {engine: int(sent) for engine, sent in rows}


# ---------------------------------------------------------------------- an SMTP sink


class Sink:
    """aiosmtpd on 127.0.0.1 in a thread of this process: the engines' delivery server."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.recipients: Counter[str] = Counter()
        self.lock = threading.Lock()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        with self.lock:
            self.recipients.update(envelope.rcpt_tos)
        return "250 OK"

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def sink(fleet: Fleet) -> Iterator[Sink]:
    """One sink and one route for the module: engines keep their SMTP connections, so the
    server they were given stays the same (its ``delay`` changes instead)."""
    with Sink() as running:
        make_route(fleet.db, running.port, max_connections=20)
        yield running


# ---------------------------------------------------------------------- the tests


def test_start_scale_3_gives_three_healthy_engines(fleet: Fleet, docker_client: Any) -> None:
    result = fleet.json("sendengine", "start", "--scale", "3", "--image", fleet.image)
    assert result["engines"] == 3 and len(result["started"]) == 3
    found = containers(docker_client, fleet)
    assert [c.labels["app.postroom.instance"] for c in found] == ["1", "2", "3"]
    for number, container in enumerate(found, 1):
        assert container.name == f"postroom-{fleet.engine_id(number)}"
        config = container.attrs["Config"]
        assert f"POSTROOM_ENGINE_ID={fleet.engine_id(number)}" in config["Env"]
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert len(container.labels["app.postroom.config"]) == 16
    wait_for(
        "three engines healthy",
        lambda: all(health(c) == "healthy" for c in found),
        HEALTHY_WAIT_S,
        every=2,
    )


def test_status_and_stats_say_what_runs(fleet: Fleet) -> None:
    started = time.monotonic()
    status = fleet.json("sendengine", "status")
    print(f"status of 3 engines through the CLI: {time.monotonic() - started:.1f} s")
    assert set(status) == {"mode", "engines"} and status["mode"] == "containers"
    assert [e["instance"] for e in status["engines"]] == [1, 2, 3]
    for engine in status["engines"]:
        assert set(engine) == STATUS_KEYS
        assert engine["state"] == "running" and engine["health"] == "healthy"
        assert engine["uptime_s"] > 0 and engine["memory_bytes"] > 0
        assert engine["cpu_percent"] >= 0
        assert {"name": "engine", "state": "RUNNING"} in engine["programs"]
    stats = fleet.json("sendengine", "stats")
    assert set(stats) == {"engines", "queue", "consumers"}
    assert [set(e) for e in stats["engines"]] == [STATS_ENGINE_KEYS] * 3
    assert stats["consumers"] == 3
    human = fleet.run("sendengine", "status").stdout
    assert f"postroom-{fleet.engine_id(2)}" in human and "engine RUNNING" in human
    # The memory status reads in each engine's cgroup agrees with docker stats (read a
    # moment apart, while health checks come and go: a loose bound, not a measurement).
    docker_stats = docker_cli(
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        *[e["name"] for e in status["engines"]],
    ).stdout.splitlines()
    shown = {line.split()[0]: parse_size(line.split()[1]) for line in docker_stats}
    for engine in status["engines"]:
        ratio = engine["memory_bytes"] / shown[engine["name"]]
        assert 0.7 < ratio < 1.3, (engine["name"], engine["memory_bytes"], shown)


def parse_size(text: str) -> float:
    """docker stats' 142.9MiB (binary units, as it prints them) in bytes."""
    units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    number = text.rstrip("BKMGi")
    return float(number) * units[text[len(number) :]]


def test_the_secrets_are_nowhere_in_docker_inspect(fleet: Fleet, docker_client: Any) -> None:
    found = containers(docker_client, fleet)
    inspected = docker_cli("inspect", *[c.id for c in found])
    assert inspected.returncode == 0, inspected.stderr
    assert fleet.password and fleet.password not in inspected.stdout
    assert fleet.vault_key not in inspected.stdout
    for container in found:
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        for target in ("/run/secrets/postroom_database_url", "/run/secrets/postroom_vault_key"):
            assert mounts[target]["RW"] is False
            info = Path(mounts[target]["Source"]).stat()
            assert stat.S_IMODE(info.st_mode) == 0o400 and info.st_uid == 10001
            folder = Path(mounts[target]["Source"]).parent.stat()
            assert stat.S_IMODE(folder.st_mode) == 0o700
    # What the engines read (they beat: healthy above) holds what inspect must not show.
    url_file = Path(mounts["/run/secrets/postroom_database_url"]["Source"])
    assert fleet.password in url_file.read_text()


def test_logs_supervisor_and_exec(fleet: Fleet, docker_client: Any) -> None:
    logs = fleet.run("sendengine", "logs", "--lines", "50", "2").stdout
    assert f"engine={fleet.engine_id(2)}" in logs and "send engine started" in logs
    every = fleet.run("sendengine", "logs", "--lines", "50").stdout
    for number in (1, 2, 3):
        assert f"postroom-{fleet.engine_id(number)} | " in every
    supervisor = fleet.json("sendengine", "supervisor", "status")
    assert len(supervisor) == 3
    assert all(r["output"].split()[:2] == ["engine", "RUNNING"] for r in supervisor)
    uid = fleet.json("sendengine", "exec", "3", "--", "id", "-u")
    assert [(r["instance"], r["output"].strip()) for r in uid] == [(3, "10001")]
    engine_ids = fleet.json("sendengine:exec", "--", "printenv", "POSTROOM_ENGINE_ID")
    assert [r["output"].strip() for r in engine_ids] == [fleet.engine_id(n) for n in (1, 2, 3)]
    missing = fleet.run("sendengine", "exec", "1", expect=1)
    assert missing.stderr.count("\n") == 1 and "after `--`" in missing.stderr


def test_a_followed_log_stream_is_closed_from_another_thread(
    fleet: Fleet, docker_client: Any
) -> None:
    from app.engine.fleet import FleetSettings
    from app.engine.fleet_containers import ContainerFleet

    engines = ContainerFleet(docker_client, FleetSettings(fleet=fleet.name))
    stream = engines.logs(follow=True, lines=1)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(line.container for line in stream))
    reader.start()
    wait_for("a line from each engine", lambda: len(set(seen)) == 3, 30, every=0.1)
    assert reader.is_alive()  # following: it would wait for more
    stream.close()
    reader.join(timeout=5)
    assert not reader.is_alive()


def test_scale_1_removes_2_and_3_and_leaves_1_untouched(fleet: Fleet, docker_client: Any) -> None:
    first = containers(docker_client, fleet)[0]
    before = (first.id, first.attrs["State"]["StartedAt"])
    result = fleet.json("sendengine", "scale", "1", "--image", fleet.image)
    assert result["removed"] == [f"postroom-{fleet.engine_id(n)}" for n in (3, 2)]
    assert result["added"] == []
    left = containers(docker_client, fleet)
    assert len(left) == 1
    left[0].reload()
    assert (left[0].id, left[0].attrs["State"]["StartedAt"]) == before
    assert left[0].attrs["State"]["Running"] is True


def test_two_engines_deliver_2000_recipients_once_each(
    fleet: Fleet, docker_client: Any, sink: Sink
) -> None:
    recipients = [f"r{n}@example.org" for n in range(2000)]
    started = time.monotonic()
    result = fleet.json("sendengine", "scale", "2", "--image", fleet.image)
    assert result["added"] == [f"postroom-{fleet.engine_id(2)}"]
    # Both engines beat before the campaign starts, so both can take a share of it.
    wait_for("the second engine beats", lambda: fresh_consumers(fleet.db) == 2, 90)
    make_campaign(fleet.db, recipients, name="Thousands")
    wait_for(
        "2,000 recipients delivered",
        lambda: item_counts(fleet.db)["sent"] == len(recipients),
        DELIVERY_WAIT_S,
    )
    print(f"scale to 2 and deliver 2,000: {time.monotonic() - started:.1f} s")
    with sink.lock:
        received = Counter(sink.recipients)
    assert set(received) == set(recipients)
    assert max(received.values()) == 1
    # Each engine's own heartbeat row counts what it sent; the next beats catch up.
    sent_by = wait_for(
        "the heartbeats count every message",
        lambda: (lambda by: by if sum(by.values()) == len(recipients) else None)(
            sent_per_engine(fleet.db)
        ),
        30,
    )
    # (engine 3, removed before, keeps its row with nothing sent)
    assert {engine for engine, sent in sent_by.items() if sent} == {
        fleet.engine_id(1),
        fleet.engine_id(2),
    }, sent_by


def test_docker_kill_of_an_engine_mid_campaign_loses_nothing(
    fleet: Fleet, docker_client: Any, sink: Sink
) -> None:
    """SIGKILL to a container (supervisord and the engine with it); started again, the
    engine takes back its leases at once and the campaign finishes with every recipient."""
    recipients = [f"kill{n}@example.org" for n in range(1000)]
    sink.delay = 0.01  # long enough for the kill to land mid-campaign
    try:
        make_campaign(fleet.db, recipients, name="Killed")
        wait_for(
            "a first share delivered",
            lambda: item_counts(fleet.db, "Killed")["sent"] >= 100,
            DELIVERY_WAIT_S,
            every=0.2,
        )
        (victim,) = [
            c
            for c in containers(docker_client, fleet)
            if c.labels.get("app.postroom.instance") == "2"
        ]
        started = time.monotonic()
        victim.kill()
        victim.reload()
        assert victim.status == "exited"
        victim.start()
        wait_for(
            "every recipient of the killed campaign sent",
            lambda: item_counts(fleet.db, "Killed")["sent"] == len(recipients),
            DELIVERY_WAIT_S,
        )
        print(f"docker kill, start, finish: {time.monotonic() - started:.1f} s")
    finally:
        sink.delay = 0.0
    with sink.lock:
        received = {r: sink.recipients[r] for r in recipients}
    assert min(received.values()) == 1  # none lost
    # At most what the killed engine had in flight or delivered but not yet recorded comes
    # again: twice its concurrency (10) with the engine's backpressure.
    assert sum(received.values()) - len(recipients) <= 20


def test_workers_add_a_program_for_one_campaign_and_remove_it(
    fleet: Fleet, docker_client: Any, sink: Sink
) -> None:
    sink.delay = 1.0  # the campaign lasts long enough to be seen running
    campaign_id = make_campaign(
        fleet.db, [f"extra{n}@example.org" for n in range(600)], name="Extra"
    )
    program = f"campaign-{campaign_id}"
    added = fleet.json("sendengine", "workers", "Extra", "3", "1")
    assert added == {"campaign": "Extra", "workers": 3, "instance": 1}
    states = {
        r["instance"]: fleet_samples_parse(r["output"])
        for r in fleet.json("sendengine", "supervisor", "status")
    }
    assert program in states[1] and program not in states[2]
    extra_engine = f"{fleet.engine_id(1)}-c{campaign_id}"

    def extra_workers_seen() -> bool:
        engines = fleet.json("sendengine", "status")["engines"]
        first = {c["name"]: c["workers"] for c in engines[0]["campaigns"]}
        return (
            states_running(fleet, 1, program)
            and first.get("Extra", 0) > 0
            and (extra_engine in sent_per_engine(fleet.db))
        )

    wait_for("the extra workers beat for the campaign", extra_workers_seen, 60, every=2)
    removed = fleet.run("sendengine", "workers", "-c", "Extra", "-n", "0", "-i", "1").stdout
    assert removed.strip() == "Extra workers for Extra removed from engine 1."
    assert not states_running(fleet, 1, program)
    sink.delay = 0.0
    wait_for("the campaign finishes", lambda: item_counts(fleet.db, "Extra")["sent"] == 600, 120)


def fleet_samples_parse(output: str) -> dict[str, str]:
    from app.engine.fleet_samples import parse_supervisor_status

    return {p["name"]: p["state"] for p in parse_supervisor_status(output)}


def states_running(fleet: Fleet, instance: int, program: str) -> bool:
    results = fleet.json("sendengine", "supervisor", "status", "-i", str(instance))
    return fleet_samples_parse(results[0]["output"]).get(program) == "RUNNING"


def test_stop_lets_in_flight_messages_finish_and_releases_leases(
    fleet: Fleet, docker_client: Any, sink: Sink
) -> None:
    recipients = [f"slow{n}@example.org" for n in range(300)]
    sink.delay = 0.5
    make_campaign(fleet.db, recipients, name="Slow")
    wait_for("messages in flight", lambda: item_counts(fleet.db)["in_flight"] > 0, 60, 0.2)
    result = fleet.json("sendengine", "stop")
    assert len(result["stopped"]) == 2
    counts = item_counts(fleet.db, "Slow")
    with sink.lock:
        received = Counter(a for a in sink.recipients.elements() if a.startswith("slow"))
    assert counts["in_flight"] == 0
    assert max(received.values()) == 1
    assert counts["sent"] == sum(received.values())  # what finished was recorded
    assert counts["queued"] + counts["deferred"] > 0  # and the rest waits for the next engine
    assert all(not c.attrs["State"]["Running"] for c in containers(docker_client, fleet))
    assert all(c.attrs["State"]["ExitCode"] == 0 for c in containers(docker_client, fleet))


def test_restart_with_scale_2_makes_new_engines_that_finish_the_campaign(
    fleet: Fleet, docker_client: Any, sink: Sink
) -> None:
    before = {c.id for c in containers(docker_client, fleet)}
    sink.delay = 0.0
    result = fleet.json("sendengine", "restart", "--scale", "2", "--image", fleet.image)
    assert result["started"] == [f"postroom-{fleet.engine_id(n)}" for n in (1, 2)]
    after = containers(docker_client, fleet)
    assert len(after) == 2 and not before & {c.id for c in after}
    assert all(c.attrs["State"]["Running"] for c in after)
    # What the stop left queued is sent by the new engines, each recipient once.
    wait_for("the rest of the campaign", lambda: item_counts(fleet.db, "Slow")["sent"] == 300, 120)
    with sink.lock:
        slow = Counter(a for a in sink.recipients.elements() if a.startswith("slow"))
    assert len(slow) == 300 and max(slow.values()) == 1


def test_an_unreachable_docker_is_one_sentence(fleet: Fleet) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**fleet.env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}"}
    done = postroom("sendengine", "status", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"postroom: no Docker engine answers at DOCKER_HOST=tcp://127.0.0.1:{port} "
        "(connection refused)"
    )
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_a_missing_image_says_to_build_it(fleet: Fleet) -> None:
    done = fleet.run(
        "sendengine", "start", "--image", f"postroom/absent:{uuid.uuid4().hex[:8]}", expect=1
    )
    assert "build it with `postroom sendengine build`" in done.stderr
    assert done.stderr.count("\n") == 1
