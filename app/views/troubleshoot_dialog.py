"""Troubleshoot: ``postroom diagnose`` in a dialog, each check with its verdict and its fix.

The whole run (database checks, the live SMTP tests and DNS verification) happens on a
worker thread with an event loop of its own, so neither a slow database nor a server that
never answers can stall the window; the live checks are bounded by the troubleshooter's
own timeout. Closing the dialog stops waiting for a run still going: its result is dropped.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.models.base import Channel
from app.models.database import Database
from app.services.campaigns import sender_choices
from app.services.diagnose import Diagnosis, diagnose, vault_cipher_if_any
from app.services.errors import PostroomError
from app.views import theme
from app.views.context import AppContext
from app.views.table_model import Column, Row, RowTableModel

ALL = ""


def run_diagnosis(db: Database, username: str | None, channel: str | None, live: bool) -> Diagnosis:
    """Worker thread: the checks as ``postroom diagnose`` runs them, in a loop of their own."""
    cipher = vault_cipher_if_any(db)
    return asyncio.run(diagnose(db, username=username, channel=channel, cipher=cipher, live=live))


def report_text(
    diagnosis: Diagnosis, *, database: str, username: str | None, channel: str | None
) -> str:
    """The plain-text report Copy Report puts on the clipboard (check texts hold no secrets;
    the database is named by its redacted URL)."""
    scope = f"user {username}" if username else "all users"
    scope += f", {channel} channel" if channel else ", every channel"
    lines = [
        f"Postroom troubleshooter, {datetime.now():%Y-%m-%d %H:%M}",
        f"Database: {database}",
        f"Scope: {scope}",
        "",
    ]
    for check in diagnosis.checks:
        lines.append(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"     fix: {check.fix}")
    failed = sum(not check.ok for check in diagnosis.checks)
    lines.append("")
    lines.append(
        "All checks passed." if diagnosis.ok else f"{failed} check(s) failed (see fix lines)."
    )
    return "\n".join(lines)


def _verdict_icon(row: Row) -> Any:
    return theme.file_icon("status-ok" if row["ok"] else "status-failed")


COLUMNS = (
    Column(
        "name",
        "Check",
        icon=_verdict_icon,
        tooltip=lambda row: "Passes" if row["ok"] else "A problem",
    ),
    Column("detail", "What was found"),
    Column("fix", "What to do", text=lambda row: row["fix"] or ""),
)


class TroubleshootDialog(QDialog):
    def __init__(
        self,
        context: AppContext,
        parent: QWidget | None = None,
        *,
        username: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.preferred_user = username
        self.diagnosis: Diagnosis | None = None
        self._run_scope: tuple[str | None, str | None] = (None, None)
        self._task: asyncio.Future[Any] | None = None
        self.setObjectName("troubleshootDialog")
        self.setWindowTitle("Troubleshoot Sending")
        self.resize(980, 620)

        intro = QLabel(
            "Why mail is not going out: whether a send engine runs, each group's route per "
            "channel, each routed server's SMTP test now, sending limits, sender domains, "
            "the queue and recent delivery errors. Every problem comes with what to do."
        )
        intro.setWordWrap(True)
        intro.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.user_combo = QComboBox()
        self.user_combo.setObjectName("troubleshootUser")
        self.user_combo.setAccessibleName("Check for user")
        self.user_combo.addItem("All users", ALL)
        if username:  # chosen now, so a run started at once follows this user
            self.user_combo.addItem(username, username)
            self.user_combo.setCurrentIndex(1)
        self.channel_combo = QComboBox()
        self.channel_combo.setObjectName("troubleshootChannel")
        self.channel_combo.setAccessibleName("Check channel")
        self.channel_combo.addItem("All channels", ALL)
        for channel in Channel:
            self.channel_combo.addItem(channel.value.title(), channel.value)
        self.live_box = QCheckBox("Test servers and DNS now")
        self.live_box.setObjectName("troubleshootLive")
        self.live_box.setChecked(True)
        self.live_box.setToolTip(
            "Connect to each routed delivery server and verify each enabled sender domain's "
            "records; off, only the database is read."
        )
        self.run_button = QPushButton("&Run Checks")
        self.run_button.setObjectName("runChecksButton")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run)
        choosers = QHBoxLayout()
        for label, combo in (("&User:", self.user_combo), ("C&hannel:", self.channel_combo)):
            caption = QLabel(label)
            caption.setBuddy(combo)
            choosers.addWidget(caption)
            choosers.addWidget(combo)
            choosers.addSpacing(12)
        choosers.addWidget(self.live_box)
        choosers.addStretch(1)
        choosers.addWidget(self.run_button)

        self.busy = QProgressBar()
        self.busy.setObjectName("troubleshootBusy")
        self.busy.setRange(0, 0)  # indeterminate: the checks run side by side
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(8)
        self.busy.setVisible(False)
        self.summary = QLabel("Not run yet.")
        self.summary.setObjectName("troubleshootSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.model = RowTableModel(COLUMNS, self, key=None)
        self.table = QTableView()
        self.table.setObjectName("checksTable")
        self.table.setAccessibleName("Checks")
        self.table.setModel(self.model)
        self.table.setWordWrap(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        # Wrapped sentences need air above and below to be read as separate rows.
        self.table.setStyleSheet("QTableView#checksTable::item { padding: 4px 6px; }")
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, self.fontMetrics().horizontalAdvance("m") * 22)

        self.copy_button = QPushButton("&Copy Report")
        self.copy_button.setObjectName("copyReportButton")
        self.copy_button.setToolTip("Copy the checks as plain text (no passwords or keys).")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_report)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(choosers)
        layout.addWidget(self.busy)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.finished.connect(self._stop_waiting)
        context.spawn(self._load_users(), on_error=self._show_error)

    # -------------------------------------------------------------- choosers

    async def _load_users(self) -> None:
        choices = await self.context.read(sender_choices)
        if not shiboken6.isValid(self):
            return
        for choice in choices:
            name = str(choice["username"])
            if self.user_combo.findData(name) < 0:
                self.user_combo.addItem(name, name)

    def scope(self) -> tuple[str | None, str | None]:
        return (
            str(self.user_combo.currentData() or "") or None,
            str(self.channel_combo.currentData() or "") or None,
        )

    # -------------------------------------------------------------- running

    def run(self) -> None:
        """Run the checks (again) for the chosen user and channel."""
        if self.is_running():
            return
        try:
            database = self.context.require_database()
        except PostroomError as exc:
            self._show_error(str(exc))
            return
        username, channel = self.scope()
        self._run_scope = (username, channel)
        self.run_button.setEnabled(False)
        self.busy.setVisible(True)
        self.summary.setStyleSheet("")
        self.summary.setText("Running the checks… (a server that does not answer takes up to 30 s)")
        self._task = self.context.spawn(
            self._run(database, username, channel, self.live_box.isChecked()),
            on_error=self._show_error,
        )

    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(
        self, database: Database, username: str | None, channel: str | None, live: bool
    ) -> None:
        try:
            diagnosis = await self.context.in_executor(
                run_diagnosis, database, username, channel, live
            )
        finally:
            if shiboken6.isValid(self):
                self.busy.setVisible(False)
                self.run_button.setEnabled(True)
                self.run_button.setText("&Run Again")
        if shiboken6.isValid(self):
            self.show_diagnosis(diagnosis)

    def show_diagnosis(self, diagnosis: Diagnosis) -> None:
        self.diagnosis = diagnosis
        # Problems first: they are what the dialog was opened for.
        rows = sorted(
            ({**check.as_dict(), "order": n} for n, check in enumerate(diagnosis.checks)),
            key=lambda row: (row["ok"], row["order"]),
        )
        self.model.set_rows(rows)
        self.table.resizeRowsToContents()
        failed = sum(not check.ok for check in diagnosis.checks)
        if diagnosis.ok:
            self.summary.setText(f"All {len(diagnosis.checks)} checks pass.")
            self.summary.setStyleSheet(f"color: {theme.success_colour()};")
        else:
            self.summary.setText(
                f"{failed} of {len(diagnosis.checks)} checks found a problem; each says what to do."
            )
            self.summary.setStyleSheet(f"color: {theme.error_colour()};")
        self.copy_button.setEnabled(True)

    def _show_error(self, message: str) -> None:
        if shiboken6.isValid(self):
            self.summary.setText(message)
            self.summary.setStyleSheet(f"color: {theme.error_colour()};")

    def _stop_waiting(self, _result: int = 0) -> None:
        # The worker thread finishes on its own (its live checks are bounded); nobody
        # waits for its answer any more.
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._stop_waiting()
        super().closeEvent(event)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.table.resizeRowsToContents()  # wrapped text takes more or fewer lines

    # -------------------------------------------------------------- report

    def report(self) -> str:
        if self.diagnosis is None:
            return ""
        database = self.context.database
        username, channel = self._run_scope
        return report_text(
            self.diagnosis,
            database=database.display_url if database is not None else "(none)",
            username=username,
            channel=channel,
        )

    def copy_report(self) -> None:
        text = self.report()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.summary.setText(self.summary.text().split(" Copied")[0] + " Copied the report.")


def open_troubleshooter(
    context: AppContext, parent: QWidget, *, username: str | None = None
) -> TroubleshootDialog:
    """The Troubleshoot dialog, already running its checks."""
    dialog = TroubleshootDialog(context, parent, username=username)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    dialog.run()
    return dialog
