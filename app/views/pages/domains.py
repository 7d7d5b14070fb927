"""The Sender Domains page: every user's domains, their status, and their DNS checks.

Built for 10,000 domains and more. The rows come from one light query in the executor
(``sender_domains.domain_rows``, the rows of ``domains list`` too), their display strings
and search text are prepared there as well, and the shared ``RowTableModel`` sorts and
filters plain Python lists.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.models import DomainStatus
from app.services.sender_domains import delete_sender_domain, domain_rows, set_domain_status
from app.views import theme
from app.views.bulk_verify_dialog import BulkVerifyDialog
from app.views.context import AppContext
from app.views.domain_detail_dialog import DomainDetailDialog
from app.views.domain_parts import KIND_TITLES, STATUS_BADGE, local_time, status_icon, status_title
from app.views.new_domain_dialog import NewDomainDialog
from app.views.pages.base import ListPage
from app.views.table_model import ROW_ROLE, Column, Index, Row

ALL_STATUSES = ""


# ---------------------------------------------------------------- rows (executor side)


def display_rows(rows: list[Row]) -> list[Row]:
    """The service's rows with what the table shows and searches, prepared off the GUI
    thread: the check time in local time, and the text the filter box searches."""
    for row in rows:
        row["checked"] = local_time(row["last_check_at"])
        row["search"] = " ".join(
            (
                row["domain"],
                KIND_TITLES.get(row["kind"], row["kind"]),
                status_title(row["status"]),
                row["user"],
                row["template"] or "",
            )
        ).casefold()
    return rows


def by_domain_and_kind(row: Row) -> Hashable:
    return (row.get("domain"), row.get("kind"))


class BadgeDelegate(QStyledItemDelegate):
    """Paints the status as a small coloured pill, over the normal selection background."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = index.data(ROW_ROLE)
        if not isinstance(row, dict):
            super().paint(painter, option, index)
            return
        self.initStyleOption(option, index)
        text = option.text
        option.text = ""
        widget = option.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, widget)
        fill, ink = STATUS_BADGE.get(row["status"], ("#757575", "#ffffff"))
        metrics = option.fontMetrics
        rect: QRect = option.rect
        height = min(rect.height() - 4, metrics.height() + 4)
        width = min(rect.width() - 8, metrics.horizontalAdvance(text) + 16)
        pill = QRect(rect.left() + 4, rect.top() + (rect.height() - height) // 2, width, height)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(fill))
        painter.drawRoundedRect(pill, height / 2, height / 2)
        painter.setPen(QColor(ink))
        painter.drawText(pill, int(Qt.AlignmentFlag.AlignCenter), text)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        size = super().sizeHint(option, index)
        return QSize(size.width() + 24, size.height() + 4)


# ---------------------------------------------------------------- page


def _outcome_colour(row: Row) -> str | None:
    outcome = row.get("outcome")
    if outcome == "failed":
        return theme.error_colour()
    if outcome == "error":
        return theme.warning_colour()
    return None


OUTCOME_ICONS = {"ok": "ok", "failed": "failed", "error": "warning", "untested": "untested"}
STATUS_ORDER = {"approval_pending": 0, "enabled": 1}
OUTCOME_ORDER = {"failed": 0, "error": 1, "untested": 2}

COLUMNS = (
    # Columns narrower than their text elide it; the tooltip has it whole.
    Column("domain", "Domain", tooltip=lambda row: row["domain"]),
    Column("kind", "Kind", text=lambda row: str(KIND_TITLES.get(row["kind"], row["kind"]))),
    Column(
        "status",
        "Status",
        text=lambda row: status_title(row["status"]),
        # Pending first: those are the ones waiting for someone.
        sort_value=lambda row: STATUS_ORDER.get(row["status"], 2),
    ),
    Column("user", "User"),
    Column("template", "Template", tooltip=lambda row: row["template"] or None),
    Column("checked", "Last Check", sort_value=lambda row: row["last_check_at"] or ""),
    Column(
        "check_result",
        "Result",
        icon=lambda row: status_icon(OUTCOME_ICONS[row["outcome"]]),
        colour=_outcome_colour,
        sort_value=lambda row: (OUTCOME_ORDER.get(row["outcome"], 3), row["check_result"]),
        tooltip=lambda row: (
            "An enabled domain whose records no longer pass: open it to see what changed."
            if row["outcome"] == "failed" and row["status"] == "enabled"
            else None
        ),
    ),
)


class DomainsPage(ListPage):
    title = "Sender Domains"
    summary = (
        "Domains users send from. Each must publish the DNS records its group's template "
        "gave it; once all are found, the domain is Enabled."
    )
    entities = ("sender_domain", "user")
    columns = COLUMNS
    new_label = "&New Sender Domain…"
    row_key = staticmethod(by_domain_and_kind)
    size_to_contents = False  # widths come from sample texts, not from measuring every row

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.table.setObjectName("domainsTable")
        self.table.setAccessibleName("Sender domains")
        self.table.setItemDelegateForColumn(2, BadgeDelegate(self.table))
        self.table.setWordWrap(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        header = self.table.horizontalHeader()
        header.setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        # Widths from the texts they must hold, not from measuring 10,000 rows.
        metrics = self.fontMetrics()
        samples = {
            "Domain": "mail.a-long-company-name.co.uk",
            "Kind": "Campaign",
            "Status": "Approval Pending",
            "User": "a.username",
            "Template": "High Volume",
            "Last Check": "2026-12-31 23:59",
        }
        for column, spec in enumerate(self.columns):
            sample = samples.get(spec.title)
            if sample is not None:
                extra = 40 if spec.title == "Status" else 24  # the badge's rounded ends
                header.resizeSection(column, metrics.horizontalAdvance(sample) + extra)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # Fixed row heights: the view never measures 10,000 rows to lay them out.
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        # Enter and double-click both arrive as activated(); the base class's double-click
        # handler would open a second window.
        self.table.doubleClicked.disconnect(self._on_double_click)
        self.table.activated.connect(self._open_index)

        self.edit_button.setText("&Details…")
        self.delete_button.setText("Delete")
        self.enable_button = QPushButton("&Enable")
        self.disable_button = QPushButton("D&isable")
        self.verify_all_button = QPushButton("&Verify All…")
        for name, button in (
            ("newDomainButton", self.new_button),
            ("detailsButton", self.edit_button),
            ("deleteButton", self.delete_button),
            ("enableButton", self.enable_button),
            ("disableButton", self.disable_button),
            ("verifyAllButton", self.verify_all_button),
        ):
            button.setObjectName(name)
        self.enable_button.setToolTip(
            "Enable the selected domains without a DNS check (an administrator's override)."
        )
        self.disable_button.setToolTip(
            "Disable the selected domains: campaigns can no longer send from them."
        )
        self.enable_button.clicked.connect(lambda: self._set_status(DomainStatus.ENABLED))
        self.disable_button.clicked.connect(lambda: self._set_status(DomainStatus.DISABLED))
        self.verify_all_button.clicked.connect(self.open_bulk_verify)
        # Toolbar: New, Details, Enable, Disable, Delete | Verify All | filters, Refresh.
        self.toolbar.insertWidget(2, self.enable_button)
        self.toolbar.insertWidget(3, self.disable_button)
        self.toolbar.insertWidget(5, self.verify_all_button)
        self.status_filter = QComboBox()
        self.status_filter.setObjectName("statusFilter")
        self.status_filter.setAccessibleName("Show domains with status")
        self.status_filter.addItem("All statuses", ALL_STATUSES)
        for status in DomainStatus:
            self.status_filter.addItem(status_title(status.value), status.value)
        self.toolbar.insertWidget(self.toolbar.indexOf(self.filter), self.status_filter)
        self.filter.setPlaceholderText("Filter by domain, user, template…")
        # Room for the whole hint; a narrow window puts the filters on a line of their own.
        self.filter.setMinimumWidth(
            self.fontMetrics().horizontalAdvance(self.filter.placeholderText()) + 40
        )
        self.status_filter.currentIndexChanged.connect(lambda _i: self.apply_filter())
        QShortcut(QKeySequence.StandardKey.New, self, self.new_item)
        # Dialogs, kept for tests and so that one detail window per domain is reused.
        self.detail_dialog: DomainDetailDialog | None = None
        self.new_dialog: NewDomainDialog | None = None
        self.bulk_dialog: BulkVerifyDialog | None = None
        self.nameserver_override = ""  # the last override used, offered again
        self._update_buttons()

    # -------------------------------------------------------------- loading

    async def fetch(self) -> list[Row]:
        rows = await self.context.read(domain_rows)
        return await self.context.in_executor(display_rows, rows)

    def accept(self) -> Callable[[Row], bool] | None:
        status = str(self.status_filter.currentData() or ALL_STATUSES)
        return (lambda row: row["status"] == status) if status else None

    def apply_filter(self) -> None:
        super().apply_filter()
        self.show_status(self.count_text(self.model.all_rows))

    def count_text(self, rows: Sequence[Row]) -> str:
        total = len(rows)
        shown = len(self.model.rows)
        noun = "domain" if total == 1 else "domains"
        pending = sum(1 for r in rows if r["status"] == "approval_pending")
        text = f"{total:,} sender {noun}, {pending:,} awaiting approval"
        if shown != total:
            text += f"; {shown:,} shown"
        return text

    # -------------------------------------------------------------- selection

    def _update_buttons(self) -> None:
        if not hasattr(self, "enable_button"):
            super()._update_buttons()  # called from the base constructor
            return
        rows = self.selected_rows()
        self.edit_button.setEnabled(len(rows) == 1)
        self.delete_button.setEnabled(bool(rows))
        self.enable_button.setEnabled(any(r["status"] != "enabled" for r in rows))
        self.disable_button.setEnabled(any(r["status"] != "disabled" for r in rows))
        self.verify_all_button.setEnabled(bool(self.model.all_rows))

    def _open_index(self, index: QModelIndex | QPersistentModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if isinstance(row, dict):
            self.edit_item(row)

    # -------------------------------------------------------------- actions

    def new_item(self) -> None:
        if self.context.database is None:
            return
        rows = self.selected_rows()
        dialog = NewDomainDialog(self.context, rows[0]["user"] if rows else None, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.created.connect(self._created)
        self.new_dialog = dialog
        dialog.open()

    def _created(self, data: dict[str, Any]) -> None:
        self.show_status(f"Created {data['domain']}; publish its records, then verify.")
        self.open_detail(data["domain"], data["kind"])

    def edit_item(self, row: Row) -> None:
        self.open_detail(row["domain"], row["kind"])

    def open_detail(self, domain: str, kind: str) -> DomainDetailDialog:
        dialog = DomainDetailDialog(
            self.context, domain, kind, self, nameserver=self.nameserver_override
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.advanced.nameserver.textChanged.connect(self._remember_nameserver)
        self.detail_dialog = dialog
        dialog.open()
        return dialog

    def open_bulk_verify(self) -> BulkVerifyDialog:
        dialog = BulkVerifyDialog(
            self.context, self.model.all_rows, self, nameserver=self.nameserver_override
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.advanced.nameserver.textChanged.connect(self._remember_nameserver)
        dialog.open_requested.connect(self.open_detail)
        self.bulk_dialog = dialog
        dialog.open()
        return dialog

    def _remember_nameserver(self, text: str) -> None:
        self.nameserver_override = text.strip()

    def describe(self, row: Row) -> str:
        rows = self.selected_rows()
        if len(rows) > 1:
            return f"{len(rows)} sender domains"
        return f"sender domain {row['domain']}"

    def _delete_selected(self) -> None:
        rows = self.selected_rows()
        if rows and self.confirm_delete(rows[0]):
            self.context.spawn(
                self._delete(rows), on_error=lambda msg: self.show_status(msg, error=True)
            )

    async def delete_item(self, row: Row) -> None:
        await self._delete([row])

    async def _delete(self, rows: list[Row]) -> None:
        for row in rows:
            await self.context.write(
                delete_sender_domain,
                row["domain"],
                row["kind"],
                expected_version=row["version"],
            )
        self.context.changed.emit("sender_domain")
        self.show_status(
            f"Deleted {rows[0]['domain']}" if len(rows) == 1 else f"Deleted {len(rows)} domains"
        )

    def _set_status(self, status: DomainStatus) -> None:
        rows = [r for r in self.selected_rows() if r["status"] != status.value]
        if rows:
            self.context.spawn(
                self._write_status(rows, status),
                on_error=lambda msg: self.show_status(msg, error=True),
            )

    async def _write_status(self, rows: list[Row], status: DomainStatus) -> None:
        for row in rows:
            await self.context.write(
                set_domain_status,
                row["domain"],
                row["kind"],
                status,
                expected_version=row["version"],
            )
        self.context.changed.emit("sender_domain")
