"""The Audit Log page (a row count until the full page lands)."""

from __future__ import annotations

from app.models import AuditEntry
from app.views.pages.count_page import CountPage


class AuditPage(CountPage):
    title = "Audit Log"
    summary = "Who changed what, and when."
    entities = ("audit",)
    model = AuditEntry
