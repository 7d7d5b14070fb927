"""Verify many sender domains at once with ``dns_verify.verify_many``: progress, cancel,
and a summary with the domains that need attention."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent, QPalette
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.models import DomainStatus
from app.services import dns_verify
from app.services.dns_records import DomainReport
from app.services.errors import ValidationError
from app.views import theme
from app.views.context import AppContext
from app.views.domain_parts import AdvancedArea

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
