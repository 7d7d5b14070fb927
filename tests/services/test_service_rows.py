"""The row functions the console's list pages and the CLI's ``list --json`` share.

Each returns plain, JSON-ready dicts with stable snake_case keys, read in a fixed number of
queries, on every backend. The URL helpers the database dialog uses live in
``services.profiles`` with them: one way to take a URL apart and to drop its password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from app.models import DeliveryServer, TestStatus
from app.models.database import Database
from app.services import dns_templates, groups, profiles, sender_domains, servers, users


def seed(database: Database) -> None:
    with database.transaction() as session:
        servers.create_server(session, {"name": "Relay", "host": "smtp.example.com"})
        servers.create_server(session, {"name": "Spare", "host": "smtp2.example.com"})
        dns_templates.create_template(
            session,
            name="Tracking",
            kind="campaign",
            records=[
                ("sl._SenderDomain_", "CNAME", "track.example.net"),
                ("_SenderDomain_", "TXT", "v=spf1 -all"),
            ],
            description="Links only",
        )
        groups.create_group(
            session,
            {
                "name": "Sales",
                "marketing_server": "Relay",
                "transactional_server": "Relay",
                "campaign_dns_template": "Tracking",
                "sender_domain_management": True,
                "sender_domains_limit": 5,
            },
        )
        groups.create_group(session, {"name": "Quiet"})
        for username, group in (("ann", "Sales"), ("bob", "Sales"), ("cy", "Quiet")):
            users.create_user(
                session, {"username": username, "email": f"{username}@example.com", "group": group}
            )
        sender_domains.create_sender_domain(session, "ann", "mail.ann.test")
        sender_domains.create_sender_domain(session, "bob", "mail.bob.test")
        spare = session.query(DeliveryServer).filter_by(name="Spare").one()
        spare.last_test_status = TestStatus.FAILED
        spare.last_test_report = json.dumps(
            {"ok": False, "failed_stage": "auth", "hint": "Check the password."}
        )


def test_rows_of_every_list_are_json_ready_and_complete(database: Database) -> None:
    seed(database)
    with database.session() as session:
        server_rows = servers.server_rows(session)
        group_rows = groups.group_rows(session)
        template_rows = dns_templates.template_rows(session)
        campaign_only = dns_templates.template_rows(session, kind="gateway")
        domain_rows = sender_domains.domain_rows(session)
        user_rows = users.user_rows(session)
    for rows in (server_rows, group_rows, template_rows, domain_rows, user_rows):
        assert json.loads(json.dumps(rows)) == rows  # what `list --json` prints, unchanged

    relay, spare = server_rows
    assert relay["name"] == "Relay" and not any("password" in row for row in server_rows)
    assert relay["allocation"] == [
        {"group": "Sales", "channel": "marketing", "badge": "M", "colour": "blue"},
        {"group": "Sales", "channel": "transactional", "badge": "T", "colour": "green"},
    ]
    assert relay["allocation_text"] == "Sales: M T"
    assert (relay["failed_stage"], relay["hint"]) == (None, None)
    assert spare["allocation"] == [] and spare["allocation_text"] == "Not Allocated"
    assert (spare["failed_stage"], spare["hint"]) == ("auth", "Check the password.")

    assert [(g["name"], g["user_count"]) for g in group_rows] == [("Quiet", 1), ("Sales", 2)]
    assert group_rows[1]["marketing_server"] == "Relay"

    tracking = next(t for t in template_rows if t["name"] == "Tracking")
    assert tracking["record_count"] == 2 and tracking["record_types"] == ["CNAME", "TXT"]
    assert tracking["used_by"] == ["Sales"] and isinstance(tracking["version"], int)
    assert all(t["kind"] == "gateway" for t in campaign_only)

    assert [d["domain"] for d in domain_rows] == ["mail.ann.test", "mail.bob.test"]
    ann = domain_rows[0]
    assert (ann["user"], ann["kind"], ann["status"], ann["template"]) == (
        "ann",
        "campaign",
        "approval_pending",
        "Tracking",
    )
    assert (ann["record_count"], ann["check_result"], ann["outcome"]) == (
        2,
        "Not checked",
        "untested",
    )
    assert [(u["username"], u["domain_count"], u["domains_limit"]) for u in user_rows] == [
        ("ann", 1, 5),
        ("bob", 1, 5),
        ("cy", 0, None),
    ]


def test_domain_rows_filter_as_list_sender_domains_does(database: Database) -> None:
    seed(database)
    with database.transaction() as session:
        sender_domains.set_domain_status(session, "mail.bob.test", "campaign", "enabled")
    with database.session() as session:
        mine = sender_domains.domain_rows(session, username="bob")
        enabled = sender_domains.domain_rows(session, status="enabled")
        listed = sender_domains.list_sender_domains(session, status="enabled")
        gateway = sender_domains.domain_rows(session, kind="gateway")
        choices = sender_domains.owner_choices(session)
        detail = sender_domains.domain_detail(session, "mail.ann.test", "campaign")
    assert [d["domain"] for d in mine] == ["mail.bob.test"]
    assert [d["domain"] for d in enabled] == [d.domain for d in listed] == ["mail.bob.test"]
    assert gateway == []
    assert [(c["username"], c["owned"], c["limit"]) for c in choices] == [
        ("ann", 1, 5),
        ("bob", 1, 5),
        ("cy", 0, None),
    ]
    assert detail["record_ok"] == [None, None] and detail["last_report"] is None
    assert json.loads(json.dumps(detail)) == detail


@pytest.mark.parametrize(
    ("checked", "total", "ok", "failing", "result", "outcome"),
    [
        (False, 0, 0, 0, "No records", "untested"),
        (False, 2, 0, 0, "Not checked", "untested"),
        (True, 2, 2, 0, "All 2 found", "ok"),
        (True, 3, 1, 2, "2 of 3 failing", "failed"),
        (True, 3, 2, 0, "1 unanswered", "error"),
    ],
)
def test_check_summary_words(
    checked: bool, total: int, ok: int, failing: int, result: str, outcome: str
) -> None:
    from datetime import UTC, datetime

    at = datetime.now(UTC) if checked else None
    assert sender_domains.check_result(at, total, ok, failing) == result
    assert sender_domains.check_outcome(at, total, ok, failing) == outcome


# ---------------------------------------------------------------- URLs


passwords = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
)


@given(password=passwords)
def test_without_password_drops_any_password_and_keeps_the_target(password: str) -> None:
    url = profiles.server_url(
        profiles.KIND_POSTGRESQL,
        host="db.example.com",
        port=5433,
        database="postroom",
        username="admin",
        password=password,
    )
    bare = profiles.without_password(url)
    assert profiles.url_parts(url) == profiles.url_parts(bare)
    assert profiles.same_target(url, bare)
    assert make_url(url).password == password  # escaped, then read back whole
    assert make_url(bare).password is None
    assert bare == "postgresql+psycopg://admin@db.example.com:5433/postroom"


def test_url_helpers_agree_on_targets_and_refuse_quietly() -> None:
    pg = "postgresql+psycopg://admin:secret@db:5432/postroom"
    assert profiles.same_target(pg, "postgresql+psycopg://admin@db/postroom")  # default port
    assert not profiles.same_target(pg, "postgresql+psycopg://other@db/postroom")
    assert not profiles.same_target(pg, "not a url")
    assert profiles.url_parts("not a url") is None
    assert profiles.display_url("not a url") == "(unreadable database URL)"
    assert "secret" not in profiles.display_url(pg)
    maria = profiles.url_parts("mysql+pymysql://root@127.0.0.1/x")
    assert maria is not None and maria.kind == profiles.KIND_MARIADB
    assert profiles.without_password("sqlite:///a/b.sqlite3") == "sqlite:///a/b.sqlite3"
    profile = profiles.ConnectionProfile(
        "prod", "postgresql+psycopg://u@db.internal/p", "postgresql"
    )
    assert profiles.describe_profile(profile) == "PostgreSQL · db.internal"


def test_check_connection_on_sqlite(tmp_path: Path) -> None:
    target = tmp_path / "new.sqlite3"
    assert "does not exist yet" in profiles.check_connection(profiles.sqlite_url(target))
    assert not target.exists()  # checking creates nothing
    Database(profiles.sqlite_url(target)).dispose()
    assert "a Postroom database" in profiles.check_connection(profiles.sqlite_url(target))
    with pytest.raises(profiles.ConnectionFailed, match="is a folder"):
        profiles.check_connection(profiles.sqlite_url(tmp_path))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(profiles.ConnectionFailed, match="not a writable folder"):
            profiles.check_connection(profiles.sqlite_url(locked / "x.sqlite3"))


LIST_COMMANDS = [
    (["servers", "list"], lambda session: servers.server_rows(session)),
    (["groups", "list"], lambda session: groups.group_rows(session)),
    (["users", "list"], lambda session: users.user_rows(session)),
    (
        ["users", "list", "--group", "Sales"],
        lambda session: users.user_rows(session, group="Sales"),
    ),
    (["templates", "list"], lambda session: dns_templates.template_rows(session)),
    (["domains", "list"], lambda session: sender_domains.domain_rows(session)),
    (
        ["domains", "list", "--user", "ann"],
        lambda session: sender_domains.domain_rows(session, username="ann"),
    ),
]


def test_cli_list_json_prints_the_console_rows(sqlite_database: Database, sqlite_url: str) -> None:
    """One read path: every ``list --json`` is exactly the rows the console's page shows."""
    from app.cli.base import json_default

    seed(sqlite_database)
    for command, rows_of in LIST_COMMANDS:
        run = subprocess.run(
            [sys.executable, "-m", "app", "--database", sqlite_url, *command, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, (command, run.stderr)
        with sqlite_database.session() as session:
            expected = json.loads(json.dumps(rows_of(session), default=json_default))
        assert json.loads(run.stdout) == expected, command
        assert expected, command  # the seed gives every list something to show
