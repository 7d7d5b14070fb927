"""DNS record templates and the global DNS settings row."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import (
    NAME_KEY_LENGTH,
    Base,
    TemplateKind,
    TimestampMixin,
    VersionedMixin,
    binary_string,
    keeps_name_key,
    str_enum,
)


class DnsTemplate(TimestampMixin, VersionedMixin, Base):
    """A named set of records users must publish for a new sender domain.

    Editing a template changes only domains created afterwards: each sender domain keeps
    the records rendered at its creation.
    """

    __tablename__ = "dns_templates"
    __table_args__ = (
        UniqueConstraint("kind", "name", name="uq_dns_templates_kind_name"),
        Index("ix_dns_templates_kind_name_key", "kind", "name_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(binary_string(200))
    name_key: Mapped[str] = mapped_column(binary_string(NAME_KEY_LENGTH))
    kind: Mapped[TemplateKind] = mapped_column(str_enum(TemplateKind))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)

    records: Mapped[list[DnsTemplateRecord]] = relationship(
        back_populates="template",
        cascade="all, delete-orphan",
        order_by="DnsTemplateRecord.position",
    )

    _keep_name_key = keeps_name_key("name")


class DnsTemplateRecord(Base):
    __tablename__ = "dns_template_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("dns_templates.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str] = mapped_column(String(512))  # may hold placeholders
    type: Mapped[str] = mapped_column(String(10))  # CNAME, TXT, MX, A, AAAA
    value: Mapped[str] = mapped_column(Text)  # may hold placeholders

    template: Mapped[DnsTemplate] = relationship(back_populates="records")


class DnsSettings(TimestampMixin, VersionedMixin, Base):
    """The single row of system-wide DNS values (the reference's ``dns.php``).

    The subdomain / track-prefix / merge columns are NULL until an administrator sets
    them; until then the ``EMAILCAMPAIGN_DNS_*`` / ``EMAILGATEWAY_DNS_SUBDOMAIN``
    environment variables, or the built-in defaults, apply (see services.dns_settings).
    """

    __tablename__ = "dns_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    spf_include: Mapped[str] = mapped_column(String(500), default="include:spf.yourdomain.com")
    dkim_selector: Mapped[str] = mapped_column(String(63), default="key1")
    dkim_public_key: Mapped[str] = mapped_column(Text, default="")
    dmarc_policy: Mapped[str] = mapped_column(String(500), default="v=DMARC1; p=none;")
    sender_domain_target: Mapped[str] = mapped_column(
        String(253), default="primary-sender-domain.com"
    )
    link_tracker_target: Mapped[str] = mapped_column(
        String(253), default="primary-sender-domain.com"
    )
    open_tracker_target: Mapped[str] = mapped_column(
        String(253), default="primary-sender-domain.com"
    )
    campaign_subdomain: Mapped[str | None] = mapped_column(String(63), nullable=True)
    campaign_track_prefix: Mapped[str | None] = mapped_column(String(63), nullable=True)
    campaign_track_merge: Mapped[str | None] = mapped_column(String(5), nullable=True)
    gateway_subdomain: Mapped[str | None] = mapped_column(String(63), nullable=True)
