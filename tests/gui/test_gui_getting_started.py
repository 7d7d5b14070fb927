"""The Getting Started page and the Troubleshoot dialog, offscreen, on real SQLite databases.

A new database opens on the checklist and a fully set-up one on Delivery Servers; the
steps tick as their data appears; each button opens its page or dialog; the Troubleshoot
dialog shows the checks of a real ``diagnose`` run (no SMTP peer is needed: with no
server on any route the live part has nothing to connect to).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from sqlalchemy import update

from app.engine import heartbeats
from app.models import QueueItem, QueueStatus
from app.models.database import Database
from app.services import campaigns, groups, servers, users
from app.services.dns_settings import update_settings
from app.services.sender_domains import create_sender_domain, set_domain_status
from app.services.smtp_check import record_result
from app.services.smtp_report import SmtpCheckReport, StageResult
from app.views.main_window import MainWindow
from app.views.pages.campaigns import CampaignsPage
from app.views.pages.getting_started import GettingStartedPage
from app.views.troubleshoot_dialog import TroubleshootDialog
from tests.conftest import WAIT_MS, open_database

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

KEY_B64 = base64.b64encode(bytes(range(40))).decode()


def start_page(window: MainWindow) -> GettingStartedPage:
    page = window.page("Getting Started")
    assert isinstance(page, GettingStartedPage)
    return page


def idle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)


def finish_setup(url: str) -> None:
    """Every step's data, through the services (the SMTP test's outcome is stored as the
    Test tab stores it; the real test is exercised in tests/services)."""
    db = Database(url)
    with db.transaction() as session:
        update_settings(
            session,
            {
                "spf_include": "include:spf.relay.test",
                "dkim_public_key": KEY_B64,
                "sender_domain_target": "relay.test",
                "link_tracker_target": "relay.test",
                "open_tracker_target": "relay.test",
            },
        )
        servers.create_server(
            session, {"name": "relay", "host": "127.0.0.1", "port": 2525, "encryption": "none"}
        )
        record_result(
            session,
            "relay",
            SmtpCheckReport(
                ok=True,
                failed_stage=None,
                hint=None,
                stages=[StageResult("connect", True, 1.0, "connected")],
                tls=None,
                auth_mechanisms=[],
            ),
        )
        groups.create_group(
            session,
            {
                "name": "Senders",
                "marketing_server": "relay",
                "transactional_server": "relay",
                "autoresponder_server": "relay",
                "sender_domain_management": True,
            },
        )
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Senders"}
        )
        create_sender_domain(session, "alice", "mail.example.com")
        set_domain_status(session, "mail.example.com", "campaign", "enabled")
        created = campaigns.create_campaign(
            session,
            "Test 1",
            "alice",
            "marketing",
            "me@mail.example.com",
            None,
            "Test",
            "Hello",
            None,
            ["me@example.org"],
        )
    with db.transaction() as session:
        session.execute(
            update(QueueItem)
            .where(QueueItem.campaign_id == created["id"])
            .values(status=QueueStatus.SENT)
        )
    heartbeats.beat(db.engine, "e1", state="running", sent=1, failed=0, campaigns={})
    db.dispose()


def test_getting_started_is_the_first_section(window: MainWindow) -> None:
    assert window.pages[0].title == "Getting Started"
    assert window.navigation.item(0).text() == "Getting Started"
    assert not window.navigation.item(0).icon().isNull()


def test_a_new_database_opens_on_the_checklist_with_nothing_ticked(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    window.select_section("Users")  # where it was before: the database decides
    assert open_database(qtbot, window, sqlite_url) is not None
    assert window.current_page.title == "Getting Started"
    page = start_page(window)
    qtbot.waitUntil(lambda: page.progress.text() == "0 of 7 done", timeout=WAIT_MS)
    assert [row.done for row in page.rows.values()] == [False] * 7
    assert page.rows["delivery_server"].detail.text() == "No delivery server yet."
    idle(qtbot, window)


def test_a_finished_setup_opens_on_delivery_servers(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    finish_setup(sqlite_url)
    assert open_database(qtbot, window, sqlite_url) is not None
    assert window.current_page.title == "Delivery Servers"
    window.select_section("Getting Started")
    page = start_page(window)
    qtbot.waitUntil(lambda: page.progress.text() == "7 of 7 done", timeout=WAIT_MS)
    assert all(row.done for row in page.rows.values())
    idle(qtbot, window)


def test_a_step_ticks_when_its_data_is_saved(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    page = start_page(window)
    qtbot.waitUntil(lambda: page.progress.text() == "0 of 7 done", timeout=WAIT_MS)
    db = window.database
    assert db is not None
    with db.transaction() as session:
        groups.create_group(session, {"name": "Senders"})
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Senders"}
        )
    window.context.changed.emit("user")  # as the Users page says after a save
    qtbot.waitUntil(lambda: page.rows["user"].done, timeout=WAIT_MS)
    assert page.progress.text() == "1 of 7 done"
    assert page.rows["user"].detail.text() == "1 active user."
    assert "has no delivery server" in page.rows["user_group"].detail.text()
    idle(qtbot, window)


def test_the_buttons_open_their_pages_and_dialogs(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    page = start_page(window)
    qtbot.waitUntil(lambda: page.progress.text() == "0 of 7 done", timeout=WAIT_MS)

    qtbot.mouseClick(page.rows["dns_settings"].button, Qt.MouseButton.LeftButton)
    assert window.current_page.title == "DNS Settings"

    for step_id, title in (
        ("user_group", "User Groups"),
        ("sender_domain", "Sender Domains"),
    ):
        window.select_section("Getting Started")
        qtbot.mouseClick(page.rows[step_id].button, Qt.MouseButton.LeftButton)
        assert window.current_page.title == title

    # No server yet: the button says so and opens the New Server dialog on its page.
    window.select_section("Getting Started")
    qtbot.waitUntil(lambda: page.rows["delivery_server"].button.text() == "New Server…")
    qtbot.mouseClick(page.rows["delivery_server"].button, Qt.MouseButton.LeftButton)
    servers_page = window.current_page
    assert servers_page.title == "Delivery Servers"
    qtbot.waitUntil(
        lambda: servers_page.dialog is not None and servers_page.dialog.isVisible(),  # type: ignore[attr-defined]
        timeout=WAIT_MS,
    )
    servers_page.dialog.reject()  # type: ignore[attr-defined]

    # The Send Engines page may not exist in this console: then the button explains.
    window.select_section("Getting Started")
    engines = page.rows["send_engine"].button
    if window.has_section("Send Engines"):
        qtbot.mouseClick(engines, Qt.MouseButton.LeftButton)
        assert window.current_page.title == "Send Engines"
        window.select_section("Getting Started")
    else:
        assert not engines.isEnabled()
        assert "postroom engine run" in engines.toolTip()

    qtbot.mouseClick(page.rows["test_campaign"].button, Qt.MouseButton.LeftButton)
    dialog = page.test_dialog
    assert dialog is not None and dialog.isVisible()
    idle(qtbot, window)
    dialog.reject()
    idle(qtbot, window)


def wait_for_checks(qtbot: QtBot, dialog: TroubleshootDialog) -> None:
    qtbot.waitUntil(
        lambda: dialog.diagnosis is not None and not dialog.is_running(), timeout=WAIT_MS
    )


def test_troubleshoot_shows_a_real_diagnosis_and_copies_it(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    db = window.database
    assert db is not None
    with db.transaction() as session:
        servers.create_server(
            session, {"name": "spare", "host": "127.0.0.1", "port": 1, "encryption": "none"}
        )
        groups.create_group(session, {"name": "Senders"})
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Senders"}
        )
    assert window.troubleshoot_action.isEnabled()
    window.troubleshoot_action.trigger()
    dialog = window.troubleshoot_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.busy.isVisible() or dialog.diagnosis is not None
    wait_for_checks(qtbot, dialog)
    assert dialog.diagnosis is not None
    verdicts = {c.name: c.ok for c in dialog.diagnosis.checks}
    assert verdicts["send engine running"] is False
    assert verdicts["route: Senders / marketing"] is False
    assert verdicts["servers allocated"] is False
    rows = dialog.model.rows
    assert len(rows) == len(dialog.diagnosis.checks)
    assert rows[0]["ok"] is False  # problems first
    assert not dialog.busy.isVisible() and dialog.run_button.isEnabled()
    assert "found a problem" in dialog.summary.text()

    dialog.copy_button.click()
    report = QApplication.clipboard().text()
    assert "FAIL send engine running" in report
    assert "fix: Assign them to a channel" in report
    assert "Scope: all users, every channel" in report

    # Again, for one user and channel, as --user / --channel.
    dialog.user_combo.setCurrentIndex(dialog.user_combo.findData("alice"))
    dialog.channel_combo.setCurrentIndex(dialog.channel_combo.findData("transactional"))
    dialog.live_box.setChecked(False)
    first = dialog.diagnosis
    dialog.run_button.click()
    qtbot.waitUntil(
        lambda: dialog.diagnosis is not first and not dialog.is_running(), timeout=WAIT_MS
    )
    names = {c.name for c in dialog.diagnosis.checks}
    assert "route: Senders / transactional" in names
    assert "route: Senders / marketing" not in names
    dialog.reject()
    idle(qtbot, window)


def test_closing_troubleshoot_while_it_runs_stops_waiting(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    dialog = window.show_troubleshooter()
    assert dialog is not None and dialog.is_running()
    dialog.reject()
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)


def test_troubleshoot_from_the_start_page_and_the_campaigns_page(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    page = start_page(window)
    qtbot.mouseClick(page.troubleshoot_button, Qt.MouseButton.LeftButton)
    dialog = page.troubleshoot_dialog
    assert dialog is not None and dialog.isVisible()
    wait_for_checks(qtbot, dialog)
    dialog.reject()

    window.select_section("Campaigns")
    campaigns_page = window.current_page
    assert isinstance(campaigns_page, CampaignsPage)
    qtbot.mouseClick(campaigns_page.troubleshoot_button, Qt.MouseButton.LeftButton)
    dialog = campaigns_page.troubleshoot_dialog
    assert isinstance(dialog, TroubleshootDialog) and dialog.isVisible()
    wait_for_checks(qtbot, dialog)
    dialog.reject()
    idle(qtbot, window)


def test_the_rendered_page_fits_1280_by_800(
    qtbot: QtBot, window: MainWindow, sqlite_url: str, tmp_path: Path
) -> None:
    window.resize(1280, 800)
    assert open_database(qtbot, window, sqlite_url) is not None
    page = start_page(window)
    qtbot.waitUntil(lambda: page.progress.text() == "0 of 7 done", timeout=WAIT_MS)
    # Every row, and the Troubleshoot button below them, is inside the visible page.
    bottom = page.troubleshoot_button.mapTo(page, page.troubleshoot_button.rect().bottomLeft())
    assert bottom.y() <= page.height()
    assert window.grab().save(str(tmp_path / "getting-started.png"))
    idle(qtbot, window)
