"""The Send Engines page: every engine, live, with the controls of ``postroom sendengine``.

Every 2 s, while the page is visible, ``FleetMonitor.sample()`` runs in the executor (a
sample still running is not stacked with another) and its snapshot fills the engines and
campaigns tables (keyed updates: selection, current row and scroll position stay), the
selected engine's supervisor programs and the charts. Health changes (an engine
unhealthy, restarting, exited, gone, new; a campaign paused for failures) show in the
banner and the window's status bar, and each engine change becomes one audit entry.

Commands (start, stop, restart, scale, workers, supervisor, a one-off command, building
the image) run one at a time in the executor with a busy bar; Cancel stops waiting (Docker
offers no way to abort a call in flight, so what it was doing finishes on its own). A
failure is one sentence; an image that is missing offers "Build Image".
"""

from __future__ import annotations

import asyncio
import importlib
import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine.fleet import Fleet, ImageMissing
from app.engine.fleet_logs import LogStream
from app.engine.fleet_monitor import FleetMonitor, FleetSnapshot, checked, open_monitor
from app.services.engine_events import record_health_changes
from app.services.errors import PostroomError
from app.views import theme
from app.views.context import AppContext
from app.views.engine_parts import (
    CAMPAIGN_COLUMNS,
    ENGINE_COLUMNS,
    NODE_COLUMN,
    PROGRAM_COLUMNS,
    campaign_rows,
    engine_rows,
    program_rows,
    summary_text,
)
from app.views.focus import mark_focus
from app.views.log_viewer import LogViewer
from app.views.pages.base import Page, by_name
from app.views.pages.flow import FlowLayout
from app.views.table_model import Row, RowTableModel, selected_row

if TYPE_CHECKING:
    from app.views.engine_charts import EngineCharts

REFRESH_MS = 2_000
STATUS_HOLD_S = 15.0  # a command's outcome stays this long before the summary returns
NOTICE_MS = 60_000  # how long the health banner stays after the last change
LOG_LINES = 500  # the log viewer's first look back
ALL_ENGINES = 0


class _Progress(QObject):
    """Progress lines from an executor thread, delivered on the GUI thread (queued)."""

    line = Signal(str)


def _table(model: RowTableModel, name: str, accessible: str) -> QTableView:
    table = QTableView()
    table.setObjectName(name)
    table.setAccessibleName(accessible)
    table.setModel(model)
    table.setSortingEnabled(True)
    table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    mark_focus(table)
    return table


def _output_box(name: str) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setObjectName(name)
    box.setReadOnly(True)
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    box.setMaximumBlockCount(5_000)
    box.setPlaceholderText("The command's output shows here.")
    return box


class EnginesPage(Page):
    title = "Send Engines"
    summary = (
        "The send engines on this Docker host (DOCKER_HOST), refreshed every 2 s: their "
        "health, what they use and send, and the commands of `postroom sendengine`."
    )
    refresh_ms = REFRESH_MS

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.monitor: FleetMonitor | None = None
        self.snapshot: FleetSnapshot | None = None
        self.charts: EngineCharts | None = None
        self._charts_loading = False
        self._sampling = False
        self._operation = 0  # the running command's number; 0: none
        self._operations = 0
        self._sized = False
        self._progress = _Progress(self)
        self._progress.line.connect(self._progress_line)

        self.banner = QLabel()
        self.banner.setObjectName("healthBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.setVisible(False)
        self._banner_timer = QTimer(self)
        self._banner_timer.setSingleShot(True)
        self._banner_timer.setInterval(NOTICE_MS)
        self._banner_timer.timeout.connect(lambda: self.banner.setVisible(False))
        self.notices: list[str] = []

        self._build_toolbar()
        self._build_tables()
        self._build_tabs()
        split = QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("enginesSplit")
        split.setChildrenCollapsible(False)
        split.addWidget(self.tables)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        self.split = split
        self.body.addWidget(self.banner)
        self.body.addLayout(self.toolbar)
        self.body.addLayout(self.busy_row)
        self.body.addWidget(split, 1)
        self.body.addWidget(self.status)

        self.timer.setObjectName("enginesRefresh")
        self._set_busy(None)
        self._update_buttons()
        self._hold_status_until = 0.0  # a command's outcome stays readable until then
        context.database_changed.connect(self._database_changed)

    def _database_changed(self) -> None:
        # The campaigns and heartbeats come from the database: watch again with the new one.
        self.monitor = None

    def _build_toolbar(self) -> None:
        self.start_count = QSpinBox()
        self.start_count.setObjectName("startCount")
        self.start_count.setRange(1, 1000)
        self.start_count.setValue(1)
        self.start_count.setAccessibleName("Engines to start")
        self.start_count.setPrefix("× ")
        self.start_button = QPushButton("&Start")
        self.start_button.setObjectName("startEnginesButton")
        self.start_button.setToolTip("Have this many engines running (instances 1..N).")
        self.stop_button = QPushButton("Sto&p")
        self.stop_button.setObjectName("stopEnginesButton")
        self.stop_button.setToolTip("Stop every engine gracefully: messages in flight finish.")
        self.restart_button = QPushButton("&Restart")
        self.restart_button.setObjectName("restartEnginesButton")
        self.restart_button.setToolTip("Stop, then start as many with today's image.")
        self.scale_count = QSpinBox()
        self.scale_count.setObjectName("scaleCount")
        self.scale_count.setRange(0, 1000)
        self.scale_count.setAccessibleName("Engines after scaling")
        self.scale_button = QPushButton("Apply Sca&le")
        self.scale_button.setObjectName("scaleButton")
        self.scale_button.setToolTip("Add the next instances or remove the highest.")
        self.build_button = QPushButton("&Build Image")
        self.build_button.setObjectName("buildImageButton")
        self.build_button.setToolTip("Build the send-engine image on this Docker engine.")
        self.build_button.setVisible(False)
        self.start_button.clicked.connect(self.start_engines)
        self.stop_button.clicked.connect(self.stop_engines)
        self.restart_button.clicked.connect(self.restart_engines)
        self.scale_button.clicked.connect(self.scale_engines)
        self.build_button.clicked.connect(self.build_image)
        self.toolbar = FlowLayout()
        widgets: tuple[QWidget, ...] = (
            self.start_button,
            self.start_count,
            self.stop_button,
            self.restart_button,
        )
        for widget in widgets:
            self.toolbar.addWidget(widget)
        self.toolbar.addSpacing(12)
        scale_label = QLabel("Engines:")
        scale_label.setBuddy(self.scale_count)
        widgets = (scale_label, self.scale_count, self.scale_button, self.build_button)
        for widget in widgets:
            self.toolbar.addWidget(widget)
        self.toolbar.addStretch(1)

        self.busy_bar = QProgressBar()
        self.busy_bar.setObjectName("busyBar")
        self.busy_bar.setRange(0, 0)  # busy: Docker says nothing of how far it is
        self.busy_bar.setMaximumWidth(160)
        self.busy_bar.setTextVisible(False)
        self.busy_text = QLabel()
        self.busy_text.setObjectName("busyText")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelOperationButton")
        self.cancel_button.setToolTip(
            "Stop waiting; what Docker was asked to do may still finish in the background."
        )
        self.cancel_button.clicked.connect(self.cancel_operation)
        self.busy_row = QHBoxLayout()
        self.busy_row.addWidget(self.busy_bar)
        self.busy_row.addWidget(self.busy_text, 1)
        self.busy_row.addWidget(self.cancel_button)

    def _build_tables(self) -> None:
        self.engines_model = RowTableModel(ENGINE_COLUMNS, self, key=by_name, sort_column=0)
        self.engines_table = _table(self.engines_model, "enginesTable", "Send engines")
        self.engines_table.setColumnHidden(NODE_COLUMN, True)
        self.engines_table.selectionModel().selectionChanged.connect(self._engine_selected)
        self.campaigns_model = RowTableModel(CAMPAIGN_COLUMNS, self, key=by_name, sort_column=0)
        self.campaigns_table = _table(
            self.campaigns_model, "activeCampaignsTable", "Active campaigns"
        )
        self.campaigns_table.selectionModel().selectionChanged.connect(
            lambda *_: self._campaign_selected()
        )
        self.tables = QSplitter(Qt.Orientation.Horizontal)
        self.tables.setObjectName("enginesTables")
        self.tables.setChildrenCollapsible(False)
        for title, table in (
            ("Engines", self.engines_table),
            ("Active campaigns", self.campaigns_table),
        ):
            holder = QWidget()
            column = QVBoxLayout(holder)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(2)
            label = QLabel(f"<b>{title}</b>")
            label.setBuddy(table)
            column.addWidget(label)
            column.addWidget(table, 1)
            self.tables.addWidget(holder)
        self.tables.setStretchFactor(0, 1)
        self.tables.setStretchFactor(1, 1)

    def _build_tabs(self) -> None:
        self.tabs = QTabWidget()
        self.tabs.setObjectName("enginesTabs")
        self.charts_holder = QWidget()
        self.charts_layout = QVBoxLayout(self.charts_holder)
        self.charts_layout.setContentsMargins(4, 4, 4, 4)
        self.charts_placeholder = QLabel("The charts appear with the first samples…")
        self.charts_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.charts_layout.addWidget(self.charts_placeholder)
        self.tabs.addTab(self.charts_holder, "&Charts")
        self.tabs.addTab(self._programs_tab(), "Pro&grams")
        self.tabs.addTab(self._workers_tab(), "&Workers")
        self.tabs.addTab(self._command_tab(), "Co&mmand")
        self.log_viewer = LogViewer(self.context, self._open_log_stream)
        self.log_viewer.setObjectName("logViewer")
        self.tabs.addTab(self.log_viewer, "L&ogs")

    def _programs_tab(self) -> QWidget:
        tab = QWidget()
        layout = QHBoxLayout(tab)
        self.programs_model = RowTableModel(PROGRAM_COLUMNS, self, key=by_name, sort_column=0)
        self.programs_table = _table(self.programs_model, "programsTable", "Supervisor programs")
        self.programs_table.selectionModel().selectionChanged.connect(
            lambda *_: self._update_buttons()
        )
        side = QVBoxLayout()
        self.programs_label = QLabel("Select an engine above to see its programs.")
        self.programs_label.setObjectName("programsLabel")
        self.programs_label.setWordWrap(True)
        side.addWidget(self.programs_label)
        buttons = QHBoxLayout()
        self.supervisor_buttons: dict[str, QPushButton] = {}
        for action in ("status", "start", "stop", "restart"):
            button = QPushButton(action.title())
            button.setObjectName(f"supervisor{action.title()}Button")
            button.setToolTip(
                f"supervisorctl {action} on the selected engine, for the selected program "
                "(all programs when none is selected)."
            )
            button.clicked.connect(lambda _checked=False, a=action: self.supervisor(a))
            buttons.addWidget(button)
            self.supervisor_buttons[action] = button
        buttons.addStretch(1)
        side.addLayout(buttons)
        self.supervisor_output = _output_box("supervisorOutput")
        side.addWidget(self.supervisor_output, 1)
        layout.addWidget(self.programs_table, 2)
        layout.addLayout(side, 3)
        return tab

    def _workers_tab(self) -> QWidget:
        tab = QWidget()
        form = QFormLayout(tab)
        self.workers_campaign = QComboBox()
        self.workers_campaign.setObjectName("workersCampaign")
        self.workers_campaign.setMinimumContentsLength(24)
        self.workers_engine = QComboBox()
        self.workers_engine.setObjectName("workersEngine")
        for combo in (self.workers_campaign, self.workers_engine):
            combo.setMaximumWidth(420)
        self.workers_count = QSpinBox()
        self.workers_count.setObjectName("workersCount")
        self.workers_count.setRange(0, 500)
        self.workers_count.setValue(5)
        self.workers_button = QPushButton("Apply &Workers")
        self.workers_button.setObjectName("workersButton")
        self.workers_button.clicked.connect(self.set_workers)
        row = QHBoxLayout()
        row.addWidget(self.workers_count)
        row.addWidget(self.workers_button)
        row.addStretch(1)
        form.addRow("Campaign:", self.workers_campaign)
        form.addRow("On engine:", self.workers_engine)
        form.addRow("Extra workers:", row)
        hint = QLabel(
            "Extra workers run as a supervisor program in that engine, for that campaign "
            "only; 0 removes them."
        )
        hint.setWordWrap(True)
        hint.setForegroundRole(hint.foregroundRole().PlaceholderText)
        form.addRow(hint)
        return tab

    def _command_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        row = QHBoxLayout()
        self.command_engine = QComboBox()
        self.command_engine.setObjectName("commandEngine")
        self.command_line = QLineEdit()
        self.command_line.setObjectName("commandLine")
        self.command_line.setPlaceholderText("e.g. supervisorctl status  (no shell: split as argv)")
        self.command_line.returnPressed.connect(self.run_command)
        self.command_button = QPushButton("R&un")
        self.command_button.setObjectName("runCommandButton")
        self.command_button.clicked.connect(self.run_command)
        row.addWidget(QLabel("In:"))
        row.addWidget(self.command_engine)
        row.addWidget(self.command_line, 1)
        row.addWidget(self.command_button)
        layout.addLayout(row)
        self.command_output = _output_box("commandOutput")
        layout.addWidget(self.command_output, 1)
        return tab

    # ---------------------------------------------------------------- refreshing

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)  # refreshes once now, then every REFRESH_MS
        if self.charts is None and not self._charts_loading:
            self._charts_loading = True
            self.context.spawn(self._load_charts(), on_error=self._charts_failed)

    def hideEvent(self, event: QHideEvent) -> None:
        if not self.window().isVisible():
            # The window closed: followed logs end (another section keeps them going).
            self.log_viewer.stop()
        super().hideEvent(event)

    def refresh(self) -> None:
        # A sample still running (a slow daemon) is not stacked with another.
        if self._sampling or not self.isVisible():
            return
        self._sampling = True
        self.context.spawn(self._sample(), on_error=self._sample_failed)

    async def _sample(self) -> None:
        try:
            monitor = self.monitor
            if monitor is None:
                database = self.context.database
                opened: FleetMonitor = await self.context.in_executor(
                    checked, lambda: open_monitor(database)
                )
                if not shiboken6.isValid(self):
                    return
                self.monitor = monitor = opened
            snapshot = await self.context.in_executor(checked, monitor.sample)
        except PostroomError:
            self.monitor = None  # connect again next time (Docker may be back)
            raise
        finally:
            self._sampling = False
        if shiboken6.isValid(self):
            self.show_snapshot(snapshot)

    def _sample_failed(self, message: str) -> None:
        if not shiboken6.isValid(self):
            return
        self._sampling = False
        self.show_status(_sentence(message), error=True)

    def show_snapshot(self, snapshot: FleetSnapshot) -> None:
        """Fill the page from one sample (tables keep selection and scroll position)."""
        self.snapshot = snapshot
        self.engines_table.setColumnHidden(NODE_COLUMN, snapshot.mode != "swarm")
        self.engines_model.set_rows(engine_rows(snapshot))
        self.campaigns_model.set_rows(campaign_rows(snapshot))
        if not self._sized and snapshot.engines:
            # Columns fit the first rows; later samples leave widths a person dragged.
            self._sized = True
            for table in (self.engines_table, self.campaigns_table):
                table.resizeColumnsToContents()
                for column in range(table.model().columnCount()):
                    # room for the numbers to grow (a progress of 9% becomes 47%)
                    table.setColumnWidth(column, table.columnWidth(column) + 8)
                header = table.horizontalHeader()
                header.setStretchLastSection(False)
                header.setStretchLastSection(True)
        self._show_programs()
        self._fill_choices(snapshot)
        if self.charts is not None and self.monitor is not None:
            self.charts.update_from(self.monitor.history)
        if snapshot.changes:
            self._announce(snapshot)
        if not self._operation and time.monotonic() >= self._hold_status_until:
            self.show_status(summary_text(snapshot))
        self._update_buttons()

    def _fill_choices(self, snapshot: FleetSnapshot) -> None:
        engines = [(e.instance, e.name) for e in snapshot.engines]
        _fill(self.workers_engine, [(name, instance) for instance, name in engines])
        _fill(
            self.command_engine,
            [("All running engines", ALL_ENGINES)] + [(n, i) for i, n in engines],
        )
        _fill(self.workers_campaign, [(c.name, c.name) for c in snapshot.campaigns])
        if engines != getattr(self, "_log_engines", None):
            self._log_engines = engines
            self.log_viewer.set_engines(engines)
        if not self.scale_count.hasFocus() and self.scale_count.value() == 0:
            self.scale_count.setValue(len(engines))

    # ---------------------------------------------------------------- charts

    async def _load_charts(self) -> None:
        # pyqtgraph and numpy take about half a second to import: not on the GUI thread.
        module = await self.context.in_executor(importlib.import_module, "app.views.engine_charts")
        if not shiboken6.isValid(self):
            return
        charts = module.EngineCharts(self.charts_holder)
        charts.setVisible(False)
        self.charts_layout.addWidget(charts)
        while charts.build_next():
            await asyncio.sleep(0)  # one chart per turn: the window stays responsive
            if not shiboken6.isValid(self):
                return
        self.charts_layout.removeWidget(self.charts_placeholder)
        self.charts_placeholder.deleteLater()
        charts.setVisible(True)
        self.charts = charts
        if self.monitor is not None and self.monitor.history:
            charts.update_from(self.monitor.history)

    def _charts_failed(self, message: str) -> None:
        self._charts_loading = False
        if shiboken6.isValid(self):
            self.charts_placeholder.setText(f"The charts cannot be shown: {message}")

    def changeEvent(self, event: Any) -> None:
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange and self.charts is not None:
            self.charts.apply_palette(self.palette())
            if self.monitor is not None:
                self.charts.update_from(self.monitor.history)

    # ---------------------------------------------------------------- health notices

    def _announce(self, snapshot: FleetSnapshot) -> None:
        sentences = [change.sentence for change in snapshot.changes]
        self.notices = (self.notices + sentences)[-4:]
        worst = any(
            c.change in ("unhealthy", "gone", "auto-paused")
            or (c.change == "state" and c.after != "running")
            for c in snapshot.changes
        )
        self.banner.setText("\n".join(self.notices))
        self.banner.setStyleSheet(
            f"color: {theme.error_colour() if worst else theme.warning_colour()}; "
            + theme.banner_style("error" if worst else "warning")
        )
        self.banner.setVisible(True)
        self._banner_timer.start()
        self.context.user_error.emit(" ".join(sentences))
        changes = [c.as_dict() for c in snapshot.changes if c.kind == "engine"]
        if changes and self.context.database is not None:
            self.context.spawn(
                self.context.write(record_health_changes, changes),
                on_error=lambda msg: self.show_status(msg, error=True),
            )

    # ---------------------------------------------------------------- selection

    def selected_engine(self) -> Row | None:
        return selected_row(self.engines_table)

    def _engine_selected(self, *_args: object) -> None:
        self._show_programs()
        row = self.selected_engine()
        if row is not None:
            _choose(self.workers_engine, row["instance"])
            _choose(self.command_engine, row["instance"])
        self._update_buttons()

    def _campaign_selected(self) -> None:
        row = selected_row(self.campaigns_table)
        if row is not None:
            _choose(self.workers_campaign, row["name"])
        self._update_buttons()

    def _show_programs(self) -> None:
        row = self.selected_engine()
        instance = int(row["instance"]) if row else None
        rows = program_rows(self.snapshot, instance) if self.snapshot else []
        self.programs_model.set_rows(rows)
        if row is None:
            self.programs_label.setText("Select an engine above to see its programs.")
        elif rows:
            self.programs_label.setText(f"Supervisor programs in {row['name']}:")
        else:
            self.programs_label.setText(f"{row['name']} reports no programs (is it running?).")

    def _update_buttons(self) -> None:
        idle = not self._operation
        connected = self.monitor is not None
        engines = bool(self.snapshot and self.snapshot.engines)
        running = bool(self.snapshot and any(e.state == "running" for e in self.snapshot.engines))
        for button in (self.start_button, self.scale_button, self.build_button):
            button.setEnabled(idle and connected)
        self.stop_button.setEnabled(idle and connected and engines)
        self.restart_button.setEnabled(idle and connected and engines)
        engine = self.selected_engine()
        for button in self.supervisor_buttons.values():
            button.setEnabled(idle and engine is not None and engine["state"] == "running")
        self.workers_button.setEnabled(idle and running and self.workers_campaign.count() > 0)
        self.command_button.setEnabled(idle and running)

    # ---------------------------------------------------------------- commands

    def _fleet(self) -> Fleet:
        if self.monitor is None:
            raise PostroomError("the page is not connected to Docker yet; the line below says why.")
        return self.monitor.fleet

    def run_operation(
        self,
        what: str,
        work: Callable[[Callable[[str], None]], str],
        after: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work(progress)`` in the executor; its sentence (or error) in the status;
        ``after`` on the GUI thread once it ended, either way (e.g. to show output)."""
        if self._operation:
            return
        self._operations += 1
        self._operation = number = self._operations
        self._set_busy(what)

        async def go() -> None:
            try:
                done = await self.context.in_executor(
                    checked, lambda: work(self._progress.line.emit)
                )
            except PostroomError as exc:
                if after is not None and shiboken6.isValid(self):
                    after()
                if shiboken6.isValid(self) and self._operation == number:
                    self._finish(str(exc), error=True, missing=isinstance(exc, ImageMissing))
                elif shiboken6.isValid(self):
                    self._hold_status_until = time.monotonic() + STATUS_HOLD_S
                    self.show_status(f"{what} (cancelled) failed afterwards: {exc}", error=True)
                return
            if not shiboken6.isValid(self):
                return
            if after is not None:
                after()
            if self._operation == number:
                self._finish(done)
            else:
                self._hold_status_until = time.monotonic() + STATUS_HOLD_S
                self.show_status(f"{what} finished after it was cancelled: {done}")
            self.refresh()

        self.context.spawn(go(), on_error=lambda msg: self._finish(msg, error=True))

    def _finish(self, message: str, *, error: bool = False, missing: bool = False) -> None:
        if not shiboken6.isValid(self):
            return
        self._operation = 0
        self._hold_status_until = time.monotonic() + STATUS_HOLD_S
        self._set_busy(None)
        if missing:
            self.build_button.setVisible(True)
        self.show_status(_sentence(message), error=error)
        self._update_buttons()

    def cancel_operation(self) -> None:
        if not self._operation:
            return
        what = self.busy_text.text()
        self._operation = 0
        self._hold_status_until = time.monotonic() + STATUS_HOLD_S
        self._set_busy(None)
        self.show_status(
            f"Stopped waiting for “{what}”; Docker may still finish it, and the tables "
            "show what it did."
        )
        self._update_buttons()

    def _set_busy(self, what: str | None) -> None:
        for widget in (self.busy_bar, self.busy_text, self.cancel_button):
            widget.setVisible(what is not None)
        self.busy_text.setText(what or "")
        self._update_buttons()

    def _progress_line(self, line: str) -> None:
        if self._operation:
            self.busy_text.setText(line[:200])

    def _with_progress(self, progress: Callable[[str], None]) -> Fleet:
        fleet = self._fleet()
        fleet.progress = progress
        return fleet

    async def _secrets(self) -> Any:
        """The database URL and vault key the engines are started with (never shown)."""
        from app.engine.fleet_secrets import EngineSecrets

        database = self.context.require_database()
        vault = await self.context.cipher()
        return EngineSecrets(database.url, vault.key)

    def _with_secrets(self, what: str, work: Callable[[Fleet, Callable[[str], None]], str]) -> None:
        """Commands that make containers need the vault key: read it first (executor)."""

        async def go() -> None:
            secrets = await self._secrets()
            fleet = self._fleet()
            fleet.secrets = secrets  # a container plan made without the key is made again
            self.run_operation(what, lambda progress: work(self._with_progress(progress), progress))

        self.context.spawn(go(), on_error=lambda msg: self.show_status(_sentence(msg), error=True))

    def start_engines(self) -> None:
        count = self.start_count.value()

        def work(fleet: Fleet, _progress: Callable[[str], None]) -> str:
            started = fleet.start(count)
            return f"{count} send engine(s) running; started: {_names(started)}."

        self._with_secrets(f"Starting {count} engine(s)…", work)

    def stop_engines(self) -> None:
        self.run_operation(
            "Stopping the engines (messages in flight finish first)…",
            lambda progress: f"Stopped: {_names(self._with_progress(progress).stop())}.",
        )

    def restart_engines(self) -> None:
        def work(fleet: Fleet, _progress: Callable[[str], None]) -> str:
            if hasattr(fleet, "plan"):
                fleet.plan()  # the image and the database are checked before anything stops
            return f"Restarted: {_names(fleet.restart(None))}."

        self._with_secrets("Restarting the engines…", work)

    def scale_engines(self) -> None:
        count = self.scale_count.value()

        def work(fleet: Fleet, _progress: Callable[[str], None]) -> str:
            added, removed = fleet.scale(count)
            return f"{count} send engine(s); added: {_names(added)}; removed: {_names(removed)}."

        self._with_secrets(f"Scaling to {count} engine(s)…", work)

    def set_workers(self) -> None:
        campaign = str(self.workers_campaign.currentData() or "")
        instance = int(self.workers_engine.currentData() or 1)
        count = self.workers_count.value()
        if not campaign:
            self.show_status("Choose a campaign for the extra workers first.", error=True)
            return

        def work(progress: Callable[[str], None]) -> str:
            self._with_progress(progress).workers(campaign, count, instance)
            if count == 0:
                return f"Extra workers for {campaign} removed from engine {instance}."
            return f"{count} extra worker(s) for {campaign} run on engine {instance}."

        self.run_operation(f"Setting workers for {campaign}…", work)

    def supervisor(self, action: str) -> None:
        engine = self.selected_engine()
        if engine is None:
            return
        program_row = selected_row(self.programs_table)
        program = str(program_row["name"]) if program_row else None
        instance = int(engine["instance"])
        target = program or "all"
        output: list[str] = []

        def work(progress: Callable[[str], None]) -> str:
            results = self._with_progress(progress).supervisor(action, program, instance)
            output.extend(r.output.rstrip() for r in results)
            failed = [r.name for r in results if r.exit_code != 0]
            if failed and action != "status":
                raise PostroomError(
                    f"The supervisorctl {action} {target} failed in {_names(failed)}; its output "
                    "is beside the programs."
                )
            return f"Done: supervisorctl {action} {target} in {engine['name']}."

        self.run_operation(
            f"supervisorctl {action} {target}…",
            work,
            lambda: _show_output(self.supervisor_output, "\n".join(output)),
        )

    def run_command(self) -> None:
        text = self.command_line.text().strip()
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            self.show_status(
                f"The command cannot be split into words ({exc}); close the quote.", error=True
            )
            return
        if not argv:
            self.show_status(
                "Type the command to run first, e.g. supervisorctl status.", error=True
            )
            return
        instance = int(self.command_engine.currentData() or ALL_ENGINES) or None
        output: list[str] = []

        def work(progress: Callable[[str], None]) -> str:
            results = self._with_progress(progress).exec(argv, instance)
            for result in results:
                head = f"== {result.name} (exit {result.exit_code})"
                output.append("\n".join(p for p in (head, result.output.rstrip()) if p))
            failed = [r.name for r in results if r.exit_code != 0]
            if failed:
                return f"The command {argv[0]} failed in {_names(failed)}; its output is below."
            return f"Ran {argv[0]} in {len(results)} engine(s)."

        self.run_operation(
            f"Running {argv[0]}…",
            work,
            lambda: _show_output(self.command_output, "\n".join(output)),
        )

    def build_image(self) -> None:
        def work(progress: Callable[[str], None]) -> str:
            from app.engine.docker_api import connect
            from app.engine.images import build_engine_image, find_image

            # Where no registry is reachable, the base made by `postroom sendengine base`.
            local_base = "postroom/base:bookworm"
            if find_image(connect(), local_base) is not None:
                made = build_engine_image(base=local_base, progress=progress)
            else:
                made = build_engine_image(progress=progress)
            verb = "was built" if made.built else "is up to date"
            return f"The send-engine image {made.tags[0]} {verb}; start the engines now."

        self.build_button.setVisible(False)
        self.run_operation("Building the send-engine image…", work)

    # ---------------------------------------------------------------- logs

    def _open_log_stream(self, instance: int | None, lines: int) -> LogStream:
        """For the log viewer (called from its executor work)."""
        return checked(lambda: self._fleet().logs(follow=True, lines=lines, instance=instance))


# ---------------------------------------------------------------- small helpers


def _names(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def _sentence(message: str) -> str:
    """Service sentences start lower-case (they follow "postroom: " in the CLI)."""
    text = message.strip()
    return text[:1].upper() + text[1:] if text else text


def _show_output(box: QPlainTextEdit, text: str) -> None:
    if shiboken6.isValid(box):
        box.setPlainText(text or "(no output)")


def _fill(combo: QComboBox, items: list[tuple[str, Any]]) -> None:
    """Set a combo's items only when they changed, keeping the chosen one."""
    current = [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]
    if current == items:
        return
    chosen = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    for text, data in items:
        combo.addItem(text, data)
    _choose(combo, chosen)
    combo.blockSignals(False)


def _choose(combo: QComboBox, data: Any) -> None:
    index = combo.findData(data)
    if index >= 0:
        combo.setCurrentIndex(index)
