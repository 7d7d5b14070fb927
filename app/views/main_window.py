"""The console's main window: section list on the left, the selected section's page, status bar.

Every database read runs in the loop's executor; the window only awaits the results, so it
stays responsive while a remote server is slow or a migration runs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QFont, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app import __version__
from app.models import (
    AuditEntry,
    Base,
    DeliveryServer,
    DnsSettings,
    DnsTemplate,
    SenderDomain,
    User,
    UserGroup,
)
from app.models.database import Database

T = TypeVar("T")

PENDING = "…"
UNAVAILABLE = "—"


@dataclass(frozen=True)
class Section:
    title: str
    model: type[Base]
    summary: str

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)


SECTIONS: tuple[Section, ...] = (
    Section(
        "Delivery Servers",
        DeliveryServer,
        "SMTP relays that messages are handed to, with their tracking and bounce domains.",
    ),
    Section(
        "User Groups",
        UserGroup,
        "Which delivery server each channel uses, with sending limits, headers and permissions.",
    ),
    Section(
        "Users",
        User,
        "Accounts that own sender domains and campaigns; each belongs to one user group.",
    ),
    Section(
        "Sender Domains",
        SenderDomain,
        "Domains users send from, with the DNS records each one must publish.",
    ),
    Section(
        "DNS Templates",
        DnsTemplate,
        "Named sets of DNS records, with placeholders, rendered for each new sender domain.",
    ),
    Section(
        "DNS Settings",
        DnsSettings,
        "SPF include, DKIM selector and key, DMARC policy and CNAME targets for all domains.",
    ),
    Section("Audit Log", AuditEntry, "Who changed what, and when."),
)


def count_rows(database: Database, model: type[Base]) -> int:
    """Blocking; run it in an executor."""
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's error and appends SQL and a documentation link; the
    # driver's own first line ("connection refused", "unknown database") is the useful part.
    cause = getattr(exc, "orig", None)
    error = cause if isinstance(cause, BaseException) else exc
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _scaled_font(base: QFont, factor: float, *, bold: bool = False) -> QFont:
    font = QFont(base)
    font.setPointSizeF(base.pointSizeF() * factor)
    font.setBold(bold)
    return font


class SectionPage(QWidget):
    """Title, a one-line summary and the number of rows the section's table holds."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.title.setObjectName("sectionTitle")
        self.title.setFont(_scaled_font(self.font(), 1.7, bold=True))
        self.summary = QLabel()
        self.summary.setObjectName("sectionSummary")
        self.summary.setWordWrap(True)
        self.summary.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.count = QLabel(PENDING)
        self.count.setObjectName("countLabel")
        self.count.setFont(_scaled_font(self.font(), 3.2, bold=True))
        self.caption = QLabel()
        self.caption.setObjectName("countCaption")
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 28, 32, 28)
        layout.setSpacing(6)
        layout.addWidget(self.title)
        layout.addWidget(self.summary)
        layout.addSpacing(24)
        layout.addWidget(self.count)
        layout.addWidget(self.caption)
        layout.addStretch(1)

    def show_section(self, section: Section, note: str) -> None:
        self.title.setText(section.title)
        self.summary.setText(section.summary)
        self.count.setText(PENDING)
        self.caption.setText(note)

    def show_count(self, section: Section, count: int) -> None:
        self.count.setText(str(count))
        self.caption.setText(f"{'row' if count == 1 else 'rows'} in {section.table}")

    def show_unavailable(self, reason: str) -> None:
        self.count.setText(UNAVAILABLE)
        self.caption.setText(reason)


class MainWindow(QMainWindow):
    """Emits ``closed`` when the user closes it, so the session can shut down in order."""

    closed = Signal()

    def __init__(self, display_url: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.database: Database | None = None
        self._connection_error: str | None = None
        # asyncio keeps only weak references to tasks: hold them until they finish.
        self._tasks: set[asyncio.Future[Any]] = set()

        self.setWindowTitle("Postroom")
        self.resize(960, 600)

        self.navigation = QListWidget()
        self.navigation.setObjectName("navigation")
        self.navigation.addItems([section.title for section in SECTIONS])
        self.navigation.setFrameShape(QFrame.Shape.NoFrame)
        self.navigation.setFont(_scaled_font(self.font(), 1.1))
        self.navigation.setStyleSheet(
            "QListWidget#navigation { padding-top: 10px; }"
            "QListWidget#navigation::item { padding: 7px 14px; }"
        )
        self.navigation.setFixedWidth(
            self.navigation.fontMetrics().horizontalAdvance("Delivery Servers") + 72
        )
        self.page = SectionPage()

        divider = QFrame()
        divider.setFrameShape(QFrame.Shape.VLine)
        divider.setFrameShadow(QFrame.Shadow.Sunken)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.navigation)
        row.addWidget(divider)
        row.addWidget(self.page, 1)
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

        self.navigation.currentRowChanged.connect(self._on_section_changed)
        self.navigation.setCurrentRow(0)

    @property
    def current_section(self) -> Section:
        return SECTIONS[max(self.navigation.currentRow(), 0)]

    def select_section(self, title: str) -> None:
        self.navigation.setCurrentRow([s.title for s in SECTIONS].index(title))

    async def open_database(self, url: str) -> Database | None:
        """Open (and migrate) the database off the GUI thread; None if that failed.

        A failure is shown in the window rather than raised: a wrong URL, a stopped server
        or a refused login is the user's to fix, not a bug report.
        """
        self._connection_error = None
        self.connection_label.setText("Connecting…")
        self._on_section_changed(self.navigation.currentRow())
        try:
            database = await self._in_executor(Database, url)
        except Exception as exc:
            self._connection_error = (
                f"Could not open the database. {_first_line(exc)}\n"
                "Check the URL given with --database or POSTROOM_DATABASE_URL."
            )
            self.connection_label.setText("Not connected")
            self._on_section_changed(self.navigation.currentRow())
            return None
        self.database = database
        self.connection_label.setText("Connected")
        self._show_database(database.display_url)
        self._on_section_changed(self.navigation.currentRow())
        return database

    def has_pending_work(self) -> bool:
        """Whether a background read is still running (tests wait for this to be False)."""
        return bool(self._tasks)

    def closeEvent(self, event: QCloseEvent) -> None:
        super().closeEvent(event)
        if event.isAccepted():
            # A read finishing after the window is gone must not touch deleted widgets.
            for task in list(self._tasks):
                task.cancel()
            self.closed.emit()

    def _show_database(self, display_url: str) -> None:
        self.database_label.setText(f"Database: {display_url}")
        self.database_label.setToolTip(display_url)

    def _on_section_changed(self, row: int) -> None:
        if row < 0:
            return
        section = SECTIONS[row]
        if self._connection_error is not None:
            self.page.show_section(section, "")
            self.page.show_unavailable(self._connection_error)
        elif self.database is None:
            self.page.show_section(section, "Connecting to the database…")
        else:
            self.page.show_section(section, "Counting…")
            self._load_count(section)

    def _load_count(self, section: Section) -> None:
        database = self.database
        assert database is not None

        async def load() -> None:
            try:
                count = await self._in_executor(count_rows, database, section.model)
            except SQLAlchemyError as exc:  # the server went away, a permission changed…
                if self.current_section is section:
                    self.page.show_unavailable(f"Could not count rows. {_first_line(exc)}")
                return
            # The user may have moved on while this ran; a late answer must not overwrite.
            if self.current_section is section:
                self.page.show_count(section, count)

        self._spawn(load())

    async def _in_executor(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            sys.excepthook(type(exc), exc, exc.__traceback__)
