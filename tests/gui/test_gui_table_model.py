"""The shared table model: keyed updates keep the selection and the scroll position.

A page refreshed every few seconds hands the model a fresh list of rows each time. With a
key the model tells the view only what changed (``dataChanged`` for changed rows, inserts
and removes for the rest), so what the user selected, where the current row is and how
far they scrolled all survive the refresh; a reset would lose all three.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication, QTableView
from pytestqt.qtbot import QtBot

from app.views.table_model import MAX_RUNS, ROW_ROLE, Column, Row, RowTableModel

COLUMNS = (
    Column("name", "Name"),
    Column("sent", "Sent", align_right=True),
    Column("note", "Note"),
)


def rows(count: int, **changes: dict[str, Any]) -> list[Row]:
    made = [{"name": f"user{n:04d}", "sent": n, "note": ""} for n in range(count)]
    for row in made:
        row.update(changes.get(row["name"], {}))
    return made


class Recorder:
    """Every structural signal the model emits, in order."""

    def __init__(self, model: RowTableModel) -> None:
        self.events: list[tuple[Any, ...]] = []
        model.modelReset.connect(lambda: self.events.append(("reset",)))
        model.layoutChanged.connect(lambda *_: self.events.append(("layout",)))
        model.rowsInserted.connect(lambda _p, a, b: self.events.append(("insert", a, b)))
        model.rowsRemoved.connect(lambda _p, a, b: self.events.append(("remove", a, b)))
        model.dataChanged.connect(
            lambda top, bottom, *_: self.events.append(("changed", top.row(), bottom.row()))
        )

    def kinds(self) -> set[str]:
        return {event[0] for event in self.events}


@pytest.fixture(scope="module", autouse=True)
def table_view_loaded(qapp: QApplication) -> None:
    """The first table view of a process loads Qt's style data (over 100 ms): pay that
    before the loop watchdog starts watching, as the console does at start-up."""
    warm = QTableView()
    warm.setModel(RowTableModel(COLUMNS))
    warm.show()
    warm.grab()
    warm.close()
    warm.deleteLater()


@pytest.fixture
def table(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop
) -> Iterator[tuple[QTableView, RowTableModel]]:
    model = RowTableModel(COLUMNS, key=lambda row: row["name"], sort_column=0)
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setSortingEnabled(True)
    view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    view.resize(500, 300)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    yield view, model


def selected_names(view: QTableView) -> list[str]:
    return sorted(index.data(ROW_ROLE)["name"] for index in view.selectionModel().selectedRows())


def select(view: QTableView, *numbers: int) -> None:
    selection = view.selectionModel()
    for number in numbers:
        selection.select(
            view.model().index(number, 0),
            QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
        )


def test_a_refresh_keeps_selection_current_row_and_scroll(
    table: tuple[QTableView, RowTableModel],
) -> None:
    view, model = table
    model.set_rows(rows(500))
    select(view, 300, 302)
    view.selectionModel().setCurrentIndex(
        model.index(302, 1), QItemSelectionModel.SelectionFlag.NoUpdate
    )
    view.scrollTo(model.index(300, 0), QAbstractItemView.ScrollHint.PositionAtTop)
    scrolled = view.verticalScrollBar().value()
    assert scrolled > 0
    recorder = Recorder(model)

    # The next refresh: two counts went up, one user left, two arrived (one of them sorts
    # above the selection), and every row is a new dict, as it is after a reload.
    fresh = [
        row
        for row in rows(500, user0010={"sent": 99}, user0301={"note": "over limit"})
        if row["name"] != "user0005"
    ]
    fresh += [
        {"name": "user0000a", "sent": 1, "note": ""},
        {"name": "user9999", "sent": 2, "note": ""},
    ]
    model.set_rows(fresh)

    assert "reset" not in recorder.kinds() and "layout" not in recorder.kinds()
    assert ("remove", 5, 5) in recorder.events
    assert ("insert", 1, 1) in recorder.events and ("insert", 500, 500) in recorder.events
    changed = sorted(event[1] for event in recorder.events if event[0] == "changed")
    assert changed == [10, 301]  # only the rows whose values changed
    assert selected_names(view) == ["user0300", "user0302"]
    current = view.selectionModel().currentIndex()
    assert (current.data(ROW_ROLE)["name"], current.column()) == ("user0302", 1)
    assert view.verticalScrollBar().value() == scrolled
    assert [row["name"] for row in model.rows] == sorted(row["name"] for row in fresh)
    assert model.rows[301]["note"] == "over limit"
    assert model.index(10, 1).data() == "99"


def test_a_changed_sort_value_moves_the_row_and_its_selection(
    table: tuple[QTableView, RowTableModel],
) -> None:
    view, model = table
    view.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # busiest first
    model.set_rows(rows(20))
    assert model.rows[0]["name"] == "user0019"
    select(view, 15)  # user0004
    recorder = Recorder(model)
    model.set_rows(rows(20, user0004={"sent": 1000}))
    assert "reset" not in recorder.kinds()
    assert model.rows[0]["name"] == "user0004"
    assert selected_names(view) == ["user0004"]


def test_sorting_and_a_small_filter_change_keep_the_selected_rows(
    table: tuple[QTableView, RowTableModel],
) -> None:
    view, model = table
    model.set_rows(rows(100, user0042={"sent": None, "note": "Paused"}))
    select(view, 42)
    view.sortByColumn(1, Qt.SortOrder.AscendingOrder)
    assert model.rows[0]["name"] == "user0042"  # an empty value sorts first, not a TypeError
    assert selected_names(view) == ["user0042"]
    recorder = Recorder(model)
    model.set_filter("", accept=lambda row: row["name"] != "user0007")
    assert recorder.events == [("remove", 8, 8)]  # user0007 sent 7: the eighth row
    assert len(model.rows) == 99 and selected_names(view) == ["user0042"]
    # A filter that hides most rows resets (ListPage then selects the rows again).
    model.set_filter("paus")
    assert [row["name"] for row in model.rows] == ["user0042"]
    model.set_filter("", accept=lambda row: row["sent"] is None or row["sent"] < 3)
    assert [row["name"] for row in model.rows] == ["user0042", "user0000", "user0001", "user0002"]
    assert len(model.all_rows) == 100


def test_a_scattered_change_resets_and_rows_without_a_key_always_do(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop
) -> None:
    keyed = RowTableModel(COLUMNS, key=lambda row: row["name"], sort_column=0)
    keyed.set_rows(rows(1000))
    recorder = Recorder(keyed)
    # Every other row gone: more separate removals than are worth describing one by one.
    keyed.set_rows(rows(1000)[::2])
    assert MAX_RUNS < 500 and recorder.kinds() == {"reset"}
    assert len(keyed.rows) == 500

    plain = RowTableModel(COLUMNS)
    plain.set_rows(rows(3))
    recorder = Recorder(plain)
    plain.set_rows(rows(3, user0001={"sent": 7}))
    assert recorder.kinds() == {"reset"}
    assert plain.rowCount(QModelIndex()) == 3
