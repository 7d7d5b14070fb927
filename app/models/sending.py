"""Campaigns, the delivery queue, per-user send counters and engine heartbeats."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import (
    Base,
    CampaignStatus,
    Channel,
    QueueStatus,
    TimestampMixin,
    UtcDateTime,
    VersionedMixin,
    str_enum,
)


class Campaign(TimestampMixin, VersionedMixin, Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel), default=Channel.MARKETING)
    status: Mapped[CampaignStatus] = mapped_column(
        str_enum(CampaignStatus), default=CampaignStatus.DRAFT
    )
    from_email: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    subject: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    body_html: Mapped[str | None] = mapped_column(Text, nullable=True)

    items: Mapped[list[QueueItem]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan"
    )


class QueueItem(Base):
    """One recipient of one campaign: the unit a send engine claims, sends and records."""

    __tablename__ = "queue_items"
    __table_args__ = (Index("ix_queue_items_claim", "status", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(320))
    status: Mapped[QueueStatus] = mapped_column(str_enum(QueueStatus), default=QueueStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    message_id: Mapped[str] = mapped_column(String(255))  # deterministic per item
    last_reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    campaign: Mapped[Campaign] = relationship(back_populates="items")


class UserSendCount(Base):
    """Messages a user sent per day; limits are sums over this ledger.

    ``via_default_domain`` separates mail sent through the group's default sender
    domain, whose limit is a rolling 30-day window rather than a calendar month.
    """

    __tablename__ = "user_send_counts"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    via_default_domain: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)


class EngineHeartbeat(Base):
    __tablename__ = "engine_heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    engine: Mapped[str] = mapped_column(String(200))  # container / instance name
    worker: Mapped[str] = mapped_column(String(200))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True
    )
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    last_beat_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(50), default="running")
