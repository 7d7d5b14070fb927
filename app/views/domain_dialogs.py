"""Sender domain dialogs: create one for a user, see and verify its records, verify many.

The records a domain must publish were rendered when it was created (services.sender_domains)
and are shown as stored, each with a Copy button. "Verify DNS Records" awaits
``dns_verify.verify_sender_domain`` on the GUI's own asyncio loop: the checks are
non-blocking socket I/O, and only the short database reads and writes inside it go to
the executor. A name server override (ADDR[:PORT]) under "Advanced" sends every question
to one server, for split-horizon setups and for the tests' local authoritative server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFont, QIcon, QKeyEvent, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import DomainStatus, SenderDomain, TemplateKind, User, UserGroup
from app.services import dns_verify, validation
from app.services.dns_records import DomainReport
from app.services.errors import ValidationError
from app.services.sender_domains import create_sender_domain, domain_as_dict, get_sender_domain
from app.views import theme
from app.views.context import AppContext
from app.views.forms import EditorDialog, Form, error_label

STATUS_TITLES = {
    DomainStatus.APPROVAL_PENDING.value: "Approval Pending",
    DomainStatus.ENABLED.value: "Enabled",
    DomainStatus.DISABLED.value: "Disabled",
}
# Badge fill and text colours. Badges are small filled shapes, so they keep their colours
# on a dark palette too (the reference: amber pending, green enabled, grey disabled).
STATUS_BADGE = {
    DomainStatus.APPROVAL_PENDING.value: ("#f0a202", "#241600"),
    DomainStatus.ENABLED.value: ("#2e7d32", "#ffffff"),
    DomainStatus.DISABLED.value: ("#757575", "#ffffff"),
}
KIND_TITLES = {TemplateKind.CAMPAIGN.value: "Campaign", TemplateKind.GATEWAY.value: "Gateway"}
# dns_verify's problem codes in words; the code itself is shown too, for support tickets.
PROBLEM_TITLES = {
    "missing": "Missing",
    "mismatch": "Wrong value",
    "wrong_type": "Wrong record type",
    "zone_appended": "Zone name added twice",
    "flattened": "CNAME flattened",
    "multiple": "Conflicting records",
    "lookup_failed": "No answer",
}
NAMESERVER_LABEL = "Name server"
NAMESERVER_HINT = (
    "ADDR[:PORT], e.g. 10.0.0.53 or 127.0.0.1:5353. Every question goes to this server "
    "instead of the domain's own name servers (split-horizon DNS, test servers). "
    "Leave empty for the normal check."
)


# ---------------------------------------------------------------- small shared pieces


def status_title(status: str) -> str:
    return STATUS_TITLES.get(status, status)


def badge_style(status: str) -> str:
    fill, text = STATUS_BADGE.get(status, ("#757575", "#ffffff"))
    return (
        f"QLabel {{ background-color: {fill}; color: {text}; border-radius: 9px;"
        " padding: 2px 10px; font-weight: 600; }"
    )


def badge_label(status: str = "") -> QLabel:
    label = QLabel()
    label.setObjectName("statusBadge")
    set_badge(label, status)
    return label


def set_badge(label: QLabel, status: str) -> None:
    label.setText(status_title(status))
    label.setStyleSheet(badge_style(status))
    label.setAccessibleName(f"Status: {status_title(status)}")
    label.setVisible(bool(status))


@cache
def status_icon(name: str) -> QIcon:
    """``ok``, ``failed``, ``untested`` or ``warning``: the shared SVG status icons."""
    return theme.file_icon("warning" if name == "warning" else f"status-{name}")


def local_time(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def parse_nameserver(raw: object, field: str = NAMESERVER_LABEL) -> tuple[str, int] | None:
    """``ADDR[:PORT]`` (IPv6 with a port as ``[ADDR]:PORT``) -> (address, port); empty -> None.

    An address, not a host name: looking the name up would need the very DNS the override
    is there to bypass.
    """
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValidationError(field, "enter ADDR[:PORT], e.g. 127.0.0.1:5353.")
    text = raw.strip()
    if not text:
        return None
    host, port = text, 53
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "?"
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValidationError(field, "write an IPv6 address with a port as [2001:db8::1]:53.")
        host = text[1:end]
        if rest:
            port = validation.port(rest[1:], field)
    elif text.count(":") == 1:  # IPv4 or a name with a port; bare IPv6 has several colons
        host, _, port_text = text.partition(":")
        port = validation.port(port_text, field)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValidationError(
            field,
            f"{host!r} is not an IP address; enter ADDR[:PORT], e.g. 127.0.0.1:5353 or [::1]:53.",
        ) from None
    return address.compressed, port


class AdvancedArea(QWidget):
    """A disclosure triangle that shows the name server override when opened."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setObjectName("advancedToggle")
        self.toggle.setText("Advanced")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setAccessibleName("Show advanced options")
        self.panel = QWidget()
        form = QFormLayout(self.panel)
        form.setContentsMargins(18, 0, 0, 0)
        self.nameserver = QLineEdit()
        self.nameserver.setObjectName("nameserverEdit")
        self.nameserver.setPlaceholderText("ADDR[:PORT]")
        self.nameserver.setAccessibleName(NAMESERVER_LABEL)
        self.nameserver.setClearButtonEnabled(True)
        hint = QLabel(NAMESERVER_HINT)
        hint.setWordWrap(True)
        hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.error = error_label()
        self.error.setObjectName("nameserverError")
        title = QLabel(f"{NAMESERVER_LABEL}:")
        title.setBuddy(self.nameserver)
        column = QVBoxLayout()
        column.setSpacing(2)
        column.addWidget(self.nameserver)
        column.addWidget(hint)
        column.addWidget(self.error)
        form.addRow(title, column)
        self.panel.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.panel)
        self.toggle.toggled.connect(self._toggled)
        self.nameserver.textEdited.connect(lambda _text: self._check_quietly())

    def _toggled(self, shown: bool) -> None:
        self.panel.setVisible(shown)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        if shown:
            self.nameserver.setFocus()

    def set_server(self, text: str) -> None:
        self.nameserver.setText(text)
        if text:
            self.toggle.setChecked(True)

    def _check_quietly(self) -> None:
        # As the user types: show the rule under the field; only Verify acts on it.
        try:
            parse_nameserver(self.nameserver.text())
        except ValidationError as exc:
            self.error.setText(exc.reason)
            self.error.setVisible(True)
        else:
            self.error.setVisible(False)

    def server(self) -> tuple[str, int] | None:
        """The parsed override; raises (and shows) ValidationError for a bad entry."""
        try:
            parsed = parse_nameserver(self.nameserver.text())
        except ValidationError as exc:
            self.error.setText(exc.reason)
            self.error.setVisible(True)
            self.toggle.setChecked(True)
            raise
        self.error.setVisible(False)
        return parsed


# ---------------------------------------------------------------- reads and writes


def user_choices(session: Session) -> list[dict[str, Any]]:
    """Every user with what decides whether they may add a domain, in one query."""
    owned = (
        select(SenderDomain.user_id, func.count().label("owned"))
        .group_by(SenderDomain.user_id)
        .subquery()
    )
    query = (
        select(
            User.username,
            UserGroup.name,
            UserGroup.sender_domain_management,
            UserGroup.perm_gateway_add_domain,
            UserGroup.sender_domains_limit,
            func.coalesce(owned.c.owned, 0),
        )
        .join(UserGroup, User.group_id == UserGroup.id)
        .outerjoin(owned, owned.c.user_id == User.id)
        .order_by(User.username)
    )
    return [
        {
            "username": username,
            "group": group,
            "management": bool(management),
            "gateway": bool(gateway),
            "limit": limit,
            "owned": int(count),
        }
        for username, group, management, gateway, limit, count in session.execute(query)
    ]


def create_domain(session: Session, username: str, domain: str, kind: str) -> dict[str, Any]:
    return domain_as_dict(create_sender_domain(session, username, domain, kind=kind))


def domain_detail(session: Session, domain: str, kind: str) -> dict[str, Any]:
    """A domain, its records with their last results, and its last stored check report."""
    sender_domain = get_sender_domain(session, domain, kind)
    data = domain_as_dict(sender_domain)
    data["version"] = sender_domain.version
    data["last_check_at"] = sender_domain.last_check_at
    data["record_ok"] = [record.last_ok for record in sender_domain.records]
    report: Any = None
    if sender_domain.last_check_report:
        try:
            report = json.loads(sender_domain.last_check_report)
        except ValueError:  # written by something else: show no report rather than fail
            report = None
    data["last_report"] = report if isinstance(report, dict) else None
    return data


def describe_user(choice: dict[str, Any] | None, kind: str) -> tuple[str, bool]:
    """A line about what the user's group allows, and whether it looks allowed."""
    if choice is None:
        return "Create a user first (Users page); sender domains belong to a user.", False
    group = choice["group"]
    if kind == TemplateKind.GATEWAY.value and not choice["gateway"]:
        return (
            f"Group {group} lacks the EmailGateway.AddDomain permission, so this will be refused.",
            False,
        )
    if kind == TemplateKind.CAMPAIGN.value and not choice["management"]:
        return (
            f"Group {group} has sender domain management turned off, so this will be refused.",
            False,
        )
    limit = choice["limit"]
    owned = choice["owned"]
    if limit:
        return f"Group {group}: {owned} of {limit} sender domains used.", owned < limit
    return f"Group {group}: {owned} sender domains, no limit.", True


# ---------------------------------------------------------------- new domain


class NewDomainDialog(EditorDialog):
    """User, domain and kind; the service decides (permissions, limit) and says why not."""

    created = Signal(object)  # the new domain as domain_as_dict

    def __init__(
        self, context: AppContext, preferred_user: str | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(context, "New Sender Domain", parent)
        self.setObjectName("newDomainDialog")
        self.resize(580, 330)
        # The refusal (limit reached, permission missing) is the point of this dialog's
        # error line: framed, so it can't be missed.
        self.error.setStyleSheet(f"color: {theme.error_colour()}; {theme.banner_style('error')}")
        self.tabs.tabBar().setVisible(False)
        self.tabs.setDocumentMode(True)
        self.users: dict[str, dict[str, Any]] = {}
        self.preferred_user = preferred_user
        form = self.add_form("Sender domain")
        self.form = form
        intro = QLabel(
            "The domain gets the DNS records of its user's group template. Use a subdomain "
            "such as mail.example.com, so mail reputation stays apart from the main domain."
        )
        intro.setWordWrap(True)
        form.layout_.insertRow(0, intro)
        self.user_combo = form.add_combo("username", "User", [], _required_user)
        self.domain_edit = form.add_line(
            "domain", "Sender domain", validation.domain, placeholder="mail.example.com"
        )
        self.kind_combo = form.add_combo(
            "kind",
            "Kind",
            [
                ("Email campaign", TemplateKind.CAMPAIGN.value),
                ("Email gateway", TemplateKind.GATEWAY.value),
            ],
        )
        self.user_info = QLabel("Loading users…")
        self.user_info.setObjectName("userInfo")
        self.user_info.setWordWrap(True)
        form.layout_.addRow(self.user_info)
        self.user_combo.currentIndexChanged.connect(lambda _i: self._update_info())
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._update_info())
        save = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        save.setText("Create Sender Domain")
        save.setObjectName("createButton")
        context.spawn(self._load(), on_error=self.show_error)

    async def _load(self) -> None:
        choices = await self.context.read(user_choices)
        self.users = {choice["username"]: choice for choice in choices}
        Form.set_choices(
            self.user_combo,
            [(f"{c['username']}  ({c['group']})", c["username"]) for c in choices],
        )
        if self.preferred_user in self.users:
            self.user_combo.setCurrentIndex(self.user_combo.findData(self.preferred_user))
        self.form.mark_clean()  # choices arriving is no edit of the user's
        self._update_info()
        self.domain_edit.setFocus()

    def _update_info(self) -> None:
        choice = self.users.get(str(self.user_combo.currentData()))
        text, allowed = describe_user(choice, str(self.kind_combo.currentData()))
        self.user_info.setText(text)
        self.user_info.setStyleSheet("" if allowed else f"color: {theme.warning_colour()};")

    async def save(self, values: dict[str, object]) -> None:
        created = await self.context.write(
            create_domain, str(values["username"]), str(values["domain"]), str(values["kind"])
        )
        self.context.changed.emit("sender_domain")
        self.created.emit(created)


def _required_user(value: object, field: str) -> str:
    if not value:
        raise ValidationError(field, "choose the user who will own the domain.")
    return str(value)


# ---------------------------------------------------------------- domain details


class RecordRows:
    """The widgets of one record in the details grid."""

    def __init__(self, grid: QGridLayout, row: int, number: int, record: dict[str, Any]) -> None:
        self.record = record
        self.type_label = QLabel(record["type"])
        self.type_label.setFont(_bold(self.type_label.font()))
        self.host = _value_field(record["host"], f"Record {number} host")
        self.value = _value_field(record["value"], f"Record {number} value")
        self.copy_host = _copy_button(f"Copy the host of record {number}")
        self.copy_value = _copy_button(f"Copy the value of record {number}")
        self.copy_host.setObjectName(f"copyHost{number}")
        self.copy_value.setObjectName(f"copyValue{number}")
        self.result = ResultLabel()
        self.result.setObjectName(f"recordResult{number}")
        self.result.setMinimumWidth(150)
        self.detail = QLabel()
        self.detail.setObjectName(f"recordDetail{number}")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.setVisible(False)
        grid.addWidget(self.type_label, row, 0)
        grid.addWidget(self.host, row, 1)
        grid.addWidget(self.copy_host, row, 2)
        grid.addWidget(self.value, row, 3)
        grid.addWidget(self.copy_value, row, 4)
        grid.addWidget(self.result, row, 5)
        grid.addWidget(self.detail, row + 1, 1, 1, 5)

    def show_last(self, ok: bool | None) -> None:
        """The stored outcome of the last check, before a new one runs."""
        if ok is None:
            self._result("untested", "Not checked")
        elif ok:
            self._result("ok", "Found")
        else:
            self._result("failed", "Not found as expected")

    def show_report(self, report: dict[str, Any]) -> None:
        problem = report.get("problem")
        found = report.get("found") or []
        seen = ", ".join(found) if found else "nothing"
        expected = f"Expected {report.get('type', '')} {report.get('expected', '')}; found {seen}."
        if report.get("ok"):
            self._result("ok", "Found")
            self.result.setToolTip(expected)
            self.detail.setVisible(False)
            return
        if problem == "lookup_failed":
            self._result("warning", "No answer")
        else:
            self._result("failed", PROBLEM_TITLES.get(str(problem), str(problem)))
        self.result.setToolTip(f"Problem code: {problem}")
        # Expected against found, the problem code (for support), then the fix sentence.
        self.detail.setText(f"{expected} Problem: {problem}.\n{report.get('detail', '')}".strip())
        colour = (
            theme.warning_colour(self.detail.palette())
            if problem == "lookup_failed"
            else theme.error_colour(self.detail.palette())
        )
        self.detail.setStyleSheet(f"color: {colour};")
        self.detail.setVisible(True)

    def _result(self, icon: str, text: str) -> None:
        self.result.set(icon, text)


class ResultLabel(QWidget):
    """A status icon and a few words: the outcome of one record's check."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.icon = QLabel()
        self.label = QLabel()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.icon)
        layout.addWidget(self.label, 1)

    def set(self, icon: str, text: str) -> None:
        size = self.label.fontMetrics().height()
        self.icon.setPixmap(status_icon(icon).pixmap(size, size))
        self.label.setText(text)
        self.setAccessibleName(f"Check result: {text}")

    def text(self) -> str:
        return self.label.text()


def _bold(font: QFont) -> QFont:
    bold = QFont(font)
    bold.setBold(True)
    return bold


def _value_field(text: str, name: str) -> QLineEdit:
    # A read-only line edit: selectable, scrollable for long TXT values, never truncated.
    edit = QLineEdit(text)
    edit.setReadOnly(True)
    edit.setCursorPosition(0)
    edit.setAccessibleName(name)
    edit.setToolTip(text)
    edit.setMinimumWidth(160)
    return edit


def _copy_button(name: str) -> QToolButton:
    button = QToolButton()
    button.setText("Copy")
    button.setToolTip(name)
    button.setAccessibleName(name)
    button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    return button


class DomainDetailDialog(QDialog):
    """The records to publish, their last check, and Verify DNS Records."""

    def __init__(
        self,
        context: AppContext,
        domain: str,
        kind: str,
        parent: QWidget | None = None,
        *,
        nameserver: str = "",
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.domain = domain
        self.kind = kind
        self.data: dict[str, Any] | None = None
        self.rows: list[RecordRows] = []
        self.report: dict[str, Any] | None = None
        self._verifying: asyncio.Future[Any] | None = None
        self.setObjectName("domainDetailDialog")
        self.setWindowTitle(f"Sender Domain {domain}")
        self.resize(1000, 700)

        self.title = QLabel(domain)
        self.title.setObjectName("domainTitle")
        title_font = QFont(self.font())
        title_font.setPointSizeF(title_font.pointSizeF() * 1.4)
        title_font.setBold(True)
        self.title.setFont(title_font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.badge = badge_label()
        self.facts = QLabel("Loading…")
        self.facts.setObjectName("domainFacts")
        self.facts.setWordWrap(True)
        self.facts.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.badge)
        header.addStretch(1)

        self.instructions = QLabel(
            "Add these records at the domain's DNS provider exactly as shown, then click "
            "Verify DNS Records. When every record is found, the domain becomes Enabled."
        )
        self.instructions.setWordWrap(True)

        self.grid_holder = QWidget()
        self.grid = QGridLayout(self.grid_holder)
        self.grid.setHorizontalSpacing(6)
        self.grid.setVerticalSpacing(4)
        self.grid.setColumnStretch(1, 3)
        self.grid.setColumnStretch(3, 4)
        for column, text in enumerate(("Type", "Host", "", "Value", "", "Check")):
            heading = QLabel(text)
            heading.setFont(_bold(heading.font()))
            self.grid.addWidget(heading, 0, column)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.grid_holder)
        self.records_box = QGroupBox("Records to publish")
        box_layout = QVBoxLayout(self.records_box)
        box_layout.addWidget(scroll, 1)
        self.no_records = QLabel(
            "This domain's template had no records, so it was enabled without DNS verification."
        )
        self.no_records.setWordWrap(True)
        self.no_records.setVisible(False)
        box_layout.addWidget(self.no_records)
        self.copy_all = QPushButton("Copy All Records")
        self.copy_all.setObjectName("copyAllButton")
        self.copy_all.clicked.connect(self._copy_all)
        copy_row = QHBoxLayout()
        copy_row.addStretch(1)
        copy_row.addWidget(self.copy_all)
        box_layout.addLayout(copy_row)

        self.warnings_box = QGroupBox("Advice (does not block enabling)")
        self.warnings_box.setObjectName("warningsBox")
        self.warnings = QLabel()
        self.warnings.setObjectName("warningsLabel")
        self.warnings.setWordWrap(True)
        self.warnings.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        warn_layout = QVBoxLayout(self.warnings_box)
        warn_layout.addWidget(self.warnings)
        self.warnings_box.setVisible(False)

        self.advanced = AdvancedArea()
        self.advanced.set_server(nameserver)
        self.outcome = QLabel()
        self.outcome.setObjectName("verifyOutcome")
        self.outcome.setWordWrap(True)
        self.outcome.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.verify_button = QPushButton("&Verify DNS Records")
        self.verify_button.setObjectName("verifyButton")
        self.verify_button.setDefault(True)
        self.verify_button.clicked.connect(self.verify)
        self.verify_button.setEnabled(False)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.verify_button)
        buttons.addStretch(1)
        buttons.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.facts)
        layout.addWidget(self.instructions)
        layout.addWidget(self.records_box, 1)
        layout.addWidget(self.warnings_box)
        layout.addWidget(self.advanced)
        layout.addWidget(self.outcome)
        layout.addLayout(buttons)
        # Ctrl+R re-verifies from anywhere in the dialog (Refresh is the usual F5 as well).
        self.verify_button.setShortcut(QKeySequence("Ctrl+R"))
        self.reload()

    # -------------------------------------------------------------- loading

    def reload(self) -> None:
        self.context.spawn(self._load(), on_error=self._show_error)

    async def _load(self) -> None:
        data = await self.context.read(domain_detail, self.domain, self.kind)
        self.show_domain(data)

    def show_domain(self, data: dict[str, Any]) -> None:
        first = self.data is None
        self.data = data
        set_badge(self.badge, data["status"])
        facts = [
            f"{KIND_TITLES.get(data['kind'], data['kind'])} domain of user {data['user']}",
            f"template {data['template'] or '(none)'}",
            f"created {local_time(data['created_at'])}",
        ]
        if data.get("verified_at"):
            facts.append(f"verified {local_time(data['verified_at'])}")
        if data.get("last_check_at"):
            facts.append(f"last checked {local_time(data['last_check_at'])}")
        self.facts.setText(" · ".join(facts))
        if first:
            self._build_rows(data["records"])
            self.verify_button.setEnabled(bool(data["records"]))
            if data.get("last_report"):
                self.show_report(data["last_report"], stored=True)
            else:
                for row, ok in zip(self.rows, data["record_ok"], strict=False):
                    row.show_last(ok)

    def _build_rows(self, records: Sequence[dict[str, Any]]) -> None:
        for number, record in enumerate(records, start=1):
            row = RecordRows(self.grid, 2 * number - 1, number, record)
            row.copy_host.clicked.connect(lambda _c=False, r=row: self.copy(r.record["host"]))
            row.copy_value.clicked.connect(lambda _c=False, r=row: self.copy(r.record["value"]))
            self.rows.append(row)
        self.grid.setRowStretch(2 * len(records) + 1, 1)
        self.no_records.setVisible(not records)
        self.copy_all.setVisible(bool(records))
        self.instructions.setVisible(bool(records))

    # -------------------------------------------------------------- copying

    def copy(self, text: str) -> None:
        QApplication.clipboard().setText(text)
        self.outcome.setStyleSheet("")
        self.outcome.setText(f"Copied {text}")

    def _copy_all(self) -> None:
        records = self.data["records"] if self.data else []
        QApplication.clipboard().setText(
            "\n".join(f"{r['host']}\t{r['type']}\t{r['value']}" for r in records)
        )
        self.outcome.setStyleSheet("")
        self.outcome.setText(f"Copied {len(records)} records (host, type, value per line).")

    # -------------------------------------------------------------- verifying

    def verify(self) -> None:
        if self._verifying is not None and not self._verifying.done():
            return
        try:
            nameserver = self.advanced.server()
        except ValidationError:
            return
        self._verifying = self.context.spawn(self._verify(nameserver), on_error=self._show_error)

    def is_verifying(self) -> bool:
        return self._verifying is not None and not self._verifying.done()

    async def _verify(self, nameserver: tuple[str, int] | None) -> None:
        self.verify_button.setEnabled(False)
        self.outcome.setStyleSheet("")
        where = f" at {nameserver[0]} port {nameserver[1]}" if nameserver else ""
        self.outcome.setText(f"Looking up {len(self.rows)} records{where}…")
        previous = self.data["status"] if self.data else ""
        try:
            report = await dns_verify.verify_sender_domain(
                self.context.require_database(), self.domain, self.kind, nameserver=nameserver
            )
            data = await self.context.read(domain_detail, self.domain, self.kind)
        finally:
            self.verify_button.setEnabled(True)
        self.show_domain(data)
        self.show_report(report.as_dict(), stored=False, newly_enabled=previous != data["status"])
        self.context.changed.emit("sender_domain")

    def show_report(
        self, report: dict[str, Any], *, stored: bool, newly_enabled: bool = False
    ) -> None:
        self.report = report
        records = report.get("records") or []
        for row, result in zip(self.rows, records, strict=False):
            row.show_report(result)
        warnings = report.get("warnings") or []
        self.warnings_box.setVisible(bool(warnings))
        self.warnings.setText(
            "\n".join(
                f"• {str(w.get('check', '')).upper()} at {w.get('host', '')}: {w.get('detail', '')}"
                for w in warnings
            )
        )
        self.outcome.setText(self._summary(report, stored=stored, newly_enabled=newly_enabled))
        colour = {
            "ok": theme.success_colour(self.palette()),
            "failed": theme.error_colour(self.palette()),
        }.get(str(report.get("status")), theme.warning_colour(self.palette()))
        self.outcome.setStyleSheet(f"color: {colour};")

    def _summary(self, report: dict[str, Any], *, stored: bool, newly_enabled: bool) -> str:
        records = report.get("records") or []
        failing = [r for r in records if not r.get("ok") and r.get("problem") != "lookup_failed"]
        unanswered = [r for r in records if r.get("problem") == "lookup_failed"]
        when = "Last check" if stored else "Checked just now"
        status = report.get("status")
        if status == "ok":
            text = f"{when}: all {len(records)} records found."
            if newly_enabled:
                text += " The domain is now Enabled."
            return text
        if status == "failed":
            return (
                f"{when}: {len(failing)} of {len(records)} records need attention; "
                "fix them at the DNS provider (see under each record) and verify again. "
                "New records can take a while to appear."
            )
        return (
            f"{when}: {len(unanswered) or len(records)} records got no answer, so nothing "
            "was concluded; check the network or the name server and verify again."
        )

    def _show_error(self, message: str) -> None:
        self.outcome.setText(message)
        self.outcome.setStyleSheet(f"color: {theme.error_colour(self.palette())};")

    def done(self, result: int) -> None:
        # A check still running must not update a closed dialog; the stored result is kept
        # for whatever had finished.
        if self._verifying is not None and not self._verifying.done():
            self._verifying.cancel()
        super().done(result)


# ---------------------------------------------------------------- bulk verification


class BulkVerifyDialog(QDialog):
    """Verify many domains with ``dns_verify.verify_many``: progress, cancel, a summary."""

    finished_run = Signal(object)  # the list of DomainReport
    open_requested = Signal(str, str)  # domain, kind: show that domain's details

    def __init__(
        self,
        context: AppContext,
        domains: Sequence[dict[str, Any]],
        parent: QWidget | None = None,
        *,
        nameserver: str = "",
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.domains = list(domains)
        self.concurrency = 50  # checks in flight; tests lower it to make cancelling visible
        self.timeout = 5.0
        self.reports: list[DomainReport] = []
        self._task: asyncio.Future[Any] | None = None
        self._cancel: asyncio.Event | None = None
        self._counts = {"ok": 0, "failed": 0, "error": 0}
        self._total = 0
        self.setObjectName("bulkVerifyDialog")
        self.setWindowTitle("Verify Sender Domains")
        self.resize(640, 360)

        pending = [d for d in self.domains if d["status"] == DomainStatus.APPROVAL_PENDING.value]
        self.pending_radio = QRadioButton(f"Domains awaiting approval ({len(pending):,})")
        self.pending_radio.setObjectName("pendingRadio")
        self.all_radio = QRadioButton(f"All domains ({len(self.domains):,})")
        self.all_radio.setObjectName("allRadio")
        self.scope = QButtonGroup(self)
        self.scope.addButton(self.pending_radio)
        self.scope.addButton(self.all_radio)
        (self.pending_radio if pending else self.all_radio).setChecked(True)
        self.scope.buttonToggled.connect(lambda _button, _on: self._scope_changed())
        scope_box = QGroupBox("Which domains")
        scope_layout = QVBoxLayout(scope_box)
        scope_layout.addWidget(self.pending_radio)
        scope_layout.addWidget(self.all_radio)
        note = QLabel(
            "Pending domains whose records all pass become Enabled. Enabled domains that fail "
            "stay enabled and are marked in the Result column."
        )
        note.setWordWrap(True)
        note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        scope_layout.addWidget(note)

        self.advanced = AdvancedArea()
        self.advanced.set_server(nameserver)
        self.progress = QProgressBar()
        self.progress.setObjectName("bulkProgress")
        self.progress.setAccessibleName("Verification progress")
        self.progress.setFormat("%v of %m")
        self.progress.setRange(0, max(len(self.selected()), 1))
        self.progress.setValue(0)
        self.progress_label = QLabel("Not started.")
        self.progress_label.setObjectName("progressLabel")
        self.summary = QLabel()
        self.summary.setObjectName("bulkSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.failures = QListWidget()
        self.failures.setObjectName("failureList")
        self.failures.setAccessibleName("Domains that need attention")
        self.failures.setToolTip("Double-click or press Enter to open the domain.")
        self.failures.setVisible(False)
        self.failures.itemActivated.connect(self._open_failure)
        self.failures.installEventFilter(self)

        self.start_button = QPushButton("&Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("closeButton")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(scope_box)
        layout.addWidget(self.advanced)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.summary)
        layout.addWidget(self.failures, 1)
        layout.addStretch(0)
        layout.addLayout(buttons)

    def _open_failure(self, item: QListWidgetItem) -> None:
        domain, kind = item.data(Qt.ItemDataRole.UserRole)
        self.open_requested.emit(domain, kind)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Enter on a failure opens it; the list would also pass the key on to the dialog,
        # whose default button would start another run.
        if (
            watched is self.failures
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            item = self.failures.currentItem()
            if item is not None:
                self._open_failure(item)
            return True
        return super().eventFilter(watched, event)

    def _scope_changed(self) -> None:
        if not self.is_running():
            self.progress.setRange(0, max(len(self.selected()), 1))
            self.progress.setValue(0)

    def selected(self) -> list[dict[str, Any]]:
        if self.pending_radio.isChecked():
            return [d for d in self.domains if d["status"] == DomainStatus.APPROVAL_PENDING.value]
        return list(self.domains)

    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.is_running():
            return
        try:
            nameserver = self.advanced.server()
        except ValidationError:
            return
        chosen = self.selected()
        if not chosen:
            self.summary.setText("There are no domains to verify in this choice.")
            return
        self._cancel = asyncio.Event()
        self._task = self.context.spawn(self._run(chosen, nameserver), on_error=self._failed)

    def cancel(self) -> None:
        if self._cancel is not None and self.is_running():
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self.progress_label.setText(
                f"Cancelling: finishing the checks already started "
                f"({self.progress.value():,} of {self._total:,} done)…"
            )

    async def _run(self, chosen: list[dict[str, Any]], nameserver: tuple[str, int] | None) -> None:
        self._total = len(chosen)
        self._counts = {"ok": 0, "failed": 0, "error": 0}
        self.failures.clear()
        self.failures.setVisible(False)
        self.summary.setText("")
        self.progress.setRange(0, len(chosen))
        self.progress.setValue(0)
        self.progress_label.setText(f"Checking {len(chosen):,} domains…")
        for widget in (self.start_button, self.pending_radio, self.all_radio, self.advanced):
            widget.setEnabled(False)
        self.cancel_button.setEnabled(True)
        pending_before = {
            (d["domain"], d["kind"])
            for d in chosen
            if d["status"] == DomainStatus.APPROVAL_PENDING.value
        }
        try:
            reports = await dns_verify.verify_many(
                self.context.require_database(),
                [(d["domain"], d["kind"]) for d in chosen],
                concurrency=self.concurrency,
                progress=self._on_progress,
                nameserver=nameserver,
                cancel=self._cancel,
                timeout=self.timeout,
            )
        finally:
            for widget in (self.start_button, self.pending_radio, self.all_radio, self.advanced):
                widget.setEnabled(True)
            self.cancel_button.setEnabled(False)
            # Whatever was stored before a failure or cancel is worth showing in the list.
            self.context.changed.emit("sender_domain")
        self.reports = reports
        cancelled = self._cancel is not None and self._cancel.is_set()
        enabled = sum(
            1 for r in reports if r.status == "ok" and (r.domain, r.kind) in pending_before
        )
        self._finish(reports, cancelled=cancelled, newly_enabled=enabled)
        self.finished_run.emit(reports)

    def _on_progress(self, done: int, total: int, report: DomainReport) -> None:
        self._counts[report.status] += 1
        self.progress.setValue(done)
        self.progress_label.setText(
            f"{done:,} of {total:,} checked: {self._counts['ok']:,} passed, "
            f"{self._counts['failed']:,} need attention, {self._counts['error']:,} no answer."
        )
        if report.status != "ok" and self.failures.count() < 500:
            item = QListWidgetItem(_failure_line(report))
            item.setData(Qt.ItemDataRole.UserRole, (report.domain, report.kind or "campaign"))
            self.failures.addItem(item)
            if not self.failures.isVisible():
                self.failures.setVisible(True)
                self.resize(self.width(), max(self.height(), 520))

    def _finish(self, reports: list[DomainReport], *, cancelled: bool, newly_enabled: int) -> None:
        counts = {"ok": 0, "failed": 0, "error": 0}
        for report in reports:
            counts[report.status] += 1
        head = (
            f"Cancelled after {len(reports):,} of {self._total:,} domains."
            if cancelled
            else f"Checked all {self._total:,} domains."
        )
        text = (
            f"{head} {counts['ok']:,} passed ({newly_enabled:,} newly Enabled), "
            f"{counts['failed']:,} need attention, {counts['error']:,} got no answer."
        )
        if counts["failed"] or counts["error"]:
            text += " Open a domain to see each record's problem and its fix."
        self.summary.setText(text)
        self.progress_label.setText("Cancelled." if cancelled else "Done.")
        colour = (
            theme.success_colour(self.palette())
            if not counts["failed"] and not counts["error"] and not cancelled
            else theme.warning_colour(self.palette())
        )
        self.summary.setStyleSheet(f"color: {colour};")

    def _failed(self, message: str) -> None:
        self.summary.setText(message)
        self.summary.setStyleSheet(f"color: {theme.error_colour(self.palette())};")
        self.progress_label.setText("Stopped.")

    def done(self, result: int) -> None:
        # Closing stops the run: domains already checked stay stored, the rest are left.
        if self._cancel is not None:
            self._cancel.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        super().done(result)


def _failure_line(report: DomainReport) -> str:
    if report.error:
        return f"{report.domain}: {report.error}"
    bad = [r for r in report.records if not r.ok]
    first = bad[0] if bad else None
    if first is None:
        return f"{report.domain}: {report.status}"
    more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    return f"{report.domain}: {first.type} {first.host}: {first.problem}{more}"
