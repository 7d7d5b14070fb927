"""What the console's Campaigns page reads and does beyond the CLI: From choices, a
recipient check before creating, per-status progress, time in queue, the failure
threshold that pauses a campaign, engine presence and the message preview."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import (
    AuditEntry,
    Campaign,
    DomainStatus,
    EngineHeartbeat,
    QueueItem,
    QueueStatus,
    SenderDomain,
    TemplateKind,
    User,
    UserGroup,
)
from app.models.base import utcnow
from app.models.database import Database
from app.services import campaigns, groups, servers, users
from app.services.campaign_preview import preview_message
from app.services.engine_liveness import engine_presence
from app.services.errors import ValidationError


def add_user(
    session: Session, username: str = "alice", *, active: bool = True, **group_settings: object
) -> User:
    group = UserGroup(name=f"{username} group", **group_settings)
    user = User(username=username, email=f"{username}@example.com", group=group, is_active=active)
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


def create(session: Session, recipients: list[str], name: str = "Spring") -> dict:
    return campaigns.create_campaign(
        session,
        name,
        "alice",
        "marketing",
        "news@example.com",
        "News",
        "Hello",
        "Hi there",
        None,
        recipients,
    )


def set_items(session: Session, campaign_id: int, status: QueueStatus, count: int) -> None:
    """The first ``count`` still-queued items of the campaign get ``status``."""
    ids = session.scalars(
        select(QueueItem.id)
        .where(QueueItem.campaign_id == campaign_id, QueueItem.status == QueueStatus.QUEUED)
        .order_by(QueueItem.id)
        .limit(count)
    ).all()
    session.execute(update(QueueItem).where(QueueItem.id.in_(ids)).values(status=status))


# ---------------------------------------------------------------- From choices


def test_sender_choices_say_which_domains_from_may_use(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as s:
        alice = add_user(
            s,
            "alice",
            sender_domain_management=True,
            default_sender_domain_enabled=True,
            default_sender_domain="Shared.Example.NET",
        )
        add_domain(s, alice, "news.example.com", DomainStatus.ENABLED)
        add_domain(s, alice, "pending.example.com", DomainStatus.APPROVAL_PENDING)
        add_user(s, "bob")  # the group leaves From free
        add_user(s, "carol", sender_domain_management=True)  # manages, owns none
        add_user(s, "dave", active=False)
    with sqlite_database.session() as s:
        choices = {c["username"]: c for c in campaigns.sender_choices(s)}
    assert sorted(choices) == ["alice", "bob", "carol"]  # inactive users cannot send
    assert choices["alice"]["domains"] == ["news.example.com", "shared.example.net"]
    assert choices["bob"]["domains"] is None
    assert choices["carol"]["domains"] == []
    assert choices["alice"]["group"] == "alice group"
    # The creation-time rule is the same list: the pending domain is refused.
    with (
        pytest.raises(ValidationError, match=re.escape("news.example.com, shared.example.net")),
        sqlite_database.transaction() as s,
    ):
        campaigns.create_campaign(
            s, "X", "alice", "marketing", "a@pending.example.com", None, "S", "t", None, ["x@y.z"]
        )


# ---------------------------------------------------------------- recipients before creating


def test_check_recipients_reports_what_create_would_reject() -> None:
    lines = list(
        campaigns.parse_recipients(
            ["email,name", "a@example.com,A", "nope,B", "a@EXAMPLE.com,C", ",D", "b@example.org,E"]
        )
    )
    checked = campaigns.check_recipients(lines)
    assert checked["valid"] == 2
    assert checked["duplicates"] == 1  # a@EXAMPLE.com is a@example.com
    assert [(r["line"], r["value"]) for r in checked["rejected"]] == [(3, "nope"), (5, "")]
    assert all(r["reason"] for r in checked["rejected"])


def test_create_reports_progress_and_a_cancel_rolls_everything_back(
    sqlite_database: Database,
) -> None:
    many = [f"user{n}@example.org" for n in range(campaigns.ENQUEUE_CHUNK + 5)]
    seen: list[int] = []
    with sqlite_database.transaction() as s:
        add_user(s)
        campaigns.create_campaign(
            s, "Big", "alice", "marketing", "n@example.com", None, "S", "t", None, many,
            progress=seen.append,
        )  # fmt: skip
    assert seen == [campaigns.ENQUEUE_CHUNK, len(many)]

    class Stop(Exception):
        pass

    def stop(_count: int) -> None:
        raise Stop

    with pytest.raises(Stop), sqlite_database.transaction() as s:
        campaigns.create_campaign(
            s, "Other", "alice", "marketing", "n@example.com", None, "S", "t", None, many,
            progress=stop,
        )  # fmt: skip
    with sqlite_database.session() as s:
        assert [c.name for c in s.scalars(select(Campaign))] == ["Big"]


# ---------------------------------------------------------------- progress and results


def test_list_counts_every_item_status_apart(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
        created = create(s, [f"u{n}@example.org" for n in range(12)])
        campaigns.start_campaign(s, "Spring")
        for status, count in (
            (QueueStatus.IN_FLIGHT, 1),
            (QueueStatus.DEFERRED, 2),
            (QueueStatus.HELD, 3),
            (QueueStatus.SENT, 4),
            (QueueStatus.FAILED, 1),
        ):
            set_items(s, created["id"], status, count)
    with database.session() as s:
        (row,) = campaigns.list_campaigns(s)
        status = campaigns.campaign_report(s, "Spring")
        plain = campaigns.campaign_status(s, "Spring")
    assert "paused_reason" not in plain  # the CLI's report keeps its keys
    expected = {"queued": 1, "in_flight": 1, "deferred": 2, "held": 3, "sent": 4, "failed": 1}
    assert {k: row[k] for k in expected} == expected
    assert {k: status[k] for k in expected} == expected
    assert row["recipients"] == status["total"] == 12
    assert row["paused_reason"] is None and status["paused_reason"] is None


def test_results_give_time_in_queue_held_reason_and_a_limit(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
        created = create(s, ["a@example.org", "b@example.org", "c@example.org"])
        campaigns.start_campaign(s, "Spring")
        campaign = s.get(Campaign, created["id"])
        assert campaign is not None and campaign.started_at is not None
        began = campaign.started_at
        s.execute(
            update(QueueItem)
            .where(QueueItem.recipient == "a@example.org")
            .values(
                status=QueueStatus.SENT,
                sent_at=began + timedelta(seconds=42),
                server_name="relay",
                last_reply="250 2.0.0 queued as 1",
                attempts=2,
            )
        )
        s.execute(
            update(QueueItem)
            .where(QueueItem.recipient == "b@example.org")
            .values(status=QueueStatus.HELD, held_reason="daily limit")
        )
    with database.session() as s:
        rows = {r["recipient"]: r for r in campaigns.recipient_results(s, "Spring")}
        first_two = campaigns.recipient_results(s, "Spring", limit=2)
        held = campaigns.recipient_results(s, "Spring", status="held")
    assert rows["a@example.org"]["queued_seconds"] == pytest.approx(42, abs=1)
    assert rows["a@example.org"]["server"] == "relay" and rows["a@example.org"]["attempts"] == 2
    assert rows["b@example.org"]["queued_seconds"] is None
    assert rows["b@example.org"]["held_reason"] == "daily limit"
    assert [r["recipient"] for r in first_two] == ["a@example.org", "b@example.org"]
    assert [r["recipient"] for r in held] == ["b@example.org"]


# ---------------------------------------------------------------- failure threshold


def test_a_failure_spike_pauses_the_campaign_with_its_reason(database: Database) -> None:
    with database.transaction() as s:
        add_user(s)
        created = create(s, [f"u{n}@example.org" for n in range(20)])
        campaigns.start_campaign(s, "Spring")
        set_items(s, created["id"], QueueStatus.SENT, 3)
        set_items(s, created["id"], QueueStatus.FAILED, 2)
    # 5 finished < 10: too few to judge, whatever the share.
    with database.transaction() as s:
        assert campaigns.pause_if_failing(s, "Spring", 20, 10) is None
    with database.transaction() as s:
        set_items(s, created["id"], QueueStatus.SENT, 6)  # 2 of 11 failed: 18 %
    with database.transaction() as s:
        assert campaigns.pause_if_failing(s, "Spring", 20, 10) is None
    with database.transaction() as s:
        set_items(s, created["id"], QueueStatus.FAILED, 1)  # 3 of 12: 25 %
    with database.transaction() as s:
        paused = campaigns.pause_if_failing(s, "Spring", 20, 10, actor="engine e1")
    assert paused is not None and paused["status"] == "paused"
    assert "3 of 12 finished messages failed (25%" in paused["reason"]
    with database.session() as s:
        status = campaigns.campaign_report(s, "Spring")
        (row,) = campaigns.list_campaigns(s)
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert status["status"] == "paused" and status["paused_reason"] == paused["reason"]
    assert row["paused_reason"] == paused["reason"]
    assert entry is not None and entry.action == "pause" and entry.actor == "engine e1"
    # Paused already: nothing more happens; resumed, the reason is gone.
    with database.transaction() as s:
        assert campaigns.pause_if_failing(s, "Spring", 20, 10) is None
        campaigns.resume_campaign(s, "Spring")
    with database.session() as s:
        assert campaigns.campaign_report(s, "Spring")["paused_reason"] is None


def test_a_paused_by_hand_campaign_has_no_reason(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as s:
        add_user(s)
        create(s, ["a@example.org"])
        campaigns.start_campaign(s, "Spring")
        campaigns.pause_campaign(s, "Spring")
    with sqlite_database.session() as s:
        assert campaigns.campaign_report(s, "Spring")["paused_reason"] is None


@pytest.mark.parametrize(
    ("threshold", "minimum", "field"),
    [(0, 10, "Threshold"), (101, 10, "Threshold"), ("x", 10, "Threshold"), (20, 0, "Minimum")],
)
def test_threshold_arguments_are_checked(
    sqlite_database: Database, threshold: object, minimum: int, field: str
) -> None:
    with sqlite_database.transaction() as s:
        add_user(s)
        create(s, ["a@example.org"])
    with pytest.raises(ValidationError) as refused, sqlite_database.transaction() as s:
        campaigns.pause_if_failing(s, "Spring", threshold, minimum)  # type: ignore[arg-type]
    assert refused.value.field.startswith(field)


# ---------------------------------------------------------------- engines


def test_engine_presence_tells_running_stale_and_never(sqlite_database: Database) -> None:
    with sqlite_database.session() as s:
        never = engine_presence(s)
    assert never["running"] == [] and "ever run" in never["sentence"]
    with sqlite_database.transaction() as s:
        s.add(
            EngineHeartbeat(
                engine="old", worker="engine", last_beat_at=utcnow() - timedelta(minutes=5)
            )
        )
    with sqlite_database.session() as s:
        stale = engine_presence(s)
    assert stale["running"] == [] and "last one beat 300 s ago" in stale["sentence"]
    with sqlite_database.transaction() as s:
        s.add(EngineHeartbeat(engine="e2", worker="engine", last_beat_at=utcnow()))
        s.add(EngineHeartbeat(engine="e3", worker="engine", last_beat_at=utcnow(), state="stopped"))
    with sqlite_database.session() as s:
        alive = engine_presence(s)
    assert alive["running"] == ["e2"] and alive["sentence"] == "1 send engine running (e2)."
    with sqlite_database.transaction() as s:
        s.execute(update(EngineHeartbeat).values(state="stopped", last_beat_at=utcnow()))
    with sqlite_database.session() as s:
        stopped = engine_presence(s)
    assert stopped["running"] == [] and " stopped 0 s ago" in stopped["sentence"]


# ---------------------------------------------------------------- preview


def test_preview_is_the_engines_message_with_group_and_server_settings(
    sqlite_database: Database,
) -> None:
    with sqlite_database.transaction() as s:
        servers.create_server(
            s,
            {
                "name": "relay",
                "host": "127.0.0.1",
                "port": 2525,
                "encryption": "none",
                "link_tracking_domain": "track.example.net",
                "open_tracking_domain": "open.example.net",
                "mail_from_domain": "bounce.example.net",
            },
        )
        groups.create_group(
            s,
            {
                "name": "Senders",
                "marketing_server": "relay",
                "plain_text_header": "TEXT HEADER",
                "plain_text_footer": "TEXT FOOTER",
                "html_header": "<p>HTML HEADER</p>",
                "html_footer": "<p>HTML FOOTER</p>",
            },
        )
        users.create_user(s, {"username": "alice", "email": "a@example.com", "group": "Senders"})
    with sqlite_database.session() as s:
        shown = preview_message(
            s,
            "alice",
            "marketing",
            "news@example.com",
            "News",
            "Hello",
            "Body text",
            '<p>Read <a href="https://example.com/offer">this</a></p>',
            "sample@example.org",
        )
    headers = dict(shown["headers"])
    assert headers["To"] == "sample@example.org"
    assert headers["Subject"] == "Hello"
    assert (
        "List-Unsubscribe" in headers
        and "https://track.example.net/u/" in headers["List-Unsubscribe"]
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert shown["text"].index("TEXT HEADER") < shown["text"].index("Body text")
    assert shown["text"].index("Body text") < shown["text"].index("TEXT FOOTER")
    assert "HTML HEADER" in shown["html"] and "HTML FOOTER" in shown["html"]
    assert "https://example.com/offer" not in shown["html"]
    assert "https://track.example.net/c/" in shown["html"]
    assert "https://open.example.net/o/" in shown["html"]
    assert shown["envelope_from"].endswith("@bounce.example.net")
    assert (shown["tracked_links"], shown["tracking_hosts"]) == (1, ["track.example.net"])
    assert "'relay'" in shown["route"]
    # A transactional preview has neither tracking nor List-Unsubscribe.
    with sqlite_database.session() as s:
        plain = preview_message(
            s, "alice", "transactional", "news@example.com", None, "Hi", None,
            '<a href="https://example.com/x">x</a>',
        )  # fmt: skip
    assert "List-Unsubscribe" not in dict(plain["headers"])
    assert "https://example.com/x" in plain["html"]
