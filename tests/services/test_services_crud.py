"""Servers, groups, users, routing, allocation badges, audit and optimistic locking."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, Channel, DeliveryServer, UserGroup
from app.models.database import Database
from app.services import groups, routing, servers, users
from app.services.audit import list_entries
from app.services.errors import ConcurrentEditError, ConflictError, NotFoundError, ValidationError


class FakeCipher:
    """Stands in for the vault in tests that are about servers, not cryptography."""

    def encrypt(self, plaintext: str) -> str:
        return "enc:" + plaintext[::-1]

    def decrypt(self, token: str) -> str:
        return token.removeprefix("enc:")[::-1]


def seed(db: Database) -> None:
    with db.transaction() as s:
        servers.create_server(s, {"name": "M1", "host": "m1.example.com", "port": 587})
        servers.create_server(
            s, {"name": "T1", "host": "t1.example.com", "port": 465, "encryption": "ssl"}
        )
        servers.create_server(s, {"name": "Spare", "host": "spare.example.com"})
        groups.create_group(
            s,
            {
                "name": "UserGroup1",
                "marketing_server": "M1",
                "transactional_server": "M1",
                "autoresponder_server": "T1",
            },
        )
        groups.create_group(s, {"name": "Legacy", "legacy_send_method": "savetodisk"})
        groups.create_group(s, {"name": "Bare"})
        users.create_user(
            s, {"username": "alice", "email": "alice@example.com", "group": "UserGroup1"}
        )
        users.create_user(s, {"username": "bob", "email": "bob@example.com", "group": "Legacy"})
        users.create_user(s, {"username": "carol", "email": "carol@example.com", "group": "Bare"})


def test_routing_and_badges(database: Database) -> None:
    seed(database)
    with database.session() as s:
        route = routing.resolve_route(s, "alice", "marketing")
        assert (route.server, route.method) == ("M1", "delivery_server")
        assert "UserGroup1" in route.reason and "M1" in route.reason
        assert routing.resolve_route(s, "alice", Channel.AUTORESPONDER).server == "T1"
        legacy = routing.resolve_route(s, "bob", "transactional")
        assert (legacy.server, legacy.method) == (None, "savetodisk")
        assert "legacy" in legacy.reason
        none = routing.resolve_route(s, "carol", "marketing")
        assert (none.server, none.method) == (None, "none")
        with pytest.raises(Exception, match="no delivery server") as info:
            routing.require_route(s, "carol", "marketing")
        assert type(info.value).__name__ == "NoDeliveryRoute"
        with pytest.raises(ValidationError, match="Channel"):
            routing.resolve_route(s, "alice", "fax")
        with pytest.raises(NotFoundError):
            routing.resolve_route(s, "nobody", "marketing")

        badges = routing.allocation_badges(s)
        assert [(b.group, b.code) for b in badges["M1"]] == [
            ("UserGroup1", "M"),
            ("UserGroup1", "T"),
        ]
        assert [b.colour for b in badges["M1"]] == ["blue", "green"]
        assert [(b.code, b.colour) for b in badges["T1"]] == [("AR", "purple")]
        assert routing.badge_text(badges["Spare"]) == "Not Allocated"
        assert routing.badge_text(badges["M1"]) == "UserGroup1: M T"


def test_allocated_server_cannot_be_deleted(database: Database) -> None:
    seed(database)
    with pytest.raises(ConflictError, match="UserGroup1"), database.transaction() as s:
        servers.delete_server(s, "M1")
    with database.transaction() as s:
        servers.delete_server(s, "Spare")
    with database.session() as s:
        assert {x.name for x in servers.list_servers(s)} == {"M1", "T1"}


def test_group_with_users_cannot_be_deleted(sqlite_database: Database) -> None:
    seed(sqlite_database)
    with pytest.raises(ConflictError, match="1 user"), sqlite_database.transaction() as s:
        groups.delete_group(s, "Bare")


def test_duplicate_names_refused(sqlite_database: Database) -> None:
    seed(sqlite_database)
    with pytest.raises(ConflictError, match="already exists"), sqlite_database.transaction() as s:
        servers.create_server(s, {"name": "M1", "host": "x.example.com"})
    with pytest.raises(ConflictError), sqlite_database.transaction() as s:
        users.create_user(s, {"username": "alice", "email": "a@example.com", "group": "Bare"})


def test_refused_update_changes_nothing(database: Database) -> None:
    seed(database)
    with pytest.raises(ValidationError, match="SMTP Port"), database.transaction() as s:
        servers.update_server(s, "M1", {"host": "new.example.com", "port": 0})
    with pytest.raises(ValidationError, match="Marketing"), database.transaction() as s:
        groups.update_group(s, "UserGroup1", {"daily_email_limit": 5, "marketing_server": "Nope"})
    with database.session() as s:
        server = servers.get_server(s, "M1")
        assert (server.host, server.port, server.version) == ("m1.example.com", 587, 1)
        group = groups.get_group(s, "UserGroup1")
        assert group.daily_email_limit is None
        assert group.marketing_server is not None and group.marketing_server.name == "M1"


def test_second_console_save_is_refused(database: Database) -> None:
    seed(database)
    with database.session() as s:
        seen_version = servers.get_server(s, "M1").version
    with database.transaction() as s:  # console A saves
        servers.update_server(s, "M1", {"port": 2525}, expected_version=seen_version)
    with pytest.raises(ConcurrentEditError, match="reload"), database.transaction() as s:
        servers.update_server(s, "M1", {"port": 25}, expected_version=seen_version)
    with database.session() as s:
        assert servers.get_server(s, "M1").port == 2525


def test_password_is_encrypted_and_audit_never_holds_it(sqlite_database: Database) -> None:
    cipher = FakeCipher()
    with sqlite_database.transaction() as s:
        servers.create_server(
            s,
            {"name": "Auth", "host": "auth.example.com", "username": "u"},
            password="pa55word!",
            cipher=cipher,
        )
        servers.update_server(s, "Auth", {}, password="n3w-pa55", cipher=cipher)
    with sqlite_database.session() as s:
        server = servers.get_server(s, "Auth")
        assert server.auth_enabled is True
        assert server.password_encrypted == cipher.encrypt("n3w-pa55")
        assert servers.decrypt_password(server, cipher) == "n3w-pa55"
        assert "password_encrypted" not in servers.server_as_dict(server)
        details = " ".join(e.details or "" for e in s.scalars(select(AuditEntry)))
        assert "pa55word!" not in details and "n3w-pa55" not in details


def test_password_without_vault_is_refused(sqlite_database: Database) -> None:
    with pytest.raises(ValidationError, match="vault"), sqlite_database.transaction() as s:
        servers.create_server(
            s, {"name": "A", "host": "a.example.com", "username": "u"}, password="x"
        )
    with sqlite_database.session() as s:
        assert s.scalar(select(func.count()).select_from(DeliveryServer)) == 0


def test_auth_needs_username(sqlite_database: Database) -> None:
    with pytest.raises(ValidationError, match="Username"), sqlite_database.transaction() as s:
        servers.create_server(s, {"name": "A", "host": "a.example.com", "auth_enabled": True})


def test_warnings_for_port_encryption_mismatch(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as s:
        server = servers.create_server(
            s, {"name": "A", "host": "a.example.com", "port": 465, "encryption": "tls"}
        )
        notes = servers.warnings_for(server)
    assert any("465" in n and "SSL" in n for n in notes)


def test_group_settings_round_trip(database: Database) -> None:
    seed(database)
    values = {
        "campaign_dns_template": "Default",
        "gateway_dns_template": "Default",
        "sender_domain_management": True,
        "default_sender_domain_enabled": True,
        "default_sender_domain": "Mail.Example.COM",
        "default_sender_domain_monthly_limit": 150,
        "monthly_email_limit": "10000",
        "daily_email_limit": 500,
        "lifetime_email_limit": 0,
        "sender_domains_limit": "",
        "plain_text_header": "Hello\n",
        "html_footer": "<p>Unsubscribe</p>\n",
        "x_mailer": "Postroom",
        "perm_gateway_add_domain": "yes",
        "perm_gateway_manage_domain": False,
    }
    with database.transaction() as s:
        groups.update_group(s, "Bare", values)
    with database.session() as s:
        data = groups.group_as_dict(groups.get_group(s, "Bare"))
    assert data["default_sender_domain"] == "mail.example.com"
    assert data["monthly_email_limit"] == 10000
    assert data["lifetime_email_limit"] is None  # 0 means unlimited
    assert data["sender_domains_limit"] is None
    assert data["campaign_dns_template"] == "Default"
    assert data["perm_gateway_add_domain"] is True
    assert data["html_footer"] == "<p>Unsubscribe</p>\n"
    assert data["version"] == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"x_mailer": "Evil\r\nBcc: victim@example.com"}, "X-Mailer"),
        ({"default_sender_domain_enabled": True}, "Default Sender Domain"),
        ({"legacy_send_method": "pigeon"}, "Legacy send method"),
        ({"colour": "red"}, "colour"),
        ({"campaign_dns_template": "Missing"}, "Email Campaign DNS Template"),
    ],
)
def test_group_refusals_name_the_field(
    sqlite_database: Database, changes: dict[str, object], field: str
) -> None:
    seed(sqlite_database)
    with pytest.raises(ValidationError) as info, sqlite_database.transaction() as s:
        groups.update_group(s, "Bare", changes)
    assert info.value.field == field or field in str(info.value)
    assert "\n" not in str(info.value)


def test_audit_trail(sqlite_database: Database) -> None:
    seed(sqlite_database)
    with sqlite_database.transaction() as s:
        servers.update_server(s, "Spare", {"port": 2525}, actor="admin@ws1")
        users.update_user(s, "carol", {"group": "UserGroup1"}, actor="admin@ws1")
        servers.delete_server(s, "Spare", actor="admin@ws1")
    with sqlite_database.session() as s:
        entries = list_entries(s, text="admin@ws1")
        assert [(e.action, e.entity, e.key) for e in entries] == [
            ("delete", "delivery_server", "Spare"),
            ("update", "user", "carol"),
            ("update", "delivery_server", "Spare"),
        ]
        assert entries[2].details == {"port": [587, 2525]}
        assert entries[1].details == {"group": ["Bare", "UserGroup1"]}
        assert len(list_entries(s, entity="user_group")) == 3
        raw = s.scalars(
            select(AuditEntry.details).where(AuditEntry.entity == "delivery_server")
        ).all()
        assert all(json.loads(r) is not None for r in raw if r)


def test_user_validation(sqlite_database: Database) -> None:
    seed(sqlite_database)
    with pytest.raises(ValidationError, match="Email"), sqlite_database.transaction() as s:
        users.create_user(s, {"username": "dave", "email": "not-an-address", "group": "Bare"})
    with pytest.raises(ValidationError, match="User group"), sqlite_database.transaction() as s:
        users.create_user(s, {"username": "dave", "email": "d@example.com", "group": "Nope"})
    with sqlite_database.session() as s:
        assert s.scalar(select(func.count()).select_from(UserGroup)) == 3
        assert [u.username for u in users.list_users(s)] == ["alice", "bob", "carol"]
