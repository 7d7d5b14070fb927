"""The README's "first five minutes", steps 1 to 5, in one window, using only the UI.

One MainWindow on a fresh SQLite database; every step is done with mouse clicks and key
presses: the sections are chosen in the navigation list, rows opened by clicking them,
dialogs filled by typing, combo boxes chosen with the keyboard, tabs brought forward by
clicking them. The services are only read, to check what the UI stored. The peers are
real: an aiosmtpd server (tests/smtp_peers.py) for the delivery server's Test tab, and
NSD (tests/dns_peer.py) publishing what Copy All Records put on the clipboard, as a user
pastes it at their DNS provider, until the domain is Enabled.

Widgets are found by object name, accessible name or the dialog's own attributes, never
by their label text or position: wording, tab order and toolbars may change around them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import shiboken6
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QListWidget,
    QTableView,
    QTabWidget,
    QWidget,
)
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from app.models import DomainStatus, SenderDomain
from app.models.database import Database
from app.services import groups, servers, users
from app.services.dns_settings import get_settings
from app.views.main_window import MainWindow
from app.views.pages.dns_settings import DnsSettingsPage
from app.views.pages.domains import DomainsPage
from app.views.pages.groups import GroupsPage
from app.views.pages.servers import ServersPage
from app.views.pages.templates import TemplatesPage
from app.views.pages.users import UsersPage
from app.views.table_model import ROW_ROLE
from tests.conftest import WAIT_MS, peer_missing
from tests.dns_peer import DnsPeer, missing_reason, record_line, start_server, zone_text
from tests.smtp_peers import Peer, RecordingHandler, start_smtp

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

T = TypeVar("T")

ZONE = "five.test"
DOMAIN = f"mail.{ZONE}"
SERVER = "First Relay"
GROUP = "First Senders"
USERNAME = "alice"
TARGET = "mailer.postroom-e2e.test"


@pytest.fixture
def window_options() -> dict[str, object]:
    return {"open": True, "size": (1200, 760)}


@pytest.fixture
def window(window: MainWindow) -> MainWindow:
    for page in window.pages:
        if isinstance(page, DnsSettingsPage):
            # A failing step must not leave a modal "discard changes?" question behind.
            page.confirm_discard = lambda: True
    return window


@pytest.fixture
def smtp_peer(qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop) -> Iterator[Peer]:
    handler = RecordingHandler()
    peer = run(qtbot, start_smtp(handler))
    peer.handler = handler  # type: ignore[attr-defined]
    yield peer
    run(qtbot, peer.stop())


@pytest.fixture
def dns_peers() -> Iterator[list[DnsPeer]]:
    reason = missing_reason()
    if reason:
        peer_missing(reason)
    started: list[DnsPeer] = []
    yield started
    for peer in started:
        peer.stop()


# ---------------------------------------------------------------- driving the UI


def run(qtbot: QtBot, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the Qt loop while Qt keeps processing events (no nested loop)."""
    future = asyncio.ensure_future(coroutine)
    qtbot.waitUntil(future.done, timeout=WAIT_MS)
    return future.result()


def db_of(window: MainWindow) -> Database:
    assert window.database is not None
    return window.database


def settle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)


def click(qtbot: QtBot, widget: QWidget) -> None:
    assert widget.isEnabled(), widget.objectName()
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def go_to(qtbot: QtBot, window: MainWindow, kind: type[T]) -> T:
    """Click the section of the page of type ``kind`` in the navigation list."""
    navigation = window.findChild(QListWidget, "navigation")
    assert navigation is not None
    row = next(i for i, page in enumerate(window.pages) if isinstance(page, kind))
    item = navigation.item(row)
    navigation.scrollToItem(item)
    centre = navigation.visualItemRect(item).center()
    qtbot.mouseClick(navigation.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    page = window.pages[row]
    qtbot.waitUntil(lambda: window.current_page is page, timeout=WAIT_MS)
    settle(qtbot, window)
    assert isinstance(page, kind)
    return page


def open_dialog(qtbot: QtBot, window: MainWindow, name: str) -> QDialog:
    """The visible dialog with object name ``name``, once it is shown."""
    found: list[QDialog] = []

    def shown() -> None:
        found[:] = [d for d in window.findChildren(QDialog, name) if d.isVisible()]
        assert len(found) == 1

    qtbot.waitUntil(shown, timeout=WAIT_MS)
    return found[0]


def closed(qtbot: QtBot, dialog: QDialog) -> None:
    # Dialogs are deleted on close: gone counts as closed.
    qtbot.waitUntil(
        lambda: not shiboken6.isValid(dialog) or not dialog.isVisible(), timeout=WAIT_MS
    )


def child(parent: QWidget, kind: type[T], name: str) -> T:
    widget = parent.findChild(kind, name)  # type: ignore[arg-type]
    assert widget is not None, f"no {kind.__name__} named {name!r}"
    return widget  # type: ignore[return-value]


def field(parent: QWidget, key: str) -> Any:
    """A form's input by its object name (``field_<key>``), its tab brought forward."""
    widget = child(parent, QWidget, f"field_{key}")
    return widget


def reveal(qtbot: QtBot, widget: QWidget) -> None:
    """Click every tab that hides ``widget``, outermost first."""
    chain: list[tuple[QTabWidget, int]] = []
    inner: QWidget | None = widget
    while inner is not None:
        parent = inner.parentWidget()
        tabs = parent.parentWidget() if parent is not None else None
        if isinstance(tabs, QTabWidget):
            chain.append((tabs, tabs.indexOf(inner)))
        inner = parent
    for tabs, index in reversed(chain):
        if index >= 0 and tabs.currentIndex() != index:
            bar = tabs.tabBar()
            assert bar.isVisible(), "the tab is not reachable: its bar is hidden"
            qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(index).center())
            qtbot.waitUntil(lambda t=tabs, i=index: t.currentIndex() == i, timeout=WAIT_MS)
    qtbot.waitUntil(widget.isVisible, timeout=WAIT_MS)


def type_over(qtbot: QtBot, edit: QLineEdit, text: str) -> None:
    """Click into the field, select what it holds and type over it."""
    reveal(qtbot, edit)
    qtbot.mouseClick(edit, Qt.MouseButton.LeftButton)
    qtbot.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(edit, text)
    assert edit.text() == text, (edit.objectName(), edit.text())


def choose(qtbot: QtBot, combo: QComboBox, value: object) -> None:
    """Pick the entry whose data (or, for names, whose text) is ``value`` with the
    keyboard: Home, then Down until it is the current one."""

    def current() -> bool:
        return combo.currentData() == value or combo.currentText() == value

    reveal(qtbot, combo)
    combo.setFocus(Qt.FocusReason.TabFocusReason)  # as tabbing into it does
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    for _ in range(combo.count()):
        if current():
            return
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert current(), f"{value!r} not offered: {[combo.itemText(i) for i in range(combo.count())]}"


def tick(qtbot: QtBot, check: QCheckBox) -> None:
    reveal(qtbot, check)
    if not check.isChecked():
        check.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.keyClick(check, Qt.Key.Key_Space)
    assert check.isChecked()


def dialog_button(dialog: QDialog, which: QDialogButtonBox.StandardButton) -> QAbstractButton:
    box = dialog.findChild(QDialogButtonBox)
    assert box is not None
    button = box.button(which)
    assert button is not None
    return button


def click_row(qtbot: QtBot, table: QTableView, key: str, value: object) -> None:
    """Click the row whose ``key`` is ``value``, to select it."""
    model = table.model()

    def present() -> None:
        assert any(model.index(r, 0).data(ROW_ROLE)[key] == value for r in range(model.rowCount()))

    qtbot.waitUntil(present, timeout=WAIT_MS)
    row = next(r for r in range(model.rowCount()) if model.index(r, 0).data(ROW_ROLE)[key] == value)
    index = model.index(row, 0)
    table.scrollTo(index)
    pos: QPoint = table.visualRect(index).center()
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: table.currentIndex().row() == row, timeout=WAIT_MS)


def wait_for(qtbot: QtBot, check: Callable[[], object]) -> None:
    qtbot.waitUntil(lambda: bool(check()), timeout=WAIT_MS)


# ---------------------------------------------------------------- the walk


def test_first_five_minutes_in_one_window(
    qtbot: QtBot, window: MainWindow, smtp_peer: Peer, dns_peers: list[DnsPeer], tmp_path: Path
) -> None:
    db = db_of(window)

    # 1. DNS template: the seeded campaign template Default, opened; its preview shows the
    #    records a sample domain would get.
    templates = go_to(qtbot, window, TemplatesPage)
    table = child(templates, QTableView, "templatesTable")
    click_row(qtbot, table, "name", "Default")
    click(qtbot, child(templates, QAbstractButton, "editTemplateButton"))
    template = open_dialog(qtbot, window, "templateDialog")
    type_over(qtbot, child(template, QLineEdit, "sampleDomainEdit"), "news.sample.test")
    preview = child(template, QTableView, "previewTable")

    def previewed() -> list[str]:
        model = preview.model()
        return [str(model.index(r, 0).data()) for r in range(model.rowCount())]

    wait_for(qtbot, lambda: len(previewed()) == 5)
    assert all("news.sample.test" in host for host in previewed())
    click(qtbot, dialog_button(template, QDialogButtonBox.StandardButton.Cancel))
    closed(qtbot, template)

    # 2. DNS settings: the SPF include, DKIM selector and the three CNAME targets; Save.
    settings = go_to(qtbot, window, DnsSettingsPage)
    wait_for(qtbot, lambda: settings.loaded is not None)
    values = {
        "spf_include": "include:spf.postroom-e2e.test",
        "dkim_selector": "first",
        "sender_domain_target": TARGET,
        "link_tracker_target": f"click.{TARGET}",
        "open_tracker_target": f"open.{TARGET}",
    }
    for key, value in values.items():
        type_over(qtbot, field(settings, key), value)
    click(qtbot, child(settings, QAbstractButton, "saveButton"))

    def saved_settings() -> bool:
        with db.session() as session:
            return get_settings(session).sender_domain_target == TARGET

    wait_for(qtbot, saved_settings)
    with db.session() as session:
        stored_settings = get_settings(session)
    assert stored_settings.spf_include == values["spf_include"]
    assert stored_settings.dkim_selector == "first"
    assert stored_settings.open_tracker_target == f"open.{TARGET}"

    # 3. Delivery server: create it, then open it again and run the Test tab against the
    #    real aiosmtpd server, with a test message.
    server_page = go_to(qtbot, window, ServersPage)
    click(qtbot, server_page.new_button)
    dialog = open_dialog(qtbot, window, "serverDialog")
    type_over(qtbot, field(dialog, "name"), SERVER)
    type_over(qtbot, field(dialog, "host"), "127.0.0.1")
    type_over(qtbot, field(dialog, "port"), str(smtp_peer.port))
    choose(qtbot, field(dialog, "encryption"), "none")
    type_over(qtbot, field(dialog, "mail_from_domain"), f"bounces.{ZONE}")
    click(qtbot, dialog_button(dialog, QDialogButtonBox.StandardButton.Save))
    closed(qtbot, dialog)
    with db.session() as session:
        saved = servers.server_as_dict(servers.get_server(session, SERVER))
    assert (saved["host"], saved["port"], saved["encryption"]) == (
        "127.0.0.1",
        smtp_peer.port,
        "none",
    )

    click_row(qtbot, server_page.table, "name", SERVER)
    click(qtbot, server_page.edit_button)
    dialog = open_dialog(qtbot, window, "serverDialog")
    panel = child(dialog, QWidget, "testPanel")
    reveal(qtbot, panel)
    type_over(qtbot, child(panel, QLineEdit, "testRecipient"), f"postmaster@{ZONE}")
    click(qtbot, child(panel, QAbstractButton, "runTest"))

    def tested() -> bool:
        with db.session() as session:
            return servers.get_server(session, SERVER).last_test_status.value == "ok"

    wait_for(qtbot, tested)
    handler: RecordingHandler = smtp_peer.handler  # type: ignore[attr-defined]
    assert [e.rcpt_tos for e in handler.envelopes] == [[f"postmaster@{ZONE}"]]
    wait_for(qtbot, child(panel, QAbstractButton, "runTest").isEnabled)
    click(qtbot, dialog_button(dialog, QDialogButtonBox.StandardButton.Cancel))
    closed(qtbot, dialog)

    # 4. User group: the server on all three channels, the Default template, sender domain
    #    management on, a daily limit; then a user in the group.
    group_page = go_to(qtbot, window, GroupsPage)
    click(qtbot, group_page.new_button)
    dialog = open_dialog(qtbot, window, "groupDialog")
    type_over(qtbot, field(dialog, "name"), GROUP)
    for channel_key in ("marketing_server", "transactional_server", "autoresponder_server"):
        choose(qtbot, field(dialog, channel_key), SERVER)
    choose(qtbot, field(dialog, "campaign_dns_template"), "Default")
    tick(qtbot, field(dialog, "sender_domain_management"))
    type_over(qtbot, field(dialog, "daily_email_limit"), "1000")
    click(qtbot, dialog_button(dialog, QDialogButtonBox.StandardButton.Save))
    closed(qtbot, dialog)
    with db.session() as session:
        group = groups.group_as_dict(groups.get_group(session, GROUP))
    assert group["marketing_server"] == SERVER
    assert group["autoresponder_server"] == SERVER
    assert group["campaign_dns_template"] == "Default"
    assert group["sender_domain_management"] is True
    assert group["daily_email_limit"] == 1000

    user_page = go_to(qtbot, window, UsersPage)
    click(qtbot, user_page.new_button)
    dialog = open_dialog(qtbot, window, "userDialog")
    type_over(qtbot, field(dialog, "username"), USERNAME)
    type_over(qtbot, field(dialog, "email"), f"{USERNAME}@{ZONE}")
    choose(qtbot, field(dialog, "group"), GROUP)
    click(qtbot, dialog_button(dialog, QDialogButtonBox.StandardButton.Save))
    closed(qtbot, dialog)
    with db.session() as session:
        assert users.get_user(session, USERNAME).group.name == GROUP

    # 5. Sender domain: create it for the user; the detail window lists its records; Copy
    #    All Records, publish them (NSD), verify with Advanced › Name server until Enabled.
    domain_page = go_to(qtbot, window, DomainsPage)
    click(qtbot, child(domain_page, QAbstractButton, "newDomainButton"))
    dialog = open_dialog(qtbot, window, "newDomainDialog")
    owner = field(dialog, "username")
    wait_for(qtbot, lambda: owner.count() > 0)
    choose(qtbot, owner, USERNAME)
    type_over(qtbot, field(dialog, "domain"), DOMAIN)
    click(qtbot, child(dialog, QAbstractButton, "createButton"))
    closed(qtbot, dialog)

    detail = open_dialog(qtbot, window, "domainDetailDialog")
    verify = child(detail, QAbstractButton, "verifyButton")
    wait_for(qtbot, verify.isEnabled)
    badge = child(detail, QWidget, "statusBadge")
    assert badge.accessibleName() == "Status: Approval Pending"
    click(qtbot, child(detail, QAbstractButton, "copyAllButton"))
    copied = QApplication.clipboard().text().splitlines()
    # The Default template's five records, then the SPF TXT record to merge at the domain.
    assert len(copied) == 6
    assert copied[-1].startswith(f"{DOMAIN}\tTXT\tv=spf1 include:")
    published = [record_line(*line.split("\t")) for line in copied]
    assert all(DOMAIN in line for line in published)
    dns_peers.append(start_server(tmp_path / "zones", {ZONE: zone_text(ZONE, published)}))
    nameserver = f"127.0.0.1:{dns_peers[0].port}"

    click(qtbot, child(detail, QAbstractButton, "advancedToggle"))
    type_over(qtbot, child(detail, QLineEdit, "nameserverEdit"), nameserver)
    click(qtbot, verify)

    def enabled() -> bool:
        with db.session() as session:
            status = session.scalar(
                select(SenderDomain.status).where(SenderDomain.domain == DOMAIN)
            )
        return status is DomainStatus.ENABLED

    wait_for(qtbot, enabled)
    wait_for(qtbot, lambda: badge.accessibleName() == "Status: Enabled")
    results = [child(detail, QWidget, f"recordResult{n}").accessibleName() for n in range(1, 6)]
    assert results == ["Check result: Found"] * 5
    assert not child(detail, QWidget, "domainVerdict").isVisible()
    click(qtbot, dialog_button(detail, QDialogButtonBox.StandardButton.Close))
    closed(qtbot, detail)
    # The list behind the window follows.
    wait_for(
        qtbot,
        lambda: any(
            row["domain"] == DOMAIN and row["status"] == "enabled"
            for row in domain_page.model.all_rows
        ),
    )
