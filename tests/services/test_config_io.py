"""Configuration export/import: no secrets out, diff before apply, all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from app.models import AuditEntry, DeliveryServer, SenderDomain
from app.models.database import Database
from app.services import config_io, groups, sender_domains, servers, users
from app.services.errors import ValidationError

SECRET = "Tr0ub4dor&3-never-exported"


class FakeCipher:
    def encrypt(self, plaintext: str) -> str:
        return "enc:" + plaintext[::-1]

    def decrypt(self, token: str) -> str:
        return token.removeprefix("enc:")[::-1]


def populate(db: Database) -> None:
    with db.transaction() as s:
        servers.create_server(
            s,
            {
                "name": "M1",
                "host": "m1.example.com",
                "username": "u",
                "mail_from_domain": "b.example.com",
            },
            password=SECRET,
            cipher=FakeCipher(),
        )
        groups.create_group(
            s, {"name": "G", "marketing_server": "M1", "sender_domain_management": True}
        )
        users.create_user(s, {"username": "alice", "email": "alice@example.com", "group": "G"})
        sender_domains.create_sender_domain(s, "alice", "mail.example.com")


def test_export_has_everything_but_secrets(database: Database) -> None:
    populate(database)
    with database.session() as s:
        text = config_io.export_yaml(s)
    assert SECRET not in text
    assert "enc:" not in text
    doc = yaml.safe_load(text)
    assert [x["name"] for x in doc["delivery_servers"]] == ["M1"]
    assert doc["user_groups"][0]["marketing_server"] == "M1"
    assert doc["users"][0]["group"] == "G"
    assert doc["sender_domains"][0]["domain"] == "mail.example.com"
    assert len(doc["sender_domains"][0]["records"]) == 5
    assert {(t["kind"], t["name"]) for t in doc["dns_templates"]} == {
        ("campaign", "Default"),
        ("gateway", "Default"),
    }


def test_round_trip_into_an_empty_database(database: Database, tmp_path: Path) -> None:
    populate(database)
    with database.session() as s:
        exported = config_io.export_yaml(s)
    target = Database(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    try:
        document = config_io.parse_config(exported)
        with target.session() as s:
            plan = config_io.plan_import(s, document)
        assert {(c.section, c.action) for c in plan.changes} >= {
            ("delivery_servers", "create"),
            ("user_groups", "create"),
            ("users", "create"),
            ("sender_domains", "create"),
        }
        with target.session() as s:  # planning wrote nothing
            assert s.scalar(select(func.count()).select_from(DeliveryServer)) == 0
        with target.transaction() as s:
            config_io.apply_import(s, document)
        with target.session() as s:
            again = config_io.export_yaml(s)
            assert config_io.plan_import(s, config_io.parse_config(exported)).changes == []
        strip = lambda t: {k: v for k, v in yaml.safe_load(t).items() if k != "exported_by"}  # noqa: E731
        assert strip(again) == strip(exported)
    finally:
        target.dispose()


def test_diff_lists_changed_fields(sqlite_database: Database) -> None:
    populate(sqlite_database)
    with sqlite_database.session() as s:
        doc = yaml.safe_load(config_io.export_yaml(s))
    doc["delivery_servers"][0]["port"] = 2525
    doc["user_groups"][0]["daily_email_limit"] = 1000
    with sqlite_database.session() as s:
        plan = config_io.plan_import(s, config_io.parse_config(yaml.safe_dump(doc)))
    changes = {(c.section, c.key): c.fields for c in plan.changes}
    assert changes == {
        ("delivery_servers", "M1"): {"port": [587, 2525]},
        ("user_groups", "G"): {"daily_email_limit": [None, 1000]},
    }
    assert "port: 587 -> 2525" in plan.describe()


def test_failed_import_changes_nothing(database: Database) -> None:
    populate(database)
    with database.session() as s:
        doc = yaml.safe_load(config_io.export_yaml(s))
        audit_before = s.scalar(select(func.count()).select_from(AuditEntry))
    doc["delivery_servers"][0]["port"] = 2525  # a valid change first...
    doc["users"].append(
        {"username": "eve", "email": "eve@example.com\r\nBcc: x@example.com", "group": "G"}
    )
    document = config_io.parse_config(yaml.safe_dump(doc))
    with pytest.raises(ValidationError, match=r"users\[1\]"), database.transaction() as s:
        config_io.apply_import(s, document)
    with database.session() as s:
        assert servers.get_server(s, "M1").port == 587
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == audit_before
        assert s.scalar(select(func.count()).select_from(SenderDomain)) == 1


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[1, 2", "Import file"),
        ("- a\n- b\n", "Import file"),
        ("users: []\n", "postroom_config"),
        ("postroom_config: 1\nmailboxes: []\n", "mailboxes"),
        ("postroom_config: 1\nusers: {a: 1}\n", "users"),
    ],
)
def test_malformed_files_are_refused(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        config_io.parse_config(text)
    assert info.value.field == field
