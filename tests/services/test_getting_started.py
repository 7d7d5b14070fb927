"""The first-run checklist on all three databases: each step ticks when its data appears.

The delivery server's test is a real staged SMTP test against aiosmtpd, stored as the
Test tab stores it; the engine is a real heartbeat row. The one sent item is set by hand
(the engine's delivery is tested elsewhere; here only "a campaign delivered" matters).
"""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import update

from app.engine import heartbeats
from app.models import QueueItem, QueueStatus
from app.models.database import Database
from app.services import campaigns, groups, servers, users
from app.services.dns_settings import update_settings
from app.services.getting_started import getting_started, progress_text
from app.services.sender_domains import create_sender_domain, set_domain_status
from app.services.smtp_check import record_result, run_smtp_check, target_for_server
from tests.smtp_peers import RecordingHandler, start_smtp

pytestmark = pytest.mark.databases

KEY_B64 = base64.b64encode(bytes(range(40))).decode()


def done(db: Database) -> dict[str, bool]:
    return {step.id: step.done for step in getting_started(db)}


def details(db: Database) -> dict[str, str]:
    return {step.id: step.detail for step in getting_started(db)}


async def test_each_step_ticks_when_its_data_appears(database: Database) -> None:
    steps = getting_started(database)
    assert [s.id for s in steps] == [
        "dns_settings",
        "delivery_server",
        "user_group",
        "user",
        "sender_domain",
        "send_engine",
        "test_campaign",
    ]
    assert not any(s.done for s in steps)
    assert all(s.title and s.explanation and s.detail for s in steps)
    assert progress_text(steps) == "0 of 7 done"
    assert "still the placeholder" in details(database)["dns_settings"]

    # 1. DNS settings: every placeholder value replaced.
    with database.transaction() as session:
        update_settings(session, {"spf_include": "include:spf.relay.test"})
    assert done(database)["dns_settings"] is False
    assert details(database)["dns_settings"].startswith("1 of 5 values set")
    with database.transaction() as session:
        update_settings(
            session,
            {
                "dkim_public_key": KEY_B64,
                "sender_domain_target": "relay.test",
                "link_tracker_target": "relay.test",
                "open_tracker_target": "relay.test",
            },
        )
    assert done(database)["dns_settings"] is True

    # 2. A delivery server: added is not enough, its SMTP test must pass.
    peer = await start_smtp(RecordingHandler())
    try:
        with database.transaction() as session:
            for name, port in (("relay", peer.port), ("dead", 1)):
                servers.create_server(
                    session,
                    {"name": name, "host": "127.0.0.1", "port": port, "encryption": "none"},
                )
        assert done(database)["delivery_server"] is False
        assert details(database)["delivery_server"] == "0 of 2 servers pass the SMTP test."
        for name in ("relay", "dead"):
            with database.session() as session:
                target = target_for_server(servers.get_server(session, name), None)
            report = await run_smtp_check(target)
            with database.transaction() as session:
                record_result(session, name, report)
    finally:
        await peer.stop()
    assert done(database)["delivery_server"] is True
    assert details(database)["delivery_server"] == "1 of 2 servers pass the SMTP test."

    # 3. A group: a server on two channels of three is not done.
    with database.transaction() as session:
        groups.create_group(
            session,
            {
                "name": "Senders",
                "marketing_server": "relay",
                "transactional_server": "relay",
                "sender_domain_management": True,
            },
        )
    assert done(database)["user_group"] is False
    assert "autoresponder" in details(database)["user_group"]
    with database.transaction() as session:
        groups.update_group(session, "Senders", {"autoresponder_server": "relay"})
    assert done(database)["user_group"] is True

    # 4. A user.
    with database.transaction() as session:
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Senders"}
        )
    assert done(database)["user"] is True

    # 5. A sender domain: pending until it is enabled.
    with database.transaction() as session:
        create_sender_domain(session, "alice", "mail.example.com")
    assert done(database)["sender_domain"] is False
    assert details(database)["sender_domain"] == "0 of 1 sender domain enabled."
    with database.transaction() as session:
        set_domain_status(session, "mail.example.com", "campaign", "enabled")
    assert done(database)["sender_domain"] is True

    # 6. An engine: a fresh heartbeat of a running one; a stopped one does not count.
    heartbeats.beat(database.engine, "e1", state="stopped", sent=0, failed=0, campaigns={})
    assert done(database)["send_engine"] is False
    assert "one ran before" in details(database)["send_engine"]
    heartbeats.beat(database.engine, "e1", state="running", sent=0, failed=0, campaigns={})
    assert done(database)["send_engine"] is True

    # 7. A test campaign: queued is not delivered; one sent item is.
    with database.transaction() as session:
        created = campaigns.create_campaign(
            session,
            "Test 1",
            "alice",
            "marketing",
            "me@mail.example.com",
            None,
            "Test",
            "Hello",
            None,
            ["me@example.org"],
        )
    assert done(database)["test_campaign"] is False
    with database.transaction() as session:
        session.execute(
            update(QueueItem)
            .where(QueueItem.campaign_id == created["id"])
            .values(status=QueueStatus.SENT)
        )
    assert done(database)["test_campaign"] is True
    assert details(database)["test_campaign"] == "Test 1 delivered 1 message."

    assert progress_text(getting_started(database)) == "7 of 7 done"
