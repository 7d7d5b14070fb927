"""The command forms other scripts rely on, exactly as documented, through the real entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

POSTROOM = [sys.executable, "-m", "app"]


def postroom(
    url: str, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*POSTROOM, "--database", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_walkthrough_steps_on_every_backend(db_url: str) -> None:
    """Reference steps 3-5 from the command line: server, group, user, domain, route."""
    postroom(
        db_url,
        "servers",
        "add",
        "US Marketing",
        "--host",
        "smtp.example.com",
        "--port",
        "587",
        "--encryption",
        "tls",
        "--mail-from-domain",
        "bounces.example.com",
    )
    postroom(
        db_url,
        "dns-settings",
        "set",
        "sender_domain_target=mailer.example.net",
        "link_tracker_target=track.mailer.example.net",
    )
    postroom(
        db_url,
        "groups",
        "add",
        "UserGroup1",
        "--marketing-server",
        "US Marketing",
        "--transactional-server",
        "US Marketing",
        "--campaign-dns-template",
        "Default",
        "--sender-domain-management",
    )
    postroom(
        db_url, "users", "add", "alice", "--email", "alice@example.com", "--group", "UserGroup1"
    )

    added = json.loads(
        postroom(db_url, "domains", "add", "mail.example.com", "--user", "alice", "--json").stdout
    )
    assert added["domain"] == "mail.example.com"
    assert added["status"] == "approval_pending"
    records = {(r["type"], r["host"]): r["value"] for r in added["records"]}
    assert records[("CNAME", "sl.mail.example.com")] == "mailer.example.net"
    assert (
        records[("CNAME", "key1._domainkey.sl.mail.example.com")]
        == "key1._domainkey.mailer.example.net"
    )
    assert records[("CNAME", "track-sl.mail.example.com")] == "track.mailer.example.net"
    txt = [(host, value) for (rtype, host), value in records.items() if rtype == "TXT"]
    assert len(txt) == 1
    assert re.fullmatch(r"[a-z0-9]{10}\.sl\.mail\.example\.com", txt[0][0])
    assert all("_" not in h.split(".")[0] or h.startswith(("_dmarc", "_DMARC")) for _, h in records)
    assert not any("_Sender" in v or "_Subdomain_" in v for v in records.values())

    route = json.loads(postroom(db_url, "route", "alice", "marketing", "--json").stdout)
    assert route["server"] == "US Marketing"
    assert route["method"] == "delivery_server"
    assert "UserGroup1" in route["reason"]
    route = json.loads(postroom(db_url, "route", "alice", "autoresponder", "--json").stdout)
    assert route["server"] is None
    assert route["method"] == "none"
    assert route["reason"]

    listed = json.loads(postroom(db_url, "servers", "list", "--json").stdout)
    assert [(a["group"], a["badge"]) for a in listed[0]["allocation"]] == [
        ("UserGroup1", "M"),
        ("UserGroup1", "T"),
    ]


def test_gateway_domain_with_empty_template_is_enabled_at_once(sqlite_url: str) -> None:
    postroom(sqlite_url, "groups", "add", "GW", "--gateway-add-domain")
    postroom(sqlite_url, "users", "add", "gw", "--email", "gw@example.com", "--group", "GW")
    added = json.loads(
        postroom(
            sqlite_url,
            "domains",
            "add",
            "relay.example.org",
            "--user",
            "gw",
            "--kind",
            "gateway",
            "--json",
        ).stdout
    )
    assert added["status"] == "enabled"
    assert added["records"] == []


def test_sender_domain_limit_is_one_clear_line(sqlite_url: str) -> None:
    postroom(
        sqlite_url,
        "groups",
        "add",
        "Small",
        "--sender-domain-management",
        "--sender-domains-limit",
        "1",
    )
    postroom(sqlite_url, "users", "add", "bob", "--email", "bob@example.com", "--group", "Small")
    postroom(sqlite_url, "domains", "add", "one.example.com", "--user", "bob")
    proc = postroom(sqlite_url, "domains", "add", "two.example.com", "--user", "bob", check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "limit" in proc.stderr
    listed = json.loads(postroom(sqlite_url, "domains", "list", "--json").stdout)
    assert [d["domain"] for d in listed] == ["one.example.com"]


def test_config_export_import_cli(sqlite_url: str, tmp_path: Path) -> None:
    postroom(
        sqlite_url,
        "servers",
        "add",
        "S",
        "--host",
        "s.example.com",
        "--port",
        "25",
        "--encryption",
        "none",
    )
    out = tmp_path / "config.yaml"
    postroom(sqlite_url, "config", "export", "-o", str(out))
    text = out.read_text()
    assert "s.example.com" in text
    other = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    dry = postroom(other, "config", "import", str(out), "--dry-run")
    assert "+ delivery_servers 'S'" in dry.stdout
    assert json.loads(postroom(other, "servers", "list", "--json").stdout) == []
    refused = postroom(other, "config", "import", str(out), check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    postroom(other, "config", "import", str(out), "--yes")
    assert [s["name"] for s in json.loads(postroom(other, "servers", "list", "--json").stdout)] == [
        "S"
    ]
    again = postroom(other, "config", "import", str(out), "--yes")
    assert "No changes" in again.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["groups", "show", "Nope"],
        ["users", "add", "x", "--email", "x@example.com", "--group", "Nope"],
        ["route", "ghost", "marketing"],
        ["domains", "add", "bad..example.com", "--user", "ghost"],
        ["dns-settings", "set", "dkim_selector=bad selector!"],
        ["templates", "add", "T", "--record", "_Nope_._SenderDomain_ CNAME x.example.com"],
    ],
)
def test_user_errors_are_one_line_without_traceback(sqlite_url: str, args: list[str]) -> None:
    proc = postroom(sqlite_url, *args, check=False)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("postroom: ")
