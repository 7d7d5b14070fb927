"""The vault: the per-database key that encrypts SMTP passwords, and where it is found.

SMTP passwords live in the database encrypted with the database's *vault key*, so a copied
database reveals no password and a second admin workstation can be given the key
(``export_vault_key`` / ``import_vault_key``). The key is taken from an explicit opt-in
(``POSTROOM_VAULT_KEY`` or a key file) or this workstation's keyring, and is only ever
written to the keyring, never to disk by us. A key lost everywhere cannot be recovered:
``reset_vault`` starts a new one and clears the passwords, which are then entered again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.models import DeliveryServer, Installation
from app.services import audit
from app.services.errors import VaultKeyError
from app.services.keyring_store import SecretStore, first_sentence

VAULT_KEY_ENV = "POSTROOM_VAULT_KEY"
VAULT_KEY_FILE_ENV = "POSTROOM_VAULT_KEY_FILE"
IMPORT_HINT = "postroom vault import-key"
RESET_HINT = "postroom vault reset"
# Encrypted into Installation.vault_check: decrypting it proves a key is this database's.
_VAULT_CHECK_MARKER = "postroom-vault-check:v1"


def generate_vault_key() -> str:
    """A new random vault key (URL-safe Base64 text, 44 characters)."""
    return Fernet.generate_key().decode("ascii")


class Vault:
    """Encrypts and decrypts short secrets (SMTP passwords) with one database's vault key."""

    def __init__(self, key: str) -> None:
        cleaned = key.strip()  # keys pasted or read from a file carry a newline
        try:
            self._fernet = Fernet(cleaned)
        except (ValueError, TypeError):
            raise VaultKeyError(
                "This is not a valid vault key (expected the 44-character text that "
                "`postroom vault export-key` prints); check that it was copied completely."
            ) from None
        self._key: str = cleaned

    @property
    def key(self) -> str:
        """The key itself, for export to another workstation; never log it."""
        return self._key

    def __repr__(self) -> str:
        # Keep the key out of tracebacks, logs and crash reports.
        return "Vault(<key hidden>)"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise VaultKeyError(
                "A stored secret could not be decrypted, so the vault key is wrong for this "
                f"database or the value is damaged; import the right key with `{IMPORT_HINT}` "
                "or enter the password again."
            ) from None

    def matches(self, check: str) -> bool:
        """Whether ``check`` (an ``Installation.vault_check``) was made with this key."""
        try:
            return self.decrypt(check) == _VAULT_CHECK_MARKER
        except VaultKeyError:
            return False

    def make_check(self) -> str:
        return self.encrypt(_VAULT_CHECK_MARKER)


# ---------------------------------------------------------------------------------------
# Where the vault key of a database is found
# ---------------------------------------------------------------------------------------

_vault_key_file: Path | None = None


def set_vault_key_file(path: str | os.PathLike[str] | None) -> None:
    """Take the vault key from this file (``--vault-key-file``); None forgets it."""
    global _vault_key_file
    _vault_key_file = Path(path).expanduser() if path is not None else None


class _FoundKey(NamedTuple):
    key: str
    source: str  # "env", "file" or "keyring"
    where: str  # what to name in a message: the variable, the file, or the keyring


class _InstallationRow(NamedTuple):
    id: int
    installation_id: str
    vault_check: str | None


def _store_or_default(store: SecretStore | None) -> SecretStore:
    return store if store is not None else SecretStore()


def _installation(session: Session) -> _InstallationRow:
    # Plain column rows, not ORM objects: a stale object in the caller's identity map
    # must not hide a vault_check another workstation has just written.
    rows = session.execute(
        select(Installation.id, Installation.installation_id, Installation.vault_check)
    ).all()
    if len(rows) != 1:
        raise VaultKeyError(
            f"This database has {len(rows)} installation rows instead of one, so its vault "
            "key cannot be named; open it with the matching Postroom version to migrate it."
        )
    row = rows[0]
    return _InstallationRow(row.id, row.installation_id, row.vault_check)


def _key_name(installation_id: str) -> str:
    return f"vault-key:{installation_id}"


def vault_key_id(session: Session) -> str:
    """The keyring entry name of this database's vault key (``vault-key:<installation id>``)."""
    return _key_name(_installation(session).installation_id)


def _read_key_file(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VaultKeyError(
            f"The vault key file {path} does not exist; check the path given with "
            f"--vault-key-file or {VAULT_KEY_FILE_ENV}."
        ) from None
    except OSError as error:
        raise VaultKeyError(
            f"The vault key file {path} cannot be examined ({first_sentence(error)}); "
            "check the path and its permissions."
        ) from None
    # Like ssh with private keys: a key others can read (or replace) is no secret.
    if os.name == "posix" and info.st_mode & 0o077:
        raise VaultKeyError(
            f"The vault key file {path} is accessible by other users "
            f"(mode {info.st_mode & 0o777:04o}); run `chmod 600 {path}` and try again."
        )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as error:
        raise VaultKeyError(
            f"The vault key file {path} cannot be read ({first_sentence(error)}); "
            "check its permissions and that it holds the exported key."
        ) from None
    if not text:
        raise VaultKeyError(
            f"The vault key file {path} is empty; put the key from "
            "`postroom vault export-key` in it."
        )
    return text


def _explicit_key() -> _FoundKey | None:
    """The key the user gave outright (environment, then key file); no keyring needed."""
    from_env = os.environ.get(VAULT_KEY_ENV, "").strip()
    if from_env:
        return _FoundKey(from_env, "env", VAULT_KEY_ENV)
    file_path = _vault_key_file
    if file_path is None and os.environ.get(VAULT_KEY_FILE_ENV, "").strip():
        file_path = Path(os.environ[VAULT_KEY_FILE_ENV].strip()).expanduser()
    if file_path is not None:
        return _FoundKey(_read_key_file(file_path), "file", str(file_path))
    return None


def _find_key(installation_id: str, store: SecretStore | None) -> _FoundKey | None:
    """The explicit opt-ins first (they work without any keyring), then the keyring."""
    explicit = _explicit_key()
    if explicit is not None:
        return explicit
    from_keyring = _store_or_default(store).get(_key_name(installation_id))
    if from_keyring:
        return _FoundKey(from_keyring, "keyring", "the keyring")
    return None


def _vault_from(found: _FoundKey) -> Vault:
    try:
        return Vault(found.key)
    except VaultKeyError:
        raise VaultKeyError(
            f"The vault key in {found.where} is not a valid key; replace it with the key "
            "from `postroom vault export-key`."
        ) from None


def _mismatch(found: _FoundKey) -> VaultKeyError:
    if found.source == "keyring":
        return VaultKeyError(
            f"The vault key for this database does not match; import the right one with "
            f"`{IMPORT_HINT}`."
        )
    return VaultKeyError(
        f"The vault key in {found.where} does not match this database; give the key exported "
        "from a workstation that opens this database instead."
    )


# ---------------------------------------------------------------------------------------
# vault_check: which key belongs to the database
# ---------------------------------------------------------------------------------------


def _forget_loaded_check(session: Session, row_id: int) -> None:
    # We wrote vault_check with a Core UPDATE; an Installation object the caller already
    # loaded would otherwise keep showing the old value.
    loaded = session.identity_map.get(identity_key(Installation, row_id))
    if loaded is not None:
        session.expire(loaded, ["vault_check"])


def _claim_check(session: Session, row_id: int, check: str) -> bool:
    """Set vault_check if it is still empty; False if another writer got there first.

    The ``IS NULL`` condition makes two workstations that both found it empty agree on
    one key: the second UPDATE waits for the first to commit, then matches no row.
    """
    result = session.connection().execute(
        update(Installation)
        .where(Installation.id == row_id, Installation.vault_check.is_(None))
        .values(vault_check=check)
    )
    _forget_loaded_check(session, row_id)
    return result.rowcount == 1


def _unclaim_check(session: Session, row_id: int, check: str) -> None:
    """Undo ``_claim_check`` when the key could not be kept, even if the caller commits."""
    session.connection().execute(
        update(Installation)
        .where(Installation.id == row_id, Installation.vault_check == check)
        .values(vault_check=None)
    )
    _forget_loaded_check(session, row_id)


def _current_check(session: Session, row_id: int) -> str | None:
    # A locking read returns the newest committed value even under MariaDB's
    # REPEATABLE READ snapshot (SQLite ignores FOR UPDATE and is serialised anyway).
    return session.execute(
        select(Installation.vault_check).where(Installation.id == row_id).with_for_update()
    ).scalar_one()


def _verify_or_claim(
    session: Session, row: _InstallationRow, vault: Vault
) -> tuple[bool, str | None]:
    """(matches, claimed): whether ``vault`` fits the database, and the vault_check we
    wrote for it if the database had none (None when nothing was written).

    A mismatch is returned, not raised, so each caller can word its own error.
    """
    check = row.vault_check
    if check is None:
        new_check = vault.make_check()
        if _claim_check(session, row.id, new_check):
            return True, new_check
        check = _current_check(session, row.id)
        if check is None:  # only if another writer set it and then undid it meanwhile
            raise VaultKeyError(
                "The vault check of this database changed while it was being opened; try again."
            )
    return vault.matches(check), None


# ---------------------------------------------------------------------------------------
# Opening, creating, exporting and importing the vault
# ---------------------------------------------------------------------------------------


def open_vault(session: Session, *, create: bool = True, store: SecretStore | None = None) -> Vault:
    """The vault of the database behind ``session``.

    The key comes from ``POSTROOM_VAULT_KEY``, else the key file (``set_vault_key_file`` or
    ``POSTROOM_VAULT_KEY_FILE``), else this workstation's keyring. A database without any
    key gets a new one when ``create`` is true; it goes to the keyring only, never a file,
    so without a usable keyring nothing is created and ``SecretsUnavailable`` names the
    explicit alternatives.

    Run it in ``Database.transaction()``: a newly written ``vault_check`` is committed
    with the caller's transaction (a plain session that is not committed only loses the
    check, which is written again next time).
    """
    row = _installation(session)
    found = _find_key(row.installation_id, store)
    if found is not None:
        vault = _vault_from(found)
        matches, _claimed = _verify_or_claim(session, row, vault)
        if not matches:
            raise _mismatch(found)
        return vault
    if row.vault_check is not None:
        raise VaultKeyError(
            "This database already has a vault key but this workstation does not hold it; "
            f"import it with `{IMPORT_HINT}`, or if it is lost everywhere start a new vault "
            f"with `{RESET_HINT}` (the stored SMTP passwords must then be entered again)."
        )
    if not create:
        raise VaultKeyError(
            "No vault key exists for this database yet; open it once with Postroom to create "
            f"one, or import one with `{IMPORT_HINT}`."
        )
    return _create_vault(session, row, _store_or_default(store))


def _create_vault(session: Session, row: _InstallationRow, store: SecretStore) -> Vault:
    # Refuse before the database is touched: a key that cannot be kept must not exist.
    store.ensure_usable()
    vault = Vault(generate_vault_key())
    check = vault.make_check()
    # Database first: if another workstation is creating a key at the same moment, the
    # loser finds out here, before anything was written to its keyring.
    if not _claim_check(session, row.id, check):
        raise VaultKeyError(
            "Another workstation created the vault key for this database at the same moment; "
            f"import that key with `{IMPORT_HINT}`."
        )
    try:
        store.set(_key_name(row.installation_id), vault.key)
    except Exception:
        # A check for a key nobody holds would lock everyone out of the passwords.
        _unclaim_check(session, row.id, check)
        raise
    return vault


def export_vault_key(session: Session, store: SecretStore | None = None) -> str:
    """This database's vault key, verified, to hand to another admin workstation."""
    return open_vault(session, create=False, store=store).key


def import_vault_key(session: Session, key: str, store: SecretStore | None = None) -> None:
    """Save ``key`` as this database's vault key in the keyring, after checking it fits.

    A malformed key or one that does not decrypt ``vault_check`` raises ``VaultKeyError``
    and changes nothing. If the database has no ``vault_check`` yet, the key becomes its
    vault key.
    """
    vault = Vault(key)
    secrets = _store_or_default(store)
    secrets.ensure_usable()
    row = _installation(session)
    matches, claimed = _verify_or_claim(session, row, vault)
    if not matches:
        raise VaultKeyError(
            "This key is not the vault key of this database; ask for the key that "
            "`postroom vault export-key` prints on a workstation that opens it."
        )
    try:
        secrets.set(_key_name(row.installation_id), vault.key)
    except Exception:
        if claimed is not None:
            _unclaim_check(session, row.id, claimed)
        raise


# ---------------------------------------------------------------------------------------
# Starting a new vault when the key is lost
# ---------------------------------------------------------------------------------------

VAULT_ENTITY = "vault"  # one of audit.ENTITIES


@dataclass(frozen=True)
class ClearedPassword:
    """A stored password that a vault reset cleared and that must be entered again."""

    entity: str  # as the audit log names it, e.g. "delivery_server"
    name: str

    def describe(self) -> str:
        """``delivery server 'Relay'``, for people."""
        return f"{self.entity.replace('_', ' ')} {self.name!r}"


@dataclass(frozen=True)
class VaultReset:
    """What ``reset_vault`` did: where the new key lives and what must be re-entered."""

    key_id: str
    key_source: str  # "keyring", "env" or "file"
    cleared: tuple[ClearedPassword, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "vault_key_id": self.key_id,
            "key_source": self.key_source,
            "cleared": [{"entity": c.entity, "name": c.name} for c in self.cleared],
        }


def _servers_with_password(session: Session, *, lock: bool = False) -> list[DeliveryServer]:
    query = (
        select(DeliveryServer)
        .where(DeliveryServer.password_encrypted.is_not(None))
        .order_by(DeliveryServer.name)
    )
    if lock:
        # populate_existing: servers the caller already loaded get the locked row's values.
        query = query.with_for_update().execution_options(populate_existing=True)
    return list(session.scalars(query))


def passwords_to_reenter(session: Session) -> tuple[ClearedPassword, ...]:
    """The stored passwords a vault reset would clear (every value encrypted with the key)."""
    return tuple(
        ClearedPassword("delivery_server", server.name)
        for server in _servers_with_password(session)
    )


def reset_vault(
    session: Session, store: SecretStore | None = None, *, actor: str | None = None
) -> VaultReset:
    """Give the database a new vault key and clear every password encrypted with the old one.

    For a database whose key is lost everywhere: the passwords cannot be decrypted any
    more, so they are cleared (and listed in the result, to be entered again) rather than
    left to fail one by one. The new key is the explicit one if the user gave one
    (``POSTROOM_VAULT_KEY`` or a key file), else a generated key saved in the keyring;
    without either nothing is written and ``SecretsUnavailable`` names the alternatives.

    Run it in ``Database.transaction()``: the cleared passwords, the new ``vault_check``
    and the audit entries commit together or not at all.
    """
    row = _installation(session)
    explicit = _explicit_key()
    secrets = _store_or_default(store)
    if explicit is not None:
        vault = _vault_from(explicit)
    else:
        secrets.ensure_usable()  # before anything is written
        vault = Vault(generate_vault_key())
    key_id = _key_name(row.installation_id)
    source = explicit.source if explicit is not None else "keyring"
    cleared: list[ClearedPassword] = []
    # A savepoint, so that a keyring that refuses the new key undoes the whole reset even
    # if the caller catches the error and commits: a check for a key nobody holds, with
    # the passwords gone, would help no one.
    with session.begin_nested():
        # Lock the installation row first: a workstation creating or importing a key at
        # the same moment waits for this reset instead of claiming a check it overwrites.
        _current_check(session, row.id)
        for server in _servers_with_password(session, lock=True):
            server.password_encrypted = None  # the versioned update tells open editors
            audit.record(
                session,
                "update",
                "delivery_server",
                server.name,
                {"password_cleared_by": "vault reset"},
                actor=actor,
            )
            cleared.append(ClearedPassword("delivery_server", server.name))
        session.connection().execute(
            update(Installation)
            .where(Installation.id == row.id)
            .values(vault_check=vault.make_check())
        )
        _forget_loaded_check(session, row.id)
        audit.record(
            session,
            "reset",
            VAULT_ENTITY,
            key_id,
            {"key_source": source, "cleared_passwords": [f"{c.entity} {c.name}" for c in cleared]},
            actor=actor,
        )
        # Every database write is sent before the key is saved, so a refused write
        # leaves the keyring as it was; the keyring comes last, as when a vault is created.
        session.flush()
        if explicit is None:
            secrets.set(key_id, vault.key)
    return VaultReset(key_id=key_id, key_source=source, cleared=tuple(cleared))
