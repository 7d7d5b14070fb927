"""The troubleshooter: the reference's "emails are not being sent" checklist, run for you.

Each check reads the database (and, where the checklist says "test", asks the real peer:
the SMTP server, the DNS) and returns a verdict with the one thing to do about it. The
checks are independent: one failing does not stop the others, so the report shows every
problem at once, the way an administrator works down the list.

With a user the checks follow that user's route (group, channel, server, limits, sender
domains); without one they look at the whole installation (every group's routes, every
allocated server).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    Campaign,
    EngineHeartbeat,
    QueueItem,
    SenderDomain,
    User,
    UserGroup,
)
from app.models.base import (
    CampaignStatus,
    Channel,
    DomainStatus,
    QueueStatus,
    TemplateKind,
    utcnow,
)
from app.models.database import Database
from app.services.dns_verify import verify_sender_domain
from app.services.errors import PostroomError
from app.services.quotas import user_allowance
from app.services.routing import allocation_badges, parse_channel, route_for_user
from app.services.servers import PasswordCipher, get_server
from app.services.smtp_check import run_smtp_check, target_for_server
from app.services.users import get_user
from app.services.vault import open_vault

ENGINE_FRESH_SECONDS = 60  # a heartbeat older than this is a stopped or hung engine
MOVING_WINDOW_MINUTES = 10  # the queue "moves" when something finished in this window
RECENT_ERRORS_HOURS = 1
CHECK_TIMEOUT_SECONDS = 30.0  # one live check may not hold the report longer


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Diagnosis:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.as_dict() for check in self.checks]}


# ---------------------------------------------------------------- database checks


def engines_running(db: Database) -> Check:
    """An engine beat recently (its heartbeat row says running)."""
    fresh_after = utcnow() - timedelta(seconds=ENGINE_FRESH_SECONDS)
    with db.session() as session:
        rows = session.execute(
            select(EngineHeartbeat.engine, EngineHeartbeat.state, EngineHeartbeat.last_beat_at)
            .where(EngineHeartbeat.campaign_id.is_(None))
            .order_by(EngineHeartbeat.engine)
        ).all()
    running = [r.engine for r in rows if r.state == "running" and r.last_beat_at >= fresh_after]
    if running:
        return Check(
            "send engine running",
            True,
            f"{len(running)} engine(s) beat in the last {ENGINE_FRESH_SECONDS} s: "
            + ", ".join(running),
        )
    stale = [f"{r.engine} ({r.state}, last beat {r.last_beat_at:%Y-%m-%d %H:%M} UTC)" for r in rows]
    detail = "No send engine has beaten in the last minute" + (
        f"; known engines: {', '.join(stale)}." if stale else "; none has ever run here."
    )
    return Check(
        "send engine running",
        False,
        detail,
        "Start one: `postroom sendengine start` (containers) or `postroom engine run`.",
    )


def _users(session: Session, username: str | None) -> list[tuple[int, str]]:
    """The user asked about, or every active user: (id, username)."""
    if username is not None:
        user = get_user(session, username)
        return [(user.id, user.username)]
    return [
        (row.id, row.username)
        for row in session.execute(
            select(User.id, User.username).where(User.is_active.is_(True)).order_by(User.id)
        )
    ]


def _route_users(session: Session, username: str | None) -> list[User]:
    """The user asked about, or one user per group (a route is the group's)."""
    if username is not None:
        return [get_user(session, username)]
    users: list[User] = []
    seen: set[int] = set()
    for user in session.scalars(select(User).order_by(User.id)):
        if user.group_id not in seen:
            seen.add(user.group_id)
            users.append(user)
    return users


def routes(db: Database, username: str | None, channels: list[Channel]) -> list[Check]:
    """Each user's group has a delivery server (or a legacy method) for each channel."""
    checks: list[Check] = []
    with db.session() as session:
        for user in _route_users(session, username):
            for channel in channels:
                route = route_for_user(user, channel)
                ok = route.method != "none"
                name = f"route: {route.group} / {channel.value}"
                fix = (
                    None
                    if ok
                    else f"Assign a delivery server to the {channel.value} channel in group "
                    f"{route.group!r}'s Sending Settings."
                )
                checks.append(Check(name, ok, route.reason, fix))
    if not checks:
        checks.append(
            Check(
                "routes",
                False,
                "No user exists, so nothing can be sent.",
                "Create a user group with a delivery server per channel, then a user in it.",
            )
        )
    return checks


def not_allocated(db: Database) -> Check:
    """Delivery servers no group uses (the reference's "Not Allocated")."""
    with db.session() as session:
        badges = allocation_badges(session)
    idle = sorted(name for name, used in badges.items() if not used)
    if not idle:
        detail = f"All {len(badges)} delivery server(s) are assigned to a group's channel."
        return Check("servers allocated", True, detail)
    return Check(
        "servers allocated",
        False,
        f"Not Allocated (no group sends through them): {', '.join(idle)}.",
        "Assign them to a channel in a user group's Sending Settings, or delete the ones "
        "no longer needed.",
    )


def limits(db: Database, username: str | None) -> list[Check]:
    """Users under their daily, monthly, lifetime and default-domain limits."""
    checks: list[Check] = []
    now = utcnow()
    with db.session() as session:
        for user_id, name in _users(session, username):
            user = session.get(User, user_id)
            assert user is not None
            group: UserGroup = user.group
            paths = [False]
            if group.default_sender_domain_enabled:
                paths.append(True)
            for via_default in paths:
                allowance = user_allowance(
                    session, user_id, via_default_domain=via_default, now=now
                )
                if allowance.remaining == 0:
                    checks.append(
                        Check(
                            f"limits: {name}" + (" (default domain)" if via_default else ""),
                            False,
                            allowance.reason or "A sending limit is reached.",
                            "Wait for the window to open, or raise the limit in the group's "
                            "Limits / Preferences.",
                        )
                    )
    if not checks:
        who = f"user {username}" if username else "every active user"
        checks.append(Check("limits", True, f"{who.capitalize()} may send now."))
    return checks


def queue_moving(db: Database) -> Check:
    """Due items of running campaigns are being sent: something finished lately."""
    now = utcnow()
    since = now - timedelta(minutes=MOVING_WINDOW_MINUTES)
    with db.session() as session:
        due = session.scalar(
            select(func.count())
            .select_from(QueueItem)
            .join(Campaign, Campaign.id == QueueItem.campaign_id)
            .where(
                Campaign.status == CampaignStatus.RUNNING,
                QueueItem.status.in_([QueueStatus.QUEUED, QueueStatus.DEFERRED]),
                QueueItem.next_attempt_at <= now,
            )
        )
        recent = session.scalar(
            select(func.count()).select_from(QueueItem).where(QueueItem.sent_at >= since)
        )
        in_flight = session.scalar(
            select(func.count())
            .select_from(QueueItem)
            .where(QueueItem.status == QueueStatus.IN_FLIGHT)
        )
    if not due:
        return Check("queue moving", True, "Nothing is waiting to be sent now.")
    if recent or in_flight:
        return Check(
            "queue moving",
            True,
            f"{due} item(s) due; {recent} sent in the last {MOVING_WINDOW_MINUTES} minutes, "
            f"{in_flight} in flight.",
        )
    return Check(
        "queue moving",
        False,
        f"{due} item(s) are due but nothing was sent in the last {MOVING_WINDOW_MINUTES} "
        "minutes and nothing is in flight.",
        "Start a send engine, or look at its log for errors (`postroom sendengine logs`).",
    )


def recent_errors(db: Database) -> Check:
    """What the servers said to the recent deferrals and failures, most common first."""
    since = utcnow() - timedelta(hours=RECENT_ERRORS_HOURS)
    with db.session() as session:
        rows = session.execute(
            select(QueueItem.server_name, QueueItem.last_reply)
            .join(Campaign, Campaign.id == QueueItem.campaign_id)
            .where(
                QueueItem.status.in_([QueueStatus.DEFERRED, QueueStatus.FAILED]),
                # Items keep no time of their failure: those of campaigns running now or
                # finished within the window are the recent ones.
                (Campaign.status == CampaignStatus.RUNNING) | (Campaign.finished_at >= since),
            )
            .limit(5000)
        ).all()
    replies = Counter(
        f"{server or 'no server'}: {(reply or '').splitlines()[0][:120] if reply else '?'}"
        for server, reply in rows
    )
    if not replies:
        return Check("recent delivery errors", True, "No deferred or failed deliveries lately.")
    top = "; ".join(f"{count}× {reply}" for reply, count in replies.most_common(3))
    return Check(
        "recent delivery errors",
        False,
        f"{sum(replies.values())} deferred or failed item(s); most common: {top}.",
        "Read the replies: 4xx are retried by themselves, 5xx need the recipient or the "
        "server's settings fixed (`postroom campaigns results NAME --status failed`).",
    )


# ---------------------------------------------------------------- live checks


def _servers_on_routes(db: Database, username: str | None, channels: list[Channel]) -> list[str]:
    with db.session() as session:
        names = {
            route.server
            for user in _route_users(session, username)
            for channel in channels
            if (route := route_for_user(user, channel)).server is not None
        }
    return sorted(names)


async def smtp_checks(db: Database, names: list[str], cipher: PasswordCipher | None) -> list[Check]:
    """The staged SMTP test of each server a route uses, now."""

    async def one(name: str) -> Check:
        with db.session() as session:
            try:
                target = target_for_server(get_server(session, name), cipher)
            except PostroomError as exc:
                return Check(
                    f"smtp: {name}",
                    False,
                    str(exc),
                    "Unlock the keyring or import the vault key (`postroom vault import-key`).",
                )
        report = await run_smtp_check(target)
        if report.ok:
            last = report.stages[-1].detail if report.stages else "ok"
            return Check(f"smtp: {name}", True, f"The SMTP test passes ({last}).")
        stage = report.failed_stage or "?"
        return Check(
            f"smtp: {name}",
            False,
            f"The SMTP test fails at {stage}.",
            report.hint or "Open the server's Test tab for the details.",
        )

    return list(await asyncio.gather(*(one(name) for name in names)))


async def sender_domains(
    db: Database, username: str | None, nameserver: tuple[str, int] | None
) -> list[Check]:
    """The user's enabled campaign sender domains still verify (asked live)."""
    managed = False
    with db.session() as session:
        query = select(SenderDomain.domain, SenderDomain.status, User.username).join(User)
        query = query.where(SenderDomain.kind == TemplateKind.CAMPAIGN)
        if username is not None:
            user = get_user(session, username)
            query = query.where(User.id == user.id)
            group = user.group
            # Without sender domain management any From goes; with the default sender
            # domain on, that domain serves users without their own.
            managed = group.sender_domain_management and not group.default_sender_domain_enabled
        rows = session.execute(query.order_by(SenderDomain.domain)).all()
    checks: list[Check] = []
    enabled = [row.domain for row in rows if row.status is DomainStatus.ENABLED]
    if managed and not enabled:
        pending = [row.domain for row in rows]
        checks.append(
            Check(
                "sender domains",
                False,
                f"User {username} has no enabled sender domain"
                + (f" (pending or disabled: {', '.join(pending)})." if pending else "."),
                "Add a sender domain, publish its records and verify it until it is Enabled "
                "(or send from the group's default sender domain when that is on).",
            )
        )
    for domain in enabled:
        report = await verify_sender_domain(db, domain, "campaign", nameserver=nameserver)
        if report.status == "ok":
            checks.append(Check(f"dns: {domain}", True, "Enabled, and its records verify."))
        else:
            bad = [r.host for r in report.records if not r.ok]
            detail = report.error or f"Records that no longer verify: {', '.join(bad)}."
            checks.append(
                Check(
                    f"dns: {domain}",
                    False,
                    detail,
                    "Publish the records shown in the domain's details again at its DNS host.",
                )
            )
    return checks


async def _bounded(name: str, work: Awaitable[list[Check]]) -> list[Check]:
    try:
        return await asyncio.wait_for(work, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return [Check(name, False, f"Did not finish within {CHECK_TIMEOUT_SECONDS:g} s.", None)]


def vault_cipher_if_any(db: Database) -> PasswordCipher | None:
    """The database's vault cipher for the SMTP checks, or None when no key opens it (the
    check of a server with a password then says what is missing); never makes a key."""
    try:
        with db.transaction() as session:
            return open_vault(session, create=False)
    except PostroomError:
        return None


async def diagnose(
    db: Database,
    *,
    username: str | None = None,
    channel: Channel | str | None = None,
    cipher: PasswordCipher | None = None,
    live: bool = True,
    nameserver: tuple[str, int] | None = None,
    engine_check: Callable[[], list[Check]] | None = None,
) -> Diagnosis:
    """Run every check; ``live`` False skips the SMTP and DNS tests (database only).

    ``engine_check`` replaces the heartbeat check (the dashboard passes one that also
    asks Docker for the supervisor programs' states).
    """
    channels = [parse_channel(channel)] if channel is not None else list(Channel)
    loop = asyncio.get_running_loop()

    def database_checks() -> list[Check]:
        found = engine_check() if engine_check is not None else [engines_running(db)]
        found += routes(db, username, channels)
        found += limits(db, username)
        found.append(queue_moving(db))
        found.append(recent_errors(db))
        found.append(not_allocated(db))
        return found

    checks = await loop.run_in_executor(None, database_checks)
    if live:
        names = await loop.run_in_executor(None, _servers_on_routes, db, username, channels)
        live_checks = await asyncio.gather(
            _bounded("smtp", smtp_checks(db, names, cipher)),
            _bounded("dns", sender_domains(db, username, nameserver)),
        )
        for group in live_checks:
            checks += group
    return Diagnosis(checks)
