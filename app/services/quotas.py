"""How much may be sent now: a user's limits and a delivery server's quotas, and the ledger
writes that count what was sent. The send engine asks before it claims and records after
the servers accepted.

Decisions:

* Hours and days are UTC, like the user limits (``limits``): engines on several hosts
  must agree on when an hour or a day starts.
* A user's limits are ``limits``' own rule (``limits.counters`` and
  ``limits.default_domain_counter``), so an allowance and ``check_can_send`` never
  disagree. A server's hourly quota counts the current UTC hour's ledger row; its daily
  quota sums the UTC day's hour rows.
* ``remaining`` is the least room over the limits that apply; ``None`` or ``0`` as a limit
  means unlimited. When nothing may go, the reason names the exhausted limit that frees
  last (a limit that never frees by itself, first), since sending resumes only when all
  of them have room, and ``until`` is when that happens.
* A group whose default sender domain is off allows nothing through it: remaining 0 with
  the sentence that says how to turn it on, and no ``until``.
* Recording adds to both ledgers in the caller's transaction, one upsert per distinct key
  (``ledger.add_sent``), keys in sorted order so that two engines writing the same rows
  lock them in the same order and cannot deadlock on each other.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import DeliveryServer, ServerSendCount
from app.services import ledger, limits, validation
from app.services.errors import ConflictError, NotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Allowance:
    """How many more messages may go now, and when nothing may: why, and until when."""

    remaining: int | None  # None: unlimited
    reason: str | None  # when remaining == 0: the limit that stops sending and the way out
    until: datetime | None  # when remaining == 0: when it frees (UTC); None: never by itself


UNLIMITED = Allowance(remaining=None, reason=None, until=None)


@dataclass(frozen=True)
class Delivery:
    """``count`` messages of one user accepted by one server (None: a legacy method)."""

    user_id: int
    server_id: int | None
    via_default_domain: bool
    count: int


@dataclass(frozen=True)
class _Window:
    room: int | None  # None: unlimited
    until: datetime | None
    reason: str


_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _combine(windows: Iterable[_Window]) -> Allowance:
    limited = [window for window in windows if window.room is not None]
    if not limited:
        return UNLIMITED
    remaining = min(window.room for window in limited if window.room is not None)
    if remaining:
        return Allowance(remaining=remaining, reason=None, until=None)
    exhausted = [window for window in limited if window.room == 0]
    # The first of equals wins: callers list the limit that resets last first.
    last = max(exhausted, key=lambda w: (w.until is None, w.until or _EARLIEST))
    return Allowance(remaining=0, reason=last.reason, until=last.until)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("quotas: 'now' must be timezone-aware (UTC)")
    return now.astimezone(UTC)


def _hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _user_window(counter: limits.Counter, who: str) -> _Window:
    return _Window(room=counter.room(), until=counter.frees_at, reason=counter.refusal(who))


def user_allowance(
    session: Session, user_id: int, *, via_default_domain: bool, now: datetime | None = None
) -> Allowance:
    """How many more messages ``user_id`` may send now: the least room left under the
    group's daily, monthly and lifetime limits, and, when sending through the group's
    default sender domain, under that domain's rolling-window limit."""
    moment = _utc(now)
    current = limits.usage(session, user_id, today=moment.date())
    who = limits.who(current)
    windows = [_user_window(counter, who) for counter in limits.counters(current)]
    if via_default_domain:
        try:
            limits.require_default_domain(session, user_id, current)
        except ConflictError as exc:
            return Allowance(remaining=0, reason=str(exc), until=None)
        counter = limits.default_domain_counter(session, user_id, current)
        windows.append(_user_window(counter, who))
    return _combine(windows)


def server_allowance(session: Session, server_id: int, *, now: datetime | None = None) -> Allowance:
    """How many more messages delivery server ``server_id`` may take now under its hourly
    quota (this UTC hour) and daily quota (this UTC day)."""
    moment = _utc(now)
    # Read afresh, not from the session's identity map: an engine's long-lived session
    # must see a quota the administrator just raised.
    found = session.execute(
        select(DeliveryServer.name, DeliveryServer.hourly_quota, DeliveryServer.daily_quota).where(
            DeliveryServer.id == server_id
        )
    ).one_or_none()
    if found is None:
        raise NotFoundError("delivery server", server_id)
    name, hourly, daily = found[0], found[1] or None, found[2] or None
    if hourly is None and daily is None:
        return UNLIMITED
    hour = _hour_start(moment)
    day_start = hour.replace(hour=0)
    next_day = day_start + timedelta(days=1)
    this_hour, today = session.execute(
        select(
            func.coalesce(
                func.sum(case((ServerSendCount.hour == hour, ServerSendCount.sent), else_=0)), 0
            ),
            func.coalesce(func.sum(ServerSendCount.sent), 0),
        ).where(
            ServerSendCount.server_id == server_id,
            ServerSendCount.hour >= day_start,
            ServerSendCount.hour < next_day,
        )
    ).one()
    next_hour = hour + timedelta(hours=1)
    on_day = f" on {next_hour.date().isoformat()}" if next_hour.date() != hour.date() else ""
    windows = (
        # int(): MariaDB returns SUM() as Decimal.
        _server_window(
            name, "daily", int(today), daily, next_day, f"00:00 UTC on {next_day:%Y-%m-%d}"
        ),
        _server_window(
            name, "hourly", int(this_hour), hourly, next_hour, f"{next_hour:%H:%M} UTC{on_day}"
        ),
    )
    return _combine(windows)


def _server_window(
    name: str, kind: str, sent: int, quota: int | None, until: datetime, when: str
) -> _Window:
    room = None if quota is None else max(0, quota - sent)
    reason = (
        f"Delivery server {name!r} has sent {sent} of its {kind} quota of {quota}; sending "
        f"resumes at {when}, or raise {kind.capitalize()} quota on the server."
    )
    return _Window(room=room, until=until, reason=reason)


def record_deliveries(
    session: ledger.LedgerWriter, deliveries: Sequence[Delivery], *, now: datetime | None = None
) -> None:
    """Count ``deliveries`` in the users' and servers' ledgers, in the caller's transaction.

    Equal keys are added up first, so one call writes each (user, day, via default domain)
    and (server, hour) row once. A server deleted since it delivered is skipped: its
    ledger would have gone with it.
    """
    moment = _utc(now)
    per_user: defaultdict[tuple[int, bool], int] = defaultdict(int)
    per_server: defaultdict[int, int] = defaultdict(int)
    for delivery in deliveries:  # all checked before anything is written
        number = validation.bounded_int(delivery.count, "Count", minimum=1)
        per_user[(delivery.user_id, delivery.via_default_domain)] += number
        if delivery.server_id is not None:
            per_server[delivery.server_id] += number
    day, hour = moment.date(), _hour_start(moment)
    for (user_id, via_default_domain), number in sorted(per_user.items()):
        limits.add_user_sent(session, user_id, day, via_default_domain, number)
    for server_id, number in sorted(per_server.items()):
        key = {"server_id": server_id, "hour": hour}
        if not ledger.add_sent(session, ServerSendCount, key, number):
            log.info("delivery server %s is gone; %d sends of it not counted", server_id, number)
