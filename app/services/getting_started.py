"""The first-run checklist: the reference's setup walkthrough (steps 1–7), ticked from the data.

Each step is done when what it asks for exists in the database, so the list needs no state
of its own: it is read again whenever it is shown. Steps 1 and 2 of the reference (the DNS
template and the DNS values) are one step here, because the templates ship ready-made and
only the values are the administrator's to set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    Campaign,
    Channel,
    DeliveryServer,
    QueueItem,
    SenderDomain,
    User,
    UserGroup,
)
from app.models.base import DomainStatus, QueueStatus, TestStatus
from app.models.database import Database
from app.services.dns_settings import DEFAULT_VALUES, LABELS, get_settings
from app.services.engine_liveness import engine_presence
from app.services.groups import server_for

# The DNS values whose shipped default is a placeholder, not something that could work.
PLACEHOLDER_SETTINGS = (
    "spf_include",
    "dkim_public_key",
    "sender_domain_target",
    "link_tracker_target",
    "open_tracker_target",
)

DNS_SETTINGS = "dns_settings"
DELIVERY_SERVER = "delivery_server"
USER_GROUP = "user_group"
USER = "user"
SENDER_DOMAIN = "sender_domain"
SEND_ENGINE = "send_engine"
TEST_CAMPAIGN = "test_campaign"


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    explanation: str
    done: bool
    detail: str
    count: int = 0  # how many of the step's things exist (0: the button creates the first)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def dns_settings_step(session: Session) -> Step:
    settings = get_settings(session)
    unset = [
        LABELS[key] for key in PLACEHOLDER_SETTINGS if getattr(settings, key) == DEFAULT_VALUES[key]
    ]
    if unset:
        done = len(PLACEHOLDER_SETTINGS) - len(unset)
        detail = (
            f"{done} of {len(PLACEHOLDER_SETTINGS)} values set; still the placeholder: "
            f"{', '.join(unset)}."
        )
    else:
        detail = f"Sender domains point at {settings.sender_domain_target}."
    return Step(
        DNS_SETTINGS,
        "Save the DNS settings",
        "The SPF, DKIM, DMARC and CNAME values every sender domain's records are made from.",
        not unset,
        detail,
        len(PLACEHOLDER_SETTINGS) - len(unset),
    )


def delivery_server_step(session: Session) -> Step:
    statuses = session.scalars(select(DeliveryServer.last_test_status)).all()
    passing = sum(1 for status in statuses if status == TestStatus.OK)
    if not statuses:
        detail = "No delivery server yet."
    else:
        word = "passes" if len(statuses) == 1 else "pass"
        detail = f"{passing} of {_plural(len(statuses), 'server')} {word} the SMTP test."
    return Step(
        DELIVERY_SERVER,
        "Add a delivery server that passes its test",
        "The SMTP relay mail leaves through; its Test tab proves the connection and login.",
        passing > 0,
        detail,
        len(statuses),
    )


def user_group_step(session: Session) -> Step:
    groups = session.scalars(select(UserGroup).order_by(UserGroup.name)).all()
    complete = [
        group.name for group in groups if all(server_for(group, c) is not None for c in Channel)
    ]
    if complete:
        detail = (
            f"{_plural(len(complete), 'group')} with a server on every channel: "
            + ", ".join(complete[:3])
            + ("…" if len(complete) > 3 else ".")
        )
    elif groups:
        group = groups[0]
        missing = [c.value for c in Channel if server_for(group, c) is None]
        detail = f"Group {group.name!r} has no delivery server for {', '.join(missing)}."
    else:
        detail = "No user group yet."
    return Step(
        USER_GROUP,
        "Give a user group a server for every channel",
        "Marketing, transactional and autoresponder mail each go through the server its "
        "group assigns.",
        bool(complete),
        detail,
        len(groups),
    )


def user_step(session: Session) -> Step:
    active = session.scalar(select(func.count()).select_from(User).where(User.is_active.is_(True)))
    total = session.scalar(select(func.count()).select_from(User))
    count = int(active or 0)
    if count:
        detail = f"{_plural(count, 'active user')}."
    elif total:
        detail = f"{_plural(int(total), 'user')}, none active."
    else:
        detail = "No user yet."
    return Step(
        USER,
        "Add a user",
        "Campaigns are sent for a user, through the servers of the user's group.",
        count > 0,
        detail,
        int(total or 0),
    )


def sender_domain_step(session: Session) -> Step:
    counts = dict(
        session.execute(
            select(SenderDomain.status, func.count()).group_by(SenderDomain.status)
        ).all()
    )
    enabled = int(counts.get(DomainStatus.ENABLED, 0))
    total = sum(int(n) for n in counts.values())
    if not total:
        detail = "No sender domain yet."
    else:
        detail = f"{enabled} of {_plural(total, 'sender domain')} enabled."
    return Step(
        SENDER_DOMAIN,
        "Enable a sender domain",
        "A domain whose published records verify, so receivers trust mail from it.",
        enabled > 0,
        detail,
        total,
    )


def send_engine_step(session: Session) -> Step:
    presence = engine_presence(session)
    running: list[str] = presence["running"]
    if running:
        detail = f"{len(running)} running: {', '.join(running[:3])}" + (
            "…" if len(running) > 3 else "."
        )
    elif presence["last_beat_at"] is None:
        detail = "No send engine has run on this database."
    else:
        detail = "None running now (one ran before)."
    return Step(
        SEND_ENGINE,
        "Start a send engine",
        "Engines take queued messages and deliver them; nothing is sent while none runs.",
        bool(running),
        detail,
        len(running),
    )


def test_campaign_step(session: Session) -> Step:
    latest = session.execute(
        select(Campaign.name, func.count(QueueItem.id))
        .join(QueueItem, QueueItem.campaign_id == Campaign.id)
        .where(QueueItem.status == QueueStatus.SENT)
        .group_by(Campaign.id, Campaign.name)
        .order_by(Campaign.id.desc())
        .limit(1)
    ).first()
    if latest is not None:
        detail = f"{latest[0]} delivered {_plural(int(latest[1]), 'message')}."
    else:
        started = session.scalar(select(func.count()).select_from(Campaign))
        detail = (
            f"{_plural(int(started), 'campaign')}, none delivered yet."
            if started
            else "No campaign yet."
        )
    return Step(
        TEST_CAMPAIGN,
        "Send a test campaign",
        "One message to your own address, watched until the server accepts it.",
        latest is not None,
        detail,
        int(latest[1]) if latest is not None else 0,
    )


STEPS: tuple[Callable[[Session], Step], ...] = (
    dns_settings_step,
    delivery_server_step,
    user_group_step,
    user_step,
    sender_domain_step,
    send_engine_step,
    test_campaign_step,
)


def setup_steps(session: Session) -> list[Step]:
    """The seven steps in the reference's order, each done or not from the data."""
    return [step(session) for step in STEPS]


def getting_started(db: Database) -> list[Step]:
    with db.session() as session:
        return setup_steps(session)


def progress_text(steps: list[Step]) -> str:
    return f"{sum(step.done for step in steps)} of {len(steps)} done"
