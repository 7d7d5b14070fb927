"""Audit log and the installation row (identity and per-installation secrets)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UtcDateTime, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))  # create, update, delete, import, verify
    entity: Mapped[str] = mapped_column(String(50), index=True)  # delivery_server, user_group...
    entity_key: Mapped[str] = mapped_column(String(300))  # the name users know it by
    details: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON of changed fields


class Installation(Base):
    """One row identifying this database.

    ``installation_id`` names the vault key in each workstation's keyring, so the same
    database reached through different URLs uses the same key. ``hash_secret`` salts
    ``_SenderDomainHash_`` so verification tokens can't be guessed from the domain.
    ``vault_check`` is a token encrypted with the vault key, to tell a wrong key apart
    from a corrupt password.
    """

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_id: Mapped[str] = mapped_column(String(36))
    hash_secret: Mapped[str] = mapped_column(String(128))
    vault_check: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
