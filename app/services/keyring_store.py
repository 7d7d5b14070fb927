"""The OS keyring as this workstation's secret store, and whether it may hold secrets.

Only a keyring that keeps secrets safely *and across restarts* is used. A backend that
stores nothing (fail, null), stores in clear (plaintext files) or forgets at exit (an
in-memory keyring) is refused with ``SecretsUnavailable``, whatever keyring picked: a
secret saved there would look saved and be gone, or be readable by anyone. Tests install
an in-memory keyring through ``allow_volatile_backend``, which shipped code never calls.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import keyring
import keyring.errors
from keyring.backend import KeyringBackend

from app.services.errors import SecretsUnavailable

SERVICE_NAME = "postroom"

# What a user without a keyring can do instead, per kind of secret (the end of the
# one-sentence SecretsUnavailable message).
VAULT_KEY_ALTERNATIVES = (
    "install and unlock a Secret Service such as gnome-keyring or KWallet, or give the "
    "vault key explicitly with POSTROOM_VAULT_KEY, POSTROOM_VAULT_KEY_FILE or --vault-key-file"
)


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
}

# Words in a backend's module or class name that say it keeps nothing across restarts.
_VOLATILE_WORDS = ("memory", "volatile", "ephemeral", "transient")

_volatile_backends_allowed: set[type[KeyringBackend]] = set()


def allow_volatile_backend(backend_class: type[KeyringBackend]) -> None:
    """Accept ``backend_class`` (and its subclasses) although it forgets secrets at exit.

    For the test suite's in-memory keyring only: the console and the CLI never call this,
    so they can never report a secret as saved when it would vanish with the process.
    """
    _volatile_backends_allowed.add(backend_class)


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


def _forgets_at_exit(backend: KeyringBackend) -> bool:
    path = _class_path(backend).lower()
    return any(word in path for word in _VOLATILE_WORDS)


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
    if _forgets_at_exit(backend) and not isinstance(backend, tuple(_volatile_backends_allowed)):
        return "it keeps secrets in memory only, so they would be lost when Postroom exits"
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
            failure = f"it failed to load with {type(error).__name__}: {first_sentence(error)}"
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


def first_sentence(error: BaseException) -> str:
    """The error's text as a clause: one line, no trailing period, never empty."""
    text = " ".join(str(error).split())
    text = text.split(". ", 1)[0].rstrip(".")
    return text or type(error).__name__


class SecretStore:
    """Named secrets of this workstation, kept in the OS keyring under service ``postroom``.

    With no ``backend`` the active keyring is looked up on every call, so a backend set
    later with ``keyring.set_keyring`` (tests, a user's choice) is honoured.
    ``alternatives`` ends the message given when no usable keyring exists: what the user
    can do instead for the secrets this store holds.
    """

    def __init__(
        self,
        service: str = SERVICE_NAME,
        backend: KeyringBackend | None = None,
        *,
        alternatives: str = VAULT_KEY_ALTERNATIVES,
    ) -> None:
        self.service = service
        self._backend = backend
        self._alternatives = alternatives

    def ensure_usable(self) -> None:
        """Raise ``SecretsUnavailable`` now unless a secret could be kept; for callers that
        must find out before they write anything else."""
        self._usable_backend()

    def _usable_backend(self) -> KeyringBackend:
        backend, status = _resolve(self._backend)
        if backend is None or not status.usable:
            raise SecretsUnavailable(
                f"No usable keyring was found (backend: {status.backend}; {status.reason}); "
                f"{self._alternatives}."
            )
        return backend

    def _failed(self, backend: KeyringBackend, verb: str, name: str, error: Exception) -> NoReturn:
        raise SecretsUnavailable(
            f"The keyring ({_backend_name(backend)}) could not {verb} the secret {name!r} "
            f"({type(error).__name__}: {first_sentence(error)}); unlock the keyring or "
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
