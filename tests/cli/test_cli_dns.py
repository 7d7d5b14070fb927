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
from app.services.dns_verdicts import NOT_CHECKED
from tests.conftest import peer_missing
from tests.dns_peer import (
    DnsPeer,
    free_port,
    library_text,
    missing_reason,
    record_line,
    start_server,
    zone_text,
)

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


# ---------------------------------------------------------------- a domain that can't be checked


def _said_once(output: str, sentence: str) -> None:
    assert output.count(sentence) == 1, output
    assert "Advanced › Name server" in output
    assert library_text(output) == [], output


def test_silent_name_server_is_said_once(
    published: tuple[str, DnsPeer, list[dict[str, str]]],
) -> None:
    url, _peer, records = published
    closed = free_port()
    proc = postroom(
        "--database", url, "domains", "verify", DOMAIN, "--nameserver", f"127.0.0.1:{closed}"
    )
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    _said_once(output, f"The name server 127.0.0.1 port {closed} did not answer")
    lines = output.splitlines()
    assert lines[0] == f"{DOMAIN}: error (domain is approval_pending)"
    assert lines[1].startswith("The name server 127.0.0.1")  # at the top, before the records
    assert output.count(NOT_CHECKED) == len(records)

    as_json = postroom(
        "--database",
        url,
        "domains",
        "verify",
        DOMAIN,
        "--nameserver",
        f"127.0.0.1:{closed}",
        "--json",
    )
    data = json.loads(as_json.stdout)
    assert data["verdict"] == "override_silent"
    assert data["message"].startswith(f"The name server 127.0.0.1 port {closed} did not answer")
    assert library_text(as_json.stdout + as_json.stderr) == []

    everything = postroom(
        "--database", url, "domains", "verify", "--all", "--nameserver", f"127.0.0.1:{closed}"
    )
    assert everything.returncode == 1
    _said_once(everything.stdout, f"The name server 127.0.0.1 port {closed} did not answer")
    assert library_text(everything.stderr) == []


def test_name_server_that_does_not_serve_the_domain(
    published: tuple[str, DnsPeer, list[dict[str, str]]],
) -> None:
    url, peer, _ = published
    proc = postroom(
        "--database",
        url,
        "dns-check",
        "acme.example",
        "--template",
        "Default",
        "--nameserver",
        f"127.0.0.1:{peer.port}",
    )
    assert proc.returncode == 1
    _said_once(
        proc.stdout + proc.stderr, f"The name server 127.0.0.1 port {peer.port} answered, but not"
    )


def test_domain_not_in_public_dns(sqlite_url: str) -> None:
    """Through the system resolver (resolv.conf): the one peer here that is not local, as
    the real answer for a name under the reserved .invalid comes from it (RFC 6761)."""
    domain = "mail.acme.invalid"
    proc = postroom("--database", sqlite_url, "dns-check", domain, "--template", "Default")
    if "No name server could be reached" in proc.stdout:
        pytest.skip("the system DNS resolver does not answer (it is not one of the test peers)")
    assert proc.returncode == 1
    _said_once(proc.stdout + proc.stderr, f"{domain} does not exist in public DNS")
