"""Delivery servers (SMTP relays), user groups and users."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import (
    NAME_KEY_LENGTH,
    Base,
    Encryption,
    LegacySendMethod,
    TestStatus,
    TimestampMixin,
    UtcDateTime,
    VersionedMixin,
    binary_string,
    keeps_name_key,
    str_enum,
)

if TYPE_CHECKING:
    from app.models.dns import DnsTemplate
    from app.models.domains import SenderDomain

DEFAULT_SMTP_TIMEOUT = 10  # seconds, the reference's default
DEFAULT_MAX_CONNECTIONS = 5
DEFAULT_SENDER_DOMAIN_MONTHLY_LIMIT = 200  # per user, rolling 30 days


class DeliveryServer(TimestampMixin, VersionedMixin, Base):
    __tablename__ = "delivery_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(binary_string(200), unique=True)
    # The name as compared (see base.name_key): unique, so "S1" beside "s1" is refused.
    name_key: Mapped[str] = mapped_column(binary_string(NAME_KEY_LENGTH), unique=True, index=True)

    _keep_name_key = keeps_name_key("name")

    # Delivery Method tab
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer, default=587)
    encryption: Mapped[Encryption] = mapped_column(str_enum(Encryption), default=Encryption.TLS)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=DEFAULT_SMTP_TIMEOUT)
    auth_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    username: Mapped[str | None] = mapped_column(String(320), nullable=True)
    # Fernet token made with the database's vault key; never the plaintext password.
    password_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    allow_unverified_certificate: Mapped[bool] = mapped_column(Boolean, default=False)

    # Domains tab
    link_tracking_domain: Mapped[str | None] = mapped_column(String(253), nullable=True)
    open_tracking_domain: Mapped[str | None] = mapped_column(String(253), nullable=True)
    mail_from_domain: Mapped[str | None] = mapped_column(String(253), nullable=True)
    enforced_from_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    sender_info_as_mfrom: Mapped[bool] = mapped_column(Boolean, default=False)
    sender_info_as_from: Mapped[bool] = mapped_column(Boolean, default=False)

    # Throughput limits of this relay (None = unlimited)
    hourly_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    daily_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_connections: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_CONNECTIONS)

    # Test tab: last result of the staged SMTP test
    last_test_status: Mapped[TestStatus] = mapped_column(
        str_enum(TestStatus), default=TestStatus.UNTESTED
    )
    last_test_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_test_report: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON


class UserGroup(TimestampMixin, VersionedMixin, Base):
    __tablename__ = "user_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(binary_string(200), unique=True)
    # The name as compared (see base.name_key): unique, so "S1" beside "s1" is refused.
    name_key: Mapped[str] = mapped_column(binary_string(NAME_KEY_LENGTH), unique=True, index=True)

    _keep_name_key = keeps_name_key("name")

    # Sending Settings: one delivery server per channel, legacy method as fallback
    marketing_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery_servers.id", ondelete="RESTRICT"), nullable=True
    )
    transactional_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery_servers.id", ondelete="RESTRICT"), nullable=True
    )
    autoresponder_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery_servers.id", ondelete="RESTRICT"), nullable=True
    )
    legacy_send_method: Mapped[LegacySendMethod | None] = mapped_column(
        str_enum(LegacySendMethod), nullable=True
    )

    # Email Delivery: DNS templates for new sender domains (None = the template named Default)
    campaign_dns_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("dns_templates.id", ondelete="RESTRICT"), nullable=True
    )
    gateway_dns_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("dns_templates.id", ondelete="RESTRICT"), nullable=True
    )

    # Preferences
    sender_domain_management: Mapped[bool] = mapped_column(Boolean, default=False)
    default_sender_domain_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    default_sender_domain: Mapped[str | None] = mapped_column(String(253), nullable=True)
    default_sender_domain_monthly_limit: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_SENDER_DOMAIN_MONTHLY_LIMIT
    )

    # Limits (None or 0 = unlimited)
    monthly_email_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    daily_email_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lifetime_email_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sender_domains_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # Email headers and footers
    plain_text_header: Mapped[str | None] = mapped_column(Text, nullable=True)
    plain_text_footer: Mapped[str | None] = mapped_column(Text, nullable=True)
    html_header: Mapped[str | None] = mapped_column(Text, nullable=True)
    html_footer: Mapped[str | None] = mapped_column(Text, nullable=True)
    x_mailer: Mapped[str | None] = mapped_column(String(200), nullable=True)

    # Permissions
    perm_gateway_add_domain: Mapped[bool] = mapped_column(Boolean, default=False)
    perm_gateway_manage_domain: Mapped[bool] = mapped_column(Boolean, default=False)

    marketing_server: Mapped[DeliveryServer | None] = relationship(
        foreign_keys=[marketing_server_id]
    )
    transactional_server: Mapped[DeliveryServer | None] = relationship(
        foreign_keys=[transactional_server_id]
    )
    autoresponder_server: Mapped[DeliveryServer | None] = relationship(
        foreign_keys=[autoresponder_server_id]
    )
    campaign_dns_template: Mapped[DnsTemplate | None] = relationship(
        foreign_keys=[campaign_dns_template_id]
    )
    gateway_dns_template: Mapped[DnsTemplate | None] = relationship(
        foreign_keys=[gateway_dns_template_id]
    )
    users: Mapped[list[User]] = relationship(back_populates="group")


class User(TimestampMixin, VersionedMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(binary_string(100), unique=True)
    name_key: Mapped[str] = mapped_column(binary_string(NAME_KEY_LENGTH), unique=True, index=True)
    email: Mapped[str] = mapped_column(String(320))
    group_id: Mapped[int] = mapped_column(ForeignKey("user_groups.id", ondelete="RESTRICT"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    group: Mapped[UserGroup] = relationship(back_populates="users")

    _keep_name_key = keeps_name_key("username")

    sender_domains: Mapped[list[SenderDomain]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )
