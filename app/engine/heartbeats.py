"""Send-engine heartbeats: what each engine did lately, for the dashboard and health checks.

Each engine keeps one row for itself (``campaign_id`` NULL: its state and totals since it
started) and one per campaign it has sent for (sent, failed, workers during the last
beat). A beat rewrites them in one transaction; rows are never deleted by the engine, so
the console sees a stopped engine as ``stopped`` with its last beat time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, and_, select, update
from sqlalchemy.sql.elements import ColumnElement

from app.models import EngineHeartbeat
from app.models.base import utcnow

HEARTBEATS: Table = EngineHeartbeat.__table__  # type: ignore[assignment]
ENGINE_WORKER = "engine"
CAMPAIGN_WORKER = "campaign"
RUNNING = "running"
STOPPED = "stopped"
IDLE = "idle"


@dataclass(frozen=True)
class CampaignBeat:
    sent: int
    failed: int
    workers: int


@dataclass(frozen=True)
class EngineHealth:
    healthy: bool
    reason: str
    last_beat_at: datetime | None
    state: str | None


def _row(engine_id: str, campaign_id: int | None) -> ColumnElement[bool]:
    campaign = (
        HEARTBEATS.c.campaign_id.is_(None)
        if campaign_id is None
        else HEARTBEATS.c.campaign_id == campaign_id
    )
    return and_(HEARTBEATS.c.engine == engine_id, campaign)


def beat(
    engine: Engine,
    engine_id: str,
    *,
    state: str,
    sent: int,
    failed: int,
    campaigns: Mapping[int, CampaignBeat],
    now: datetime | None = None,
) -> None:
    """Write this engine's rows (an UPDATE, an INSERT the first time)."""
    now = now or utcnow()
    rows: list[tuple[int | None, dict[str, Any]]] = [
        (
            None,
            {
                "worker": ENGINE_WORKER,
                "sent": sent,
                "failed": failed,
                "workers": sum(c.workers for c in campaigns.values()),
                "state": state,
            },
        )
    ]
    for campaign_id, counts in campaigns.items():
        rows.append(
            (
                campaign_id,
                {
                    "worker": CAMPAIGN_WORKER,
                    "sent": counts.sent,
                    "failed": counts.failed,
                    "workers": counts.workers,
                    "state": (RUNNING if counts.workers else IDLE) if state == RUNNING else state,
                },
            )
        )
    with engine.begin() as connection:
        for row_campaign, fields in rows:
            values = {**fields, "last_beat_at": now}
            changed = connection.execute(
                update(HEARTBEATS).where(_row(engine_id, row_campaign)).values(**values)
            ).rowcount
            if not changed:
                connection.execute(
                    HEARTBEATS.insert().values(engine=engine_id, campaign_id=row_campaign, **values)
                )


def engine_health(engine: Engine, engine_id: str, max_age_seconds: float) -> EngineHealth:
    """Healthy when the engine's own row is running and beat within ``max_age_seconds``."""
    with engine.connect() as connection:
        row = connection.execute(
            select(HEARTBEATS.c.state, HEARTBEATS.c.last_beat_at)
            .where(_row(engine_id, None))
            .order_by(HEARTBEATS.c.id.desc())
            .limit(1)
        ).first()
    if row is None:
        return EngineHealth(False, f"engine {engine_id} has never beaten", None, None)
    state, last = row.state, row.last_beat_at
    if state != RUNNING:
        return EngineHealth(False, f"engine {engine_id} is {state}", last, state)
    age = utcnow() - last
    if age > timedelta(seconds=max_age_seconds):
        return EngineHealth(
            False,
            f"engine {engine_id} last beat {age.total_seconds():.0f} s ago "
            f"(more than {max_age_seconds:g} s)",
            last,
            state,
        )
    return EngineHealth(
        True, f"engine {engine_id} beat {age.total_seconds():.0f} s ago", last, state
    )
