"""What the engine knows about one campaign while sending it: its route, server and message.

A ``CampaignPlan`` is read once per campaign (and again after ``PLAN_SECONDS``, so an edit
in the console reaches running engines within that time) in the engine's database thread,
and used by every worker without touching the database: the route the sender's group
assigns for the channel, the delivery server's connection settings with the password
decrypted, the prepared message (headers and bodies rendered once), and which limits
apply. A campaign that cannot be sent the way it is set up gets a plan with ``failure``
(its items fail with that sentence) or ``hold`` (a setting on this engine is missing:
its items wait, they are not lost).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.engine.message import (
    PreparedCampaign,
    SenderDomainInfo,
    ServerPolicy,
    campaign_content_for,
    prepare_campaign,
    sender_domain_info_for,
    sender_policy_for,
    server_policy_for,
)
from app.engine.smtp_pool import ServerSettings
from app.engine.tracking import TrackingKey
from app.models import Campaign, DeliveryServer, SenderDomain, User
from app.models.base import CampaignStatus, LegacySendMethod, TemplateKind
from app.services.dns_settings import get_settings
from app.services.dns_templates import installation_hash_secret
from app.services.errors import PostroomError
from app.services.routing import route_for_user
from app.services.servers import PasswordCipher, decrypt_password, get_server

PLAN_SECONDS = 30.0
DELIVERY_SERVER = "delivery_server"


@dataclass(frozen=True)
class CampaignPlan:
    campaign_id: int
    name: str
    status: CampaignStatus
    user_id: int
    method: str  # "delivery_server", "savetodisk", or why nothing can send
    server: ServerSettings | None = None
    prepared: PreparedCampaign | None = field(default=None, repr=False)
    failure: str | None = None  # every item fails with this sentence
    hold: str | None = None  # every item is held with this sentence (engine set-up)
    via_default_domain: bool = False
    user_limited: bool = False  # the group sets a daily / monthly / lifetime / domain limit
    server_limited: bool = False  # the server sets an hourly or daily quota
    outbox: Path | None = None


@dataclass(frozen=True)
class EngineSetup:
    """What every plan needs from the engine: its vault, outbox and CA bundle."""

    cipher: PasswordCipher | None
    cipher_problem: str | None
    outbox: Path
    cafile: str | None = None


def tracking_key(session: Session) -> TrackingKey:
    return TrackingKey.from_installation_secret(installation_hash_secret(session))


def _server_settings(
    server: DeliveryServer, setup: EngineSetup
) -> tuple[ServerSettings | None, str | None]:
    """The server's settings, or why this engine cannot log in to it."""
    password: str | None = None
    if server.auth_enabled and server.password_encrypted is not None:
        if setup.cipher is None:
            return None, (
                f"This send engine cannot decrypt the password of delivery server "
                f"{server.name!r}: {setup.cipher_problem or 'it has no vault key'}"
            )
        try:
            password = decrypt_password(server, setup.cipher)
        except PostroomError as exc:
            return None, f"Delivery server {server.name!r}: {exc}"
    return (
        ServerSettings(
            id=server.id,
            name=server.name,
            host=server.host,
            port=server.port,
            encryption=server.encryption,
            timeout=float(server.timeout_seconds),
            max_connections=server.max_connections,
            username=server.username if server.auth_enabled else None,
            password=password,
            verify_certificate=not server.allow_unverified_certificate,
            cafile=setup.cafile,
        ),
        None,
    )


def sender_domain_info(session: Session, from_domain: str) -> SenderDomainInfo | None:
    """The campaign sender domain a From domain is, with its records read, or None."""
    row = session.scalars(
        select(SenderDomain)
        .where(
            func.lower(SenderDomain.domain) == from_domain.lower(),
            SenderDomain.kind == TemplateKind.CAMPAIGN,
        )
        .options(selectinload(SenderDomain.records))
    ).first()
    return sender_domain_info_for(row, get_settings(session)) if row else None


def load_plan(
    session: Session, campaign_id: int, setup: EngineSetup, key: TrackingKey
) -> CampaignPlan | None:
    """The plan of one campaign, or None when the campaign no longer exists."""
    campaign = session.scalars(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .options(selectinload(Campaign.user).selectinload(User.group))
    ).first()
    if campaign is None:
        return None
    user = campaign.user
    group = user.group
    route = route_for_user(user, campaign.channel)
    from_domain = campaign.from_email.rpartition("@")[2].lower()
    via_default = bool(
        group.default_sender_domain_enabled
        and group.default_sender_domain
        and group.default_sender_domain.lower().rstrip(".") == from_domain
    )
    base = CampaignPlan(
        campaign_id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        user_id=user.id,
        method=route.method,
        via_default_domain=via_default,
        user_limited=bool(
            group.daily_email_limit
            or group.monthly_email_limit
            or group.lifetime_email_limit
            or (via_default and group.default_sender_domain_monthly_limit)
        ),
    )
    if route.method == "none":
        return replace(base, failure=route.reason)
    server_settings: ServerSettings | None = None
    policy = ServerPolicy()
    outbox: Path | None = None
    if route.method == DELIVERY_SERVER:
        assert route.server is not None  # a delivery_server route names its server
        server = get_server(session, route.server)
        server_settings, problem = _server_settings(server, setup)
        if problem is not None:
            return replace(base, hold=problem)
        policy = server_policy_for(server)
        base = replace(base, server_limited=bool(server.hourly_quota or server.daily_quota))
    elif route.method == LegacySendMethod.SAVETODISK.value:
        outbox = setup.outbox
    else:
        return replace(
            base,
            failure=(
                f"User group {group.name!r} falls back to the legacy send method "
                f"{route.method!r}, which Postroom's send engine does not provide; assign a "
                f"delivery server for the {campaign.channel.value} channel in its Sending "
                "Settings (or choose SaveToDisk to write .eml files)."
            ),
        )
    domain = sender_domain_info(session, from_domain)
    try:
        prepared = prepare_campaign(
            campaign_content_for(campaign), sender_policy_for(group), policy, domain, key
        )
    except PostroomError as exc:
        return replace(base, failure=f"The message cannot be built: {exc}")
    return replace(base, server=server_settings, prepared=prepared, outbox=outbox)
