"""The one table model of the console: plain row dictionaries, sorted and filtered in place.

Pages read rows from a service function in the executor and hand them to
``RowTableModel.set_rows`` on the GUI thread; the view never triggers a database query.

All rows stay in a Python list and sorting and filtering are list operations, not a
``QSortFilterProxyModel`` calling back into Python for every comparison: that proxy takes
about a second to load and sort 10,000 rows, this model a few milliseconds
(``bench/bench_gui_domains.py`` measures both).

With a ``key`` (a row's identity, e.g. its name), ``set_rows`` is a keyed update: rows
whose values changed emit ``dataChanged``, new ones are inserted and gone ones removed,
so a page refreshed every few seconds keeps its selection, current row and scroll
position. Without a key, or when the change is too scattered to describe cheaply, the
model resets.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QIcon
from PySide6.QtWidgets import QAbstractItemView

Row = dict[str, Any]
Index = QModelIndex | QPersistentModelIndex
RowKey = Callable[[Row], Hashable]
RowFilter = Callable[[Row], bool]

SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # a value that sorts naturally (numbers, dates)
ROW_ROLE = Qt.ItemDataRole.UserRole + 2  # the whole row dict
SEARCH_KEY = "search"  # a row may carry its own casefolded filter text under this key
# More separate insert/remove runs than this in one update, and a reset is cheaper than
# describing them one by one to the view.
MAX_RUNS = 64


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return str(value)


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    text: Callable[[Row], str] | None = None
    sort_value: Callable[[Row], Any] | None = None
    icon: Callable[[Row], QIcon | None] | None = None
    colour: Callable[[Row], str | None] | None = None  # a QColor name for the text
    tooltip: Callable[[Row], str | None] | None = None
    align_right: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def display(self, row: Row) -> str:
        return self.text(row) if self.text else _text(row.get(self.key))

    def sort_key(self, row: Row) -> Any:
        if self.sort_value:
            return self.sort_value(row)
        value = row.get(self.key)
        if value is None:
            return None  # empty: sorts before every value
        if isinstance(value, str) and self.text is None:
            return value.casefold()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        return self.display(row).casefold()


def _runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending numbers as (first, last) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and runs[-1][1] == number - 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


class RowTableModel(QAbstractTableModel):
    """``all_rows`` holds every row in sort order; ``rows`` the ones the filter shows."""

    def __init__(
        self,
        columns: Sequence[Column],
        parent: Any = None,
        *,
        key: RowKey | None = None,
        sort_column: int = -1,
        sort_order: Qt.SortOrder = Qt.SortOrder.AscendingOrder,
    ) -> None:
        super().__init__(parent)
        self.columns = list(columns)
        self.key = key
        self.all_rows: list[Row] = []
        self.rows: list[Row] = []
        self.sort_column = sort_column  # -1: the order the rows came in
        self.sort_order = sort_order
        self.filter_text = ""
        self.accept: RowFilter | None = None
        self._search: dict[int, str] = {}  # id(row) -> its filter text, built on demand

    # ------------------------------------------------------------------ rows in

    def set_rows(self, rows: Sequence[Row]) -> None:
        self.all_rows = self._sorted(list(rows))
        self._search = {}
        self._show(self._visible())

    def set_filter(self, text: str, accept: RowFilter | None = None) -> None:
        """Show the rows whose text contains ``text`` (any case) and that ``accept`` takes."""
        self.filter_text = text.strip().casefold()
        self.accept = accept
        self._show(self._visible())

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.columns):
            return
        self.sort_column, self.sort_order = column, order
        self.all_rows = self._sorted(self.all_rows)
        self._reorder(self._visible())

    # ------------------------------------------------------------------ lookups

    def row_at(self, row: int) -> Row:
        return self.rows[row]

    def row_number(self, key: Hashable) -> int | None:
        """Where the row with this key is shown, if it is."""
        if self.key is None:
            return None
        return next((n for n, row in enumerate(self.rows) if self.key(row) == key), None)

    # ------------------------------------------------------------------ sorting, filtering

    def _sorted(self, rows: list[Row]) -> list[Row]:
        if not 0 <= self.sort_column < len(self.columns):
            return rows
        sort_key = self.columns[self.sort_column].sort_key
        # Each row's key once; empty values first. Python's sort is stable, also reversed:
        # rows equal in this column keep their previous order.
        keys = [(value is not None, value) for value in map(sort_key, rows)]
        reverse = self.sort_order == Qt.SortOrder.DescendingOrder
        try:
            order = sorted(range(len(rows)), key=keys.__getitem__, reverse=reverse)
        except TypeError:  # values of mixed types: compare their texts
            texts = [(present, str(value)) for present, value in keys]
            order = sorted(range(len(rows)), key=texts.__getitem__, reverse=reverse)
        return [rows[number] for number in order]

    def search_text(self, row: Row) -> str:
        """What the filter box matches in ``row``: every column's text, casefolded."""
        return "\t".join(column.display(row) for column in self.columns).casefold()

    def prepare(self, rows: Sequence[Row]) -> None:
        """Give each row its filter text ahead of time; pages run this in the executor, so
        that neither a load nor a keystroke formats 10,000 rows on the GUI thread."""
        for row in rows:
            if not isinstance(row.get(SEARCH_KEY), str):
                row[SEARCH_KEY] = self.search_text(row)

    def _search_text(self, row: Row) -> str:
        text = self._search.get(id(row))
        if text is None:
            given = row.get(SEARCH_KEY)
            text = given if isinstance(given, str) else self.search_text(row)
            self._search[id(row)] = text
        return text

    def _visible(self) -> list[Row]:
        text, accept = self.filter_text, self.accept
        if not text and accept is None:
            return list(self.all_rows)
        return [
            row
            for row in self.all_rows
            if (accept is None or accept(row)) and (not text or text in self._search_text(row))
        ]

    # ------------------------------------------------------------------ telling the view

    @property
    def _identity(self) -> Callable[[Row], Hashable]:
        return self.key if self.key is not None else id

    def _show(self, new: list[Row]) -> None:
        """Make ``new`` the shown rows, telling the view as little as describes the change."""
        if self.key is None or not self.rows or not new or not self._update_keyed(new):
            self.beginResetModel()
            self.rows = new
            self.endResetModel()

    def _update_keyed(self, new: list[Row]) -> bool:
        """Removes, moves, inserts and changes by key; False if a reset is the better way."""
        key = self._identity
        new_keys = list(map(key, new))
        old_keys = list(map(key, self.rows))
        new_set, old_set = set(new_keys), set(old_keys)
        if len(new_set) != len(new_keys) or len(old_set) != len(old_keys):
            return False  # keys that are not unique identify nothing
        gone_numbers = [n for n, k in enumerate(old_keys) if k not in new_set]
        added_numbers = [n for n, k in enumerate(new_keys) if k not in old_set]
        # Most rows coming or going (a filter typed or cleared): one reset is cheaper
        # for the view than thousands of rows inserted or removed.
        if 2 * (len(gone_numbers) + len(added_numbers)) > max(len(new), len(self.rows)):
            return False
        gone, added = _runs(gone_numbers), _runs(added_numbers)
        if len(gone) + len(added) > MAX_RUNS:
            return False
        for first, last in reversed(gone):
            self.beginRemoveRows(QModelIndex(), first, last)
            del self.rows[first : last + 1]
            del old_keys[first : last + 1]
            self.endRemoveRows()
        kept_keys = [k for k in new_keys if k in old_set]
        if old_keys != kept_keys:
            # A sort value changed: the kept rows move (still holding their old values,
            # so that the comparison below finds what changed).
            old_by_key = dict(zip(old_keys, self.rows, strict=True))
            self._reorder([old_by_key[k] for k in kept_keys])
        for first, last in added:
            self.beginInsertRows(QModelIndex(), first, last)
            self.rows[first:first] = new[first : last + 1]
            self.endInsertRows()
        changed = [n for n, (old, row) in enumerate(zip(self.rows, new, strict=True)) if old != row]
        self.rows = new
        last_column = len(self.columns) - 1
        for first, last in _runs(changed):
            self.dataChanged.emit(self.index(first, 0), self.index(last, last_column))
        return True

    def _reorder(self, rows: list[Row]) -> None:
        """Show the same rows (or fewer) in a new order; selection and current row follow."""
        if len(rows) != len(self.rows):
            self._show(rows)
            return
        self.layoutAboutToBeChanged.emit()
        key = self._identity
        before = self.persistentIndexList()
        held = [key(self.rows[index.row()]) for index in before]
        self.rows = rows
        position = {key(row): number for number, row in enumerate(rows)}
        after = [
            self.index(position[k], index.column()) if k in position else QModelIndex()
            for k, index in zip(held, before, strict=True)
        ]
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    # ------------------------------------------------------------------ Qt's interface

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section].title
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.display(row)
        if role == SORT_ROLE:
            return column.sort_key(row)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DecorationRole and column.icon:
            return column.icon(row)
        if role == Qt.ItemDataRole.ForegroundRole and column.colour:
            colour = column.colour(row)
            return QBrush(QColor(colour)) if colour else None
        if role == Qt.ItemDataRole.ToolTipRole and column.tooltip:
            return column.tooltip(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.align_right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def selected_row(table: QAbstractItemView) -> Row | None:
    """The row dict of a table's first selected row, or None."""
    indexes = table.selectionModel().selectedRows()
    if not indexes:
        return None
    row = indexes[0].data(ROW_ROLE)
    return row if isinstance(row, dict) else None
