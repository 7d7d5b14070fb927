"""Delivery servers: create, read, update, delete, with validation and audit entries."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.models import DeliveryServer, Encryption, UserGroup
from app.services import validation
from app.services.coerce import FieldSpec, NamedEntity, apply_fields, boolean, require
from app.services.errors import ConflictError, ValidationError

ENTITY = "delivery server"
SERVERS = NamedEntity(DeliveryServer, "name", ENTITY, "delivery_server")


class PasswordCipher(Protocol):
    """What the servers need of the vault: the password never touches the database in clear."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


def _max_connections(value: object, field: str) -> int:
    return validation.bounded_int(value, field, minimum=1, maximum=1000)


def _encryption(value: object, field: str) -> Encryption:
    return validation.choice(value, field, Encryption)


FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec("Name", validation.name),
    "host": FieldSpec("SMTP Host", validation.hostname),
    "port": FieldSpec("SMTP Port", validation.port),
    "encryption": FieldSpec("Encryption", _encryption),
    "timeout_seconds": FieldSpec("Timeout", validation.timeout_seconds),
    "auth_enabled": FieldSpec("Authentication", boolean),
    "username": FieldSpec("Username", validation.smtp_username),
    "allow_unverified_certificate": FieldSpec("Allow unverified certificate", boolean),
    "link_tracking_domain": FieldSpec("Link Tracking Domain", validation.optional_domain),
    "open_tracking_domain": FieldSpec("Open Tracking Domain", validation.optional_domain),
    "mail_from_domain": FieldSpec("Mail From Domain", validation.optional_domain),
    "enforced_from_email": FieldSpec("Enforced From Email", validation.optional_email),
    "sender_info_as_mfrom": FieldSpec("Use Sender Info as MFROM", boolean),
    "sender_info_as_from": FieldSpec("Use Sender Info as FROM", boolean),
    "hourly_quota": FieldSpec("Hourly quota", validation.optional_limit),
    "daily_quota": FieldSpec("Daily quota", validation.optional_limit),
    "max_connections": FieldSpec("Max connections", _max_connections),
}


def _check_consistency(server: DeliveryServer) -> None:
    if server.auth_enabled and not server.username:
        raise ValidationError(
            "Username", "is required when Authentication is on; enter it or turn it off."
        )
    if not server.auth_enabled and server.password_encrypted:
        # A stored password nobody uses is a liability: drop it.
        server.password_encrypted = None


def warnings_for(server: DeliveryServer) -> list[str]:
    """Likely mistakes that are still allowed (shown beside the form, and by the CLI)."""
    notes: list[str] = []
    if server.port == 465 and server.encryption != Encryption.SSL:
        notes.append("Port 465 normally expects SSL (TLS on connect), not STARTTLS or none.")
    if server.port == 587 and server.encryption == Encryption.SSL:
        notes.append("Port 587 normally expects TLS (STARTTLS), not SSL.")
    if server.encryption == Encryption.NONE:
        notes.append("No encryption: credentials and mail cross the network in clear.")
    if server.auth_enabled and server.password_encrypted is None:
        notes.append("Authentication is on but no password is stored.")
    if server.allow_unverified_certificate:
        notes.append("Certificate verification is turned off for this server.")
    if not server.mail_from_domain:
        notes.append("No Mail From domain: bounces cannot be processed.")
    return notes


def _set_password(
    server: DeliveryServer, password: str | None, cipher: PasswordCipher | None
) -> None:
    if password is None:
        server.password_encrypted = None
        return
    password = validation.smtp_password(password, "Password")
    if cipher is None:
        raise ValidationError(
            "Password", "cannot be stored without the database's vault key; unlock the keyring."
        )
    server.password_encrypted = cipher.encrypt(password)


def list_servers(session: Session) -> Sequence[DeliveryServer]:
    return session.scalars(select(DeliveryServer).order_by(DeliveryServer.name)).all()


def get_server(session: Session, name: str) -> DeliveryServer:
    return SERVERS.get(session, name)


_UNSET: Any = object()


def create_server(
    session: Session,
    values: Mapping[str, object],
    *,
    password: str | None = None,
    cipher: PasswordCipher | None = None,
    actor: str | None = None,
) -> DeliveryServer:
    """Validate and add a server; ``password`` is encrypted with ``cipher`` (the vault)."""
    require(values, {key: FIELDS[key].label for key in ("name", "host")})
    server = DeliveryServer(
        port=587,
        encryption=Encryption.TLS,
        timeout_seconds=10,
        auth_enabled=False,
        allow_unverified_certificate=False,
        sender_info_as_mfrom=False,
        sender_info_as_from=False,
        max_connections=5,
    )
    changes = dict(values)
    if changes.get("username") and "auth_enabled" not in changes:
        changes["auth_enabled"] = True  # giving a username means the server authenticates
    apply_fields(server, changes, FIELDS, ENTITY)
    SERVERS.ensure_unique(session, server.name)
    if password is not None:
        server.auth_enabled = True if server.username else server.auth_enabled
        _set_password(server, password, cipher)
    _check_consistency(server)
    session.add(server)
    SERVERS.save(
        session,
        "create",
        server.name,
        lambda: {**server_as_dict(server), "password": "<set>" if password else None},
        actor=actor,
    )
    return server


def update_server(
    session: Session,
    name: str,
    changes: Mapping[str, object],
    *,
    password: str | None = _UNSET,
    cipher: PasswordCipher | None = None,
    expected_version: int | None = None,
    actor: str | None = None,
) -> DeliveryServer:
    """Apply ``changes``; pass ``password=None`` to remove the stored password."""
    server = SERVERS.get_for_change(session, name, expected_version)
    diff = apply_fields(server, changes, FIELDS, ENTITY)
    if "name" in diff:
        SERVERS.ensure_unique(session, server.name, exclude_id=server.id)
    if password is not _UNSET:
        _set_password(server, password, cipher)
        diff["password"] = "<changed>"
    _check_consistency(server)
    if diff:
        SERVERS.save(session, "update", server.name, diff, actor=actor, asked_as=name)
    return server


def groups_using(session: Session, server: DeliveryServer) -> Sequence[UserGroup]:
    return session.scalars(
        select(UserGroup)
        .where(
            or_(
                UserGroup.marketing_server_id == server.id,
                UserGroup.transactional_server_id == server.id,
                UserGroup.autoresponder_server_id == server.id,
            )
        )
        .order_by(UserGroup.name)
    ).all()


def delete_server(session: Session, name: str, *, actor: str | None = None) -> None:
    """Delete an unallocated server; an allocated one is refused with the groups named."""
    server = get_server(session, name)
    users = groups_using(session, server)
    if users:
        names = ", ".join(g.name for g in users)
        raise ConflictError(
            f"Delivery server {name!r} is assigned to user group(s) {names}; "
            "assign another server there first."
        )
    session.delete(server)
    SERVERS.save(session, "delete", name, actor=actor)


def decrypt_password(server: DeliveryServer, cipher: PasswordCipher) -> str | None:
    """The clear password, for the SMTP session only; never for display or export."""
    if server.password_encrypted is None:
        return None
    return cipher.decrypt(server.password_encrypted)


def server_as_dict(server: DeliveryServer) -> dict[str, Any]:
    """Every field an administrator sees, without the password (only whether one is set)."""
    return {
        "name": server.name,
        "host": server.host,
        "port": server.port,
        "encryption": server.encryption.value,
        "timeout_seconds": server.timeout_seconds,
        "auth_enabled": server.auth_enabled,
        "username": server.username,
        "has_password": server.password_encrypted is not None,
        "allow_unverified_certificate": server.allow_unverified_certificate,
        "link_tracking_domain": server.link_tracking_domain,
        "open_tracking_domain": server.open_tracking_domain,
        "mail_from_domain": server.mail_from_domain,
        "enforced_from_email": server.enforced_from_email,
        "sender_info_as_mfrom": server.sender_info_as_mfrom,
        "sender_info_as_from": server.sender_info_as_from,
        "hourly_quota": server.hourly_quota,
        "daily_quota": server.daily_quota,
        "max_connections": server.max_connections,
        "last_test_status": server.last_test_status.value,
        "last_test_at": server.last_test_at.isoformat() if server.last_test_at else None,
        "version": server.version,
    }


# ---------------------------------------------------------------- rows for lists


def server_rows(session: Session) -> list[dict[str, Any]]:
    """Every server with where it is allocated and how its last test failed, in one read:
    the rows of ``servers list`` and of the console's Delivery Servers page.

    ``server_as_dict`` plus ``allocation`` (one ``{group, channel, badge, colour}`` per
    group channel that uses the server), ``allocation_text`` ("UserGroup1: M T" or
    "Not Allocated"), and ``failed_stage`` / ``hint`` of a failed last test (else None).
    """
    # Imported here: routing builds on groups, which build on this module.
    from app.services import routing

    badges = routing.allocation_badges(session)
    rows: list[dict[str, Any]] = []
    for server in list_servers(session):
        mine = badges.get(server.name, [])
        failed_stage, hint = _last_failure(server.last_test_report)
        rows.append(
            {
                **server_as_dict(server),
                "allocation": [
                    {
                        "group": badge.group,
                        "channel": badge.channel.value,
                        "badge": badge.code,
                        "colour": badge.colour,
                    }
                    for badge in mine
                ],
                "allocation_text": routing.badge_text(mine),
                "failed_stage": failed_stage,
                "hint": hint,
            }
        )
    return rows


def _last_failure(report_json: str | None) -> tuple[str | None, str | None]:
    if not report_json:
        return None, None
    try:
        report = json.loads(report_json)
    except ValueError:  # written by something else: no detail rather than a failure
        return None, None
    if not isinstance(report, dict) or report.get("ok"):
        return None, None
    stage, hint = report.get("failed_stage"), report.get("hint")
    return (
        stage if isinstance(stage, str) else None,
        hint if isinstance(hint, str) else None,
    )
