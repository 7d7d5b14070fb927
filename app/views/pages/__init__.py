"""The console's sections, in navigation order."""

from __future__ import annotations

from app.views.pages.audit import AuditPage
from app.views.pages.base import Page
from app.views.pages.campaigns import CampaignsPage
from app.views.pages.dns_settings import DnsSettingsPage
from app.views.pages.domains import DomainsPage
from app.views.pages.engines import EnginesPage
from app.views.pages.getting_started import GettingStartedPage
from app.views.pages.groups import GroupsPage
from app.views.pages.servers import ServersPage
from app.views.pages.templates import TemplatesPage
from app.views.pages.users import UsersPage

PAGES: tuple[type[Page], ...] = (
    GettingStartedPage,
    ServersPage,
    GroupsPage,
    UsersPage,
    DomainsPage,
    CampaignsPage,
    EnginesPage,
    TemplatesPage,
    DnsSettingsPage,
    AuditPage,
)
