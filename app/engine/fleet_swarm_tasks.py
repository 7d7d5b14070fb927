"""A Swarm service's tasks as ``status`` shows them: one per slot, on its node, with why a
task is not running.

Swarm keeps a few past tasks per slot. The one to show is the slot's current task: the
newest whose desired state is still on the way to ``running`` (a rejected task waiting for
its restart delay wants ``ready``; tasks being replaced or removed want ``shutdown``). When
it is not running (pending, preparing, rejected) and has no error of its own, the newest
error of that slot's past tasks (a rejected pull, a failed start) says why, which is what an
administrator needs when a node cannot get the image.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.engine import fleet_samples


@dataclass(frozen=True)
class SlotTask:
    """The current task of one slot."""

    task_id: str
    slot: int
    node_id: str | None
    state: str
    error: str | None
    container_id: str | None
    since: str  # the time of the task's last state change

    def name(self, service_name: str) -> str:
        """The name Docker gives the task's container: SERVICE.SLOT.TASK."""
        return f"{service_name}.{self.slot}.{self.task_id}"

    def uptime_s(self, now: datetime) -> float | None:
        if self.state != "running":
            return None
        started = fleet_samples.parse_docker_time(self.since)
        return round((now - started).total_seconds(), 1) if started else None


# Desired states of a task Swarm still means to run (the others end it).
LIVE_DESIRED_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
)


def _index(task: dict[str, Any]) -> int:
    return int((task.get("Version") or {}).get("Index") or 0)


def current_tasks(tasks: list[dict[str, Any]]) -> list[SlotTask]:
    """Each slot's current task, by slot number (a slot without one is gone: scaled down)."""
    by_slot: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        if isinstance(task.get("Slot"), int):
            by_slot[task["Slot"]].append(task)
    shown = []
    for slot, group in sorted(by_slot.items()):
        group.sort(key=_index, reverse=True)  # newest first
        current = next((t for t in group if t.get("DesiredState") in LIVE_DESIRED_STATES), None)
        if current is None:
            continue
        status = current.get("Status") or {}
        state = str(status.get("State") or "unknown")
        error = status.get("Err") or None
        if state != "running" and error is None:
            error = next(
                (t["Status"]["Err"] for t in group if (t.get("Status") or {}).get("Err")), None
            )
        container = (status.get("ContainerStatus") or {}).get("ContainerID") or None
        shown.append(
            SlotTask(
                task_id=str(current.get("ID", "")),
                slot=slot,
                node_id=current.get("NodeID") or None,
                state=state,
                error=str(error) if error else None,
                container_id=container,
                since=str(status.get("Timestamp") or ""),
            )
        )
    return shown


def first_error(tasks: list[SlotTask]) -> str | None:
    """One task's error, for a sentence about a service that does not come up."""
    return next((t.error for t in tasks if t.error and t.state != "running"), None)
