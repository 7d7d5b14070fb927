"""A toolbar layout that wraps onto more lines instead of widening the window.

A console must fit a 1,280 px laptop screen with a side panel open; a row of buttons and
filters laid out by a ``QHBoxLayout`` forces its whole width on the window. ``FlowLayout``
places its items left to right and starts a new line when the next one does not fit.
Within a line, the room left over goes to the items that can grow (a filter box, a
stretch), so on a wide window it looks exactly like the horizontal toolbar it replaces.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QSpacerItem, QWidget, QWidgetItem

GAP = 6  # between items and between lines


class FlowLayout(QLayout):
    """Left-to-right items that wrap; the subset of ``QHBoxLayout``'s API the pages use."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setContentsMargins(0, 0, 0, 0)

    # ------------------------------------------------------------------ building

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)
        self.invalidate()

    def insertWidget(self, index: int, widget: QWidget) -> None:
        self.addChildWidget(widget)
        position = len(self._items) if index < 0 else min(index, len(self._items))
        self._items.insert(position, QWidgetItem(widget))
        self.invalidate()

    def addStretch(self, _stretch: int = 1) -> None:
        expanding = QSizePolicy.Policy.Expanding
        self.addItem(QSpacerItem(0, 0, expanding, QSizePolicy.Policy.Minimum))

    def addSpacing(self, size: int) -> None:
        self.addItem(QSpacerItem(size, 0, QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Minimum))

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # type: ignore[override]
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # type: ignore[override]
        if not 0 <= index < len(self._items):
            return None
        item = self._items.pop(index)
        self.invalidate()
        return item

    def widgets(self) -> list[QWidget]:
        """The toolbar's widgets in order (tests check that none overlaps another)."""
        return [w for item in self._items if (w := item.widget()) is not None]

    # ------------------------------------------------------------------ sizes

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation.Horizontal

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def sizeHint(self) -> QSize:
        shown = self._shown()
        width = sum(item.sizeHint().width() for item in shown) + GAP * max(len(shown) - 1, 0)
        height = max((item.sizeHint().height() for item in shown), default=0)
        return QSize(width, height)

    def minimumSize(self) -> QSize:
        # The widest single item: every other one can go to a line of its own.
        shown = self._shown()
        width = max((item.minimumSize().width() for item in shown), default=0)
        height = max((item.sizeHint().height() for item in shown), default=0)
        return QSize(width, height)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    # ------------------------------------------------------------------ placing

    def _shown(self) -> list[QLayoutItem]:
        return [item for item in self._items if not item.isEmpty() or _is_spacer(item)]

    def _lines(self, width: int) -> list[list[QLayoutItem]]:
        lines: list[list[QLayoutItem]] = [[]]
        used = 0
        for item in self._shown():
            wanted = item.sizeHint().width()
            line = lines[-1]
            if line and used + GAP + wanted > width:
                lines.append([])
                line, used = lines[-1], 0
            if not line and _is_spacer(item):
                continue  # a line never starts with a gap
            used += (GAP if line else 0) + wanted
            line.append(item)
        return [line for line in lines if line]

    def _arrange(self, rect: QRect, *, move: bool) -> int:
        y = rect.y()
        for number, line in enumerate(self._lines(rect.width())):
            if number:
                y += GAP
            height = max(item.sizeHint().height() for item in line)
            # Each item at its preferred width, never below its minimum nor past the line.
            widths = [
                min(max(item.sizeHint().width(), item.minimumSize().width()), rect.width())
                for item in line
            ]
            spare = rect.width() - sum(widths) - GAP * (len(line) - 1)
            # A box that can grow (a filter field) takes twice the share of a stretch, as
            # the QHBoxLayout stretch factors 2 : 1 did before.
            weights = [(1 if _is_spacer(item) else 2) if _grows(item) else 0 for item in line]
            total = sum(weights)
            if spare > 0 and total:
                given = 0
                growing = [i for i, weight in enumerate(weights) if weight]
                for i in growing:
                    share = spare * weights[i] // total
                    widths[i] += share
                    given += share
                widths[growing[-1]] += spare - given  # the rounding remainder
            if move:
                x = rect.x()
                for item, item_width in zip(line, widths, strict=True):
                    item_height = min(item.sizeHint().height(), height)
                    top = y + (height - item_height) // 2
                    item.setGeometry(QRect(QPoint(x, top), QSize(item_width, item_height)))
                    x += item_width + GAP
            y += height
        return y - rect.y()


def _is_spacer(item: QLayoutItem) -> bool:
    return item.spacerItem() is not None


def _grows(item: QLayoutItem) -> bool:
    return bool(item.expandingDirections() & Qt.Orientation.Horizontal)
