"""The send engines' log viewer, fed through a real ``LogStream`` on real threads.

The containers are stand-ins for Docker's: ``FakeContainer.logs(stream=True, follow=...,
tail=...)`` returns an iterator of bytes chunks with a ``close()``, as docker-py's log
stream does. Everything above it is the code the console runs: LogStream's reading threads
and bounded queue, the viewer's own reading thread, its batching timer, the model and the
view. The real Docker path of LogStream is covered by tests/docker.

Every test runs under the loop watchdog (``qt_loop``): no event dispatch may take over
100 ms of the Qt thread's CPU, however many lines arrive.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QPoint, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog
from pytestqt.qtbot import QtBot

from app.engine.fleet import FleetError
from app.engine.fleet_logs import LogStream
from app.views.context import AppContext
from app.views.log_viewer import (
    DEFAULT_KEPT_LINES,
    KEPT_LINES_KEY,
    LEVEL_ROLE,
    LogViewer,
)

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

WAIT_MS = 20_000
LEVEL_WORDS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}


class FakeLogChunks:
    """What ``container.logs(stream=True, follow=True)`` returns: bytes chunks until the
    container exits (``end()``) or the reader closes it (from any thread)."""

    def __init__(self, first: list[bytes]) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        for chunk in first:
            self.chunks.put(chunk)
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        while not self.closed.is_set():
            try:
                chunk = self.chunks.get(timeout=0.05)
            except queue.Empty:
                continue
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self.closed.set()


class FakeContainer:
    def __init__(self, name: str, first: list[str] | None = None) -> None:
        self.name = name
        self.first = first or []
        self.streams: list[FakeLogChunks] = []
        self.calls: list[dict[str, Any]] = []

    def logs(self, *, stream: bool, follow: bool, tail: int | str) -> FakeLogChunks:
        assert stream
        self.calls.append({"follow": follow, "tail": tail})
        kept = self.first if tail == "all" else self.first[-int(tail) :] if tail else []
        chunks = FakeLogChunks([(line + "\n").encode() for line in kept])
        self.streams.append(chunks)
        return chunks

    def write(self, lines: list[str], per_chunk: int = 1_000) -> None:
        """The container prints ``lines`` (to every open stream, as Docker does)."""
        for start in range(0, len(lines), per_chunk):
            chunk = "".join(line + "\n" for line in lines[start : start + per_chunk]).encode()
            for stream in self.streams:
                stream.chunks.put(chunk)

    def exit(self) -> None:
        for stream in self.streams:
            stream.chunks.put(None)


class FakeFleet:
    """``open_stream`` as the Send Engines page gives it: Fleet.logs(follow=True, ...)."""

    def __init__(self, *containers: FakeContainer) -> None:
        self.containers = {n: c for n, c in enumerate(containers, start=1)}
        self.opened: list[tuple[int | None, int]] = []
        self.streams: list[LogStream] = []

    def engines(self) -> list[tuple[int, str]]:
        return [(n, c.name) for n, c in self.containers.items()]

    def open_stream(self, instance: int | None, lines: int) -> LogStream:
        self.opened.append((instance, lines))
        chosen = [(c.name, c) for n, c in self.containers.items() if instance in (None, n)]
        if not chosen:
            raise FleetError(f"no send-engine container exists for instance {instance}.")
        stream = LogStream(chosen, follow=True, lines=lines)
        self.streams.append(stream)
        return stream


def line(n: int, level: str = "info", text: str = "message") -> str:
    return f"2026-12-01T10:00:00.000Z {LEVEL_WORDS[level]} app.engine engine=e1 {text} {n}"


def shown(viewer: LogViewer) -> list[str]:
    model = viewer.model
    return [model.data(model.index(row)) for row in range(model.rowCount())]


def last_shown(viewer: LogViewer) -> str:
    rows = viewer.model.rowCount()
    return viewer.model.data(viewer.model.index(rows - 1)) if rows else ""


@pytest.fixture(autouse=True)
def settings_in_tmp(qapp: QApplication, tmp_path: Path) -> None:
    """The viewer's QSettings go to this test's folder: Qt fixes its user settings path
    once per process, before the isolated XDG folders exist, so it is set here."""
    for settings_format in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(settings_format, QSettings.Scope.UserScope, str(tmp_path / "qt"))
    assert not QSettings().contains(KEPT_LINES_KEY)


@pytest.fixture(scope="module", autouse=True)
def list_view_loaded(qapp: QApplication) -> None:
    """A process's first list view and fixed font load Qt's style and font data (over
    100 ms): paid before the watchdog watches, as the console does at start-up."""
    warm = LogViewer(AppContext(), FakeFleet().open_stream)
    warm.resize(400, 200)
    warm.show()
    warm.grab()
    warm.close()
    shiboken6.delete(warm)


@pytest.fixture
def make_viewer(qtbot: QtBot, qt_loop: object) -> Iterator[Any]:
    made: list[LogViewer] = []

    def make(fleet: FakeFleet, limit: int | None = None) -> LogViewer:
        viewer = LogViewer(AppContext(), fleet.open_stream)
        qtbot.addWidget(viewer)
        if limit is not None:
            viewer.set_kept_lines(limit)
        viewer.set_engines(fleet.engines())
        viewer.resize(900, 400)
        viewer.show()
        qtbot.waitExposed(viewer)
        made.append(viewer)
        return viewer

    yield make
    for viewer in made:
        if shiboken6.isValid(viewer):
            viewer.stop()


def follow(qtbot: QtBot, viewer: LogViewer, expect_lines: int) -> None:
    viewer.follow_button.click()
    qtbot.waitUntil(lambda: viewer.model.kept_count() >= expect_lines, timeout=WAIT_MS)


# ---------------------------------------------------------------- memory and speed


def test_memory_stays_bounded_however_many_lines_arrive(qtbot: QtBot, make_viewer: Any) -> None:
    engine = FakeContainer("postroom-sendengine-1")
    fleet = FakeFleet(engine)
    viewer = make_viewer(fleet, limit=5_000)
    follow(qtbot, viewer, 0)
    qtbot.waitUntil(lambda: bool(engine.streams), timeout=WAIT_MS)

    engine.write([line(n) for n in range(100_000)])
    qtbot.waitUntil(
        lambda: viewer.model.rowCount() == 5_000 and last_shown(viewer).endswith(" 99999"),
        timeout=WAIT_MS,
    )
    assert viewer.model.kept_count() == 5_000
    rows = shown(viewer)
    assert rows[0].endswith(" 95000")  # the newest 5,000, in order, none twice
    assert [int(r.rsplit(" ", 1)[1]) for r in rows] == list(range(95_000, 100_000))
    assert fleet.opened == [(None, 5_000)]
    assert viewer.count_label.text() == "5,000 lines kept (limit 5,000)"


def test_the_loop_stays_responsive_while_lines_pour_in(qtbot: QtBot, make_viewer: Any) -> None:
    """A loose functional check, not a speed target: a timer set while 50,000 lines are
    being read still fires promptly, and the watchdog sees no stalled dispatch."""
    engine = FakeContainer("postroom-sendengine-1")
    viewer = make_viewer(FakeFleet(engine))
    follow(qtbot, viewer, 0)
    qtbot.waitUntil(lambda: bool(engine.streams), timeout=WAIT_MS)

    engine.write([line(n, "error" if n % 7 == 0 else "info") for n in range(50_000)], 200)
    fired: list[float] = []
    started = time.monotonic()
    QTimer.singleShot(0, lambda: fired.append(time.monotonic() - started))
    qtbot.waitUntil(lambda: bool(fired), timeout=WAIT_MS)
    assert fired[0] < 2.0
    qtbot.waitUntil(lambda: last_shown(viewer).endswith(" 49999"), timeout=WAIT_MS)
    assert viewer.model.rowCount() == DEFAULT_KEPT_LINES


# ---------------------------------------------------------------- filtering and search


def mixed_lines(count: int) -> list[str]:
    levels = ("debug", "info", "warning", "error")
    return [line(n, levels[n % 4], "smtp timeout" if n % 20 == 3 else "sent") for n in range(count)]


def test_filter_by_level_and_text(qtbot: QtBot, make_viewer: Any) -> None:
    engine = FakeContainer("postroom-sendengine-1", mixed_lines(400))
    viewer = make_viewer(FakeFleet(engine))
    follow(qtbot, viewer, 400)

    viewer.level_box.setCurrentIndex(viewer.level_box.findData("error"))
    levels = {viewer.model.data(viewer.model.index(r), LEVEL_ROLE) for r in range(100)}
    assert viewer.model.rowCount() == 100 and levels == {"error"}

    viewer.filter_field.setText("SMTP Timeout")  # any case
    qtbot.waitUntil(lambda: viewer.model.rowCount() == 20, timeout=WAIT_MS)
    assert all("ERROR" in r and "smtp timeout" in r for r in shown(viewer))
    assert viewer.count_label.text() == "400 lines kept (limit 5,000), 20 shown"

    # lines arriving later go through the same filters
    engine.write(mixed_lines(400)[:40])
    qtbot.waitUntil(lambda: viewer.model.kept_count() == 440, timeout=WAIT_MS)
    assert viewer.model.rowCount() == 22

    # a level shows the more severe ones too
    viewer.filter_field.clear()
    viewer.level_box.setCurrentIndex(viewer.level_box.findData("warning"))
    qtbot.waitUntil(lambda: viewer.model.rowCount() == 220, timeout=WAIT_MS)
    levels = {viewer.model.data(viewer.model.index(r), LEVEL_ROLE) for r in range(220)}
    assert levels == {"warning", "error"}

    viewer.level_box.setCurrentIndex(0)
    qtbot.waitUntil(lambda: viewer.model.rowCount() == 440, timeout=WAIT_MS)


def test_find_highlights_and_jumps_to_the_next_match(qtbot: QtBot, make_viewer: Any) -> None:
    engine = FakeContainer("postroom-sendengine-1", mixed_lines(400))
    viewer = make_viewer(FakeFleet(engine))
    follow(qtbot, viewer, 400)

    viewer.search_field.setText("timeout")
    model = viewer.model
    assert model.data(model.index(23), Qt.ItemDataRole.BackgroundRole) is not None
    assert model.data(model.index(24), Qt.ItemDataRole.BackgroundRole) is None
    qtbot.keyClick(viewer.search_field, Qt.Key.Key_Return)
    assert viewer.view.currentIndex().row() == 3
    viewer.next_button.click()
    assert viewer.view.currentIndex().row() == 23
    assert not viewer.is_stuck()  # looking at an old line: new ones don't scroll it away
    viewer.view.setCurrentIndex(model.index(395))
    viewer.next_button.click()
    assert viewer.view.currentIndex().row() == 3  # wraps

    viewer.view.selectionModel().select(
        model.index(23), viewer.view.selectionModel().SelectionFlag.ClearAndSelect
    )
    viewer.copy_selected()
    copied = f"{engine.name}  {mixed_lines(400)[23]}\n"
    assert QApplication.clipboard().text() == copied

    viewer.search_field.setText("no such text")
    viewer.next_button.click()
    assert viewer.status_label.text() == "No shown line contains “no such text”."


# ---------------------------------------------------------------- sticking to the bottom


def top_line(viewer: LogViewer) -> str:
    return viewer.view.indexAt(QPoint(4, 4)).data()


def test_scrolling_up_unsticks_and_jump_to_latest_sticks_again(
    qtbot: QtBot, make_viewer: Any
) -> None:
    engine = FakeContainer("postroom-sendengine-1", [line(n) for n in range(1_000)])
    viewer = make_viewer(FakeFleet(engine), limit=1_000)
    follow(qtbot, viewer, 1_000)
    bar = viewer.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
    assert viewer.is_stuck() and not viewer.jump_button.isEnabled()

    bar.setValue(bar.maximum() - 30)  # the user scrolls up a little
    assert not viewer.is_stuck() and viewer.jump_button.isEnabled()
    reading = top_line(viewer)

    # 500 new lines push the oldest 500 out; the view stays on the same lines
    engine.write([line(n) for n in range(1_000, 1_500)])
    qtbot.waitUntil(lambda: last_shown(viewer).endswith(" 1499"), timeout=WAIT_MS)
    qtbot.wait(50)
    assert bar.value() < bar.maximum() and not viewer.is_stuck()
    assert top_line(viewer) == reading

    viewer.jump_button.click()
    assert viewer.is_stuck() and bar.value() == bar.maximum()
    engine.write([line(n) for n in range(1_500, 1_600)])
    qtbot.waitUntil(lambda: last_shown(viewer).endswith(" 1599"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=WAIT_MS)
    newest = viewer.view.visualRect(viewer.model.index(viewer.model.rowCount() - 1))
    assert viewer.view.viewport().rect().contains(newest) and viewer.is_stuck()

    # scrolling back down to the bottom by hand sticks too
    bar.setValue(0)
    assert not viewer.is_stuck()
    bar.setValue(bar.maximum())
    assert viewer.is_stuck()


def test_pause_keeps_reading_but_holds_the_view(qtbot: QtBot, make_viewer: Any) -> None:
    engine = FakeContainer("postroom-sendengine-1", [line(n) for n in range(100)])
    viewer = make_viewer(FakeFleet(engine))
    follow(qtbot, viewer, 100)

    viewer.pause_button.click()
    assert viewer.pause_button.text() == "Resume"
    engine.write([line(n) for n in range(100, 150)])
    qtbot.waitUntil(lambda: "paused, 50 new" in viewer.count_label.text(), timeout=WAIT_MS)
    assert viewer.model.kept_count() == 100

    viewer.pause_button.click()
    assert viewer.model.kept_count() == 150
    assert viewer.pause_button.text() == "Pause"

    viewer.pause_button.click()
    viewer.stop()  # nothing left to pause
    assert not viewer.pause_button.isChecked() and not viewer.pause_button.isEnabled()


# ---------------------------------------------------------------- engines


def test_choosing_an_engine_restarts_the_stream_with_its_lines(
    qtbot: QtBot, make_viewer: Any
) -> None:
    one = FakeContainer("postroom-sendengine-1", [line(n, text="one") for n in range(5)])
    two = FakeContainer("postroom-sendengine-2", [line(n, text="two") for n in range(3)])
    fleet = FakeFleet(one, two)
    viewer = make_viewer(fleet)
    assert [viewer.engine_box.itemText(i) for i in range(viewer.engine_box.count())] == [
        "All engines",
        "postroom-sendengine-1",
        "postroom-sendengine-2",
    ]
    follow(qtbot, viewer, 8)
    # every line says whose it is when several engines are shown
    assert sorted(r.split("  ", 1)[0] for r in shown(viewer)) == [one.name] * 5 + [two.name] * 3

    viewer.engine_box.setCurrentIndex(2)
    qtbot.waitUntil(lambda: viewer.model.kept_count() == 3, timeout=WAIT_MS)
    assert all(r.startswith("2026") and " two " in r for r in shown(viewer))
    assert fleet.opened == [(None, DEFAULT_KEPT_LINES), (2, DEFAULT_KEPT_LINES)]
    qtbot.waitUntil(lambda: one.streams[0].closed.is_set(), timeout=WAIT_MS)  # old one closed

    # a refreshed list keeps the choice; one without that engine falls back to all
    viewer.set_engines([(2, two.name), (1, one.name), (3, "postroom-sendengine-3")])
    assert viewer.chosen_instance() == 2 and len(fleet.opened) == 2
    viewer.set_engines([(1, one.name)])
    assert viewer.chosen_instance() is None
    qtbot.waitUntil(lambda: viewer.model.kept_count() == 8, timeout=WAIT_MS)
    assert fleet.opened[-1] == (None, DEFAULT_KEPT_LINES)


def test_an_ended_or_failed_stream_says_so_in_one_sentence(qtbot: QtBot, make_viewer: Any) -> None:
    engine = FakeContainer("postroom-sendengine-1", [line(0)])
    fleet = FakeFleet(engine)
    viewer = make_viewer(fleet)
    follow(qtbot, viewer, 1)
    engine.exit()
    qtbot.waitUntil(lambda: not viewer.follow_button.isChecked(), timeout=WAIT_MS)
    assert viewer.status_label.text() == (
        "The log ended (its container stopped); press Follow to read it again."
    )
    assert viewer.model.kept_count() == 1  # what was read stays

    fleet.containers.clear()  # the engines were removed meanwhile
    viewer.follow_button.click()
    qtbot.waitUntil(lambda: not viewer.follow_button.isChecked(), timeout=WAIT_MS)
    assert viewer.status_label.text() == "no send-engine container exists for instance None."

    def broken(instance: int | None, lines: int) -> LogStream:
        raise ConnectionError("Connection refused\nand a second line")

    viewer._open_stream = broken
    viewer.follow_button.click()
    qtbot.waitUntil(lambda: not viewer.follow_button.isChecked(), timeout=WAIT_MS)
    assert viewer.status_label.text() == (
        "Reading the log failed (Connection refused); press Follow to try again."
    )


# ---------------------------------------------------------------- stopping


def test_stop_ends_the_reading_thread(qtbot: QtBot, make_viewer: Any) -> None:
    engine = FakeContainer("postroom-sendengine-1", [line(0)])
    fleet = FakeFleet(engine)
    viewer = make_viewer(fleet)
    follow(qtbot, viewer, 1)
    thread = viewer.reading_thread()
    assert thread is not None and thread.is_alive()

    viewer.stop()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=2_000)
    assert engine.streams[0].closed.is_set()
    assert not viewer.follow_button.isChecked() and not viewer.is_following()
    assert viewer.model.kept_count() == 1


def test_destroying_the_widget_ends_the_reading_thread(qtbot: QtBot, qt_loop: object) -> None:
    engine = FakeContainer("postroom-sendengine-1", [line(0)])
    fleet = FakeFleet(engine)
    viewer = LogViewer(AppContext(), fleet.open_stream)
    viewer.set_engines(fleet.engines())
    follow(qtbot, viewer, 1)
    thread = viewer.reading_thread()
    assert thread is not None

    shiboken6.delete(viewer)
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=2_000)
    assert engine.streams[0].closed.is_set()


# ---------------------------------------------------------------- saving and the limit


def test_save_writes_the_shown_lines_as_written(
    qtbot: QtBot, make_viewer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = json.dumps(
        {"ts": "2026-12-01T10:00:00.000Z", "level": "error", "message": "échec: 550"},
        ensure_ascii=False,
    )
    one = FakeContainer("postroom-sendengine-1", [line(1), record])
    two = FakeContainer("postroom-sendengine-2", [line(2, "error")])
    viewer = make_viewer(FakeFleet(one, two))
    follow(qtbot, viewer, 3)
    viewer.level_box.setCurrentIndex(viewer.level_box.findData("error"))

    target = tmp_path / "engine-log.txt"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    viewer.save_button.click()
    qtbot.waitUntil(lambda: viewer.status_label.text().startswith("Saved"), timeout=WAIT_MS)
    assert viewer.status_label.text() == f"Saved 2 lines to {target}."
    written = target.read_text(encoding="utf-8").splitlines()
    # the filtered lines, raw (JSON stays JSON), each with its container
    assert sorted(written) == sorted([f"{one.name}  {record}", f"{two.name}  {line(2, 'error')}"])

    viewer.save_to(tmp_path / "missing" / "log.txt")
    qtbot.waitUntil(lambda: viewer.status_label.text().startswith("Could not"), timeout=WAIT_MS)
    assert viewer.status_label.text() == (
        f"Could not save the log to {tmp_path / 'missing' / 'log.txt'}: "
        "No such file or directory; choose another file or folder."
    )


def test_the_kept_lines_limit_is_a_remembered_setting(qtbot: QtBot, make_viewer: Any) -> None:
    engine = FakeContainer("postroom-sendengine-1", [line(n) for n in range(3_000)])
    viewer = make_viewer(FakeFleet(engine))
    follow(qtbot, viewer, 3_000)

    viewer.limit_box.setValue(1_000)
    assert viewer.model.kept_count() == 1_000 and shown(viewer)[0].endswith(" 2000")
    assert viewer.count_label.text() == "1,000 lines kept (limit 1,000)"

    later = make_viewer(FakeFleet(engine))
    assert later.model.limit() == 1_000 and later.limit_box.value() == 1_000
    QSettings().setValue(KEPT_LINES_KEY, "lots")
    assert make_viewer(FakeFleet(engine)).model.limit() == DEFAULT_KEPT_LINES
