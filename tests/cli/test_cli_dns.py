"""``postroom domains verify`` and ``postroom dns-check`` against a real NSD server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.models.database import Database
from app.services import groups, sender_domains, users
from tests.conftest import peer_missing
from tests.dns_peer import DnsPeer, missing_reason, record_line, start_server, zone_text

ZONE = "clicheck.test"
DOMAIN = f"news.{ZONE}"


def postroom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


@pytest.fixture
def published(
    sqlite_url: str, tmp_path: Path
) -> Iterator[tuple[str, DnsPeer, list[dict[str, str]]]]:
    """A stored pending domain whose records the local NSD publishes, and the server."""
    reason = missing_reason()
    if reason:
        peer_missing(reason)
    db = Database(sqlite_url)
    with db.transaction() as session:
        groups.create_group(session, {"name": "G", "sender_domain_management": True})
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "G"}
        )
        domain = sender_domains.create_sender_domain(session, "alice", DOMAIN)
        records = [{"host": r.host, "type": r.type, "value": r.value} for r in domain.records]
    db.dispose()
    lines = [record_line(r["host"], r["type"], r["value"]) for r in records]
    peer = start_server(tmp_path / "zones", {ZONE: zone_text(ZONE, lines)})
    try:
        yield sqlite_url, peer, records
    finally:
        peer.stop()


def test_domains_verify_enables_a_published_domain(
    published: tuple[str, DnsPeer, list[dict[str, str]]],
) -> None:
    url, peer, records = published
    ns = f"127.0.0.1:{peer.port}"
    proc = postroom("--database", url, "domains", "verify", DOMAIN, "--nameserver", ns, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) >= {"domain", "status", "records", "warnings"}
    assert report["status"] == "ok"
    assert report["domain_status"] == "enabled"
    assert len(report["records"]) == len(records) == 5
    for record in report["records"]:
        assert set(record) >= {"host", "type", "expected", "found", "ok", "problem", "detail"}
        assert record["ok"] is True and record["problem"] is None
    shown = json.loads(postroom("--database", url, "domains", "show", DOMAIN, "--json").stdout)
    assert shown["status"] == "enabled"

    everything = postroom(
        "--database", url, "domains", "verify", "--all", "--nameserver", ns, "--json"
    )
    assert everything.returncode == 0, everything.stderr
    assert [r["domain"] for r in json.loads(everything.stdout)] == [DOMAIN]


def test_dns_check_reports_what_is_missing(
    published: tuple[str, DnsPeer, list[dict[str, str]]],
) -> None:
    url, peer, _ = published
    other = f"other.{ZONE}"  # not published at all
    proc = postroom(
        "--database",
        url,
        "dns-check",
        other,
        "--template",
        "Default",
        "--nameserver",
        f"127.0.0.1:{peer.port}",
        "--json",
    )
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["domain"] == other
    assert report["status"] == "failed"
    assert {r["problem"] for r in report["records"]} == {"missing"}
    assert all(r["detail"] for r in report["records"])


def test_bad_nameserver_option_is_one_line(sqlite_url: str) -> None:
    proc = postroom(
        "--database",
        sqlite_url,
        "dns-check",
        DOMAIN,
        "--template",
        "Default",
        "--nameserver",
        "not-an-ip",
    )
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--nameserver" in proc.stderr
