"""``postroom campaigns`` and ``postroom send`` through the real console script, all backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

POSTROOM = [sys.executable, "-m", "app"]


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POSTROOM, "--database", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def ok(url: str, *args: str) -> str:
    done = run(url, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_campaign_commands_print_the_contract_keys(db_url: str, tmp_path: Path) -> None:
    ok(db_url, "groups", "add", "Senders")
    ok(db_url, "users", "add", "alice", "--email", "alice@example.com", "--group", "Senders")
    (tmp_path / "body.txt").write_text("Hello\n")
    (tmp_path / "body.html").write_text("<p>Hello</p>\n")
    (tmp_path / "list.csv").write_text(
        "name,email\nBob,bob@example.com\nNobody,nobody\nBob again,bob@EXAMPLE.com\n"
    )
    created = json.loads(
        ok(
            db_url,
            "campaigns",
            "create",
            "Spring",
            "--user",
            "alice",
            "--from",
            "news@example.com",
            "--from-name",
            "News",
            "--subject",
            "Hi",
            "--text-file",
            str(tmp_path / "body.txt"),
            "--html-file",
            str(tmp_path / "body.html"),
            "--recipients",
            str(tmp_path / "list.csv"),
            "--json",
        )
    )
    assert set(created) == {"name", "id", "status", "recipients", "rejected"}
    assert (created["name"], created["status"], created["recipients"]) == ("Spring", "draft", 1)
    assert [set(r) for r in created["rejected"]] == [{"line", "value", "reason"}]
    assert (created["rejected"][0]["line"], created["rejected"][0]["value"]) == (3, "nobody")

    refused = run(db_url, "campaigns", "pause", "Spring")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "postroom: Campaign: cannot pause 'Spring': it has not started; start it first."
    )
    assert "Traceback" not in refused.stderr
    assert "started" in ok(db_url, "campaigns", "start", "spring")
    ok(db_url, "campaigns", "pause", "Spring")
    ok(db_url, "campaigns", "resume", "Spring")

    status = json.loads(ok(db_url, "campaigns", "status", "Spring", "--json"))
    assert status == {
        "name": "Spring",
        "status": "running",
        "total": 1,
        "queued": 1,
        "in_flight": 0,
        "deferred": 0,
        "held": 0,
        "sent": 0,
        "failed": 0,
        "held_reasons": {},
    }
    results = json.loads(ok(db_url, "campaigns", "results", "Spring", "--json"))
    assert [set(r) for r in results] == [
        {"recipient", "status", "attempts", "reply", "server", "message_id", "sent_at"}
    ]
    assert results[0]["recipient"] == "bob@example.com" and results[0]["status"] == "queued"
    assert (
        json.loads(ok(db_url, "campaigns", "results", "Spring", "--status", "sent", "--json")) == []
    )

    sent = json.loads(
        ok(
            db_url,
            "send",
            "--user",
            "alice",
            "--channel",
            "transactional",
            "--from",
            "alice@example.com",
            "--to",
            "carol@example.com",
            "--subject",
            "Receipt",
            "--text",
            "Thanks",
            "--json",
        )
    )
    assert set(sent) == {
        "campaign",
        "recipient",
        "status",
        "attempts",
        "reply",
        "server",
        "message_id",
        "sent_at",
    }
    assert sent["status"] == "queued" and sent["message_id"].startswith("<")

    listed = json.loads(ok(db_url, "campaigns", "list", "--json"))
    assert {row["name"]: row["status"] for row in listed} == {
        "Spring": "running",
        sent["campaign"]: "running",
    }
    ok(db_url, "campaigns", "cancel", "Spring")
    again = run(db_url, "campaigns", "start", "Spring")
    assert again.returncode == 1 and "cancelled campaign cannot change" in again.stderr


def test_header_injection_and_missing_files_are_one_sentence(
    sqlite_url: str, tmp_path: Path
) -> None:
    ok(sqlite_url, "groups", "add", "Senders")
    ok(sqlite_url, "users", "add", "alice", "--email", "alice@example.com", "--group", "Senders")
    (tmp_path / "list.txt").write_text("bob@example.com\n")
    base = ["campaigns", "create", "Spring", "--user", "alice", "--from", "news@example.com"]
    injected = run(
        sqlite_url,
        *base,
        "--subject",
        "Hi\r\nBcc: x@example.com",
        "--text-file",
        str(tmp_path / "list.txt"),
        "--recipients",
        str(tmp_path / "list.txt"),
    )
    assert injected.returncode == 1 and injected.stderr.startswith("postroom: Subject:")
    missing = run(
        sqlite_url,
        *base,
        "--subject",
        "Hi",
        "--text-file",
        str(tmp_path / "list.txt"),
        "--recipients",
        str(tmp_path / "absent.txt"),
    )
    assert missing.returncode == 1 and missing.stderr.startswith(
        "postroom: Recipients: cannot read"
    )
    assert len(missing.stderr.strip().splitlines()) == 1
    no_body = run(
        sqlite_url,
        "send",
        "--user",
        "alice",
        "--from",
        "a@example.com",
        "--to",
        "b@example.com",
        "--subject",
        "S",
    )
    assert no_body.returncode == 1 and "--text" in no_body.stderr
