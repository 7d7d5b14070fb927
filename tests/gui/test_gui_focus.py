"""Keyboard focus in the console: where each editor opens its cursor, the order Tab walks,
the focus frame of tables, the section shortcuts, and what the Database dialog and an
export say. Driven with real key presses on the offscreen platform, on a real SQLite file.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QDialogButtonBox,
    QLineEdit,
    QMessageBox,
    QTabBar,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.models.database import SCHEMA_HEAD, Database
from app.services import dns_templates, groups, servers, users
from app.services.profiles import NEW_FILE_NOTE
from app.views.context import AppContext
from app.views.database_dialog import DatabaseDialog
from app.views.focus import FocusMarker, reading_order, takes_tab
from app.views.forms import EditorDialog
from app.views.main_window import MainWindow
from tests.conftest import WAIT_MS, open_database

pytestmark = pytest.mark.qt_log_ignore(
    "This plugin does not support propagateSizeHints", "This plugin does not support raise"
)
# Where the rendered PNGs are also copied, for a person to look at (unset: tmp_path only).
SCREENSHOT_DIR = os.environ.get("POSTROOM_SCREENSHOT_DIR")


# ---------------------------------------------------------------- helpers


def seed(url: str) -> None:
    """One of everything, so every editor can also be opened on a saved row."""
    database = Database(url)
    with database.transaction() as session:
        servers.create_server(session, {"name": "Relay", "host": "smtp.example.net"})
        groups.create_group(session, {"name": "Staff", "marketing_server": "Relay"})
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Staff"}
        )
        dns_templates.create_template(
            session,
            name="Focus",
            kind="campaign",
            records=[("_SenderDomain_", "TXT", "v=spf1 -all"), ("mail", "CNAME", "x.example.")],
        )
    database.dispose()


@pytest.fixture
def console(qtbot: QtBot, window: MainWindow, sqlite_url: str) -> MainWindow:
    seed(sqlite_url)
    assert open_database(qtbot, window, sqlite_url) is not None
    idle(qtbot, window.context)
    return window


def idle(qtbot: QtBot, context: AppContext) -> None:
    qtbot.waitUntil(lambda: not context.has_pending_work(), timeout=WAIT_MS)


def focused() -> QWidget | None:
    return QApplication.focusWidget()


def press_tab(qtbot: QtBot, times: int = 1) -> None:
    for _ in range(times):
        widget = focused()
        assert widget is not None
        qtbot.keyClick(widget, Qt.Key.Key_Tab)


def tab_walk(qtbot: QtBot, limit: int = 60) -> list[QWidget]:
    """Focus stops from the current one, pressing Tab until it comes back round."""
    start = focused()
    assert start is not None
    stops = [start]
    for _ in range(limit):
        press_tab(qtbot)
        widget = focused()
        assert widget is not None
        if widget is start:
            return stops
        stops.append(widget)
    raise AssertionError(f"Tab never came back: {[name_of(stop) for stop in stops]}")


def name_of(widget: QWidget) -> str:
    if isinstance(widget, QAbstractButton) and not widget.objectName():
        return widget.text().replace("&", "")
    return widget.objectName() or type(widget).__name__


def place(widget: QWidget, dialog: QWidget) -> tuple[int, int]:
    point = widget.mapTo(dialog, QPoint(0, 0))
    return point.y(), point.x()


def assert_reads_down(stops: list[QWidget], dialog: QWidget) -> None:
    """Each stop is below the one before, or beside it on the same line to its right."""
    for before, after in itertools.pairwise(stops):
        (y0, x0), (y1, x1) = place(before, dialog), place(after, dialog)
        same_line = abs(y1 - y0) < min(before.height(), after.height()) // 2 + 1
        assert (x1 > x0) if same_line else (y1 > y0), (
            f"Tab went from {name_of(before)} at {(x0, y0)} back to {name_of(after)} at {(x1, y1)}"
        )


# What ``seed`` made on each page, to open its editor on.
SEEDED = {
    "Delivery Servers": ("name", "Relay"),
    "User Groups": ("name", "Staff"),
    "Users": ("username", "alice"),
    "DNS Templates": ("name", "Focus"),
}


def open_page_dialog(qtbot: QtBot, window: MainWindow, title: str, edit: bool) -> EditorDialog:
    window.select_section(title)
    page: Any = window.page(title)
    idle(qtbot, window.context)
    if edit:
        qtbot.waitUntil(lambda: page.model.rowCount() > 0, timeout=WAIT_MS)
        key, value = SEEDED[title]
        assert page.select_where(key, value)
        qtbot.mouseClick(page.edit_button, Qt.MouseButton.LeftButton)
    else:
        qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)

    def dialog() -> Any:
        return getattr(page, "new_dialog", None) if title == "Sender Domains" else page.dialog

    qtbot.waitUntil(lambda: dialog() is not None and dialog().isVisible(), timeout=WAIT_MS)
    idle(qtbot, window.context)  # an editor that loads after opening has loaded
    return dialog()  # type: ignore[no-any-return]


def close(qtbot: QtBot, dialog: EditorDialog) -> None:
    dialog.confirm_discard = lambda: True
    dialog.reject()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)


def save_png(widget: QWidget, path: Path) -> QImage:
    assert widget.grab().save(str(path))
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        assert widget.grab().save(str(Path(SCREENSHOT_DIR) / path.name))
    return QImage(str(path))


# ---------------------------------------------------------------- focus on open

# (section, edit?) -> the field the cursor must be in when the editor opens: the first
# empty one when creating, the first one when editing.
OPENING_FIELDS = [
    ("Delivery Servers", False, "field_name"),
    ("Delivery Servers", True, "field_name"),
    ("User Groups", False, "field_name"),
    ("User Groups", True, "field_name"),
    ("Users", False, "field_username"),
    ("Users", True, "field_username"),
    ("DNS Templates", False, "field_name"),
    ("DNS Templates", True, "field_name"),
    ("Sender Domains", False, "field_domain"),  # the user is chosen already
]


@pytest.mark.parametrize(
    ("section", "edit", "expected"),
    OPENING_FIELDS,
    ids=[f"{s}-{'edit' if e else 'new'}" for s, e, _ in OPENING_FIELDS],
)
def test_every_editor_opens_with_the_cursor_in_its_first_field(
    qtbot: QtBot, console: MainWindow, section: str, edit: bool, expected: str
) -> None:
    dialog = open_page_dialog(qtbot, console, section, edit)
    field = focused()
    assert field is not None and field.window() is dialog
    assert field.objectName() == expected
    save = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    assert not save.hasFocus()
    assert isinstance(field, QLineEdit)
    # The first keystrokes land in the field: typing replaces a filled-in name.
    qtbot.keyClicks(field, "Typed")
    assert field.text() == "Typed"
    close(qtbot, dialog)


def test_a_new_group_opens_with_the_cursor_in_name_and_tab_reads_down(
    qtbot: QtBot, console: MainWindow, tmp_path: Path
) -> None:
    dialog = open_page_dialog(qtbot, console, "User Groups", edit=False)
    stops = tab_walk(qtbot)
    names = [name_of(stop) for stop in stops]
    assert names == [
        "field_name",
        "field_marketing_server",
        "field_transactional_server",
        "field_autoresponder_server",
        "field_legacy_send_method",
        "Save",
        "Cancel",
        "qt_tabwidget_tabbar",
    ]
    assert_reads_down(stops[:-1], dialog)  # the tab bar, at the top, is where Tab wraps
    image = save_png(dialog, tmp_path / "group-dialog-focus.png")
    assert not image.isNull()
    close(qtbot, dialog)


def test_a_new_user_types_straight_into_username_and_tab_walks_the_fields(
    qtbot: QtBot, console: MainWindow, tmp_path: Path
) -> None:
    dialog = open_page_dialog(qtbot, console, "Users", edit=False)
    username = focused()
    assert isinstance(username, QLineEdit) and username.objectName() == "field_username"
    qtbot.keyClicks(username, "bob")
    press_tab(qtbot)
    qtbot.keyClicks(focused(), "bob@example.com")  # type: ignore[arg-type]
    assert dialog.form.raw()["username"] == "bob"
    assert dialog.form.raw()["email"] == "bob@example.com"
    press_tab(qtbot)
    stops = tab_walk(qtbot)
    assert [name_of(stop) for stop in stops] == [
        "field_group",
        "field_is_active",
        "Save",
        "Cancel",
        "field_username",
        "field_email",
    ]
    save_png(dialog, tmp_path / "user-dialog-focus.png")
    close(qtbot, dialog)


def test_the_server_editor_walks_each_tab_in_reading_order(
    qtbot: QtBot, console: MainWindow
) -> None:
    dialog = open_page_dialog(qtbot, console, "Delivery Servers", edit=False)
    stops = tab_walk(qtbot)
    fields = [name_of(stop) for stop in stops]
    # Login fields are disabled until authentication is on: Tab passes them by.
    assert fields[: fields.index("Save")] == [
        "field_name",
        "field_host",
        "field_port",
        "field_encryption",
        "field_timeout_seconds",
        "field_auth_enabled",
        "field_allow_unverified_certificate",
        "field_hourly_quota",
        "field_daily_quota",
        "field_max_connections",
    ]
    assert fields[fields.index("Save") :] == ["Save", "Cancel", "qt_tabwidget_tabbar"]
    # The Domains tab, once chosen, reads top to bottom too.
    dialog.tabs.setCurrentIndex(1)
    dialog.field("link_tracking_domain").setFocus()
    stops = tab_walk(qtbot)
    domain_fields = [name_of(stop) for stop in stops]
    assert domain_fields[: domain_fields.index("Save")] == [
        "field_link_tracking_domain",
        "field_open_tracking_domain",
        "field_mail_from_domain",
        "field_enforced_from_email",
        "field_sender_info_as_mfrom",
        "field_sender_info_as_from",
    ]
    assert_reads_down(stops[: domain_fields.index("Cancel") + 1], dialog)
    close(qtbot, dialog)


def test_template_records_added_later_are_reached_in_order(
    qtbot: QtBot, console: MainWindow, tmp_path: Path
) -> None:
    dialog: Any = open_page_dialog(qtbot, console, "DNS Templates", edit=True)
    qtbot.waitUntil(lambda: len(dialog.records.rows) == 2, timeout=WAIT_MS)
    qtbot.mouseClick(dialog.records.add_button, Qt.MouseButton.LeftButton)
    assert focused() is dialog.records.rows[2].host
    dialog.name_edit.setFocus()
    names = [name_of(stop) for stop in tab_walk(qtbot, limit=80)]
    hosts = [names.index(f"record{number}_host") for number in (1, 2, 3)]
    assert hosts == sorted(hosts)
    assert names.index("field_description") < hosts[0] < names.index("Save")
    save_png(dialog, tmp_path / "template-dialog-focus.png")
    close(qtbot, dialog)


def test_reading_order_follows_rows_inserted_above_others(qapp: QApplication) -> None:
    from PySide6.QtWidgets import QFormLayout

    holder = QWidget()
    form = QFormLayout(holder)
    second = QLineEdit()
    first = QLineEdit()
    form.addRow("Second:", second)
    form.insertRow(0, "First:", first)  # created last, shown first
    order = [w for w in reading_order(holder) if takes_tab(w)]
    assert order == [first, second]
    holder.deleteLater()


# ---------------------------------------------------------------- the Database dialog


@pytest.fixture
def database_dialog(qtbot: QtBot, qt_loop: Any) -> Iterator[DatabaseDialog]:
    context = AppContext()
    dialog = DatabaseDialog(context)
    qtbot.addWidget(dialog)
    dialog.show()
    idle(qtbot, context)
    yield dialog
    idle(qtbot, context)


def note_for(qtbot: QtBot, dialog: DatabaseDialog, path: Path | str) -> str:
    dialog.sqlite_path.setFocus()
    dialog.sqlite_path.selectAll()
    qtbot.keyClicks(dialog.sqlite_path, str(path))
    qtbot.waitUntil(lambda: not dialog._note_timer.isActive(), timeout=WAIT_MS)
    idle(qtbot, dialog.context)
    return dialog.sqlite_note.text()


def test_database_dialog_opens_in_the_file_field_and_says_what_a_file_holds(
    qtbot: QtBot, database_dialog: DatabaseDialog, sqlite_url: str, tmp_path: Path
) -> None:
    assert focused() is database_dialog.sqlite_path
    assert database_dialog.sqlite_path.selectedText() == database_dialog.sqlite_path.text()

    # A file that is not there yet: the old sentence is the right one.
    assert note_for(qtbot, database_dialog, tmp_path / "new.sqlite3") == NEW_FILE_NOTE

    # A Postroom database: it exists, and the note says what it holds.
    Database(sqlite_url).dispose()  # made and migrated
    existing = sqlite_url.removeprefix("sqlite:///")
    note = note_for(qtbot, database_dialog, existing)
    assert "A new file is created" not in note
    assert note.startswith("This file exists: a Postroom database")
    assert f"schema {SCHEMA_HEAD}" in note and "connecting opens it." in note

    # Another program's SQLite database, without Postroom's tables.
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    connection.close()
    note = note_for(qtbot, database_dialog, other)
    assert note.startswith("This file exists: a SQLite database without Postroom's tables")

    # Something else altogether.
    text_file = tmp_path / "readme.txt"
    text_file.write_text("hello", encoding="utf-8")
    assert "is not a SQLite database" in note_for(qtbot, database_dialog, text_file)
    assert "is a folder" in note_for(qtbot, database_dialog, tmp_path)


def test_database_dialog_on_a_server_opens_in_the_first_empty_field(
    qtbot: QtBot, qt_loop: Any
) -> None:
    context = AppContext()
    dialog = DatabaseDialog(
        context, current_url="postgresql+psycopg://postroom@db.example.internal:5432/postroom"
    )
    qtbot.addWidget(dialog)
    dialog.show()
    idle(qtbot, context)
    assert focused() is dialog.password  # never filled in for you
    stops = [name_of(stop) for stop in tab_walk(qtbot)]
    first = stops.index("profileList")
    stops = stops[first:] + stops[:first]  # round the cycle, from the top of the dialog
    names = ["profileList", "databaseKind", "field_host", "field_port", "field_database"]
    names += ["field_username", "passwordField", "profileName", "savePasswordCheck"]
    names += ["saveProfileButton", "testConnectionButton"]
    assert stops[: len(names)] == names  # Forget is disabled with nothing selected
    assert sorted(stops[len(names) :]) == ["Cancel", "connectButton"]
    idle(qtbot, context)


# ---------------------------------------------------------------- tables and sections


def highlight_at(image: QImage, point: QPoint, colour: QColor) -> bool:
    pixel = image.pixelColor(point)
    return (
        abs(pixel.red() - colour.red()) < 16
        and abs(pixel.green() - colour.green()) < 16
        and abs(pixel.blue() - colour.blue()) < 16
    )


@pytest.mark.parametrize("section", ["Delivery Servers", "Audit Log"])
def test_a_table_reached_by_tab_shows_a_focus_frame(
    qtbot: QtBot, console: MainWindow, section: str, tmp_path: Path
) -> None:
    console.select_section(section)
    page: Any = console.page(section)
    table = page.table
    qtbot.waitUntil(lambda: table.model().rowCount() > 0, timeout=WAIT_MS)
    marker = table.findChild(FocusMarker)
    assert isinstance(marker, FocusMarker)
    console.navigation.setFocus(Qt.FocusReason.MouseFocusReason)
    assert not marker.isVisible()
    colour = table.palette().color(QPalette.ColorRole.Highlight)
    before = table.grab().toImage()
    middle_left = QPoint(0, table.height() // 2)
    assert not highlight_at(before, middle_left, colour)

    # Tab from the widget before the table in the chain lands on it.
    previous = table.previousInFocusChain()
    while not (takes_tab(previous) and previous.isVisible() and previous.isEnabled()):
        previous = previous.previousInFocusChain()
    previous.setFocus(Qt.FocusReason.TabFocusReason)
    press_tab(qtbot)
    assert focused() is table
    assert marker.isVisible()
    # The first row is current (arrow keys start there) but nothing is selected.
    assert table.currentIndex().row() == 0
    assert not table.selectionModel().hasSelection()
    image = save_png(console, tmp_path / f"focus-{section.replace(' ', '-')}.png")
    assert not image.isNull()
    after = table.grab().toImage()
    assert highlight_at(after, middle_left, colour)
    assert highlight_at(after, QPoint(table.width() // 2, table.height() - 1), colour)

    press_tab(qtbot)  # leaving the table takes the frame away
    assert not marker.isVisible()


def test_ctrl_and_a_number_selects_the_section(qtbot: QtBot, console: MainWindow) -> None:
    titles = [page.title for page in console.pages]
    assert len(titles) == 10
    console.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is console, timeout=WAIT_MS)
    for number in (3, 7, 1, 9, 5, 8, 2, 6, 4):  # Ctrl+1 to Ctrl+9; the tenth has none
        target = focused() or console
        qtbot.keyClick(
            target, getattr(Qt.Key, f"Key_{number}"), Qt.KeyboardModifier.ControlModifier
        )
        assert console.navigation.currentRow() == number - 1
        assert console.stack.currentWidget() is console.pages[number - 1]
    tooltip = console.navigation.item(0).toolTip()
    assert titles[0] in tooltip and "1" in tooltip


# ---------------------------------------------------------------- export


def test_export_confirms_with_the_path_and_a_way_to_the_folder(
    qtbot: QtBot, console: MainWindow, tmp_path: Path
) -> None:
    exported = tmp_path / "out" / "postroom.yaml"
    exported.parent.mkdir()
    opened: list[Path] = []

    async def choose(save: bool, suggested: str) -> str | None:
        return str(exported)

    transfer = console.config_transfer
    transfer.choose_path = choose
    transfer.open_folder = opened.append
    console.export_action.trigger()
    qtbot.waitUntil(lambda: transfer.export_box is not None, timeout=WAIT_MS)
    box = transfer.export_box
    assert isinstance(box, QMessageBox)
    qtbot.waitUntil(box.isVisible, timeout=WAIT_MS)
    assert exported.exists()
    assert str(exported) in box.text()
    assert "no passwords" in box.informativeText()
    assert str(exported) in console.statusBar().currentMessage()
    save_png(box, tmp_path / "export-done.png")
    # The box stays until dismissed; the status bar still says it a while later.
    qtbot.wait(1500)
    assert box.isVisible() and str(exported) in console.statusBar().currentMessage()

    open_button = box.findChild(QAbstractButton, "openFolderButton")
    assert isinstance(open_button, QAbstractButton)
    qtbot.mouseClick(open_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: transfer.export_box is None, timeout=WAIT_MS)
    assert opened == [exported.parent]


def test_a_tab_widget_is_one_stop_its_tab_bar_read_first(qapp: QApplication) -> None:
    """A tab widget is reached through its tab bar (its focus proxy), once, at the top."""
    dialog = EditorDialog(AppContext(), "Probe")
    dialog.add_form("One").add_line("a", "A")
    dialog.add_form("Two").add_line("b", "B")
    dialog.refresh_tab_order()
    chain = [w for w in reading_order(dialog) if takes_tab(w) and w.focusProxy() is None]
    kinds = [type(w) for w in chain]
    assert kinds.count(QTabBar) == 1 and kinds.index(QTabBar) == 0
    dialog.deleteLater()
