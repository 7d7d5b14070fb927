"""One campaign up close: its progress by item state, why items are held or why it was
paused, and each recipient's result (status, attempts, the server's reply, the route
that took it, time in queue), filtered by status and refreshed every 2 s off the GUI
thread. The first ``RESULTS_SHOWN`` recipients of the chosen status are listed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QHideEvent, QPalette, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.services.campaigns import campaign_report, recipient_results
from app.views import theme
from app.views.campaign_parts import (
    ITEM_STATUSES,
    ITEM_TITLES,
    campaign_title,
    counts_text,
    duration_text,
    item_colour,
    progress_text,
)
from app.views.context import AppContext
from app.views.domain_parts import local_time
from app.views.table_model import Column, Row, RowTableModel

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

REFRESH_MS = 2_000
RESULTS_SHOWN = 2_000
ALL = ""


def campaign_detail(
    session: Session, name: str, status: str | None, limit: int = RESULTS_SHOWN
) -> dict[str, Any]:
    """The campaign's status report and the first ``limit`` results of ``status``."""
    return {
        "status": campaign_report(session, name),
        "results": recipient_results(session, name, status=status or None, limit=limit),
    }


def display_results(rows: list[Row]) -> list[Row]:
    """Executor side: times as a person reads them."""
    for row in rows:
        row["in_queue"] = duration_text(row["queued_seconds"])
        row["sent"] = local_time(row["sent_at"])
        row["shown_reply"] = row["reply"] or row["held_reason"] or ""
    return rows


RESULT_COLUMNS = (
    Column("recipient", "Recipient", tooltip=lambda row: row["recipient"]),
    Column(
        "status",
        "Status",
        text=lambda row: ITEM_TITLES.get(row["status"], row["status"]),
        colour=lambda row: item_colour(row["status"]),
        sort_value=lambda row: ITEM_STATUSES.index(row["status"]),
    ),
    Column("attempts", "Attempts", align_right=True),
    Column("shown_reply", "Server Reply", tooltip=lambda row: row["shown_reply"] or None),
    Column("server", "Route", tooltip=lambda row: row["server"]),
    Column(
        "in_queue",
        "Time in Queue",
        align_right=True,
        sort_value=lambda row: row["queued_seconds"],
    ),
    Column("sent", "Sent At", sort_value=lambda row: row["sent_at"]),
)


def by_recipient(row: Row) -> str:
    return str(row["recipient"])


class CampaignDetailDialog(QDialog):
    def __init__(self, context: AppContext, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.name = name
        self.data: dict[str, Any] | None = None
        self.setObjectName("campaignDetailDialog")
        self.setWindowTitle(f"Campaign {name}")
        self.resize(980, 620)

        self.heading = QLabel(name)
        self.heading.setObjectName("campaignHeading")
        font = self.heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        self.heading.setFont(font)
        self.facts = QLabel()
        self.facts.setObjectName("campaignFacts")
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setObjectName("campaignProgress")
        self.progress.setAccessibleName("Finished recipients")
        self.progress.setFormat("%p% finished")
        self.counts = QLabel()
        self.counts.setObjectName("campaignCounts")
        self.counts.setWordWrap(True)
        self.paused = QLabel()
        self.paused.setObjectName("pausedReason")
        self.paused.setWordWrap(True)
        self.paused.setStyleSheet(f"color: {theme.error_colour()}; {theme.banner_style('error')}")
        self.paused.setVisible(False)
        self.held = QLabel()
        self.held.setObjectName("heldReasons")
        self.held.setWordWrap(True)
        self.held.setStyleSheet(f"color: {theme.warning_colour()};")
        self.held.setVisible(False)

        self.status_filter = QComboBox()
        self.status_filter.setObjectName("resultStatusFilter")
        self.status_filter.setAccessibleName("Show recipients with status")
        self.status_filter.addItem("All statuses", ALL)
        for status in ITEM_STATUSES:
            self.status_filter.addItem(ITEM_TITLES[status], status)
        self.status_filter.currentIndexChanged.connect(lambda _i: self.refresh())
        self.text_filter = QLineEdit()
        self.text_filter.setObjectName("resultFilter")
        self.text_filter.setPlaceholderText("Filter by recipient, reply, route…")
        self.text_filter.setClearButtonEnabled(True)
        self.text_filter.textChanged.connect(lambda text: self.model.set_filter(text, None))
        self.model = RowTableModel(RESULT_COLUMNS, self, key=by_recipient)
        self.table = QTableView()
        self.table.setObjectName("resultsTable")
        self.table.setAccessibleName("Recipients and their results")
        self.table.setModel(self.model)
        # Queue order until a header is clicked (a recipient sort would put 9 after 89).
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        metrics = self.fontMetrics()
        for column, sample in enumerate(
            (
                "a.long.recipient@example.org",
                "In flight",
                "Attempts",
                "250 2.0.0 Ok: queued as 4Xy7",
                "Primary relay",
                "Time in Queue",
            )
        ):
            header.resizeSection(column, metrics.horizontalAdvance(sample) + 24)
        self.shown_note = QLabel()
        self.shown_note.setObjectName("resultsNote")
        self.shown_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.error = QLabel()
        self.error.setObjectName("detailError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {theme.error_colour()};")
        self.error.setVisible(False)

        facts = QFormLayout()
        facts.addRow(self.facts)
        filters = QHBoxLayout()
        filters.addWidget(QLabel("Recipients:"))
        filters.addWidget(self.status_filter)
        filters.addWidget(self.text_filter, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addLayout(facts)
        layout.addWidget(self.progress)
        layout.addWidget(self.counts)
        layout.addWidget(self.paused)
        layout.addWidget(self.held)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.shown_note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self._tick)
        self._loading = False
        self._generation = 0
        context.changed.connect(self._on_changed)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()
        self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def _on_changed(self, entity: str) -> None:
        if entity == "campaign" and shiboken6.isValid(self) and self.isVisible():
            self.refresh()

    def _tick(self) -> None:
        if not self._loading:
            self.refresh()

    def selected_status(self) -> str:
        return str(self.status_filter.currentData() or ALL)

    def refresh(self) -> None:
        if self.context.database is None:
            return
        self._generation += 1
        generation = self._generation
        self._loading = True
        status = self.selected_status()

        async def load() -> None:
            try:
                data = await self.context.read(campaign_detail, self.name, status)
                await self.context.in_executor(display_results, data["results"])
                await self.context.in_executor(self.model.prepare, data["results"])
            finally:
                if generation == self._generation:
                    self._loading = False
            if generation != self._generation or not shiboken6.isValid(self):
                return
            self._show(data)

        self.context.spawn(load(), on_error=self._failed)

    def _failed(self, message: str) -> None:
        if shiboken6.isValid(self):
            self.error.setText(message)
            self.error.setVisible(True)

    def _show(self, data: dict[str, Any]) -> None:
        self.data = data
        self.error.setVisible(False)
        report = data["status"]
        title = campaign_title(report)
        sender = (
            f"{report['from_name']} <{report['from_email']}>"
            if report["from_name"]
            else report["from_email"]
        )
        started = local_time(report["started_at"]) or "not started"
        self.heading.setText(f"{report['name']} — {title}")
        self.facts.setText(
            f"User {report['user']}, {report['channel']} channel. From {sender}. "
            f"Subject: {report['subject']}. Created {local_time(report['created_at'])}, "
            f"started {started}."
        )
        total = int(report["total"])
        finished = int(report["sent"]) + int(report["failed"])
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(finished)
        self.progress.setToolTip(progress_text(report))
        self.counts.setText(counts_text(report))
        reason = report.get("paused_reason")
        self.paused.setText(reason or "")
        self.paused.setVisible(bool(reason))
        held = report["held_reasons"]
        self.held.setText(
            "Held: " + "; ".join(f"{count:,} × {why}" for why, count in held.items())
            if held
            else ""
        )
        self.held.setVisible(bool(held))
        rows = data["results"]
        self.model.set_rows(rows)
        status = self.selected_status()
        of_status = int(report[status]) if status else total
        self.shown_note.setText(
            f"The first {len(rows):,} of {of_status:,} recipients are listed."
            if len(rows) < of_status
            else f"{len(rows):,} {'recipient' if len(rows) == 1 else 'recipients'}."
        )

    def done(self, result: int) -> None:
        self.timer.stop()
        self._generation += 1  # a load still running lands nowhere
        super().done(result)
