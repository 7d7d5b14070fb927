"""The Sender Domains page: every user's domains, their status, and their DNS checks.

Built for 10,000 domains and more. The rows come from one light query in the executor
(columns and per-domain record counts, no ORM objects, no per-row loads) with their
display strings and search text prepared there too, and the model sorts and filters
plain Python lists itself: ``QSortFilterProxyModel`` would call back into Python for
every comparison and take seconds on that many rows, freezing the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import DomainStatus, SenderDomain, SenderDomainRecord, User
from app.services.sender_domains import delete_sender_domain, set_domain_status
from app.views import theme
from app.views.context import AppContext
from app.views.domain_dialogs import (
    KIND_TITLES,
    STATUS_BADGE,
    BulkVerifyDialog,
    DomainDetailDialog,
    NewDomainDialog,
    local_time,
    status_icon,
    status_title,
)
from app.views.pages.base import ListPage
from app.views.table_model import ROW_ROLE, Column, Index, Row, RowTableModel

ALL_STATUSES = ""


# ---------------------------------------------------------------- rows (executor side)


def _check_result(last_check_at: datetime | None, total: int, ok: int, failing: int) -> str:
    if last_check_at is None:
        return "Not checked" if total else "No records"
    if failing:
        return f"{failing} of {total} failing"
    if total and ok == total:
        return f"All {total} found"
    if not total:
        return "No records"
    return f"{total - ok} unanswered"


def domain_rows(session: Session) -> list[Row]:
    """Every sender domain as a display-ready row, in two queries' worth of work."""
    records = SenderDomainRecord.__table__
    counts = (
        select(
            records.c.sender_domain_id.label("domain_id"),
            func.count().label("total"),
            func.sum(case((records.c.last_ok == True, 1), else_=0)).label("ok"),  # noqa: E712
            func.sum(case((records.c.last_ok == False, 1), else_=0)).label("failing"),  # noqa: E712
        )
        .group_by(records.c.sender_domain_id)
        .subquery()
    )
    query = (
        select(
            SenderDomain.domain,
            SenderDomain.kind,
            SenderDomain.status,
            User.username,
            SenderDomain.template_name,
            SenderDomain.last_check_at,
            SenderDomain.version,
            counts.c.total,
            counts.c.ok,
            counts.c.failing,
        )
        .join(User, SenderDomain.user_id == User.id)
        .outerjoin(counts, counts.c.domain_id == SenderDomain.id)
        .order_by(SenderDomain.domain, SenderDomain.kind)
    )
    rows: list[Row] = []
    for (
        domain,
        kind,
        status,
        user,
        template,
        checked,
        version,
        total,
        ok,
        failing,
    ) in session.execute(query):
        total, ok, failing = int(total or 0), int(ok or 0), int(failing or 0)
        result = _check_result(checked, total, ok, failing)
        row: Row = {
            "domain": domain,
            "kind": kind.value,
            "status": status.value,
            "user": user,
            "template": template or "",
            "checked": local_time(checked),
            "checked_sort": checked.isoformat() if checked else "",
            "result": result,
            "outcome": (
                "untested"
                if checked is None or not total
                else "failed"
                if failing
                else "ok"
                if ok == total
                else "error"
            ),
            "version": version,
        }
        # What the filter box searches, prepared here rather than on every keystroke.
        row["search"] = " ".join(
            (domain, KIND_TITLES[row["kind"]], status_title(row["status"]), user, template or "")
        ).casefold()
        rows.append(row)
    return rows


# ---------------------------------------------------------------- model


class DomainTableModel(RowTableModel):
    """All rows in memory; sorting and filtering are list operations, not Qt callbacks."""

    def __init__(self, columns: Sequence[Column], parent: Any = None) -> None:
        super().__init__(columns, parent)
        self.all_rows: list[Row] = []
        self.sort_column = 0
        self.sort_order = Qt.SortOrder.AscendingOrder
        self.filter_text = ""
        self.status_filter = ALL_STATUSES

    def set_rows(self, rows: Sequence[Row]) -> None:
        self.beginResetModel()
        self.all_rows = list(rows)
        self._sort_all()
        self.rows = self._visible()
        self.endResetModel()

    def set_filter(self, text: str, status: str = ALL_STATUSES) -> None:
        self.beginResetModel()
        self.filter_text = text.strip().casefold()
        self.status_filter = status
        self.rows = self._visible()
        self.endResetModel()

    def _visible(self) -> list[Row]:
        text, status = self.filter_text, self.status_filter
        if not text and not status:
            return list(self.all_rows)
        return [
            row
            for row in self.all_rows
            if (not status or row["status"] == status) and (not text or text in row["search"])
        ]

    def _sort_all(self) -> None:
        column = self.columns[self.sort_column]
        # Python's sort is stable, so rows equal in this column stay in domain order.
        self.all_rows.sort(
            key=column.sort_key, reverse=self.sort_order == Qt.SortOrder.DescendingOrder
        )

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.columns):
            return
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        held = [(index, self.rows[index.row()]) for index in before if index.isValid()]
        self.sort_column, self.sort_order = column, order
        self._sort_all()
        self.rows = self._visible()
        position = {id(row): number for number, row in enumerate(self.rows)}
        self.changePersistentIndexList(
            [index for index, _row in held],
            [
                self.index(position[id(row)], index.column())
                if id(row) in position
                else QModelIndex()
                for index, row in held
            ],
        )
        self.layoutChanged.emit()


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

COLUMNS = (
    Column("domain", "Domain"),
    Column("kind", "Kind", text=lambda row: str(KIND_TITLES.get(row["kind"], row["kind"]))),
    Column(
        "status",
        "Status",
        text=lambda row: status_title(row["status"]),
        # Pending first: those are the ones waiting for someone.
        sort_value=lambda row: {"approval_pending": 0, "enabled": 1}.get(row["status"], 2),
    ),
    Column("user", "User"),
    Column("template", "Template"),
    Column("checked", "Last Check", sort_value=lambda row: row["checked_sort"]),
    Column(
        "result",
        "Result",
        icon=lambda row: status_icon(OUTCOME_ICONS[row["outcome"]]),
        colour=_outcome_colour,
        sort_value=lambda row: (
            {"failed": 0, "error": 1, "untested": 2}.get(row["outcome"], 3),
            row["result"],
        ),
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

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        # The shared proxy sorts through Python callbacks: far too slow at 10,000 rows.
        # This model sorts and filters itself, and the view talks to it directly.
        self.filter.textChanged.disconnect(self.proxy.setFilterFixedString)
        self.model = DomainTableModel(self.columns, self)
        self.table.setModel(self.model)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
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
        self.filter.setMinimumWidth(
            self.fontMetrics().horizontalAdvance("Filter by domain, user") + 40
        )
        self.filter.textChanged.connect(lambda _text: self._apply_filter())
        self.status_filter.currentIndexChanged.connect(lambda _i: self._apply_filter())
        QShortcut(QKeySequence.StandardKey.New, self, self.new_item)
        # Dialogs, kept for tests and so that one detail window per domain is reused.
        self.detail_dialog: DomainDetailDialog | None = None
        self.new_dialog: NewDomainDialog | None = None
        self.bulk_dialog: BulkVerifyDialog | None = None
        self.nameserver_override = ""  # the last override used, offered again
        self._update_buttons()

    # -------------------------------------------------------------- loading

    async def fetch(self) -> list[Row]:
        return await self.context.read(domain_rows)

    def refresh(self) -> None:
        if self.context.database is None:
            return
        self._generation += 1
        generation = self._generation
        self.show_status("Loading…")
        selected = self._selected_keys()

        async def load() -> None:
            rows = await self.fetch()
            if generation != self._generation:
                return
            self.model.set_rows(rows)
            self._reselect(selected)
            self._show_count()
            self._update_buttons()

        self.context.spawn(load(), on_error=lambda msg: self.show_status(msg, error=True))

    def _apply_filter(self) -> None:
        selected = self._selected_keys()
        self.domain_model.set_filter(
            self.filter.text(), str(self.status_filter.currentData() or "")
        )
        self._reselect(selected)
        self._show_count()
        self._update_buttons()

    def _show_count(self) -> None:
        total = len(self.domain_model.all_rows)
        shown = len(self.model.rows)
        noun = "domain" if total == 1 else "domains"
        pending = sum(1 for r in self.domain_model.all_rows if r["status"] == "approval_pending")
        text = f"{total:,} sender {noun}, {pending:,} awaiting approval"
        if shown != total:
            text += f"; {shown:,} shown"
        self.show_status(text)

    # -------------------------------------------------------------- selection

    @property
    def domain_model(self) -> DomainTableModel:
        assert isinstance(self.model, DomainTableModel)
        return self.model

    def selected_rows(self) -> list[Row]:
        rows = []
        for index in self.table.selectionModel().selectedRows():
            row = index.data(ROW_ROLE)
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def _selected_keys(self) -> set[tuple[str, str]]:
        return {(row["domain"], row["kind"]) for row in self.selected_rows()}

    def _reselect(self, keys: set[tuple[str, str]]) -> None:
        if not keys:
            return
        selection = self.table.selectionModel()
        first = True
        for number, row in enumerate(self.model.rows):
            if (row["domain"], row["kind"]) in keys:
                flags = selection.SelectionFlag.Rows | (
                    selection.SelectionFlag.ClearAndSelect
                    if first
                    else selection.SelectionFlag.Select
                )
                selection.select(self.model.index(number, 0), flags)
                if first:
                    self.table.scrollTo(self.model.index(number, 0))
                first = False
                if len(keys) == 1:
                    break

    def select_where(self, key: str, value: object) -> bool:
        for number, row in enumerate(self.model.rows):
            if row.get(key) == value:
                self.table.selectRow(number)
                self.table.scrollTo(self.model.index(number, 0))
                return True
        return False

    def _update_buttons(self) -> None:
        if not hasattr(self, "enable_button"):
            super()._update_buttons()  # called from the base constructor
            return
        rows = self.selected_rows()
        self.edit_button.setEnabled(len(rows) == 1)
        self.delete_button.setEnabled(bool(rows))
        self.enable_button.setEnabled(any(r["status"] != "enabled" for r in rows))
        self.disable_button.setEnabled(any(r["status"] != "disabled" for r in rows))
        self.verify_all_button.setEnabled(bool(self.domain_model.all_rows))

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
            self.context, self.domain_model.all_rows, self, nameserver=self.nameserver_override
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
