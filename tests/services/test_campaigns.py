"""Campaigns: creation with bulk enqueue, rejected lines, the From rule, the life cycle."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import (
    AuditEntry,
    Campaign,
    DomainStatus,
    QueueItem,
    QueueStatus,
    SenderDomain,
    TemplateKind,
    User,
    UserGroup,
)
from app.models.database import Database
from app.services import campaigns, validation
from app.services.errors import ConflictError, NotFoundError, ValidationError


def add_user(session: Session, username: str = "alice", **group_settings: object) -> User:
    group = UserGroup(name=f"{username} group", **group_settings)
    user = User(username=username, email=f"{username}@example.com", group=group)
    session.add_all([group, user])
    session.flush()
    return user


def add_domain(session: Session, user: User, domain: str, status: DomainStatus) -> None:
    session.add(
        SenderDomain(
            user_id=user.id,
            domain=domain,
            kind=TemplateKind.CAMPAIGN,
            status=status,
            random_token="abcdefghij",
        )
    )
    session.flush()


def create(session: Session, recipients: list[str] | None = None, **overrides: object) -> dict:
    values: dict[str, object] = {
        "name": "Spring",
        "username": "alice",
        "channel": "marketing",
        "from_email": "news@example.com",
        "from_name": "News",
        "subject": "Hello",
        "text": "Hi there",
        "html": "<p>Hi there</p>",
        "recipients": recipients if recipients is not None else ["a@example.com"],
    }
    values.update(overrides)
    return campaigns.create_campaign(session, **values)  # type: ignore[arg-type]


# ---------------------------------------------------------------- creation, all backends


def test_create_queues_distinct_valid_recipients_and_lists_the_rest(database: Database) -> None:
    recipients = [
        "one@example.com",
        "not an address",
        "Two@Example.COM",
        "Two@example.com",  # the same address: the domain's case does not count
        "TWO@example.com",  # the local part's does: a different mailbox
        "three@bücher.example",
        "",
    ]
    with database.transaction() as s:
        add_user(s)
        created = create(s, recipients)
    assert created["status"] == "draft" and created["name"] == "Spring"
    assert created["recipients"] == 4
    assert [(r["line"], r["value"]) for r in created["rejected"]] == [
        (2, "not an address"),
        (7, ""),
    ]
    assert all(r["reason"] for r in created["rejected"])
    with database.session() as s:
        items = s.scalars(select(QueueItem).order_by(QueueItem.id)).all()
        campaign = s.scalars(select(Campaign)).one()
        assert campaign.id == created["id"]
    assert [i.recipient for i in items] == [
        "one@example.com",
        "Two@example.com",
        "TWO@example.com",
        "three@xn--bcher-kva.example",
    ]
    assert {i.status for i in items} == {QueueStatus.QUEUED}
    assert all(i.next_attempt_at is not None and i.attempts == 0 for i in items)
    ids = [i.message_id for i in items]
    # Stored at enqueue (so every retry reuses it): campaign id, the campaign's random
    # token (unique across installations), the recipient's sequence, the From domain.
    token = ids[0].split(".")[1]
    assert re.fullmatch(r"[0-9a-f]{12}", token)
    assert ids == [f"<{campaign.id}.{token}.{n}@example.com>" for n in range(1, 5)]


def test_duplicate_recipients_cannot_be_queued_twice(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
        created = create(s)
    with pytest.raises(Exception) as refused, database.transaction() as s:
        s.add(QueueItem(campaign_id=created["id"], recipient="a@example.com", message_id="<x@y>"))
    assert "unique" in str(refused.value).lower() or "duplicate" in str(refused.value).lower()


def test_names_are_unique_as_names_compare(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
        create(s)
    with pytest.raises(ConflictError, match="already exists"), database.transaction() as s:
        create(s, name="SPRING")
    with database.session() as s:
        assert campaigns.get_campaign(s, "spring").name == "Spring"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Hello\r\nBcc: victim@example.com"),
        ("from_name", "News\nBcc: x@example.com"),
        ("from_email", "news@example.com\r\nBcc: x@example.com"),
    ],
)
def test_line_breaks_in_header_fields_are_refused(
    database: Database, field: str, value: str
) -> None:
    with database.transaction() as s:
        add_user(s)
    with pytest.raises(ValidationError) as refused, database.transaction() as s:
        create(s, **{field: value})
    assert "U+000" in str(refused.value)
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_a_line_break_inside_a_recipient_refuses_the_file(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
    with (
        pytest.raises(ValidationError, match="line 2 holds a line break"),
        database.transaction() as s,
    ):
        create(s, ["a@example.com", "b@example.com\nBcc: x@example.com"])


def test_no_valid_recipient_refuses_creation(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
    with (
        pytest.raises(ValidationError, match=r"Recipients: no valid address .*line 1"),
        database.transaction() as s,
    ):
        create(s, ["nope"])


def test_unknown_and_inactive_users_and_empty_bodies_are_refused(database: Database) -> None:
    with database.transaction() as s:
        add_user(s).is_active = False
    with pytest.raises(NotFoundError), database.transaction() as s:
        create(s, username="bob")
    with pytest.raises(ValidationError, match="inactive"), database.transaction() as s:
        create(s)
    with database.transaction() as s:
        s.execute(update(User).values(is_active=True))
    with pytest.raises(ValidationError, match="Body"), database.transaction() as s:
        create(s, text=None, html=None)
    with pytest.raises(ValidationError, match="Channel"), database.transaction() as s:
        create(s, channel="carrier-pigeon")


def test_from_must_be_an_enabled_sender_domain_when_the_group_manages_them(
    database: Database,
) -> None:
    with database.transaction() as s:
        user = add_user(
            s,
            sender_domain_management=True,
            default_sender_domain="shared.example.net",
            default_sender_domain_enabled=False,
        )
        add_domain(s, user, "mine.example.org", DomainStatus.ENABLED)
        add_domain(s, user, "pending.example.org", DomainStatus.APPROVAL_PENDING)
    with pytest.raises(ValidationError) as refused, database.transaction() as s:
        create(s, from_email="news@pending.example.org")
    assert str(refused.value) == (
        "From: pending.example.org is not one of 'alice''s enabled sender domains; "
        "use an address at mine.example.org."
    )
    with pytest.raises(ValidationError, match="shared"), database.transaction() as s:
        create(s, from_email="news@shared.example.net")  # the default domain is off
    with database.transaction() as s:
        assert create(s, from_email="news@MINE.example.org")["recipients"] == 1
    with database.transaction() as s:
        s.execute(update(UserGroup).values(default_sender_domain_enabled=True))
    with database.transaction() as s:
        assert create(s, name="Shared", from_email="news@shared.example.net")["status"] == "draft"


def test_from_is_free_when_the_group_does_not_manage_sender_domains(database: Database) -> None:
    with database.transaction() as s:
        add_user(s, sender_domain_management=False)
        assert create(s, from_email="anyone@elsewhere.example")["recipients"] == 1


def test_a_user_without_domains_is_told_to_add_one(database: Database) -> None:
    with database.transaction() as s:
        add_user(s, sender_domain_management=True)
    with (
        pytest.raises(ValidationError, match="no enabled sender domain"),
        database.transaction() as s,
    ):
        create(s)


# ---------------------------------------------------------------- life cycle


def test_transitions_follow_the_rules_and_are_audited(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
        create(s)

    def act(action: str) -> str:
        with database.transaction() as s:
            return str(campaigns.change_status(s, "spring", action)["status"])

    def refused(action: str, words: str) -> None:
        with pytest.raises(ValidationError, match=words), database.transaction() as s:
            campaigns.change_status(s, "Spring", action)

    refused("pause", "has not started; start it first")
    refused("resume", "has not started; start it instead")
    assert act("start") == "running"
    refused("start", "already running")
    refused("resume", "already running")
    assert act("pause") == "paused"
    refused("start", "paused; resume it instead")
    refused("pause", "already paused")
    assert act("resume") == "running"
    assert act("cancel") == "cancelled"
    for action in ("start", "pause", "resume", "cancel"):
        refused(action, "a cancelled campaign cannot change; create a new campaign")
    with database.session() as s:
        campaign = campaigns.get_campaign(s, "Spring")
        assert campaign.started_at is not None and campaign.finished_at is not None
        entries = s.scalars(
            select(AuditEntry).where(AuditEntry.entity == "campaign").order_by(AuditEntry.id)
        ).all()
    assert [e.action for e in entries] == ["create", "start", "pause", "resume", "cancel"]
    assert json.loads(entries[1].details) == {"status": ["draft", "running"]}


def test_status_counts_every_item_status_and_held_reasons(database: Database) -> None:
    recipients = [f"r{i}@example.com" for i in range(9)]
    with database.transaction() as s:
        add_user(s)
        campaign_id = create(s, recipients)["id"]
    plan = [
        QueueStatus.SENT,
        QueueStatus.SENT,
        QueueStatus.FAILED,
        QueueStatus.DEFERRED,
        QueueStatus.IN_FLIGHT,
        QueueStatus.HELD,
        QueueStatus.HELD,
        QueueStatus.HELD,
    ]
    with database.transaction() as s:
        items = s.scalars(
            select(QueueItem).where(QueueItem.campaign_id == campaign_id).order_by(QueueItem.id)
        ).all()
        for item, status in zip(items, plan, strict=False):
            item.status = status
        items[5].held_reason = "daily limit"
        items[6].held_reason = "daily limit"
        items[7].held_reason = "server hourly quota"
        items[0].server_name = "Relay"
        items[0].last_reply = "250 2.0.0 Ok"
        items[0].attempts = 1
    with database.session() as s:
        report = campaigns.campaign_status(s, "Spring")
        sent = campaigns.campaign_results(s, "Spring", status="sent")
        everything = campaigns.campaign_results(s, "Spring")
        listed = campaigns.list_campaigns(s)
        with pytest.raises(ValidationError, match="Status"):
            campaigns.campaign_results(s, "Spring", status="lost")
    assert report == {
        "name": "Spring",
        "status": "draft",
        "total": 9,
        "queued": 1,
        "in_flight": 1,
        "deferred": 1,
        "held": 3,
        "sent": 2,
        "failed": 1,
        "held_reasons": {"daily limit": 2, "server hourly quota": 1},
    }
    assert len(everything) == 9 and [r["recipient"] for r in sent] == [
        "r0@example.com",
        "r1@example.com",
    ]
    assert set(sent[0]) == {
        "recipient",
        "status",
        "attempts",
        "reply",
        "server",
        "message_id",
        "sent_at",
    }
    assert (sent[0]["server"], sent[0]["reply"], sent[0]["attempts"]) == (
        "Relay",
        "250 2.0.0 Ok",
        1,
    )
    assert listed[0]["recipients"] == 9 and listed[0]["sent"] == 2 and listed[0]["failed"] == 1


def test_send_is_a_running_campaign_of_one(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
        row = campaigns.send_message(
            s, "alice", "transactional", "a@example.com", "B@Example.com", "Hi", "text", None
        )
    assert row["recipient"] == "B@example.com" and row["status"] == "queued"
    with database.session() as s:
        report = campaigns.campaign_status(s, row["campaign"])
    assert report["status"] == "running" and report["queued"] == 1
    with pytest.raises(ValidationError, match="To"), database.transaction() as s:
        campaigns.send_message(
            s, "alice", "transactional", "a@example.com", "x\r\n", "Hi", "t", None
        )


def test_bulk_enqueue_of_many_recipients_uses_the_fast_path(database: Database) -> None:
    recipients = [f"user{i}@d{i % 50}.example.com" for i in range(25_000)]
    with database.transaction() as s:
        add_user(s)
        created = create(s, recipients + recipients[:10])
    assert created["recipients"] == 25_000 and created["rejected"] == []
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(QueueItem)) == 25_000


# ---------------------------------------------------------------- parsing (no database)


def test_read_recipients_plain_and_csv(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("\ufeffa@example.com\r\n\r\n  b@example.com  \r\n", encoding="utf-8")
    assert list(campaigns.read_recipients(plain)) == [(1, "a@example.com"), (3, "b@example.com")]
    table = tmp_path / "list.csv"
    table.write_text('name,Email\n"Doe, Jane",jane@example.com\nNo address\n\nX, x@example.com\n')
    assert list(campaigns.read_recipients(table)) == [
        (2, "jane@example.com"),
        (3, ""),
        (5, "x@example.com"),
    ]
    with pytest.raises(ValidationError, match="Recipients: cannot read"):
        list(campaigns.read_recipients(tmp_path / "missing.txt"))
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9@example.com\n")
    with pytest.raises(ValidationError, match="not UTF-8"):
        list(campaigns.read_recipients(tmp_path / "latin1.txt"))


_cell = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_cell, _cell), min_size=1, max_size=20))
def test_csv_parser_reads_the_email_column_of_any_csv(rows: list[tuple[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "email"])
    writer.writerows(rows)
    lines = buffer.getvalue().split("\n")
    parsed = list(campaigns.parse_recipients(lines))
    expected = [
        (n, email.strip()) for n, (name, email) in enumerate(rows, start=2) if lines[n - 1].strip()
    ]
    assert parsed == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(_cell, max_size=30))
def test_plain_parser_numbers_every_non_blank_line(lines: list[str]) -> None:
    parsed = list(campaigns.parse_recipients(lines))
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and any(
        c.strip().lower() == "email" for c in next(csv.reader([lines[first]]))
    ):
        return  # that file is CSV; the other property covers it
    assert parsed == [(n, line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]


_address_text = st.one_of(
    st.emails().map(str),
    st.text(max_size=40),
    st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=12), st.text(max_size=20)),
)


@settings(max_examples=500, deadline=None)
@given(_address_text)
def test_fast_recipient_check_agrees_with_the_validator(value: str) -> None:
    try:
        expected: str | None = validation.email_address(value, "Recipients")
    except ValidationError:
        expected = None
    try:
        got: str | None = campaigns.normalise_recipient(value)
    except ValidationError:
        got = None
    assert got == expected
