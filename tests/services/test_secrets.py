"""Keyring facade (keyring_store), vault encryption and the per-database vault key (vault)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from keyring.backends import chainer, fail, null
from sqlalchemy import delete, select

from app.models import Installation
from app.models.database import Database
from app.services import keyring_store
from app.services import vault as vault_module
from app.services.errors import SecretsUnavailable, VaultKeyError
from app.services.keyring_store import KeyringStatus, SecretStore, keyring_status
from app.services.vault import (
    Vault,
    export_vault_key,
    generate_vault_key,
    import_vault_key,
    open_vault,
    set_vault_key_file,
    vault_key_id,
)
from tests.conftest import make_database_url
from tests.memory_keyring import MemoryKeyring, UnadmittedMemoryKeyring

KEYRING_MISMATCH = (
    "The vault key for this database does not match; import the right one with "
    "`postroom vault import-key`."
)


@pytest.fixture(autouse=True)
def no_explicit_vault_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The key-file opt-in is process state; no test may leak it into another."""
    monkeypatch.delenv("POSTROOM_VAULT_KEY_FILE", raising=False)
    set_vault_key_file(None)
    yield
    set_vault_key_file(None)


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith(".")
    # One sentence: no full stop followed by another sentence.
    assert ". " not in message.rstrip(".")


def vault_check(db: Database) -> str | None:
    with db.session() as session:
        return session.scalars(select(Installation.vault_check)).one()


def key_name(db: Database) -> str:
    with db.session() as session:
        return vault_key_id(session)


class ExplodingKeyring(keyring.backend.KeyringBackend):
    """A keyring whose service is there but refuses to work (locked, D-Bus gone)."""

    priority = 0  # never chosen automatically

    def __init__(self, error: Exception, *, fail_reads: bool = True) -> None:
        super().__init__()
        self.error = error
        self.fail_reads = fail_reads

    def get_password(self, service: str, username: str) -> str | None:
        if self.fail_reads:
            raise self.error
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise self.error

    def delete_password(self, service: str, username: str) -> None:
        raise self.error


class PlaintextKeyring(MemoryKeyring):
    """Stands in for keyrings.alt.file.PlaintextKeyring (the class name is what counts)."""


class AltFileKeyring(MemoryKeyring):
    """Stands in for a keyrings.alt file backend."""


AltFileKeyring.__module__ = "keyrings.alt.file"


# --- Vault ------------------------------------------------------------------------------


@given(st.text())
def test_vault_round_trip_any_text(plaintext: str) -> None:
    vault = Vault(generate_vault_key())
    assert vault.decrypt(vault.encrypt(plaintext)) == plaintext


def test_token_does_not_contain_the_plaintext() -> None:
    token = Vault(generate_vault_key()).encrypt("correct-horse-battery-staple")
    assert "horse" not in token


def test_vault_tokens_differ_for_the_same_text() -> None:
    vault = Vault(generate_vault_key())
    assert vault.encrypt("hunter2") != vault.encrypt("hunter2")


def test_generated_keys_are_fernet_keys_and_unique() -> None:
    first, second = generate_vault_key(), generate_vault_key()
    assert first != second
    assert len(first) == 44
    Fernet(first)  # accepted as-is by the primitive we build on


def test_wrong_key_is_detected() -> None:
    token = Vault(generate_vault_key()).encrypt("smtp-password")
    with pytest.raises(VaultKeyError) as caught:
        Vault(generate_vault_key()).decrypt(token)
    assert "postroom vault import-key" in caught.value.message
    assert_one_sentence(caught.value.message)


@pytest.mark.parametrize("token", ["", "not a token", "gAAAAAB" + "A" * 80, "ключ"])
def test_corrupt_token_is_a_vault_key_error(token: str) -> None:
    with pytest.raises(VaultKeyError):
        Vault(generate_vault_key()).decrypt(token)


@pytest.mark.parametrize("key", ["", "short", "x" * 44, generate_vault_key()[:-2]])
def test_malformed_key_is_refused(key: str) -> None:
    with pytest.raises(VaultKeyError) as caught:
        Vault(key)
    assert_one_sentence(caught.value.message)


def test_key_with_surrounding_whitespace_is_accepted() -> None:
    key = generate_vault_key()
    token = Vault(key).encrypt("x")
    assert Vault(f"  {key}\n").decrypt(token) == "x"


def test_vault_repr_does_not_show_the_key() -> None:
    key = generate_vault_key()
    assert key not in repr(Vault(key))


# --- Keyring status and SecretStore ------------------------------------------------------


def test_memory_keyring_is_usable(memory_keyring: keyring.backend.KeyringBackend) -> None:
    status = keyring_status()
    assert status == KeyringStatus(usable=True, backend=status.backend, reason=None)
    assert "memory" in status.backend


def test_a_keyring_that_forgets_at_exit_is_refused(sqlite_database: Database) -> None:
    backend = UnadmittedMemoryKeyring()
    keyring.set_keyring(backend)
    status = keyring_status()
    assert not status.usable
    assert status.reason is not None and "lost when Postroom exits" in status.reason
    with pytest.raises(SecretsUnavailable) as caught:
        SecretStore().set("profile:prod", "secret")
    assert_one_sentence(caught.value.message)
    with sqlite_database.transaction() as session, pytest.raises(SecretsUnavailable):
        open_vault(session)
    assert backend.values == {}
    assert vault_check(sqlite_database) is None


def test_the_test_keyring_is_only_usable_through_the_explicit_hook(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyring_store, "_volatile_backends_allowed", set())
    assert not keyring_status().usable
    with pytest.raises(SecretsUnavailable):
        SecretStore().set("vault-key:x", "secret")
    assert memory_keyring._store == {}
    keyring_store.allow_volatile_backend(MemoryKeyring)
    assert keyring_status().usable


def test_fail_backend_is_unusable_and_store_says_so_in_one_sentence() -> None:
    keyring.set_keyring(fail.Keyring())
    status = keyring_status()
    assert not status.usable
    assert "fail" in status.backend
    assert status.reason
    with pytest.raises(SecretsUnavailable) as caught:
        SecretStore().get("anything")
    message = caught.value.message
    assert_one_sentence(message)
    assert "fail" in message
    assert "POSTROOM_VAULT_KEY" in message
    assert "--vault-key-file" in message
    with pytest.raises(SecretsUnavailable):
        SecretStore().set("anything", "value")
    with pytest.raises(SecretsUnavailable):
        SecretStore().delete("anything")


@pytest.mark.parametrize(
    "backend",
    [null.Keyring(), PlaintextKeyring()]
    + ([AltFileKeyring()] if sys.platform.startswith("linux") else []),
    ids=lambda b: type(b).__name__,
)
def test_backends_that_would_lose_or_expose_secrets_are_unusable(
    backend: keyring.backend.KeyringBackend,
) -> None:
    keyring.set_keyring(backend)
    assert not keyring_status().usable
    with pytest.raises(SecretsUnavailable):
        SecretStore().set("vault-key:x", "secret")
    # Nothing was written behind our back.
    assert getattr(backend, "_store", {}) == {}


def test_backend_that_fails_to_load_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """keyring loads PYTHON_KEYRING_BACKEND eagerly and lets its viability check raise."""

    def broken_get_keyring() -> keyring.backend.KeyringBackend:
        raise RuntimeError("The Secret Service daemon is neither running nor activatable.")

    monkeypatch.setattr(keyring, "get_keyring", broken_get_keyring)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.SecretService.Keyring")
    status = keyring_status()
    assert not status.usable
    assert status.backend == "Secret Service"
    assert status.reason is not None and "neither running" in status.reason
    with pytest.raises(SecretsUnavailable) as caught:
        SecretStore().get("a")
    assert_one_sentence(caught.value.message)


def _chainer_over(
    monkeypatch: pytest.MonkeyPatch, *backends: keyring.backend.KeyringBackend
) -> chainer.ChainerBackend:
    for backend in backends:
        backend.priority = 5  # type: ignore[misc]  # instance only: chained, never auto-picked
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: list(backends))
    return chainer.ChainerBackend()


def test_chainer_without_backends_is_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    status = keyring_status(_chainer_over(monkeypatch))
    assert not status.usable
    assert status.reason is not None and "no backends" in status.reason


def test_chainer_is_judged_by_the_backend_it_writes_to(monkeypatch: pytest.MonkeyPatch) -> None:
    assert keyring_status(_chainer_over(monkeypatch, MemoryKeyring())).usable
    status = keyring_status(_chainer_over(monkeypatch, PlaintextKeyring(), MemoryKeyring()))
    assert not status.usable
    assert status.reason is not None and "plaintext" in status.reason


def test_store_round_trip_under_service_postroom(
    memory_keyring: keyring.backend.KeyringBackend,
) -> None:
    store = SecretStore()
    assert store.get("profile:prod") is None
    store.set("profile:prod", "s3cret")
    assert store.get("profile:prod") == "s3cret"
    assert memory_keyring.get_password("postroom", "profile:prod") == "s3cret"
    store.delete("profile:prod")
    assert store.get("profile:prod") is None
    store.delete("profile:prod")  # already gone: fine


@pytest.mark.parametrize(
    "error",
    [
        keyring.errors.KeyringLocked("Failed to unlock the collection!"),
        keyring.errors.InitError("Failed to create the collection: no such object."),
        ConnectionRefusedError(111, "Connection refused"),
        pytest.param("secretstorage", id="SecretServiceNotAvailable"),
        pytest.param("dbus", id="DBusErrorResponse"),
    ],
)
def test_keyring_failures_become_one_sentence_secrets_unavailable(error: Any) -> None:
    if error == "secretstorage":
        from secretstorage.exceptions import SecretServiceNotAvailableException

        error = SecretServiceNotAvailableException(
            "The name org.freedesktop.secrets was not provided by any .service files."
        )
    elif error == "dbus":
        error = _dbus_error()
    keyring.set_keyring(ExplodingKeyring(error))
    store = SecretStore()
    for action in (lambda: store.get("a"), lambda: store.set("a", "b"), lambda: store.delete("a")):
        with pytest.raises(SecretsUnavailable) as caught:
            action()
        assert_one_sentence(caught.value.message)
        assert "'a'" in caught.value.message
        assert caught.value.__cause__ is error


def _dbus_error() -> Exception:
    from jeepney import DBusAddress, new_error, new_method_call
    from jeepney.wrappers import DBusErrorResponse

    call = new_method_call(DBusAddress("/", bus_name="org.freedesktop.secrets"), "Ping")
    reply = new_error(
        call, "org.freedesktop.DBus.Error.NoReply", "s", ("Did not receive a reply.",)
    )
    return DBusErrorResponse(reply)


def test_an_unrelated_bug_in_a_backend_is_not_disguised() -> None:
    keyring.set_keyring(ExplodingKeyring(ZeroDivisionError()))
    with pytest.raises(ZeroDivisionError):
        SecretStore().get("a")


def test_refused_delete_of_an_existing_secret_is_reported() -> None:
    class Stubborn(MemoryKeyring):
        def delete_password(self, service: str, username: str) -> None:
            raise keyring.errors.PasswordDeleteError("Access denied")

    backend = Stubborn()
    backend.set_password("postroom", "a", "still here")
    keyring.set_keyring(backend)
    with pytest.raises(SecretsUnavailable):
        SecretStore().delete("a")


# --- open_vault ---------------------------------------------------------------------------


@pytest.mark.databases
def test_open_vault_creates_once_and_reuses(
    database: Database, memory_keyring: keyring.backend.KeyringBackend
) -> None:
    assert vault_check(database) is None
    with database.transaction() as session:
        first = open_vault(session)
        token = first.encrypt("smtp-password")
    stored = memory_keyring.get_password("postroom", key_name(database))
    assert stored == first.key
    check = vault_check(database)
    assert check is not None and first.key not in check
    with database.transaction() as session:
        second = open_vault(session)
    assert second.key == first.key
    assert second.decrypt(token) == "smtp-password"
    assert vault_check(database) == check  # not rewritten on reuse


def test_vault_key_id_names_the_installation(sqlite_database: Database) -> None:
    with sqlite_database.session() as session:
        installation_id = session.scalars(select(Installation.installation_id)).one()
        assert vault_key_id(session) == f"vault-key:{installation_id}"


def test_open_vault_updates_an_installation_the_caller_already_loaded(
    sqlite_database: Database,
) -> None:
    with sqlite_database.transaction() as session:
        installation = session.scalars(select(Installation)).one()
        assert installation.vault_check is None
        vault = open_vault(session)
        assert installation.vault_check is not None
        assert vault.decrypt(installation.vault_check)


def test_without_create_a_missing_key_is_an_error_and_nothing_is_written(
    sqlite_database: Database, memory_keyring: MemoryKeyring
) -> None:
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session, create=False)
    assert_one_sentence(caught.value.message)
    assert memory_keyring._store == {}
    assert vault_check(sqlite_database) is None


def test_existing_vault_is_never_replaced_by_a_new_key(
    sqlite_database: Database, memory_keyring: MemoryKeyring
) -> None:
    """Another workstation made the key; this one lacks it: refuse, don't generate."""
    with sqlite_database.transaction() as session:
        open_vault(session)
    check = vault_check(sqlite_database)
    memory_keyring._store.clear()
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session, create=True)
    assert "this workstation does not hold it" in caught.value.message
    assert "import-key" in caught.value.message
    assert memory_keyring._store == {}
    assert vault_check(sqlite_database) == check


def test_wrong_key_in_keyring_is_detected(
    sqlite_database: Database, memory_keyring: MemoryKeyring
) -> None:
    with sqlite_database.transaction() as session:
        open_vault(session)
    memory_keyring.set_password("postroom", key_name(sqlite_database), generate_vault_key())
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert caught.value.message == KEYRING_MISMATCH


def test_key_found_without_check_sets_the_check(
    sqlite_database: Database, memory_keyring: MemoryKeyring
) -> None:
    key = generate_vault_key()
    memory_keyring.set_password("postroom", key_name(sqlite_database), key)
    with sqlite_database.transaction() as session:
        assert open_vault(session).key == key
    check = vault_check(sqlite_database)
    assert check is not None and Vault(key).matches(check)
    # From now on a different key is told apart.
    memory_keyring.set_password("postroom", key_name(sqlite_database), generate_vault_key())
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError):
        open_vault(session)


def test_failed_keyring_write_leaves_no_check_behind(sqlite_database: Database) -> None:
    """A check for a key nobody holds would lock everyone out, even if the caller commits."""
    keyring.set_keyring(ExplodingKeyring(keyring.errors.KeyringLocked("locked"), fail_reads=False))
    with sqlite_database.session() as session:
        with pytest.raises(SecretsUnavailable):
            open_vault(session)
        session.commit()
    assert vault_check(sqlite_database) is None


def test_no_usable_keyring_and_no_explicit_key(sqlite_database: Database) -> None:
    keyring.set_keyring(fail.Keyring())
    with sqlite_database.transaction() as session, pytest.raises(SecretsUnavailable) as caught:
        open_vault(session)
    assert "POSTROOM_VAULT_KEY" in caught.value.message
    assert vault_check(sqlite_database) is None


# --- explicit keys: environment and key file ---------------------------------------------


def test_env_key_wins_and_needs_no_keyring(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_vault_key()
    monkeypatch.setenv("POSTROOM_VAULT_KEY", key)
    keyring.set_keyring(fail.Keyring())  # headless: the keyring is not even consulted
    with sqlite_database.transaction() as session:
        vault = open_vault(session)
    assert vault.key == key
    check = vault_check(sqlite_database)
    assert check is not None and vault.matches(check)


def test_env_key_overrides_the_keyring(
    sqlite_database: Database, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite_database.transaction() as session:
        key = open_vault(session).key
    memory_keyring.set_password("postroom", key_name(sqlite_database), generate_vault_key())
    monkeypatch.setenv("POSTROOM_VAULT_KEY", key)
    with sqlite_database.transaction() as session:
        assert open_vault(session).key == key


def test_wrong_env_key_names_the_variable(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite_database.transaction() as session:
        open_vault(session)
    monkeypatch.setenv("POSTROOM_VAULT_KEY", generate_vault_key())
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert "POSTROOM_VAULT_KEY" in caught.value.message
    assert_one_sentence(caught.value.message)


def test_malformed_env_key_is_refused(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTROOM_VAULT_KEY", "not-a-key")
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert "POSTROOM_VAULT_KEY" in caught.value.message
    assert vault_check(sqlite_database) is None


def _key_file(tmp_path: Path, key: str, mode: int) -> Path:
    path = tmp_path / "vault.key"
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("via", ["function", "env"])
def test_private_key_file_is_used(
    sqlite_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    key = generate_vault_key()
    path = _key_file(tmp_path, key, 0o600)
    if via == "function":
        set_vault_key_file(path)
    else:
        monkeypatch.setenv("POSTROOM_VAULT_KEY_FILE", str(path))
    keyring.set_keyring(fail.Keyring())
    with sqlite_database.transaction() as session:
        assert open_vault(session).key == key


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620])
def test_key_file_others_can_access_is_refused(
    sqlite_database: Database, tmp_path: Path, mode: int
) -> None:
    path = _key_file(tmp_path, generate_vault_key(), mode)
    set_vault_key_file(path)
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    message = caught.value.message
    assert_one_sentence(message)
    assert str(path) in message
    assert "chmod 600" in message
    assert vault_check(sqlite_database) is None


def test_missing_key_file_is_an_error_not_a_new_key(
    sqlite_database: Database, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    set_vault_key_file(tmp_path / "nowhere.key")
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert "does not exist" in caught.value.message
    assert memory_keyring._store == {}


def test_env_key_comes_before_the_key_file(
    sqlite_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_key = generate_vault_key()
    set_vault_key_file(_key_file(tmp_path, generate_vault_key(), 0o600))
    monkeypatch.setenv("POSTROOM_VAULT_KEY", env_key)
    with sqlite_database.transaction() as session:
        assert open_vault(session).key == env_key


def test_created_key_is_never_written_to_a_file(
    sqlite_database: Database, isolated_user_dirs: Path, tmp_path: Path
) -> None:
    with sqlite_database.transaction() as session:
        key = open_vault(session).key
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


# --- export / import ----------------------------------------------------------------------


@pytest.mark.databases
def test_export_and_import_to_a_second_workstation(
    database: Database, memory_keyring: MemoryKeyring
) -> None:
    with database.transaction() as session:
        token = open_vault(session).encrypt("smtp-password")
    with database.session() as session:
        exported = export_vault_key(session)

    second_workstation = MemoryKeyring()
    keyring.set_keyring(second_workstation)
    with database.transaction() as session, pytest.raises(VaultKeyError):
        open_vault(session, create=False)
    with database.transaction() as session:
        import_vault_key(session, exported)
    assert second_workstation.get_password("postroom", key_name(database)) == exported
    with database.transaction() as session:
        assert open_vault(session, create=False).decrypt(token) == "smtp-password"


def test_export_without_a_key_is_an_error(sqlite_database: Database) -> None:
    with sqlite_database.session() as session, pytest.raises(VaultKeyError):
        export_vault_key(session)


@pytest.mark.parametrize("bad", ["garbage", "", "wrong-key"])
def test_bad_import_changes_nothing(
    sqlite_database: Database, memory_keyring: MemoryKeyring, bad: str
) -> None:
    with sqlite_database.transaction() as session:
        original = open_vault(session).key
    check = vault_check(sqlite_database)
    attempt = generate_vault_key() if bad == "wrong-key" else bad
    with sqlite_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        import_vault_key(session, attempt)
    assert_one_sentence(caught.value.message)
    assert memory_keyring.get_password("postroom", key_name(sqlite_database)) == original
    assert vault_check(sqlite_database) == check


def test_import_into_a_database_without_a_vault_adopts_the_key(
    sqlite_database: Database, memory_keyring: MemoryKeyring
) -> None:
    key = generate_vault_key()
    with sqlite_database.transaction() as session:
        import_vault_key(session, key)
    check = vault_check(sqlite_database)
    assert check is not None and Vault(key).matches(check)
    assert memory_keyring.get_password("postroom", key_name(sqlite_database)) == key


def test_import_with_an_unusable_keyring_changes_nothing(sqlite_database: Database) -> None:
    keyring.set_keyring(fail.Keyring())
    with sqlite_database.session() as session:
        with pytest.raises(SecretsUnavailable):
            import_vault_key(session, generate_vault_key())
        session.commit()
    assert vault_check(sqlite_database) is None


# --- two workstations at the same moment (needs row locks: server databases) --------------


@pytest.fixture(params=["postgresql", "mariadb"])
def server_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    for url in make_database_url(request.param, tmp_path):
        db = Database(url)
        yield db
        db.dispose()


def _race_with(
    monkeypatch: pytest.MonkeyPatch, db: Database, other: Callable[[Database], None]
) -> None:
    """Run ``other`` right after open_vault read the installation row, before it writes."""
    real_find_key = vault_module._find_key
    raced = False

    def find_key_then_race(*args: Any, **kwargs: Any) -> Any:
        nonlocal raced
        found = real_find_key(*args, **kwargs)
        if not raced:  # once: ``other`` itself goes through here
            raced = True
            other(db)
        return found

    monkeypatch.setattr(vault_module, "_find_key", find_key_then_race)


def _other_workstation_creates_key(db: Database) -> None:
    with db.transaction() as session:
        open_vault(session, store=SecretStore(backend=MemoryKeyring()))


def test_two_workstations_creating_at_once_agree_on_one_key(
    server_database: Database, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    _race_with(monkeypatch, server_database, _other_workstation_creates_key)
    with server_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert "Another workstation" in caught.value.message
    assert memory_keyring._store == {}  # the losing key was never saved
    monkeypatch.undo()
    with server_database.session() as session, pytest.raises(VaultKeyError):
        open_vault(session, create=False)  # the winner's check stands


def test_found_key_loses_to_a_check_written_meanwhile(
    server_database: Database, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_keyring.set_password("postroom", key_name(server_database), generate_vault_key())
    _race_with(monkeypatch, server_database, _other_workstation_creates_key)
    with server_database.transaction() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert caught.value.message == KEYRING_MISMATCH


def test_database_without_installation_row(sqlite_database: Database) -> None:
    with sqlite_database.transaction() as session:
        session.execute(delete(Installation))
    with sqlite_database.session() as session, pytest.raises(VaultKeyError) as caught:
        open_vault(session)
    assert_one_sentence(caught.value.message)
