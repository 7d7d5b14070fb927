"""The shape every section page shares, and the list page most of them are.

A ``Page`` is one entry of the navigation. ``ListPage`` adds a toolbar (New, Edit,
Delete, Refresh, a filter box), a sortable table over a ``RowTableModel`` and a status
line; subclasses say how rows are fetched (a service's row function), what identifies a
row (``row_key``, so a reload updates rows in place and keeps the selection and scroll
position) and what New / Edit / Delete do.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import ClassVar

import shiboken6
from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QHideEvent, QKeySequence, QPalette, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.views.context import AppContext
from app.views.focus import mark_focus
from app.views.pages.flow import FlowLayout
from app.views.table_model import ROW_ROLE, Column, Row, RowKey, RowTableModel, selected_row


def scaled_font(base: QFont, factor: float, *, bold: bool = False) -> QFont:
    font = QFont(base)
    font.setPointSizeF(base.pointSizeF() * factor)
    font.setBold(bold)
    return font


class Page(QWidget):
    """A navigation section. ``entities`` are the change names that make it reload."""

    title = ""
    summary = ""
    entities: tuple[str, ...] = ()
    # Above 0: a live page, reloaded this often (milliseconds) while it is shown.
    refresh_ms = 0

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.timer = QTimer(self)
        self.timer.setInterval(self.refresh_ms)
        self.timer.timeout.connect(self.tick)
        self.heading = QLabel(self.title)
        self.heading.setObjectName("sectionTitle")
        self.heading.setFont(scaled_font(self.font(), 1.5, bold=True))
        self.blurb = QLabel(self.summary)
        self.blurb.setWordWrap(True)
        self.blurb.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.status = QLabel()
        self.status.setObjectName("pageStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(20, 16, 20, 12)
        self.body.addWidget(self.heading)
        self.body.addWidget(self.blurb)
        context.changed.connect(self._on_changed)
        context.database_changed.connect(self.refresh)

    def _on_changed(self, entity: str) -> None:
        if entity in self.entities and self.isVisible():
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()
        if self.refresh_ms > 0:
            self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()
        super().hideEvent(event)

    def tick(self) -> None:
        """A live page's timer: reload (a page may skip while a load still runs)."""
        self.refresh()

    def refresh(self) -> None:
        """Reload from the database (no-op for pages without data)."""

    def can_leave(self) -> bool:
        """False keeps the user here (e.g. unsaved changes they chose to keep)."""
        return True

    def show_status(self, message: str, *, error: bool = False) -> None:
        self.status.setText(message)
        self.status.setStyleSheet("color: #c62828;" if error else "")


def by_name(row: Row) -> Hashable:
    return row.get("name")


class ListPage(Page):
    columns: Sequence[Column] = ()
    new_label = "New…"
    # What identifies a row across reloads; None: every reload resets the table.
    row_key: ClassVar[RowKey | None] = staticmethod(by_name)
    loaded = Signal()  # after each load's rows are in the table
    size_to_contents: ClassVar[bool] = True  # after each load, columns fit their contents

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.model = RowTableModel(self.columns, self, key=self.row_key, sort_column=0)
        self.table = QTableView()
        self.table.setObjectName("table")
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.doubleClicked.connect(self._on_double_click)
        mark_focus(self.table)  # reached by Tab, the table shows that it has the focus

        self.new_button = QPushButton(self.new_label)
        self.edit_button = QPushButton("Edit…")
        self.delete_button = QPushButton("Delete")
        self.refresh_button = QPushButton("Refresh")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter")
        self.filter.setClearButtonEnabled(True)
        self.filter.setMinimumWidth(self.filter.fontMetrics().horizontalAdvance("Filter") + 80)
        self.filter.setObjectName("filter")
        self.filter.textChanged.connect(lambda _text: self.apply_filter())
        self.new_button.clicked.connect(self.new_item)
        self.edit_button.clicked.connect(self._edit_selected)
        self.delete_button.clicked.connect(self._delete_selected)
        self.refresh_button.clicked.connect(self.refresh)

        # Wraps onto a second line rather than widening the window (see flow.py).
        self.toolbar = FlowLayout()
        for button in (self.new_button, self.edit_button, self.delete_button):
            self.toolbar.addWidget(button)
        self.toolbar.addStretch(1)
        self.toolbar.addWidget(self.filter)
        self.toolbar.addWidget(self.refresh_button)
        self.body.addLayout(self.toolbar)
        self.body.addWidget(self.table, 1)
        self.body.addWidget(self.status)
        QShortcut(QKeySequence.StandardKey.Find, self, self.filter.setFocus)
        QShortcut(QKeySequence.StandardKey.Refresh, self, self.refresh)
        self._generation = 0  # a newer load supersedes an older one still running
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self._update_buttons()

    # ------------------------------------------------------------------ loading

    async def fetch(self) -> list[Row]:
        raise NotImplementedError

    def refresh(self) -> None:
        if self.context.database is None:
            return
        self._generation += 1
        generation = self._generation
        self.show_status("Loading…")

        prepare = self.model.prepare

        async def load() -> None:
            rows = await self.fetch()
            await self.context.in_executor(prepare, rows)
            # A newer load superseded this one, or the page was closed meanwhile.
            if generation != self._generation or not shiboken6.isValid(self):
                return
            self.keeping_selection(lambda: self.model.set_rows(rows))
            if self.size_to_contents:
                self.table.resizeColumnsToContents()
                # Resizing to contents undoes the stretch of the last column; restore it
                # (turned off first: set again while on, it changes nothing).
                header = self.table.horizontalHeader()
                header.setStretchLastSection(False)
                header.setStretchLastSection(True)
            self.show_status(self.count_text(rows))
            self._update_buttons()
            self.loaded.emit()

        self.context.spawn(load(), on_error=lambda msg: self.show_status(msg, error=True))

    def count_text(self, rows: Sequence[Row]) -> str:
        """The status line after a load."""
        return f"{len(rows)} {'item' if len(rows) == 1 else 'items'}"

    # ------------------------------------------------------------------ selection

    def selected_row(self) -> Row | None:
        return selected_row(self.table)

    def selected_rows(self) -> list[Row]:
        rows = []
        for index in self.table.selectionModel().selectedRows():
            row = index.data(ROW_ROLE)
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def select_where(self, key: str, value: object) -> bool:
        for number, row in enumerate(self.model.rows):
            if row.get(key) == value:
                self.table.selectRow(number)
                self.table.scrollTo(self.model.index(number, 0))
                return True
        return False

    def apply_filter(self) -> None:
        self.keeping_selection(lambda: self.model.set_filter(self.filter.text(), self.accept()))
        self._update_buttons()

    def accept(self) -> Callable[[Row], bool] | None:
        """A page's filter besides the text (e.g. a status box); None shows every row."""
        return None

    def keeping_selection(self, change: Callable[[], None]) -> None:
        """Run ``change`` to the model; if it had to reset the table, select again the
        rows that were selected (a keyed update keeps them by itself)."""
        key = self.model.key
        wanted = [key(row) for row in self.selected_rows()] if key is not None else []
        change()
        if key is None or not wanted or self.selected_rows():
            return
        selection = self.table.selectionModel()
        keys = set(wanted)
        first = True
        for number, row in enumerate(self.model.rows):
            if key(row) in keys:
                flags = selection.SelectionFlag.Rows | (
                    selection.SelectionFlag.ClearAndSelect
                    if first
                    else selection.SelectionFlag.Select
                )
                selection.select(self.model.index(number, 0), flags)
                if first:
                    self.table.scrollTo(self.model.index(number, 0))
                first = False

    def _update_buttons(self) -> None:
        has = self.selected_row() is not None
        self.edit_button.setEnabled(has)
        self.delete_button.setEnabled(has)

    def _on_double_click(self, index: QModelIndex) -> None:
        row = index.data(ROW_ROLE)
        if isinstance(row, dict):
            self.edit_item(row)

    def _edit_selected(self) -> None:
        row = self.selected_row()
        if row is not None:
            self.edit_item(row)

    def _delete_selected(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if self.confirm_delete(row):
            self.context.spawn(
                self.delete_item(row), on_error=lambda msg: self.show_status(msg, error=True)
            )

    # ------------------------------------------------------------------ actions

    def new_item(self) -> None:
        raise NotImplementedError

    def edit_item(self, row: Row) -> None:
        raise NotImplementedError

    async def delete_item(self, row: Row) -> None:
        raise NotImplementedError

    def describe(self, row: Row) -> str:
        return str(row.get("name", ""))

    def confirm_delete(self, row: Row) -> bool:
        answer = QMessageBox.question(
            self,
            f"Delete {self.describe(row)}?",
            f"Delete {self.describe(row)}? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes
