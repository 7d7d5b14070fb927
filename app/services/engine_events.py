"""Health changes of the send engines, written to the audit log by the console that saw them.

The Send Engines page samples the fleet every 2 s and hands over what changed (an engine
unhealthy, restarting, exited or gone, a new one, one well again). Each becomes one
``health`` entry of the ``send_engine`` entity. Several consoles may watch one fleet, and a
console may open again: a change whose latest entry for that engine already says the same
is not written twice. A campaign's automatic pause is not written here: the engine that
paused it wrote that entry, with the reason (``campaigns.pause_if_failing``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AuditEntry
from app.services import audit

ENTITY = "send_engine"
ACTION = "health"


def record_health_changes(
    session: Session, changes: Sequence[Mapping[str, str]], *, actor: str | None = None
) -> int:
    """One audit entry per engine change not written already; how many were written."""
    written = 0
    for change in changes:
        if change.get("kind") != "engine":
            continue
        name = str(change["name"])
        details = {
            "change": str(change["change"]),
            "before": str(change["before"]),
            "after": str(change["after"]),
            "sentence": str(change["sentence"]),
        }
        if _already_said(session, name, details):
            continue
        audit.record(session, ACTION, ENTITY, name, details, actor=actor)
        session.flush()  # the next change of the same engine sees this one
        written += 1
    return written


def _already_said(session: Session, name: str, details: Mapping[str, str]) -> bool:
    latest = session.execute(
        select(AuditEntry.details)
        .where(
            AuditEntry.entity == ENTITY,
            AuditEntry.entity_key == name,
            AuditEntry.action == ACTION,
        )
        .order_by(AuditEntry.id.desc())
        .limit(1)
    ).scalar()
    if not latest:
        return False
    try:
        said = json.loads(latest)
    except ValueError:
        return False
    return bool(
        isinstance(said, dict)
        and said.get("change") == details["change"]
        and said.get("after") == details["after"]
    )
