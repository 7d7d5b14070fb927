"""The dashboard's arithmetic without Docker: CPU % between two of our own samples (from
stats a real dockerd returned with ``one_shot``, recorded here), delivery rates from two
readings of a real SQLite queue, the health changes between snapshots, and the audit
entries they become (once each, also across consoles).

The Docker side (a real container's numbers against ``docker stats``) is in
tests/docker/test_fleet_monitor_docker.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from app.engine import fleet_samples
from app.engine.fleet_monitor import (
    CampaignSample,
    EngineSample,
    FleetSnapshot,
    delivery_rates,
    health_changes,
)
from app.models import AuditEntry, Campaign, QueueItem
from app.models.base import QueueStatus
from app.models.database import Database
from app.services import campaigns
from app.services.engine_events import record_health_changes
from tests.engine.test_engine import make_campaign, make_route

# Two one_shot samples of a busy container, 4 s of host CPU time apart (dockerd 2x.x,
# cgroup v1, 2 CPUs): one_shot leaves precpu_stats empty, so the CPU % needs our own
# previous sample. 924,389,493 ns of 4 s on 2 CPUs is 46.22 %.
FIRST = {
    "cpu_stats": {
        "cpu_usage": {"total_usage": 1_586_855_205},
        "system_cpu_usage": 1_522_990_000_000,
        "online_cpus": 2,
    },
    "precpu_stats": {"cpu_usage": {"total_usage": 0}},
    "memory_stats": {"usage": 19_337_216, "stats": {"total_inactive_file": 0}},
    "networks": {"eth0": {"rx_bytes": 736, "tx_bytes": 0}},
}
SECOND = {
    "cpu_stats": {
        "cpu_usage": {"total_usage": 2_511_244_698},
        "system_cpu_usage": 1_526_990_000_000,
        "online_cpus": 2,
    },
    "precpu_stats": {"cpu_usage": {"total_usage": 0}},
    "memory_stats": {
        "usage": 19_079_168 + 5_000_000,
        # cgroup v2's name; the page cache the kernel can drop is not "used"
        "stats": {"inactive_file": 5_000_000},
    },
    "networks": {"eth0": {"rx_bytes": 2_784, "tx_bytes": 1_024}},
}


def test_cpu_percent_comes_from_our_previous_sample() -> None:
    assert fleet_samples.cpu_percent(SECOND) is None  # one_shot alone says nothing
    assert fleet_samples.cpu_percent_between(FIRST, SECOND) == 46.22
    assert fleet_samples.cpu_percent_between({}, SECOND) is None
    assert fleet_samples.memory_bytes(SECOND) == 19_079_168
    assert fleet_samples.network_bytes(SECOND) == (2_784, 1_024)
    assert fleet_samples.network_bytes({"networks": {}}) == (None, None)  # host network


def engine(name: str = "postroom-sendengine-1", **values: Any) -> EngineSample:
    fields: dict[str, Any] = {
        "name": name,
        "instance": int(name.rsplit("-", 1)[1]),
        "engine_id": name.removeprefix("postroom-"),
        "state": "running",
        "health": "healthy",
        "uptime_s": 60.0,
        "node": None,
        "cpu_percent": 5.0,
        "memory_bytes": 50_000_000,
        "net_rx_bytes": None,
        "net_tx_bytes": None,
        "net_rx_rate": None,
        "net_tx_rate": None,
    }
    return EngineSample(**{**fields, **values})


def snapshot(
    engines: list[EngineSample], campaign_list: list[CampaignSample] | None = None, at: float = 0
) -> FleetSnapshot:
    return FleetSnapshot(
        datetime.now(UTC), at, "containers", tuple(engines), tuple(campaign_list or ()), 1, 0, 0
    )


def campaign(status: str, reason: str | None = None) -> CampaignSample:
    counts = {"queued": 5, "in_flight": 0, "deferred": 0, "held": 0, "sent": 3, "failed": 2}
    return CampaignSample(1, "Spring", status, counts, (("sendengine-1", 10),), reason)


def test_health_changes_name_what_got_worse_and_what_recovered() -> None:
    one, two = "postroom-sendengine-1", "postroom-sendengine-2"
    first = snapshot([engine(one), engine(two)], [campaign("running")])
    assert health_changes(None, first) == []  # the first sample is the baseline
    assert health_changes(first, first) == []

    worse = snapshot(
        [engine(one, health="unhealthy"), engine("postroom-sendengine-3")],
        [campaign("paused", "Paused automatically: 2 of 5 finished messages failed.")],
    )
    changes = {(c.name, c.change): c for c in health_changes(first, worse)}
    assert set(changes) == {
        (one, "unhealthy"),
        ("postroom-sendengine-3", "appeared"),
        (two, "gone"),
        ("Spring", "auto-paused"),
    }
    assert changes[(one, "unhealthy")].sentence == (
        f"Send engine {one} became unhealthy; its logs and programs say why."
    )
    assert "2 of 5 finished messages failed" in changes[("Spring", "auto-paused")].sentence

    restarting = snapshot([engine(one, state="restarting", health="none")])
    (change,) = [c for c in health_changes(worse, restarting) if c.name == one]
    assert (change.change, change.before, change.after) == ("state", "running", "restarting")
    well = snapshot([engine(one)])
    (change,) = [c for c in health_changes(restarting, well) if c.name == one]
    assert change.after == "running" and change.sentence.endswith("(was restarting).")

    # A campaign a person paused (no reason) is not news.
    assert health_changes(first, snapshot(list(first.engines), [campaign("paused")])) == []


def test_delivery_rates_come_from_two_readings_of_the_queue(
    sqlite_database: Database,
) -> None:
    db = sqlite_database
    make_route(db, 2525)
    make_campaign(db, [f"r{n}@example.com" for n in range(20)])
    before = {int(r["id"]): r for r in fleet_samples.campaign_totals(db)}
    (row,) = before.values()
    assert (row["name"], row["status"], row["queued"], row["attempts"]) == (
        "Spring",
        "running",
        20,
        0,
    )
    assert delivery_rates({}, list(before.values()), 2.0) == (0, 0, 0)
    assert delivery_rates(before, list(before.values()), 0.0) == (None, None, None)

    with db.transaction() as session:
        ids = list(session.scalars(select(QueueItem.id).order_by(QueueItem.id)))
        # 6 sent (2 of them after one deferral each), 2 failed, 3 deferred once now
        outcomes = [(QueueStatus.SENT, 1)] * 4 + [(QueueStatus.SENT, 2)] * 2
        outcomes += [(QueueStatus.FAILED, 1)] * 2 + [(QueueStatus.DEFERRED, 1)] * 3
        for item_id, (status, attempts) in zip(ids, outcomes, strict=False):
            session.execute(
                update(QueueItem)
                .where(QueueItem.id == item_id)
                .values(status=status, attempts=attempts)
            )
    after = fleet_samples.campaign_totals(db)
    assert after[0]["sent"] == 6 and after[0]["deferred"] == 3 and after[0]["queued"] == 9
    # over 2 s: 6 sent, 2 + 3 deferrals, 2 failed
    assert delivery_rates(before, after, 2.0) == (3.0, 2.5, 1.0)
    # a retry puts the failed back: no negative rate
    assert delivery_rates({int(r["id"]): r for r in after}, list(before.values()), 2.0) == (
        0,
        0,
        0,
    )

    with db.transaction() as session:
        campaigns.cancel_campaign(session, "Spring")
        name = session.scalars(select(Campaign.name)).one()
    assert name == "Spring" and fleet_samples.campaign_totals(db) == []  # not active


def test_an_engine_change_is_one_audit_entry_however_often_it_is_seen(
    sqlite_database: Database,
) -> None:
    db = sqlite_database
    first = snapshot([engine()])
    worse = snapshot([engine(health="unhealthy")], [campaign("paused", "Paused: failures.")])
    changes = [c.as_dict() for c in health_changes(first, worse)]
    with db.transaction() as session:
        assert record_health_changes(session, changes) == 1  # the campaign's is the engine's
    # Another console (or this one, opened again) saw the same change: nothing new.
    with db.transaction() as session:
        assert record_health_changes(session, changes) == 0
    with db.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.entity == "send_engine")
        ).all()
    assert len(entries) == 1
    assert (entries[0].action, entries[0].entity_key) == ("health", "postroom-sendengine-1")
    assert json.loads(entries[0].details or "{}")["after"] == "unhealthy"
    # Well again, then unhealthy again: both are news.
    back = [c.as_dict() for c in health_changes(worse, first)]
    again = [c.as_dict() for c in health_changes(first, worse) if c.kind == "engine"]
    with db.transaction() as session:
        assert record_health_changes(session, back) == 1
        assert record_health_changes(session, again) == 1
