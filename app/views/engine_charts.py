"""The Send Engines page's live charts: CPU %, memory and network per engine, queue depth,
and the delivery rate (sent, deferred, failed per second), over the last minutes.

pyqtgraph draws them (docs/development.md, "Charts", says why not QtCharts). Its plot items
leak when they are destroyed and made again on PySide6 >= 6.5, so every curve is made
once: per chart at construction, per engine the first time that engine is seen, and then
only ``setData`` changes them. An engine that went keeps its (emptied, hidden) curve for
when it comes back. The x axis is seconds before the latest sample.

Importing this module imports pyqtgraph and numpy (about half a second): the page does it
in the executor the first time it is shown, not at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette, QPen
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from app.engine.fleet_monitor import HISTORY_S, FleetSnapshot
from app.views import theme

# Distinct line colours for engines, one set for light and one for dark backgrounds.
LIGHT_LINES = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f", "#4e342e")
DARK_LINES = ("#64b5f6", "#ffb74d", "#ce93d8", "#4dd0e1", "#f48fb1", "#aed581", "#bcaaa4")
MIB = 1024 * 1024
KIB = 1024
HOST_NETWORK_TEXT = "n/a (host network)"


@dataclass
class Chart:
    """One plot and the curves made for it, by name."""

    widget: pg.PlotWidget
    curves: dict[str, pg.PlotDataItem]
    note: pg.TextItem  # a word over the plot (e.g. "n/a (host network)"), made once


class EngineCharts(QWidget):
    """Five small charts; ``update_from(history)`` with the monitor's snapshots.

    Legends are text, not pyqtgraph's legend boxes (which cover the lines of a small
    chart): the engines' colours in a line above the charts, the delivery rate's in its
    title.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("engineCharts")
        self._legend_names: tuple[str, ...] = ()
        self._span = 0.0  # minutes the x axes show
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        self.legend = QLabel()
        self.legend.setObjectName("engineLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self._grid = grid
        grid.addWidget(self.legend, 0, 0, 1, 3)
        grid.setRowStretch(1, 1)
        grid.setRowStretch(2, 1)
        self._charts: list[Chart] = []

    # The charts, in the order they are made: (title, row, column, column span).
    PLAN = (
        ("CPU %", 1, 0, 1),
        ("Memory (MiB, less file cache)", 1, 1, 1),
        ("Network in + out (KiB/s)", 1, 2, 1),
        ("Queue depth (messages waiting)", 2, 0, 1),
        ("Delivery rate (per s)", 2, 1, 2),
    )

    def build_next(self) -> bool:
        """Make the next chart; False once all are made. A plot costs ~25 ms to make:
        the page makes one per turn of the event loop, not all five in one."""
        if len(self._charts) == len(self.PLAN):
            return False
        title, row, column, span = self.PLAN[len(self._charts)]
        chart = self._chart(title)
        self._grid.addWidget(chart.widget, row, column, 1, span)
        self._charts.append(chart)
        if len(self._charts) == len(self.PLAN):
            self._add_curve(self.queue, "waiting", 0)
            for number, key in enumerate(("sent", "deferred", "failed")):
                self._add_curve(self.delivery, key, number)
            self.apply_palette()
        return True

    def build_all(self) -> None:
        while self.build_next():
            pass

    @property
    def ready(self) -> bool:
        return len(self._charts) == len(self.PLAN)

    @property
    def cpu(self) -> Chart:
        return self._charts[0]

    @property
    def memory(self) -> Chart:
        return self._charts[1]

    @property
    def network(self) -> Chart:
        return self._charts[2]

    @property
    def queue(self) -> Chart:
        return self._charts[3]

    @property
    def delivery(self) -> Chart:
        return self._charts[4]

    @property
    def charts(self) -> tuple[Chart, ...]:
        return tuple(self._charts)

    # ---------------------------------------------------------------- making them (once)

    def _chart(self, title: str) -> Chart:
        widget = pg.PlotWidget()
        widget.setObjectName(f"chart{title.split()[0]}")
        widget.setProperty("chartTitle", title)
        widget.setMinimumSize(160, 120)
        widget.setMenuEnabled(False)
        widget.setMouseEnabled(x=False, y=False)
        widget.hideButtons()  # the "A" auto-range button: the charts follow the data
        plot = widget.getPlotItem()
        plot.setTitle(title, size="9pt")
        # Horizontal lines only: a vertical grid doubles the cost of painting the axes.
        plot.showGrid(x=False, y=True, alpha=0.15)
        plot.setXRange(-HISTORY_S / 60, 0, padding=0)
        plot.enableAutoRange(axis="y")
        plot.setAutoVisible(y=True)
        plot.getAxis("left").setWidth(48)
        note = pg.TextItem("", anchor=(0.5, 0.5))
        plot.addItem(note, ignoreBounds=True)
        note.setVisible(False)
        return Chart(widget, {}, note)

    def _add_curve(self, chart: Chart, name: str, number: int) -> pg.PlotDataItem:
        curve = chart.widget.getPlotItem().plot([], [])
        curve.setPen(self._pen(chart, name, number))
        chart.curves[name] = curve
        return curve

    def _colour(self, chart: Chart, name: str, number: int) -> str:
        if chart is self.delivery:
            return {
                "sent": theme.success_colour(self.palette()),
                "deferred": theme.warning_colour(self.palette()),
                "failed": theme.error_colour(self.palette()),
            }[name]
        lines = DARK_LINES if theme.is_dark(self.palette()) else LIGHT_LINES
        return lines[number % len(lines)]

    def _pen(self, chart: Chart, name: str, number: int) -> QPen:
        pen: QPen = pg.mkPen(self._colour(chart, name, number), width=1.6)
        return pen

    def _show_legend(self, names: tuple[str, ...]) -> None:
        """The engines' names in their lines' colours (rewritten only when they change)."""
        if names == self._legend_names:
            return
        self._legend_names = names
        order = list(self.cpu.curves)
        self.legend.setText(
            "x: minutes ago (up to 10). Engines: "
            + "&nbsp;&nbsp;".join(
                f'<span style="color:{self._colour(self.cpu, n, order.index(n))}">'
                f"&#9644; {n}</span>"
                for n in names
            )
            if names
            else "No engine to chart yet."
        )

    def _engine_curve(self, chart: Chart, name: str) -> pg.PlotDataItem:
        curve = chart.curves.get(name)
        if curve is None:
            curve = self._add_curve(chart, name, len(chart.curves))
        return curve

    # ---------------------------------------------------------------- theme

    def apply_palette(self, palette: QPalette | None = None) -> None:
        """Background, axes and lines in the palette's colours (light or dark)."""
        if not self.ready:
            return
        palette = palette or self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        for chart in self.charts:
            chart.widget.setBackground(background)
            plot = chart.widget.getPlotItem()
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setPen(text)
                axis.setTextPen(text)
            plot.titleLabel.setText(
                str(chart.widget.property("chartTitle")), color=text.name(), size="9pt"
            )
            chart.note.setColor(palette.color(QPalette.ColorRole.PlaceholderText))
            for number, (name, curve) in enumerate(chart.curves.items()):
                curve.setPen(self._pen(chart, name, number))
        words = (
            f'<span style="color:{self._colour(self.delivery, key, 0)}">{key}</span>'
            for key in ("sent", "deferred", "failed")
        )
        self.delivery.widget.getPlotItem().titleLabel.setText(
            "Delivery rate per s: " + ", ".join(words), color=text.name(), size="9pt"
        )
        self._legend_names = ()
        self._show_legend(tuple(self.cpu.curves))

    # ---------------------------------------------------------------- data

    def update_from(self, history: Sequence[FleetSnapshot]) -> None:
        """Point every curve at the history's values (setData only; nothing is made but a
        curve for an engine seen for the first time)."""
        if not history or not self.ready:
            return
        latest = history[-1]
        # minutes before the latest sample
        x = np.fromiter(
            ((s.monotonic - latest.monotonic) / 60 for s in history), float, len(history)
        )
        # The axis covers what there is (at least a minute, at most the history's ten):
        # a page opened a minute ago does not squeeze its lines into a sliver.
        span = min(HISTORY_S / 60, max(1.0, -float(x[0])))
        if span != self._span:
            self._span = span
            for chart in self.charts:
                chart.widget.getPlotItem().setXRange(-span, 0, padding=0)
        names = sorted({e.name for s in history for e in s.engines})
        host_network = False
        for name in names:
            cpu = []
            memory = []
            network = []
            for snapshot in history:
                engine = next((e for e in snapshot.engines if e.name == name), None)
                cpu.append(_value(engine.cpu_percent if engine else None))
                memory.append(
                    _value(engine.memory_bytes / MIB if engine and engine.memory_bytes else None)
                )
                rates = (engine.net_rx_rate, engine.net_tx_rate) if engine else (None, None)
                network.append(
                    _value(None if None in rates else (sum(r or 0.0 for r in rates) / KIB))
                )
                host_network = host_network or bool(engine and engine.host_network)
            for chart, values in ((self.cpu, cpu), (self.memory, memory), (self.network, network)):
                curve = self._engine_curve(chart, short_name(name))
                curve.setData(x, np.array(values, float), connect="finite")
                curve.setVisible(True)
        shown = {short_name(n) for n in names}
        self._show_legend(tuple(n for n in self.cpu.curves if n in shown))
        for chart in (self.cpu, self.memory, self.network):
            for name, curve in chart.curves.items():
                if name not in shown:
                    curve.setData([], [])
                    curve.setVisible(False)
        self.queue.curves["waiting"].setData(
            x, np.fromiter((float(s.queue_depth) for s in history), float, len(history))
        )
        for key in ("sent", "deferred", "failed"):
            values = [_value(getattr(s, f"{key}_rate")) for s in history]
            self.delivery.curves[key].setData(x, np.array(values, float), connect="finite")
        network_unknown = host_network and not any(
            e.net_rx_rate is not None for s in history for e in s.engines
        )
        self._note(self.network, HOST_NETWORK_TEXT if network_unknown else "")
        self._note(self.cpu, "" if names else "no engines")

    def _note(self, chart: Chart, text: str) -> None:
        if chart.note.textItem.toPlainText() != text:
            chart.note.setText(text)
        view = chart.widget.getPlotItem().getViewBox()
        if text:
            (x0, x1), (y0, y1) = view.viewRange()
            chart.note.setPos((x0 + x1) / 2, (y0 + y1) / 2)
        chart.note.setVisible(bool(text))

    def item_count(self) -> int:
        """Graphics items in all charts (a test checks that updates add none)."""
        return sum(len(chart.widget.scene().items()) for chart in self.charts)


def _value(number: float | int | None) -> float:
    return float("nan") if number is None else float(number)


def short_name(container: str) -> str:
    """``postroom-sendengine-2`` reads ``sendengine-2`` in a legend."""
    return container.removeprefix("postroom-")
