"""A sender domain's window: the records it must publish, each with Copy buttons, their
last check, and Verify DNS Records.

The records were rendered when the domain was created (services.sender_domains) and are
shown as stored. "Verify DNS Records" awaits ``dns_verify.verify_sender_domain`` on the
GUI's own asyncio loop: the checks are non-blocking socket I/O, and only the short
database reads and writes inside it go to the executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.services import dns_verify
from app.services.errors import ValidationError
from app.services.sender_domains import SPF_PROBLEM_TITLES, domain_detail, spf_outcome
from app.views import theme
from app.views.context import AppContext
from app.views.domain_parts import (
    KIND_TITLES,
    PROBLEM_TITLES,
    AdvancedArea,
    ElidedValue,
    badge_label,
    local_time,
    set_badge,
    status_icon,
)

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

    def show_report(self, report: dict[str, Any], *, domain_message: bool = False) -> None:
        """``domain_message``: the domain as a whole could not be checked, and the dialog
        says why once at the top; the record then only points there."""
        problem = report.get("problem")
        found = report.get("found") or []
        seen = ", ".join(found) if found else "nothing"
        expected = f"Expected {report.get('type', '')} {report.get('expected', '')}; found {seen}."
        if report.get("ok"):
            self._result("ok", "Found")
            self.result.setToolTip(expected)
            self.detail.setVisible(False)
            return
        if problem == "lookup_failed" and domain_message:
            self._result("untested", "Not checked")
            self.result.setToolTip("See the message about the domain at the top.")
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

    def show_spf(self, outcome: dict[str, Any]) -> None:
        """The SPF row's state, from the verification's SPF check (``spf_outcome``)."""
        ok, problem = outcome.get("ok"), outcome.get("problem")
        if ok is None:
            self._result(
                "warning" if problem else "untested", "No answer" if problem else "Not checked"
            )
        elif ok:
            self._result("ok", "Found")
        else:
            self._result("failed", SPF_PROBLEM_TITLES.get(str(problem), str(problem)))
        # The full explanation stays in the advice box with the DKIM and DMARC advice.
        self.result.setToolTip(str(outcome.get("detail") or ""))
        # Always shown: where the record goes if the domain has an SPF record already.
        text = str(outcome.get("note", ""))
        colour = theme.error_colour(self.detail.palette()) if ok is False else None
        self.detail.setStyleSheet(f"color: {colour};" if colour else "")
        if colour is None:
            self.detail.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.detail.setText(text)
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


def _value_field(text: str, name: str) -> ElidedValue:
    # Cut in the middle with "…" when narrow, never silently; the tooltip and Copy have all.
    return ElidedValue(text, name)


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
        self.rows: list[RecordRows] = []  # the template's records, as stored
        self.spf_row: RecordRows | None = None  # the SPF record, when the template has none
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

        # Why the domain as a whole could not be checked: said once, above the records.
        self.verdict = QLabel()
        self.verdict.setObjectName("domainVerdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verdict.setAccessibleName("Why the domain could not be checked")
        self.verdict.setVisible(False)

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
        layout.addWidget(self.verdict)
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
            self._build_rows(data["records"], data.get("spf"))
            self.verify_button.setEnabled(bool(data["records"]))
            if data.get("last_report"):
                self.show_report(data["last_report"], stored=True)
            else:
                for row, ok in zip(self.rows, data["record_ok"], strict=False):
                    row.show_last(ok)

    def _build_rows(
        self, records: Sequence[dict[str, Any]], spf: dict[str, Any] | None = None
    ) -> None:
        for number, record in enumerate(records, start=1):
            row = RecordRows(self.grid, 2 * number - 1, number, record)
            row.copy_host.clicked.connect(lambda _c=False, r=row: self.copy(r.record["host"]))
            row.copy_value.clicked.connect(lambda _c=False, r=row: self.copy(r.record["value"]))
            self.rows.append(row)
        shown = len(records)
        if spf is not None and records:
            # The SPF record is published like the others; its check is the SPF advice's,
            # which accepts an existing SPF record that includes ours.
            shown += 1
            row = RecordRows(self.grid, 2 * shown - 1, shown, spf)
            row.result.setObjectName("spfResult")
            row.detail.setObjectName("spfNote")
            row.copy_host.clicked.connect(lambda _c=False, r=row: self.copy(r.record["host"]))
            row.copy_value.clicked.connect(lambda _c=False, r=row: self.copy(r.record["value"]))
            row.show_spf(spf)
            self.spf_row = row
        self.grid.setRowStretch(2 * shown + 1, 1)
        self.no_records.setVisible(not records)
        self.copy_all.setVisible(bool(records))
        self.instructions.setVisible(bool(records))

    # -------------------------------------------------------------- copying

    def copy(self, text: str) -> None:
        QApplication.clipboard().setText(text)
        self.outcome.setStyleSheet("")
        self.outcome.setText(f"Copied {text}")

    def _copy_all(self) -> None:
        records = list(self.data["records"]) if self.data else []
        if self.spf_row is not None:
            records.append(self.spf_row.record)
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
        message = str(report.get("message") or "")
        self.verdict.setText(message)
        self.verdict.setStyleSheet(
            f"QLabel#domainVerdict {{ {theme.banner_style('warning', self.palette())} }}"
        )
        self.verdict.setVisible(bool(message))
        for row, result in zip(self.rows, records, strict=False):
            row.show_report(result, domain_message=bool(message))
        warnings = report.get("warnings") or []
        if self.spf_row is not None:
            spf = self.spf_row.record
            self.spf_row.show_spf(spf_outcome(spf["host"], spf["include"], report))
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
        if report.get("message"):
            # The why is in the message at the top; saying it again here would repeat it.
            return (
                f"{when}: {len(failing)} of {len(records)} records need attention; see the "
                "message at the top."
                if status == "failed"
                else f"{when}: the records could not be checked; see the message at the top."
            )
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
