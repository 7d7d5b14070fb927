"""Keyboard focus that follows what the eye reads, and that can be seen.

Qt's Tab order is the order widgets were *created* in, not where they sit: an editor that
builds its Save / Cancel buttons before its forms opens with the focus on Save and its
first keystrokes lost. ``apply_reading_order`` re-threads the Tab chain through the
layouts (top to bottom, label before field, left to right), and ``focus_first_field``
puts the cursor where typing should start. ``FocusMarker`` draws a frame around an item
view while it has the focus, which Fusion leaves almost invisible.
"""

from __future__ import annotations

from itertools import pairwise
from typing import cast

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QBoxLayout,
    QComboBox,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QLayout,
    QLayoutItem,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTabBar,
    QTabWidget,
    QTextEdit,
    QWidget,
)

# Widgets whose children are their own business (a combo's popup, a view's viewport).
_LEAVES = (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QTabBar,
)
_FORM_ROLES = (
    QFormLayout.ItemRole.LabelRole,
    QFormLayout.ItemRole.FieldRole,
    QFormLayout.ItemRole.SpanningRole,
)
_DIRECT = Qt.FindChildOption.FindDirectChildrenOnly
_BACKWARDS = (QBoxLayout.Direction.RightToLeft, QBoxLayout.Direction.BottomToTop)


def takes_tab(widget: QWidget) -> bool:
    return bool(widget.focusPolicy().value & Qt.FocusPolicy.TabFocus.value)


def _wraps_a_page(widget: QWidget) -> bool:
    """A scroll area holding a form: Tab should reach the fields, not the area itself."""
    return isinstance(widget, QScrollArea) and widget.widget() is not None


def reading_order(root: QWidget) -> list[QWidget]:
    """Every widget under ``root`` in the order a reader meets it on screen."""
    found: list[QWidget] = []
    seen: set[QWidget] = set()

    def visit(widget: QWidget | None) -> None:
        if widget is None or widget in seen or (widget is not root and widget.isWindow()):
            return
        seen.add(widget)
        if not _wraps_a_page(widget):
            found.append(widget)
        if isinstance(widget, QTabWidget):
            visit(widget.tabBar())
            for index in range(widget.count()):
                visit(widget.widget(index))
            return
        if isinstance(widget, QStackedWidget | QSplitter):
            for index in range(widget.count()):
                visit(widget.widget(index))
            return
        if _wraps_a_page(widget):
            assert isinstance(widget, QScrollArea)
            visit(widget.widget())
            return
        if isinstance(widget, _LEAVES):
            return
        layout = widget.layout()
        if layout is not None:
            walk(layout)
        # Children placed by hand, outside any layout, come after the laid-out ones.
        for child in widget.findChildren(QWidget, options=_DIRECT):
            visit(child)

    def walk(layout: QLayout) -> None:
        for item in _items_in_reading_order(layout):
            child_widget = item.widget()
            child_layout = item.layout()
            if child_widget is not None:
                visit(child_widget)
            elif child_layout is not None:
                walk(child_layout)

    visit(root)
    return found


def _items_in_reading_order(layout: QLayout) -> list[QLayoutItem]:
    if isinstance(layout, QFormLayout):
        # Rows inserted above others (an intro line) come first on screen, not last.
        items = []
        for row in range(layout.rowCount()):
            for role in _FORM_ROLES:
                item = layout.itemAt(row, role)
                if item is not None:
                    items.append(item)
        return items
    count = layout.count()
    indexed = [(index, layout.itemAt(index)) for index in range(count)]
    items = [item for _, item in indexed if item is not None]
    if isinstance(layout, QGridLayout):

        def place(entry: tuple[int, QLayoutItem | None]) -> tuple[int, int]:
            row, column, *_spans = cast(tuple[int, ...], layout.getItemPosition(entry[0]))
            return row, column

        return [item for _, item in sorted(indexed, key=place) if item is not None]
    if isinstance(layout, QBoxLayout) and layout.direction() in _BACKWARDS:
        items.reverse()
    return items


def apply_reading_order(root: QWidget) -> list[QWidget]:
    """Make Tab walk ``root``'s widgets in reading order; returns that order."""
    for area in root.findChildren(QScrollArea):
        if _wraps_a_page(area):
            area.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a stop that types nowhere
    for box in root.findChildren(QDialogButtonBox):
        # A button box makes its first button its focus proxy, and Qt then treats the
        # box's own (creation-order) place in the chain as a way into that button: Tab
        # from the last button would jump back to the first. Its buttons are threaded
        # one by one below instead.
        box.setFocusProxy(None)  # type: ignore[arg-type]  # None clears it
    for tabs in root.findChildren(QTabWidget):
        if tabs.tabBar().isHidden():
            # Tabs used as a plain page: the hidden bar can't take the focus, so Tab
            # reaching the tab widget (its proxy) would stay where it was.
            tabs.setFocusProxy(None)  # type: ignore[arg-type]  # None clears it
            tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    # A widget with a focus proxy (a tab widget's tab bar) is reached through the proxy.
    chain = [w for w in reading_order(root) if takes_tab(w) and w.focusProxy() is None]
    for before, after in pairwise(chain):
        QWidget.setTabOrder(before, after)
    return chain


def is_text_field(widget: QWidget) -> bool:
    if isinstance(widget, QLineEdit | QPlainTextEdit | QTextEdit):
        return not widget.isReadOnly()
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    return isinstance(widget, QAbstractSpinBox) and not widget.isReadOnly()


def is_empty(widget: QWidget) -> bool:
    if isinstance(widget, QLineEdit | QComboBox):
        return not (widget.text() if isinstance(widget, QLineEdit) else widget.currentText())
    if isinstance(widget, QPlainTextEdit | QTextEdit):
        return not widget.toPlainText()
    if isinstance(widget, QAbstractSpinBox):
        return not widget.text()
    return False


def _reachable(widget: QWidget, root: QWidget) -> bool:
    # isVisibleTo is false for the fields of a tab that is not the current one.
    return widget.isEnabled() and widget.isVisibleTo(root) and takes_tab(widget)


def focus_first_field(root: QWidget, *, prefer_empty: bool = True) -> QWidget | None:
    """Put the cursor in ``root``'s first empty text field (or its first text field).

    Works before ``root`` is shown too: the field becomes the window's focus widget, so
    the dialog opens with it instead of its default button.
    """
    fields = [w for w in reading_order(root) if is_text_field(w) and _reachable(w, root)]
    chosen = next((w for w in fields if is_empty(w)), None) if prefer_empty else None
    chosen = chosen or (fields[0] if fields else None)
    if chosen is None:
        return None
    chosen.setFocus(Qt.FocusReason.TabFocusReason)
    if isinstance(chosen, QLineEdit) and chosen.text():
        chosen.selectAll()  # typing replaces what is there, as after Tab
    return chosen


class FocusMarker(QWidget):
    """A frame in the highlight colour drawn over an item view while it has the focus.

    The view keeps its own look; the marker is a mouse-transparent child on top of it.
    Reaching the view also makes its first row current (not selected), so the arrow keys
    start from the top and the cell's focus rectangle shows where.
    """

    WIDTH = 2

    def __init__(self, view: QAbstractItemView) -> None:
        super().__init__(view)
        self.setObjectName("focusMarker")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.view = view
        # Tab leaves the view for the next control; the arrow keys move inside it. (A
        # table's default walks every cell first, so Tab would seem stuck in a long list.)
        view.setTabKeyNavigation(False)
        view.installEventFilter(self)
        self.setGeometry(view.rect())
        self.setVisible(view.hasFocus())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if watched is self.view:
            if kind == QEvent.Type.FocusIn:
                self._make_current()
                self.setGeometry(self.view.rect())
                self.show()
                self.raise_()
            elif kind == QEvent.Type.FocusOut:
                self.hide()
            elif kind == QEvent.Type.Resize:
                self.setGeometry(self.view.rect())
        return False

    def _make_current(self) -> None:
        model = self.view.model()
        selection = self.view.selectionModel()
        if model is None or selection is None or selection.currentIndex().isValid():
            return
        if model.rowCount() > 0:
            selection.setCurrentIndex(model.index(0, 0), selection.SelectionFlag.NoUpdate)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        pen = QPen(self.palette().color(QPalette.ColorRole.Highlight))
        pen.setWidth(self.WIDTH)
        pen.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
        painter.setPen(pen)
        inset = self.WIDTH / 2
        painter.drawRect(self.rect().toRectF().adjusted(inset, inset, -inset, -inset))
        painter.end()


def mark_focus(view: QAbstractItemView) -> FocusMarker:
    """Give ``view`` a visible focus frame (once; later calls return the same marker)."""
    existing = view.findChild(FocusMarker, options=_DIRECT)
    return existing if isinstance(existing, FocusMarker) else FocusMarker(view)


def mark_focus_in(root: QWidget) -> None:
    """Give every item view under ``root`` a visible focus frame."""
    window = root.window()
    for view in root.findChildren(QAbstractItemView):
        # A combo box's list lives in a popup window of its own: no frame there.
        if takes_tab(view) and view.window() is window:
            mark_focus(view)
