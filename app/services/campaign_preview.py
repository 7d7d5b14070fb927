"""A campaign's message as a send engine will build it, for the console's preview.

The same inputs the engine's plan uses (``app.engine.plans.load_plan``): the sender's
group (X-Mailer, header and footer), the delivery server its group routes the channel to
(tracking domains, enforced From, Mail From domain), the From domain's sender-domain
records (MFROM and tracking hosts) and the installation's tracking key; then the
engine's own ``prepare_campaign`` builds it. Nothing is stored: the preview of a
campaign not yet created uses the next campaign id, so its tracked links look as sent.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email import policy as email_policy
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.engine.message import (
    CampaignContent,
    ServerPolicy,
    prepare_campaign,
    sender_policy_for,
    server_policy_for,
)
from app.engine.plans import sender_domain_info, tracking_key
from app.models import Campaign
from app.models.base import Channel
from app.services import validation
from app.services.campaigns import check_content, message_id, message_id_prefix
from app.services.routing import parse_channel, route_for_user
from app.services.servers import get_server
from app.services.users import get_user

SAMPLE_RECIPIENT = "recipient@example.com"
_TRACKED = re.compile(r"""href=["']?https://([^/"'\s>]+)/c/""", re.IGNORECASE)


def preview_message(
    session: Session,
    username: str,
    channel: Channel | str,
    from_email: str,
    from_name: str | None,
    subject: str,
    text: str | None,
    html: str | None,
    recipient: str = SAMPLE_RECIPIENT,
) -> dict[str, Any]:
    """``{headers: [(name, value)], text, html, envelope_from, route, tracked_links,
    tracking_hosts}`` for one recipient.

    ``text`` and ``html`` are the bodies as sent (group header and footer, tracked links,
    open pixel); ``route`` is the sentence saying which server or method sends it;
    ``tracked_links`` counts the links that go through a click-tracking host.
    """
    user = get_user(session, username)
    parsed_channel = parse_channel(channel)
    content = check_content(from_email, from_name, subject, text, html)
    to = validation.email_address(recipient, "Sample recipient")
    route = route_for_user(user, parsed_channel)
    server_policy = ServerPolicy()
    if route.method == "delivery_server" and route.server:
        server_policy = server_policy_for(get_server(session, route.server))
    from_domain = content.from_email.rpartition("@")[2].lower()
    domain = sender_domain_info(session, from_domain)
    campaign_id = int(session.scalar(select(func.max(Campaign.id))) or 0) + 1
    prepared = prepare_campaign(
        CampaignContent(
            campaign_id=campaign_id,
            channel=parsed_channel,
            from_email=content.from_email,
            from_name=content.from_name,
            subject=content.subject,
            text=content.text,
            html=content.html,
        ),
        sender_policy_for(user.group),
        server_policy,
        domain,
        tracking_key(session),
    )
    built = prepared.build(1, to, message_id(message_id_prefix(campaign_id), 1, from_domain))
    parsed = message_from_bytes(built.as_bytes(), policy=email_policy.default)
    bodies: dict[str, str | None] = {"text/plain": None, "text/html": None}
    for part in parsed.walk():
        kind = part.get_content_type()
        if kind in bodies and bodies[kind] is None:
            bodies[kind] = str(part.get_content())
    tracked = _TRACKED.findall(bodies["text/html"] or "")
    return {
        "tracked_links": len(tracked),
        "tracking_hosts": sorted(set(tracked)),
        "headers": built.headers,
        "text": bodies["text/plain"],
        "html": bodies["text/html"],
        "envelope_from": built.envelope_from,
        "route": route.reason,
    }
