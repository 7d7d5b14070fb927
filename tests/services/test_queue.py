"""The delivery queue protocol on all three backends: claims, leases, outcomes, rescue."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select, text, update

from app.engine.queue import (
    ITEMS,
    ClaimedItem,
    DeliveryQueue,
    Outcome,
    claim_candidates,
    leased_to,
    queue_counts,
    running_campaigns,
)
from app.models import Campaign, QueueItem, QueueStatus, User, UserGroup
from app.models.base import CampaignStatus, utcnow
from app.models.database import Database, create_db_engine


def seed(db: Database, count: int, *, status: CampaignStatus = CampaignStatus.RUNNING) -> int:
    """A campaign with ``count`` queued items, due now; its id."""
    with db.transaction() as s:
        user = s.scalars(select(User)).first()
        if user is None:
            user = User(username="alice", email="a@example.com", group=UserGroup(name="G"))
            s.add(user)
        campaign = Campaign(
            name=f"C{s.query(Campaign).count()}",
            user=user,
            status=status,
            from_email="news@example.com",
            subject="Hi",
        )
        s.add(campaign)
        s.flush()
        due = utcnow() - timedelta(seconds=1)
        s.execute(
            insert(QueueItem),
            [
                {
                    "campaign_id": campaign.id,
                    "recipient": f"r{i}@example.com",
                    "status": QueueStatus.QUEUED,
                    "attempts": 0,
                    "next_attempt_at": due,
                    "message_id": f"<{campaign.id}.{i}@example.com>",
                }
                for i in range(count)
            ],
        )
        return campaign.id


def statuses(db: Database) -> Counter[str]:
    return Counter(queue_counts(db.engine))


def item(db: Database, item_id: int) -> QueueItem:
    with db.session() as s:
        return s.get_one(QueueItem, item_id)


def test_claim_takes_due_items_of_running_campaigns_only(database: Database) -> None:
    running = seed(database, 5)
    seed(database, 5, status=CampaignStatus.PAUSED)
    seed(database, 5, status=CampaignStatus.DRAFT)
    with database.transaction() as s:  # one running item is not due yet
        s.execute(
            update(QueueItem)
            .where(QueueItem.recipient == "r4@example.com", QueueItem.campaign_id == running)
            .values(next_attempt_at=utcnow() + timedelta(hours=1))
        )
    queue = DeliveryQueue(database.engine, "engine-1")
    claimed = queue.claim(10, 60)
    assert sorted(c.recipient for c in claimed) == [f"r{i}@example.com" for i in range(4)]
    assert {c.campaign_id for c in claimed} == {running}
    assert all(c.message_id.startswith(f"<{running}.") and c.attempts == 0 for c in claimed)
    row = item(database, claimed[0].id)
    assert row.status is QueueStatus.IN_FLIGHT and row.lease_owner == "engine-1"
    assert row.lease_expires_at is not None and row.lease_expires_at > utcnow()
    assert queue.claim(10, 60) == []  # nothing else is due


def test_outcomes_are_recorded_only_under_a_lease_still_held(database: Database) -> None:
    seed(database, 4)
    queue = DeliveryQueue(database.engine, "engine-1")
    a, b, c, d = sorted(queue.claim(4, 60), key=lambda x: x.id)
    assert queue.mark_sent(a, "250 2.0.0 Ok: queued as X", "Relay")
    retry = utcnow() + timedelta(minutes=5)
    assert queue.mark_deferred(b, "451 4.7.1 Try again later", retry)
    assert queue.mark_failed(c, "550 5.1.1 No such user", "Relay")
    assert not queue.mark_sent(a, "250 again", "Relay")  # no longer leased: nothing written

    sent, deferred, failed = item(database, a.id), item(database, b.id), item(database, c.id)
    assert (sent.status, sent.attempts, sent.last_reply, sent.server_name) == (
        QueueStatus.SENT,
        1,
        "250 2.0.0 Ok: queued as X",
        "Relay",
    )
    assert sent.sent_at is not None and sent.lease_owner is None
    assert (deferred.status, deferred.attempts) == (QueueStatus.DEFERRED, 1)
    assert abs((deferred.next_attempt_at - retry).total_seconds()) < 0.01
    assert (failed.status, failed.last_reply) == (QueueStatus.FAILED, "550 5.1.1 No such user")

    # The deferred item is due again only at its retry time, with its Message-ID unchanged.
    assert queue.claim(10, 60) == []
    again = queue.claim(10, 60, now=retry + timedelta(seconds=1))
    assert [(x.id, x.message_id, x.attempts) for x in again] == [(b.id, b.message_id, 1)]

    # Another engine cannot write d's outcome: the lease is engine-1's.
    assert not DeliveryQueue(database.engine, "engine-2").mark_sent(d, "250", "Relay")
    with pytest.raises(ValueError, match="not an outcome"):
        queue.record([Outcome(d.id, QueueStatus.QUEUED)])


def test_hold_and_release_held(database: Database) -> None:
    campaign_id = seed(database, 3)
    queue = DeliveryQueue(database.engine, "engine-1")
    first, second, third = sorted(queue.claim(3, 60), key=lambda x: x.id)
    later = utcnow() + timedelta(hours=1)
    assert queue.hold(first, "daily limit of 1000 reached", until=later)
    assert queue.hold(second, "server hourly quota")
    assert queue.hold(third, "daily limit of 1000 reached", until=later)
    held = item(database, first.id)
    assert (held.status, held.held_reason, held.lease_owner) == (
        QueueStatus.HELD,
        "daily limit of 1000 reached",
        None,
    )
    assert held.attempts == 0  # held is not an attempt
    assert queue.claim(10, 60) == []  # held items are not claimable
    assert queue.release_held(now=utcnow()) == 1  # only the one without a window
    assert queue.release_held(reason="daily limit of 1000 reached", campaign_id=campaign_id) == 2
    assert item(database, first.id).held_reason is None
    assert len(queue.claim(10, 60)) == 3


def test_release_take_back_and_rescue(database: Database) -> None:
    seed(database, 30)
    one = DeliveryQueue(database.engine, "engine-1")
    two = DeliveryQueue(database.engine, "engine-2")
    mine = one.claim(10, 60)
    theirs = two.claim(10, 1)
    assert len(mine) == len(theirs) == 10

    assert one.renew(120) == 10
    assert item(database, mine[0].id).lease_expires_at > utcnow() + timedelta(seconds=100)

    # engine-2's leases expire; a rescue by engine-1 returns them, leaving its own alone.
    later = utcnow() + timedelta(seconds=5)
    assert one.rescue_expired(now=later) == 10
    assert statuses(database) == {"queued": 20, "in_flight": 10}
    assert two.mark_sent(theirs[0], "250", "Relay") is False  # lost its lease

    # engine-1 "dies"; a new process with the same id takes its leases back at once.
    restarted = DeliveryQueue(database.engine, "engine-1")
    assert restarted.take_back() == 10
    assert statuses(database) == {"queued": 30}

    # A graceful stop gives back what was claimed but not sent.
    batch = restarted.claim(5, 60)
    assert restarted.mark_sent(batch[0], "250", "Relay")
    assert restarted.release() == 4
    assert statuses(database) == {"queued": 29, "sent": 1}


def test_campaigns_complete_when_every_item_is_final(database: Database) -> None:
    campaign_id = seed(database, 2)
    queue = DeliveryQueue(database.engine, "engine-1")
    a, b = queue.claim(2, 60)
    assert queue.mark_sent(a, "250", "Relay")
    assert queue.complete_finished_campaigns() == 0
    assert queue.mark_failed(b, "550 no", "Relay")
    assert queue.complete_finished_campaigns() == 1
    with database.session() as s:
        campaign = s.get_one(Campaign, campaign_id)
    assert campaign.status is CampaignStatus.COMPLETED and campaign.finished_at is not None
    assert campaign.version == 2


def test_concurrent_claimers_never_claim_an_item_twice(database: Database) -> None:
    seed(database, 5000)
    claims: list[list[ClaimedItem]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(number: int) -> None:
        # Its own engine: its own connections, as a separate process would have.
        engine = create_db_engine(database.url)
        queue = DeliveryQueue(engine, f"engine-{number}")
        try:
            while batch := queue.claim(50, 60):
                with lock:
                    claims.append(batch)
                queue.record([Outcome(x.id, QueueStatus.SENT, "250", "Sink") for x in batch])
        except BaseException as exc:
            errors.append(exc)
        finally:
            queue.close()
            engine.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert errors == []
    ids = [x.id for batch in claims for x in batch]
    assert len(ids) == 5000 and len(set(ids)) == 5000  # every item exactly once
    assert statuses(database) == {"sent": 5000}


# ---------------------------------------------------------------- the indexes are used


def _plan(connection: Connection, statement: Any) -> str:
    """The backend's plan for ``statement`` with its real, processed parameters."""
    found: list[str] = []

    def explain(_c: Any, cursor: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
        if found or not sql.lstrip().upper().startswith("SELECT"):
            return  # e.g. the BEGIN that SQLite's begin listener sends first
        prefix = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "
        cursor.execute(prefix + sql, params)
        found.append("\n".join(" ".join(str(v) for v in row) for row in cursor.fetchall()))

    event.listen(connection, "before_cursor_execute", explain)
    try:
        connection.execute(statement).all()
    finally:
        event.remove(connection, "before_cursor_execute", explain)
    return found[0]


def test_the_hot_queries_use_their_indexes(database: Database) -> None:
    campaign_id = seed(database, 3000)
    with database.transaction() as s:  # most of a real queue is done: sent rows
        s.execute(
            update(QueueItem)
            .where(QueueItem.id % 30 != 0, QueueItem.campaign_id == campaign_id)
            .values(status=QueueStatus.SENT)
        )
    DeliveryQueue(database.engine, "engine-1").claim(20, 60)
    with database.engine.connect() as c:
        if database.backend == "postgresql":
            c.execute(text("ANALYZE queue_items"))
            c.execute(text("ANALYZE campaigns"))
        elif database.backend in ("mysql", "mariadb"):
            c.execute(text("ANALYZE TABLE queue_items"))
        else:
            c.execute(text("ANALYZE"))
        c.commit()
        running: Any = (
            [campaign_id] if database.backend in ("mysql", "mariadb") else running_campaigns()
        )
        claim_plan = _plan(c, claim_candidates(utcnow(), 50, running))
        lease_plan = _plan(c, select(ITEMS.c.id).where(leased_to("engine-1")))
    assert "ix_queue_items_claimable" in claim_plan, claim_plan
    assert "ix_queue_items_lease_owner" in lease_plan, lease_plan


def test_a_batch_of_outcomes_keeps_each_items_own_reply(database: Database) -> None:
    seed(database, 6)
    queue = DeliveryQueue(database.engine, "engine-1")
    claimed = sorted(queue.claim(6, 60), key=lambda x: x.id)
    retry = utcnow() + timedelta(minutes=1)
    outcomes = [
        Outcome(claimed[0].id, QueueStatus.SENT, "250 queued as A", "Relay 1"),
        Outcome(claimed[1].id, QueueStatus.SENT, "250 queued as B", "Relay 2"),
        Outcome(claimed[2].id, QueueStatus.DEFERRED, "451 busy", "Relay 1", retry),
        Outcome(claimed[3].id, QueueStatus.DEFERRED, "421 closing", "Relay 2", retry),
        Outcome(claimed[4].id, QueueStatus.FAILED, "550 unknown user", "Relay 1"),
        Outcome(claimed[5].id, QueueStatus.FAILED, "554 rejected", "Relay 2"),
    ]
    other = DeliveryQueue(database.engine, "engine-2")
    assert other.record(outcomes) == 0  # not its leases: nothing written
    assert queue.record(outcomes) == 6
    rows = [item(database, x.id) for x in claimed]
    assert [(r.status, r.last_reply, r.server_name, r.attempts) for r in rows] == [
        (o.status, o.reply, o.server_name, 1) for o in outcomes
    ]
    assert rows[0].sent_at is not None and rows[4].sent_at is None
    assert all(abs((r.next_attempt_at - retry).total_seconds()) < 0.01 for r in rows[2:4])
    assert all(r.lease_owner is None for r in rows)
    queue.close()
    other.close()
