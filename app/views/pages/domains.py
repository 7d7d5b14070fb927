"""The Sender Domains page (a row count until the full page lands)."""

from __future__ import annotations

from app.models import SenderDomain
from app.views.pages.count_page import CountPage


class DomainsPage(CountPage):
    title = "Sender Domains"
    summary = "Domains users send from, with the DNS records each one must publish."
    entities = ("sender_domain",)
    model = SenderDomain
