"""What may be sent now (users' limits, servers' quotas) and the ledgers that count it."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.orm import Session

from app.models import DeliveryServer, ServerSendCount, User, UserGroup, UserSendCount
from app.models.database import Database
from app.services import servers
from app.services.errors import LimitExceeded, NotFoundError, ValidationError
from app.services.limits import check_can_send, record_sent
from app.services.quotas import (
    UNLIMITED,
    Allowance,
    Delivery,
    record_deliveries,
    server_allowance,
    user_allowance,
)

NOW = datetime(2026, 3, 14, 13, 20, tzinfo=UTC)
DAY = NOW.date()


def add_user(session: Session, name: str = "alice", **group_settings: object) -> int:
    group = UserGroup(name=f"Senders {name}", **group_settings)
    user = User(username=name, email=f"{name}@example.com", group=group)
    session.add_all([group, user])
    session.flush()
    return user.id


def add_server(session: Session, name: str = "relay1", **quotas: object) -> int:
    server = DeliveryServer(name=name, host="smtp.example.com", port=587, **quotas)
    session.add(server)
    session.flush()
    return server.id


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def server_ledger(session: Session) -> list[tuple[int, datetime, int]]:
    rows = session.execute(
        select(ServerSendCount.server_id, ServerSendCount.hour, ServerSendCount.sent).order_by(
            ServerSendCount.server_id, ServerSendCount.hour
        )
    )
    return [(server_id, hour, sent) for server_id, hour, sent in rows]


def user_ledger(session: Session) -> list[tuple[int, date, bool, int]]:
    rows = session.execute(
        select(
            UserSendCount.user_id,
            UserSendCount.day,
            UserSendCount.via_default_domain,
            UserSendCount.sent,
        ).order_by(UserSendCount.user_id, UserSendCount.day, UserSendCount.via_default_domain)
    )
    return [(user_id, day, bool(flag), sent) for user_id, day, flag, sent in rows]


def send(session: Session, user_id: int, count: int, now: datetime, *, via: bool = False) -> None:
    record_deliveries(session, [Delivery(user_id, None, via, count)], now=now)


# ---------------------------------------------------------------- users, all backends


def test_user_allowance_is_the_least_room_and_frees_with_its_window(database: Database) -> None:
    with database.transaction() as session:
        user_id = add_user(
            session, daily_email_limit=10, monthly_email_limit=15, lifetime_email_limit=40
        )
        assert user_allowance(session, user_id, via_default_domain=False, now=NOW) == Allowance(
            10, None, None
        )
        send(session, user_id, 9, NOW)
        # One under the daily limit (the monthly has 6 left): the least room is 1.
        assert user_allowance(session, user_id, via_default_domain=False, now=NOW).remaining == 1
        send(session, user_id, 1, NOW)
        at_limit = user_allowance(session, user_id, via_default_domain=False, now=NOW)
        assert at_limit == Allowance(
            0,
            "User alice of group Senders alice has sent 10 of the daily limit of 10 emails; the "
            "count starts again at 00:00 UTC on 2026-03-15, or raise the Daily Email Limit in "
            "the group's Limits.",
            midnight(date(2026, 3, 15)),
        )
        # The last moment of the day is still the day; its first moment after is not.
        last = datetime(2026, 3, 14, 23, 59, 59, 999999, tzinfo=UTC)
        assert user_allowance(session, user_id, via_default_domain=False, now=last).remaining == 0
        tomorrow = midnight(date(2026, 3, 15))
        assert user_allowance(session, user_id, via_default_domain=False, now=tomorrow) == (
            Allowance(5, None, None)  # the month's room, now the smaller one
        )
        send(session, user_id, 5, tomorrow)
        monthly = user_allowance(session, user_id, via_default_domain=False, now=tomorrow)
        assert (monthly.remaining, monthly.until) == (0, midnight(date(2026, 4, 1)))
        assert monthly.reason is not None and "monthly limit of 15" in monthly.reason
        # A "now" in another zone is the same moment: 01:30 at UTC+02:00 on 1 April is still
        # March in UTC, and the month opens at 02:00 there.
        plus_two = timezone(timedelta(hours=2))
        for local, remaining in ((datetime(2026, 4, 1, 1, 30), 0), (datetime(2026, 4, 1, 2), 10)):
            moment = local.replace(tzinfo=plus_two)
            allowance = user_allowance(session, user_id, via_default_domain=False, now=moment)
            assert allowance.remaining == remaining


def test_when_several_limits_are_exhausted_the_one_that_frees_last_is_named(
    database: Database,
) -> None:
    with database.transaction() as session:
        user_id = add_user(
            session, daily_email_limit=5, monthly_email_limit=5, lifetime_email_limit=5
        )
        send(session, user_id, 5, NOW)
        blocked = user_allowance(session, user_id, via_default_domain=False, now=NOW)
        assert (blocked.remaining, blocked.until) == (0, None)
        assert blocked.reason is not None and "never resets" in blocked.reason
        user = session.get(User, user_id)
        assert user is not None
        user.group.lifetime_email_limit = 0  # unlimited: now the month frees last
        session.flush()
        blocked = user_allowance(session, user_id, via_default_domain=False, now=NOW)
        assert (blocked.remaining, blocked.until) == (0, midnight(date(2026, 4, 1)))


def test_default_domain_window_counts_only_its_sends_and_frees_on_the_right_day(
    database: Database,
) -> None:
    with database.transaction() as session:
        user_id = add_user(
            session,
            daily_email_limit=50,
            default_sender_domain_enabled=True,
            default_sender_domain="shared.example.com",
            default_sender_domain_monthly_limit=10,
        )
        send(session, user_id, 6, datetime(2026, 1, 20, 8, tzinfo=UTC), via=True)
        send(session, user_id, 4, datetime(2026, 2, 10, 8, tzinfo=UTC), via=True)
        send(session, user_id, 30, datetime(2026, 2, 18, 8, tzinfo=UTC))  # own domain
        feb18 = datetime(2026, 2, 18, 12, tzinfo=UTC)
        full = user_allowance(session, user_id, via_default_domain=True, now=feb18)
        assert full == Allowance(
            0,
            "User alice of group Senders alice has sent 10 emails through the default sender "
            "domain in the last 30 days, which reaches its limit of 10; room frees up on "
            "2026-02-19 as older sends leave the window, or raise the default sender domain's "
            "Monthly Limit in the group's Preferences.",
            midnight(date(2026, 2, 19)),
        )
        # Not through the default domain, only the daily limit applies.
        assert user_allowance(session, user_id, via_default_domain=False, now=feb18).remaining == 20
        feb19 = midnight(date(2026, 2, 19))
        assert user_allowance(session, user_id, via_default_domain=True, now=feb19).remaining == 6
        user = session.get(User, user_id)
        assert user is not None
        user.group.default_sender_domain_monthly_limit = 0  # unlimited
        session.flush()
        assert user_allowance(session, user_id, via_default_domain=True, now=feb18).remaining == 20
        user.group.default_sender_domain_enabled = False
        session.flush()
        off = user_allowance(session, user_id, via_default_domain=True, now=feb18)
        assert (off.remaining, off.until) == (0, None)
        assert off.reason is not None and "Activate default sender domain" in off.reason


# ---------------------------------------------------------------- users, SQLite


def test_no_limits_or_zero_limits_are_unlimited(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(
            session,
            daily_email_limit=0,
            monthly_email_limit=None,
            lifetime_email_limit=0,
            default_sender_domain_enabled=True,
            default_sender_domain_monthly_limit=0,
        )
        send(session, user_id, 1_000_000, NOW, via=True)
        for via in (False, True):
            assert user_allowance(session, user_id, via_default_domain=via, now=NOW) is UNLIMITED


def test_a_limit_lowered_below_what_was_sent_leaves_zero_not_less(
    sqlite_database: Database,
) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(session)
        send(session, user_id, 8, NOW)
        user = session.get(User, user_id)
        assert user is not None
        user.group.daily_email_limit = 3
        session.flush()
        allowance = user_allowance(session, user_id, via_default_domain=False, now=NOW)
        assert allowance.remaining == 0
        assert allowance.reason is not None and "has sent 8 of the daily limit of 3" in (
            allowance.reason
        )


def test_bad_input_is_refused_before_anything_is_written(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        user_id = add_user(session)
        with pytest.raises(ValidationError, match="Count"):
            record_deliveries(
                session, [Delivery(user_id, None, False, 2), Delivery(user_id, None, False, 0)]
            )
        assert user_ledger(session) == []
        with pytest.raises(NotFoundError):
            user_allowance(session, user_id + 1, via_default_domain=False, now=NOW)
        with pytest.raises(NotFoundError):
            server_allowance(session, 999, now=NOW)
        with pytest.raises(NotFoundError):
            send(session, user_id + 1, 1, NOW)
        with pytest.raises(ValueError, match="timezone-aware"):
            user_allowance(session, user_id, via_default_domain=False, now=datetime(2026, 1, 1))


# ---------------------------------------------------------------- servers, all backends


def test_server_hourly_and_daily_quotas(database: Database) -> None:
    with database.transaction() as session:
        user_id = add_user(session)
        server_id = add_server(session, hourly_quota=5, daily_quota=8)
        assert server_allowance(session, server_id, now=NOW) == Allowance(5, None, None)
        deliver = [Delivery(user_id, server_id, False, 4)]
        record_deliveries(session, deliver, now=NOW)
        assert server_allowance(session, server_id, now=NOW).remaining == 1  # one under
        record_deliveries(session, [Delivery(user_id, server_id, False, 1)], now=NOW)
        assert server_allowance(session, server_id, now=NOW) == Allowance(
            0,
            "Delivery server 'relay1' has sent 5 of its hourly quota of 5; sending resumes at "
            "14:00 UTC, or raise Hourly quota on the server.",
            datetime(2026, 3, 14, 14, tzinfo=UTC),
        )
        end_of_hour = datetime(2026, 3, 14, 13, 59, 59, 999999, tzinfo=UTC)
        assert server_allowance(session, server_id, now=end_of_hour).remaining == 0
        two_pm = datetime(2026, 3, 14, 14, tzinfo=UTC)
        assert server_allowance(session, server_id, now=two_pm).remaining == 3  # the day's room
        record_deliveries(session, [Delivery(user_id, server_id, False, 3)], now=two_pm)
        daily = server_allowance(session, server_id, now=two_pm)
        assert daily == Allowance(
            0,
            "Delivery server 'relay1' has sent 8 of its daily quota of 8; sending resumes at "
            "00:00 UTC on 2026-03-15, or raise Daily quota on the server.",
            midnight(date(2026, 3, 15)),
        )
        # Hour rows of other days do not count toward today.
        assert server_allowance(session, server_id, now=midnight(date(2026, 3, 15))).remaining == 5
        assert server_ledger(session) == [
            (server_id, datetime(2026, 3, 14, 13, tzinfo=UTC), 5),
            (server_id, two_pm, 3),
        ]


def test_server_quota_edges_late_hour_unlimited_and_deleted_servers(database: Database) -> None:
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    with database.transaction() as session:
        user_id = add_user(session)
        server_id = add_server(session, hourly_quota=2, daily_quota=None)
        free_id = add_server(session, "relay2", hourly_quota=0, daily_quota=None)
        record_deliveries(
            session,
            [Delivery(user_id, server_id, False, 2), Delivery(user_id, free_id, False, 10**6)],
            now=late,
        )
        blocked = server_allowance(session, server_id, now=late)
        assert blocked.until == datetime(2027, 1, 1, tzinfo=UTC)
        assert blocked.reason is not None
        assert "resumes at 00:00 UTC on 2027-01-01" in blocked.reason
        assert server_allowance(session, free_id, now=late) is UNLIMITED
    with database.transaction() as session:
        servers.delete_server(session, "relay2")
    with database.transaction() as session:
        # A server deleted while its messages were in flight: the user's count still lands.
        record_deliveries(session, [Delivery(user_id, free_id, False, 1)], now=late)
    with database.session() as session:
        assert [row[0] for row in server_ledger(session)] == [server_id]  # cascaded away
        assert user_ledger(session) == [(user_id, late.date(), False, 10**6 + 3)]


# ---------------------------------------------------------------- recording, all backends


def test_equal_keys_are_added_up_into_one_statement_each(database: Database) -> None:
    with database.transaction() as session:
        alice = add_user(session)
        bob = add_user(session, "bob")
        relay = add_server(session)
    batch = [
        Delivery(alice, relay, False, 2),
        Delivery(bob, relay, False, 4),
        Delivery(alice, relay, False, 3),
        Delivery(alice, None, True, 1),  # a legacy method: no server to count
    ]
    statements: list[str] = []

    def keep(*args: Any) -> None:
        statements.append(str(args[2]).split()[0].upper())

    event.listen(database.engine, "before_cursor_execute", keep)
    try:
        for minutes in (0, 30):  # new rows first, then the same rows again
            with database.transaction() as session:
                record_deliveries(session, batch, now=NOW + timedelta(minutes=minutes))
    finally:
        event.remove(database.engine, "before_cursor_execute", keep)
    # (alice, own), (alice, default), (bob, own) and (relay, 13:00): one upsert each.
    assert [s for s in statements if s not in ("BEGIN", "COMMIT")] == ["INSERT"] * 8
    with database.session() as session:
        assert user_ledger(session) == [
            (alice, DAY, False, 10),
            (alice, DAY, True, 2),
            (bob, DAY, False, 8),
        ]
        assert server_ledger(session) == [(relay, datetime(2026, 3, 14, 13, tzinfo=UTC), 18)]


def test_engines_recording_the_same_new_rows_at_once_lose_no_count(database: Database) -> None:
    """Two engines record into the same user and server rows, each hour's rows new to both,
    released together so that both find no row and both insert; every count must land, and
    neither engine's transaction may be killed as a deadlock (MariaDB's gap locks)."""
    with database.transaction() as session:
        user_id = add_user(session)
        server_id = add_server(session)
    rounds = 30
    start = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def engine(count: int) -> None:
        try:
            for hour in range(rounds):
                start.wait()
                with database.transaction() as session:
                    record_deliveries(
                        session,
                        [Delivery(user_id, server_id, False, count)],
                        now=NOW + timedelta(hours=hour),
                    )
        except BaseException as exc:  # reported by the assertion below
            start.abort()
            errors.append(exc)

    threads = [threading.Thread(target=engine, args=(count,)) for count in (3, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with database.session() as session:
        hours = server_ledger(session)
        days = user_ledger(session)
    assert hours == [
        (server_id, NOW.replace(minute=0) + timedelta(hours=h), 8) for h in range(rounds)
    ]
    assert sum(sent for *_, sent in days) == 8 * rounds


def test_an_engine_blocked_by_an_uncommitted_insert_adds_to_that_row(database: Database) -> None:
    """Engine B writes the hour's row while engine A's insert of it is uncommitted: B waits
    for A and then adds to A's row."""
    with database.transaction() as session:
        user_id = add_user(session)
        server_id = add_server(session)
    errors: list[BaseException] = []
    b_started = threading.Event()

    def engine_b() -> None:
        try:
            b_started.set()
            with database.transaction() as other:
                record_deliveries(other, [Delivery(user_id, server_id, False, 5)], now=NOW)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with database.transaction() as session:
        record_deliveries(session, [Delivery(user_id, server_id, False, 3)], now=NOW)
        thread = threading.Thread(target=engine_b)
        thread.start()
        b_started.wait(10)
        thread.join(timeout=0.5)  # B reaches its blocked write before A commits
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    with database.session() as session:
        assert server_ledger(session) == [(server_id, NOW.replace(minute=0), 8)]
        assert user_ledger(session) == [(user_id, DAY, False, 8)]


# ---------------------------------------------------------------- properties

LIMITS = st.one_of(st.none(), st.just(0), st.integers(min_value=1, max_value=60))
# (days before today, via the default domain, count)
SENDS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=70), st.booleans(), st.integers(1, 25)),
    max_size=12,
)


def _room(limit: int | None, counted: int) -> int | None:
    return max(0, limit - counted) if limit else None


def _least(rooms: list[int | None]) -> int | None:
    known = [room for room in rooms if room is not None]
    return min(known) if known else None


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40, deadline=None
)
@given(
    daily=LIMITS,
    monthly=LIMITS,
    lifetime=LIMITS,
    default_domain=LIMITS,
    via=st.booleans(),
    sends=SENDS,
    now=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_user_remaining_is_the_least_room_over_the_limits(
    database: Database,
    daily: int | None,
    monthly: int | None,
    lifetime: int | None,
    default_domain: int | None,
    via: bool,
    sends: list[tuple[int, bool, int]],
    now: datetime,
) -> None:
    today = now.date()
    with database.session() as session:  # closed unsaved: each example starts empty
        user_id = add_user(
            session,
            daily_email_limit=daily,
            monthly_email_limit=monthly,
            lifetime_email_limit=lifetime,
            default_sender_domain_enabled=True,
            default_sender_domain_monthly_limit=default_domain or 0,  # NOT NULL: 0 = none
        )
        for days_ago, through_default, count in sends:
            record_sent(
                session,
                user_id,
                count,
                via_default_domain=through_default,
                today=today - timedelta(days=days_ago),
            )
        allowance = user_allowance(session, user_id, via_default_domain=via, now=now)
        # The same rule, written from the definitions rather than from the code.
        rooms = [
            _room(daily, sum(c for ago, _, c in sends if ago == 0)),
            _room(monthly, sum(c for ago, _, c in sends if ago < today.day)),
            _room(lifetime, sum(c for _, _, c in sends)),
        ]
        if via:
            rooms.append(_room(default_domain, sum(c for ago, d, c in sends if d and ago < 30)))
        assert allowance.remaining == _least(rooms)
        if allowance.remaining is None:
            check_can_send(session, user_id, 10**6, via_default_domain=via, today=today)
        else:
            assert allowance.remaining >= 0
            if allowance.remaining:
                check_can_send(
                    session, user_id, allowance.remaining, via_default_domain=via, today=today
                )
                assert (allowance.reason, allowance.until) == (None, None)
            else:
                assert allowance.reason
                assert allowance.until is None or allowance.until > now
            with pytest.raises(LimitExceeded):
                check_can_send(
                    session, user_id, allowance.remaining + 1, via_default_domain=via, today=today
                )


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40, deadline=None
)
@given(
    hourly=LIMITS,
    daily=LIMITS,
    # (hours before now, count)
    sends=st.lists(
        st.tuples(st.integers(min_value=0, max_value=60), st.integers(1, 25)), max_size=10
    ),
    now=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_server_remaining_is_the_least_room_over_its_quotas(
    database: Database,
    hourly: int | None,
    daily: int | None,
    sends: list[tuple[int, int]],
    now: datetime,
) -> None:
    with database.session() as session:  # closed unsaved: each example starts empty
        user_id = add_user(session)
        server_id = add_server(session, hourly_quota=hourly, daily_quota=daily)
        for hours_ago, count in sends:
            moment = now - timedelta(hours=hours_ago)
            record_deliveries(session, [Delivery(user_id, server_id, False, count)], now=moment)
        allowance = server_allowance(session, server_id, now=now)
        this_hour = sum(c for ago, c in sends if ago == 0)
        today = sum(c for ago, c in sends if (now - timedelta(hours=ago)).date() == now.date())
        expected = _least([_room(hourly, this_hour), _room(daily, today)])
        assert allowance.remaining == expected
        if expected == 0:
            assert allowance.reason and allowance.until is not None
            assert now < allowance.until <= now + timedelta(days=1)
        else:
            assert (allowance.reason, allowance.until) == (None, None)


# ---------------------------------------------------------------- migration 0004


def test_migration_0004_adds_and_removes_the_server_ledger(db_url: str) -> None:
    from tests.services.test_queue_migration import _migrate

    db = Database(db_url)
    with db.transaction() as session:
        user_id = add_user(session)
        server_id = add_server(session)
        record_deliveries(session, [Delivery(user_id, server_id, False, 2)], now=NOW)
    db.dispose()
    _migrate(db_url, "0003", down=True)
    engine = create_engine(db_url)
    assert "server_send_counts" not in inspect(engine).get_table_names()
    engine.dispose()
    db = Database(db_url)  # migrates to the head again
    try:
        assert "server_send_counts" in inspect(db.engine).get_table_names()
        with db.transaction() as session:
            assert user_ledger(session) == [(user_id, DAY, False, 2)]  # kept throughout
            record_deliveries(session, [Delivery(user_id, server_id, False, 3)], now=NOW)
            assert server_ledger(session) == [(server_id, NOW.replace(minute=0), 3)]
        with db.transaction() as session:
            servers.delete_server(session, "relay1")
        with db.session() as session:
            assert server_ledger(session) == []  # ON DELETE CASCADE
    finally:
        db.dispose()
