"""Per-user sending limits of the user group, counted from the ``user_send_counts`` ledger.

Decisions:

* Days are UTC calendar days: send engines on several hosts must agree on when "today"
  and "this month" start, whatever the hosts' time zones.
* Daily = the UTC day; monthly = the calendar month (the reference's "per calendar
  month"); lifetime = every row; the default sender domain's limit counts only mail sent
  through it over a rolling 30-day window, today and the 29 days before.
* ``None`` or ``0`` means unlimited, for every limit.
* A batch must fit entirely: ``count`` more messages may not take a counter over its
  limit, so reaching the limit exactly is allowed.
* ``record_sent`` writes no audit entry: it is the send ledger, written per delivered
  batch by send engines, not an administrator's change; the ledger is its own record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.models import User, UserSendCount
from app.services import ledger, validation
from app.services.errors import ConflictError, LimitExceeded, NotFoundError

ROLLING_WINDOW_DAYS = 30
DEFAULT_DOMAIN = "default_sender_domain"  # the kind of its LimitExceeded and Counter


@dataclass(frozen=True)
class Usage:
    """What a user has sent, as of ``as_of`` (a UTC day), next to the group's limits."""

    username: str
    group: str
    as_of: date
    today: int
    this_month: int
    lifetime: int
    default_domain_30d: int
    daily_limit: int | None
    monthly_limit: int | None
    lifetime_limit: int | None
    default_domain_limit: int | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["as_of"] = self.as_of.isoformat()
        return data


def utc_today() -> date:
    return datetime.now(UTC).date()


def _day(today: date | None) -> date:
    if today is None:
        return utc_today()
    # datetime is a date subclass; a Date column comparison needs the plain day.
    return today.date() if isinstance(today, datetime) else today


def _limit(value: int | None) -> int | None:
    return value or None


def _load_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError("user", user_id)
    return user


def _window_start(day: date) -> date:
    return day - timedelta(days=ROLLING_WINDOW_DAYS - 1)


def _sum_where(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, UserSendCount.sent), else_=0)), 0)


def _totals(day: date) -> tuple[ColumnElement[Any], ...]:
    """What counts toward each limit on ``day``: the one rule, for one user or many."""
    sent_on = UserSendCount.day
    via_default = UserSendCount.via_default_domain.is_(True)
    return (
        _sum_where(sent_on == day),
        _sum_where(and_(sent_on >= day.replace(day=1), sent_on <= day)),
        func.coalesce(func.sum(UserSendCount.sent), 0),
        _sum_where(and_(via_default, sent_on >= _window_start(day), sent_on <= day)),
    )


# Up to this many users are named in the query; more, and every user's totals are read,
# which costs less than a long IN list.
_NAMED_USERS_MAX = 500


def usage_for_users(
    session: Session, users: Sequence[User], *, today: date | None = None
) -> dict[int, Usage]:
    """``usage`` of every user in ``users`` (their groups loaded), keyed by user id, in one
    grouped query whatever their number."""
    day = _day(today)
    query = select(UserSendCount.user_id, *_totals(day)).group_by(UserSendCount.user_id)
    if len(users) <= _NAMED_USERS_MAX:
        query = query.where(UserSendCount.user_id.in_([user.id for user in users]))
    # int(): MariaDB returns SUM() as Decimal.
    totals = {
        user_id: tuple(int(value) for value in sums) for user_id, *sums in session.execute(query)
    }
    result: dict[int, Usage] = {}
    for user in users:
        group = user.group
        sent_today, this_month, lifetime, default_30d = totals.get(user.id, (0, 0, 0, 0))
        result[user.id] = Usage(
            username=user.username,
            group=group.name,
            as_of=day,
            today=sent_today,
            this_month=this_month,
            lifetime=lifetime,
            default_domain_30d=default_30d,
            daily_limit=_limit(group.daily_email_limit),
            monthly_limit=_limit(group.monthly_email_limit),
            lifetime_limit=_limit(group.lifetime_email_limit),
            default_domain_limit=_limit(group.default_sender_domain_monthly_limit),
        )
    return result


def usage(session: Session, user_id: int, *, today: date | None = None) -> Usage:
    user = _load_user(session, user_id)
    return usage_for_users(session, [user], today=today)[user.id]


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def _window_frees_on(session: Session, user_id: int, day: date, needed: int) -> date | None:
    """The first day on which at least ``needed`` default-domain sends have left the
    rolling window (assuming no new ones), or None if the window never holds that many."""
    rows = session.execute(
        select(UserSendCount.day, UserSendCount.sent)
        .where(
            UserSendCount.user_id == user_id,
            UserSendCount.via_default_domain.is_(True),
            UserSendCount.day >= _window_start(day),
            UserSendCount.day <= day,
        )
        .order_by(UserSendCount.day)
    ).all()
    freed = 0
    for sent_day, sent in rows:
        freed += sent
        if freed >= needed:
            # A day's sends leave the window when it no longer includes that day.
            return sent_day + timedelta(days=ROLLING_WINDOW_DAYS)
    return None


@dataclass(frozen=True)
class Counter:
    """One of a user's limits as it stands on a day: the one rule that both ``check_can_send``
    and ``quotas.user_allowance`` read, so a refusal and an allowance never disagree."""

    kind: str  # "lifetime", "monthly", "daily" or "default_sender_domain"
    sent: int  # what counts toward it now
    limit: int | None  # None: unlimited
    frees_at: datetime | None  # when room opens again (UTC); None: never by itself
    remedy: str  # when room opens again and which setting raises the limit

    def room(self) -> int | None:
        """How many more may go now; None when unlimited; never negative (a lowered
        limit can sit below what was already sent)."""
        return None if self.limit is None else max(0, self.limit - self.sent)

    def fits(self, number: int) -> bool:
        """A batch must fit entirely; reaching the limit exactly is allowed."""
        return self.limit is None or self.sent + number <= self.limit

    def refusal(self, who: str, number: int | None = None) -> str:
        """The sentence that says this limit stops ``who``: from sending ``number`` more,
        or (``number`` None) from sending any more now."""
        if self.kind == DEFAULT_DOMAIN:
            spent = (
                f"{who} has sent {self.sent} emails through the default sender domain in the "
                f"last {ROLLING_WINDOW_DAYS} days"
            )
            if number is None:
                return f"{spent}, which reaches its limit of {self.limit}; {self.remedy}"
            over = f"{number} more would exceed its limit of {self.limit}"
            return f"{spent} and {over}; {self.remedy}"
        spent = f"{who} has sent {self.sent} of the {self.kind} limit of {self.limit} emails"
        if number is None:
            return f"{spent}; {self.remedy}"
        return f"{spent} and {number} more would exceed it; {self.remedy}"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def who(current: Usage) -> str:
    return f"User {current.username} of group {current.group}"


def counters(current: Usage) -> tuple[Counter, ...]:
    """The group's calendar limits, from the one that resets last to the soonest, so that
    the first one that blocks is the one that really stops sending."""
    day = current.as_of
    tomorrow = day + timedelta(days=1)
    return (
        Counter(
            "lifetime",
            current.lifetime,
            current.lifetime_limit,
            None,
            "this limit never resets, so raise the Lifetime Email Limit in the group's Limits.",
        ),
        Counter(
            "monthly",
            current.this_month,
            current.monthly_limit,
            _midnight(_next_month(day)),
            f"the count starts again on {_next_month(day).isoformat()} (UTC), or raise the "
            "Monthly Email Limit in the group's Limits.",
        ),
        Counter(
            "daily",
            current.today,
            current.daily_limit,
            _midnight(tomorrow),
            f"the count starts again at 00:00 UTC on {tomorrow.isoformat()}, "
            "or raise the Daily Email Limit in the group's Limits.",
        ),
    )


def require_default_domain(session: Session, user_id: int, current: Usage) -> None:
    """ConflictError unless the user's group has its default sender domain switched on."""
    if not _load_user(session, user_id).group.default_sender_domain_enabled:
        raise ConflictError(
            f"Group {current.group} has no active default sender domain; check "
            '"Activate default sender domain" in its Preferences or send from a '
            "verified sender domain."
        )


def default_domain_counter(
    session: Session, user_id: int, current: Usage, number: int = 1
) -> Counter:
    """The default sender domain's rolling-window limit, for a batch of ``number``: when
    the batch does not fit, ``frees_at`` is the day enough older sends leave the window."""
    limit = current.default_domain_limit
    sent = current.default_domain_30d
    frees_on = None
    if limit is not None and sent + number > limit and number <= limit:
        frees_on = _window_frees_on(session, user_id, current.as_of, sent + number - limit)
    when = (
        f"room frees up on {frees_on.isoformat()} as older sends leave the window"
        if frees_on
        else f"a batch of {number} is larger than the limit itself"
    )
    return Counter(
        DEFAULT_DOMAIN,
        sent,
        limit,
        _midnight(frees_on) if frees_on else None,
        f"{when}, or raise the default sender domain's Monthly Limit in the group's Preferences.",
    )


def check_can_send(
    session: Session,
    user_id: int,
    count: int = 1,
    *,
    via_default_domain: bool = False,
    today: date | None = None,
) -> Usage:
    """Raise ``LimitExceeded`` if ``count`` more messages would pass a limit; else the usage.

    Limits are checked from the one that resets last (lifetime) to the soonest, so the
    message names the limit that really blocks sending.
    """
    number = validation.bounded_int(count, "Count", minimum=1)
    current = usage(session, user_id, today=today)
    for counter in counters(current):
        if not counter.fits(number):
            raise LimitExceeded(counter.kind, counter.refusal(who(current), number))
    if via_default_domain:
        require_default_domain(session, user_id, current)
        counter = default_domain_counter(session, user_id, current, number)
        if not counter.fits(number):
            raise LimitExceeded(counter.kind, counter.refusal(who(current), number))
    return current


def record_sent(
    session: Session,
    user_id: int,
    count: int = 1,
    *,
    via_default_domain: bool = False,
    today: date | None = None,
) -> None:
    """Add ``count`` sent messages to the user's counter for the (UTC) day."""
    number = validation.bounded_int(count, "Count", minimum=1)
    _load_user(session, user_id)
    add_user_sent(session, user_id, _day(today), via_default_domain, number)


def add_user_sent(
    session: ledger.LedgerWriter, user_id: int, day: date, via_default_domain: bool, number: int
) -> None:
    """The ledger write of ``record_sent`` for a user known to exist (one statement, usually)."""
    key = {"user_id": user_id, "day": day, "via_default_domain": via_default_domain}
    if not ledger.add_sent(session, UserSendCount, key, number):
        raise NotFoundError("user", user_id)
