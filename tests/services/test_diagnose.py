"""The troubleshooter against real databases and a real SMTP peer (aiosmtpd)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app.engine import heartbeats
from app.models.database import Database
from app.services import campaigns, groups, servers, users
from app.services.diagnose import diagnose
from tests.smtp_peers import RecordingHandler, start_smtp

pytestmark = pytest.mark.databases


def names(result: object) -> dict[str, bool]:
    return {c.name: c.ok for c in result.checks}  # type: ignore[attr-defined]


def setup(db: Database, port: int | None, *, daily_limit: int | None = None) -> None:
    with db.transaction() as session:
        if port is not None:
            servers.create_server(
                session,
                {
                    "name": "relay",
                    "host": "127.0.0.1",
                    "port": port,
                    "encryption": "none",
                    "timeout_seconds": 5,
                },
            )
        servers.create_server(
            session, {"name": "spare", "host": "127.0.0.1", "port": 1, "encryption": "none"}
        )
        values: dict[str, object] = {"name": "Senders", "daily_email_limit": daily_limit}
        if port is not None:
            values |= {
                "marketing_server": "relay",
                "transactional_server": "relay",
                "autoresponder_server": "relay",
            }
        groups.create_group(session, values)
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Senders"}
        )


async def test_a_broken_installation_fails_with_a_fix_per_problem(database: Database) -> None:
    setup(database, None)
    with database.transaction() as session:
        campaigns.create_campaign(
            session,
            "Spring",
            "alice",
            "marketing",
            "news@example.com",
            None,
            "Hi",
            "Hello",
            None,
            ["a@example.org"],
        )
        campaigns.start_campaign(session, "Spring")
    result = await diagnose(database, username="alice", channel="marketing", live=False)
    verdicts = names(result)
    assert not result.ok
    assert verdicts["send engine running"] is False
    assert verdicts["route: Senders / marketing"] is False
    assert verdicts["servers allocated"] is False
    assert verdicts["queue moving"] is False
    failing = {c.name: c for c in result.checks if not c.ok}
    assert "spare" in failing["servers allocated"].detail
    assert "Sending Settings" in (failing["route: Senders / marketing"].fix or "")
    assert all(c.fix for c in failing.values())
    assert set(result.as_dict()) == {"ok", "checks"}
    assert all(set(c) == {"name", "ok", "detail", "fix"} for c in result.as_dict()["checks"])


async def test_a_working_route_passes_live_checks(database: Database) -> None:
    peer = await start_smtp(RecordingHandler())
    try:
        setup(database, peer.port)
        heartbeats.beat(database.engine, "e1", state="running", sent=0, failed=0, campaigns={})
        result = await diagnose(database, username="alice", channel="marketing", live=True)
    finally:
        await peer.stop()
    verdicts = names(result)
    assert verdicts["send engine running"] is True
    assert verdicts["route: Senders / marketing"] is True
    assert verdicts["smtp: relay"] is True
    assert verdicts["limits"] is True
    assert verdicts["queue moving"] is True
    assert verdicts["servers allocated"] is False  # "spare" is Not Allocated


async def test_a_dead_server_and_a_used_up_limit_are_named(database: Database) -> None:
    peer = await start_smtp(RecordingHandler())
    port = peer.port
    await peer.stop()  # nothing listens there any more
    setup(database, port, daily_limit=1)
    from app.services.quotas import Delivery, record_deliveries

    with database.transaction() as session:
        record_deliveries(session, [Delivery(1, None, False, 1)])
    result = await diagnose(database, username="alice", channel="marketing", live=True)
    failing = {c.name: c for c in result.checks if not c.ok}
    assert "smtp: relay" in failing and failing["smtp: relay"].fix
    assert "daily limit" in failing["limits: alice"].detail


def test_the_command_exits_1_and_prints_the_contract(db_url: str) -> None:
    Database(db_url).dispose()
    done = subprocess.run(
        [sys.executable, "-m", "app", "--database", db_url, "diagnose", "--offline", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is False and {c["name"] for c in data["checks"]} >= {
        "send engine running",
        "queue moving",
    }
    human = subprocess.run(
        [sys.executable, "-m", "app", "--database", db_url, "diagnose", "--offline"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert human.returncode == 1 and "FAIL send engine running" in human.stdout
    assert "fix: Start one" in human.stdout and "Traceback" not in human.stderr
