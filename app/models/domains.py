"""Sender domains and the record snapshot rendered when each was created."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import (
    Base,
    DomainStatus,
    TemplateKind,
    TimestampMixin,
    UtcDateTime,
    VersionedMixin,
    str_enum,
)

if TYPE_CHECKING:
    from app.models.delivery import User


class SenderDomain(TimestampMixin, VersionedMixin, Base):
    __tablename__ = "sender_domains"
    __table_args__ = (UniqueConstraint("kind", "domain", name="uq_sender_domains_kind_domain"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(253))
    kind: Mapped[TemplateKind] = mapped_column(str_enum(TemplateKind))
    status: Mapped[DomainStatus] = mapped_column(
        str_enum(DomainStatus), default=DomainStatus.APPROVAL_PENDING
    )
    template_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    random_token: Mapped[str] = mapped_column(String(10))  # _SenderDomainRandom_
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_check_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_check_report: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON

    user: Mapped[User] = relationship(back_populates="sender_domains")
    records: Mapped[list[SenderDomainRecord]] = relationship(
        back_populates="sender_domain",
        cascade="all, delete-orphan",
        order_by="SenderDomainRecord.position",
    )


class SenderDomainRecord(Base):
    """One record to publish, fully rendered (no placeholders left)."""

    __tablename__ = "sender_domain_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    sender_domain_id: Mapped[int] = mapped_column(
        ForeignKey("sender_domains.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(Text)
    last_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)

    sender_domain: Mapped[SenderDomain] = relationship(back_populates="records")
