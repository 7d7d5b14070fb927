"""How fast a campaign's recipients are queued, against the raw driver writing the same rows.

    .venv/bin/python bench/bench_enqueue.py [--recipients N] [--backends sqlite,postgresql]
                                            [--pg-admin-url URL]

For each backend, in a fresh database (a temporary SQLite file; a new PostgreSQL database
dropped afterwards), times

1. ``create_campaign`` with N recipients (default 1,000,000; 1 in 1,000 invalid, 1 in 500 a
   duplicate, 2,000 domains): parsing, validation, dedupe, Message-IDs, the bulk insert
   (executemany on SQLite, COPY on PostgreSQL) and the commit;
2. the peer: the bare driver (``sqlite3`` executemany / psycopg ``COPY``) writing the very
   rows step 1 wrote into the same table and indexes for a second campaign, no validation,
   prepared in advance so only the writing and commit are timed.

Targets: 1,000,000 in at most 10 s on SQLite and 20 s on PostgreSQL. The ratio (ours / peer)
says what validation and dedupe cost on top of the bare writes. Figures only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.models import Campaign, QueueItem, User, UserGroup
from app.models.database import Database
from app.services.campaigns import create_campaign

PG_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def recipients(count: int) -> Iterator[str]:
    for i in range(count):
        if i % 1000 == 999:
            yield f"broken {i}"
        elif i % 500 == 1:
            yield f"User{i - 1}@Domain{(i - 1) % 2000}.Example.com"  # the previous one again
        else:
            yield f"User{i}@Domain{i % 2000}.Example.com"


def measure(url: str, count: int) -> tuple[float, float, int]:
    db = Database(url)
    with db.transaction() as s:
        group = UserGroup(name="Bench")
        s.add_all([group, User(username="bench", email="bench@example.com", group=group)])
    started = time.perf_counter()
    with db.transaction() as s:
        created = create_campaign(
            s,
            "Bench",
            "bench",
            "marketing",
            "news@example.com",
            None,
            "Hello",
            "Hi",
            None,
            recipients(count),
        )
    ours = time.perf_counter() - started
    queued = int(created["recipients"])

    with db.transaction() as s:
        peer = Campaign(
            name="Peer",
            user_id=s.query(User.id).scalar(),
            from_email="news@example.com",
            subject="Hello",
        )
        s.add(peer)
        s.flush()
        peer_id = peer.id
    with db.session() as s:
        rows = [
            (peer_id, r, status, attempts, due, mid)
            for r, status, attempts, due, mid in s.execute(
                text(
                    "SELECT recipient, status, attempts, next_attempt_at, message_id "
                    "FROM queue_items WHERE campaign_id = :c"
                ),
                {"c": created["id"]},
            )
        ]
    columns = "campaign_id, recipient, status, attempts, next_attempt_at, message_id"
    raw = db.engine.raw_connection()
    try:
        started = time.perf_counter()
        cursor = raw.cursor()
        if db.backend == "postgresql":
            with cursor.copy(f"COPY queue_items ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.execute("BEGIN")
            cursor.executemany(
                f"INSERT INTO queue_items ({columns}) VALUES (?, ?, ?, ?, ?, ?)", rows
            )
        raw.commit() if db.backend == "postgresql" else cursor.execute("COMMIT")
        peer_seconds = time.perf_counter() - started
    finally:
        raw.close()
    with db.session() as s:
        assert s.query(QueueItem).filter(QueueItem.campaign_id == peer_id).count() == queued
    db.dispose()
    return ours, peer_seconds, queued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    targets = {"sqlite": 10.0, "postgresql": 20.0}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                ours, peer, queued = measure(f"sqlite:///{folder}/bench.sqlite3", args.recipients)
        else:
            name = f"postroom_bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = args.pg_admin_url.rsplit("/", 1)[0] + "/" + name
                ours, peer, queued = measure(url, args.recipients)
            finally:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
        target = targets.get(backend, 20.0) * args.recipients / 1_000_000
        print(
            f"{backend:10s} {args.recipients:>9,} lines -> {queued:,} queued: "
            f"create_campaign {ours:6.2f} s ({queued / ours:,.0f}/s, target <= {target:.1f} s "
            f"{'met' if ours <= target else 'MISSED'}); raw driver {peer:6.2f} s "
            f"({queued / peer:,.0f}/s); ratio ours/raw {ours / peer:.2f}"
        )


if __name__ == "__main__":
    main()
