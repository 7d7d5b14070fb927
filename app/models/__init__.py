"""SQLAlchemy models. Importing this package registers every table on ``Base.metadata``."""

from app.models.base import (
    Base,
    CampaignStatus,
    Channel,
    DomainStatus,
    Encryption,
    LegacySendMethod,
    QueueStatus,
    TemplateKind,
    TestStatus,
)
from app.models.delivery import DeliveryServer, User, UserGroup
from app.models.dns import DnsSettings, DnsTemplate, DnsTemplateRecord
from app.models.domains import SenderDomain, SenderDomainRecord
from app.models.meta import AuditEntry, Installation
from app.models.sending import (
    Campaign,
    EngineHeartbeat,
    QueueItem,
    ServerSendCount,
    UserSendCount,
)

__all__ = [
    "AuditEntry",
    "Base",
    "Campaign",
    "CampaignStatus",
    "Channel",
    "DeliveryServer",
    "DnsSettings",
    "DnsTemplate",
    "DnsTemplateRecord",
    "DomainStatus",
    "Encryption",
    "EngineHeartbeat",
    "Installation",
    "LegacySendMethod",
    "QueueItem",
    "QueueStatus",
    "SenderDomain",
    "SenderDomainRecord",
    "ServerSendCount",
    "TemplateKind",
    "TestStatus",
    "User",
    "UserGroup",
    "UserSendCount",
]
