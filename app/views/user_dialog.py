"""The user editor: account fields, and read-only what the user owns and has sent.

Below the form the dialog shows the user's sender domains with their status and the
sending counts against the user group's limits, as ``limits.usage`` computes them for the
send engine, so an administrator sees the same numbers that will block a send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.models import DomainStatus
from app.services import groups, users, validation
from app.services.errors import ValidationError
from app.services.users import UserDetails
from app.views.context import AppContext
from app.views.forms import ERROR_COLOUR, EditorDialog, Form
from app.views.table_model import Column, RowTableModel

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

GROUP_LABEL = "User group"  # the service's field name, so its refusals land under the combo
STATUS_TITLES = {
    DomainStatus.APPROVAL_PENDING: "Approval Pending",
    DomainStatus.ENABLED: "Enabled",
    DomainStatus.DISABLED: "Disabled",
}
KIND_TITLES = {"campaign": "Email Campaign", "gateway": "Email Gateway"}
# Good/bad text colours readable on a light and on a dark base (pending: palette text).
TONES = {"good": ("#2e7d32", "#81c784"), "bad": (ERROR_COLOUR, "#ef9a9a")}
STATUS_TONES = {"enabled": "good", "disabled": "bad"}


def tone(name: str) -> str:
    """A status text colour for the current palette, read at paint time."""
    dark = QApplication.palette().color(QPalette.ColorRole.Base).lightness() < 128
    return TONES[name][1 if dark else 0]


def status_title(status: object) -> str:
    return STATUS_TITLES[DomainStatus(str(status))]


# ---------------------------------------------------------------- data (executor side)


@dataclass(frozen=True)
class UserEditorData:
    group_names: list[str]
    user: dict[str, Any] | None
    details: UserDetails | None


def load_user_editor(session: Session, username: str | None) -> UserEditorData:
    """Group choices, the user as saved and their domains and usage, in one transaction."""
    names = groups.group_names(session)
    if username is None:
        return UserEditorData(names, None, None)
    details = users.user_details(session, username)
    return UserEditorData(names, details.user, details)


# ---------------------------------------------------------------- read-only panels


def _group_name(value: object, field: str) -> str:
    if value is None:
        raise ValidationError(field, "is required; pick a user group (create one first).")
    return validation.name(value, field)


class UsageMeter(QWidget):
    """One limit: a bar filled to sent/limit with the numbers in words beside it."""

    def __init__(self, title: str, period: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)  # the numbers go in the label: styles draw bar text badly
        self.bar.setMaximumHeight(12)
        policy = self.bar.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # rows keep their alignment without a bar
        self.bar.setSizePolicy(policy)
        self.bar.setAccessibleName(title)
        self.text = QLabel()
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.period = QLabel(period)
        self.period.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.title = QLabel(title)

    def show_count(self, sent: int, limit: int | None) -> None:
        # An empty bar would read as "nothing used yet"; with no limit there is no bar.
        self.bar.setVisible(limit is not None)
        if limit is None:
            text = f"{sent:,} sent · unlimited"
        else:
            self.bar.setRange(0, limit)
            self.bar.setValue(min(sent, limit))
            text = f"{sent:,} of {limit:,}"
            if sent >= limit:
                text += " · limit reached"
        self.text.setText(text)
        reached = limit is not None and sent >= limit
        self.text.setStyleSheet(f"color: {tone('bad')};" if reached else "")
        self.bar.setAccessibleDescription(self.text.text())


class UsagePanel(QGroupBox):
    """Sending counts against the group's limits (UTC days, as the send engine counts)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sending counts", parent)
        self.setObjectName("usagePanel")
        grid = QGridLayout(self)
        grid.setColumnStretch(1, 1)
        grid.setHorizontalSpacing(12)
        self.meters = {
            "daily": UsageMeter("Daily Email Limit", "today (UTC)"),
            "monthly": UsageMeter("Monthly Email Limit", "this calendar month"),
            "lifetime": UsageMeter("Lifetime Email Limit", "since the account was created"),
            "default_domain": UsageMeter("Default sender domain", "rolling 30 days"),
        }
        for row, meter in enumerate(self.meters.values()):
            grid.addWidget(meter.title, row, 0)
            grid.addWidget(meter.bar, row, 1)
            grid.addWidget(meter.text, row, 2)
            grid.addWidget(meter.period, row, 3)

    def show_usage(self, details: UserDetails | None) -> None:
        if details is None:
            return
        usage = details.usage
        self.setTitle(f"Sending counts (limits of user group {usage.group})")
        self.meters["daily"].show_count(usage.today, usage.daily_limit)
        self.meters["monthly"].show_count(usage.this_month, usage.monthly_limit)
        self.meters["lifetime"].show_count(usage.lifetime, usage.lifetime_limit)
        self.meters["default_domain"].show_count(
            usage.default_domain_30d,
            usage.default_domain_limit,
        )
        self.meters["default_domain"].period.setText(
            "rolling 30 days"
            if details.default_domain_enabled
            else "rolling 30 days (not activated for the group)"
        )


class DomainsPanel(QGroupBox):
    """The user's sender domains and their status (managed on the Sender Domains page)."""

    columns = (
        Column("domain", "Domain"),
        Column(
            "kind", "Kind", text=lambda row: KIND_TITLES.get(str(row["kind"]), str(row["kind"]))
        ),
        Column(
            "status",
            "Status",
            text=lambda row: status_title(row["status"]),
            colour=lambda row: (
                tone(STATUS_TONES[row["status"]]) if row["status"] in STATUS_TONES else None
            ),
        ),
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sender domains", parent)
        self.setObjectName("domainsPanel")
        self.model = RowTableModel(self.columns, self)
        self.table = QTableView()
        self.table.setObjectName("userDomains")
        self.table.setAccessibleName("Sender domains of this user")
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(110)
        self.summary = QLabel()
        self.summary.setObjectName("domainsSummary")
        self.summary.setWordWrap(True)
        self.summary.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)

    def show_domains(self, details: UserDetails | None) -> None:
        self.table.setVisible(details is not None and bool(details.domains))
        if details is None:
            self.summary.setText("Sender domains appear once the user is saved.")
            self.model.set_rows([])
            return
        self.model.set_rows(details.domains)
        count = len(details.domains)
        allowed = (
            f"the group allows {details.domains_limit:,}"
            if details.domains_limit
            else "the group sets no Sender Domains Limit"
        )
        owned = "No sender domains" if count == 0 else f"{count:,} sender domain(s)"
        self.summary.setText(f"{owned}; {allowed}. Add and verify them on the Sender Domains page.")


# ---------------------------------------------------------------- dialog


class UserDialog(EditorDialog):
    """Create or edit one user: ``await prepare(data)``, then ``open()``.

    The form is built at once; the read-only panels in a later loop step (see
    ``GroupDialog``: building everything in one step can stall a busy machine's loop).
    """

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "New User", parent)
        self.setObjectName("userDialog")
        self.resize(640, 600)
        self.original_name: str | None = None
        self.version: int | None = None
        # One form needs no tabs: it takes the tab widget's place in the layout, and the
        # (empty) tab widget leaves the dialog. ``collect`` below reads the form directly.
        form = Form()
        self.form = form
        self.forms.append(form)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.replaceWidget(self.tabs, form)
        self.tabs.setParent(None)
        form.add_line("username", users.FIELDS["username"].label, users.FIELDS["username"].parse)
        form.add_line(
            "email",
            users.FIELDS["email"].label,
            users.FIELDS["email"].parse,
            placeholder="name@example.com",
        )
        self.group_combo: QComboBox = form.add_combo("group", GROUP_LABEL, [], _group_name)
        form.add_check(
            "is_active",
            users.FIELDS["is_active"].label,
            hint="Inactive users keep their settings but cannot send.",
        )
        form.ensurePolished()

    async def prepare(self, data: UserEditorData) -> None:
        await asyncio.sleep(0)
        self.domains = DomainsPanel()
        self.usage = UsagePanel()
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        self.unsaved_note = QLabel(
            "Sender domains and sending counts appear here once the user is saved."
        )
        self.unsaved_note.setWordWrap(True)
        self.unsaved_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        # The form keeps its natural height; the domain list takes what is left.
        layout.setStretchFactor(self.form, 0)
        layout.insertWidget(1, self.domains, 1)
        layout.insertWidget(2, self.usage)
        layout.insertWidget(3, self.unsaved_note)
        self.domains.ensurePolished()
        self.usage.ensurePolished()
        await asyncio.sleep(0)
        self.apply(data)

    def apply(self, data: UserEditorData) -> None:
        choices: Sequence[tuple[str, object]] = [(name, name) for name in data.group_names]
        self.form.set_choices(self.group_combo, choices)
        self.group_combo.setPlaceholderText("Create a user group first")
        values: Mapping[str, object] = data.user or {"is_active": True}
        if data.user is not None:
            self.original_name = data.user["username"]
            self.version = data.user["version"]
            self.setWindowTitle(f"Edit User {data.user['username']}")
        self.form.load(dict(values))
        saved = data.details is not None
        # A new user owns nothing and has sent nothing: one line says so instead of panels.
        self.domains.setVisible(saved)
        self.usage.setVisible(saved)
        self.unsaved_note.setVisible(not saved)
        self.domains.show_domains(data.details)
        self.usage.show_usage(data.details)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        listed = data.details is not None and bool(data.details.domains)
        layout.setStretchFactor(self.domains, 1 if listed else 0)
        if not listed:
            # Nothing to list: no empty box, the dialog is as tall as what it shows.
            self.resize(self.width(), self.sizeHint().height())

    def collect(self) -> dict[str, object] | None:
        return self.form.values()

    async def save(self, values: dict[str, object]) -> None:
        if self.original_name is None:
            await self.context.write(users.create_user, values)
        else:
            await self.context.write(
                users.update_user, self.original_name, values, expected_version=self.version
            )
        self.context.changed.emit("user")

    async def reload(self) -> None:
        data = await self.context.read(load_user_editor, self.original_name)
        self.apply(data)
        self.show_error("Reloaded the values saved by someone else; apply your change again.")
