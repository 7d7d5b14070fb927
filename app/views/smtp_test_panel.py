"""The Test tab of a delivery server: the staged SMTP test, one click, stage by stage.

The check is ``app.services.smtp_check.run_smtp_check``, an ``async`` function awaited
right here on the qasync loop (it does its I/O with asyncio, so it needs no thread); each
stage lands in the table the moment its ``progress`` callback fires. Whoever embeds the
panel supplies the target (the form's current values) and, for a saved server, the name
under which the result is recorded so the server list shows the new status.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QKeyEvent, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.services import smtp_check, smtp_report, validation
from app.services.errors import ValidationError
from app.services.smtp_report import SmtpCheckReport, SmtpTarget, StageResult, TlsInfo
from app.views import theme
from app.views.context import AppContext
from app.views.forms import error_label
from app.views.table_model import Column, Row, RowTableModel


@cache
def load_icon(name: str) -> QIcon:
    """A full-colour SVG from resources/icons, made once: tables ask for it on every paint."""
    return theme.file_icon(name)


STATUS_ICONS = {"ok": "status-ok", "failed": "status-failed", "untested": "status-untested"}


def status_icon(status: str) -> QIcon:
    return load_icon(STATUS_ICONS.get(status, "status-untested"))


# What each stage of smtp_report.STAGES is called on screen.
STAGE_TITLES = {
    smtp_report.RESOLVE: "Resolve host",
    smtp_report.CONNECT: "Connect",
    smtp_report.TLS: "TLS handshake",
    smtp_report.BANNER: "Greeting",
    smtp_report.EHLO: "EHLO",
    smtp_report.STARTTLS: "STARTTLS",
    smtp_report.AUTH: "Authentication",
    smtp_report.MAIL_FROM: "MAIL FROM",
    smtp_report.RCPT: "RCPT TO",
    smtp_report.DATA: "DATA",
    smtp_report.QUIT: "QUIT",
}


def stage_title(name: str) -> str:
    return STAGE_TITLES.get(name, name)


CANCEL_RETRY_S = 0.5

# The panel owns no database knowledge: the dialog turns its form into a target (and may
# raise ValidationError naming the field to fix), and says under which name to record.
TargetBuilder = Callable[[], Awaitable[SmtpTarget]]

STAGE_COLUMNS = (
    Column(
        "name",
        "Stage",
        text=lambda row: stage_title(str(row["name"])),
        icon=lambda row: status_icon("ok" if row["ok"] else "failed"),
    ),
    Column("ms", "Time", text=lambda row: f"{row['ms']:.0f} ms", align_right=True),
    Column("detail", "Server reply", tooltip=lambda row: str(row["detail"]) or None),
)


def connection_key(target: SmtpTarget) -> tuple[object, ...]:
    """What decides how a test goes; the password only as a digest, never kept in clear."""
    digest = hashlib.sha256(target.password.encode()).hexdigest() if target.password else None
    return (
        target.host,
        target.port,
        target.encryption,
        target.timeout,
        target.username,
        digest,
        target.insecure,
        target.mail_from_domain,
        target.server_hostname,
        target.cafile,
    )


def _certificate_text(tls: TlsInfo) -> str:
    if tls.insecure_used:
        return "Not checked (Allow unverified certificate is on)"
    return "Verified (trusted chain, matching host name)" if tls.verified else "Not verified"


def _expiry_text(not_after: str | None) -> str:
    if not not_after:
        return "—"
    try:
        moment = datetime.fromisoformat(not_after)
    except ValueError:
        return not_after
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class SmtpTestPanel(QWidget):
    """Test / Cancel, an optional recipient, the stages, TLS and AUTH facts, the hint."""

    finished = Signal(object)  # the SmtpCheckReport of a test that ran to the end

    def __init__(
        self,
        context: AppContext,
        build_target: TargetBuilder,
        record_as: Callable[[], str | None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.build_target = build_target
        self.record_as = record_as
        self.task: asyncio.Future[None] | None = None
        self.report: SmtpCheckReport | None = None
        self.tested_key: tuple[object, ...] | None = None  # connection_key of self.report

        intro = QLabel(
            "Opens an SMTP session with the values on the other tabs (saved or not) and "
            "walks it stage by stage: connect, encryption, greeting, login, MAIL FROM."
        )
        intro.setWordWrap(True)
        intro.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.recipient = QLineEdit()
        self.recipient.setObjectName("testRecipient")
        self.recipient.setPlaceholderText("optional: name@example.com")
        self.recipient.setAccessibleName("Send test message to")
        self.recipient.setClearButtonEnabled(True)
        self.recipient.installEventFilter(self)
        self.recipient.textEdited.connect(lambda _text: self._check_recipient())
        recipient_label = QLabel("Send test mess&age to:")
        recipient_label.setBuddy(self.recipient)
        self.recipient_error = error_label()
        recipient_note = QLabel("Empty: the session stops after MAIL FROM; nothing is sent.")
        recipient_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        recipient_note.setWordWrap(True)

        self.test_button = QPushButton("&Test")
        self.test_button.setObjectName("runTest")
        self.test_button.setAccessibleName("Run the SMTP test")
        self.test_button.setToolTip("Run the staged SMTP test with the current values")
        self.test_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel Test")
        self.cancel_button.setObjectName("cancelTest")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)

        fields = QFormLayout()
        fields.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        recipient_column = QVBoxLayout()
        recipient_column.setSpacing(2)
        recipient_column.addWidget(self.recipient)
        recipient_column.addWidget(recipient_note)
        recipient_column.addWidget(self.recipient_error)
        fields.addRow(recipient_label, recipient_column)

        buttons = QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.cancel_button)
        buttons.addSpacing(12)
        self.state_icon = QLabel()
        self.state_icon.setFixedSize(QSize(18, 18))
        self.state = QLabel("Not run yet.")
        self.state.setObjectName("testState")
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons.addWidget(self.state_icon)
        buttons.addWidget(self.state, 1)

        self.stage_model = RowTableModel(STAGE_COLUMNS, self)
        self.stages = QTableView()
        self.stages.setObjectName("testStages")
        self.stages.setAccessibleName("Test stages")
        self.stages.setModel(self.stage_model)
        self.stages.verticalHeader().setVisible(False)
        # Compact rows: a full session is ten stages, and all of them should fit.
        self.stages.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.stages.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.stages.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.stages.setWordWrap(False)
        self.stages.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.stages.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.stages.setMinimumHeight(150)

        # The hint of a failure: a bordered box (palette background, so it suits dark themes).
        self.hint_box = QFrame()
        self.hint_box.setObjectName("hintBox")
        self.hint_box.setStyleSheet(
            f"QFrame#hintBox {{ {theme.banner_style('error', self.palette())} }}"
        )
        hint_icon = QLabel()
        hint_icon.setPixmap(load_icon("status-failed").pixmap(QSize(20, 20)))
        hint_icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.hint_title = QLabel()
        self.hint_title.setObjectName("hintTitle")
        title_font = self.hint_title.font()
        title_font.setBold(True)
        self.hint_title.setFont(title_font)
        self.hint = QLabel()
        self.hint.setObjectName("testHint")
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        hint_text = QVBoxLayout()
        hint_text.setSpacing(4)
        hint_text.addWidget(self.hint_title)
        hint_text.addWidget(self.hint)
        hint_row = QHBoxLayout(self.hint_box)
        hint_row.setContentsMargins(4, 2, 4, 2)  # the banner style pads too
        hint_row.addWidget(hint_icon, 0, Qt.AlignmentFlag.AlignTop)
        hint_row.addLayout(hint_text, 1)
        self.hint_box.setVisible(False)

        self.details = QGroupBox("Connection details")
        self.details.setObjectName("testDetails")
        self.details_form = details_form = QFormLayout(self.details)
        self.detail_labels: dict[str, QLabel] = {}
        for key, title in (
            ("version", "TLS version"),
            ("cipher", "Cipher"),
            ("subject", "Certificate subject"),
            ("issuer", "Issuer"),
            ("not_after", "Expires"),
            ("certificate", "Certificate check"),
            ("auth", "AUTH mechanisms"),
        ):
            value = QLabel()
            value.setObjectName(f"detail_{key}")
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            details_form.addRow(f"{title}:", value)
            self.detail_labels[key] = value
        self.details.setVisible(False)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(fields)
        layout.addLayout(buttons)
        layout.addWidget(self.stages, 1)
        layout.addWidget(self.hint_box)
        layout.addWidget(self.details)
        self._show_state("untested", "Not run yet.")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Return in the address field runs the test; left to propagate, it would reach the
        # dialog and press its default button, Save. Filtered on the field itself rather than
        # by asking who has focus, which depends on the window being active.
        if (
            watched is self.recipient
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            self.start()
            return True
        return super().eventFilter(watched, event)

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def _show_state(self, status: str, text: str) -> None:
        self.state_icon.setPixmap(
            load_icon("status-running" if status == "running" else STATUS_ICONS[status]).pixmap(
                QSize(18, 18)
            )
        )
        self.state.setText(text)

    def _check_recipient(self) -> tuple[bool, str | None]:
        try:
            address = validation.optional_email(self.recipient.text(), "Send test message to")
        except ValidationError as exc:
            self.recipient_error.setText(exc.reason)
            self.recipient_error.setVisible(True)
            return False, None
        self.recipient_error.setVisible(False)
        return True, address

    def _set_running(self, running: bool) -> None:
        self.test_button.setEnabled(not running)
        self.recipient.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def result_for(self, target: SmtpTarget) -> SmtpCheckReport | None:
        """The last finished test's report if it tested ``target``'s settings, else None."""
        if self.report is None or self.running or self.tested_key != connection_key(target):
            return None
        return self.report

    def _clear(self) -> None:
        self.report = None
        self.tested_key = None
        self.stage_model.set_rows([])
        self.hint_box.setVisible(False)
        self.details.setVisible(False)

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        if self.running:
            return
        ok, recipient = self._check_recipient()
        if not ok:
            self.recipient.setFocus()
            return
        self._clear()
        self._set_running(True)
        self._show_state("running", "Preparing the test…")
        self.task = self.context.spawn(self._run(recipient), on_error=self._problem)

    def cancel(self) -> None:
        task = self.task
        if task is None or task.done():
            return
        self.cancel_button.setEnabled(False)
        self._show_state("running", "Cancelling…")
        self._cancel_until_done(task)

    def _cancel_until_done(self, task: asyncio.Future[None]) -> None:
        # Python 3.11's asyncio.wait_for (inside aiosmtplib) drops a cancellation that
        # arrives in the same loop turn as the result it was waiting for (fixed in 3.12),
        # and the test would then run on to its timeout: repeat until the task has ended.
        if not task.done():
            task.cancel()
            task.get_loop().call_later(CANCEL_RETRY_S, self._cancel_until_done, task)

    async def _run(self, recipient: str | None) -> None:
        try:
            target = await self.build_target()
            self._show_state("running", f"Testing {target.host}:{target.port}…")
            report = await smtp_check.run_smtp_check(
                target, rcpt=recipient, progress=self._stage_done
            )
        except asyncio.CancelledError:
            self._show_state("untested", "Test cancelled.")
            raise
        finally:
            self._set_running(False)
        self._show_report(report)
        self.tested_key = connection_key(target)
        name = self.record_as()
        if name is not None:
            # A test result is not an edit: record_result leaves the row's version alone.
            await self.context.write(smtp_check.record_result, name, report)
            self.context.changed.emit("delivery_server")
        self.finished.emit(report)

    def _problem(self, message: str) -> None:
        self._set_running(False)
        self._show_state("failed", message)

    def _stage_done(self, stage: StageResult) -> None:
        rows: list[Row] = [*self.stage_model.rows, stage.as_dict()]
        self.stage_model.set_rows(rows)
        self.stages.scrollToBottom()
        if stage.ok:
            self._show_state("running", f"{stage_title(stage.name)} passed; testing on…")

    def _show_report(self, report: SmtpCheckReport) -> None:
        self.report = report
        self.stage_model.set_rows([stage.as_dict() for stage in report.stages])
        total = sum(stage.ms for stage in report.stages)
        if report.ok:
            self._show_state("ok", f"The SMTP connection was successful ({total:.0f} ms).")
        else:
            stage = stage_title(report.failed_stage or "")
            self._show_state("failed", f"The connection failed at {stage}.")
            self.hint_title.setText(f"Failed at: {stage}")
            self.hint.setText(report.hint or "The server or network refused the session.")
            self.hint_box.setVisible(True)
        tls = report.tls
        facts = {
            "version": tls.version if tls else None,
            "cipher": tls.cipher if tls else None,
            "subject": tls.subject if tls else None,
            "issuer": tls.issuer if tls else None,
            "not_after": _expiry_text(tls.not_after) if tls else None,
            "certificate": _certificate_text(tls) if tls else "No TLS session was established",
            "auth": ", ".join(report.auth_mechanisms) or "None offered",
        }
        for key, value in facts.items():
            label = self.detail_labels[key]
            label.setText(value or "—")
            # Certificate rows only when there was a certificate to show.
            shown = tls is not None or key in ("certificate", "auth")
            self.details_form.setRowVisible(label, shown)
        # A session that never got past connecting has no details worth a box.
        reached_ehlo = any(stage.name == smtp_report.EHLO for stage in report.stages)
        self.details.setVisible(tls is not None or reached_ehlo)
