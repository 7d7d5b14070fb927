"""The audit log: who changed what, when. Every mutating service call writes one entry."""

from __future__ import annotations

import getpass
import json
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.models import AuditEntry
from app.services import validation
from app.services.errors import ValidationError

# The entity types entries are written for, with the words a person reads for one entry and
# for a filter of them; the console's audit page and the CLI's --entity take them from here.
ENTITY_NAMES: dict[str, tuple[str, str]] = {
    "delivery_server": ("Delivery server", "Delivery servers"),
    "user_group": ("User group", "User groups"),
    "user": ("User", "Users"),
    "sender_domain": ("Sender domain", "Sender domains"),
    "dns_template": ("DNS template", "DNS templates"),
    "dns_settings": ("DNS settings", "DNS settings"),
    "configuration": ("Configuration", "Configuration imports"),
    "vault": ("Vault", "Vault resets"),
    "campaign": ("Campaign", "Campaigns"),
}
ENTITIES = tuple(ENTITY_NAMES)
MAX_LIMIT = 100_000

log = logging.getLogger(__name__)

# Field names whose values must never reach the log, whatever their content.
_SECRET_FIELDS = frozenset({"password", "password_encrypted", "secret", "vault_key"})


def current_actor() -> str:
    """``user@host`` of the workstation making the change."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _scrub(details: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: ("<changed>" if key in _SECRET_FIELDS else value) for key, value in details.items()
    }


def record(
    session: Session,
    action: str,
    entity: str,
    key: str,
    details: Mapping[str, Any] | None = None,
    *,
    actor: str | None = None,
) -> AuditEntry:
    """Add an entry to the current transaction (it commits or rolls back with the change)."""
    entry = AuditEntry(
        actor=actor or current_actor(),
        action=action,
        entity=entity,
        entity_key=key,
        details=json.dumps(_scrub(details), default=str, sort_keys=True) if details else None,
    )
    session.add(entry)
    # Logged when the change commits, not now: a rolled-back change never happened.
    session.info.setdefault(_PENDING_LOG_LINES, []).append(
        (entry.actor, action, entity, key, sorted(details or ()))
    )
    return entry


_PENDING_LOG_LINES = "postroom_audit_log_lines"


@event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    for actor, action, entity, key, fields in session.info.pop(_PENDING_LOG_LINES, []):
        # Field names only: values may be personal data, and secrets never leave the database.
        log.info(
            "%s %s %r by %s%s", action, entity, key, actor, f" ({', '.join(fields)})" * bool(fields)
        )


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING_LOG_LINES, None)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Fields whose value changed, as ``{field: [old, new]}``."""
    return {
        key: [before.get(key), value] for key, value in after.items() if before.get(key) != value
    }


@dataclass(frozen=True)
class AuditView:
    at: datetime
    actor: str
    action: str
    entity: str
    key: str
    details: dict[str, Any]


def list_entries(
    session: Session,
    *,
    entity: str | None = None,
    text: str | None = None,
    limit: int = 500,
) -> Sequence[AuditView]:
    """Newest first, optionally filtered by entity type and a substring of key/actor."""
    limit = validation.bounded_int(limit, "Limit", minimum=1, maximum=MAX_LIMIT)
    if entity and entity not in ENTITIES:
        raise ValidationError(
            "Entity", f"{entity[:40]!r} is not an entity type; use one of: {', '.join(ENTITIES)}."
        )
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if text:
        pattern = f"%{text}%"
        query = query.where(AuditEntry.entity_key.like(pattern) | AuditEntry.actor.like(pattern))
    return [
        AuditView(
            at=e.at,
            actor=e.actor,
            action=e.action,
            entity=e.entity,
            key=e.entity_key,
            details=json.loads(e.details) if e.details else {},
        )
        for e in session.scalars(query)
    ]
