"""The DNS Templates page (a row count until the full page lands)."""

from __future__ import annotations

from app.models import DnsTemplate
from app.views.pages.count_page import CountPage


class TemplatesPage(CountPage):
    title = "DNS Templates"
    summary = "Named sets of DNS records, with placeholders, rendered for each new sender domain."
    entities = ("dns_template",)
    model = DnsTemplate
