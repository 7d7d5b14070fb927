"""The Send Engines page with a real fleet at work: started from the page with a count, on
a real PostgreSQL database, delivering a campaign to a real SMTP sink (aiosmtpd) while the
page samples every 2 s under the loop watchdog.

With ``POSTROOM_SCREENSHOT`` set to a file name, the page is saved there once mail moves
(``scripts/screenshots --live-engines`` makes docs/screenshots/engines.png this way).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy.engine import make_url

from app.models.database import Database
from app.views.main_window import MainWindow
from app.views.pages.engines import EnginesPage
from tests.conftest import PG_ADMIN_URL, WAIT_MS, _server_database, open_database
from tests.docker.test_sendengine_fleet import Sink
from tests.engine.test_engine import make_campaign, make_route

ENGINES = 5  # the 'five engines polled while a campaign runs'
RECIPIENTS = 20_000
HEALTHY_WAIT_MS = 150_000
SENDING_WAIT_MS = 120_000

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    for database_url in _server_database(PG_ADMIN_URL, "postgresql"):
        # The server trusts local connections; the engines get this URL in a secret file.
        yield (
            make_url(database_url)
            .set(password=f"pw-{uuid.uuid4().hex}")
            .render_as_string(hide_password=False)
        )


@pytest.fixture
def fleet_name(docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"g{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("POSTROOM_SENDENGINE_FLEET", name)
    yield name
    for container in docker_client.containers.list(
        all=True, filters={"label": [f"app.postroom.fleet={name}"]}
    ):
        container.remove(force=True)


def test_engines_started_from_the_page_deliver_while_it_watches(
    engine_image: dict[str, Any],
    postgres_url: str,  # before the fleet: its engines go before their database does
    fleet_name: str,
    qtbot: QtBot,
    window: MainWindow,
) -> None:
    window.resize(1280, 800)
    database = open_database(qtbot, window, postgres_url)
    assert isinstance(database, Database)
    # slow enough that the charts have something to show for a while
    with Sink(delay=0.2) as sink:
        make_route(database, sink.port, max_connections=20)
        make_campaign(database, [f"r{n}@example.com" for n in range(RECIPIENTS)])
        window.select_section("Send Engines")
        page = window.page("Send Engines")
        assert isinstance(page, EnginesPage)
        qtbot.waitUntil(lambda: page.start_button.isEnabled(), timeout=WAIT_MS)

        page.start_count.setValue(ENGINES)
        started = time.monotonic()
        page.start_button.click()
        qtbot.waitUntil(
            lambda: page.status.text().startswith(f"{ENGINES} send engine(s) running"),
            timeout=HEALTHY_WAIT_MS,
        )
        print(f"{ENGINES} engines started from the page: {time.monotonic() - started:.1f} s")
        qtbot.waitUntil(
            lambda: [r["health"] for r in page.engines_model.rows] == ["healthy"] * ENGINES,
            timeout=HEALTHY_WAIT_MS,
        )
        print(f"healthy: {time.monotonic() - started:.1f} s")

        def sending() -> bool:
            shot = page.snapshot
            return bool(
                shot
                and shot.sent_rate
                and shot.campaigns
                and len(shot.campaigns[0].engines) == ENGINES
                and all(e.cpu_percent is not None for e in shot.engines)
            )

        try:
            qtbot.waitUntil(sending, timeout=SENDING_WAIT_MS)
        except Exception:
            shot = page.snapshot
            print(f"not sending; sink has {len(sink.recipients)}; last sample: {shot}")
            raise
        qtbot.wait(12_000)  # a few samples for the charts
        shot = page.snapshot
        assert shot is not None and shot.sent_rate is not None
        print(
            f"sent {shot.sent_rate:.1f}/s, {shot.queue_depth} waiting, sample took "
            f"{shot.seconds:.2f} s; sink has {len(sink.recipients)}"
        )
        (row,) = page.campaigns_model.rows
        assert row["name"] == "Spring"
        assert row["engines_short"] == f"{ENGINES} ({ENGINES * 10} workers)"
        assert 0 < int(row["sent"]) <= len(sink.recipients) + 50
        assert all(r["net"] == "n/a (host network)" for r in page.engines_model.rows)
        assert (
            page.charts is not None
            and max(v for v in page.charts.delivery.curves["sent"].yData if v == v) > 0
        )  # no NaN
        page.engines_table.selectRow(0)
        qtbot.waitUntil(lambda: bool(page.programs_model.rows), timeout=WAIT_MS)
        assert {"name": "engine", "state": "RUNNING"} in page.programs_model.rows
        target = os.environ.get("POSTROOM_SCREENSHOT")
        if target:
            qtbot.wait(40_000)  # a picture with a little more history in its charts
            assert window.grab().save(target)

        # Supervisor: status of every program in the selected engine.
        page.tabs.setCurrentIndex(1)
        page.supervisor_buttons["status"].click()
        qtbot.waitUntil(lambda: "RUNNING" in page.supervisor_output.toPlainText(), timeout=WAIT_MS)
        assert page.status.text().startswith("Done: supervisorctl status all in ")
        # Extra workers for the campaign on engine 2: a program of its own there.
        page.tabs.setCurrentIndex(2)
        page.workers_engine.setCurrentIndex(page.workers_engine.findData(2))
        page.workers_count.setValue(2)
        page.workers_button.click()
        qtbot.waitUntil(
            lambda: page.status.text() == "2 extra worker(s) for Spring run on engine 2.",
            timeout=WAIT_MS,
        )
        page.engines_table.selectRow(1)
        qtbot.waitUntil(
            lambda: any(r["name"] == "campaign-1" for r in page.programs_model.rows),
            timeout=WAIT_MS,
        )

        # Stop, then Cancel: the page stops waiting at once; Docker finishes on its own.
        page.stop_button.click()
        assert page.cancel_button.isVisible()
        page.cancel_button.click()
        assert not page.busy_bar.isVisible() and page.stop_button.isEnabled()
        assert page.status.text().startswith("Stopped waiting for")
        qtbot.waitUntil(
            lambda: "finished after it was cancelled: Stopped:" in page.status.text(),
            timeout=HEALTHY_WAIT_MS,
        )
        page.timer.stop()
        qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
