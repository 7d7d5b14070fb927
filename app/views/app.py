"""Starting the console: check for a screen and Qt's libraries, then run the window on qasync.

Qt is imported only inside ``run()``, after the checks, so that a machine without a display
or without Qt's system libraries gets one line saying what to do instead of a crash: Qt
aborts the whole process (no Python exception) when its platform plugin can't start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from app import __version__
from app.models.database import resolve_database_url
from app.services.profiles import display_url

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication, QMessageBox

    from app.views.main_window import MainWindow

APP_NAME = "Postroom"

NO_DISPLAY_MESSAGE = (
    "No display found: run this from a desktop session, or try `xvfb-run -a postroom gui`, "
    "or set QT_QPA_PLATFORM=offscreen."
)

# Libraries Qt takes from the system rather than from the PySide6 wheel, with the Debian 12
# package that ships each. These load when PySide6.QtGui is imported.
QT_SYSTEM_LIBRARIES: dict[str, str] = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libX11.so.6": "libx11-6",
    "libxcb.so.1": "libxcb1",
}

# Needed only by the X11 (xcb) platform plugin, which Qt loads when the QApplication is
# created; one missing library there aborts the process, so they are checked beforehand.
XCB_PLUGIN_LIBRARIES: dict[str, str] = {
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-util.so.1": "libxcb-util1",
}

_SONAME = re.compile(r"\b(lib[\w+-]+(?:\.[\w+-]+)*?\.so(?:\.\d+)*)")


def display_problem(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """The line to print when Qt would find no screen to open a window on, else None."""
    env = os.environ if environ is None else environ
    if not (sys.platform if platform is None else platform).startswith("linux"):
        return None  # macOS and Windows always have their native platform plugin
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or env.get("QT_QPA_PLATFORM"):
        return None
    return NO_DISPLAY_MESSAGE


def apt_install_hint(missing: Iterable[str]) -> str:
    """One line naming the missing libraries and the apt-get command that installs them."""
    names = list(dict.fromkeys(missing))
    known = QT_SYSTEM_LIBRARIES | XCB_PLUGIN_LIBRARIES
    if names and all(name in known for name in names):
        packages = sorted({known[name] for name in names})
    else:  # an unexpected library: offer everything Qt may need rather than guess
        packages = sorted(set(known.values()))
    sudo = "" if getattr(os, "geteuid", lambda: 0)() == 0 else "sudo "
    what = ", ".join(names) if names else "its system libraries"
    return f"Qt cannot load {what}: install with `{sudo}apt-get install -y {' '.join(packages)}`."


def _uses_xcb(env: Mapping[str, str], platform: str) -> bool:
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        # "xcb", "xcb:option=..." or a fallback list such as "wayland;xcb": the first counts.
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return (
        platform.startswith("linux") and bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")
    )


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def qt_library_problem(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """The line to print when Qt's system libraries are missing, else None."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    try:
        from PySide6 import QtGui, QtWidgets  # noqa: F401  (loads libEGL, libGL, fontconfig…)
    except ModuleNotFoundError:
        return "PySide6 is not installed here: run scripts/run, or `pip install -e .` in the repo."
    except ImportError as exc:
        return apt_install_hint(_SONAME.findall(str(exc)))
    if plat.startswith("linux") and _uses_xcb(env, plat):
        missing = [name for name in XCB_PLUGIN_LIBRARIES if not _loadable(name)]
        if missing:
            return apt_install_hint(missing)
    return None


class ErrorReporter:
    """``sys.excepthook`` for the console: log every unexpected error, show one at a time.

    The dialog opens without a nested event loop (``open()``, not ``exec()``), so an error
    raised inside an asyncio callback can't re-enter the loop that is reporting it.
    """

    def __init__(self) -> None:
        self.dialog: QMessageBox | None = None

    def __call__(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        report = self.report(exc_type, exc, tb)
        print(report, file=sys.stderr, end="")
        # Widgets live on the main thread only; a second error while one dialog is open
        # is already in the log, and a stack of dialogs helps nobody.
        if threading.current_thread() is not threading.main_thread() or self.dialog is not None:
            return
        from PySide6.QtWidgets import QApplication

        if QApplication.instance() is not None:
            self.dialog = self._show(f"{exc_type.__name__}: {exc}", report)

    @staticmethod
    def report(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> str:
        from PySide6 import __version__ as pyside_version

        header = (
            f"Postroom {__version__}, Python {sys.version.split()[0]}, "
            f"PySide6 {pyside_version}, {sys.platform}\n"
        )
        return header + "".join(traceback.format_exception(exc_type, exc, tb))

    def _show(self, summary: str, report: str) -> QMessageBox:
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QApplication, QMessageBox

        box = QMessageBox(QApplication.activeWindow())
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle("Postroom: unexpected error")
        box.setText(f"Something went wrong that Postroom did not expect.\n\n{summary}")
        box.setInformativeText(
            "The full report is under Show Details. Please include it in a bug report."
        )
        box.setDetailedText(report)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # QMessageBox closes on any of its buttons, so say so rather than surprise.
        copy = box.addButton("Copy and Close", QMessageBox.ButtonRole.AcceptRole)
        copy.clicked.connect(lambda: QApplication.clipboard().setText(report))
        box.addButton(QMessageBox.StandardButton.Close)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._closed)
        box.open()
        return box

    def _closed(self) -> None:
        self.dialog = None


def _report_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Errors asyncio would only log (failed callbacks, lost tasks) reach the same dialog."""
    exc = context.get("exception")
    if isinstance(exc, Exception):
        sys.excepthook(type(exc), exc, exc.__traceback__)
    else:
        loop.default_exception_handler(context)


async def _console_session(window: MainWindow, url: str) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_report_loop_exception)
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    # Ctrl+C in the terminal closes the window cleanly; Windows' loop has no signal handlers.
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, window.close)

    opening = asyncio.ensure_future(window.open_database(url))
    await closed.wait()
    # A migration already running in its thread can't be interrupted: let it finish, so
    # the database is left at a known revision, then release the connections of whichever
    # database is open now (File > Switch Database may have replaced the first one).
    first = await opening
    current = window.database
    for database in {id(d): d for d in (first, current) if d is not None}.values():
        await loop.run_in_executor(None, database.dispose)


def _application() -> QApplication:
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setApplicationVersion(__version__)
    from app.views import theme

    # Fusion with the platform's palette: light or dark as the desktop is, on every OS.
    theme.use_system_style(app)
    app.setWindowIcon(theme.file_icon("postroom"))
    # The session coroutine decides when to stop, after it has closed the database.
    app.setQuitOnLastWindowClosed(False)
    return app


def run(database_url: str | None = None) -> int:
    """Open the console on ``database_url`` (or the configured default); the exit code."""
    problem = display_problem() or qt_library_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 1

    from app.views.main_window import MainWindow

    # qasync binds to whichever Qt binding QT_API names, else the first one imported;
    # name ours so that a QT_API=pyqt5 meant for another program can't mislead it.
    os.environ["QT_API"] = "pyside6"
    import qasync

    app = _application()
    sys.excepthook = ErrorReporter()
    url = resolve_database_url(database_url)
    window = MainWindow(display_url(url))
    window.show()
    with asyncio.Runner(loop_factory=lambda: qasync.QEventLoop(app)) as runner:
        runner.run(_console_session(window, url))
    # Destroy the window's C++ side now, while Qt is alive: left to the garbage collector
    # at interpreter exit, after QApplication is gone, PySide aborts the process.
    import shiboken6

    shiboken6.delete(window)
    return 0
