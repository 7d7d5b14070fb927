"""The Campaigns page: every campaign with its progress, refreshed every 2 s, and the
commands that steer it (start, pause, resume, cancel, retry the failed or held).

Progress keeps the six item states apart: queued, in flight, deferred, held, sent and
failed; "finished" is sent plus failed, so nothing only queued is ever shown as done. A
campaign the failure threshold paused (``campaigns.pause_if_failing``) says so in its
status and shows the reason above the table when selected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import shiboken6
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QHideEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QComboBox, QLabel, QMessageBox, QPushButton, QWidget

from app.services.campaigns import (
    cancel_campaign,
    list_campaigns,
    pause_campaign,
    resume_campaign,
    retry_items,
    start_campaign,
)
from app.views import theme
from app.views.campaign_detail_dialog import CampaignDetailDialog
from app.views.campaign_parts import (
    CAMPAIGN_TITLES,
    ITEM_STATUSES,
    ITEM_TITLES,
    campaign_colour,
    campaign_title,
    item_colour,
    progress_text,
)
from app.views.context import AppContext
from app.views.domain_parts import local_time
from app.views.new_campaign_dialog import NewCampaignDialog
from app.views.pages.base import ListPage
from app.views.send_test_dialog import SendTestDialog
from app.views.table_model import ROW_ROLE, Column, Row
from app.views.troubleshoot_dialog import TroubleshootDialog, open_troubleshooter

REFRESH_MS = 2_000
ALL = ""


def _count_column(status: str) -> Column:
    return Column(
        status,
        ITEM_TITLES[status],
        align_right=True,
        text=lambda row: f"{int(row[status]):,}",
        colour=lambda row: item_colour(status) if row[status] else None,
    )


def _finished_share(row: Row) -> float:
    total = int(row["recipients"]) or 1
    return (int(row["sent"]) + int(row["failed"])) / total


COLUMNS = (
    Column("name", "Name", tooltip=lambda row: row["name"]),
    Column(
        "status",
        "Status",
        text=campaign_title,
        colour=campaign_colour,
        tooltip=lambda row: row.get("paused_reason"),
    ),
    Column(
        "progress",
        "Finished",
        text=progress_text,
        sort_value=_finished_share,
        tooltip=lambda row: (
            "Sent or failed, of all recipients; what is queued, in flight, "
            "deferred or held still waits."
        ),
    ),
    *(_count_column(status) for status in ITEM_STATUSES),
    Column("user", "User"),
    Column("channel", "Channel", text=lambda row: str(row["channel"]).title()),
    Column("created", "Created", sort_value=lambda row: row["created_at"]),
)


def display_rows(rows: list[Row]) -> list[Row]:
    """Executor side: the creation time in local time."""
    for row in rows:
        row["created"] = local_time(row["created_at"])
    return rows


class CampaignsPage(ListPage):
    title = "Campaigns"
    summary = (
        "Campaigns send one message to many recipients through the delivery server of "
        "the user's group. Progress counts what is finished (sent or failed) apart from "
        "what still waits; a send engine must be running for anything to move."
    )
    entities = ("campaign",)
    columns = COLUMNS
    new_label = "&New Campaign…"
    refresh_ms = REFRESH_MS

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.table.setObjectName("campaignsTable")
        self.table.setAccessibleName("Campaigns")
        self.table.setWordWrap(False)
        self.table.sortByColumn(len(COLUMNS) - 1, Qt.SortOrder.DescendingOrder)
        self.table.doubleClicked.disconnect(self._on_double_click)
        self.table.activated.connect(self._open_index)

        self.edit_button.setText("&Details…")
        self.delete_button.setVisible(False)  # campaigns are kept: cancel stops one
        self.start_button = QPushButton("&Start")
        self.pause_button = QPushButton("&Pause")
        self.resume_button = QPushButton("Res&ume")
        self.cancel_button = QPushButton("Cancel Campaign")
        self.retry_button = QPushButton("Re&try Failed/Held")
        self.test_button = QPushButton("Send a &Test…")
        self.troubleshoot_button = QPushButton("Trou&bleshoot…")
        for name, button in (
            ("newCampaignButton", self.new_button),
            ("detailsButton", self.edit_button),
            ("startButton", self.start_button),
            ("pauseButton", self.pause_button),
            ("resumeButton", self.resume_button),
            ("cancelButton", self.cancel_button),
            ("retryButton", self.retry_button),
            ("testCampaignButton", self.test_button),
            ("troubleshootButton", self.troubleshoot_button),
        ):
            button.setObjectName(name)
        self.start_button.setToolTip("Start sending the selected draft campaign.")
        self.pause_button.setToolTip("Stop handing out its messages; those in flight finish.")
        self.resume_button.setToolTip("Continue sending the paused campaign.")
        self.cancel_button.setToolTip("Stop the campaign for good; what is left is not sent.")
        self.retry_button.setToolTip("Queue the failed and held recipients again.")
        self.test_button.setToolTip(
            "Send one message to a test address and watch it go out (the reference's step 7)."
        )
        self.start_button.clicked.connect(lambda: self.run_action("start"))
        self.pause_button.clicked.connect(lambda: self.run_action("pause"))
        self.resume_button.clicked.connect(lambda: self.run_action("resume"))
        self.cancel_button.clicked.connect(lambda: self.run_action("cancel"))
        self.retry_button.clicked.connect(lambda: self.run_action("retry"))
        self.test_button.clicked.connect(self.open_test_dialog)
        self.troubleshoot_button.setToolTip(
            "Why mail is not going out: run the checks for the selected campaign's user."
        )
        self.troubleshoot_button.clicked.connect(self.open_troubleshooter)
        position = self.toolbar.indexOf(self.delete_button)
        for offset, button in enumerate(
            (
                self.start_button,
                self.pause_button,
                self.resume_button,
                self.cancel_button,
                self.retry_button,
                self.test_button,
                self.troubleshoot_button,
            ),
            start=1,
        ):
            self.toolbar.insertWidget(position + offset, button)
        self.status_filter = QComboBox()
        self.status_filter.setObjectName("statusFilter")
        self.status_filter.setAccessibleName("Show campaigns with status")
        self.status_filter.addItem("All statuses", ALL)
        for value, title in CAMPAIGN_TITLES.items():
            self.status_filter.addItem(title, value)
        self.status_filter.currentIndexChanged.connect(lambda _i: self.apply_filter())
        self.toolbar.insertWidget(self.toolbar.indexOf(self.filter), self.status_filter)
        self.filter.setPlaceholderText("Filter by name, user…")

        self.reason = QLabel()
        self.reason.setObjectName("pausedReason")
        self.reason.setWordWrap(True)
        self.reason.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reason.setStyleSheet(f"color: {theme.error_colour()}; {theme.banner_style('error')}")
        self.reason.setVisible(False)
        self.body.insertWidget(self.body.indexOf(self.table), self.reason)
        QShortcut(QKeySequence.StandardKey.New, self, self.new_item)

        self.timer.setObjectName("campaignsRefresh")
        self._loading = False
        self.loaded.connect(self._loaded)
        self.notice = ""
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.setInterval(15_000)
        self._notice_timer.timeout.connect(self._clear_notice)
        # Tests answer the cancel question without a modal loop.
        self.confirm_cancel: Callable[[str], bool] = self._ask_cancel
        self.new_dialog: NewCampaignDialog | None = None
        self.detail_dialog: CampaignDetailDialog | None = None
        self.test_dialog: SendTestDialog | None = None
        self.troubleshoot_dialog: TroubleshootDialog | None = None
        self._update_buttons()

    # -------------------------------------------------------------- loading

    async def fetch(self) -> list[Row]:
        rows = await self.context.read(list_campaigns)
        return await self.context.in_executor(display_rows, rows)

    def refresh(self) -> None:
        # "Loading…" only for the first load: every 2 s it would flicker the status line.
        had_rows = bool(self.model.all_rows)
        self._loading = True
        super().refresh()
        if had_rows:
            self.show_status(self.count_text(self.model.all_rows))

    def _loaded(self) -> None:
        self._loading = False
        # Columns fit the first rows; after that a refresh every 2 s must neither measure
        # every row again nor undo the widths a person dragged.
        if self.model.all_rows:
            self.size_to_contents = False
        self._show_reason()

    def _clear_notice(self) -> None:
        self.notice = ""
        self.show_status(self.count_text(self.model.all_rows))

    def tick(self) -> None:
        # A load still running (a slow database) is not stacked with another.
        if self.isVisible() and not self._loading and self.context.database is not None:
            self.refresh()

    def hideEvent(self, event: QHideEvent) -> None:
        self._loading = False
        super().hideEvent(event)

    def accept(self) -> Callable[[Row], bool] | None:
        status = str(self.status_filter.currentData() or ALL)
        return (lambda row: row["status"] == status) if status else None

    def apply_filter(self) -> None:
        super().apply_filter()
        self.show_status(self.count_text(self.model.all_rows))

    def count_text(self, rows: Sequence[Row]) -> str:
        total = len(rows)
        running = sum(1 for r in rows if r["status"] == "running")
        text = f"{total:,} {'campaign' if total == 1 else 'campaigns'}, {running:,} running"
        if len(self.model.rows) != total:
            text += f"; {len(self.model.rows):,} shown"
        # The last command's outcome stays readable across the 2 s refreshes for a while.
        return f"{self.notice} {text}." if getattr(self, "notice", "") else text

    # -------------------------------------------------------------- selection

    def _update_buttons(self) -> None:
        if not hasattr(self, "retry_button"):
            super()._update_buttons()  # called from the base constructor
            return
        row = self.selected_row()
        status = row["status"] if row else None
        self.edit_button.setEnabled(row is not None)
        self.start_button.setEnabled(status == "draft")
        self.pause_button.setEnabled(status == "running")
        self.resume_button.setEnabled(status == "paused")
        self.cancel_button.setEnabled(status in ("draft", "running", "paused"))
        self.retry_button.setEnabled(
            status in ("running", "paused", "completed")
            and bool(row and (row["failed"] or row["held"]))
        )
        self._show_reason()

    def _show_reason(self) -> None:
        if not hasattr(self, "reason"):
            return
        row = self.selected_row()
        reason = row.get("paused_reason") if row else None
        self.reason.setText(f"{row['name']}: {reason}" if row and reason else "")
        self.reason.setVisible(bool(reason))

    def _open_index(self, index: QModelIndex | QPersistentModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if isinstance(row, dict):
            self.edit_item(row)

    # -------------------------------------------------------------- actions

    def new_item(self) -> None:
        if self.context.database is None:
            return
        row = self.selected_row()
        dialog = NewCampaignDialog(self.context, self, preferred_user=row["user"] if row else None)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.created.connect(self._created)
        self.new_dialog = dialog
        dialog.open()

    def _created(self, result: dict[str, Any]) -> None:
        self.show_status(f"Created {result['name']}.")

    def edit_item(self, row: Row) -> None:
        self.open_detail(str(row["name"]))

    def open_detail(self, name: str) -> CampaignDetailDialog:
        dialog = CampaignDetailDialog(self.context, name, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.detail_dialog = dialog
        dialog.open()
        return dialog

    def open_test_dialog(self) -> SendTestDialog:
        row = self.selected_row()
        dialog = SendTestDialog(self.context, self, preferred_user=row["user"] if row else None)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.test_dialog = dialog
        dialog.open()
        return dialog

    def open_troubleshooter(self) -> TroubleshootDialog | None:
        if self.context.database is None:
            return None
        row = self.selected_row()
        self.troubleshoot_dialog = open_troubleshooter(
            self.context, self, username=str(row["user"]) if row else None
        )
        return self.troubleshoot_dialog

    def _ask_cancel(self, name: str) -> bool:
        answer = QMessageBox.question(
            self,
            f"Cancel {name}?",
            f"Cancel campaign {name}? Recipients not sent yet will not be sent, and a "
            "cancelled campaign cannot be started again.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def run_action(self, action: str) -> None:
        row = self.selected_row()
        if row is None:
            return
        name = str(row["name"])
        if action == "cancel" and not self.confirm_cancel(name):
            return
        self.context.spawn(
            self._run(action, name), on_error=lambda msg: self.show_status(msg, error=True)
        )

    async def _run(self, action: str, name: str) -> None:
        if action == "retry":
            result = await self.context.write(retry_items, name)
            done = (
                f"Queued {result['retried']:,} failed or held recipients of {name} again."
                if result["retried"]
                else f"{name} has no failed or held recipient to retry."
            )
        else:
            functions = {
                "start": start_campaign,
                "pause": pause_campaign,
                "resume": resume_campaign,
                "cancel": cancel_campaign,
            }
            result = await self.context.write(functions[action], name)
            done = f"{name} is {CAMPAIGN_TITLES[result['status']].lower()}."
        self.context.changed.emit("campaign")
        if shiboken6.isValid(self):
            self.notice = done
            self.show_status(self.count_text(self.model.all_rows))
            self._notice_timer.start()
