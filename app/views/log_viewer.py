"""The send engines' log viewer: all engines or one, followed live, filtered and searched.

Reading: ``open_stream`` (which asks Docker for the containers) and the iteration of the
``LogStream`` it returns both run on a thread of the viewer's own, never on the Qt thread.
A follow lasts as long as the user wants, so it does not take one of the executor's few
workers. The thread parses each line (``app.engine.log_lines``) and appends it to a deque
bounded at the kept-lines limit; a QTimer on the Qt thread takes everything there every
150 ms and hands the model one batch. However fast an engine writes, the Qt thread does one
bounded piece of work per tick, and memory never holds more than the limit twice (the
waiting deque and the model).

Showing: a QListView over ``LogLineModel``, not a QPlainTextEdit with a maximum block
count. A text document re-lays out text on every filter change and cannot hide lines
cheaply; the model keeps the kept lines in a ``deque(maxlen=N)`` and the shown (filtered)
ones in a second deque that only ever refers to the same entries, so a filter change is one
pass over at most N entries and an arriving batch costs only its own size. With uniform row
sizes the view lays out nothing it does not paint.

Scrolling: the view follows the newest line only while it is at the bottom. Scrolling up
un-sticks it (it then stays on the lines being read even while the oldest are dropped from
the top); scrolling back to the bottom or "Jump to latest" sticks it again. Pause keeps
reading but leaves the view as it is until resumed.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSettings,
    Qt,
    QTimer,
)
from PySide6.QtGui import QBrush, QColor, QFontDatabase, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.fleet_logs import LogLine, LogStream
from app.engine.log_lines import LEVELS, parse_line
from app.services.errors import PostroomError
from app.views import theme
from app.views.context import AppContext

# The kept-lines limit is a per-user console preference, not data: it lives in QSettings
# (organisation and application "Postroom", set in app.views.app).
KEPT_LINES_KEY = "logViewer/keptLines"
DEFAULT_KEPT_LINES = 5_000
MIN_KEPT_LINES = 500
MAX_KEPT_LINES = 200_000
DRAIN_MS = 150
FILTER_DELAY_MS = 200  # typing in the filter box rebuilds once the typing pauses
ALL_ENGINES = "All engines"
LEVEL_ROLE = Qt.ItemDataRole.UserRole + 1
RAW_ROLE = Qt.ItemDataRole.UserRole + 2

Index = QModelIndex | QPersistentModelIndex

LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}


def kept_lines_setting() -> int:
    """The saved limit, within bounds; the default when none (or nonsense) is saved."""
    value = QSettings().value(KEPT_LINES_KEY, DEFAULT_KEPT_LINES)
    try:
        limit = int(str(value))
    except ValueError:
        return DEFAULT_KEPT_LINES
    return max(MIN_KEPT_LINES, min(MAX_KEPT_LINES, limit))


def save_kept_lines_setting(limit: int) -> None:
    QSettings().setValue(KEPT_LINES_KEY, limit)


class LogEntry:
    """One line as read: made on the reading thread, never changed afterwards."""

    __slots__ = ("container", "level", "raw", "seq", "text")

    def __init__(self, seq: int, line: LogLine) -> None:
        parsed = parse_line(line.text)
        self.seq = seq  # reading order: tells which shown rows the kept deque has dropped
        self.container = line.container
        self.level = parsed.level
        self.raw = line.text
        self.text = parsed.text


# ---------------------------------------------------------------- the model


class LogLineModel(QAbstractListModel):
    """The last ``limit`` lines read, and those of them the filters let through."""

    def __init__(self, limit: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._limit = limit
        self._kept: deque[LogEntry] = deque(maxlen=limit)
        # A subsequence of _kept, in order; no maxlen of its own: append() drops the
        # entries _kept has dropped, telling the view, so rows and signals stay in step.
        self._shown: deque[LogEntry] = deque()
        self._level: str | None = None
        self._text = ""
        self._search = ""
        self._show_container = False
        self._colours = _level_colours()

    # -------------------------------------------------------------- Qt interface

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._shown)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._shown):
            return None
        entry = self._shown[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.line_text(entry)
        if role == Qt.ItemDataRole.ForegroundRole:
            colour = self._colours.get(entry.level)
            return QBrush(colour) if colour is not None else None
        if role == Qt.ItemDataRole.BackgroundRole:
            if self._search and self._search in self.line_text(entry).lower():
                return QBrush(self._colours["match"])
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            # The whole line as written: a long row is elided, a JSON record made readable.
            return entry.raw
        if role == LEVEL_ROLE:
            return entry.level
        if role == RAW_ROLE:
            return entry.raw
        return None

    # -------------------------------------------------------------- lines

    def line_text(self, entry: LogEntry) -> str:
        return f"{entry.container}  {entry.text}" if self._show_container else entry.text

    def append(self, entries: list[LogEntry]) -> int:
        """Add a batch in reading order; the number of rows dropped from the top."""
        if not entries:
            return 0
        entries = entries[-self._limit :]
        self._kept.extend(entries)  # the deque drops the oldest beyond the limit
        oldest_kept = self._kept[0].seq
        dropped = 0
        for entry in self._shown:
            if entry.seq >= oldest_kept:
                break
            dropped += 1
        if dropped:
            self.beginRemoveRows(QModelIndex(), 0, dropped - 1)
            for _ in range(dropped):
                self._shown.popleft()
            self.endRemoveRows()
        passing = [entry for entry in entries if self._passes(entry)]
        if passing:
            first = len(self._shown)
            self.beginInsertRows(QModelIndex(), first, first + len(passing) - 1)
            self._shown.extend(passing)
            self.endInsertRows()
        return dropped

    def clear(self) -> None:
        self.beginResetModel()
        self._kept.clear()
        self._shown.clear()
        self.endResetModel()

    def kept_count(self) -> int:
        return len(self._kept)

    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        """Keep at most ``limit`` lines from now on (the newest, if there are more)."""
        if limit == self._limit:
            return
        self._limit = limit
        self._kept = deque(self._kept, maxlen=limit)
        self._refilter()

    def shown_lines(self) -> Iterator[str]:
        """The shown lines as the engines wrote them (JSON stays JSON), container first
        when the lines come from several engines: what Save writes."""
        for entry in self._shown:
            yield self._as_written(entry)

    def written_line(self, row: int) -> str:
        """Row ``row`` as Save writes it (for copying)."""
        return self._as_written(self._shown[row])

    def _as_written(self, entry: LogEntry) -> str:
        return f"{entry.container}  {entry.raw}" if self._show_container else entry.raw

    # -------------------------------------------------------------- filters and search

    def set_filter(self, level: str | None, text: str) -> None:
        """Show only lines of ``level`` (None: any) that contain ``text`` (any case)."""
        text = text.strip().lower()
        if (level, text) == (self._level, self._text):
            return
        self._level, self._text = level, text
        self._refilter()

    def is_filtered(self) -> bool:
        return self._level is not None or bool(self._text)

    def set_show_container(self, show: bool) -> None:
        if show == self._show_container:
            return
        self._show_container = show
        self._refilter()  # the container name is part of the text the filter searches

    def set_search(self, text: str) -> None:
        self._search = text.strip().lower()
        if self._shown:
            self.dataChanged.emit(
                self.index(0), self.index(len(self._shown) - 1), [Qt.ItemDataRole.BackgroundRole]
            )

    def next_match(self, after: int) -> int | None:
        """The first row after ``after`` containing the search text, wrapping; or None."""
        if not self._search or not self._shown:
            return None
        count = len(self._shown)
        start = (after + 1) % count
        order = itertools.chain(
            zip(range(start, count), itertools.islice(self._shown, start, None), strict=True),
            zip(range(start), self._shown, strict=False),
        )
        for row, entry in order:
            if self._search in self.line_text(entry).lower():
                return row
        return None

    def _passes(self, entry: LogEntry) -> bool:
        # A level means that level and the more severe ones, as journalctl -p does.
        if self._level is not None and LEVEL_RANK.get(entry.level, 1) < LEVEL_RANK[self._level]:
            return False
        return not self._text or self._text in self.line_text(entry).lower()

    def _refilter(self) -> None:
        self.beginResetModel()
        self._shown = deque(entry for entry in self._kept if self._passes(entry))
        self.endResetModel()


def _level_colours() -> dict[str, QColor]:
    palette = QApplication.palette()
    muted = palette.color(palette.ColorGroup.Disabled, palette.ColorRole.WindowText)
    match = QColor(palette.color(palette.ColorRole.Highlight))
    match.setAlpha(60)  # a wash: the row's level colour stays readable on it
    return {
        "debug": muted,
        "warning": QColor(theme.warning_colour(palette)),
        "error": QColor(theme.error_colour(palette)),
        "match": match,
    }


# ---------------------------------------------------------------- reading


class _Reader:
    """One follow: opens the stream and iterates it on a thread of its own."""

    def __init__(
        self,
        open_stream: Callable[[int | None, int], LogStream],
        instance: int | None,
        lines: int,
    ) -> None:
        self.waiting: deque[LogEntry] = deque(maxlen=lines)  # appended there, taken here
        self.ended: str | None = None  # set once, by the thread, as its last act
        self._open_stream = open_stream
        self._instance = instance
        self._lines = lines
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._stream: LogStream | None = None
        self.thread = threading.Thread(target=self._run, name="log-viewer", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """End the follow; safe from any thread, more than once. The thread ends within
        the stream's polling interval (0.2 s), or as soon as a slow open returns."""
        with self._lock:
            self._stopping.set()
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _run(self) -> None:
        stream: LogStream | None = None
        try:
            stream = self._open_stream(self._instance, self._lines)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._stream = stream
            for seq, line in enumerate(stream):
                self.waiting.append(LogEntry(seq, line))
            if not self._stopping.is_set():
                self.ended = "The log ended (its container stopped); press Follow to read it again."
        except PostroomError as exc:
            self.ended = str(exc)
        except Exception as exc:  # Docker's or the network's: one sentence, not a traceback
            self.ended = f"Reading the log failed ({_first_line(exc)}); press Follow to try again."
        finally:
            if stream is not None:
                stream.close()
            if self.ended is None:
                self.ended = ""  # stopped on purpose: nothing to say


class _Readers:
    """The current follow, held apart from the widget so that the widget's ``destroyed``
    signal can still stop it when the Python side of the widget is already gone."""

    def __init__(self) -> None:
        self.current: _Reader | None = None

    def stop(self, *_args: object) -> None:
        reader, self.current = self.current, None
        if reader is not None:
            reader.stop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _take_all(waiting: deque[LogEntry]) -> list[LogEntry]:
    # Only the Qt thread takes, so the count read first is there to take; lines the reading
    # thread appends meanwhile wait for the next tick.
    return [waiting.popleft() for _ in range(len(waiting))]


def _write_lines(path: Path, lines: Iterable[str]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for line in lines:
            out.write(line + "\n")
            count += 1
    return count


# ---------------------------------------------------------------- the widget


class LogViewer(QWidget):
    """The engines' logs; ``set_engines`` fills the chooser, ``stop`` ends a follow."""

    def __init__(
        self,
        context: AppContext,
        open_stream: Callable[[int | None, int], LogStream],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self._open_stream = open_stream
        self._engines: list[tuple[int, str]] = []
        self._readers = _Readers()
        self.destroyed.connect(self._readers.stop)
        self._stuck = True  # following the newest line
        self._adjusting = False  # scrolling done by the viewer itself, not the user

        self.model = LogLineModel(kept_lines_setting(), self)
        self._build()
        self.model.set_show_container(self.chosen_instance() is None)

        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_MS)
        self._drain_timer.timeout.connect(self._drain)
        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(FILTER_DELAY_MS)
        self._filter_timer.timeout.connect(self._apply_filter)
        self._update_counts()

    # -------------------------------------------------------------- layout

    def _build(self) -> None:
        self.engine_box = QComboBox()
        self.engine_box.setAccessibleName("Engine")
        self.engine_box.setToolTip("Whose log to show")
        self.engine_box.addItem(ALL_ENGINES, None)
        self.engine_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.engine_box.currentIndexChanged.connect(self._engine_chosen)

        self.follow_button = QPushButton("Follow")
        self.follow_button.setCheckable(True)
        self.follow_button.setToolTip(
            "Stream the log as the engines write it, starting with the last kept lines"
        )
        self.follow_button.toggled.connect(self._follow_toggled)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Keep reading but hold the view still until resumed")
        self.pause_button.toggled.connect(self._pause_toggled)

        self.level_box = QComboBox()
        self.level_box.setAccessibleName("Level")
        self.level_box.setToolTip("Show only the lines of this level and the more severe ones")
        self.level_box.addItem("All levels", None)
        for level in LEVELS[1:-1]:
            self.level_box.addItem(f"{level.title()} and above", level)
        self.level_box.addItem("Error", LEVELS[-1])
        self.level_box.currentIndexChanged.connect(self._apply_filter)
        self.filter_field = QLineEdit()
        self.filter_field.setPlaceholderText("Filter lines…")
        self.filter_field.setAccessibleName("Filter")
        self.filter_field.setToolTip("Show only the lines containing this text (any case)")
        self.filter_field.setClearButtonEnabled(True)
        self.filter_field.textChanged.connect(lambda _text: self._filter_timer.start())

        self.search_field = QLineEdit()
        self.search_field.setPlaceholderText("Find…")
        self.search_field.setAccessibleName("Find")
        self.search_field.setToolTip("Highlight the lines containing this text; Enter: next")
        self.search_field.setClearButtonEnabled(True)
        self.search_field.textChanged.connect(self.model.set_search)
        self.search_field.returnPressed.connect(self.find_next)
        self.next_button = QPushButton("Next")
        self.next_button.setToolTip("Go to the next line containing the text (F3)")
        self.next_button.clicked.connect(self.find_next)
        QShortcut(QKeySequence(QKeySequence.StandardKey.FindNext), self, self.find_next)

        controls = QHBoxLayout()
        controls.addWidget(self.engine_box)
        controls.addWidget(self.follow_button)
        controls.addWidget(self.pause_button)
        controls.addSpacing(12)
        controls.addWidget(self.level_box)
        controls.addWidget(self.filter_field, 2)
        controls.addSpacing(12)
        controls.addWidget(self.search_field, 1)
        controls.addWidget(self.next_button)

        self.view = QListView()
        self.view.setAccessibleName("Engine log")
        self.view.setModel(self.model)
        self.view.setUniformItemSizes(True)  # lay out nothing but what is painted
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        # Item steps: dropping k rows from the top is undone by scrolling k steps up.
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerItem)
        self.view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setWordWrap(False)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Copy), self.view, self.copy_selected)
        self.view.verticalScrollBar().valueChanged.connect(self._scrolled)
        self.view.verticalScrollBar().rangeChanged.connect(lambda *_: self._update_jump())

        self.count_label = QLabel()
        self.count_label.setAccessibleName("Line count")
        self.status_label = QLabel()
        self.status_label.setAccessibleName("Log status")
        self.status_label.setWordWrap(True)
        self.limit_box = QSpinBox()
        self.limit_box.setAccessibleName("Lines to keep")
        self.limit_box.setToolTip("How many of the newest lines the viewer keeps in memory")
        self.limit_box.setRange(MIN_KEPT_LINES, MAX_KEPT_LINES)
        self.limit_box.setSingleStep(1_000)
        self.limit_box.setGroupSeparatorShown(True)
        self.limit_box.setPrefix("Keep ")
        self.limit_box.setSuffix(" lines")
        self.limit_box.setValue(self.model.limit())
        self.limit_box.setKeyboardTracking(False)  # apply once typed, not per digit
        self.limit_box.valueChanged.connect(self.set_kept_lines)
        self.jump_button = QPushButton("Jump to latest")
        self.jump_button.setToolTip("Scroll to the newest line and follow it again")
        self.jump_button.clicked.connect(self.jump_to_latest)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip(
            "Save the lines shown (after the level and text filters) to a UTF-8 text file, "
            "as the engines wrote them"
        )
        self.save_button.clicked.connect(self._save_clicked)

        footer = QHBoxLayout()
        footer.addWidget(self.count_label)
        footer.addSpacing(12)
        footer.addWidget(self.status_label, 1)
        footer.addWidget(self.limit_box)
        footer.addWidget(self.jump_button)
        footer.addWidget(self.save_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.view, 1)
        layout.addLayout(footer)

    # -------------------------------------------------------------- API

    def set_engines(self, engines: list[tuple[int, str]]) -> None:
        """The engines to choose from: (instance, container name). The current choice
        stays if that engine is still there; a follow of all engines restarts when the
        set of engines changed (a stream covers the containers that existed at its start)."""
        engines = sorted(engines)
        if engines == self._engines:
            return
        self._engines = engines
        chosen = self.chosen_instance()
        self.engine_box.blockSignals(True)
        try:
            while self.engine_box.count() > 1:
                self.engine_box.removeItem(1)
            for instance, name in engines:
                self.engine_box.addItem(name, instance)
            index = self.engine_box.findData(chosen) if chosen is not None else 0
            self.engine_box.setCurrentIndex(max(index, 0))
        finally:
            self.engine_box.blockSignals(False)
        if self.chosen_instance() != chosen or chosen is None:
            self._engine_chosen()

    def stop(self) -> None:
        """End the follow (the lines read stay); the reading thread ends shortly after."""
        self.follow_button.setChecked(False)  # _follow_toggled does the stopping
        self._readers.stop()
        self._drain_timer.stop()
        self.pause_button.setChecked(False)
        self._update_counts()

    # -------------------------------------------------------------- state

    def chosen_instance(self) -> int | None:
        data = self.engine_box.currentData()
        return int(data) if data is not None else None

    def is_following(self) -> bool:
        return self._readers.current is not None

    def is_stuck(self) -> bool:
        return self._stuck

    def reading_thread(self) -> threading.Thread | None:
        reader = self._readers.current
        return reader.thread if reader is not None else None

    def set_kept_lines(self, limit: int) -> None:
        """Keep the newest ``limit`` lines from now on, and remember it for next time."""
        limit = max(MIN_KEPT_LINES, min(MAX_KEPT_LINES, limit))
        if self.limit_box.value() != limit:
            self.limit_box.setValue(limit)  # comes back here through valueChanged
            return
        if limit == self.model.limit():
            return
        save_kept_lines_setting(limit)
        self._change_view(lambda: self.model.set_limit(limit))
        self._update_counts()

    # -------------------------------------------------------------- following

    def _follow_toggled(self, on: bool) -> None:
        if on:
            self._start_follow()
        else:
            self._readers.stop()
            self._drain_timer.stop()
            self.pause_button.setChecked(False)
        self._update_counts()

    def _engine_chosen(self, *_args: object) -> None:
        self.model.set_show_container(self.chosen_instance() is None)
        if self.follow_button.isChecked():
            self._start_follow()

    def _start_follow(self) -> None:
        """(Re)start reading the chosen engine's log, from the last kept lines."""
        self._readers.stop()
        self.pause_button.setChecked(False)
        self.model.clear()
        self.status_label.clear()
        self._stuck = True
        self._readers.current = _Reader(
            self._open_stream, self.chosen_instance(), self.model.limit()
        )
        self._drain_timer.start()
        self._update_counts()

    def _pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        if not paused:
            self._drain()
        self._update_counts()

    def _drain(self) -> None:
        """Timer tick: move what the thread read into the model, in one batch."""
        reader = self._readers.current
        if reader is None:
            self._drain_timer.stop()
            return
        ended = reader.ended  # read before taking: lines waiting at the end are taken too
        if not self.pause_button.isChecked():
            batch = _take_all(reader.waiting)
            if batch:
                self._change_view(lambda: self.model.append(batch))
        if ended is not None and not reader.waiting:
            self._readers.current = None
            self._drain_timer.stop()
            self.status_label.setText(ended)
            self.follow_button.blockSignals(True)
            self.follow_button.setChecked(False)
            self.follow_button.blockSignals(False)
        self._update_counts()

    def _change_view(self, change: Callable[[], int | None]) -> None:
        """Apply a model change, keeping the view on the newest line if it was there, and
        otherwise on the same lines (scrolled up by the rows dropped from the top)."""
        bar = self.view.verticalScrollBar()
        self._adjusting = True
        try:
            top = bar.value()
            dropped = change() or 0
            if self._stuck:
                self.view.scrollToBottom()
            elif dropped:
                bar.setValue(max(0, top - dropped))
        finally:
            self._adjusting = False

    # -------------------------------------------------------------- scrolling

    def _scrolled(self, value: int) -> None:
        if self._adjusting:
            return
        self._stuck = value >= self.view.verticalScrollBar().maximum()
        self._update_jump()

    def jump_to_latest(self) -> None:
        self._stuck = True
        if self.pause_button.isChecked():
            self.pause_button.setChecked(False)  # the latest is what Pause holds back
        self._adjusting = True
        try:
            self.view.scrollToBottom()
        finally:
            self._adjusting = False
        self._update_jump()

    def _update_jump(self) -> None:
        bar = self.view.verticalScrollBar()
        behind = not self._stuck and bar.value() < bar.maximum()
        self.jump_button.setEnabled(behind or self.pause_button.isChecked())

    # -------------------------------------------------------------- filters and search

    def _apply_filter(self, *_args: object) -> None:
        self._filter_timer.stop()
        level = self.level_box.currentData()
        self._change_view(lambda: self.model.set_filter(level, self.filter_field.text()))
        self._update_counts()

    def find_next(self) -> None:
        """Select and show the next line containing the search text (wrapping)."""
        current = self.view.currentIndex()
        row = self.model.next_match(current.row() if current.isValid() else -1)
        if row is None:
            text = self.search_field.text().strip()
            self.status_label.setText(f"No shown line contains “{text}”." if text else "")
            return
        index = self.model.index(row)
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)

    def copy_selected(self) -> None:
        """The selected lines to the clipboard, as Save writes them."""
        rows = sorted(index.row() for index in self.view.selectionModel().selectedIndexes())
        lines = [self.model.written_line(row) for row in rows]
        if lines:
            QApplication.clipboard().setText("\n".join(lines) + "\n")

    # -------------------------------------------------------------- counts

    def _update_counts(self) -> None:
        kept, limit = self.model.kept_count(), self.model.limit()
        text = f"{kept:,} lines kept (limit {limit:,})"
        if self.model.is_filtered():
            text += f", {self.model.rowCount():,} shown"
        reader = self._readers.current
        if self.pause_button.isChecked() and reader is not None:
            text += f" · paused, {len(reader.waiting):,} new"
        self.count_label.setText(text)
        self.save_button.setEnabled(self.model.rowCount() > 0)
        self.pause_button.setEnabled(reader is not None)
        self._update_jump()

    # -------------------------------------------------------------- save

    def _save_clicked(self) -> None:
        name, _filter = QFileDialog.getSaveFileName(
            self, "Save the log lines shown", "engine-log.txt", "Text files (*.txt);;All files (*)"
        )
        if name:
            self.save_to(Path(name))

    def save_to(self, path: Path) -> None:
        """Write the shown lines to ``path`` (UTF-8) off the Qt thread; say how it went."""
        lines = list(self.model.shown_lines())  # a snapshot: new lines may arrive meanwhile

        async def write() -> None:
            try:
                count = await self.context.in_executor(_write_lines, path, lines)
            except OSError as exc:
                message = (
                    f"Could not save the log to {path}: {exc.strerror or exc}; "
                    "choose another file or folder."
                )
            else:
                message = f"Saved {count:,} lines to {path}."
            if shiboken6.isValid(self):
                self.status_label.setText(message)

        self.context.spawn(write())
