"""The Swarm fleet's rules that need no Docker engine: which task of a slot ``status`` shows
and which error, how an image is named in a registry, how ``status`` reads per node, and the
refusal of a swarm of several nodes without a registry.

The task lists are the dictionaries the API returns (only the fields read are given). A
second Swarm node cannot run on this machine, so the refusal gets a stand-in for the
client's node list: two nodes as the API describes them; everything else it is asked for
is not needed before the refusal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.cli.sendengine import human_status
from app.engine.fleet import FleetError, FleetSettings
from app.engine.fleet_swarm import SwarmFleet
from app.engine.fleet_swarm_tasks import current_tasks, first_error
from app.engine.registry import RegistryError, check_registry, registry_reference


def task(
    slot: int, index: int, desired: str, state: str, error: str | None = None, **extra: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Timestamp": "2026-12-01T10:00:00.123456789Z"}
    if error:
        status["Err"] = error
    return {
        "ID": f"t{slot}{index}",
        "Slot": slot,
        "Version": {"Index": index},
        "DesiredState": desired,
        "NodeID": extra.get("node", "n1"),
        "Status": status,
    }


def test_each_slot_shows_its_current_task_and_the_newest_error_when_not_running() -> None:
    tasks = [
        task(1, 10, "running", "running"),
        task(1, 5, "shutdown", "shutdown"),  # replaced by an update
        task(2, 20, "shutdown", "rejected", "No such image: r/old:1"),
        task(2, 30, "shutdown", "rejected", "No such image: r/x:1"),
        task(2, 31, "running", "pending"),  # the retry, waiting: no error of its own
        task(3, 40, "shutdown", "shutdown"),  # scaled down: not shown
        task(4, 50, "shutdown", "rejected", "No such image: r/x:1"),
        task(4, 51, "ready", "rejected", "No such image: r/x:1 (again)"),  # waits to retry
    ]
    shown = current_tasks(tasks)
    assert [(t.slot, t.task_id, t.state, t.error) for t in shown] == [
        (1, "t110", "running", None),
        (2, "t231", "pending", "No such image: r/x:1"),
        (4, "t451", "rejected", "No such image: r/x:1 (again)"),
    ]
    assert first_error(shown) == "No such image: r/x:1"
    assert shown[0].name("postroom-sendengine") == "postroom-sendengine.1.t110"
    assert shown[1].uptime_s(datetime.now(UTC)) is None


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("postroom/sendengine:1.2", "127.0.0.1:5000/postroom/sendengine:1.2"),
        ("postroom/sendengine", "127.0.0.1:5000/postroom/sendengine:latest"),
        ("other.example:443/postroom/sendengine:7", "127.0.0.1:5000/postroom/sendengine:7"),
        ("postroom/sendengine:1@sha256:" + "a" * 64, "127.0.0.1:5000/postroom/sendengine:1"),
    ],
)
def test_an_image_is_named_after_the_registry(image: str, expected: str) -> None:
    assert registry_reference(image, "127.0.0.1:5000") == expected


@pytest.mark.parametrize("bad", ["http://127.0.0.1:5000", "host:5000/path", "a b", ""])
def test_a_registry_that_is_not_host_port_is_one_sentence(bad: str) -> None:
    with pytest.raises(RegistryError, match=r"is not HOST\[:PORT\]; give it as Docker writes"):
        check_registry(bad)
    assert check_registry("registry.example.org") == "registry.example.org"


def test_a_swarm_of_two_nodes_without_a_registry_is_refused() -> None:
    def node(availability: str) -> Any:
        return SimpleNamespace(attrs={"Spec": {"Availability": availability}})

    nodes = [node("active"), node("active"), node("drain")]
    client = SimpleNamespace(nodes=SimpleNamespace(list=lambda: nodes))
    fleet = SwarmFleet(client, FleetSettings())
    with pytest.raises(FleetError) as refused:
        fleet.service_image()
    assert str(refused.value).startswith("this swarm has 2 nodes and the image postroom/")
    assert "--registry (or POSTROOM_REGISTRY)" in str(refused.value)


def engine(instance: int, node: str | None, state: str, error: str | None) -> dict[str, Any]:
    return {
        "name": f"postroom-sendengine.{instance}.t{instance}",
        "instance": instance,
        "state": state,
        "health": "unknown",
        "uptime_s": None,
        "cpu_percent": None,
        "memory_bytes": None,
        "campaigns": [],
        "programs": [],
        "node": node,
        "error": error,
    }


def test_status_text_groups_engines_by_node_and_says_why_one_does_not_run() -> None:
    text = human_status(
        {
            "mode": "swarm",
            "engines": [
                engine(1, "alpha", "running", None),
                engine(3, "alpha", "running", None),
                engine(2, "beta", "rejected", "No such image: r/x:1"),
            ],
        }
    )
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["NODE", "NAME"]
    assert lines[1].startswith("alpha ") and lines[2].startswith(" ")  # alpha's second
    assert lines[3].startswith("beta ")
    assert lines[4] == "Engine 2 (rejected on beta): No such image: r/x:1"
    containers = human_status({"mode": "containers", "engines": [engine(1, None, "running", None)]})
    assert containers.splitlines()[0].startswith("NAME ")


@given(st.text(max_size=80))
@example("127.0.0.1:99999")
@example("registry:0")
def test_any_text_is_a_registry_or_one_sentence(value: str) -> None:
    """Property: whatever is typed, the answer is a usable HOST[:PORT] or one sentence."""
    try:
        checked = check_registry(value)
    except RegistryError as exc:
        assert "\n" not in str(exc) and str(exc).endswith(".")
        return
    host, _, port = checked.partition(":")
    assert host and all(c.isalnum() or c in ".-" for c in host)
    assert not port or (port.isdigit() and 1 <= int(port) <= 65535)
    assert registry_reference("postroom/sendengine:1", checked).startswith(f"{checked}/")


@given(
    st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
    st.integers(min_value=1, max_value=65535),
)
def test_every_host_and_port_is_taken(host: str, port: int) -> None:
    assert check_registry(f" {host}:{port}/ ") == f"{host}:{port}"
