"""Sending limits: daily, calendar-monthly, lifetime and the default domain's rolling window."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User, UserGroup, UserSendCount
from app.models.database import Database
from app.services.errors import ConflictError, LimitExceeded, NotFoundError, ValidationError
from app.services.limits import check_can_send, record_sent, usage

DAY = date(2026, 3, 14)


def add_user(session: Session, **group_settings: object) -> int:
    group = UserGroup(name="Senders", **group_settings)
    user = User(username="alice", email="alice@example.com", group=group)
    session.add_all([group, user])
    session.flush()
    return user.id


def ledger(session: Session) -> list[tuple[date, bool, int]]:
    rows = session.execute(
        select(UserSendCount.day, UserSendCount.via_default_domain, UserSendCount.sent).order_by(
            UserSendCount.day, UserSendCount.via_default_domain
        )
    ).all()
    return [(day, bool(flag), sent) for day, flag, sent in rows]


# ---------------------------------------------------------------- all backends


def test_record_sent_upserts_and_usage_sums_per_period(database: Database) -> None:
    with database.transaction() as session:
        user_id = add_user(session, daily_email_limit=100, monthly_email_limit=0)
        record_sent(session, user_id, 3, today=DAY)
        record_sent(session, user_id, 4, today=DAY)  # same row, incremented
        record_sent(session, user_id, 2, via_default_domain=True, today=DAY)
        record_sent(session, user_id, 10, today=date(2026, 3, 1))
        record_sent(session, user_id, 20, today=date(2026, 2, 28))
    with database.session() as session:
        assert ledger(session) == [
            (date(2026, 2, 28), False, 20),
            (date(2026, 3, 1), False, 10),
            (DAY, False, 7),
            (DAY, True, 2),
        ]
        current = usage(session, user_id, today=DAY)
    assert (current.today, current.this_month, current.lifetime, current.default_domain_30d) == (
        9,
        19,
        39,
        2,
    )
    assert (current.daily_limit, current.monthly_limit, current.lifetime_limit) == (100, None, None)
    assert current.default_domain_limit == 200  # the reference's default
    assert current.as_dict()["as_of"] == "2026-03-14"


def test_daily_limit_blocks_until_the_next_day(database: Database) -> None:
    with database.transaction() as session:
        user_id = add_user(session, daily_email_limit=5)
        record_sent(session, user_id, 4, today=DAY)
        check_can_send(session, user_id, 1, today=DAY)  # reaching the limit exactly is fine
        with pytest.raises(LimitExceeded) as caught:
            check_can_send(session, user_id, 2, today=DAY)
        assert caught.value.limit == "daily"
        assert "00:00 UTC on 2026-03-15" in str(caught.value)
        check_can_send(session, user_id, 5, today=DAY + timedelta(days=1))


def test_two_engines_recording_the_first_send_of_a_day_lose_nothing(database: Database) -> None:
    """Engine B finds no row for the day while engine A's insert is uncommitted; on
    PostgreSQL B's insert then collides and must fall back to incrementing A's row."""
    with database.transaction() as session:
        user_id = add_user(session)
    errors: list[BaseException] = []

    def engine_b() -> None:
        try:
            with database.transaction() as other:
                record_sent(other, user_id, 5, today=DAY)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with database.transaction() as session:
        record_sent(session, user_id, 3, today=DAY)
        thread = threading.Thread(target=engine_b)
        thread.start()
        time.sleep(0.5)  # let B reach its blocked write before A commits
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    with database.session() as session:
        assert ledger(session) == [(DAY, False, 8)]


# ---------------------------------------------------------------- SQLite


def test_monthly_limit_is_per_calendar_month(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(session, monthly_email_limit=10)
        record_sent(session, user_id, 10, today=date(2026, 1, 31))
        with pytest.raises(LimitExceeded) as caught:
            check_can_send(session, user_id, today=date(2026, 1, 31))
        assert caught.value.limit == "monthly"
        assert "starts again on 2026-02-01" in str(caught.value)
        assert usage(session, user_id, today=date(2026, 2, 1)).this_month == 0
        check_can_send(session, user_id, 10, today=date(2026, 2, 1))
        record_sent(session, user_id, 10, today=date(2026, 12, 31))
        with pytest.raises(LimitExceeded, match="starts again on 2027-01-01"):
            check_can_send(session, user_id, today=date(2026, 12, 31))


def test_lifetime_limit_never_resets(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(session, lifetime_email_limit=50, daily_email_limit=1000)
        record_sent(session, user_id, 30, today=date(2020, 1, 1))
        record_sent(session, user_id, 20, today=DAY)
        with pytest.raises(LimitExceeded) as caught:
            check_can_send(session, user_id, today=date(2030, 1, 1))
        assert caught.value.limit == "lifetime"
        assert "never resets" in str(caught.value)


def test_default_domain_limit_uses_a_rolling_30_day_window(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(
            session,
            default_sender_domain_enabled=True,
            default_sender_domain="shared.example.com",
            default_sender_domain_monthly_limit=10,
        )
        record_sent(session, user_id, 6, via_default_domain=True, today=date(2026, 1, 20))
        record_sent(session, user_id, 4, via_default_domain=True, today=date(2026, 2, 10))
        record_sent(session, user_id, 100, today=date(2026, 2, 10))  # own domains: not counted
        # Feb 18 window is Jan 20 .. Feb 18: full, across the month boundary.
        with pytest.raises(LimitExceeded) as caught:
            check_can_send(session, user_id, via_default_domain=True, today=date(2026, 2, 18))
        assert caught.value.limit == "default_sender_domain"
        # The Jan 20 sends leave the window on Feb 19 (= Jan 20 + 30 days).
        assert "room frees up on 2026-02-19" in str(caught.value)
        # Not via the default domain: this limit does not apply.
        check_can_send(session, user_id, 5, today=date(2026, 2, 18))
        # Last day the Jan 20 sends count, then the first day they don't.
        assert usage(session, user_id, today=date(2026, 2, 18)).default_domain_30d == 10
        assert usage(session, user_id, today=date(2026, 2, 19)).default_domain_30d == 4
        check_can_send(session, user_id, 6, via_default_domain=True, today=date(2026, 2, 19))
        with pytest.raises(LimitExceeded, match="larger than the limit itself"):
            check_can_send(session, user_id, 11, via_default_domain=True, today=date(2026, 2, 19))


def test_default_domain_limit_zero_is_unlimited_and_needs_an_active_domain(
    sqlite_database: Database,
) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(session, default_sender_domain_monthly_limit=0)
        record_sent(session, user_id, 1000, via_default_domain=True, today=DAY)
        with pytest.raises(ConflictError, match="Activate default sender domain"):
            check_can_send(session, user_id, via_default_domain=True, today=DAY)
        user = session.get(User, user_id)
        assert user is not None
        user.group.default_sender_domain_enabled = True
        assert check_can_send(session, user_id, 5000, via_default_domain=True, today=DAY)


def test_no_limits_means_unlimited(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(
            session, daily_email_limit=0, monthly_email_limit=None, lifetime_email_limit=0
        )
        record_sent(session, user_id, 1_000_000, today=DAY)
        current = check_can_send(session, user_id, 1_000_000, today=DAY)
        assert (current.daily_limit, current.monthly_limit, current.lifetime_limit) == (
            None,
            None,
            None,
        )


def test_refused_check_stores_nothing_and_bad_input_is_refused(
    sqlite_database: Database,
) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(session, daily_email_limit=1)
        with pytest.raises(LimitExceeded):
            check_can_send(session, user_id, 2, today=DAY)
        assert ledger(session) == []
        with pytest.raises(ValidationError, match="Count"):
            record_sent(session, user_id, 0, today=DAY)
        with pytest.raises(ValidationError, match="Count"):
            check_can_send(session, user_id, -1, today=DAY)
        with pytest.raises(NotFoundError):
            usage(session, user_id + 1, today=DAY)
        with pytest.raises(NotFoundError):
            record_sent(session, user_id + 1, today=DAY)
        # A datetime is taken as its day rather than breaking the Date comparison.
        record_sent(session, user_id, today=datetime(2026, 3, 14, 23, 59))
        assert ledger(session) == [(DAY, False, 1)]
