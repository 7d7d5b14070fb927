"""The console's main window: section list on the left, the selected section's page, status bar.

Every database read runs in the loop's executor; the window only awaits the results, so it
stays responsive while a remote server is slow or a migration runs.
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QSizePolicy,
    QStackedWidget,
    QWidget,
)

from app import __version__
from app.models.database import Database
from app.views.context import AppContext
from app.views.pages import PAGES
from app.views.pages.base import Page, scaled_font


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's error and appends SQL and a documentation link; the
    # driver's own first line ("connection refused", "unknown database") is the useful part.
    cause = getattr(exc, "orig", None)
    error = cause if isinstance(cause, BaseException) else exc
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class MainWindow(QMainWindow):
    """Emits ``closed`` when the user closes it, so the session can shut down in order."""

    closed = Signal()
    switch_database_requested = Signal()

    def __init__(self, display_url: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = AppContext(self)
        self._connection_error: str | None = None

        self.setWindowTitle("Postroom")
        self.resize(1100, 680)

        self.pages: list[Page] = [page_class(self.context) for page_class in PAGES]
        self.navigation = QListWidget()
        self.navigation.setObjectName("navigation")
        self.navigation.addItems([page.title for page in self.pages])
        self.navigation.setFrameShape(QFrame.Shape.NoFrame)
        self.navigation.setFont(scaled_font(self.font(), 1.1))
        self.navigation.setStyleSheet(
            "QListWidget#navigation { padding-top: 10px; }"
            "QListWidget#navigation::item { padding: 7px 14px; }"
        )
        self.navigation.setFixedWidth(
            self.navigation.fontMetrics().horizontalAdvance("Delivery Servers") + 72
        )
        self.stack = QStackedWidget()
        for page in self.pages:
            self.stack.addWidget(page)
        self.unavailable = QLabel()
        self.unavailable.setObjectName("unavailableLabel")
        self.unavailable.setWordWrap(True)
        self.unavailable.setContentsMargins(32, 28, 32, 28)
        self.stack.addWidget(self.unavailable)

        divider = QFrame()
        divider.setFrameShape(QFrame.Shape.VLine)
        divider.setFrameShadow(QFrame.Shadow.Sunken)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.navigation)
        row.addWidget(divider)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.connection_label = QLabel("Connecting…")
        self.connection_label.setObjectName("connectionLabel")
        self.database_label = QLabel()
        self.database_label.setObjectName("databaseLabel")
        # A long path must not widen the window; the full text stays in the tooltip.
        self.database_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.version_label = QLabel(f"Postroom {__version__}")
        self.version_label.setObjectName("versionLabel")
        for status_label in (self.connection_label, self.database_label, self.version_label):
            status_label.setContentsMargins(6, 2, 6, 2)
        status = self.statusBar()
        status.addWidget(self.connection_label)
        status.addWidget(self.database_label, 1)
        status.addPermanentWidget(self.version_label)
        self._show_database(display_url)
        self.context.user_error.connect(self._show_user_error)

        self._build_menus()
        self._previous_row = 0
        self.navigation.currentRowChanged.connect(self._on_section_changed)
        self.navigation.setCurrentRow(0)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.switch_action = QAction("&Switch Database…", self)
        self.switch_action.setShortcut(QKeySequence("Ctrl+D"))
        self.switch_action.triggered.connect(self.switch_database_requested.emit)
        file_menu.addAction(self.switch_action)
        file_menu.addSeparator()
        self.import_action = QAction("&Import Configuration…", self)
        self.export_action = QAction("&Export Configuration…", self)
        file_menu.addAction(self.import_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

    # ------------------------------------------------------------------ sections

    @property
    def database(self) -> Database | None:
        return self.context.database

    @property
    def current_page(self) -> Page:
        return self.pages[max(self.navigation.currentRow(), 0)]

    def page(self, title: str) -> Page:
        return next(page for page in self.pages if page.title == title)

    def select_section(self, title: str) -> None:
        self.navigation.setCurrentRow([p.title for p in self.pages].index(title))

    def _on_section_changed(self, row: int) -> None:
        if row < 0:
            return
        if row != self._previous_row and not self.pages[self._previous_row].can_leave():
            # Unsaved changes the user chose to keep: stay, without re-entering this slot.
            self.navigation.blockSignals(True)
            self.navigation.setCurrentRow(self._previous_row)
            self.navigation.blockSignals(False)
            return
        self._previous_row = row
        if self._connection_error is not None:
            self.unavailable.setText(self._connection_error)
            self.stack.setCurrentWidget(self.unavailable)
        else:
            self.stack.setCurrentWidget(self.pages[row])

    # ------------------------------------------------------------------ database

    async def open_database(self, url: str) -> Database | None:
        """Open (and migrate) the database off the GUI thread; None if that failed.

        A failure is shown in the window rather than raised: a wrong URL, a stopped server
        or a refused login is the user's to fix, not a bug report.
        """
        self._connection_error = None
        self.connection_label.setText("Connecting…")
        try:
            database = await asyncio.get_running_loop().run_in_executor(None, Database, url)
        except Exception as exc:
            self._connection_error = (
                f"Could not open the database. {_first_line(exc)}\n"
                "Check the URL given with --database or POSTROOM_DATABASE_URL, "
                "or choose another with File > Switch Database."
            )
            self.connection_label.setText("Not connected")
            self._on_section_changed(self.navigation.currentRow())
            return None
        previous = self.context.database
        self.context.set_database(database)
        if previous is not None:
            asyncio.get_running_loop().run_in_executor(None, previous.dispose)
        self.connection_label.setText("Connected")
        self._show_database(database.display_url)
        self._on_section_changed(self.navigation.currentRow())
        return database

    def has_pending_work(self) -> bool:
        """Whether background work is still running (tests wait for this to be False)."""
        return self.context.has_pending_work()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.current_page.can_leave():
            event.ignore()
            return
        super().closeEvent(event)
        if event.isAccepted():
            # Work finishing after the window is gone must not touch deleted widgets.
            self.context.cancel_all()
            self.closed.emit()

    def _show_user_error(self, message: str) -> None:
        self.statusBar().showMessage(message, 10_000)

    def _show_database(self, display_url: str) -> None:
        self.database_label.setText(f"Database: {display_url}")
        self.database_label.setToolTip(display_url)
