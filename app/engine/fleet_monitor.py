"""What the console's Send Engines page shows, sampled every 2 s: ``FleetMonitor``.

``sample()`` runs in a worker thread (never the GUI's) and returns one ``FleetSnapshot``:
every engine's state, health and uptime, its CPU %, memory and network counters; the
active campaigns with their engines, workers and item counts; the delivery rates; the
supervisor programs; and the health changes since the sample before.

Numbers people can compare with ``docker stats``: each container is sampled once per tick
with ``one_shot`` (API >= 1.41: the daemon answers at once instead of waiting a second for
a second reading, about ten times cheaper), so the CPU % is worked out from *our* previous
sample of that container; memory is usage less the inactive file cache, as ``docker stats``
computes it (``fleet_samples``). The first sample has no CPU % yet (None).

Everything rate-like (network bytes/s, sent, deferred and failed per second) is a delta
between two snapshots over the monotonic time between them. A bounded ``history`` keeps
the last ten minutes for the charts.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from docker.errors import APIError, NotFound

from app.engine import fleet_samples
from app.engine.fleet import EngineContainer, Fleet, parallel
from app.services.errors import PostroomError

if TYPE_CHECKING:
    from app.models.database import Database

T = TypeVar("T")
SAMPLE_INTERVAL_S = 2.0
HISTORY_S = 600.0  # what the charts can show: the last ten minutes
HISTORY_LENGTH = int(HISTORY_S / SAMPLE_INTERVAL_S)
# `supervisorctl status` runs a process in every container; programs change rarely, so
# they are asked every few samples (and at once when an engine is new or restarted).
PROGRAMS_EVERY = 3
NODE_ID_LABEL = "com.docker.swarm.node.id"
TASK_LABEL = "com.docker.swarm.task.name"
# The states in which an engine is not doing its work: a change into one is news.
BAD_STATES = ("restarting", "exited", "dead", "paused", "removing")


@dataclass(frozen=True)
class EngineSample:
    name: str
    instance: int
    engine_id: str
    state: str
    health: str
    uptime_s: float | None
    node: str | None  # under Swarm: the node the task runs on
    cpu_percent: float | None  # None: the first sample, or not running
    memory_bytes: int | None
    net_rx_bytes: int | None  # None: host networking (no interface of its own to count)
    net_tx_bytes: int | None
    net_rx_rate: float | None  # bytes per second since the previous sample
    net_tx_rate: float | None
    campaigns: tuple[tuple[str, int], ...] = ()  # (campaign, workers)
    programs: tuple[tuple[str, str], ...] = ()  # (program, state)

    @property
    def host_network(self) -> bool:
        return self.state == "running" and self.net_rx_bytes is None


@dataclass(frozen=True)
class CampaignSample:
    id: int
    name: str
    status: str
    counts: dict[str, int]  # per item status: queued, in_flight, deferred, held, sent, failed
    engines: tuple[tuple[str, int], ...]  # (engine id, workers)
    paused_reason: str | None = None

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    @property
    def waiting(self) -> int:
        """Queue depth: items not finished yet."""
        return sum(self.counts.get(s, 0) for s in ("queued", "in_flight", "deferred", "held"))

    @property
    def workers(self) -> int:
        return sum(workers for _engine, workers in self.engines)


@dataclass(frozen=True)
class HealthChange:
    """Something a person should hear about: one line in the audit log, one notice."""

    kind: str  # "engine" or "campaign"
    name: str  # the container's or the campaign's name
    change: str  # appeared, gone, state, unhealthy, recovered, auto-paused
    before: str
    after: str
    sentence: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class FleetSnapshot:
    taken_at: datetime
    monotonic: float
    mode: str
    engines: tuple[EngineSample, ...]
    campaigns: tuple[CampaignSample, ...]
    # messages per second since the previous sample; None in the first
    sent_rate: float | None
    deferred_rate: float | None
    failed_rate: float | None
    changes: tuple[HealthChange, ...] = ()
    seconds: float = 0.0  # how long the sample took

    @property
    def queue_depth(self) -> int:
        return sum(c.waiting for c in self.campaigns)

    def engine(self, instance: int) -> EngineSample | None:
        return next((e for e in self.engines if e.instance == instance), None)


@dataclass
class _Raw:
    """One container's last reading, kept for the next sample's deltas."""

    cpu_stats: dict[str, Any] = field(default_factory=dict)
    rx: int | None = None
    tx: int | None = None


class FleetMonitor:
    """Call ``sample()`` from one thread at a time (the page's timer waits for the last)."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        history: int = HISTORY_LENGTH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fleet = fleet
        self.history: deque[FleetSnapshot] = deque(maxlen=history)
        self._clock = clock
        self._raw: dict[str, _Raw] = {}  # container id -> last reading
        self._programs: dict[str, tuple[tuple[str, str], ...]] = {}  # container id -> programs
        self._totals: dict[int, dict[str, Any]] = {}  # campaign id -> last counts
        self._totals_at = 0.0  # when they were read (monotonic)
        self._count = 0
        self._nodes: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def database(self) -> Database | None:
        return self.fleet.database

    @property
    def last(self) -> FleetSnapshot | None:
        return self.history[-1] if self.history else None

    # ---------------------------------------------------------------- the sample

    def sample(self) -> FleetSnapshot:
        with self._lock:
            started = self._clock()
            snapshot = self._sample(started)
            self.history.append(snapshot)
            return snapshot

    def _sample(self, started: float) -> FleetSnapshot:
        previous = self.last
        containers = self.fleet.containers()
        running = [c for c in containers if c.running]
        ask_programs = self._count % PROGRAMS_EVERY == 0
        self._count += 1
        fresh_programs = [
            c for c in running if ask_programs or c.container.id not in self._programs
        ]
        # Every container's stats and the database's answers at once: the daemon and the
        # database wait on I/O, not on this process.
        jobs: list[Callable[[], Any]] = [functools.partial(self.fleet.one_shot, c) for c in running]
        jobs.append(self._database_reading)
        results = parallel(lambda job: job(), jobs)
        stats = results[:-1]
        totals, heartbeats, read_at = results[-1]
        now = self._clock()  # when the readings were taken (the programs come after)
        # The programs after the stats, not beside them: the probe is a process in the
        # container, and a reading taken while it runs counted its memory as the engine's.
        programs = parallel(self.fleet._programs, fresh_programs)
        for engine, found in zip(fresh_programs, programs, strict=True):
            self._programs[engine.container.id] = tuple((p["name"], p["state"]) for p in found)

        seconds = now - previous.monotonic if previous else 0.0
        stats_of = {c.container.id: s for c, s in zip(running, stats, strict=True)}
        engines = tuple(
            self._engine(c, stats_of.get(c.container.id), heartbeats, seconds) for c in containers
        )
        ids = {c.container.id for c in containers}
        self._raw = {key: raw for key, raw in self._raw.items() if key in ids}
        self._programs = {key: p for key, p in self._programs.items() if key in ids}

        campaigns = self._campaigns(totals, heartbeats)
        # Over the time between the two queue readings themselves: a sample's Docker calls
        # may take a second on a busy host, and the readings happen while they run.
        rates = delivery_rates(self._totals, totals, read_at - self._totals_at if previous else 0.0)
        self._totals = {int(row["id"]): row for row in totals}
        self._totals_at = read_at
        snapshot = FleetSnapshot(
            taken_at=datetime.now(UTC),
            monotonic=now,
            mode=self.fleet.mode,
            engines=engines,
            campaigns=campaigns,
            sent_rate=rates[0],
            deferred_rate=rates[1],
            failed_rate=rates[2],
            seconds=round(self._clock() - started, 3),
        )
        changes = health_changes(previous, snapshot)
        if changes:
            snapshot = FleetSnapshot(**{**_fields(snapshot), "changes": tuple(changes)})
        return snapshot

    def _database_reading(
        self,
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]], float]:
        """The queue's counts, the engines' campaigns, and when the counts were read."""
        database = self.database
        if database is None:
            return [], {}, self._clock()
        totals = fleet_samples.campaign_totals(database)
        read_at = self._clock()
        return totals, fleet_samples.engine_campaigns(database), read_at

    def _engine(
        self,
        engine: EngineContainer,
        stats: dict[str, Any] | None,
        heartbeats: dict[str, dict[str, int]],
        seconds: float,
    ) -> EngineSample:
        attrs = engine.container.attrs
        key = engine.container.id
        cpu = memory = rx = tx = None
        rx_rate = tx_rate = None
        if stats:
            before = self._raw.get(key)
            rx, tx = fleet_samples.network_bytes(stats)
            memory = fleet_samples.memory_bytes(stats)
            if before is not None:
                cpu = fleet_samples.cpu_percent_between({"cpu_stats": before.cpu_stats}, stats)
                rx_rate = _rate(before.rx, rx, seconds)
                tx_rate = _rate(before.tx, tx, seconds)
            self._raw[key] = _Raw(dict(stats.get("cpu_stats") or {}), rx, tx)
        engine_id = self.fleet.settings.engine_id(engine.instance)
        campaigns = fleet_samples.campaigns_of(heartbeats, engine_id)
        return EngineSample(
            name=engine.name,
            instance=engine.instance,
            engine_id=engine_id,
            state=engine.state,
            health=fleet_samples.health_of(attrs),
            uptime_s=fleet_samples.uptime_of(attrs, datetime.now(UTC)),
            node=self._node(engine) if self.fleet.mode == "swarm" else None,
            cpu_percent=cpu,
            memory_bytes=memory if engine.running else None,
            net_rx_bytes=rx,
            net_tx_bytes=tx,
            net_rx_rate=rx_rate,
            net_tx_rate=tx_rate,
            campaigns=tuple((c["name"], int(c["workers"])) for c in campaigns),
            programs=self._programs.get(key, ()) if engine.running else (),
        )

    def _node(self, engine: EngineContainer) -> str | None:
        """The Swarm node's host name (its id where this node may not read the list)."""
        node_id = str(engine.container.labels.get(NODE_ID_LABEL) or "")
        if not node_id:
            return None
        if node_id not in self._nodes:
            try:
                node = self.fleet.client.nodes.get(node_id)
                name = (node.attrs.get("Description") or {}).get("Hostname")
            except (APIError, NotFound, OSError):
                name = None
            self._nodes[node_id] = str(name or node_id[:12])
        return self._nodes[node_id]

    def _campaigns(
        self, totals: list[dict[str, Any]], heartbeats: dict[str, dict[str, int]]
    ) -> tuple[CampaignSample, ...]:
        engines_of: dict[str, list[tuple[str, int]]] = {}
        for engine_id, campaigns in sorted(heartbeats.items()):
            for name, workers in campaigns.items():
                engines_of.setdefault(name, []).append((engine_id, workers))
        reasons = self._paused_reasons([str(r["name"]) for r in totals if r["status"] == "paused"])
        return tuple(
            CampaignSample(
                id=int(row["id"]),
                name=str(row["name"]),
                status=str(row["status"]),
                counts={s: int(row[s]) for s in COUNT_KEYS},
                engines=tuple(engines_of.get(str(row["name"]), ())),
                paused_reason=reasons.get(str(row["name"])),
            )
            for row in totals
        )

    def _paused_reasons(self, names: Sequence[str]) -> dict[str, str]:
        database = self.database
        if database is None or not names:
            return {}
        from app.services.campaigns import paused_reasons

        with database.session() as session:
            return paused_reasons(session, names)


COUNT_KEYS = ("queued", "in_flight", "deferred", "held", "sent", "failed")


def delivery_rates(
    before: dict[int, dict[str, Any]], totals: list[dict[str, Any]], seconds: float
) -> tuple[float | None, float | None, float | None]:
    """Sent, deferred and failed per second between two ``campaign_totals`` readings
    (``before`` by campaign id), over the campaigns in both."""
    if seconds <= 0:
        return None, None, None
    sent = deferred = failed = 0
    for row in totals:
        old = before.get(int(row["id"]))
        if old is None:
            continue
        # A retry puts finished items back: a count that fell counts as none.
        sent += max(0, int(row["sent"]) - int(old["sent"]))
        failed += max(0, int(row["failed"]) - int(old["failed"]))
        deferred += max(0, _deferrals(row) - _deferrals(old))
    return round(sent / seconds, 2), round(deferred / seconds, 2), round(failed / seconds, 2)


def _deferrals(row: dict[str, Any]) -> int:
    """Tries that ended deferred: every try less the ones that ended sent or failed (the
    engine counts a try when it records its outcome)."""
    return max(0, int(row["attempts"]) - int(row["sent"]) - int(row["failed"]))


def _rate(before: int | None, after: int | None, seconds: float) -> float | None:
    if before is None or after is None or seconds <= 0:
        return None
    return round(max(0, after - before) / seconds, 1)


def _fields(snapshot: FleetSnapshot) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in snapshot.__dataclass_fields__}


# ---------------------------------------------------------------- what changed


def health_changes(previous: FleetSnapshot | None, current: FleetSnapshot) -> list[HealthChange]:
    """What became worse (or well again) between two snapshots; nothing for the first one
    (an engine unhealthy when the page opens is shown in the table, not announced)."""
    if previous is None:
        return []
    changes: list[HealthChange] = []
    before = {e.name: e for e in previous.engines}
    after = {e.name: e for e in current.engines}
    for name, engine in after.items():
        old = before.get(name)
        if old is None:
            changes.append(
                HealthChange(
                    "engine",
                    name,
                    "appeared",
                    "absent",
                    engine.state,
                    f"Send engine {name} appeared ({engine.state}).",
                )
            )
            continue
        if engine.state != old.state and (engine.state in BAD_STATES or old.state in BAD_STATES):
            changes.append(
                HealthChange(
                    "engine",
                    name,
                    "state",
                    old.state,
                    engine.state,
                    f"Send engine {name} is {engine.state} (was {old.state})"
                    + ("; its logs say why." if engine.state in BAD_STATES else "."),
                )
            )
        elif engine.health != old.health and "unhealthy" in (engine.health, old.health):
            worse = engine.health == "unhealthy"
            changes.append(
                HealthChange(
                    "engine",
                    name,
                    "unhealthy" if worse else "recovered",
                    old.health,
                    engine.health,
                    f"Send engine {name} became unhealthy; its logs and programs say why."
                    if worse
                    else f"Send engine {name} is {engine.health} again.",
                )
            )
    for name, old in before.items():
        if name not in after:
            changes.append(
                HealthChange(
                    "engine",
                    name,
                    "gone",
                    old.state,
                    "gone",
                    f"Send engine {name} is gone (its container was removed).",
                )
            )
    old_campaigns = {c.id: c for c in previous.campaigns}
    for campaign in current.campaigns:
        old_campaign = old_campaigns.get(campaign.id)
        if (
            old_campaign is not None
            and old_campaign.status == "running"
            and campaign.status == "paused"
            and campaign.paused_reason
        ):
            changes.append(
                HealthChange(
                    "campaign",
                    campaign.name,
                    "auto-paused",
                    "running",
                    "paused",
                    f"Campaign {campaign.name}: {campaign.paused_reason}",
                )
            )
    return changes


# ---------------------------------------------------------------- for the console


def open_monitor(database: Database | None) -> FleetMonitor:
    """The fleet the environment names (``POSTROOM_SENDENGINE_FLEET`` / ``_SWARM``), as the
    command line opens it, watched; raises the one sentence when Docker does not answer."""
    from app.engine.fleet_open import (
        fleet_name_from_environment,
        open_fleet,
        registry_from_environment,
        swarm_from_environment,
    )
    from app.engine.fleet_secrets import EngineSecrets

    fleet = open_fleet(
        fleet_name=fleet_name_from_environment(),
        swarm=swarm_from_environment(),
        registry=registry_from_environment(),
        database=database,
        # the URL alone: enough to tell drift; the vault key is added to start engines
        secrets=EngineSecrets(database.url, "") if database is not None else None,
    )
    return FleetMonitor(fleet)


def one_sentence(exc: BaseException) -> PostroomError | None:
    """The sentence for what Docker or the database raised in a fleet call (None: a bug,
    for the crash report)."""
    from docker.errors import DockerException
    from sqlalchemy.exc import SQLAlchemyError

    from app.engine.docker_api import DockerUnreachable, unreachable_sentence
    from app.engine.fleet import FleetError

    if isinstance(exc, PostroomError):
        return exc
    if isinstance(exc, APIError):
        detail = " ".join(str(exc.explanation or exc).split())[:300].rstrip(".")
        return FleetError(
            f"the Docker engine refused: {detail}; check the engine's state and try again."
        )
    if isinstance(exc, DockerException | OSError):
        return DockerUnreachable(unreachable_sentence(exc))
    if isinstance(exc, SQLAlchemyError):
        from app.models.database import connection_error_sentence

        return PostroomError(f"the database did not answer: {connection_error_sentence(exc)}")
    return None


def checked(function: Callable[[], T]) -> T:
    """``function()`` with Docker's and the database's errors turned into one sentence."""
    try:
        return function()
    except Exception as exc:
        sentence = one_sentence(exc)
        if sentence is None or sentence is exc:
            raise
        raise sentence from None
