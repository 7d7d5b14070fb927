"""Declarative base, shared column helpers and the enumerations stored as strings.

Enumerations are stored as plain strings (``native_enum=False``) so the same schema and
migrations work on SQLite, PostgreSQL and MariaDB without database-specific ENUM types.
"""

from __future__ import annotations

import enum
import unicodedata
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, Enum, Integer, MetaData, String, func
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, validates
from sqlalchemy.types import TypeDecorator, TypeEngine

# Stable constraint names, so Alembic migrations can address them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Longest comparison key of a name: NFKC and case folding can lengthen a name ("ß" -> "ss",
# "ﬁ" -> "fi"). 700 utf8mb4 characters plus a 32-character kind stay under MariaDB's
# 3072-byte index key limit; names whose key would be longer are refused (validation.name).
NAME_KEY_LENGTH = 700


def name_key(name: str) -> str:
    """How names are compared for uniqueness and lookup, the same on every backend.

    Administrators read ``S1``/``s1`` and ``ﬁle``/``file`` as one name, so the key is
    the Unicode compatibility normal form, case-folded (and normalised again, since
    folding can leave text that is not in NFKC). Accents stay: ``A1`` and ``Ä1`` differ.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def keeps_name_key(column: str) -> Any:
    """A validator, for a class body, that sets ``name_key`` whenever ``column`` is set:
    the key stays the one the name is compared by (unique index, lookups)."""

    @validates(column)
    def _keep_name_key(row: Any, _attribute: str, value: str) -> str:
        row.name_key = name_key(value)
        return value

    return _keep_name_key


def binary_string(length: int) -> TypeEngine[str]:
    """A VARCHAR compared byte for byte on every backend.

    SQLite and PostgreSQL compare text exactly by default; MariaDB's default collations
    fold case and accents, so there the column gets the binary collation.
    """
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite and MariaDB keep no zone, so values are stored as naive UTC and handed
    back as aware UTC; PostgreSQL's timestamptz gets the same treatment for symmetry.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # MariaDB/MySQL DATETIME drops microseconds unless asked to keep them.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Encryption(enum.StrEnum):
    NONE = "none"
    SSL = "ssl"  # TLS from the first byte (usually port 465)
    TLS = "tls"  # plain connect, then STARTTLS (usually port 587)


class Channel(enum.StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"
    AUTORESPONDER = "autoresponder"


class LegacySendMethod(enum.StrEnum):
    """The user-group fallback when no delivery server is assigned for a channel."""

    SYSTEM = "system"
    SMTP = "smtp"
    LOCALMTA = "localmta"
    POWERMTA = "powermta"
    PHPMAIL = "phpmail"
    SAVETODISK = "savetodisk"


class TemplateKind(enum.StrEnum):
    CAMPAIGN = "campaign"
    GATEWAY = "gateway"


class DomainStatus(enum.StrEnum):
    APPROVAL_PENDING = "approval_pending"
    ENABLED = "enabled"
    DISABLED = "disabled"


class TestStatus(enum.StrEnum):
    __test__ = False  # not a pytest test class
    UNTESTED = "untested"
    OK = "ok"
    FAILED = "failed"


class QueueStatus(enum.StrEnum):
    """One recipient's progress through the delivery queue."""

    QUEUED = "queued"
    IN_FLIGHT = "in_flight"  # leased by an engine
    DEFERRED = "deferred"  # a temporary failure; waiting for next_attempt_at
    HELD = "held"  # a limit or quota stops it now (held_reason says which)
    SENT = "sent"
    FAILED = "failed"


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


def str_enum(cls: type[enum.StrEnum], length: int = 32) -> Enum:
    """A portable string column holding the enum's *values* (not names)."""
    return Enum(
        cls,
        native_enum=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
        create_constraint=False,
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class VersionedMixin:
    """Optimistic locking: every UPDATE checks and bumps ``version``.

    A second console saving a row it read before someone else's save gets a
    ``StaleDataError`` from SQLAlchemy, which services turn into ``ConcurrentEditError``.
    """

    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]
