"""One rule for names on SQLite, PostgreSQL and MariaDB: case-insensitive after NFKC,
accents significant, invisible characters refused."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from app.models import database as database_module
from app.models.base import name_key
from app.models.database import Database
from app.services import dns_templates, groups, sender_domains, servers, users, validation
from app.services.errors import ConflictError, ValidationError


def test_names_differing_only_by_case_or_compatibility_form_collide(database: Database) -> None:
    with database.transaction() as s:
        servers.create_server(s, {"name": "s1", "host": "a.example.com"})
        groups.create_group(s, {"name": "ﬁnance"})  # the "fi" ligature
        users.create_user(s, {"username": "alice", "email": "a@example.com", "group": "finance"})
        dns_templates.create_template(s, name="Straße", kind="campaign", records=[])
    attempts = [
        lambda s: servers.create_server(s, {"name": "S1", "host": "b.example.com"}),
        lambda s: groups.create_group(s, {"name": "FINANCE"}),
        lambda s: users.create_user(
            s, {"username": "ALICE", "email": "b@example.com", "group": "finance"}
        ),
        lambda s: dns_templates.create_template(s, name="STRASSE", kind="campaign", records=[]),
    ]
    for attempt in attempts:
        with pytest.raises(ConflictError, match="already exists"), database.transaction() as s:
            attempt(s)
    with database.session() as s:  # and each is found under any of its forms
        assert servers.get_server(s, "S1").name == "s1"
        assert groups.get_group(s, "Finance").name == "ﬁnance"
        assert users.get_user(s, "Alice").username == "alice"
        assert dns_templates.get_template(s, "campaign", "strasse").name == "Straße"


def test_sender_domains_and_user_lists_find_names_the_same_way(database: Database) -> None:
    """Every lookup by name uses the one rule, not only the named tables' own services."""
    with database.transaction() as s:
        groups.create_group(s, {"name": "Sales", "sender_domain_management": True})
        users.create_user(s, {"username": "alice", "email": "a@example.com", "group": "Sales"})
        sender_domains.create_sender_domain(s, "ALICE", "mail.alice.test")
    with database.session() as s:
        assert [d.domain for d in sender_domains.list_sender_domains(s, username="Alice")] == [
            "mail.alice.test"
        ]
        assert [u.username for u in users.list_users(s, group="SALES")] == ["alice"]
        assert [row["username"] for row in users.user_rows(s, group="sales")] == ["alice"]


def test_accented_names_are_different_names(database: Database) -> None:
    """MariaDB's default collation took A1 and Ä1 for one name; now no backend does."""
    with database.transaction() as s:
        servers.create_server(s, {"name": "A1", "host": "a.example.com"})
        servers.create_server(s, {"name": "Ä1", "host": "b.example.com"})
        groups.create_group(s, {"name": "Resume"})
        groups.create_group(s, {"name": "Résumé"})
        dns_templates.create_template(s, name="Cafe", kind="gateway", records=[])
        dns_templates.create_template(s, name="Café", kind="gateway", records=[])
    with database.session() as s:
        assert servers.get_server(s, "ä1").host == "b.example.com"
        assert servers.get_server(s, "a1").host == "a.example.com"
        assert [g.name for g in groups.list_groups(s)] == ["Resume", "Résumé"]


def test_renaming_onto_another_name_is_refused(database: Database) -> None:
    with database.transaction() as s:
        servers.create_server(s, {"name": "Main", "host": "a.example.com"})
        servers.create_server(s, {"name": "Spare", "host": "b.example.com"})
    with pytest.raises(ConflictError), database.transaction() as s:
        servers.update_server(s, "Spare", {"name": "MAIN"})
    with database.transaction() as s:  # a change of case of one's own name is fine
        servers.update_server(s, "Main", {"name": "MAIN"})
    with database.session() as s:
        assert servers.get_server(s, "main").name == "MAIN"


@pytest.mark.parametrize("hidden", ["\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060", "\u200e"])
def test_invisible_characters_are_refused_in_names(database: Database, hidden: str) -> None:
    code = f"U\\+{ord(hidden):04X}"
    with pytest.raises(ValidationError, match=code), database.transaction() as s:
        servers.create_server(s, {"name": f"s{hidden}1", "host": "a.example.com"})
    with pytest.raises(ValidationError), database.transaction() as s:
        groups.create_group(s, {"name": f"G{hidden}"})
    with pytest.raises(ValidationError), database.transaction() as s:
        dns_templates.create_template(s, name=f"T{hidden}x", kind="campaign", records=[])


NAME_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


@settings(max_examples=200, deadline=None)
@given(st.text(NAME_CHARS, max_size=30))
def test_accepted_names_have_no_invisible_characters(raw: str) -> None:
    try:
        accepted = validation.name(raw, "Name")
    except ValidationError as exc:
        assert exc.field == "Name" and "\n" not in str(exc)
        return
    assert all(unicodedata.category(ch) not in ("Cf", "Cc") or ch == "\t" for ch in accepted)
    assert "\u200b" not in accepted and "\u3164" not in accepted
    assert validation.name(accepted, "Name") == accepted
    assert name_key(name_key(accepted)) == name_key(accepted)  # the key is stable


def _config() -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(database_module.__file__).parent / "migrations")
    )
    return config


def test_upgrade_fills_keys_and_keeps_rows_an_older_schema_let_in(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        names = ["Mail One", "Zwei"]
        if engine.dialect.name != "mysql":  # MariaDB's old collation refused this already
            names.append("MAIL ONE")
        for name in names:
            connection.execute(
                text(
                    "INSERT INTO delivery_servers (name, host, port, encryption, "
                    "timeout_seconds, auth_enabled, allow_unverified_certificate, "
                    "sender_info_as_mfrom, sender_info_as_from, max_connections, "
                    "last_test_status, version) VALUES (:name, 'h.example.com', 25, 'none', "
                    "10, false, false, false, false, 1, 'untested', 1)"
                ),
                {"name": name},
            )
    engine.dispose()
    db = Database(db_url)  # migrates to the head
    try:
        with db.session() as s:
            listed = {x.name: x.name_key for x in servers.list_servers(s)}
        assert listed["Mail One"] == "mail one" and listed["Zwei"] == "zwei"
        if "MAIL ONE" in listed:
            assert listed["MAIL ONE"].startswith("mail one\x1f")
        with pytest.raises(ConflictError), db.transaction() as s:
            servers.create_server(s, {"name": "mail one", "host": "x.example.com"})
        with db.transaction() as s:
            servers.create_server(s, {"name": "Drei", "host": "x.example.com"})
    finally:
        db.dispose()
