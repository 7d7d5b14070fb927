"""Smoke tests of the console window, offscreen, against a real SQLite database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from app.views import app as console
from app.views.main_window import MainWindow
from app.views.pages import PAGES
from tests.conftest import WAIT_MS, open_database

# The offscreen platform warns this for every top-level window whose size constraints change
# (any layout update); real platforms implement it. Every other Qt warning still fails a test.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def label(window: MainWindow, name: str) -> QLabel:
    found = window.findChild(QLabel, name)
    assert isinstance(found, QLabel), name
    return found


def click_section(qtbot: QtBot, window: MainWindow, row: int) -> None:
    navigation = window.navigation
    item_rect = navigation.visualItemRect(navigation.item(row))
    qtbot.mouseClick(navigation.viewport(), Qt.MouseButton.LeftButton, pos=item_rect.center())


def test_window_shows_database_and_version(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    assert path in label(window, "databaseLabel").text()
    assert label(window, "versionLabel").text() == f"Postroom {console.__version__}"
    # Before the database is open the window is already up and says so.
    assert label(window, "connectionLabel").text() == "Connecting…"

    assert open_database(qtbot, window, sqlite_url) is not None
    assert label(window, "connectionLabel").text() == "Connected"
    assert path in label(window, "databaseLabel").text()


def test_every_section_is_reachable_from_the_navigation(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    titles = [page.title for page in PAGES]
    assert titles == [
        "Getting Started",
        "Delivery Servers",
        "User Groups",
        "Users",
        "Sender Domains",
        "Campaigns",
        "Send Engines",
        "DNS Templates",
        "DNS Settings",
        "Audit Log",
    ]
    for row in reversed(range(len(titles))):
        click_section(qtbot, window, row)
        qtbot.waitUntil(lambda row=row: window.stack.currentWidget() is window.pages[row])
        assert window.current_page.heading.text() == titles[row]
        qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
    assert window.current_page is window.pages[0]


def test_closing_the_window_cancels_background_work(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    window.select_section("Audit Log")
    window.current_page.refresh()
    assert window.has_pending_work()
    window.close()  # a late result would otherwise land on deleted widgets
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)


def test_unreachable_database_is_shown_not_raised(qtbot: QtBot, window: MainWindow) -> None:
    url = "postgresql+psycopg://postroom:secret@127.0.0.1:1/nothing"
    assert open_database(qtbot, window, url) is None
    assert label(window, "connectionLabel").text() == "Not connected"
    shown = label(window, "unavailableLabel")
    assert window.stack.currentWidget() is window.unavailable_page
    assert shown.isVisible()
    assert "Could not open the database" in shown.text()
    assert "secret" not in shown.text()
    # The way out is one click away: the same dialog as File > Switch Database.
    qtbot.mouseClick(window.choose_database_button, Qt.MouseButton.LeftButton)
    dialog = window.database_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.reject()
    qtbot.waitUntil(lambda: window.database_dialog is None)


def test_window_renders_to_png(
    qtbot: QtBot, window: MainWindow, sqlite_url: str, tmp_path: Path
) -> None:
    open_database(qtbot, window, sqlite_url)
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
    target = tmp_path / "main-window.png"
    assert window.grab().save(str(target))
    assert target.stat().st_size > 0
    image = QImage(str(target))
    assert (image.width(), image.height()) == (window.width(), window.height())
    # Something was drawn: the nav list and the page are not one flat colour.
    colours = {image.pixel(QPoint(x, y)) for x in range(0, image.width(), 7) for y in (40, 90)}
    assert len(colours) > 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check is for Linux")
def test_run_without_display_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert console.run("sqlite:///unused.sqlite3") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [console.NO_DISPLAY_MESSAGE]
    assert "xvfb-run -a" in err[0] and "QT_QPA_PLATFORM=offscreen" in err[0]


def test_run_opens_the_console_and_closes_cleanly(
    qapp: QApplication, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real entry point: its own qasync loop, the window, the database, a clean exit."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("QT_API", raising=False)  # run() sets it; restored afterwards
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # run() installs its own
    quit_on_last_window = qapp.quitOnLastWindowClosed()
    seen: list[str] = []

    def close_once_connected() -> None:
        for widget in qapp.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.isVisible() and widget.database:
                seen.append(widget.connection_label.text())
                widget.close()

    # run() blocks in Qt's loop until the window closes; this timer plays the user.
    poll = QTimer()
    poll.timeout.connect(close_once_connected)
    poll.start(20)
    try:
        assert console.run(sqlite_url) == 0
    finally:
        poll.stop()
        qapp.setQuitOnLastWindowClosed(quit_on_last_window)
    assert seen and seen[0] == "Connected"
    assert isinstance(sys.excepthook, console.ErrorReporter)


@pytest.mark.parametrize(
    ("env", "platform", "problem"),
    [
        ({}, "linux", True),
        ({"DISPLAY": ":0"}, "linux", False),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
        ({}, "darwin", False),
        ({}, "win32", False),
    ],
)
def test_display_problem(env: dict[str, str], platform: str, problem: bool) -> None:
    assert (console.display_problem(env, platform) is not None) is problem


def test_missing_qt_library_names_the_apt_package() -> None:
    error = "libxcb-cursor.so.0: cannot open shared object file: No such file or directory"
    hint = console.apt_install_hint(console._SONAME.findall(error))
    assert hint.startswith("Qt cannot load libxcb-cursor.so.0:")
    assert "apt-get install -y libxcb-cursor0`" in hint
    assert "\n" not in hint


def test_missing_xcb_library_is_named_before_qt_aborts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_loadable", lambda soname: soname != "libxcb-cursor.so.0")
    hint = console.qt_library_problem({"DISPLAY": ":0"}, "linux")
    assert hint is not None and "apt-get install -y libxcb-cursor0`" in hint
    # Offscreen needs no X11 libraries at all.
    assert console.qt_library_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None


def test_unexpected_error_opens_one_copyable_report(
    qtbot: QtBot, capsys: pytest.CaptureFixture[str]
) -> None:
    reporter = console.ErrorReporter()
    for _ in range(2):  # the second error is logged but opens no second dialog
        try:
            raise ValueError("boom")
        except ValueError as exc:
            reporter(type(exc), exc, exc.__traceback__)
    dialog = reporter.dialog
    assert isinstance(dialog, QMessageBox)
    qtbot.waitUntil(dialog.isVisible)
    assert "ValueError: boom" in dialog.text()
    assert "Traceback" in dialog.detailedText()
    assert capsys.readouterr().err.count("ValueError: boom") == 2
    copy = next(b for b in dialog.buttons() if b.text() == "Copy and Close")
    qtbot.mouseClick(copy, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: reporter.dialog is None)
    assert "ValueError: boom" in QApplication.clipboard().text()


def test_the_loop_watchdog_sees_a_busy_handler(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop, qapp: QApplication
) -> None:
    """The stall detector every GUI test relies on really fires on work done on the loop."""
    import time

    def spin() -> None:
        started = time.thread_time()
        while time.thread_time() - started < 0.15:
            pass

    button = QPushButton("busy")
    qtbot.addWidget(button)
    button.clicked.connect(spin)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    stalls = list(qapp.stalls)  # type: ignore[attr-defined]
    assert stalls and stalls[0][0] >= 0.15
    assert "ms CPU" in stalls[0][1]
    qapp.stalls.clear()  # type: ignore[attr-defined]


def test_the_loop_watchdog_sees_a_handler_that_waits(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop, qapp: QApplication
) -> None:
    """Waiting on the loop costs no CPU; the wall clock's wider limit catches it."""
    import time

    from tests.conftest import LOOP_BLOCK_LIMIT_S

    button = QPushButton("block")
    qtbot.addWidget(button)
    button.clicked.connect(lambda: time.sleep(LOOP_BLOCK_LIMIT_S + 0.1))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    stalls = list(qapp.stalls)  # type: ignore[attr-defined]
    assert stalls and stalls[0][0] >= LOOP_BLOCK_LIMIT_S
    qapp.stalls.clear()  # type: ignore[attr-defined]
