"""What the sender domain windows share: status words and badges, check icons, times
shown in local time, and the name server override (ADDR[:PORT]) under "Advanced", which
sends every DNS question to one server, for split-horizon setups and for the tests' local
authoritative server.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import cache

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import (
    QGuiApplication,
    QIcon,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPalette,
)
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.models import DomainStatus, TemplateKind
from app.services import validation
from app.services.errors import ValidationError
from app.views import theme
from app.views.forms import error_label

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


class ElidedValue(QFrame):
    """A record's host or value on one line: cut with "…" in the middle when it does not
    fit (a DKIM key or a long TXT value), the whole text in the tooltip and on Ctrl+C.

    ``text()`` is the whole value; ``shown_text()`` what is drawn now.
    """

    def __init__(self, text: str, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = text
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName(name)
        self.setAccessibleDescription(text)
        self.setToolTip(text)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(120)

    def text(self) -> str:
        return self._text

    def _room(self) -> int:
        return max(self.contentsRect().width() - 12, 0)

    def shown_text(self) -> str:
        return self.fontMetrics().elidedText(self._text, Qt.TextElideMode.ElideMiddle, self._room())

    def is_elided(self) -> bool:
        return self.shown_text() != self._text

    def sizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        width = min(metrics.horizontalAdvance(self._text), 40 * metrics.averageCharWidth())
        return QSize(width + 16, metrics.height() + 10)

    def minimumSizeHint(self) -> QSize:
        return QSize(self.minimumWidth(), self.fontMetrics().height() + 10)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            QGuiApplication.clipboard().setText(self._text)
            return
        super().keyPressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        painter = QPainter(self)
        rect = self.contentsRect().adjusted(6, 0, -6, 0)
        painter.setPen(self.palette().color(QPalette.ColorRole.Text))
        alignment = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
        painter.drawText(rect, int(alignment), self.shown_text())
        if self.hasFocus():
            painter.setPen(self.palette().color(QPalette.ColorRole.Highlight))
            painter.drawRect(self.rect().adjusted(0, 0, -1, -1))


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
