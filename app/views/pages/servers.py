"""The Delivery Servers page: the relays, where each is allocated, and how its last test went.

One executor read (``servers.server_rows``, the rows of ``servers list`` too) gathers
everything the table shows: the servers, the allocation badges of every user group, and
the failed stage and hint of each last test.
The Allocation column paints the reference's badges (M blue, T green, AR purple) as pills;
its text ("UserGroup1: M T", "Not Allocated") stays the cell's display and tooltip text,
so screen readers, copy and the filter box see the same thing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics, QKeySequence, QPainter, QPalette, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.services import routing, servers
from app.views.context import AppContext
from app.views.pages.base import ListPage
from app.views.server_dialog import ServerDialog
from app.views.smtp_test_panel import stage_title, status_icon
from app.views.table_model import ROW_ROLE, Column, Row

Index = QModelIndex | QPersistentModelIndex

ENCRYPTION_NAMES = {"none": "None", "ssl": "SSL", "tls": "STARTTLS"}
# Badge fills: saturated enough for white text on them, in light and dark palettes alike.
BADGE_FILLS = {"blue": "#1565c0", "green": "#2e7d32", "purple": "#6a1b9a"}
CHANNEL_NAMES = {"M": "Marketing", "T": "Transactional", "AR": "Autoresponder"}


# ---------------------------------------------------------------------- columns


def host_text(row: Row) -> str:
    encryption = ENCRYPTION_NAMES.get(str(row["encryption"]), str(row["encryption"]))
    return f"{row['host']}:{row['port']} ({encryption})"


def _tested_at(row: Row) -> str:
    stamp = row.get("last_test_at")
    if not stamp:
        return ""
    moment = datetime.fromisoformat(stamp).astimezone()  # stored in UTC, shown local
    return moment.strftime("%Y-%m-%d %H:%M")


def last_test_text(row: Row) -> str:
    status = row["last_test_status"]
    if status == "untested":
        return "Not tested"
    return f"{'OK' if status == 'ok' else 'Failed'} · {_tested_at(row)}"


def last_test_tooltip(row: Row) -> str:
    status = row["last_test_status"]
    if status == "untested":
        return "The server has not been tested yet: open it and run the test on its Test tab."
    if status == "ok":
        return f"The SMTP connection was successful ({_tested_at(row)})."
    stage = stage_title(str(row.get("failed_stage") or "unknown stage"))
    hint = row.get("hint") or "Check the hostname, port, credentials and firewall settings."
    return f"The connection failed at {stage} ({_tested_at(row)}).\n{hint}"


def _test_sort(row: Row) -> tuple[int, str]:
    order = {"failed": 0, "untested": 1, "ok": 2}
    return order.get(row["last_test_status"], 1), row.get("last_test_at") or ""


def _allocation_sort(row: Row) -> tuple[int, str]:
    # Allocated servers together, busiest first; "Not Allocated" ones after them.
    return -len(row["allocation"]), str(row["allocation_text"]).casefold()


def _allocation_tooltip(row: Row) -> str:
    if not row["allocation"]:
        return "Not Allocated: no user group uses this server, so it sends nothing."
    return "\n".join(
        f"{badge['group']}: {CHANNEL_NAMES.get(badge['badge'], badge['badge'])}"
        for badge in row["allocation"]
    )


COLUMNS = (
    Column("name", "Name"),
    Column("host", "SMTP Host", text=host_text),
    Column("mail_from_domain", "Mail From Domain"),
    Column(
        "allocation_text", "Allocation", sort_value=_allocation_sort, tooltip=_allocation_tooltip
    ),
    Column(
        "last_test_status",
        "Last test",
        text=last_test_text,
        sort_value=_test_sort,
        icon=lambda row: status_icon(str(row["last_test_status"])),
        tooltip=last_test_tooltip,
    ),
)
ALLOCATION_COLUMN = 3


# ---------------------------------------------------------------------- badges


class AllocationDelegate(QStyledItemDelegate):
    """Paints "Group: [M] [T]" with coloured rounded pills; "Not Allocated" in muted text."""

    PILL_PADDING = 6  # horizontal, inside a pill
    PILL_GAP = 4
    GROUP_GAP = 12
    MARGIN = 6

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont]:
        text_font = QFont(option.font)
        pill_font = QFont(option.font)
        pill_font.setBold(True)
        pill_font.setPointSizeF(max(option.font.pointSizeF() * 0.85, 6.0))
        return text_font, pill_font

    @staticmethod
    def _groups(index: Index) -> list[tuple[str, list[tuple[str, str]]]]:
        row = index.data(ROW_ROLE)
        badges = row.get("allocation", []) if isinstance(row, dict) else []
        grouped: dict[str, list[tuple[str, str]]] = {}
        for badge in badges:
            grouped.setdefault(badge["group"], []).append((badge["badge"], badge["colour"]))
        return list(grouped.items())

    def _layout(
        self, option: QStyleOptionViewItem, index: Index
    ) -> list[tuple[str, str | None, QRectF]]:
        """(text, fill or None for plain text, rectangle) for every piece, left to right."""
        text_font, pill_font = self._fonts(option)
        text_metrics, pill_metrics = QFontMetrics(text_font), QFontMetrics(pill_font)
        rect = option.rect
        pill_height = pill_metrics.height() + 4
        x = float(rect.left() + self.MARGIN)
        pieces: list[tuple[str, str | None, QRectF]] = []
        groups = self._groups(index)
        if not groups:
            text = routing.NOT_ALLOCATED
            width = text_metrics.horizontalAdvance(text)
            pieces.append((text, None, QRectF(x, rect.top(), width, rect.height())))
            return pieces
        for number, (group, codes) in enumerate(groups):
            if number:
                x += self.GROUP_GAP
            label = f"{group}:"
            width = text_metrics.horizontalAdvance(label)
            pieces.append((label, None, QRectF(x, rect.top(), width, rect.height())))
            x += width + self.PILL_GAP
            for code, colour in codes:
                width = max(
                    pill_metrics.horizontalAdvance(code) + 2 * self.PILL_PADDING, pill_height
                )
                top = rect.top() + (rect.height() - pill_height) / 2
                pieces.append((code, colour, QRectF(x, top, width, pill_height)))
                x += width + self.PILL_GAP
        return pieces

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        item.text = ""  # the background, focus and selection only: the pills come next
        widget = option.widget
        style = widget.style() if isinstance(widget, QWidget) else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, item, painter, widget)

        text_font, pill_font = self._fonts(option)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        text_colour = palette.color(
            QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        )
        painter.save()
        painter.setClipRect(option.rect)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for text, fill, rect in self._layout(option, index):
            if fill is None:
                muted = text == routing.NOT_ALLOCATED and not selected
                painter.setFont(text_font)
                painter.setPen(
                    palette.color(QPalette.ColorRole.PlaceholderText) if muted else text_colour
                )
                painter.drawText(rect, int(Qt.AlignmentFlag.AlignVCenter), text)
                continue
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(BADGE_FILLS.get(fill, fill)))
            radius = rect.height() / 2
            painter.drawRoundedRect(rect, radius, radius)
            painter.setFont(pill_font)
            painter.setPen(QColor("white"))
            painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), text)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        base = super().sizeHint(option, index)
        measure = QStyleOptionViewItem(option)
        measure.rect = QRect(0, 0, 10_000, base.height())
        pieces = self._layout(measure, index)
        right = max((rect.right() for _, _, rect in pieces), default=0.0)
        _text_font, pill_font = self._fonts(option)
        height = max(base.height(), QFontMetrics(pill_font).height() + 10)
        return QSize(int(right) + self.MARGIN + 2, height)


# ---------------------------------------------------------------------- page


class ServersPage(ListPage):
    title = "Delivery Servers"
    summary = (
        "SMTP relays that messages are handed to, with their tracking and bounce domains. "
        "Badges show which user groups send through each one: M marketing, T transactional, "
        "AR autoresponder."
    )
    entities = ("delivery_server", "user_group")  # allocation badges come from the groups
    columns = COLUMNS
    new_label = "Create a New Delivery Server…"

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.table.setAccessibleName("Delivery servers")
        self.badges = AllocationDelegate(self.table)
        self.table.setItemDelegateForColumn(ALLOCATION_COLUMN, self.badges)
        self.table.setIconSize(QSize(16, 16))
        self.dialog: ServerDialog | None = None
        self._opening = False
        self._select_name: str | None = None
        self.loaded.connect(self._restore_selection)
        QShortcut(QKeySequence.StandardKey.New, self, self.new_item)
        edit = QShortcut(QKeySequence(Qt.Key.Key_Return), self.table, self._edit_selected)
        edit.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete = QShortcut(QKeySequence.StandardKey.Delete, self.table, self._delete_selected)
        delete.setContext(Qt.ShortcutContext.WidgetShortcut)

    async def fetch(self) -> list[Row]:
        return await self.context.read(servers.server_rows)

    def refresh(self) -> None:
        if self._select_name is None:
            current = self.selected_row()
            self._select_name = current["name"] if current else None
        super().refresh()

    def _restore_selection(self) -> None:
        if self._select_name is not None:
            self.select_where("name", self._select_name)
            self._select_name = None
        # ListPage sizes the columns to their contents right after this reset, and a reload
        # while a row is selected can leave the last column at its content width (a gap on
        # the right); once that has run, stretch it across again.
        QTimer.singleShot(0, self, self._stretch_last_column)

    def _stretch_last_column(self) -> None:
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setStretchLastSection(True)

    # ------------------------------------------------------------------ actions

    def _open(self, row: Row | None) -> None:
        if self._opening:
            return  # a double click while the dialog is being built
        if self.dialog is not None and not self.dialog.isVisible():
            self.dialog.deleteLater()  # one closed dialog at a time, not one per edit
        dialog = ServerDialog(self.context, row, self, build_now=False)
        dialog.saved.connect(lambda: self._saved(dialog))
        self.dialog = dialog
        self._opening = True
        self.context.spawn(self._show(dialog), on_error=lambda m: self.show_status(m, error=True))

    async def _show(self, dialog: ServerDialog) -> None:
        try:
            # One tab per loop turn, so that opening never holds the event loop for long.
            for step in dialog.build_steps():
                step()
                await asyncio.sleep(0)
        finally:
            self._opening = False
        dialog.open()  # modal to the window, without a nested event loop

    def _saved(self, dialog: ServerDialog) -> None:
        self._select_name = dialog.saved_name  # selected again once the list has reloaded

    def new_item(self) -> None:
        self._open(None)

    def edit_item(self, row: Row) -> None:
        self._open(row)

    async def delete_item(self, row: Row) -> None:
        await self.context.write(servers.delete_server, row["name"])
        self.context.changed.emit("delivery_server")

    def describe(self, row: Row) -> str:
        return f"delivery server {row['name']!r}"
