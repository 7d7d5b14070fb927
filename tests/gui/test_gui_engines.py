"""The Send Engines page, offscreen, under the loop watchdog, with no Docker engine: its
one-sentence error, and what it does with snapshots (tables that keep the selection and
scroll position, charts that make no new items, a health change that becomes one notice
and one audit entry).

``DOCKER_HOST`` points at a socket nobody listens on, so the page's own 2 s samples fail
with the sentence; the snapshots shown are made here (the real dockerd's numbers are
checked in tests/docker/test_fleet_monitor_docker.py).
"""

from __future__ import annotations

import json
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from app.engine.fleet_monitor import (
    CampaignSample,
    EngineSample,
    FleetSnapshot,
    health_changes,
)
from app.models import AuditEntry
from app.models.database import Database
from app.views.main_window import MainWindow
from app.views.pages.engines import EnginesPage
from tests.conftest import WAIT_MS

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture
def window_options() -> dict[str, object]:
    return {"open": True, "size": (1280, 800)}


@pytest.fixture(autouse=True)
def dead_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    host = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


def engine(instance: int, **values: Any) -> EngineSample:
    name = f"postroom-sendengine-{instance}"
    fields: dict[str, Any] = {
        "name": name,
        "instance": instance,
        "engine_id": name.removeprefix("postroom-"),
        "state": "running",
        "health": "healthy",
        "uptime_s": 600.0 + instance,
        "node": None,
        "cpu_percent": 3.0 + instance,
        "memory_bytes": 40_000_000 + instance,
        "net_rx_bytes": None,
        "net_tx_bytes": None,
        "net_rx_rate": None,
        "net_tx_rate": None,
        "programs": (("engine", "RUNNING"),),
    }
    return EngineSample(**{**fields, **values})


def campaign(number: int, sent: int = 10) -> CampaignSample:
    counts = {"queued": 50, "in_flight": 5, "deferred": 2, "held": 0, "sent": sent, "failed": 1}
    return CampaignSample(
        number, f"Campaign {number:02d}", "running", counts, (("sendengine-1", 10),)
    )


def snapshot(
    engines: list[EngineSample], at: float, campaigns: list[CampaignSample] | None = None
) -> FleetSnapshot:
    return FleetSnapshot(
        datetime.now(UTC),
        at,
        "containers",
        tuple(engines),
        tuple(campaigns or ()),
        sent_rate=at / 10,
        deferred_rate=1.0,
        failed_rate=0.1,
    )


class History:
    """Stands in for the FleetMonitor the page would have made (Docker is not there):
    only its ``history`` is read by the page."""

    def __init__(self) -> None:
        self.history: deque[FleetSnapshot] = deque(maxlen=300)

    def show(self, page: EnginesPage, shot: FleetSnapshot) -> None:
        previous = self.history[-1] if self.history else None
        changes = tuple(health_changes(previous, shot))
        shot = FleetSnapshot(**{**shot.__dict__, "changes": changes})
        self.history.append(shot)
        page.show_snapshot(shot)


def open_page(qtbot: QtBot, window: MainWindow) -> EnginesPage:
    window.select_section("Send Engines")
    page = window.page("Send Engines")
    assert isinstance(page, EnginesPage)
    qtbot.waitUntil(lambda: page.charts is not None, timeout=WAIT_MS)
    return page


def test_an_unreachable_docker_is_one_sentence(
    qtbot: QtBot, window: MainWindow, dead_docker: str
) -> None:
    page = open_page(qtbot, window)
    qtbot.waitUntil(lambda: "Docker" in page.status.text(), timeout=WAIT_MS)
    text = page.status.text()
    assert text.startswith(
        f"No Docker engine answers at DOCKER_HOST={dead_docker} (no such socket)"
    )
    assert "\n" not in text and "Traceback" not in text and text.count(". ") == 0
    assert "#c62828" in page.status.styleSheet()  # shown as an error
    # Nothing to command without Docker; the page keeps trying every 2 s, quietly.
    assert not page.start_button.isEnabled() and not page.stop_button.isEnabled()
    assert page.monitor is None and page.timer.isActive()


def test_selection_and_scroll_survive_every_refresh(qtbot: QtBot, window: MainWindow) -> None:
    page = open_page(qtbot, window)
    page.timer.stop()  # the samples here are the test's
    source = History()
    engines = [engine(n) for n in range(1, 41)]
    campaigns = [campaign(n) for n in range(1, 31)]
    source.show(page, snapshot(engines, 0.0, campaigns))
    table = page.engines_table
    table.selectRow(24)
    table.scrollTo(page.engines_model.index(24, 0))
    page.campaigns_table.selectRow(20)
    page.campaigns_table.scrollTo(page.campaigns_model.index(20, 0))
    qtbot.waitUntil(lambda: table.verticalScrollBar().value() > 0, timeout=WAIT_MS)
    scroll = table.verticalScrollBar().value()
    campaign_scroll = page.campaigns_table.verticalScrollBar().value()
    assert page.selected_engine() is not None
    chosen = page.selected_engine()["name"]  # type: ignore[index]
    assert page.programs_model.rows == [{"name": "engine", "state": "RUNNING"}]

    for step in range(1, 6):
        # every value changes, one engine goes and one comes, as in a real fleet
        changed = [
            engine(n, cpu_percent=float(step * n % 97), uptime_s=600.0 + step * 2)
            for n in range(1, 41)
            if n != 3
        ] + [engine(41 + step)]
        source.show(
            page, snapshot(changed, step * 2.0, [campaign(n, 10 + step) for n in range(1, 31)])
        )
        qtbot.wait(10)
        assert page.selected_engine() is not None
        assert page.selected_engine()["name"] == chosen  # type: ignore[index]
        assert page.selected_engine()["cpu"] == f"{float(step * 25 % 97):.1f} %"  # type: ignore[index]
        assert table.verticalScrollBar().value() == scroll
        campaign_row = page.campaigns_table.selectionModel().selectedRows()[0]
        assert campaign_row.data() == "Campaign 21"
        assert page.campaigns_table.verticalScrollBar().value() == campaign_scroll
        assert page.workers_engine.currentData() == 25


def test_charts_make_no_new_items_per_update(qtbot: QtBot, window: MainWindow) -> None:
    page = open_page(qtbot, window)
    page.timer.stop()
    page.tabs.setCurrentIndex(0)
    source = History()
    page.monitor = source  # type: ignore[assignment]
    engines = [engine(n) for n in range(1, 4)]
    source.show(page, snapshot(engines, 0.0, [campaign(1)]))
    charts = page.charts
    assert charts is not None
    items = charts.item_count()
    curves = {id(c) for chart in charts.charts for c in chart.curves.values()}
    for step in range(1, 40):
        source.show(page, snapshot(engines, step * 2.0, [campaign(1, 10 + step)]))
    qtbot.wait(50)
    assert charts.item_count() == items
    assert {id(c) for chart in charts.charts for c in chart.curves.values()} == curves
    sent = charts.delivery.curves["sent"]
    assert len(sent.xData) == 40 and sent.yData[-1] == pytest.approx(7.8)
    assert charts.network.note.isVisible()  # host networking: "n/a (host network)"
    assert "sendengine-3" in charts.legend.text()


def test_a_health_change_is_a_notice_and_one_audit_entry(qtbot: QtBot, window: MainWindow) -> None:
    page = open_page(qtbot, window)
    page.timer.stop()
    source = History()
    source.show(page, snapshot([engine(1), engine(2)], 0.0))
    assert not page.banner.isVisible()
    for at in (2.0, 4.0, 6.0):  # seen three times: announced and written once
        source.show(page, snapshot([engine(1, health="unhealthy"), engine(2)], at))
    sentence = "Send engine postroom-sendengine-1 became unhealthy; its logs and programs say why."
    assert page.banner.isVisible() and page.banner.text() == sentence
    assert window.statusBar().currentMessage() == sentence
    db = window.database
    assert isinstance(db, Database)

    def entries() -> list[AuditEntry]:
        with db.session() as session:
            return list(
                session.scalars(select(AuditEntry).where(AuditEntry.entity == "send_engine"))
            )

    qtbot.waitUntil(lambda: len(entries()) == 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
    (entry,) = entries()
    assert entry.entity_key == "postroom-sendengine-1" and entry.action == "health"
    assert json.loads(entry.details or "{}")["sentence"] == sentence
