"""Users: accounts that belong to one user group and own sender domains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from app.models import SenderDomain, User, UserGroup
from app.services import coerce, limits, validation
from app.services.coerce import FieldSpec, NamedEntity, apply_fields, boolean, require
from app.services.groups import GROUPS

ENTITY = "user"
USERS = NamedEntity(User, "username", ENTITY, "user")

FIELDS: dict[str, FieldSpec] = {
    "username": FieldSpec("Username", validation.username),
    "email": FieldSpec("Email", validation.email_address),
    "is_active": FieldSpec("Active", boolean),
}


def list_users(session: Session, *, group: str | None = None) -> Sequence[User]:
    query = select(User).order_by(User.username)
    if group is not None:
        query = query.join(User.group).where(coerce.name_matches(UserGroup, "name", group))
    return session.scalars(query).all()


def get_user(session: Session, username: str) -> User:
    return USERS.get(session, username)


def _resolve_group(session: Session, value: object) -> UserGroup:
    return GROUPS.reference(session, value, "User group")


def create_user(
    session: Session, values: Mapping[str, object], *, actor: str | None = None
) -> User:
    require(values, {"username": "Username", "email": "Email", "group": "User group"})
    changes = dict(values)
    group = _resolve_group(session, changes.pop("group"))
    user = User(is_active=True)
    apply_fields(user, changes, FIELDS, ENTITY)
    USERS.ensure_unique(session, user.username)
    user.group = group
    session.add(user)
    USERS.save(session, "create", user.username, lambda: user_as_dict(user), actor=actor)
    return user


def update_user(
    session: Session,
    username: str,
    changes: Mapping[str, object],
    *,
    expected_version: int | None = None,
    actor: str | None = None,
) -> User:
    user = USERS.get_for_change(session, username, expected_version)
    pending = dict(changes)
    group = _resolve_group(session, pending.pop("group")) if "group" in pending else None
    diff = apply_fields(user, pending, FIELDS, ENTITY)
    if "username" in diff:
        USERS.ensure_unique(session, user.username, exclude_id=user.id)
    if group is not None and group.id != user.group_id:
        diff["group"] = [user.group.name, group.name]
        user.group = group
    if diff:
        USERS.save(session, "update", user.username, diff, actor=actor, asked_as=username)
    return user


def delete_user(session: Session, username: str, *, actor: str | None = None) -> None:
    """Deleting a user deletes their sender domains with them (they own them)."""
    user = get_user(session, username)
    domains = [d.domain for d in user.sender_domains]
    session.delete(user)
    USERS.save(session, "delete", username, {"sender_domains": domains}, actor=actor)


def user_as_dict(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.email,
        "group": user.group.name,
        "is_active": user.is_active,
        "version": user.version,
    }


# ---------------------------------------------------------------- rows for lists


def user_rows(
    session: Session, *, group: str | None = None, today: date | None = None
) -> list[dict[str, Any]]:
    """Every user (of ``group``) with their sender domain count and their sending usage
    as ``limits`` counts it, in three queries whatever the number of users.

    The rows of ``users list`` and of the console's Users page: ``user_as_dict`` plus
    ``domain_count``, ``domains_limit`` (None: unlimited) and ``limits.Usage.as_dict``.
    """
    query = select(User).options(joinedload(User.group)).order_by(User.username)
    if group is not None:
        query = query.join(User.group).where(coerce.name_matches(UserGroup, "name", group))
    members = list(session.scalars(query).unique())
    usage = limits.usage_for_users(session, members, today=today)
    domain_counts: dict[int, int] = {
        user_id: int(count)
        for user_id, count in session.execute(
            select(SenderDomain.user_id, func.count()).group_by(SenderDomain.user_id)
        )
    }
    return [
        {
            **user_as_dict(user),
            "domain_count": domain_counts.get(user.id, 0),
            "domains_limit": user.group.sender_domains_limit or None,
            **usage[user.id].as_dict(),
        }
        for user in members
    ]


@dataclass(frozen=True)
class UserDetails:
    """What the user editor shows read-only about a saved user."""

    user: dict[str, Any]
    domains: list[dict[str, Any]]  # domain, kind, status; sorted by domain then kind
    domains_limit: int | None
    usage: limits.Usage
    default_domain_enabled: bool


def user_details(session: Session, username: str) -> UserDetails:
    user = get_user(session, username)
    domains = [
        {"domain": d.domain, "kind": d.kind.value, "status": d.status.value}
        for d in sorted(user.sender_domains, key=lambda d: (d.domain, d.kind.value))
    ]
    return UserDetails(
        user=user_as_dict(user),
        domains=domains,
        domains_limit=user.group.sender_domains_limit or None,
        usage=limits.usage(session, user.id),
        default_domain_enabled=user.group.default_sender_domain_enabled,
    )
