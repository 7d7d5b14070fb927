"""Campaigns, the delivery queue, per-user and per-server send counters and engine heartbeats."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.models.base import (
    NAME_KEY_LENGTH,
    Base,
    CampaignStatus,
    Channel,
    QueueStatus,
    TimestampMixin,
    UtcDateTime,
    VersionedMixin,
    binary_string,
    name_key,
    str_enum,
)

if TYPE_CHECKING:
    from app.models.delivery import User

# The two hot queries of the delivery queue (DESIGN.md) each get an index that matches them:
# claiming scans due rows among the queued and deferred ones in next_attempt_at order, and
# acknowledging / renewing / releasing finds the in-flight rows of one lease owner. Partial
# where the backend has partial indexes (PostgreSQL, SQLite), so neither index carries the
# sent and failed rows that make up most of the table; MariaDB gets plain composites.
CLAIMABLE_WHERE = "status IN ('queued', 'deferred')"
IN_FLIGHT_WHERE = "status = 'in_flight'"
CLAIM_INDEX = "ix_queue_items_claimable"
LEASE_INDEX = "ix_queue_items_lease_owner"


class Campaign(TimestampMixin, VersionedMixin, Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(binary_string(200))
    # The name as compared (see base.name_key): unique, so "Spring" beside "spring" is refused.
    name_key: Mapped[str] = mapped_column(binary_string(NAME_KEY_LENGTH), unique=True, index=True)

    @validates("name")
    def _keep_name_key(self, _attribute: str, value: str) -> str:
        self.name_key = name_key(value)
        return value

    channel: Mapped[Channel] = mapped_column(str_enum(Channel), default=Channel.MARKETING)
    status: Mapped[CampaignStatus] = mapped_column(
        str_enum(CampaignStatus), default=CampaignStatus.DRAFT
    )
    from_email: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    subject: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    body_html: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    user: Mapped[User] = relationship()
    items: Mapped[list[QueueItem]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan"
    )


class QueueItem(Base):
    """One recipient of one campaign: the unit a send engine claims, sends and records."""

    __tablename__ = "queue_items"
    __table_args__ = (
        # A recipient is queued once per campaign (the address as normalised at enqueue).
        Index("uq_queue_items_campaign_id_recipient", "campaign_id", "recipient", unique=True),
        Index(
            CLAIM_INDEX,
            "status",
            "next_attempt_at",
            postgresql_where=text(CLAIMABLE_WHERE),
            sqlite_where=text(CLAIMABLE_WHERE),
        ),
        Index(
            LEASE_INDEX,
            "lease_owner",
            "lease_expires_at",
            postgresql_where=text(IN_FLIGHT_WHERE),
            sqlite_where=text(IN_FLIGHT_WHERE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # Byte-exact on MariaDB too: local parts are case-sensitive, so Bob@ and bob@ are two.
    recipient: Mapped[str] = mapped_column(binary_string(320))
    status: Mapped[QueueStatus] = mapped_column(str_enum(QueueStatus), default=QueueStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    message_id: Mapped[str] = mapped_column(String(255))  # deterministic per item
    last_reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    held_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    server_name: Mapped[str | None] = mapped_column(String(200), nullable=True)  # who took it

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


class ServerSendCount(Base):
    """Messages a delivery server accepted per UTC hour; its quotas are sums over this ledger.

    Hourly rows serve both quotas: the hourly one reads the current hour's row, the daily
    one sums the UTC day's rows (at most 24), so no second ledger has to be kept in step.
    """

    __tablename__ = "server_send_counts"

    server_id: Mapped[int] = mapped_column(
        ForeignKey("delivery_servers.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)  # start, UTC
    sent: Mapped[int] = mapped_column(Integer, default=0)


class EngineHeartbeat(Base):
    """A send engine's last beat: one row for the engine (``campaign_id`` NULL) and one per
    campaign it sends, with its sent / failed counts and workers (app.engine.heartbeats)."""

    __tablename__ = "engine_heartbeats"

    id: Mapped[int] = mapped_column(primary_key=True)
    engine: Mapped[str] = mapped_column(String(200), index=True)  # container / instance name
    worker: Mapped[str] = mapped_column(String(200))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True
    )
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    last_beat_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(50), default="running")
    workers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
