"""The dashboard against the real dockerd: FleetMonitor's CPU % and memory agree with
``docker stats``, and the Send Engines page shows a running container of a fleet, runs a
command in it, stops it, and announces (and audits) the change.

The container is the send-engine image running a CPU-bound loop under a CPU quota (so
its CPU % is steady, whatever else the machine does) instead of the engine: the numbers
are what is compared, and an engine needs a database the containers can reach (the fleet
tests cover that). It carries the fleet's labels, so the monitor finds it as an engine.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from app.engine.fleet import (
    ENGINE_ROLE,
    FLEET_LABEL,
    INSTANCE_LABEL,
    ROLE_LABEL,
    FleetSettings,
)
from app.engine.fleet_containers import ContainerFleet
from app.engine.fleet_monitor import FleetMonitor
from app.models import AuditEntry
from app.models.database import Database
from app.views.main_window import MainWindow
from app.views.pages.engines import EnginesPage
from tests.conftest import WAIT_MS
from tests.docker.conftest import docker_cli

# Half a CPU for a loop that would take a whole one: the quota makes the share steady.
QUOTA_CPUS = 0.5
# A loop that also holds 40 MB, so that memory is well above the interpreter's own.
BUSY = "x = bytearray(40 * 1024 * 1024)\nwhile True:\n    pass\n"

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture
def busy_engine(engine_image: dict[str, Any], docker_client: Any) -> Iterator[tuple[str, Any]]:
    """(fleet name, container): one labelled container of a fleet of its own."""
    fleet = f"m{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.run(
        engine_image["image_id"],
        ["-c", BUSY],
        entrypoint=["python3"],
        name=f"postroom-{fleet}-sendengine-1",
        labels={ROLE_LABEL: ENGINE_ROLE, FLEET_LABEL: fleet, INSTANCE_LABEL: "1"},
        nano_cpus=int(QUOTA_CPUS * 1e9),
        init=True,  # python as PID 1 would ignore the stop signal
        detach=True,
    )
    try:
        yield fleet, container
    finally:
        container.remove(force=True)


def docker_stats(name: str) -> dict[str, Any]:
    done = docker_cli("stats", "--no-stream", "--format", "{{json .}}", name)
    assert done.returncode == 0, done.stderr
    stats: dict[str, Any] = json.loads(done.stdout)
    return stats


def mebibytes(text: str) -> float:
    """``18.2MiB`` (docker stats' MemUsage, before the slash) in MiB."""
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]i?B|B)", text.strip()).groups()  # type: ignore[union-attr]
    scale = {"B": 1 / 1024**2, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
    return float(number) * scale[unit]


def test_cpu_and_memory_agree_with_docker_stats(
    busy_engine: tuple[str, Any], docker_client: Any
) -> None:
    fleet_name, container = busy_engine
    fleet = ContainerFleet(docker_client, FleetSettings(fleet=fleet_name))
    monitor = FleetMonitor(fleet)
    time.sleep(3)  # past the loop's start and its 40 MB
    first = monitor.sample()
    (engine,) = first.engines
    assert engine.name == container.name and engine.cpu_percent is None  # nothing before it
    theirs = docker_stats(container.name)
    started = time.monotonic()
    second = monitor.sample()
    print(f"one sample of one container: {second.seconds:.3f} s")
    (engine,) = second.engines
    ours_cpu, ours_memory = engine.cpu_percent, engine.memory_bytes
    assert ours_cpu is not None and ours_memory is not None
    their_cpu = float(theirs["CPUPerc"].rstrip("%"))
    their_memory = mebibytes(theirs["MemUsage"].split("/")[0])
    print(
        f"CPU: ours {ours_cpu:.1f} %, docker stats {their_cpu:.1f} %; memory: ours "
        f"{ours_memory / 1024**2:.1f} MiB, docker stats {their_memory:.1f} MiB "
        f"({time.monotonic() - started:.1f} s apart)"
    )
    # The same within a few points (the two cover slightly different seconds); never
    # above the quota, and well above nothing (a loaded machine gives the loop less).
    assert abs(ours_cpu - their_cpu) <= 12
    assert 5 <= ours_cpu <= QUOTA_CPUS * 100 * 1.1
    assert abs(ours_memory / 1024**2 - their_memory) <= 0.03 * their_memory + 0.2
    assert ours_memory > 40 * 1024**2
    # A bridge network has counters; rates come from the second sample on.
    assert engine.net_rx_bytes is not None and engine.net_rx_rate is not None
    assert second.sent_rate is None or second.sent_rate == 0  # no database: no campaigns


@pytest.fixture
def window_options() -> dict[str, object]:
    return {"open": True, "size": (1280, 800)}


def test_the_page_shows_commands_and_announces_a_real_engine(
    busy_engine: tuple[str, Any],
    qtbot: QtBot,
    window: MainWindow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet_name, container = busy_engine
    monkeypatch.setenv("POSTROOM_SENDENGINE_FLEET", fleet_name)
    window.select_section("Send Engines")
    page = window.page("Send Engines")
    assert isinstance(page, EnginesPage)

    def cpu_shown() -> bool:
        rows = page.engines_model.rows
        return bool(rows) and rows[0]["cpu"].endswith("%")

    qtbot.waitUntil(cpu_shown, timeout=WAIT_MS)
    (row,) = page.engines_model.rows
    assert row["name"] == container.name and row["state"] == "running"
    assert row["net"].endswith("out")  # a bridge network: counted, not "n/a"
    page.engines_table.selectRow(0)

    # A one-off command: argv split like a shell would, run as the engine's user.
    page.tabs.setCurrentIndex(3)
    page.command_line.setText("python3 -c 'import os; print(os.getuid(), \"x y\")'")
    page.command_button.click()
    qtbot.waitUntil(lambda: "x y" in page.command_output.toPlainText(), timeout=WAIT_MS)
    assert "10001 x y" in page.command_output.toPlainText()
    assert not page.busy_bar.isVisible()
    assert page.status.text().startswith("Ran python3 in 1 engine(s)")

    # Stop: the page waits in the executor (the loop stays free), then sees it exited.
    page.stop_button.click()
    assert page.busy_bar.isVisible() and page.cancel_button.isVisible()
    qtbot.waitUntil(lambda: page.status.text().startswith("Stopped:"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: page.banner.isVisible(), timeout=WAIT_MS)
    assert page.banner.text() == (
        f"Send engine {container.name} is exited (was running); its logs say why."
    )
    db = window.database
    assert isinstance(db, Database)

    def audited() -> list[AuditEntry]:
        with db.session() as session:
            return list(
                session.scalars(select(AuditEntry).where(AuditEntry.entity == "send_engine"))
            )

    qtbot.waitUntil(lambda: len(audited()) == 1, timeout=WAIT_MS)
    qtbot.wait(4_500)  # two more samples: still one entry
    assert len(audited()) == 1
    page.timer.stop()
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)


def test_a_missing_image_offers_to_build_it(
    engine_image: dict[str, Any],
    qtbot: QtBot,
    window: MainWindow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import app.engine.fleet_open

    absent = f"postroom/absent:{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(app.engine.fleet_open, "DEFAULT_IMAGE", absent)
    monkeypatch.setenv("POSTROOM_SENDENGINE_FLEET", f"i{uuid.uuid4().hex[:8]}")
    window.select_section("Send Engines")
    page = window.page("Send Engines")
    assert isinstance(page, EnginesPage)
    qtbot.waitUntil(lambda: page.start_button.isEnabled(), timeout=WAIT_MS)
    assert not page.build_button.isVisible()
    page.start_button.click()
    qtbot.waitUntil(lambda: page.build_button.isVisible(), timeout=WAIT_MS)
    assert page.status.text() == (
        f"The send-engine image {absent} is not on this Docker engine; build it with "
        "`postroom sendengine build`."
    )
    # The image the console builds is this version's (made already by the fixture: the
    # build finds it up to date, which is what a second click would find too).
    page.build_button.click()
    assert page.busy_bar.isVisible() and not page.build_button.isVisible()
    qtbot.waitUntil(lambda: not page.busy_bar.isVisible(), timeout=120_000)
    assert page.status.text() == (
        f"The send-engine image {engine_image['tags'][0]} is up to date; start the engines now."
    )
    page.timer.stop()
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
