"""Errors a user can act on. Each message is one sentence naming the field or step and the fix.

Anything that is not a ``PostroomError`` is a bug and goes to the one crash report.
"""

from __future__ import annotations


class PostroomError(Exception):
    """Base of every expected, user-actionable failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(PostroomError):
    """Input that was refused; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class NotFoundError(PostroomError):
    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"No {entity} named {key!r} exists; check the name with the list command.")
        self.entity = entity
        self.key = key


class ConflictError(PostroomError):
    """The change would break a uniqueness rule or a reference (e.g. deleting a used server)."""


class ConcurrentEditError(PostroomError):
    """Someone else saved this row after it was read: reload and apply the change again."""

    def __init__(self, entity: str, key: object) -> None:
        super().__init__(
            f"The {entity} {key!r} was changed by someone else since you opened it; "
            "reload it and apply your change again."
        )
        self.entity = entity
        self.key = key


class NoDeliveryRoute(PostroomError):
    """No delivery server and no legacy method serves a user on a channel."""


class LimitExceeded(PostroomError):
    """A sending or sender-domain limit was reached."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class SecretsUnavailable(PostroomError):
    """No keyring backend is usable and no explicit alternative was chosen."""


class VaultKeyError(PostroomError):
    """The vault key for this database is missing or wrong."""


class SmtpStageFailed(PostroomError):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class DnsRecordMismatch(PostroomError):
    pass


class EngineUnavailable(PostroomError):
    pass
