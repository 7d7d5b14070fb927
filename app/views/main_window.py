"""The console's main window: section list on the left, the selected section's page, status bar.

Every database read runs in the loop's executor; the window only awaits the results, so it
stays responsive while a remote server is slow or a migration runs. The status bar names
the open database and has the switcher; File > Switch Database opens the same dialog, and
the new database replaces the old one without a restart.
"""

from __future__ import annotations

import asyncio
import functools

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.models.database import Database, connection_error_sentence
from app.services.errors import PostroomError
from app.services.getting_started import setup_steps
from app.services.profiles import KIND_SQLITE, profile_for_url, url_parts
from app.views import theme
from app.views.context import AppContext
from app.views.database_dialog import DatabaseDialog
from app.views.focus import mark_focus_in
from app.views.import_export import DONE_MESSAGE_MS, ConfigTransfer
from app.views.pages import PAGES
from app.views.pages.base import Page, scaled_font
from app.views.pages.getting_started import GettingStartedPage
from app.views.troubleshoot_dialog import TroubleshootDialog, open_troubleshooter

# resources/icons/<name>.svg for each section; a page may also name its own ``icon``.
SECTION_ICONS = {
    "Getting Started": "nav-start",
    "Delivery Servers": "nav-servers",
    "User Groups": "nav-groups",
    "Users": "nav-users",
    "Sender Domains": "nav-domains",
    "Campaigns": "nav-campaigns",
    "Send Engines": "nav-engines",
    "DNS Templates": "nav-templates",
    "DNS Settings": "nav-dns-settings",
    "Audit Log": "nav-audit",
}
# Where a database opens: the checklist while setup is unfinished, else the first page
# people work in.
START_SECTION = "Getting Started"
FIRST_WORKING_SECTION = "Delivery Servers"


def describe_database(display_url: str, profile: str | None = None) -> str:
    """What the status bar says: the SQLite file, or the profile and the redacted URL."""
    url = url_parts(display_url)
    if url is None:
        return display_url
    if url.kind == KIND_SQLITE:
        return f"SQLite {url.database or '(in memory)'}"
    return f"{profile} ({display_url})" if profile else display_url


def _short_name(display_url: str, profile: str | None) -> str:
    if profile:
        return profile
    url = url_parts(display_url)
    if url is None:
        return ""
    if url.kind == KIND_SQLITE:
        return (url.database or "").rsplit("/", 1)[-1]
    return f"{url.database or ''} on {url.host or 'localhost'}"


class MainWindow(QMainWindow):
    """Emits ``closed`` when the user closes it, so the session can shut down in order."""

    closed = Signal()
    switch_database_requested = Signal()

    def __init__(self, display_url: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = AppContext(self)
        self._connection_error: str | None = None
        self._display_url = display_url
        self._profile: str | None = None
        self._restyle_pending = False
        self.database_dialog: DatabaseDialog | None = None

        self.setWindowTitle("Postroom")
        self.setWindowIcon(theme.file_icon("postroom"))
        self.resize(1180, 720)

        self.pages: list[Page] = [page_class(self.context) for page_class in PAGES]
        for page in self.pages:
            if isinstance(page, GettingStartedPage):
                page.open_section = self.open_section
                page.has_section = self.has_section
        self.troubleshoot_dialog: TroubleshootDialog | None = None
        self.navigation = QListWidget()
        self.navigation.setObjectName("navigation")
        self.navigation.setAccessibleName("Sections")
        self.navigation.setIconSize(QSize(20, 20))
        for page in self.pages:
            self.navigation.addItem(QListWidgetItem(page.title))
        self.navigation.setFrameShape(QFrame.Shape.NoFrame)
        self.navigation.setFont(scaled_font(self.font(), 1.1))
        self.navigation.setStyleSheet(
            "QListWidget#navigation { padding-top: 10px; }"
            "QListWidget#navigation::item { padding: 7px 12px; }"
        )
        self.navigation.setFixedWidth(
            self.navigation.fontMetrics().horizontalAdvance("Delivery Servers") + 100
        )
        self.stack = QStackedWidget()
        for page in self.pages:
            self.stack.addWidget(page)
            mark_focus_in(page)  # a table reached by Tab shows that it has the focus
        self.stack.addWidget(self._build_unavailable_page())

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

        self._build_menus()
        self._build_status_bar()
        self._tint_navigation_icons()
        self._show_database(display_url)
        self.context.user_error.connect(self._show_user_error)
        self.switch_database_requested.connect(self.show_database_dialog)

        self.config_transfer = ConfigTransfer(self.context, self)
        self.config_transfer.message.connect(self._show_user_error)
        self.config_transfer.done.connect(self._show_done)
        self.import_action.triggered.connect(self.config_transfer.import_configuration)
        self.export_action.triggered.connect(self.config_transfer.export_configuration)

        self._previous_row = 0
        self.navigation.currentRowChanged.connect(self._on_section_changed)
        self.navigation.setCurrentRow(0)
        self._update_actions()

    def _build_unavailable_page(self) -> QWidget:
        self.unavailable_page = QWidget()
        self.unavailable_page.setObjectName("unavailablePage")
        self.unavailable = QLabel()
        self.unavailable.setObjectName("unavailableLabel")
        self.unavailable.setWordWrap(True)
        self.unavailable.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.choose_database_button = QPushButton("Choose a Database…")
        self.choose_database_button.setObjectName("chooseDatabaseButton")
        self.choose_database_button.clicked.connect(self._request_switch)
        column = QVBoxLayout(self.unavailable_page)
        column.setContentsMargins(32, 28, 32, 28)
        column.addWidget(self.unavailable)
        column.addSpacing(8)
        column.addWidget(self.choose_database_button, 0, Qt.AlignmentFlag.AlignLeft)
        column.addStretch(1)
        return self.unavailable_page

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.switch_action = QAction("&Switch Database…", self)
        self.switch_action.setShortcut(QKeySequence("Ctrl+D"))
        self.switch_action.triggered.connect(self._request_switch)
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
        self._build_section_menu()
        help_menu = self.menuBar().addMenu("&Help")
        self.troubleshoot_action = QAction("&Troubleshoot…", self)
        self.troubleshoot_action.setObjectName("troubleshootAction")
        self.troubleshoot_action.triggered.connect(self.show_troubleshooter)
        help_menu.addAction(self.troubleshoot_action)

    def _build_section_menu(self) -> None:
        """Go > one entry per section, Ctrl+1 … Ctrl+9 in the navigation's order."""
        go_menu = self.menuBar().addMenu("&Go")
        self.section_actions: list[QAction] = []
        for number, page in enumerate(self.pages, start=1):
            action = QAction(page.title, self)
            action.setObjectName(f"goSection{number}")
            if number <= 9:
                shortcut = QKeySequence(f"Ctrl+{number}")
                action.setShortcut(shortcut)
                item = self.navigation.item(number - 1)
                if item is not None:
                    keys = shortcut.toString(QKeySequence.SequenceFormat.NativeText)
                    item.setToolTip(f"{page.title} ({keys})")
            action.triggered.connect(functools.partial(self._go_to, page.title))
            go_menu.addAction(action)
            self.section_actions.append(action)

    def _build_status_bar(self) -> None:
        self.connection_label = QLabel("Connecting…")
        self.connection_label.setObjectName("connectionLabel")
        self.database_label = QLabel()
        self.database_label.setObjectName("databaseLabel")
        # A long path must not widen the window; the full text stays in the tooltip.
        self.database_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.database_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.switch_button = QToolButton()
        self.switch_button.setObjectName("switchDatabaseButton")
        self.switch_button.setText("Switch Database…")
        self.switch_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.switch_button.setAutoRaise(True)
        self.switch_button.setToolTip("Open another database (Ctrl+D)")
        self.switch_button.setAccessibleName("Switch database")
        self.switch_button.clicked.connect(self.switch_action.trigger)
        self.version_label = QLabel(f"Postroom {__version__}")
        self.version_label.setObjectName("versionLabel")
        for status_label in (self.connection_label, self.database_label, self.version_label):
            status_label.setContentsMargins(6, 2, 6, 2)
        status = self.statusBar()
        status.addWidget(self.connection_label)
        status.addWidget(self.database_label, 1)
        status.addPermanentWidget(self.switch_button)
        status.addPermanentWidget(self.version_label)

    def _tint_navigation_icons(self) -> None:
        # Redrawn on every palette change, so the icons follow a switch to dark mode.
        palette = self.navigation.palette()
        for row, page in enumerate(self.pages):
            name = getattr(page, "icon", None) or SECTION_ICONS.get(page.title)
            item = self.navigation.item(row)
            if isinstance(name, str) and theme.icon_path(name).exists() and item is not None:
                item.setIcon(theme.tinted_icon(name, palette))
        if hasattr(self, "switch_button"):  # changeEvent can come before it is built
            self.switch_button.setIcon(theme.tinted_icon("database", palette))

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        palette_events = (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)
        # Both arrive for one switch of the system theme: restyle once, afterwards.
        if event.type() in palette_events and not self._restyle_pending:
            self._restyle_pending = True
            QTimer.singleShot(0, self, self._follow_palette)

    def _follow_palette(self) -> None:
        """Bring everything in the window to the new (light or dark) palette."""
        self._restyle_pending = False
        # A widget with a style sheet keeps the palette it was polished with; setting the
        # sheet again repolishes it, or the navigation would stay white in dark mode.
        for widget in (self, *self.findChildren(QWidget)):
            sheet = widget.styleSheet()
            if sheet:
                widget.setStyleSheet(sheet)
        self._tint_navigation_icons()

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

    def _go_to(self, title: str, _checked: bool = False) -> None:
        self.select_section(title)

    def has_section(self, title: str) -> bool:
        return any(page.title == title for page in self.pages)

    def open_section(self, title: str) -> Page | None:
        """Show the section called ``title``; None (and nothing changes) if there is none
        or the current page keeps the user (unsaved changes)."""
        if not self.has_section(title):
            return None
        self.select_section(title)
        return self.current_page if self.current_page.title == title else None

    def show_troubleshooter(self) -> TroubleshootDialog | None:
        if self.context.database is None:
            return None
        self.troubleshoot_dialog = open_troubleshooter(self.context, self)
        return self.troubleshoot_dialog

    async def _choose_first_section(self) -> None:
        """A database with setup unfinished opens on Getting Started, a finished one on
        the first working page; unless the user chose a section while this was read."""
        row = self.navigation.currentRow()
        try:
            steps = await self.context.read(setup_steps)
        except PostroomError:
            return  # the pages show the same error when they load
        if self.navigation.currentRow() != row:
            return
        title = FIRST_WORKING_SECTION if all(step.done for step in steps) else START_SECTION
        if self.has_section(title):
            self.select_section(title)

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
            self.stack.setCurrentWidget(self.unavailable_page)
        else:
            self.stack.setCurrentWidget(self.pages[row])

    # ------------------------------------------------------------------ database

    async def open_database(self, url: str, *, profile: str | None = None) -> Database | None:
        """Open (and migrate) the database off the GUI thread; None if that failed.

        A failure is shown in the window rather than raised: a wrong URL, a stopped server
        or a refused login is the user's to fix, not a bug report.
        """
        self._connection_error = None
        self.connection_label.setText("Connecting…")
        try:
            database = await self.context.in_executor(Database, url)
        except Exception as exc:
            self._connection_error = (
                f"Could not open the database. {connection_error_sentence(exc, url)}\n"
                "Choose another database below or with File > Switch Database, or check "
                "the URL given with --database or POSTROOM_DATABASE_URL."
            )
            self.connection_label.setText("Not connected")
            self._update_actions()
            self._on_section_changed(self.navigation.currentRow())
            return None
        await self._install(database, profile)
        return database

    async def switch_database(self, url: str, profile: str | None = None) -> str | None:
        """Open ``url`` in place of the current database; the reason in one sentence if not.

        Unlike ``open_database`` a failure leaves the window on the database it had, so a
        mistyped host in the dialog costs nothing.
        """
        try:
            # The user chose this file in the Database dialog, whose test said a missing
            # folder would be made: here (unlike --database) making it is what was asked.
            database = await self.context.in_executor(
                functools.partial(Database, url, create_folder=True)
            )
        except Exception as exc:
            return f"Could not open the database: {connection_error_sentence(exc, url)}"
        self._connection_error = None
        await self._install(database, profile)
        return None

    async def _install(self, database: Database, profile: str | None) -> None:
        if profile is None:
            profile = await self.context.in_executor(profile_for_url, database.url)
        previous = self.context.database
        self.context.set_database(database)  # every page reloads from the new database
        if previous is not None and previous is not database:
            asyncio.get_running_loop().run_in_executor(None, previous.dispose)
        self._profile = profile
        self.connection_label.setText("Connected")
        self._show_database(database.display_url)
        self._update_actions()
        self._on_section_changed(self.navigation.currentRow())
        await self._choose_first_section()

    def _request_switch(self) -> None:
        # A slot without parameters: wiring clicked(bool) straight to a Python signal's
        # emit hands it the bool, which PySide6 6.12 releases once too often.
        self.switch_database_requested.emit()

    def show_database_dialog(self) -> DatabaseDialog | None:
        """Open the Database dialog (or raise the one already open)."""
        if self.database_dialog is not None:
            self.database_dialog.raise_()
            self.database_dialog.activateWindow()
            return self.database_dialog
        if not self.current_page.can_leave():
            return None
        database = self.context.database
        dialog = DatabaseDialog(
            self.context,
            opener=self.switch_database,
            current_url=database.url if database is not None else None,
            parent=self,
        )
        dialog.finished.connect(self._database_dialog_closed)
        self.database_dialog = dialog
        dialog.open()
        return dialog

    def _database_dialog_closed(self) -> None:
        if self.database_dialog is not None:
            self.database_dialog.deleteLater()
        self.database_dialog = None

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
        if message:
            self.statusBar().showMessage(message, 10_000)
        else:
            self.statusBar().clearMessage()

    def _show_done(self, message: str) -> None:
        # Long enough to be read after looking away; the database label returns after.
        self.statusBar().showMessage(message, DONE_MESSAGE_MS)

    def _update_actions(self) -> None:
        connected = self.context.database is not None
        self.import_action.setEnabled(connected)
        self.export_action.setEnabled(connected)
        self.troubleshoot_action.setEnabled(connected)

    def _show_database(self, display_url: str) -> None:
        self._display_url = display_url
        text = describe_database(display_url, self._profile)
        self.database_label.setText(f"Database: {text}")
        self.database_label.setToolTip(text)
        short = _short_name(display_url, self._profile)
        self.setWindowTitle(f"{short} — Postroom" if short else "Postroom")
