"""The DNS Settings page (a row count until the full page lands)."""

from __future__ import annotations

from app.models import DnsSettings
from app.views.pages.count_page import CountPage


class DnsSettingsPage(CountPage):
    title = "DNS Settings"
    summary = "SPF include, DKIM selector and key, DMARC policy and CNAME targets for all domains."
    entities = ("dns_settings",)
    model = DnsSettings
