"""The audit log: who changed what, when. Every mutating service call writes one entry."""

from __future__ import annotations

import getpass
import json
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
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
    "send_engine": ("Send engine", "Send engines"),
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


# Keys many entities record, in the words their forms and listings use.
_COMMON_LABELS: dict[str, str] = {
    "name": "Name",
    "version": "Version",
    "created_at": "Created",
    "updated_at": "Updated",
    "verified_at": "Verified",
    "last_test_at": "Last test",
    "last_test_status": "Last test result",
    "has_password": "Password set",
    "password": "Password",
    "domain": "Domain",
    "kind": "Kind",
    "status": "Status",
    "user": "User",
    "group": "User group",
    "template": "DNS template",
    "description": "Description",
    "records": "Records",
}


@cache
def _entity_labels(entity: str) -> dict[str, str]:
    # Imported here: those services import this module to write their entries.
    from app.services import dns_settings, groups, servers, users

    if entity == "delivery_server":
        return {key: spec.label for key, spec in servers.FIELDS.items()}
    if entity == "user_group":
        labels = {key: spec.label for key, spec in groups.FIELDS.items()}
        labels.update({key: label for key, (label, _) in groups.SERVER_REFERENCES.items()})
        labels.update({key: label for key, (label, _) in groups.TEMPLATE_REFERENCES.items()})
        return labels
    if entity == "user":
        return {key: spec.label for key, spec in users.FIELDS.items()}
    if entity == "dns_settings":
        return dict(dns_settings.LABELS)
    return {}


def field_label(entity: str, key: str) -> str:
    """The label an administrator knows a recorded field by (the form's), not its
    internal name: ``auth_enabled`` of a delivery server reads "Authentication"."""
    label = _entity_labels(entity).get(key) or _COMMON_LABELS.get(key)
    return label or key.replace("_", " ").capitalize()


def labelled_details(entity: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` with each key replaced by its ``field_label`` (values untouched)."""
    return {field_label(entity, key): value for key, value in details.items()}


def short_value(value: Any) -> str:
    """A recorded value as a person reads it in one line."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        text = json.dumps(value, default=str, ensure_ascii=False)
        return text if len(text) <= 40 else f"{text[:39]}…"
    return str(value)


def is_record(value: Any) -> bool:
    """A DNS record as entries store them: host, type and value."""
    return isinstance(value, dict) and {"host", "type", "value"} <= set(value)


# Timestamps repeat the entry's own time and the version is bookkeeping; full details keep them.
_SUMMARY_SKIP = frozenset({"created_at", "updated_at", "verified_at", "last_test_at", "version"})
_EMPTY: tuple[object, ...] = (None, False, "", [], {})


def summary_line(entity: str, action: str, details: Mapping[str, Any], length: int = 140) -> str:
    """One line: ``Label: old → new`` for updates, ``Label: value`` otherwise, each field by
    its form label; cut with "…" past ``length`` characters."""
    parts = []
    for name, value in details.items():
        if name in _SUMMARY_SKIP or (action != "update" and value in _EMPTY):
            continue  # a new row's unset fields say nothing; the full details list them
        key = field_label(entity, name)
        if isinstance(value, list) and value and all(is_record(v) for v in value):
            parts.append(f"{key}: {len(value)}")
        elif action == "update" and isinstance(value, list) and len(value) == 2:
            parts.append(f"{key}: {short_value(value[0])} → {short_value(value[1])}")
        else:
            parts.append(f"{key}: {short_value(value)}")
    text = "; ".join(parts)
    return text if len(text) <= length else f"{text[: length - 1]}…"


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
