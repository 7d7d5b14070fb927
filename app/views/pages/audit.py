"""The Audit Log page: who changed what, when, filtered by entity, text and count.

Entries come from ``audit.list_entries`` in the executor (newest first); the table shows
a one-line summary of each entry's details and the side panel the full details, as text
that can be selected and copied. The service already replaces secret values with
``<changed>`` / ``<set>`` before an entry is written.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QItemSelection, Qt, QTimer
from PySide6.QtGui import QFontDatabase, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.services import audit
from app.views.context import AppContext
from app.views.pages.base import Page
from app.views.pages.flow import FlowLayout
from app.views.table_model import Column, Row, RowTableModel, selected_row

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

ENTITY_CHOICES: tuple[tuple[str, str | None], ...] = (
    ("All entities", None),
    *((plural, entity) for entity, (_, plural) in audit.ENTITY_NAMES.items()),
)
ENTITY_LABELS = {entity: singular for entity, (singular, _) in audit.ENTITY_NAMES.items()}
LIMITS = (100, 500, 1000, 5000)
DEFAULT_LIMIT = 500
SEARCH_DELAY_MS = 300  # typing a name queries once, after a pause, not per keystroke
SUMMARY_LENGTH = 140


_value = audit.short_value
_is_record = audit.is_record


def summarise(action: str, details: dict[str, Any], entity: str = "") -> str:
    """One line of an entry's details (``audit.summary_line``, as ``postroom audit`` prints)."""
    return audit.summary_line(entity, action, details, SUMMARY_LENGTH)


def _local(at: datetime) -> datetime:
    return at.astimezone() if at.tzinfo is not None else at


def audit_rows(session: Session, entity: str | None, text: str | None, limit: int) -> list[Row]:
    """The entries as table rows (runs in the executor)."""
    return [
        {
            "at": entry.at,
            "time": _local(entry.at).strftime("%Y-%m-%d %H:%M:%S"),
            "actor": entry.actor,
            "action": entry.action,
            "entity": entry.entity,
            "key": entry.key,
            "details": entry.details,
            "summary": summarise(entry.action, entry.details, entry.entity),
        }
        for entry in audit.list_entries(session, entity=entity, text=text, limit=limit)
    ]


def _detail_lines(value: Any, indent: str) -> list[str]:
    """Nested details as indented ``key: value`` lines; DNS records one per line."""
    if isinstance(value, dict):
        if _is_record(value):
            return [f"{indent}{value['type']}  {value['host']}  →  {value['value']}"]
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{indent}{key}:")
                lines.extend(_detail_lines(item, indent + "  "))
            else:
                lines.append(f"{indent}{key}: {_value(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict):
                lines.extend(_detail_lines(item, indent))
            else:
                lines.append(f"{indent}- {_value(item)}")
        return lines
    return [f"{indent}{_value(value)}"]


def details_text(row: Row) -> str:
    """The full entry as copyable text: who, what, and every recorded detail."""
    entity = ENTITY_LABELS.get(str(row["entity"]), str(row["entity"]))
    lines = [f"{row['time']}  {row['actor']}", f"{row['action']} {entity}: {row['key']}", ""]
    details: dict[str, Any] = row.get("details") or {}
    if not details:
        lines.append("(no details recorded)")
    for name, value in details.items():
        key = audit.field_label(str(row["entity"]), name)
        if row["action"] == "update" and isinstance(value, list) and len(value) == 2:
            lines.append(f"{key}: {_full(value[0])} → {_full(value[1])}")
        elif isinstance(value, dict | list) and value:
            lines.append(f"{key}:")
            lines.extend(_detail_lines(value, "  "))
        else:
            lines.append(f"{key}: {_full(value)}")
    return "\n".join(lines)


def _full(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return _value(value)


class AuditPage(Page):
    title = "Audit Log"
    summary = "Who changed what, and when. Secrets never appear here, only that they changed."
    # Every save anywhere writes an entry, so any change reloads the visible log.
    entities = (
        "audit",
        "delivery_server",
        "user_group",
        "user",
        "sender_domain",
        "dns_template",
        "dns_settings",
    )

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self._generation = 0
        self.rows_shown = 0

        self.entity_filter = QComboBox()
        self.entity_filter.setObjectName("entityFilter")
        self.entity_filter.setAccessibleName("Entity")
        for label, value in ENTITY_CHOICES:
            self.entity_filter.addItem(label, value)
        self.search = QLineEdit()
        self.search.setObjectName("auditSearch")
        self.search.setAccessibleName("Search by name or actor")
        self.search.setPlaceholderText("Name or actor")
        self.search.setClearButtonEnabled(True)
        self.limit = QComboBox()
        self.limit.setObjectName("limitFilter")
        self.limit.setAccessibleName("Number of entries")
        for limit in LIMITS:
            self.limit.addItem(f"Newest {limit}", limit)
        self.limit.setCurrentIndex(LIMITS.index(DEFAULT_LIMIT))
        self.refresh_button = QPushButton("Refresh")

        # Each caption travels with its box when the toolbar wraps on a narrow window.
        self.toolbar = FlowLayout()
        for caption, widget in (
            ("&Entity:", self.entity_filter),
            ("&Search:", self.search),
            ("S&how:", self.limit),
        ):
            buddy = QLabel(caption)
            buddy.setBuddy(widget)
            pair = QWidget()
            pair.setObjectName(f"{widget.objectName()}Pair")
            pair_row = QHBoxLayout(pair)
            pair_row.setContentsMargins(0, 0, 6, 0)
            pair_row.addWidget(buddy)
            pair_row.addWidget(widget, 1)
            if widget is self.search:
                pair.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
                room = self.search.fontMetrics().horizontalAdvance("Name or actor") + 60
                self.search.setMinimumWidth(room)
            self.toolbar.addWidget(pair)
        self.toolbar.addStretch(1)
        self.toolbar.addWidget(self.refresh_button)
        self.body.addLayout(self.toolbar)

        # Filtering happens in the query; the model only sorts (newest first).
        self.model = RowTableModel(
            [
                Column("time", "Time", sort_value=lambda row: row["at"]),
                Column("actor", "Actor"),
                Column("action", "Action"),
                Column(
                    "entity",
                    "Entity",
                    text=lambda row: ENTITY_LABELS.get(str(row["entity"]), str(row["entity"])),
                ),
                Column("key", "Name"),
                Column("summary", "Details", tooltip=self._tooltip),
            ],
            self,
            sort_column=0,
            sort_order=Qt.SortOrder.DescendingOrder,
        )
        self.table = QTableView()
        self.table.setObjectName("auditTable")
        self.table.setAccessibleName("Audit entries")
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        # Widths from the font, set once: measuring up to 5,000 rows after every load
        # would stall the window.
        metrics = self.table.fontMetrics()
        for column, sample in enumerate(
            ("2026-12-31 23:59:59", "administrator@workstation", "create", "Delivery server")
        ):
            self.table.setColumnWidth(column, metrics.horizontalAdvance(sample) + 24)
        self.table.setColumnWidth(4, metrics.horizontalAdvance("newsletter.example.com") + 48)

        self.details = QPlainTextEdit()
        self.details.setObjectName("auditDetails")
        self.details.setAccessibleName("Entry details")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details.setTabChangesFocus(True)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setPlaceholderText("Select an entry to see everything it recorded.")
        self.copy_button = QPushButton("&Copy Details")
        self.copy_button.setObjectName("copyDetailsButton")
        self.copy_button.setEnabled(False)
        side = QWidget()
        side_column = QVBoxLayout(side)
        side_column.setContentsMargins(0, 6, 0, 0)
        details_title = QLabel("&Details of the selected entry:")
        details_title.setBuddy(self.details)
        title_row = QHBoxLayout()
        title_row.addWidget(details_title, 1)
        title_row.addWidget(self.copy_button)
        side_column.addLayout(title_row)
        side_column.addWidget(self.details, 1)

        # The details pane sits below, like a mail client's preview: the table keeps the
        # full width, so the one-line summaries stay readable.
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(side)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([380, 220])
        self.body.addWidget(self.splitter, 1)
        self.body.addWidget(self.status)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _text: self._search_timer.start())
        self.search.returnPressed.connect(self._search_now)
        self.entity_filter.currentIndexChanged.connect(lambda _i: self.refresh())
        self.limit.currentIndexChanged.connect(lambda _i: self.refresh())
        self.refresh_button.clicked.connect(self.refresh)
        self.copy_button.clicked.connect(self.copy_details)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        QShortcut(QKeySequence.StandardKey.Find, self, self.search.setFocus)
        QShortcut(QKeySequence.StandardKey.Refresh, self, self.refresh)

    # ------------------------------------------------------------------ loading

    def filters(self) -> tuple[str | None, str | None, int]:
        entity = self.entity_filter.currentData()
        limit = self.limit.currentData()
        return (
            entity if isinstance(entity, str) else None,
            self.search.text().strip() or None,
            limit if isinstance(limit, int) else DEFAULT_LIMIT,
        )

    def _search_now(self) -> None:
        self._search_timer.stop()
        self.refresh()

    def refresh(self) -> None:
        if self.context.database is None:
            return
        self._search_timer.stop()
        self._generation += 1
        generation = self._generation
        entity, text, limit = self.filters()
        self.show_status("Loading…")

        async def load() -> None:
            rows = await self.context.read(audit_rows, entity, text, limit)
            if generation != self._generation:
                return  # the filters changed while this was loading
            selected = self.selected_row()
            self.model.set_rows(rows)
            self.rows_shown = len(rows)
            if selected is not None:
                self._reselect(selected)
            self._on_selection()
            self.show_status(self._count_text(len(rows), limit))

        self.context.spawn(load(), on_error=lambda msg: self.show_status(msg, error=True))

    @staticmethod
    def _count_text(count: int, limit: int) -> str:
        if count >= limit:
            return f"Showing the newest {limit} entries; choose a larger number to see older ones."
        return f"{count} {'entry' if count == 1 else 'entries'}"

    # ------------------------------------------------------------------ details

    def selected_row(self) -> Row | None:
        return selected_row(self.table)

    def _reselect(self, wanted: Row) -> None:
        for source_row, row in enumerate(self.model.rows):
            if (row["at"], row["key"], row["action"]) == (
                wanted["at"],
                wanted["key"],
                wanted["action"],
            ):
                self.table.selectRow(source_row)
                return

    def _on_selection(self, *_args: QItemSelection) -> None:
        row = self.selected_row()
        self.details.setPlainText(details_text(row) if row is not None else "")
        self.copy_button.setEnabled(row is not None)

    def copy_details(self) -> None:
        row = self.selected_row()
        if row is not None:
            QApplication.clipboard().setText(details_text(row))
            self.show_status("Copied the entry's details to the clipboard.")

    @staticmethod
    def _tooltip(row: Row) -> str | None:
        if not row.get("details"):
            return None
        labelled = audit.labelled_details(str(row["entity"]), row["details"])
        text = json.dumps(labelled, indent=2, sort_keys=True, default=str, ensure_ascii=False)
        return text if len(text) <= 1500 else f"{text[:1500]}\n…"
