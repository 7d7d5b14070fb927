"""Secrets: keyring facade, per-database vault key, encryption of SMTP passwords.

The OS keyring holds this workstation's secrets. SMTP passwords live in the database
encrypted with the database's *vault key*, so a copied database reveals no password and a
second admin workstation can be given the key (``export_vault_key`` / ``import_vault_key``).

Where no usable keyring exists we refuse with ``SecretsUnavailable`` instead of falling
back to a file: the vault key is then only accepted from an explicit opt-in
(``POSTROOM_VAULT_KEY`` or a key file), never written to disk by us.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, NoReturn

import keyring
import keyring.errors
from cryptography.fernet import Fernet, InvalidToken
from keyring.backend import KeyringBackend
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.models import Installation
from app.services.errors import SecretsUnavailable, VaultKeyError

SERVICE_NAME = "postroom"
VAULT_KEY_ENV = "POSTROOM_VAULT_KEY"
VAULT_KEY_FILE_ENV = "POSTROOM_VAULT_KEY_FILE"
IMPORT_HINT = "postroom vault import-key"
# Encrypted into Installation.vault_check: decrypting it proves a key is this database's.
_VAULT_CHECK_MARKER = "postroom-vault-check:v1"


class MemoryKeyring(KeyringBackend):
    """A process-local keyring for tests and for an explicit "don't persist" choice."""

    priority = 0  # never chosen automatically

    def __init__(self) -> None:
        # keyring's base __init__ is unannotated; it only reads KEYRING_PROPERTY_* settings.
        super().__init__()  # type: ignore[no-untyped-call]
        self._store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        try:
            del self._store[(service, username)]
        except KeyError:
            raise PasswordDeleteError(f"no secret for {service}/{username}") from None


# ---------------------------------------------------------------------------------------
# Keyring facade
# ---------------------------------------------------------------------------------------


def _backend_errors() -> tuple[type[Exception], ...]:
    """Exceptions a keyring backend raises when the store itself is unavailable.

    keyring wraps only some failures; the Secret Service backend lets secretstorage and
    jeepney errors (no session bus, daemon gone, prompt dismissed) through unchanged.
    OSError covers a refused or vanished D-Bus socket.
    """
    errors: list[type[Exception]] = [keyring.errors.KeyringError, OSError]
    try:
        from secretstorage.exceptions import SecretStorageException

        errors.append(SecretStorageException)
    except ImportError:  # not on Linux
        pass
    try:
        # jeepney ships no type information (and is not in pyproject's ignore list).
        from jeepney.auth import AuthenticationError
        from jeepney.wrappers import DBusErrorResponse

        errors.extend((DBusErrorResponse, AuthenticationError))
    except ImportError:
        pass
    return tuple(errors)


_BACKEND_ERRORS = _backend_errors()

# Human names for the backends a user may meet; anything else shows keyring's own name.
_FRIENDLY_NAMES = {
    "keyring.backends.fail.Keyring": "keyring's fail backend",
    "keyring.backends.null.Keyring": "keyring's null backend",
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "Secret Service (libsecret)",
    "keyring.backends.kwallet.DBusKeyring": "KWallet",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Manager",
    f"{__name__}.MemoryKeyring": "in-memory keyring (not persisted)",
}


@dataclass(frozen=True)
class KeyringStatus:
    """Whether secrets can be kept in the keyring, and if not, why."""

    usable: bool
    backend: str
    reason: str | None = None


def _class_path(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _backend_name(backend: KeyringBackend) -> str:
    path = _class_path(backend)
    if path in _FRIENDLY_NAMES:
        return _FRIENDLY_NAMES[path]
    name = getattr(backend, "name", None)
    return name if isinstance(name, str) else path


def _unusable_reason(backend: KeyringBackend) -> str | None:
    """Why ``backend`` must not hold our secrets, or None when it may."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring):
        return "no secure secret storage was detected on this system"
    if isinstance(backend, null.Keyring):
        return "the null backend silently stores nothing"
    if isinstance(backend, chainer.ChainerBackend):
        chained = list(backend.backends)
        if not chained:
            return "the chainer has no backends to chain"
        # The chainer writes to the first backend that accepts a write, so that one
        # decides whether our secrets end up somewhere safe.
        first_reason = _unusable_reason(chained[0])
        if first_reason is not None:
            return f"it would write to {_backend_name(chained[0])}, where {first_reason}"
        return None
    path = _class_path(backend)
    if "plaintext" in path.lower():
        return "it keeps secrets in a plaintext file"
    # keyrings.alt on Linux means a file in the home directory (plaintext, or encrypted
    # with a password read from the terminal, which a desktop app cannot answer).
    if sys.platform.startswith("linux") and path.startswith("keyrings.alt."):
        return "keyrings.alt file backends are not a Secret Service"
    return None


def _configured_name() -> str:
    configured = os.environ.get("PYTHON_KEYRING_BACKEND", "").strip()
    if not configured:
        return "the configured keyring"
    return _FRIENDLY_NAMES.get(configured, configured)


def _resolve(backend: KeyringBackend | None) -> tuple[KeyringBackend | None, KeyringStatus]:
    """The backend to use (None if it could not even be loaded) and its status."""
    if backend is None:
        try:
            backend = keyring.get_keyring()
        except Exception as error:
            # keyring loads a backend named by PYTHON_KEYRING_BACKEND or keyringrc.cfg
            # eagerly and lets its viability check raise (RuntimeError when the Secret
            # Service is not running, ImportError for a misspelt name, ...). Whatever it
            # is, the user's fix is the same, so it is reported, not crashed on.
            failure = f"it failed to load with {type(error).__name__}: {_first_sentence(error)}"
            return None, KeyringStatus(usable=False, backend=_configured_name(), reason=failure)
    reason = _unusable_reason(backend)
    status = KeyringStatus(usable=reason is None, backend=_backend_name(backend), reason=reason)
    return backend, status


def keyring_status(backend: KeyringBackend | None = None) -> KeyringStatus:
    """Say whether the active (or the given) keyring backend may hold secrets.

    This looks at the backend only; a Secret Service that is configured but locked or gone
    is reported by ``SecretStore`` when it is used.
    """
    return _resolve(backend)[1]


def _first_sentence(error: BaseException) -> str:
    """The error's text as a clause: one line, no trailing period, never empty."""
    text = " ".join(str(error).split())
    text = text.split(". ", 1)[0].rstrip(".")
    return text or type(error).__name__


class SecretStore:
    """Named secrets of this workstation, kept in the OS keyring under service ``postroom``.

    With no ``backend`` the active keyring is looked up on every call, so a backend set
    later with ``keyring.set_keyring`` (tests, a user's choice) is honoured.
    """

    def __init__(self, service: str = SERVICE_NAME, backend: KeyringBackend | None = None):
        self.service = service
        self._backend = backend

    def _usable_backend(self) -> KeyringBackend:
        backend, status = _resolve(self._backend)
        if backend is None or not status.usable:
            raise SecretsUnavailable(
                f"No usable keyring was found (backend: {status.backend}; {status.reason}); "
                "start a Secret Service such as gnome-keyring, or set "
                f"{VAULT_KEY_ENV} / use --vault-key-file to give the vault key explicitly."
            )
        return backend

    def _failed(self, backend: KeyringBackend, verb: str, name: str, error: Exception) -> NoReturn:
        raise SecretsUnavailable(
            f"The keyring ({_backend_name(backend)}) could not {verb} the secret {name!r} "
            f"({type(error).__name__}: {_first_sentence(error)}); unlock the keyring or "
            "check that its service is running, then try again."
        ) from error

    def get(self, name: str) -> str | None:
        backend = self._usable_backend()
        try:
            value = backend.get_password(self.service, name)
        except _BACKEND_ERRORS as error:
            self._failed(backend, "read", name, error)
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        backend = self._usable_backend()
        try:
            backend.set_password(self.service, name, value)
        except _BACKEND_ERRORS as error:
            self._failed(backend, "save", name, error)

    def delete(self, name: str) -> None:
        """Remove the secret; a secret that is not there is not an error."""
        backend = self._usable_backend()
        try:
            backend.delete_password(self.service, name)
        except keyring.errors.PasswordDeleteError as error:
            # Backends raise this both for "no such secret" and for a refused delete;
            # only the second is a failure.
            if self.get(name) is not None:
                self._failed(backend, "delete", name, error)
        except _BACKEND_ERRORS as error:
            self._failed(backend, "delete", name, error)


# ---------------------------------------------------------------------------------------
# Vault
# ---------------------------------------------------------------------------------------


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
# The vault key of a database
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
            f"The vault key file {path} cannot be examined ({_first_sentence(error)}); "
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
            f"The vault key file {path} cannot be read ({_first_sentence(error)}); "
            "check its permissions and that it holds the exported key."
        ) from None
    if not text:
        raise VaultKeyError(
            f"The vault key file {path} is empty; put the key from "
            "`postroom vault export-key` in it."
        )
    return text


def _find_key(installation_id: str, store: SecretStore | None) -> _FoundKey | None:
    """The explicit opt-ins first (they work without any keyring), then the keyring."""
    from_env = os.environ.get(VAULT_KEY_ENV, "").strip()
    if from_env:
        return _FoundKey(from_env, "env", VAULT_KEY_ENV)
    file_path = _vault_key_file
    if file_path is None and os.environ.get(VAULT_KEY_FILE_ENV, "").strip():
        file_path = Path(os.environ[VAULT_KEY_FILE_ENV].strip()).expanduser()
    if file_path is not None:
        return _FoundKey(_read_key_file(file_path), "file", str(file_path))
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


def open_vault(session: Session, *, create: bool = True, store: SecretStore | None = None) -> Vault:
    """The vault of the database behind ``session``.

    The key comes from ``POSTROOM_VAULT_KEY``, else the key file (``set_vault_key_file`` or
    ``POSTROOM_VAULT_KEY_FILE``), else this workstation's keyring. A database without any
    key gets a new one when ``create`` is true; it goes to the keyring only, never a file.

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
            f"import it with `{IMPORT_HINT}`."
        )
    if not create:
        raise VaultKeyError(
            "No vault key exists for this database yet; open it once with Postroom to create "
            f"one, or import one with `{IMPORT_HINT}`."
        )
    return _create_vault(session, row, _store_or_default(store))


def _create_vault(session: Session, row: _InstallationRow, store: SecretStore) -> Vault:
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
    row = _installation(session)
    matches, claimed = _verify_or_claim(session, row, vault)
    if not matches:
        raise VaultKeyError(
            "This key is not the vault key of this database; ask for the key that "
            "`postroom vault export-key` prints on a workstation that opens it."
        )
    try:
        _store_or_default(store).set(_key_name(row.installation_id), vault.key)
    except Exception:
        if claimed is not None:
            _unclaim_check(session, row.id, claimed)
        raise
