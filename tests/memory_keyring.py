"""A process-local keyring for the tests: secrets are kept in a dict and gone at exit.

Postroom's keyring facade refuses backends like this one (a secret saved there would
vanish with the process), so the tests admit it explicitly with ``install``; the
console and the CLI never do.
"""

from __future__ import annotations

import keyring
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from app.services.keyring_store import allow_volatile_backend


class MemoryKeyring(KeyringBackend):
    """Secrets in a dict, under (service, username)."""

    # Below keyring's fail backend (0): even where this class is imported, keyring's own
    # detection never prefers it; tests set it with ``install``.
    priority = -10

    def __init__(self) -> None:
        super().__init__()
        self._store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self._store[(service, username)]
        except KeyError:
            raise PasswordDeleteError(f"no secret for {service}/{username}") from None


class UnadmittedMemoryKeyring(KeyringBackend):
    """Another in-memory keyring, never passed to ``allow_volatile_backend``: what a
    third-party memory backend looks like to the facade, which must refuse it."""

    priority = -10

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.values.pop((service, username), None)


def install() -> MemoryKeyring:
    """Make a new, empty memory keyring the active one, and let the facade use it."""
    allow_volatile_backend(MemoryKeyring)
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend
