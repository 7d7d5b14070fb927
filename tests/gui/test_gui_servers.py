"""The Delivery Servers page end to end, offscreen, against real SQLite and real SMTP peers.

Each test drives the page as a user would (typing, clicking Save, Test, Delete) on the
shared qasync loop, so the loop watchdog fails any interaction that stalls the GUI.
The SMTP servers are aiosmtpd instances on 127.0.0.1 running in that same loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import keyring
import pytest
import shiboken6
from keyring.backends import fail
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialogButtonBox,
    QLineEdit,
    QMessageBox,
    QScrollArea,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.models.database import Database
from app.services import groups, servers, smtp_check, smtp_report
from app.services.vault import open_vault
from app.views import theme
from app.views.context import AppContext
from app.views.pages.servers import BADGE_FILLS, ServersPage
from app.views.server_dialog import ServerDialog
from app.views.smtp_test_panel import SmtpTestPanel
from tests.conftest import WAIT_MS
from tests.smtp_peers import (
    LOCALHOST,
    Accounts,
    Peer,
    RecordingHandler,
    make_pki,
    server_context,
    start_smtp,
)

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

USERNAME = "mailer@postroom.test"
PASSWORD = "Zq7!distinctive-Pa55word-4f1e"
# Where the rendered PNGs are also copied, for a person to look at (unset: tmp_path only).
SCREENSHOT_DIR = os.environ.get("POSTROOM_SCREENSHOT_DIR")

T = TypeVar("T")


# ---------------------------------------------------------------------- harness


@pytest.fixture(scope="module", autouse=True)
def warmed_up(qapp: QApplication) -> None:
    """Pay the Qt process's one-time costs before any watchdog runs, as the console does
    while it starts: the font database, the SVG icon plugin, the first style sheets."""
    page = ServersPage(AppContext())
    dialog = ServerDialog(page.context, None, page)
    for tab in range(dialog.tabs.count()):
        dialog.tabs.setCurrentIndex(tab)
        dialog.grab()
    page.grab()
    shiboken6.delete(page)


@pytest.fixture
def context(qt_loop: asyncio.AbstractEventLoop, sqlite_database: Database) -> Iterator[AppContext]:
    app_context = AppContext()
    app_context.set_database(sqlite_database)
    yield app_context
    app_context.cancel_all()


@pytest.fixture
def page(qtbot: QtBot, context: AppContext) -> Iterator[ServersPage]:
    servers_page = ServersPage(context)

    def settle(widget: QWidget) -> None:
        # Before pytest-qt deletes the widgets: a reload or test still in flight (a save's
        # refresh, a test that failed half-way) finishes, or is cancelled, first.
        dialog = servers_page.dialog
        if dialog is not None and shiboken6.isValid(dialog):
            dialog.test_panel.cancel()
        qtbot.waitUntil(lambda: not context.has_pending_work(), timeout=WAIT_MS)

    qtbot.addWidget(servers_page, before_close_func=settle)
    servers_page.resize(1040, 460)
    servers_page.show()
    wait_loaded(qtbot, servers_page)
    yield servers_page
    # Nothing may still use the database the sqlite_database fixture disposes next.
    qtbot.waitUntil(lambda: not context.has_pending_work(), timeout=WAIT_MS)


@pytest.fixture
def peers(qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop) -> Iterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for peer in started:
        run(qtbot, peer.stop())


@pytest.fixture
def closed_port() -> Iterator[int]:
    """Bound but not listening: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        yield sock.getsockname()[1]


def run(qtbot: QtBot, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the Qt loop while Qt keeps processing events (no nested loop)."""
    future = asyncio.ensure_future(coroutine)
    qtbot.waitUntil(future.done, timeout=WAIT_MS)
    return future.result()


def wait_loaded(qtbot: QtBot, page: ServersPage) -> None:
    qtbot.waitUntil(
        lambda: not page.context.has_pending_work() and page.status.text() != "Loading…",
        timeout=WAIT_MS,
    )


def wait_laid_out(qtbot: QtBot, page: ServersPage) -> None:
    """The header lays its sections out in a deferred pass: the columns fill the width."""
    header = page.table.horizontalHeader()

    def filled() -> None:
        assert header.length() == page.table.viewport().width()

    qtbot.waitUntil(filled, timeout=WAIT_MS)


def table_row(page: ServersPage, name: str) -> dict[str, Any] | None:
    return next((row for row in page.model.rows if row["name"] == name), None)


def write(database: Database, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A change made behind the page's back (another console, the CLI)."""
    with database.transaction() as session:
        return fn(session, *args, **kwargs)


def add_server(database: Database, name: str, **values: object) -> None:
    settings: dict[str, object] = {"name": name, "host": "smtp.example.com", **values}
    password = settings.pop("password", None)
    with database.transaction() as session:
        cipher = open_vault(session) if password else None
        servers.create_server(session, settings, password=password, cipher=cipher)  # type: ignore[arg-type]


def type_into(qtbot: QtBot, widget: QWidget, text: str) -> None:
    """Select what the field holds and type over it, as a user would."""
    assert isinstance(widget, QLineEdit)
    widget.setFocus()
    widget.selectAll()
    if text:
        qtbot.keyClicks(widget, text)
    else:
        qtbot.keyClick(widget, Qt.Key.Key_Delete)


def choose(widget: QWidget, value: object) -> None:
    assert isinstance(widget, QComboBox)
    widget.setCurrentIndex(widget.findData(value))


def save_button(dialog: ServerDialog) -> Any:
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Save)


def new_dialog(qtbot: QtBot, page: ServersPage) -> ServerDialog:
    qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)
    dialog = page.dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.isVisible)  # built a tab per loop turn, then shown
    return dialog


def open_editor(qtbot: QtBot, page: ServersPage, name: str) -> ServerDialog:
    assert page.select_where("name", name)
    qtbot.mouseClick(page.edit_button, Qt.MouseButton.LeftButton)
    dialog = page.dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.isVisible)
    return dialog


def field_error(dialog: ServerDialog, key: str) -> str:
    for form in dialog.forms:
        if key in form.fields:
            label = form.fields[key].error
            return "" if label.isHidden() else label.text()
    raise KeyError(key)


def stored(database: Database, name: str) -> dict[str, Any]:
    with database.session() as session:
        return servers.server_as_dict(servers.get_server(session, name))


def open_test_tab(dialog: ServerDialog) -> SmtpTestPanel:
    dialog.tabs.setCurrentWidget(dialog.test_panel)
    return dialog.test_panel


def save_png(widget: QWidget, path: Path) -> QImage:
    assert widget.grab().save(str(path))
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        assert widget.grab().save(str(Path(SCREENSHOT_DIR) / path.name))
    return QImage(str(path))


def has_colour(image: QImage, colour: str, tolerance: int = 12) -> bool:
    wanted = QColor(colour)
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            pixel = image.pixelColor(QPoint(x, y))
            if (
                abs(pixel.red() - wanted.red()) <= tolerance
                and abs(pixel.green() - wanted.green()) <= tolerance
                and abs(pixel.blue() - wanted.blue()) <= tolerance
            ):
                return True
    return False


# ---------------------------------------------------------------------- create / edit


def test_create_a_server_by_typing_into_the_dialog(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, tmp_path: Path
) -> None:
    assert page.model.rows == []
    dialog = new_dialog(qtbot, page)
    assert dialog.windowTitle() == "Create a New Delivery Server"
    # The reference's defaults are there before anything is typed.
    assert dialog.field("timeout_seconds").text() == "10"  # type: ignore[attr-defined]

    qtbot.keyClicks(dialog.field("name"), "US Marketing Server")
    qtbot.keyClicks(dialog.field("host"), "smtp.example.com")
    type_into(qtbot, dialog.field("port"), "465")
    choose(dialog.field("encryption"), "tls")
    # Port 465 with STARTTLS: allowed, but the service's note says so under the form.
    assert any("465" in note for note in dialog.notes.notes)
    assert dialog.notes.isVisibleTo(dialog)
    notes = dialog.notes
    qtbot.waitUntil(lambda: notes.height() >= notes.heightForWidth(notes.width()))
    save_png(dialog, tmp_path / "server-dialog-create.png")
    choose(dialog.field("encryption"), "ssl")
    assert not any("465" in note for note in dialog.notes.notes)
    qtbot.keyClicks(dialog.field("mail_from_domain"), "bounces.example.com")
    qtbot.keyClicks(dialog.field("hourly_quota"), "1000")
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)

    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: table_row(page, "US Marketing Server") is not None, timeout=WAIT_MS)
    row = table_row(page, "US Marketing Server")
    assert row is not None
    assert row["allocation_text"] == "Not Allocated"
    assert page.model.index(0, 1).data() == "smtp.example.com:465 (SSL)"
    assert page.model.index(0, 4).data() == "Not tested"
    assert page.selected_row() == row  # the saved server is selected
    saved = stored(sqlite_database, "US Marketing Server")
    assert (saved["port"], saved["encryption"], saved["timeout_seconds"]) == (465, "ssl", 10)
    assert saved["hourly_quota"] == 1000 and saved["mail_from_domain"] == "bounces.example.com"


def test_bad_port_and_host_are_refused_inline_and_nothing_is_stored(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database
) -> None:
    dialog = new_dialog(qtbot, page)
    qtbot.keyClicks(dialog.field("name"), "Broken")
    qtbot.keyClicks(dialog.field("host"), "smtp example.com")
    assert "must not contain spaces" in field_error(dialog, "host")
    type_into(qtbot, dialog.field("port"), "70000")
    assert field_error(dialog, "port") == "must be a whole number from 1 to 65535."
    # The Domains tab is open when Save is clicked: the dialog goes to the refused fields.
    dialog.tabs.setCurrentIndex(1)
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    assert dialog.isVisible()
    assert dialog.tabs.currentIndex() == 0
    assert "need attention" in dialog.error.text()
    with sqlite_database.session() as session:
        assert servers.list_servers(session) == []

    # Fixing the values clears the messages as the user types.
    type_into(qtbot, dialog.field("host"), "smtp.example.com")
    type_into(qtbot, dialog.field("port"), "2525")
    assert field_error(dialog, "host") == "" and field_error(dialog, "port") == ""


def test_service_refusal_lands_under_its_field(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database
) -> None:
    """Rules that span fields are the service's: Authentication on needs a Username."""
    dialog = new_dialog(qtbot, page)
    qtbot.keyClicks(dialog.field("name"), "Needs login")
    qtbot.keyClicks(dialog.field("host"), "smtp.example.com")
    assert not dialog.field("username").isEnabled()
    choose(dialog.field("auth_enabled"), True)
    assert dialog.field("username").isEnabled()
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: field_error(dialog, "username") != "", timeout=WAIT_MS)
    assert "required when Authentication is on" in field_error(dialog, "username")
    assert dialog.isVisible()
    with sqlite_database.session() as session:
        assert servers.list_servers(session) == []


def test_edit_and_save(qtbot: QtBot, page: ServersPage, sqlite_database: Database) -> None:
    add_server(sqlite_database, "Relay")
    page.refresh()
    wait_loaded(qtbot, page)
    dialog = open_editor(qtbot, page, "Relay")
    assert dialog.field("host").text() == "smtp.example.com"  # type: ignore[attr-defined]
    assert not dialog.is_dirty()
    qtbot.keyClicks(dialog.field("mail_from_domain"), "bounces.example.org")
    type_into(qtbot, dialog.field("max_connections"), "12")
    assert dialog.is_dirty()
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: (table_row(page, "Relay") or {}).get("mail_from_domain") == "bounces.example.org",
        timeout=WAIT_MS,
    )
    saved = stored(sqlite_database, "Relay")
    assert saved["max_connections"] == 12 and saved["version"] == 2


def test_concurrent_edit_offers_reload(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database
) -> None:
    add_server(sqlite_database, "Shared", port=587)
    page.refresh()
    wait_loaded(qtbot, page)
    dialog = open_editor(qtbot, page, "Shared")
    # Another console saves the row while this dialog is open.
    write(sqlite_database, servers.update_server, "Shared", {"port": 2525})

    qtbot.keyClicks(dialog.field("mail_from_domain"), "bounces.example.com")
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.findChild(QMessageBox, "concurrentEditBox") is not None)
    box = dialog.findChild(QMessageBox, "concurrentEditBox")
    assert isinstance(box, QMessageBox)
    qtbot.waitUntil(box.isVisible)
    assert "changed by someone else" in box.text()
    assert stored(sqlite_database, "Shared")["mail_from_domain"] is None  # not overwritten

    reload_button = next(b for b in box.buttons() if b.text() == "Reload")
    qtbot.mouseClick(reload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: dialog.field("port").text() == "2525",  # type: ignore[attr-defined]
        timeout=WAIT_MS,
    )
    assert dialog.version == 2 and not dialog.is_dirty()
    # Applying the change again now succeeds, on top of the other console's edit.
    qtbot.keyClicks(dialog.field("mail_from_domain"), "bounces.example.com")
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    saved = stored(sqlite_database, "Shared")
    assert (saved["port"], saved["mail_from_domain"]) == (2525, "bounces.example.com")


# ---------------------------------------------------------------------- passwords


def test_password_is_encrypted_kept_and_removed(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database
) -> None:
    dialog = new_dialog(qtbot, page)
    qtbot.keyClicks(dialog.field("name"), "Authenticated")
    qtbot.keyClicks(dialog.field("host"), "smtp.example.com")
    choose(dialog.field("auth_enabled"), True)
    qtbot.keyClicks(dialog.field("username"), USERNAME)
    password = dialog.field("password")
    assert isinstance(password, QLineEdit)
    assert password.echoMode() == QLineEdit.EchoMode.Password
    qtbot.keyClicks(password, PASSWORD)
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    with sqlite_database.transaction() as session:
        server = servers.get_server(session, "Authenticated")
        assert server.password_encrypted and PASSWORD not in server.password_encrypted
        assert servers.decrypt_password(server, open_vault(session)) == PASSWORD
    qtbot.waitUntil(lambda: table_row(page, "Authenticated") is not None, timeout=WAIT_MS)
    assert PASSWORD not in repr(page.model.rows)

    # Editing with the field left empty keeps the stored password.
    dialog = open_editor(qtbot, page, "Authenticated")
    assert dialog.field("password").text() == ""  # type: ignore[attr-defined]
    remove = dialog.field("remove_password")
    assert remove.isVisibleTo(dialog)
    type_into(qtbot, dialog.field("timeout_seconds"), "30")
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    assert stored(sqlite_database, "Authenticated")["has_password"] is True

    # "Remove stored password" removes it.
    wait_loaded(qtbot, page)
    dialog = open_editor(qtbot, page, "Authenticated")
    remove = dialog.field("remove_password")
    dialog.tabs.setCurrentIndex(0)
    remove.setFocus()
    qtbot.keyClick(remove, Qt.Key.Key_Space)
    assert not dialog.field("password").isEnabled()
    assert any("no password is stored" in note for note in dialog.notes.notes)
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    assert stored(sqlite_database, "Authenticated")["has_password"] is False


def test_unavailable_keyring_is_one_sentence_in_the_dialog(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database
) -> None:
    keyring.set_keyring(fail.Keyring())  # the memory_keyring fixture restores it
    dialog = new_dialog(qtbot, page)
    qtbot.keyClicks(dialog.field("name"), "No keyring")
    qtbot.keyClicks(dialog.field("host"), "smtp.example.com")
    choose(dialog.field("auth_enabled"), True)
    qtbot.keyClicks(dialog.field("username"), USERNAME)
    qtbot.keyClicks(dialog.field("password"), PASSWORD)
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.error.text() != "", timeout=WAIT_MS)
    assert dialog.error.text().startswith("No usable keyring was found")
    assert PASSWORD not in dialog.error.text()
    assert dialog.isVisible()
    with sqlite_database.session() as session:
        assert servers.list_servers(session) == []


# ---------------------------------------------------------------------- the Test tab


def test_test_tab_runs_against_a_real_smtp_server(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, peers: list[Peer]
) -> None:
    handler = RecordingHandler()
    peers.append(peer := run(qtbot, start_smtp(handler)))
    add_server(
        sqlite_database,
        "Local relay",
        host=LOCALHOST,
        port=peer.port,
        encryption="none",
        mail_from_domain="bounces.postroom.test",
    )
    page.refresh()
    wait_loaded(qtbot, page)
    assert table_row(page, "Local relay")["last_test_status"] == "untested"  # type: ignore[index]

    dialog = open_editor(qtbot, page, "Local relay")
    panel = open_test_tab(dialog)
    seen: list[int] = []  # the number of stages shown at each update of the table
    panel.stage_model.modelReset.connect(lambda: seen.append(len(panel.stage_model.rows)))
    qtbot.keyClicks(panel.recipient, "someone@postroom.test")
    # Return in the address field runs the test (and does not press Save).
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as finished:
        qtbot.keyClick(panel.recipient, Qt.Key.Key_Return)
        assert panel.cancel_button.isEnabled() and not panel.test_button.isEnabled()
    assert dialog.isVisible()
    report = finished.args[0]  # type: ignore[index]
    assert report.ok, report.as_dict()

    names = [row["name"] for row in panel.stage_model.rows]
    assert names == ["resolve", "connect", "banner", "ehlo", "mail_from", "rcpt", "data", "quit"]
    # Each stage was shown as it completed, before the test was over.
    assert seen[1 : len(names) + 1] == list(range(1, len(names) + 1))
    assert panel.state.text().startswith("The SMTP connection was successful")
    assert not panel.hint_box.isVisibleTo(panel)
    assert panel.detail_labels["certificate"].text() == "No TLS session was established"
    assert panel.stage_model.index(1, 0).data() == "Connect"
    assert panel.stage_model.index(4, 2).data().startswith("250")
    assert len(handler.envelopes) == 1
    assert handler.envelopes[0].rcpt_tos == ["someone@postroom.test"]

    # The result is recorded, and the list (behind the dialog) shows the green check.
    qtbot.waitUntil(
        lambda: (table_row(page, "Local relay") or {}).get("last_test_status") == "ok",
        timeout=WAIT_MS,
    )
    assert page.model.index(0, 4).data().startswith("OK · ")
    assert "successful" in page.model.index(0, 4).data(Qt.ItemDataRole.ToolTipRole)
    # A test result is not an edit: the open dialog can still save.
    qtbot.keyClicks(dialog.field("enforced_from_email"), "news@postroom.test")
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)


def test_test_tab_uses_unsaved_values_and_the_stored_password(
    qtbot: QtBot,
    page: ServersPage,
    sqlite_database: Database,
    peers: list[Peer],
    tmp_path: Path,
) -> None:
    """STARTTLS with a self-signed certificate (allowed on the form) and AUTH with the
    password that is only stored encrypted: the field stays empty."""
    pki = make_pki(tmp_path / "pki")
    accounts = Accounts(USERNAME, PASSWORD)
    peers.append(
        peer := run(
            qtbot,
            start_smtp(
                RecordingHandler(),
                starttls=server_context(pki.self_signed),
                authenticator=accounts,
            ),
        )
    )
    add_server(
        sqlite_database,
        "Submission",
        host=LOCALHOST,
        port=1,  # wrong on purpose: the form's unsaved value is what gets tested
        encryption="tls",
        auth_enabled=True,
        username=USERNAME,
        password=PASSWORD,
    )
    page.refresh()
    wait_loaded(qtbot, page)
    dialog = open_editor(qtbot, page, "Submission")
    type_into(qtbot, dialog.field("port"), str(peer.port))
    allow = dialog.field("allow_unverified_certificate")
    allow.setFocus()
    qtbot.keyClick(allow, Qt.Key.Key_Space)
    assert any("verification is turned off" in note for note in dialog.notes.notes)

    panel = open_test_tab(dialog)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    report = finished.args[0]  # type: ignore[index]
    assert report.ok, report.as_dict()
    assert accounts.attempts  # the stored password was decrypted and used
    assert "auth" in [row["name"] for row in panel.stage_model.rows]
    assert panel.detail_labels["certificate"].text().startswith("Not checked")
    assert panel.detail_labels["version"].text().startswith("TLS")
    assert "PLAIN" in panel.detail_labels["auth"].text().upper()
    save_png(dialog, tmp_path / "server-dialog-test-ok.png")
    shown = " ".join(label.text() for label in panel.findChildren(type(panel.state)))
    assert PASSWORD not in shown and PASSWORD not in repr(panel.stage_model.rows)
    # Testing saved nothing of the form: the stored port is still the wrong one.
    assert stored(sqlite_database, "Submission")["port"] == 1


def test_failing_test_shows_the_hint_and_the_red_x(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, closed_port: int
) -> None:
    add_server(sqlite_database, "Down", host=LOCALHOST, port=closed_port, encryption="none")
    page.refresh()
    wait_loaded(qtbot, page)
    dialog = open_editor(qtbot, page, "Down")
    panel = open_test_tab(dialog)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert panel.hint_box.isVisibleTo(panel)
    assert panel.hint_title.text() == "Failed at: Connect"
    assert "refused" in panel.hint.text()
    assert [row["ok"] for row in panel.stage_model.rows] == [True, False]

    qtbot.waitUntil(
        lambda: (table_row(page, "Down") or {}).get("last_test_status") == "failed",
        timeout=WAIT_MS,
    )
    tooltip = page.model.index(0, 4).data(Qt.ItemDataRole.ToolTipRole)
    assert "failed at Connect" in tooltip and "refused" in tooltip


def test_a_new_server_can_be_tested_before_it_is_saved(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, peers: list[Peer]
) -> None:
    peers.append(peer := run(qtbot, start_smtp(RecordingHandler())))
    dialog = new_dialog(qtbot, page)
    panel = open_test_tab(dialog)
    # Without a host the test says which field to fix instead of running.
    qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "SMTP Host" in panel.state.text(), timeout=WAIT_MS)
    assert panel.test_button.isEnabled()

    qtbot.keyClicks(dialog.field("host"), LOCALHOST)
    type_into(qtbot, dialog.field("port"), str(peer.port))
    choose(dialog.field("encryption"), "none")
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].ok  # type: ignore[index]
    with sqlite_database.session() as session:
        assert servers.list_servers(session) == []  # nothing recorded for an unsaved server


def fill_new_server(qtbot: QtBot, dialog: ServerDialog, name: str, port: int) -> None:
    qtbot.keyClicks(dialog.field("name"), name)
    qtbot.keyClicks(dialog.field("host"), LOCALHOST)
    type_into(qtbot, dialog.field("port"), str(port))
    choose(dialog.field("encryption"), "none")


def test_a_test_run_before_the_first_save_is_recorded_with_the_server(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, peers: list[Peer]
) -> None:
    peers.append(peer := run(qtbot, start_smtp(RecordingHandler())))
    dialog = new_dialog(qtbot, page)
    fill_new_server(qtbot, dialog, "Tested first", peer.port)
    panel = open_test_tab(dialog)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].ok  # type: ignore[index]
    # Only a note in the dialog so far: the server does not exist yet.
    with sqlite_database.session() as session:
        assert servers.list_servers(session) == []

    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    # The list shows the result the user saw, not "Not tested".
    qtbot.waitUntil(
        lambda: (table_row(page, "Tested first") or {}).get("last_test_status") == "ok",
        timeout=WAIT_MS,
    )
    assert page.model.index(0, 4).data().startswith("OK · ")
    saved = stored(sqlite_database, "Tested first")
    assert saved["last_test_status"] == "ok"
    assert saved["version"] == 1  # recorded as a test result, not as a second edit
    assert saved["last_test_at"] is not None
    with sqlite_database.session() as session:
        recorded = json.loads(servers.get_server(session, "Tested first").last_test_report or "")
    assert recorded == json.loads(finished.args[0].to_json())  # type: ignore[index]


def test_a_test_of_other_settings_is_not_recorded_on_the_first_save(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, peers: list[Peer]
) -> None:
    peers.append(peer := run(qtbot, start_smtp(RecordingHandler())))
    dialog = new_dialog(qtbot, page)
    fill_new_server(qtbot, dialog, "Changed after test", peer.port)
    panel = open_test_tab(dialog)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    assert finished.args[0].ok  # type: ignore[index]
    # The host changes after the test: the green check would describe another server.
    dialog.tabs.setCurrentIndex(0)
    type_into(qtbot, dialog.field("host"), "smtp.example.net")
    qtbot.mouseClick(save_button(dialog), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    wait_loaded(qtbot, page)
    qtbot.waitUntil(lambda: table_row(page, "Changed after test") is not None, timeout=WAIT_MS)
    assert table_row(page, "Changed after test")["last_test_status"] == "untested"  # type: ignore[index]
    assert stored(sqlite_database, "Changed after test")["last_test_status"] == "untested"


def test_cancel_stops_a_running_test(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, peers: list[Peer]
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept and never greet: the banner stage waits

    from tests.smtp_peers import start_raw

    peers.append(peer := run(qtbot, start_raw(silent)))
    add_server(
        sqlite_database,
        "Silent",
        host=LOCALHOST,
        port=peer.port,
        encryption="none",
        timeout_seconds=60,
    )
    page.refresh()
    wait_loaded(qtbot, page)
    dialog = open_editor(qtbot, page, "Silent")
    panel = open_test_tab(dialog)
    qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(panel.stage_model.rows) == 2, timeout=WAIT_MS)  # connected
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)

    def cancelled() -> None:
        assert panel.state.text() == "Test cancelled."

    qtbot.waitUntil(cancelled, timeout=WAIT_MS)
    assert panel.test_button.isEnabled() and not panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not page.context.has_pending_work(), timeout=WAIT_MS)
    assert stored(sqlite_database, "Silent")["last_test_status"] == "untested"


# ---------------------------------------------------------------------- allocation, delete


def test_badges_show_after_assigning_the_server_to_a_group(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database, tmp_path: Path
) -> None:
    add_server(sqlite_database, "Relay")
    add_server(sqlite_database, "Spare")
    page.refresh()
    wait_loaded(qtbot, page)
    assert table_row(page, "Relay")["allocation_text"] == "Not Allocated"  # type: ignore[index]
    before = save_png(page, tmp_path / "before.png")
    assert not has_colour(before, BADGE_FILLS["blue"])

    write(
        sqlite_database,
        groups.create_group,
        {"name": "UserGroup1", "marketing_server": "Relay", "transactional_server": "Relay"},
    )
    page.context.changed.emit("user_group")  # what the User Groups page does after saving
    qtbot.waitUntil(
        lambda: (table_row(page, "Relay") or {}).get("allocation_text") == "UserGroup1: M T",
        timeout=WAIT_MS,
    )
    assert table_row(page, "Spare")["allocation_text"] == "Not Allocated"  # type: ignore[index]
    relay = page.model.index(0, 3)
    assert relay.data() == "UserGroup1: M T"  # the text a screen reader gets
    assert "UserGroup1: Marketing" in relay.data(Qt.ItemDataRole.ToolTipRole)
    after = save_png(page, tmp_path / "after.png")
    assert has_colour(after, BADGE_FILLS["blue"]) and has_colour(after, BADGE_FILLS["green"])
    assert not has_colour(after, BADGE_FILLS["purple"])


def test_delete_refused_while_allocated_then_allowed(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database
) -> None:
    add_server(sqlite_database, "Relay")
    write(sqlite_database, groups.create_group, {"name": "UserGroup1", "marketing_server": "Relay"})
    page.refresh()
    wait_loaded(qtbot, page)
    asked: list[str] = []
    page.confirm_delete = lambda row: asked.append(row["name"]) or True  # type: ignore[method-assign]
    page.select_where("name", "Relay")
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "UserGroup1" in page.status.text(), timeout=WAIT_MS)
    assert asked == ["Relay"]
    assert "assign another server there first" in page.status.text()
    assert table_row(page, "Relay") is not None

    write(sqlite_database, groups.update_group, "UserGroup1", {"marketing_server": None})
    page.context.changed.emit("user_group")
    qtbot.waitUntil(
        lambda: (table_row(page, "Relay") or {}).get("allocation_text") == "Not Allocated",
        timeout=WAIT_MS,
    )
    page.select_where("name", "Relay")
    page.table.setFocus()
    qtbot.keyClick(page.table, Qt.Key.Key_Delete)  # the keyboard way
    qtbot.waitUntil(lambda: table_row(page, "Relay") is None, timeout=WAIT_MS)
    with sqlite_database.session() as session:
        assert servers.list_servers(session) == []


def test_declined_confirmation_deletes_nothing(
    qtbot: QtBot, page: ServersPage, sqlite_database: Database
) -> None:
    add_server(sqlite_database, "Keep me")
    page.refresh()
    wait_loaded(qtbot, page)
    page.confirm_delete = lambda row: False  # type: ignore[method-assign]
    page.select_where("name", "Keep me")
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.context.has_pending_work(), timeout=WAIT_MS)
    assert stored(sqlite_database, "Keep me")["name"] == "Keep me"


# ---------------------------------------------------------------------- how it looks


def seed_demo(database: Database, closed_port: int) -> None:
    add_server(
        database,
        "US Marketing Server",
        host="smtp.us.example.com",
        port=587,
        encryption="tls",
        username="marketing@example.com",
        password="not-a-real-password",
        mail_from_domain="bounces.example.com",
        link_tracking_domain="click.example.com",
        open_tracking_domain="track.example.com",
        hourly_quota=5000,
    )
    add_server(
        database,
        "EU Transactional",
        host="mail.eu.example.net",
        port=465,
        encryption="ssl",
        mail_from_domain="rp.example.net",
    )
    add_server(database, "Local relay", host=LOCALHOST, port=closed_port, encryption="none")
    add_server(database, "Backup relay", host="relay2.example.org", port=2525)
    write(
        database,
        groups.create_group,
        {
            "name": "UserGroup1",
            "marketing_server": "US Marketing Server",
            "transactional_server": "EU Transactional",
            "autoresponder_server": "US Marketing Server",
        },
    )
    write(
        database,
        groups.create_group,
        {"name": "Agencies", "transactional_server": "EU Transactional"},
    )
    good = smtp_report.SmtpCheckReport(True, None, None, [], None, [])
    write(database, smtp_check.record_result, "EU Transactional", good)


@pytest.fixture(params=["light", "dark"])
def palette_mode(request: pytest.FixtureRequest, qapp: QApplication) -> Iterator[str]:
    """Set before the page exists (and before the loop watchdog starts), as at start-up:
    re-theming every live widget at once is not an interaction the console performs."""
    previous = qapp.palette()
    if request.param == "dark":
        qapp.setPalette(theme.dark_palette())
    yield request.param
    qapp.setPalette(previous)


def test_page_and_dialog_render_with_demo_data(
    palette_mode: str,
    qtbot: QtBot,
    page: ServersPage,
    sqlite_database: Database,
    closed_port: int,
    tmp_path: Path,
) -> None:
    dark = palette_mode == "dark"
    seed_demo(sqlite_database, closed_port)
    page.refresh()
    wait_loaded(qtbot, page)
    assert len(page.model.rows) == 4
    suffix = "-dark" if dark else ""
    wait_laid_out(qtbot, page)
    image = save_png(page, tmp_path / f"servers-page{suffix}.png")
    assert has_colour(image, BADGE_FILLS["purple"])

    dialog = open_editor(qtbot, page, "Local relay")
    panel = open_test_tab(dialog)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    dialog.close()
    qtbot.waitUntil(lambda: not page.context.has_pending_work(), timeout=WAIT_MS)
    wait_loaded(qtbot, page)
    wait_laid_out(qtbot, page)
    image = save_png(page, tmp_path / f"servers-page-tested{suffix}.png")
    # The palette is followed: the table's background is the palette's Base colour.
    base = page.palette().color(QPalette.ColorRole.Base)
    corner = image.pixelColor(
        page.table.mapTo(page, page.table.rect().bottomLeft()) + QPoint(30, -30)
    )
    assert corner == base
    assert (base.lightness() < 128) is dark

    dialog = open_editor(qtbot, page, "US Marketing Server")
    for index, name in enumerate(("method", "domains", "test")):
        dialog.tabs.setCurrentIndex(index)
        save_png(dialog, tmp_path / f"server-dialog-{name}{suffix}.png")
    scroller = dialog.tabs.widget(0)
    assert isinstance(scroller, QScrollArea)
    dialog.close()

    dialog = open_editor(qtbot, page, "Local relay")
    panel = open_test_tab(dialog)
    with qtbot.waitSignal(panel.finished, timeout=WAIT_MS):
        qtbot.mouseClick(panel.test_button, Qt.MouseButton.LeftButton)
    image = save_png(dialog, tmp_path / f"server-dialog-test-failed{suffix}.png")
    assert image.width() == dialog.width()
