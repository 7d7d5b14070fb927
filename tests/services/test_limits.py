"""Sending limits: daily, calendar-monthly, lifetime and the default domain's rolling window."""

from __future__ import annotations

import json
import threading
import time
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.models import User, UserGroup, UserSendCount
from app.models.database import Database
from app.services import groups, sender_domains, users
from app.services.errors import ConflictError, LimitExceeded, NotFoundError, ValidationError
from app.services.limits import check_can_send, record_sent, usage, usage_for_users

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


# ---------------------------------------------------------------- many users at once


def _seed_group(database: Database, name: str, **values: Any) -> None:
    with database.transaction() as session:
        groups.create_group(session, {"name": name, **values})


def _seed_user(database: Database, username: str, group: str) -> int:
    with database.transaction() as session:
        values = {"username": username, "email": f"{username}@example.com", "group": group}
        return users.create_user(session, values).id


def test_usage_for_users_is_usage_for_each_user(database: Database) -> None:
    """The Users page's and ``users list``'s one grouped query counts what limits.usage
    counts per user, on every backend."""
    _seed_group(database, "Sales", daily_email_limit=50, lifetime_email_limit=5000)
    _seed_group(database, "Plain")
    ids = [
        _seed_user(database, "dave", "Sales"),
        _seed_user(database, "erin", "Plain"),
        _seed_user(database, "fay", "Plain"),
    ]
    day = date(2024, 3, 15)  # a leap year: the 30-day window starts on 15 February
    sends = [
        (day, 1, False),
        (day, 2, True),
        (date(2024, 3, 1), 4, False),
        (date(2024, 2, 29), 8, True),
        (date(2024, 2, 15), 16, True),
        (date(2024, 2, 14), 32, True),
        (day + timedelta(days=1), 64, False),
        (date(2023, 12, 31), 128, False),
    ]
    with database.transaction() as session:
        for user_id in ids[:2]:
            for when, count, via_default in sends:
                record_sent(session, user_id, count, via_default_domain=via_default, today=when)
    with database.session() as session:
        members = list(session.scalars(select(User).order_by(User.username)))
        together = usage_for_users(session, members, today=day)
        for user_id in ids:
            assert together[user_id] == usage(session, user_id, today=day)
        assert together[ids[0]].default_domain_30d == 2 + 8 + 16
        assert together[ids[0]].lifetime == 1 + 2 + 4 + 8 + 16 + 32 + 64 + 128
        only_erin = usage_for_users(session, members[1:2], today=day)
        assert list(only_erin) == [ids[1]] and only_erin[ids[1]] == together[ids[1]]
        rows = users.user_rows(session, today=day)
        sales = users.user_rows(session, group="Sales", today=day)
    assert [row["username"] for row in rows] == ["dave", "erin", "fay"]
    assert rows[0]["today"] == 3 and rows[0]["daily_limit"] == 50
    assert rows[0]["lifetime_limit"] == 5000 and rows[1]["daily_limit"] is None
    assert rows[2]["lifetime"] == 0 and rows[2]["domain_count"] == 0
    assert [row["username"] for row in sales] == ["dave"]
    json.dumps(rows)  # the rows `users list --json` prints


def test_user_rows_take_the_same_queries_for_any_number_of_users(database: Database) -> None:
    """The Users page loads in a fixed number of queries, not one or more per user."""
    _seed_group(database, "Sales", sender_domain_management=True)

    def queries_for_rows() -> int:
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(str(args[2]))

        event.listen(database.engine, "before_cursor_execute", count)
        try:
            with database.session() as session:
                users.user_rows(session)
        finally:
            event.remove(database.engine, "before_cursor_execute", count)
        return len(statements)

    for number in range(2):
        _seed_user(database, f"user{number}", "Sales")
    few = queries_for_rows()
    for number in range(2, 12):
        user_id = _seed_user(database, f"user{number}", "Sales")
        with database.transaction() as session:
            record_sent(session, user_id, number)
            sender_domains.create_sender_domain(session, f"user{number}", f"d{number}.example.com")
    assert queries_for_rows() == few <= 4
    with database.session() as session:
        counts = {row["username"]: row["domain_count"] for row in users.user_rows(session)}
    assert counts["user0"] == 0 and counts["user11"] == 1


def test_each_counter_is_refused_with_its_own_sentence(sqlite_database: Database) -> None:
    """The three counters share one check and one sentence, each with its own remedy;
    the one that resets last is named first."""
    with sqlite_database.transaction() as session:
        user_id = add_user(
            session, lifetime_email_limit=10, monthly_email_limit=8, daily_email_limit=6
        )
        record_sent(session, user_id, 6, today=DAY)
        refusals = {}
        for count in (5, 3, 1):
            with pytest.raises(LimitExceeded) as caught:
                check_can_send(session, user_id, count, today=DAY)
            refusals[caught.value.limit] = str(caught.value)
    who = "User alice of group Senders has sent 6 of the"
    assert refusals == {
        "lifetime": f"{who} lifetime limit of 10 emails and 5 more would exceed it; this limit "
        "never resets, so raise the Lifetime Email Limit in the group's Limits.",
        "monthly": f"{who} monthly limit of 8 emails and 3 more would exceed it; the count "
        "starts again on 2026-04-01 (UTC), or raise the Monthly Email Limit in the group's "
        "Limits.",
        "daily": f"{who} daily limit of 6 emails and 1 more would exceed it; the count starts "
        "again at 00:00 UTC on 2026-03-15, or raise the Daily Email Limit in the group's Limits.",
    }
