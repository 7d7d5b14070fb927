"""User groups: per-channel delivery servers, DNS templates, preferences, limits, headers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.models import (
    Channel,
    DeliveryServer,
    DnsTemplate,
    LegacySendMethod,
    TemplateKind,
    User,
    UserGroup,
)
from app.models.delivery import DEFAULT_SENDER_DOMAIN_MONTHLY_LIMIT
from app.services import validation
from app.services.coerce import FieldSpec, NamedEntity, apply_fields, boolean, require
from app.services.dns_templates import find_template
from app.services.errors import ConflictError, ValidationError
from app.services.servers import SERVERS

ENTITY = "user group"
GROUPS = NamedEntity(UserGroup, "name", ENTITY, "user_group")

# Reference names of the channel settings, as the console labels them.
CHANNEL_LABELS = {
    Channel.MARKETING: "Target Delivery Server (Marketing)",
    Channel.TRANSACTIONAL: "Target Delivery Server (Transactional)",
    Channel.AUTORESPONDER: "Target Delivery Server (Auto Responder)",
}
CHANNEL_ATTRIBUTE = {
    Channel.MARKETING: "marketing_server",
    Channel.TRANSACTIONAL: "transactional_server",
    Channel.AUTORESPONDER: "autoresponder_server",
}


def _legacy_method(value: object, field: str) -> LegacySendMethod | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    return validation.choice(value, field, LegacySendMethod)


def _text(max_length: int) -> Any:
    def parse(value: object, field: str) -> str | None:
        if value is None:
            return None
        text = validation.multiline_text(value, field, max_length)
        return text or None

    return parse


def _x_mailer(value: object, field: str) -> str | None:
    if value is None:
        return None
    return validation.header_value(value, field, 200) or None


def _monthly_default_limit(value: object, field: str) -> int:
    return validation.bounded_int(value, field, minimum=1)


def _optional_default_domain(value: object, field: str) -> str | None:
    return validation.optional_domain(value, field)


# Plain columns. Server and template references are resolved by name separately.
FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec("Name", validation.name),
    "legacy_send_method": FieldSpec("Legacy send method", _legacy_method),
    "sender_domain_management": FieldSpec("Enable sender domain management", boolean),
    "default_sender_domain_enabled": FieldSpec("Activate default sender domain", boolean),
    "default_sender_domain": FieldSpec("Default Sender Domain", _optional_default_domain),
    "default_sender_domain_monthly_limit": FieldSpec("Monthly Limit", _monthly_default_limit),
    "monthly_email_limit": FieldSpec("Monthly Email Limit", validation.optional_limit),
    "daily_email_limit": FieldSpec("Daily Email Limit", validation.optional_limit),
    "lifetime_email_limit": FieldSpec("Lifetime Email Limit", validation.optional_limit),
    "sender_domains_limit": FieldSpec("Sender Domains Limit", validation.optional_limit),
    "plain_text_header": FieldSpec("Plain Text Email Header", _text(65_536)),
    "plain_text_footer": FieldSpec("Plain Text Email Footer", _text(65_536)),
    "html_header": FieldSpec("HTML Email Header", _text(262_144)),
    "html_footer": FieldSpec("HTML Email Footer", _text(262_144)),
    "x_mailer": FieldSpec("X-Mailer Header", _x_mailer),
    "perm_gateway_add_domain": FieldSpec("EmailGateway.AddDomain", boolean),
    "perm_gateway_manage_domain": FieldSpec("EmailGateway.ManageDomain", boolean),
}
# References given by name: key -> (label, attribute).
SERVER_REFERENCES = {
    "marketing_server": (CHANNEL_LABELS[Channel.MARKETING], "marketing_server"),
    "transactional_server": (CHANNEL_LABELS[Channel.TRANSACTIONAL], "transactional_server"),
    "autoresponder_server": (CHANNEL_LABELS[Channel.AUTORESPONDER], "autoresponder_server"),
}
TEMPLATE_REFERENCES = {
    "campaign_dns_template": ("Email Campaign DNS Template", TemplateKind.CAMPAIGN),
    "gateway_dns_template": ("Email Gateway DNS Template", TemplateKind.GATEWAY),
}


def list_groups(session: Session) -> Sequence[UserGroup]:
    return session.scalars(select(UserGroup).order_by(UserGroup.name)).all()


def get_group(session: Session, name: str) -> UserGroup:
    return GROUPS.get(session, name)


def _resolve_server(session: Session, value: object, label: str) -> DeliveryServer | None:
    return None if validation.is_blank(value) else SERVERS.reference(session, value, label)


def _resolve_template(
    session: Session, value: object, label: str, kind: TemplateKind
) -> DnsTemplate | None:
    if validation.is_blank(value):
        return None
    template_name = validation.name(value, label)
    template = find_template(session, kind, template_name)
    if template is None:
        raise ValidationError(
            label, f"no {kind.value} DNS template named {template_name!r}; create it first."
        )
    return template


def _apply(session: Session, group: UserGroup, values: Mapping[str, object]) -> dict[str, Any]:
    plain = {k: v for k, v in values.items() if k in FIELDS}
    refs = {k: v for k, v in values.items() if k not in FIELDS}
    unknown = sorted(set(refs) - set(SERVER_REFERENCES) - set(TEMPLATE_REFERENCES))
    if unknown:
        known = sorted([*FIELDS, *SERVER_REFERENCES, *TEMPLATE_REFERENCES])
        raise ValidationError(
            unknown[0], f"is not a user group setting; known settings: {', '.join(known)}."
        )
    # Resolve every reference before changing anything, so a refusal changes nothing.
    resolved: dict[str, Any] = {}
    for key, value in refs.items():
        if key in SERVER_REFERENCES:
            label, _ = SERVER_REFERENCES[key]
            resolved[key] = _resolve_server(session, value, label)
        else:
            label, kind = TEMPLATE_REFERENCES[key]
            resolved[key] = _resolve_template(session, value, label, kind)
    diff = apply_fields(group, plain, FIELDS, ENTITY)
    for key, target in resolved.items():
        before = getattr(group, key)
        if before is not target:
            setattr(group, key, target)
            diff[key] = [before.name if before else None, target.name if target else None]
    if group.default_sender_domain_enabled and not group.default_sender_domain:
        raise ValidationError(
            "Default Sender Domain",
            "is required when the default sender domain is activated; enter a domain.",
        )
    return diff


def create_group(
    session: Session, values: Mapping[str, object], *, actor: str | None = None
) -> UserGroup:
    require(values, {"name": FIELDS["name"].label})
    group = UserGroup(
        sender_domain_management=False,
        default_sender_domain_enabled=False,
        default_sender_domain_monthly_limit=DEFAULT_SENDER_DOMAIN_MONTHLY_LIMIT,
        perm_gateway_add_domain=False,
        perm_gateway_manage_domain=False,
    )
    _apply(session, group, values)
    GROUPS.ensure_unique(session, group.name)
    session.add(group)
    GROUPS.save(session, "create", group.name, lambda: group_as_dict(group), actor=actor)
    return group


def update_group(
    session: Session,
    name: str,
    changes: Mapping[str, object],
    *,
    expected_version: int | None = None,
    actor: str | None = None,
) -> UserGroup:
    group = GROUPS.get_for_change(session, name, expected_version)
    diff = _apply(session, group, changes)
    if "name" in diff:
        GROUPS.ensure_unique(session, group.name, exclude_id=group.id)
    if diff:
        GROUPS.save(session, "update", group.name, diff, actor=actor, asked_as=name)
    return group


def delete_group(session: Session, name: str, *, actor: str | None = None) -> None:
    group = get_group(session, name)
    members = session.scalar(select(func.count()).where(User.group_id == group.id)) or 0
    if members:
        raise ConflictError(
            f"User group {name!r} still has {members} user(s); move them to another group first."
        )
    session.delete(group)
    GROUPS.save(session, "delete", name, actor=actor)


def server_for(group: UserGroup, channel: Channel) -> DeliveryServer | None:
    server: DeliveryServer | None = getattr(group, CHANNEL_ATTRIBUTE[channel])
    return server


def group_as_dict(group: UserGroup) -> dict[str, Any]:
    def name_of(obj: DeliveryServer | DnsTemplate | None) -> str | None:
        return obj.name if obj is not None else None

    return {
        "name": group.name,
        "marketing_server": name_of(group.marketing_server),
        "transactional_server": name_of(group.transactional_server),
        "autoresponder_server": name_of(group.autoresponder_server),
        "legacy_send_method": group.legacy_send_method.value if group.legacy_send_method else None,
        "campaign_dns_template": name_of(group.campaign_dns_template),
        "gateway_dns_template": name_of(group.gateway_dns_template),
        "sender_domain_management": group.sender_domain_management,
        "default_sender_domain_enabled": group.default_sender_domain_enabled,
        "default_sender_domain": group.default_sender_domain,
        "default_sender_domain_monthly_limit": group.default_sender_domain_monthly_limit,
        "monthly_email_limit": group.monthly_email_limit,
        "daily_email_limit": group.daily_email_limit,
        "lifetime_email_limit": group.lifetime_email_limit,
        "sender_domains_limit": group.sender_domains_limit,
        "plain_text_header": group.plain_text_header,
        "plain_text_footer": group.plain_text_footer,
        "html_header": group.html_header,
        "html_footer": group.html_footer,
        "x_mailer": group.x_mailer,
        "perm_gateway_add_domain": group.perm_gateway_add_domain,
        "perm_gateway_manage_domain": group.perm_gateway_manage_domain,
        "version": group.version,
    }


# ---------------------------------------------------------------- rows and choices


def group_rows(session: Session) -> list[dict[str, Any]]:
    """Every group as ``group_as_dict`` plus its ``user_count``, in a fixed number of
    queries: the rows of ``groups list`` and of the console's User Groups page."""
    query = (
        select(UserGroup)
        .options(
            selectinload(UserGroup.marketing_server),
            selectinload(UserGroup.transactional_server),
            selectinload(UserGroup.autoresponder_server),
            selectinload(UserGroup.campaign_dns_template),
            selectinload(UserGroup.gateway_dns_template),
        )
        .order_by(UserGroup.name)
    )
    members: dict[int, int] = {
        group_id: int(count)
        for group_id, count in session.execute(
            select(User.group_id, func.count()).group_by(User.group_id)
        )
    }
    return [
        {**group_as_dict(group), "user_count": members.get(group.id, 0)}
        for group in session.scalars(query)
    ]


def group_names(session: Session) -> list[str]:
    return list(session.scalars(select(UserGroup.name).order_by(UserGroup.name)))


@dataclass(frozen=True)
class GroupChoices:
    """What a group's references may point at: delivery servers and DNS templates by kind."""

    servers: list[str]
    campaign_templates: list[str]
    gateway_templates: list[str]


def group_choices(session: Session) -> GroupChoices:
    servers = list(session.scalars(select(DeliveryServer.name).order_by(DeliveryServer.name)))
    templates = session.execute(
        select(DnsTemplate.kind, DnsTemplate.name).order_by(DnsTemplate.name)
    ).all()
    return GroupChoices(
        servers=servers,
        campaign_templates=[name for kind, name in templates if kind is TemplateKind.CAMPAIGN],
        gateway_templates=[name for kind, name in templates if kind is TemplateKind.GATEWAY],
    )
