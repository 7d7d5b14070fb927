"""The User Groups and Users pages, driven end to end offscreen against a real SQLite file."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QMessageBox,
    QTableView,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.models import Channel
from app.models.database import Database
from app.services import dns_templates, groups, limits, routing, sender_domains, servers, users
from app.services.groups import GroupChoices
from app.views.context import AppContext
from app.views.forms import Form
from app.views.group_dialog import GroupDialog
from app.views.pages.groups import GroupsPage
from app.views.pages.users import UsersPage
from app.views.user_dialog import UserDialog
from tests.conftest import WAIT_MS

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

CHANNEL_KEYS = {channel: groups.CHANNEL_ATTRIBUTE[channel] for channel in Channel}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def db(sqlite_database: Database) -> Database:
    return sqlite_database


@pytest.fixture(scope="module", autouse=True)
def qt_widgets_loaded(qapp: QApplication) -> None:
    """Build and show each kind of widget the pages use once, before any watched test.

    The first QTableView, dialog or combo box of a process loads Qt's style and font data
    (over 100 ms on a loaded machine). The console does that at start-up, before its
    event loop runs; a test that builds a page inside the watched period would pay it
    inside the first event dispatch and be failed by the loop watchdog for it.
    """
    warm = GroupDialog(AppContext())
    for _ in warm.build_steps():
        pass
    warm.apply(GroupChoices([], [], []), None)
    warm.show()
    warm.grab()
    table = QTableView()
    table.show()
    table.grab()
    for widget in (warm, table):
        widget.close()
        widget.deleteLater()
    QApplication.processEvents()


@pytest.fixture
def shown() -> list[QWidget]:
    """Pages a test shows; closed by ``context`` only once their background work is done."""
    return []


@pytest.fixture
def context(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop, db: Database, shown: list[QWidget]
) -> Iterator[AppContext]:
    ctx = AppContext()
    ctx.set_database(db)
    # A full collection now, outside any event dispatch, makes one during the test (100 ms
    # and more on a loaded machine, which the loop watchdog would count) much less likely.
    gc.collect()
    yield ctx
    # A reload started by the last save may still be running: let it land before its page
    # goes (pytest-qt would delete widgets given to qtbot.addWidget before this runs) and
    # before the database is disposed under it.
    qtbot.waitUntil(lambda: not ctx.has_pending_work(), timeout=WAIT_MS)
    for widget in shown:
        widget.close()
        widget.deleteLater()


def seed_servers(db: Database, *names: str) -> None:
    with db.transaction() as session:
        for number, name in enumerate(names):
            servers.create_server(session, {"name": name, "host": f"smtp{number}.example.com"})


def seed_group(db: Database, name: str, **values: Any) -> None:
    with db.transaction() as session:
        groups.create_group(session, {"name": name, **values})


def seed_user(db: Database, username: str, group: str) -> int:
    with db.transaction() as session:
        user = users.create_user(
            session, {"username": username, "email": f"{username}@example.com", "group": group}
        )
        return user.id


def show_page(qtbot: QtBot, shown: list[QWidget], page: QWidget, rows: int) -> None:
    shown.append(page)
    page.resize(900, 520)  # about what the main window leaves beside the navigation
    page.show()
    qtbot.waitUntil(lambda: page.model.rowCount() == rows, timeout=WAIT_MS)  # type: ignore[attr-defined]


def open_new(qtbot: QtBot, page: GroupsPage | UsersPage) -> Any:
    qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is not None and page.dialog.isVisible(), timeout=WAIT_MS)
    return page.dialog


def open_row(qtbot: QtBot, page: GroupsPage | UsersPage, row: int = 0) -> Any:
    page.table.selectRow(row)
    qtbot.mouseClick(page.edit_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.dialog is not None and page.dialog.isVisible(), timeout=WAIT_MS)
    return page.dialog


def field(form: Form, key: str) -> Any:
    return form.fields[key].widget


def choose(combo: QComboBox, text: str) -> None:
    index = combo.findText(text)
    assert index >= 0, f"{text!r} not offered: {[combo.itemText(i) for i in range(combo.count())]}"
    combo.setCurrentIndex(index)


def save(qtbot: QtBot, dialog: GroupDialog | UserDialog) -> None:
    button = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def cell(page: GroupsPage | UsersPage, key: str, column_key: str) -> str:
    """The displayed text of a column in the row whose first column is ``key``."""
    model = page.model
    column = next(i for i, c in enumerate(model.columns) if c.key == column_key)
    for row in range(model.rowCount()):
        if model.index(row, 0).data() == key:
            return str(model.index(row, column).data())
    raise AssertionError(f"no row {key!r}")


def preview(dialog: GroupDialog, channel: Channel) -> tuple[str, str]:
    panel = dialog.route_preview
    return panel.outcomes[channel].text(), panel.reasons[channel].text()


# ---------------------------------------------------------------- user groups


def test_create_group_with_live_route_preview(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    seed_servers(db, "Relay A", "Relay B")
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 0)
    dialog = open_new(qtbot, page)
    sending = dialog.sending
    assert [dialog.tabs.tabText(i).replace("&", "") for i in range(dialog.tabs.count())] == [
        "Sending Settings",
        "Email Delivery",
        "Preferences",
        "Limits",
        "Email Headers",
        "Permissions",
    ]
    marketing = field(sending, "marketing_server")
    assert [marketing.itemText(i) for i in range(marketing.count())] == [
        "(none)",
        "Relay A",
        "Relay B",
    ]
    legacy = field(sending, "legacy_send_method")
    assert [legacy.itemText(i) for i in range(legacy.count())] == [
        "(none)",
        "System",
        "SMTP",
        "LocalMTA",
        "PowerMTA",
        "PHPMail",
        "SaveToDisk",
    ]

    qtbot.keyClicks(field(sending, "name"), "Sales")
    outcome, reason = preview(dialog, Channel.MARKETING)
    assert outcome == "→ no route: mail on this channel cannot be sent"
    assert "User group 'Sales' has no delivery server for the marketing channel" in reason

    choose(legacy, "SMTP")
    assert preview(dialog, Channel.TRANSACTIONAL)[0] == "→ legacy send method SMTP"
    choose(marketing, "Relay A")
    assert preview(dialog, Channel.MARKETING) == (
        "→ Relay A",
        "User group 'Sales' assigns delivery server 'Relay A' to the marketing channel.",
    )
    choose(field(sending, "transactional_server"), "Relay B")
    choose(field(sending, "autoresponder_server"), "Relay B")
    choose(marketing, "Relay B")  # changed again: the preview follows the latest choice
    assert preview(dialog, Channel.MARKETING)[0] == "→ Relay B"
    choose(marketing, "Relay A")
    shown = {channel: preview(dialog, channel)[1] for channel in Channel}

    campaign = field(dialog.delivery, "campaign_dns_template")
    assert campaign.itemText(0) == "(none)" and campaign.findText("Default") > 0
    field(dialog.limits, "daily_email_limit").setFocus()
    qtbot.keyClicks(field(dialog.limits, "daily_email_limit"), "1000")
    save(qtbot, dialog)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT_MS)

    assert cell(page, "Sales", "marketing_server") == "Relay A"
    assert cell(page, "Sales", "transactional_server") == "Relay B"
    assert cell(page, "Sales", "limits") == "1,000/day"
    assert cell(page, "Sales", "user_count") == "0"
    # The preview said exactly what the saved group's real route says.
    seed_user(db, "alice", "Sales")
    with db.session() as session:
        for channel in Channel:
            assert routing.resolve_route(session, "alice", channel).reason == shown[channel]
        saved = groups.group_as_dict(groups.get_group(session, "Sales"))
    assert saved["legacy_send_method"] == "smtp"
    assert saved["daily_email_limit"] == 1000
    assert saved["default_sender_domain_monthly_limit"] == 200
    context.changed.emit("user")  # as the Users page does after a save: the count follows
    qtbot.waitUntil(lambda: cell(page, "Sales", "user_count") == "1", timeout=WAIT_MS)


def test_group_dialog_is_keyboard_reachable(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    seed_servers(db, "Relay A")
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 0)
    dialog = open_new(qtbot, page)
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    name = field(dialog.sending, "name")
    name.setFocus()
    order = [name]
    for _ in range(4):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        order.append(QApplication.focusWidget())
    assert order[1:] == [
        field(dialog.sending, key)
        for key in (
            "marketing_server",
            "transactional_server",
            "autoresponder_server",
            "legacy_send_method",
        )
    ]
    # Alt+L (the tab's mnemonic) brings the Limits tab forward; the type-ahead of a combo
    # box picks a server by name.
    qtbot.keyClick(dialog, Qt.Key.Key_L, Qt.KeyboardModifier.AltModifier)
    assert dialog.tabs.currentWidget() is dialog.limits
    dialog.tabs.setCurrentWidget(dialog.sending)
    marketing = field(dialog.sending, "marketing_server")
    marketing.setFocus()
    qtbot.keyClicks(marketing, "Relay")
    assert marketing.currentText() == "Relay A"
    assert preview(dialog, Channel.MARKETING)[0] == "→ Relay A"
    for label in dialog.sending.findChildren(QLabel):
        if label.text() == "Target Delivery Server (Marketing):":
            assert label.buddy() is marketing
            break
    else:
        raise AssertionError("no label for the marketing server")
    dialog.confirm_discard = lambda: True
    dialog.reject()


def test_table_shows_legacy_and_missing_routes_muted(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    seed_servers(db, "Relay A")
    seed_group(db, "Legacy", legacy_send_method="powermta", marketing_server="Relay A")
    seed_group(db, "Nothing")
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 2)
    assert cell(page, "Legacy", "marketing_server") == "Relay A"
    assert cell(page, "Legacy", "transactional_server") == "legacy: PowerMTA"
    assert cell(page, "Nothing", "autoresponder_server") == "none"
    assert cell(page, "Nothing", "limits") == "Unlimited"
    assert cell(page, "Nothing", "campaign_dns_template") == "Default"
    muted = QApplication.palette().color(QPalette.ColorRole.PlaceholderText)
    model = page.model
    column = next(i for i, c in enumerate(model.columns) if c.key == "transactional_server")
    row = next(r for r in range(2) if model.index(r, 0).data() == "Legacy")
    brush = model.index(row, column).data(Qt.ItemDataRole.ForegroundRole)
    assert brush.color() == muted


def test_x_mailer_with_line_break_is_refused_inline(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 0)
    dialog = open_new(qtbot, page)
    qtbot.keyClicks(field(dialog.sending, "name"), "Injected")
    dialog.tabs.setCurrentWidget(dialog.headers)
    x_mailer: QLineEdit = field(dialog.headers, "x_mailer")
    x_mailer.setFocus()
    # A paste is how a line break gets into a one-line field.
    QApplication.clipboard().setText("Postroom\r\nBcc: victim@example.com")
    qtbot.keySequence(x_mailer, QKeySequence.StandardKey.Paste)
    assert "\r" in x_mailer.text() or "\n" in x_mailer.text()
    error = dialog.headers.fields["x_mailer"].error
    assert error.isVisibleTo(dialog)
    assert "U+000D" in error.text() and "without line breaks" in error.text()

    dialog.tabs.setCurrentWidget(dialog.sending)
    qtbot.waitUntil(lambda: not context.has_pending_work(), timeout=WAIT_MS)
    save(qtbot, dialog)  # refused before any write: the X-Mailer tab comes forward
    assert dialog.isVisible()
    assert dialog.tabs.currentWidget() is dialog.headers
    assert "need attention" in dialog.error.text()
    assert not context.has_pending_work()  # nothing was sent to the database
    with db.session() as session:
        assert groups.list_groups(session) == []
    dialog.confirm_discard = lambda: True
    dialog.reject()
    assert not dialog.isVisible()


def test_limits_are_validated_inline_and_say_empty_is_unlimited(
    qtbot: QtBot, shown: list[QWidget], context: AppContext
) -> None:
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 0)
    dialog = open_new(qtbot, page)
    monthly = field(dialog.limits, "monthly_email_limit")
    assert monthly.placeholderText() == "Unlimited"
    qtbot.keyClicks(monthly, "lots")
    error = dialog.limits.fields["monthly_email_limit"].error
    assert error.text() == "must be a whole number from 0 to 2000000000."
    monthly.clear()
    qtbot.keyClicks(monthly, "0")
    assert not error.isVisibleTo(dialog)
    hints = " ".join(label.text() for label in dialog.limits.findChildren(QLabel))
    assert "Empty or 0 = unlimited" in hints
    dialog.confirm_discard = lambda: True
    dialog.reject()


def test_default_sender_domain_fields_follow_the_checkbox(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 0)
    dialog = open_new(qtbot, page)
    prefs = dialog.preferences
    domain: QLineEdit = field(prefs, "default_sender_domain")
    monthly: QLineEdit = field(prefs, "default_sender_domain_monthly_limit")
    activate: QCheckBox = field(prefs, "default_sender_domain_enabled")
    assert monthly.text() == "200"
    assert not domain.isEnabled() and not monthly.isEnabled()
    warning = dialog.findChild(QLabel, "defaultDomainWarning")
    assert warning is not None and "does not go through DNS verification" in warning.text()

    qtbot.keyClicks(field(dialog.sending, "name"), "Fallback")
    dialog.tabs.setCurrentWidget(prefs)
    activate.setFocus()
    qtbot.keyClick(activate, Qt.Key.Key_Space)
    assert activate.isChecked()
    assert domain.isEnabled() and monthly.isEnabled()

    # The service's rule (a domain is required once activated) lands under its field.
    dialog.tabs.setCurrentWidget(dialog.sending)
    save(qtbot, dialog)
    error = prefs.fields["default_sender_domain"].error
    qtbot.waitUntil(lambda: error.isVisibleTo(dialog), timeout=WAIT_MS)
    assert "required when the default sender domain is activated" in error.text()
    assert dialog.tabs.currentWidget() is prefs
    qtbot.keyClicks(domain, "mail.example.com")
    save(qtbot, dialog)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    with db.session() as session:
        saved = groups.get_group(session, "Fallback")
        assert saved.default_sender_domain == "mail.example.com"
        assert saved.default_sender_domain_enabled


def test_concurrent_edit_is_refused_with_a_reload_offer(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    seed_group(db, "Sales")
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 1)
    dialog = open_row(qtbot, page)
    daily: QLineEdit = field(dialog.limits, "daily_email_limit")
    qtbot.keyClicks(daily, "500")
    # Another console saves the same group meanwhile.
    with db.transaction() as session:
        groups.update_group(session, "Sales", {"monthly_email_limit": 9000})

    save(qtbot, dialog)
    qtbot.waitUntil(
        lambda: dialog.findChild(QMessageBox, "concurrentEditBox") is not None, timeout=WAIT_MS
    )
    box = dialog.findChild(QMessageBox, "concurrentEditBox")
    qtbot.waitUntil(box.isVisible)
    assert "changed by someone else" in box.text()
    assert dialog.isVisible()
    with db.session() as session:
        assert groups.get_group(session, "Sales").daily_email_limit is None  # nothing written

    reload_button = next(b for b in box.buttons() if b.text() == "Reload")
    qtbot.mouseClick(reload_button, Qt.MouseButton.LeftButton)
    monthly: QLineEdit = field(dialog.limits, "monthly_email_limit")
    qtbot.waitUntil(lambda: monthly.text() == "9000", timeout=WAIT_MS)
    assert daily.text() == ""
    assert "Reloaded" in dialog.error.text()

    qtbot.keyClicks(daily, "500")
    save(qtbot, dialog)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    with db.session() as session:
        saved = groups.get_group(session, "Sales")
        assert (saved.daily_email_limit, saved.monthly_email_limit) == (500, 9000)


def test_deleting_a_group_with_users_is_refused_in_the_status(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    seed_group(db, "Busy")
    seed_group(db, "Empty")
    seed_user(db, "alice", "Busy")
    page = GroupsPage(context)
    show_page(qtbot, shown, page, 2)
    asked: list[str] = []

    def confirm(row: dict[str, Any]) -> bool:
        asked.append(str(row["name"]))
        return True

    page.confirm_delete = confirm  # type: ignore[method-assign]
    assert page.select_where("name", "Busy")
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "still has 1 user(s)" in page.status.text(), timeout=WAIT_MS)
    assert "#c62828" in page.status.styleSheet()
    assert asked == ["Busy"]
    assert page.model.rowCount() == 2

    assert page.select_where("name", "Empty")
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT_MS)
    with db.session() as session:
        assert [g.name for g in groups.list_groups(session)] == ["Busy"]


# ---------------------------------------------------------------- users


def test_create_user_in_a_group_through_the_dialog(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    seed_group(db, "Sales", daily_email_limit=100)
    seed_group(db, "Support")
    page = UsersPage(context)
    show_page(qtbot, shown, page, 0)
    dialog = open_new(qtbot, page)
    form = dialog.form
    qtbot.keyClicks(field(form, "username"), "bob")
    qtbot.keyClicks(field(form, "email"), "not-an-address")
    assert "is not an e-mail address" in form.fields["email"].error.text()
    field(form, "email").clear()
    qtbot.keyClicks(field(form, "email"), "bob@example.com")
    choose(field(form, "group"), "Support")
    choose(field(form, "group"), "Sales")
    assert field(form, "is_active").isChecked()
    assert dialog.unsaved_note.isVisible() and not dialog.usage.isVisible()
    save(qtbot, dialog)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT_MS)
    assert cell(page, "bob", "group") == "Sales"
    assert cell(page, "bob", "email") == "bob@example.com"
    assert cell(page, "bob", "today") == "0 / 100"
    assert cell(page, "bob", "lifetime") == "0 / ∞"
    with db.session() as session:
        assert users.get_user(session, "bob").group.name == "Sales"


def test_usage_counts_show_after_sends_are_recorded(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    seed_group(
        db,
        "Sales",
        daily_email_limit=10,
        monthly_email_limit=1000,
        sender_domains_limit=3,
        sender_domain_management=True,
    )
    user_id = seed_user(db, "carol", "Sales")
    with db.transaction() as session:
        sender_domains.create_sender_domain(session, "carol", "news.example.com")
    page = UsersPage(context)
    show_page(qtbot, shown, page, 1)
    assert cell(page, "carol", "today") == "0 / 10"
    assert cell(page, "carol", "domain_count") == "1 / 3"

    with db.transaction() as session:
        limits.record_sent(session, user_id, 7)
        limits.record_sent(session, user_id, 3, via_default_domain=True)
    qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: cell(page, "carol", "today") == "10 / 10", timeout=WAIT_MS)
    assert cell(page, "carol", "this_month") == "10 / 1,000"
    assert cell(page, "carol", "lifetime") == "10 / ∞"
    model = page.model
    today_column = next(i for i, c in enumerate(model.columns) if c.key == "today")
    brush = model.index(0, today_column).data(Qt.ItemDataRole.ForegroundRole)
    assert brush.color() == QColor("#c62828")  # the daily limit is reached

    dialog = open_row(qtbot, page)
    meters = dialog.usage.meters
    assert meters["daily"].text.text() == "10 of 10 · limit reached"
    assert meters["daily"].bar.value() == meters["daily"].bar.maximum() == 10
    assert meters["monthly"].text.text() == "10 of 1,000"
    assert meters["lifetime"].text.text() == "10 sent · unlimited"
    assert meters["default_domain"].text.text() == "3 of 200"
    assert "not activated" in meters["default_domain"].period.text()
    assert "Sales" in dialog.usage.title()
    # The Default campaign template has records, so the new domain awaits verification.
    assert dialog.domains.model.rows == [
        {"domain": "news.example.com", "kind": "campaign", "status": "approval_pending"}
    ]
    status = dialog.domains.model.index(0, 2)
    assert status.data() == "Approval Pending"
    assert "1 sender domain(s); the group allows 3" in dialog.domains.summary.text()
    save(qtbot, dialog)  # nothing changed: saving is harmless
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)


# ---------------------------------------------------------------- screenshots


def seed_demo(db: Database) -> None:
    with db.transaction() as session:
        for name, host in (
            ("Postmark Broadcast", "smtp-broadcasts.postmarkapp.com"),
            ("Postmark Transactional", "smtp.postmarkapp.com"),
            ("In-house relay", "relay.internal.example.com"),
        ):
            servers.create_server(session, {"name": name, "host": host})
        dns_templates.create_template(
            session,
            name="Strict DMARC",
            kind="campaign",
            records=[("_dmarc", "TXT", "v=DMARC1; p=reject")],
        )
        groups.create_group(
            session,
            {
                "name": "UserGroup1",
                "marketing_server": "Postmark Broadcast",
                "transactional_server": "Postmark Transactional",
                "autoresponder_server": "Postmark Transactional",
                "campaign_dns_template": "Strict DMARC",
                "sender_domain_management": True,
                "daily_email_limit": 5000,
                "monthly_email_limit": 100000,
                "sender_domains_limit": 5,
                "x_mailer": "Postroom",
                "html_footer": '<p style="font-size:11px">Sent by Example Ltd.</p>',
                "perm_gateway_add_domain": True,
            },
        )
        groups.create_group(
            session,
            {
                "name": "Legacy customers",
                "marketing_server": "In-house relay",
                "legacy_send_method": "smtp",
                "default_sender_domain_enabled": True,
                "default_sender_domain": "mail.example.com",
                "lifetime_email_limit": 20000,
            },
        )
        groups.create_group(session, {"name": "Trial"})
        for username, group in (
            ("alice", "UserGroup1"),
            ("bob", "UserGroup1"),
            ("carol", "Legacy customers"),
            ("dave", "Trial"),
        ):
            users.create_user(
                session,
                {"username": username, "email": f"{username}@example.com", "group": group},
            )
        users.update_user(session, "dave", {"is_active": False})
        for domain in ("news.example.com", "offers.example.com"):
            sender_domains.create_sender_domain(session, "alice", domain)
        sender_domains.set_domain_status(session, "offers.example.com", "campaign", "enabled")
        alice = users.get_user(session, "alice").id
        carol = users.get_user(session, "carol").id
        limits.record_sent(session, alice, 4200)
        limits.record_sent(session, alice, 800, today=limits.utc_today() - timedelta(days=1))
        limits.record_sent(session, carol, 180, via_default_domain=True)


def shot_dir(tmp_path: Path) -> Path:
    # POSTROOM_SHOT_DIR keeps the images for a human to look at.
    target = Path(os.environ.get("POSTROOM_SHOT_DIR", tmp_path))
    target.mkdir(parents=True, exist_ok=True)
    return target


def grab(widget: QWidget, path: Path) -> None:
    assert widget.grab().save(str(path))
    image = QImage(str(path))
    assert image.width() > 100 and image.height() > 100


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, "#2b2b2b"),
        (QPalette.ColorRole.WindowText, "#e6e6e6"),
        (QPalette.ColorRole.Base, "#1f1f1f"),
        (QPalette.ColorRole.AlternateBase, "#2a2a2a"),
        (QPalette.ColorRole.Text, "#e6e6e6"),
        (QPalette.ColorRole.Button, "#353535"),
        (QPalette.ColorRole.ButtonText, "#e6e6e6"),
        (QPalette.ColorRole.PlaceholderText, "#9a9a9a"),
        (QPalette.ColorRole.Highlight, "#3d6fb4"),
        (QPalette.ColorRole.HighlightedText, "#ffffff"),
    ):
        palette.setColor(role, QColor(colour))
    return palette


def test_a_refresh_updates_rows_in_place_and_keeps_selection_and_filter(
    qtbot: QtBot, shown: list[QWidget], context: AppContext, db: Database
) -> None:
    """A reload (as a live page does every few seconds) changes only the rows that changed:
    the selected user stays selected, the filter stays applied, the table is not reset."""
    seed_group(db, "Sales", daily_email_limit=100)
    ids = {name: seed_user(db, name, "Sales") for name in ("ann", "bob", "cy", "dee")}
    page = UsersPage(context)
    show_page(qtbot, shown, page, 4)
    assert page.select_where("username", "cy")
    resets: list[bool] = []
    page.model.modelReset.connect(lambda: resets.append(True))

    with db.transaction() as session:
        limits.record_sent(session, ids["cy"], 5)
        users.delete_user(session, "ann")
    seed_user(db, "eve", "Sales")
    page.context.changed.emit("user")
    qtbot.waitUntil(lambda: cell(page, "cy", "today") == "5 / 100", timeout=WAIT_MS)
    assert [row["username"] for row in page.model.rows] == ["bob", "cy", "dee", "eve"]
    assert page.selected_row() is not None and page.selected_row()["username"] == "cy"
    assert not resets

    # A filter that hides most rows resets the table; the page selects the row again.
    qtbot.keyClicks(page.filter, "cy")
    assert [row["username"] for row in page.model.rows] == ["cy"]
    assert page.selected_row() is not None and page.selected_row()["username"] == "cy"
    page.filter.clear()
    assert len(page.model.rows) == 4
    assert page.selected_row() is not None and page.selected_row()["username"] == "cy"


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_pages_and_dialogs_render_with_demo_data(
    qtbot: QtBot,
    shown: list[QWidget],
    context: AppContext,
    db: Database,
    tmp_path: Path,
    qapp: QApplication,
    theme: str,
) -> None:
    seed_demo(db)
    target = shot_dir(tmp_path)
    original = qapp.palette()
    if theme == "dark":
        qapp.setPalette(dark_palette())
    try:
        group_page = GroupsPage(context)
        show_page(qtbot, shown, group_page, 3)
        grab(group_page, target / f"groups-page-{theme}.png")
        # Squeezed, the wide columns give way and every column stays on screen.
        header = group_page.table.horizontalHeader()
        # The columns are fitted after the rows and the layout settle (a queued pass).
        qtbot.waitUntil(
            lambda: header.length() <= group_page.table.viewport().width(), timeout=WAIT_MS
        )
        group_page.resize(1300, 520)  # wide enough: nothing elided any more
        marketing = 2
        qtbot.waitUntil(
            lambda: header.sectionSize(marketing) >= group_page.table.sizeHintForColumn(marketing)
        )
        grab(group_page, target / f"groups-page-wide-{theme}.png")
        assert group_page.select_where("name", "UserGroup1")
        dialog = open_row(qtbot, group_page, group_page.table.currentIndex().row())
        for index in range(dialog.tabs.count()):
            dialog.tabs.setCurrentIndex(index)
            name = dialog.tabs.tabText(index).replace("&", "").lower().replace(" ", "-")
            grab(dialog, target / f"group-dialog-{index + 1}-{name}-{theme}.png")
        dialog.reject()
        assert group_page.select_where("name", "Legacy customers")
        dialog = open_row(qtbot, group_page, group_page.table.currentIndex().row())
        grab(dialog, target / f"group-dialog-legacy-routes-{theme}.png")
        dialog.tabs.setCurrentWidget(dialog.preferences)
        grab(dialog, target / f"group-dialog-legacy-preferences-{theme}.png")
        dialog.reject()

        user_page = UsersPage(context)
        show_page(qtbot, shown, user_page, 4)
        grab(user_page, target / f"users-page-{theme}.png")
        for username in ("alice", "carol"):
            assert user_page.select_where("username", username)
            dialog = open_row(qtbot, user_page, user_page.table.currentIndex().row())
            grab(dialog, target / f"user-dialog-{username}-{theme}.png")
            dialog.reject()
        dialog = open_new(qtbot, user_page)
        grab(dialog, target / f"user-dialog-new-{theme}.png")
        dialog.reject()
    finally:
        qapp.setPalette(original)
