"""Sender domains: permissions, limits, template choice, record snapshots, status."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    AuditEntry,
    DomainStatus,
    SenderDomain,
    SenderDomainRecord,
    TemplateKind,
    User,
    UserGroup,
)
from app.models.database import Database
from app.services.dns_templates import (
    create_template,
    get_template,
    installation_hash_secret,
    sender_domain_hash,
    update_template,
)
from app.services.errors import (
    ConcurrentEditError,
    ConflictError,
    LimitExceeded,
    NotFoundError,
    ValidationError,
)
from app.services.sender_domains import (
    create_sender_domain,
    delete_sender_domain,
    domain_as_dict,
    get_sender_domain,
    list_sender_domains,
    set_domain_status,
)


def add_user(
    session: Session,
    username: str = "alice",
    *,
    group: str = "Senders",
    **group_settings: object,
) -> User:
    """A user in a (new or existing) group; the group may manage sender domains by default."""
    user_group = session.scalars(select(UserGroup).where(UserGroup.name == group)).one_or_none()
    if user_group is None:
        group_settings.setdefault("sender_domain_management", True)
        user_group = UserGroup(name=group, **group_settings)
        session.add(user_group)
    user = User(username=username, email=f"{username}@example.com", group=user_group)
    session.add(user)
    session.flush()
    return user


def count(session: Session, model: type[object]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# ---------------------------------------------------------------- all backends


def test_domain_gets_a_snapshot_of_the_default_template(database: Database) -> None:
    with database.transaction() as session:
        add_user(session)
        created = create_sender_domain(session, "alice", "Mail.Example.com", actor="admin@ws")
        token = created.random_token
    with database.session() as session:
        domain = get_sender_domain(session, "mail.example.com")
        secret = installation_hash_secret(session)
        data = domain_as_dict(domain)
        assert re.fullmatch(r"[a-z0-9]{10}", token)
        assert data["domain"] == "mail.example.com"
        assert (data["kind"], data["status"], data["user"], data["template"]) == (
            "campaign",
            "approval_pending",
            "alice",
            "Default",
        )
        assert data["records"] == [
            {"host": "sl.mail.example.com", "type": "CNAME", "value": "primary-sender-domain.com"},
            {
                "host": "key1._domainkey.sl.mail.example.com",
                "type": "CNAME",
                "value": "key1._domainkey.primary-sender-domain.com",
            },
            {
                "host": "_dmarc.sl.mail.example.com",
                "type": "CNAME",
                "value": "_dmarc.primary-sender-domain.com",
            },
            {
                "host": "track-sl.mail.example.com",
                "type": "CNAME",
                "value": "primary-sender-domain.com",
            },
            {
                "host": f"{token}.sl.mail.example.com",
                "type": "TXT",
                "value": sender_domain_hash("mail.example.com", secret),
            },
        ]
        assert data["created_at"] is not None and data["verified_at"] is None
        entry = session.scalars(select(AuditEntry)).one()
        assert (entry.action, entry.entity, entry.entity_key, entry.actor) == (
            "create",
            "sender_domain",
            "mail.example.com",
            "admin@ws",
        )


def test_editing_the_template_changes_no_existing_domain(database: Database) -> None:
    with database.transaction() as session:
        add_user(session)
        before = domain_as_dict(create_sender_domain(session, "alice", "old.example.com"))
    with database.transaction() as session:
        update_template(
            session,
            "campaign",
            "Default",
            records=[("_SenderDomain_", "TXT", "v=spf1 include:_SenderTarget_ -all")],
        )
    with database.transaction() as session:
        after = domain_as_dict(get_sender_domain(session, "old.example.com"))
        # created_at is left out: MariaDB's DATETIME drops the microseconds on the way in.
        assert {k: v for k, v in after.items() if k != "created_at"} == {
            k: v for k, v in before.items() if k != "created_at"
        }
        assert len(before["records"]) == 5
        newer = create_sender_domain(session, "alice", "new.example.com")
        assert [(r.host, r.type) for r in newer.records] == [("new.example.com", "TXT")]


def test_empty_template_enables_the_domain_at_once(database: Database) -> None:
    with database.transaction() as session:
        add_user(session, perm_gateway_add_domain=True)
        domain = create_sender_domain(session, "alice", "gw.example.com", kind="gateway")
        assert domain.status is DomainStatus.ENABLED
        assert domain.records == []
        assert domain.template_name == "Default"
    with database.session() as session:
        assert list_sender_domains(session, status="enabled", kind="gateway")[0].verified_at is None


def test_limit_reached_raises_and_stores_nothing(database: Database) -> None:
    with database.transaction() as session:
        add_user(session, sender_domains_limit=1)
        create_sender_domain(session, "alice", "one.example.com")
    with database.transaction() as session, pytest.raises(LimitExceeded) as caught:
        create_sender_domain(session, "alice", "two.example.com")
    assert caught.value.limit == "sender_domains"
    assert str(caught.value) == (
        "User alice has reached the sender domains limit of 1 of group Senders; "
        "raise the limit or delete a domain."
    )
    with database.session() as session:
        assert [d.domain for d in list_sender_domains(session)] == ["one.example.com"]
        assert count(session, SenderDomainRecord) == 5
        assert count(session, AuditEntry) == 1


def test_duplicate_domain_is_refused(database: Database) -> None:
    with database.transaction() as session:
        add_user(session)
        add_user(session, "bob")
        create_sender_domain(session, "alice", "mail.example.com")
    with database.transaction() as session, pytest.raises(ConflictError, match="alice"):
        create_sender_domain(session, "bob", "MAIL.example.com.")
    with database.session() as session:
        assert count(session, SenderDomain) == 1


def test_idna_domain_is_stored_as_punycode(database: Database) -> None:
    with database.transaction() as session:
        add_user(session)
        create_sender_domain(session, "alice", "Bücher.example")
    with database.session() as session:
        stored = session.scalars(select(SenderDomain.domain)).one()
        assert stored == "xn--bcher-kva.example"
        # Looked up by either spelling.
        assert get_sender_domain(session, "bücher.example").domain == stored
        hosts = session.scalars(select(SenderDomainRecord.host)).all()
        assert "sl.xn--bcher-kva.example" in hosts


# ---------------------------------------------------------------- SQLite


def test_campaign_domain_needs_sender_domain_management(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        add_user(session, sender_domain_management=False)
        with pytest.raises(ConflictError, match='"Enable sender domain management"'):
            create_sender_domain(session, "alice", "mail.example.com")
        assert count(session, SenderDomain) == 0


def test_gateway_domain_needs_the_add_domain_permission(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        add_user(session, perm_gateway_add_domain=False)
        with pytest.raises(ConflictError, match=r"EmailGateway\.AddDomain"):
            create_sender_domain(session, "alice", "gw.example.com", kind="gateway")
        assert count(session, SenderDomain) == 0


def test_unknown_user_and_invalid_input_are_refused(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        add_user(session)
        with pytest.raises(NotFoundError, match="nobody"):
            create_sender_domain(session, "nobody", "mail.example.com")
        with pytest.raises(ValidationError, match="Sender domain"):
            create_sender_domain(session, "alice", "localhost")
        with pytest.raises(ValidationError, match="Domain kind"):
            create_sender_domain(session, "alice", "mail.example.com", kind="sms")
        with pytest.raises(NotFoundError):
            get_sender_domain(session, "mail.example.com")


def test_group_template_is_used_and_recorded(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        template = create_template(
            session,
            name="EU Server",
            kind="campaign",
            records=[("_Subdomain_._SenderDomain_", "CNAME", "eu.mailer.example.net")],
        )
        add_user(session, campaign_dns_template=template)
        domain = create_sender_domain(session, "alice", "mail.example.com")
        assert domain.template_name == "EU Server"
        assert [(r.host, r.value) for r in domain.records] == [
            ("sl.mail.example.com", "eu.mailer.example.net")
        ]


def test_template_of_the_wrong_kind_is_refused(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        gateway_default = get_template(session, "gateway", "Default")
        add_user(session, campaign_dns_template=gateway_default)
        with pytest.raises(ConflictError, match="pick a campaign template"):
            create_sender_domain(session, "alice", "mail.example.com")


def test_zero_limit_is_unlimited_and_limit_counts_both_kinds(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        add_user(session, sender_domains_limit=0, perm_gateway_add_domain=True)
        for index in range(3):
            create_sender_domain(session, "alice", f"m{index}.example.com")
        user = add_user(session, "bob", group="Limited", sender_domains_limit=2)
        user.group.perm_gateway_add_domain = True
        create_sender_domain(session, "bob", "b.example.com")
        create_sender_domain(session, "bob", "b.example.com", kind="gateway")  # other kind: ok
        with pytest.raises(LimitExceeded):
            create_sender_domain(session, "bob", "c.example.com", kind="gateway")
        assert len(list_sender_domains(session, username="alice")) == 3
        assert len(list_sender_domains(session, username="bob")) == 2


def test_status_changes_listing_and_delete(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        add_user(session)
        create_sender_domain(session, "alice", "a.example.com")
        create_sender_domain(session, "alice", "b.example.com")
    with sqlite_database.transaction() as session:
        domain = set_domain_status(session, "a.example.com", "campaign", "enabled")
        assert (domain.status, domain.version, domain.verified_at) == (
            DomainStatus.ENABLED,
            2,
            None,
        )
        with pytest.raises(ConcurrentEditError):
            set_domain_status(session, "a.example.com", "campaign", "disabled", expected_version=1)
        with pytest.raises(ValidationError, match="Status"):
            set_domain_status(session, "a.example.com", "campaign", "verified")
    with sqlite_database.transaction() as session:
        assert [d.domain for d in list_sender_domains(session, status=DomainStatus.ENABLED)] == [
            "a.example.com"
        ]
        assert [d.domain for d in list_sender_domains(session, kind=TemplateKind.CAMPAIGN)] == [
            "a.example.com",
            "b.example.com",
        ]
        with pytest.raises(NotFoundError):
            list_sender_domains(session, username="nobody")
        delete_sender_domain(session, "b.example.com", "campaign", actor="admin@ws")
    with sqlite_database.session() as session:
        assert [d.domain for d in list_sender_domains(session)] == ["a.example.com"]
        assert count(session, SenderDomainRecord) == 5  # b's records went with it
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert actions == ["create", "create", "update", "delete"]
