"""The console's log viewer on a real container's log stream (dockerd's HTTP stream, read by
LogStream's threads): the lines arrive with their levels, stop() ends the reading thread by
closing the live stream, and a container that exits says so in one sentence.

The container is a plain shell on the base image printing lines of the engine's formats;
the send engine itself is not needed for what the viewer does with its log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.engine.fleet_logs import LogStream
from app.views.context import AppContext
from app.views.log_viewer import LEVEL_ROLE, LogViewer

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

WAIT_MS = 30_000
JSON_LINE = json.dumps(
    {"ts": "2026-12-01T10:00:00.000Z", "level": "error", "logger": "app.engine", "message": "x"}
)
# 300 lines, every third a WARN line in supervisord's form, then one JSON record; then it
# stays up (printing nothing) until killed.
SCRIPT = f"""
i=0
while [ $i -lt 300 ]; do
  if [ $((i % 3)) -eq 0 ]; then echo "2026-12-01 10:00:00,000 WARN line $i";
  else echo "2026-12-01T10:00:00.000Z INFO app.engine line $i"; fi
  i=$((i + 1))
done
echo '{JSON_LINE}'
exec sleep 600
"""


@pytest.fixture
def printing_container(docker_client: Any, base_image: str) -> Iterator[Any]:
    name = f"postroom-logviewer-test-{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.run(
        base_image,
        ["sh", "-c", SCRIPT],
        name=name,
        detach=True,
        labels={"postroom.test": "log-viewer"},
        network_mode="none",
    )
    try:
        yield container
    finally:
        container.remove(force=True)


def test_viewer_follows_a_real_container(
    qtbot: QtBot, qt_loop: object, printing_container: Any
) -> None:
    name = printing_container.name

    def open_stream(instance: int | None, lines: int) -> LogStream:
        return LogStream([(name, printing_container)], follow=True, lines=lines)

    viewer = LogViewer(AppContext(), open_stream)
    qtbot.addWidget(viewer)
    viewer.set_engines([(1, name)])
    viewer.engine_box.setCurrentIndex(1)
    viewer.follow_button.click()
    qtbot.waitUntil(lambda: viewer.model.kept_count() == 301, timeout=WAIT_MS)
    model = viewer.model
    levels = [model.data(model.index(row), LEVEL_ROLE) for row in range(model.rowCount())]
    assert levels.count("warning") == 100 and levels.count("info") == 200
    assert levels[-1] == "error" and model.data(model.index(300)).endswith("ERROR x")

    # the stream is live (the container prints nothing more): stop must close it
    thread = viewer.reading_thread()
    assert thread is not None and thread.is_alive()
    viewer.stop()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=2_000)

    viewer.follow_button.click()  # again: the kept lines come back, then the container dies
    qtbot.waitUntil(lambda: viewer.model.kept_count() == 301, timeout=WAIT_MS)
    printing_container.kill()
    qtbot.waitUntil(lambda: not viewer.follow_button.isChecked(), timeout=WAIT_MS)
    assert viewer.status_label.text() == (
        "The log ended (its container stopped); press Follow to read it again."
    )
