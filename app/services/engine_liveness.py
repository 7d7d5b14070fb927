"""Whether any send engine is running now, read from the engines' heartbeats.

Engines beat every few seconds (at most every 10 s, ``app.engine.runner``); the console
asks before it promises that a campaign will move: a test campaign with no engine
running would otherwise wait in the queue with nothing said.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.engine import heartbeats
from app.models import EngineHeartbeat
from app.models.base import utcnow

# Three missed beats of the slowest engine (10 s) and it no longer counts as running.
RECENT_SECONDS = 30.0
RUNNING = heartbeats.RUNNING  # the state an engine's own row says while it runs


def engine_presence(session: Session, within_seconds: float = RECENT_SECONDS) -> dict[str, Any]:
    """``{running: [engine ids], last_beat_at, sentence}``: the engines whose own row says
    running and beat within ``within_seconds``, and one sentence for a person."""
    rows = session.execute(
        select(EngineHeartbeat.engine, EngineHeartbeat.state, EngineHeartbeat.last_beat_at).where(
            EngineHeartbeat.campaign_id.is_(None)
        )
    ).all()
    now = utcnow()
    cutoff = now - timedelta(seconds=within_seconds)
    running = sorted({r.engine for r in rows if r.state == RUNNING and r.last_beat_at >= cutoff})
    latest = max(rows, key=lambda r: r.last_beat_at, default=None)
    last = latest.last_beat_at if latest is not None else None
    if running:
        sentence = (
            f"{len(running)} send engine{'s' if len(running) != 1 else ''} running "
            f"({', '.join(running)})."
        )
    elif last is None:
        sentence = (
            "No send engine has ever run on this database, so nothing will be sent; start "
            "one with `postroom engine run`."
        )
    else:
        assert latest is not None
        ago = int((now - last).total_seconds())
        what = (
            f"{latest.engine} stopped {ago:,} s ago"
            if latest.state != RUNNING
            else f"the last one beat {ago:,} s ago"
        )
        sentence = (
            f"No send engine is running: {what}, so nothing more will be sent; start one "
            "with `postroom engine run`."
        )
    return {
        "running": running,
        "last_beat_at": last.isoformat() if last else None,
        "sentence": sentence,
    }
