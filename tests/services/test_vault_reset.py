"""Starting a new vault when the key is lost: passwords cleared and listed, all audited."""

from __future__ import annotations

import json

import keyring
import keyring.errors
import pytest
from keyring.backends import fail
from sqlalchemy import select

from app.models import AuditEntry, DeliveryServer, Installation
from app.models.database import Database
from app.services import audit, servers
from app.services.errors import SecretsUnavailable, VaultKeyError
from app.services.keyring_store import SecretStore
from app.services.vault import (
    ClearedPassword,
    Vault,
    generate_vault_key,
    open_vault,
    passwords_to_reenter,
    reset_vault,
    vault_key_id,
)
from tests.memory_keyring import MemoryKeyring

pytestmark = pytest.mark.databases

ACTOR = "admin@workstation"


def add_servers(db: Database) -> str:
    """Two servers with a password, one without; returns the vault key used."""
    with db.transaction() as session:
        vault = open_vault(session)
        for name in ("Beta", "Alpha"):
            servers.create_server(
                session,
                {"name": name, "host": "smtp.example.com", "username": "mailer"},
                password=f"{name}-smtp-secret",
                cipher=vault,
            )
        servers.create_server(session, {"name": "Open relay", "host": "relay.example.com"})
    return vault.key


def stored(db: Database) -> dict[str, tuple[str | None, int]]:
    with db.session() as session:
        rows = session.execute(
            select(DeliveryServer.name, DeliveryServer.password_encrypted, DeliveryServer.version)
        ).all()
    return {row.name: (row.password_encrypted, row.version) for row in rows}


def vault_check(db: Database) -> str | None:
    with db.session() as session:
        return session.scalars(select(Installation.vault_check)).one()


def audit_entries(db: Database) -> list[AuditEntry]:
    with db.session() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def key_name(db: Database) -> str:
    with db.session() as session:
        return vault_key_id(session)


def test_lost_key_reset_clears_lists_and_audits(
    database: Database, memory_keyring: MemoryKeyring
) -> None:
    old_key = add_servers(database)
    before = stored(database)
    memory_keyring._store.clear()  # the only copy of the key is gone
    with database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert "postroom vault reset" in caught.value.message
    with database.session() as session:
        assert passwords_to_reenter(session) == (
            ClearedPassword("delivery_server", "Alpha"),
            ClearedPassword("delivery_server", "Beta"),
        )
    audit_before = len(audit_entries(database))

    with database.transaction() as session:
        result = reset_vault(session, actor=ACTOR)

    assert result.cleared == (
        ClearedPassword("delivery_server", "Alpha"),
        ClearedPassword("delivery_server", "Beta"),
    )
    assert result.key_source == "keyring"
    assert result.key_id == key_name(database)
    after = stored(database)
    for name in ("Alpha", "Beta"):
        assert after[name][0] is None
        assert after[name][1] == before[name][1] + 1  # open editors see the change
    assert after["Open relay"] == before["Open relay"]

    new_key = memory_keyring.get_password("postroom", key_name(database))
    assert new_key is not None and new_key != old_key
    check = vault_check(database)
    assert check is not None and Vault(new_key).matches(check)
    with database.transaction() as session:
        assert open_vault(session, create=False).key == new_key
        servers.update_server(session, "Alpha", {}, password="again", cipher=open_vault(session))

    entries = audit_entries(database)[audit_before:]
    reset_entries = [e for e in entries if e.entity == "vault"]
    assert [(e.action, e.entity_key, e.actor) for e in reset_entries] == [
        ("reset", key_name(database), ACTOR)
    ]
    details = json.loads(reset_entries[0].details or "{}")
    assert details["cleared_passwords"] == ["delivery_server Alpha", "delivery_server Beta"]
    assert details["key_source"] == "keyring"
    cleared = [(e.action, e.entity_key) for e in entries if e.entity == "delivery_server"]
    assert cleared[:2] == [("update", "Alpha"), ("update", "Beta")]
    everything = " ".join(f"{e.entity_key} {e.details}" for e in audit_entries(database))
    for secret in (old_key, new_key, "Alpha-smtp-secret", "Beta-smtp-secret", "again"):
        assert secret not in everything
    # The audit filters (console page and `audit --entity vault`) know the entry's kind.
    with database.session() as session:
        filtered = audit.list_entries(session, entity="vault")
    assert [(e.action, e.key) for e in filtered] == [("reset", key_name(database))]


def test_reset_without_a_keyring_or_explicit_key_changes_nothing(database: Database) -> None:
    add_servers(database)
    before, check, audit_count = (
        stored(database),
        vault_check(database),
        len(audit_entries(database)),
    )
    keyring.set_keyring(fail.Keyring())
    with database.transaction() as session, pytest.raises(SecretsUnavailable) as caught:
        reset_vault(session)
    assert "POSTROOM_VAULT_KEY" in caught.value.message
    assert stored(database) == before
    assert vault_check(database) == check
    assert len(audit_entries(database)) == audit_count


def test_reset_adopts_the_explicit_key_and_leaves_the_keyring_alone(
    database: Database, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_key = add_servers(database)
    explicit = generate_vault_key()
    monkeypatch.setenv("POSTROOM_VAULT_KEY", explicit)
    with database.transaction() as session:
        result = reset_vault(session)
    assert result.key_source == "env"
    assert [c.name for c in result.cleared] == ["Alpha", "Beta"]
    check = vault_check(database)
    assert check is not None and Vault(explicit).matches(check)
    assert memory_keyring.get_password("postroom", key_name(database)) == old_key


def test_reset_of_a_database_without_a_vault_creates_one(
    database: Database, memory_keyring: MemoryKeyring
) -> None:
    with database.transaction() as session:
        result = reset_vault(session)
    assert result.cleared == ()
    key = memory_keyring.get_password("postroom", key_name(database))
    check = vault_check(database)
    assert key is not None and check is not None and Vault(key).matches(check)


class RefusingWrites(MemoryKeyring):
    """A keyring that reads but refuses the write (locked between two calls)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("Failed to unlock the collection!")


def test_failed_keyring_write_rolls_the_whole_reset_back(
    database: Database,
) -> None:
    add_servers(database)
    before, check, audit_count = (
        stored(database),
        vault_check(database),
        len(audit_entries(database)),
    )
    with database.transaction() as session, pytest.raises(SecretsUnavailable):
        reset_vault(session, store=SecretStore(backend=RefusingWrites()))
    assert stored(database) == before
    assert vault_check(database) == check
    assert len(audit_entries(database)) == audit_count
