"""How fast the delivery queue claims and acknowledges, against a bare SQL loop doing the same.

    .venv/bin/python bench/bench_queue.py [--items N] [--batch N] [--pg-admin-url URL]

In a new PostgreSQL database (dropped afterwards) with N queued items (default 100,000) of
one running campaign, times

1. ``DeliveryQueue.claim(batch)`` then ``record`` of a "250" for every claimed item, one
   transaction each, until the queue is empty (what one engine's bookkeeping costs);
2. the peer, pgbench-like: the same two statements as bare SQL on one psycopg connection
   (``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING id``, then one
   ``UPDATE … WHERE id = ANY(%s) AND lease_owner = %s``), over the same number of fresh items.

Prints items/s of each and the ratio ours / peer. Figures only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.queue import DeliveryQueue, Outcome
from app.models import Campaign, User, UserGroup
from app.models.base import CampaignStatus, QueueStatus, utcnow
from app.models.database import Database
from app.services.campaigns import bulk_enqueue

PG_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def fill(db: Database, name: str, items: int) -> int:
    with db.transaction() as s:
        user = s.query(User).first()
        if user is None:
            user = User(username="bench", email="b@example.com", group=UserGroup(name="B"))
        campaign = Campaign(
            name=name,
            user=user,
            status=CampaignStatus.RUNNING,
            from_email="news@example.com",
            subject="Hi",
        )
        s.add(campaign)
        s.flush()
        due = utcnow() - timedelta(seconds=1)
        recipients = (f"r{i}@example.com" for i in range(items))
        bulk_enqueue(s.connection(), campaign.id, recipients, "example.com", due=due)
        campaign_id = campaign.id
    with db.engine.connect() as c:
        c.execute(text("ANALYZE queue_items"))
        c.commit()
    return campaign_id


def ours(db: Database, batch: int) -> tuple[int, float]:
    queue = DeliveryQueue(db.engine, "bench-engine")
    done = 0
    started = time.perf_counter()
    while claimed := queue.claim(batch, 60):
        done += queue.record(
            [Outcome(x.id, QueueStatus.SENT, "250 2.0.0 Ok", "Sink") for x in claimed]
        )
    elapsed = time.perf_counter() - started
    queue.close()
    return done, elapsed


def peer(db: Database, batch: int) -> tuple[int, float]:
    raw = db.engine.raw_connection()
    cursor = raw.cursor()
    done = 0
    started = time.perf_counter()
    while True:
        cursor.execute(
            "UPDATE queue_items SET status = 'in_flight', lease_owner = 'peer', "
            "lease_expires_at = now() + interval '60 seconds' WHERE id IN ("
            "SELECT id FROM queue_items WHERE status IN ('queued', 'deferred') "
            "AND next_attempt_at <= now() AND campaign_id IN "
            "(SELECT id FROM campaigns WHERE status = 'running') "
            "LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
            (batch,),
        )
        ids = [row[0] for row in cursor.fetchall()]
        raw.commit()
        if not ids:
            break
        cursor.execute(
            "UPDATE queue_items SET status = 'sent', attempts = attempts + 1, "
            "last_reply = '250 2.0.0 Ok', server_name = 'Sink', sent_at = now(), "
            "lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ANY(%s) AND lease_owner = 'peer' AND status = 'in_flight'",
            (ids,),
        )
        raw.commit()
        done += cursor.rowcount
    elapsed = time.perf_counter() - started
    raw.close()
    return done, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    name = f"postroom_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        db = Database(args.pg_admin_url.rsplit("/", 1)[0] + "/" + name)
        fill(db, "Ours", args.items)
        our_count, our_seconds = ours(db, args.batch)
        with db.engine.begin() as c:  # the peer drains a queue of the same size
            c.execute(text("UPDATE campaigns SET status = 'completed'"))
        fill(db, "Peer", args.items)
        peer_count, peer_seconds = peer(db, args.batch)
        db.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    assert our_count == peer_count == args.items, (our_count, peer_count)
    our_rate, peer_rate = our_count / our_seconds, peer_count / peer_seconds
    print(
        f"postgresql claim+ack {args.items:,} items, batches of {args.batch}: "
        f"DeliveryQueue {our_seconds:.2f} s ({our_rate:,.0f} items/s); "
        f"bare SQL loop {peer_seconds:.2f} s ({peer_rate:,.0f} items/s); "
        f"ratio ours/bare {our_rate / peer_rate:.2f}"
    )


if __name__ == "__main__":
    main()
