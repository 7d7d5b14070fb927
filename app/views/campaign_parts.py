"""Pieces the campaign page and dialogs share: status words and colours, durations, and
the From field (a local part and a drop-down of the user's sender domains, or free text)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QStackedWidget,
    QWidget,
)

from app.services import validation
from app.services.errors import ValidationError
from app.views import theme

# The order a person reads a campaign's progress in: what waits, what moves, what ended.
ITEM_STATUSES = ("queued", "in_flight", "deferred", "held", "sent", "failed")
ITEM_TITLES = {
    "queued": "Queued",
    "in_flight": "In flight",
    "deferred": "Deferred",
    "held": "Held",
    "sent": "Sent",
    "failed": "Failed",
}
CAMPAIGN_TITLES = {
    "draft": "Draft",
    "running": "Running",
    "paused": "Paused",
    "cancelled": "Cancelled",
    "completed": "Completed",
}
CHANNELS = (
    ("Marketing", "marketing"),
    ("Transactional", "transactional"),
    ("Autoresponder", "autoresponder"),
)


def campaign_title(row: dict[str, Any]) -> str:
    title = CAMPAIGN_TITLES.get(str(row.get("status")), str(row.get("status")))
    return f"{title} (failures)" if row.get("paused_reason") else title


def item_colour(status: str, palette: QPalette | None = None) -> str | None:
    if status == "failed":
        return theme.error_colour(palette)
    if status in ("held", "deferred"):
        return theme.warning_colour(palette)
    if status == "sent":
        return theme.success_colour(palette)
    return None


def campaign_colour(row: dict[str, Any]) -> str | None:
    status = row.get("status")
    if row.get("paused_reason"):
        return theme.error_colour()
    if status == "paused" or (status == "completed" and row.get("failed")):
        return theme.warning_colour()  # done, but some recipients failed
    if status == "completed":
        return theme.success_colour()
    return None


def progress_text(row: dict[str, Any]) -> str:
    """Finished (sent or failed) of all: never counts what is only queued as done."""
    total = int(row.get("recipients", row.get("total", 0)) or 0)
    finished = int(row.get("sent", 0)) + int(row.get("failed", 0))
    if not total:
        return "—"
    return f"{finished * 100 // total}% ({finished:,} of {total:,})"


def counts_text(row: dict[str, Any]) -> str:
    return " · ".join(f"{ITEM_TITLES[s]} {int(row.get(s, 0)):,}" for s in ITEM_STATUSES)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class FromField(QWidget):
    """From: a local part plus the user's sender domains, or one free address.

    ``set_domains(None)`` is free text (the group leaves From open); a list is the
    drop-down (empty: nothing to choose, and the placeholder says why). The rule applied
    when the campaign is created stays the service's; this only offers what it accepts.
    """

    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.local = QLineEdit()
        self.local.setObjectName("fromLocal")
        self.local.setAccessibleName("From address, before the @")
        self.local.setPlaceholderText("news")
        self.domain = QComboBox()
        self.domain.setObjectName("fromDomain")
        self.domain.setAccessibleName("From domain")
        self.domain.setMinimumContentsLength(18)
        self.address = QLineEdit()
        self.address.setObjectName("fromAddress")
        self.address.setAccessibleName("From address")
        self.address.setPlaceholderText("news@example.com")
        picked = QWidget()
        row = QHBoxLayout(picked)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.local, 1)
        row.addWidget(QLabel("@"))
        row.addWidget(self.domain, 1)
        self.stack = QStackedWidget()
        self.stack.addWidget(picked)
        self.stack.addWidget(self.address)
        # One line high: a form gives spare height to fields that can grow.
        for widget in (self.stack, self):
            widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.local.textEdited.connect(lambda _t: self.edited.emit())
        self.address.textEdited.connect(lambda _t: self.edited.emit())
        self.domain.currentIndexChanged.connect(lambda _i: self.edited.emit())
        self.domains: list[str] | None = None
        self.set_domains(None)

    def set_domains(self, domains: list[str] | None) -> None:
        """None: free text; a list: the drop-down (the local part typed so far is kept)."""
        local = self.local_part()
        self.domains = domains
        self.domain.blockSignals(True)
        self.domain.clear()
        for domain in domains or []:
            self.domain.addItem(domain, domain)
        self.domain.blockSignals(False)
        if domains is None:
            self.stack.setCurrentWidget(self.address)
            if local and not self.address.text():
                self.address.setText(local)
        else:
            self.stack.setCurrentIndex(0)
            self.local.setText(local)
            self.domain.setEnabled(bool(domains))
            if not domains:
                self.domain.addItem("no enabled sender domain", None)
        self.setFocusProxy(self.address if domains is None else self.local)

    def managed(self) -> bool:
        return self.domains is not None

    def local_part(self) -> str:
        if self.domains is None:
            return self.address.text().strip().partition("@")[0]
        return self.local.text().strip()

    def value(self) -> str | None:
        if self.domains is None:
            return self.address.text().strip() or None
        local = self.local.text().strip()
        domain = self.domain.currentData()
        if not local and not domain:
            return None
        return f"{local}@{domain or ''}"

    def set_value(self, value: object) -> None:
        text = "" if value is None else str(value)
        if self.domains is None:
            self.address.setText(text)
            return
        local, _at, domain = text.rpartition("@") if "@" in text else (text, "", "")
        self.local.setText(local)
        index = self.domain.findData(domain.lower())
        if index >= 0:
            self.domain.setCurrentIndex(index)


def parse_from(value: object, field: str) -> str:
    """The From address, or the one sentence saying what to fix."""
    if value is None or not str(value).strip():
        raise ValidationError(field, "is empty; give the address the campaign is sent from.")
    text = str(value)
    if text.endswith("@"):
        raise ValidationError(
            field,
            "has no domain to choose; add and verify a sender domain for this user "
            "(Sender Domains page) or pick another user.",
        )
    if text.startswith("@"):
        raise ValidationError(field, "needs the part before the @, such as news.")
    return validation.email_address(text, field)


def user_label(choice: dict[str, Any]) -> str:
    return f"{choice['username']}  ({choice['group']})"
