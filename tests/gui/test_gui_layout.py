"""The console on a small screen, and in words a newcomer knows.

A 1,280 × 720 laptop with a side panel open leaves about 900 px: the window must go that
narrow with every page, its toolbars wrap instead of overlapping, long record values are
cut with "…" and whole in the tooltip, the DNS Settings form keeps its shape as messages
come and go, and no help text or audit entry speaks in file or field names of the code.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QComboBox,
    QDialog,
    QLabel,
    QLineEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.models.database import Database
from app.services import dns_templates, groups, servers, users
from app.services.sender_domains import create_sender_domain
from app.views.domain_parts import ElidedValue
from app.views.main_window import MainWindow
from app.views.pages.audit import AuditPage
from app.views.pages.dns_settings import HINTS, DnsSettingsPage
from app.views.pages.domains import DomainsPage
from app.views.pages.flow import FlowLayout
from tests.conftest import WAIT_MS

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

NARROW = (900, 600)


@pytest.fixture
def window_options() -> dict[str, object]:
    return {"open": True, "size": NARROW}


def db_of(window: MainWindow) -> Database:
    assert window.database is not None
    return window.database


def show(qtbot: QtBot, window: MainWindow, title: str) -> QWidget:
    window.select_section(title)
    page = window.current_page
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
    QApplication.processEvents()
    return page


def in_page(widget: QWidget, page: QWidget) -> QRect:
    return QRect(widget.mapTo(page, widget.rect().topLeft()), widget.size())


# ---------------------------------------------------------------- width and toolbars


def test_every_page_fits_900_px_and_its_toolbar_does_not_overlap(
    qtbot: QtBot, window: MainWindow
) -> None:
    for page in window.pages:
        show(qtbot, window, page.title)
        assert window.minimumSizeHint().width() <= 900, page.title
        assert window.minimumWidth() <= 900, page.title
        assert window.width() == 900, page.title  # not pushed wider by the page
        toolbar = getattr(page, "toolbar", None)
        if toolbar is None:
            continue
        assert isinstance(toolbar, FlowLayout), page.title
        shown = [w for w in toolbar.widgets() if w.isVisible()]
        assert shown, page.title
        boxes = [(w, in_page(w, page)) for w in shown]
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
            assert not box_a.intersects(box_b), (page.title, a.objectName(), b.objectName())
        for widget, box in boxes:
            assert box.left() >= 0 and box.right() < page.width(), (page.title, widget)
            assert box.width() >= widget.minimumSizeHint().width() or box.width() >= (
                widget.minimumWidth()
            ), (page.title, widget)


def test_a_crowded_toolbar_wraps_onto_a_second_line_at_900_px(
    qtbot: QtBot, window: MainWindow
) -> None:
    page = show(qtbot, window, "Sender Domains")
    assert isinstance(page, DomainsPage)
    tops = {in_page(w, page).top() for w in page.toolbar.widgets() if w.isVisible()}
    assert len(tops) > 1  # wrapped, where a single row would overlap or widen the window
    # Every widget still gets at least its own width, and the filter box is usable.
    assert page.filter.width() >= page.filter.minimumWidth()
    # On a wide window the same toolbar is one row again.
    window.resize(1600, 700)
    qtbot.waitUntil(
        lambda: len({in_page(w, page).top() for w in page.toolbar.widgets()}) == 1,
        timeout=WAIT_MS,
    )


# ---------------------------------------------------------------- long values


def add_domain_with_long_txt(db: Database, value: str) -> str:
    with db.transaction() as session:
        dns_templates.create_template(
            session,
            name="Long TXT",
            kind="campaign",
            records=[
                ("_SenderDomain_", "CNAME", "_SenderTarget_"),
                ("key._SenderDomain_", "TXT", value),
            ],
        )
        groups.create_group(
            session,
            {
                "name": "Marketing",
                "sender_domain_management": True,
                "campaign_dns_template": "Long TXT",
            },
        )
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Marketing"}
        )
        create_sender_domain(session, "alice", "mail.layout.test")
    return "mail.layout.test"


def test_a_long_txt_value_is_elided_with_the_whole_text_in_its_tooltip(
    qtbot: QtBot, window: MainWindow
) -> None:
    value = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 8
    domain = add_domain_with_long_txt(db_of(window), value)
    page = show(qtbot, window, "Sender Domains")
    assert isinstance(page, DomainsPage)
    dialog = page.open_detail(domain, "campaign")
    dialog.resize(860, 560)
    qtbot.waitUntil(lambda: len(dialog.rows) == 2, timeout=WAIT_MS)
    QApplication.processEvents()
    field = dialog.rows[1].value
    assert isinstance(field, ElidedValue)
    assert field.text() == value
    assert field.toolTip() == value
    assert field.is_elided()
    assert "…" in field.shown_text() and len(field.shown_text()) < len(value)
    # Both ends stay readable: the record's kind and the key's last characters.
    assert field.shown_text().startswith("v=DKIM1") and field.shown_text().endswith(value[-4:])
    # The dialog fits beside the window's width: nothing forced it wider.
    assert dialog.width() <= 900
    field.setFocus()
    qtbot.keyClick(field, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text() == value
    # The SPF record is listed with the template's, with the advice to merge it.
    spf = dialog.spf_row
    assert spf is not None
    assert (spf.record["host"], spf.record["type"]) == (domain, "TXT")
    assert spf.value.text().startswith("v=spf1 include:") and spf.value.text().endswith("~all")
    assert "merge" in spf.detail.text() and spf.detail.isVisible()
    assert spf.result.text() == "Not checked"
    # A short value is shown whole.
    short = dialog.rows[0].value
    assert not short.is_elided() and short.shown_text() == short.text()
    dialog.close()


# ---------------------------------------------------------------- DNS Settings


def settings_page(qtbot: QtBot, window: MainWindow) -> DnsSettingsPage:
    window.select_section("DNS Settings")
    page = window.current_page
    assert isinstance(page, DnsSettingsPage)
    qtbot.waitUntil(lambda: page.loaded is not None, timeout=WAIT_MS)
    QApplication.processEvents()
    return page


def hint_label(page: DnsSettingsPage, key: str) -> QLabel:
    holder = page.field(key).parentWidget()
    assert holder is not None
    return next(label for label in holder.findChildren(QLabel) if label.text() == HINTS[key])


def test_the_dkim_box_keeps_its_height_and_its_help_stays_below_it(
    qtbot: QtBot, window: MainWindow
) -> None:
    page = settings_page(qtbot, window)
    page.confirm_discard = lambda: True  # the window closes on the edit at the end
    key_box = page.field("dkim_public_key")
    hint = hint_label(page, "dkim_public_key")
    error = page.form.fields["dkim_public_key"].error
    height = key_box.height()
    assert hint.geometry().top() >= key_box.geometry().bottom()

    key_box.setFocus()
    qtbot.keyClicks(key_box, "not a key!")
    assert error.isVisible()  # the refusal appears under the field

    def laid_out() -> bool:
        return (
            hint.geometry().top() > key_box.geometry().bottom()
            and error.geometry().top() > hint.geometry().bottom()
        )

    qtbot.waitUntil(laid_out, timeout=WAIT_MS)
    assert key_box.height() == height
    assert key_box.geometry().height() == height
    # The next row moved down rather than being drawn over.
    holder = key_box.parentWidget()
    assert holder is not None and holder.height() >= holder.layout().heightForWidth(holder.width())
    next_row = page.field("dmarc_policy").parentWidget()
    assert next_row is not None
    assert next_row.geometry().top() >= holder.geometry().bottom()


def test_saved_and_unsaved_changes_are_never_shown_together(
    qtbot: QtBot, window: MainWindow
) -> None:
    page = settings_page(qtbot, window)
    page.confirm_discard = lambda: True
    target = page.field("sender_domain_target")
    assert isinstance(target, QLineEdit)
    target.selectAll()
    qtbot.keyClicks(target, "mailer.example.net")
    assert page.dirty_label.text() == "Unsaved changes"
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.status.text().startswith("Saved."), timeout=WAIT_MS)
    assert page.dirty_label.text() == ""

    qtbot.keyClicks(target, "x")
    assert page.dirty_label.text() == "Unsaved changes"
    assert not page.status.text().startswith("Saved.")
    # Undoing the edit leaves neither claim: the page is clean again.
    qtbot.keyClick(target, Qt.Key.Key_Backspace)
    assert page.dirty_label.text() == ""


# ---------------------------------------------------------------- words


FORBIDDEN = ("dns.php", ".oempro_env", "False:", "True:", "groups that select none")
# A code name: lower-case words joined by underscores (auth_enabled, spf_include).
CODE_NAME = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def texts_of(root: QWidget) -> Iterator[tuple[str, str]]:
    """(where, text) for every text a person can read in ``root``: labels, buttons, box
    items, placeholders and tooltips, on every tab."""
    for widget in [root, *root.findChildren(QWidget)]:
        where = f"{type(widget).__name__} {widget.objectName()}"
        if widget.toolTip():
            yield where, widget.toolTip()
        if isinstance(widget, QLabel | QAbstractButton):
            yield where, widget.text()
        if isinstance(widget, QLineEdit):
            yield where, widget.placeholderText()
        if isinstance(widget, QComboBox):
            for index in range(widget.count()):
                yield where, widget.itemText(index)


def assert_plain(root: QWidget, what: str) -> None:
    for where, text in texts_of(root):
        for word in FORBIDDEN:
            assert word not in text, f"{what}: {where} says {text!r}"


def open_editor(qtbot: QtBot, window: MainWindow, title: str) -> QDialog:
    page = show(qtbot, window, title)
    before = {w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog)}
    page.new_item()  # type: ignore[attr-defined]

    def opened() -> QDialog | None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, QDialog) and widget.isVisible() and widget not in before:
                return widget
        return None

    qtbot.waitUntil(lambda: opened() is not None, timeout=WAIT_MS)
    dialog = opened()
    assert dialog is not None
    return dialog


def test_pages_and_editors_speak_plain_words(qtbot: QtBot, window: MainWindow) -> None:
    for page in window.pages:
        show(qtbot, window, page.title)
        assert_plain(page, page.title)
    settings = settings_page(qtbot, window)
    hints = " ".join(HINTS.values())
    # The reference's names stay, for administrators moving from it, and say so.
    assert "Called DNS_SPF in the reference" in hints
    assert "DNS_SPF." not in hints
    assert_plain(settings, "DNS Settings")

    for title in ("Delivery Servers", "User Groups", "Users", "DNS Templates"):
        dialog = open_editor(qtbot, window, title)
        try:
            assert_plain(dialog, f"{title} editor")
        finally:
            dialog.confirm_discard = lambda: True  # type: ignore[attr-defined]
            dialog.reject()
            qtbot.waitUntil(lambda d=dialog: not d.isVisible(), timeout=WAIT_MS)


def test_the_server_editor_says_starttls_and_login_in_words(
    qtbot: QtBot, window: MainWindow
) -> None:
    dialog = open_editor(qtbot, window, "Delivery Servers")
    try:
        encryption = dialog.findChild(QComboBox, "field_encryption")
        login = dialog.findChild(QComboBox, "field_auth_enabled")
        assert encryption is not None and login is not None
        words = [encryption.itemText(i) for i in range(encryption.count())]
        assert any("STARTTLS" in word for word in words)
        assert encryption.itemText(encryption.findData("tls")).startswith("STARTTLS")
        assert [login.itemText(i) for i in range(login.count())] == [
            "No login",
            "Log in with a username and password",
        ]
    finally:
        dialog.confirm_discard = lambda: True  # type: ignore[attr-defined]
        dialog.reject()


def test_audit_details_name_fields_by_their_form_labels(qtbot: QtBot, window: MainWindow) -> None:
    db = db_of(window)
    with db.transaction() as session:
        servers.create_server(
            session, {"name": "Relay", "host": "smtp.example.net", "port": 25}, actor="maria@ws"
        )
    with db.transaction() as session:
        servers.update_server(
            session, "Relay", {"auth_enabled": True, "username": "postroom"}, actor="maria@ws"
        )
    page = show(qtbot, window, "Audit Log")
    assert isinstance(page, AuditPage)
    qtbot.waitUntil(lambda: page.model.rowCount() >= 2, timeout=WAIT_MS)
    update = next(n for n, r in enumerate(page.model.rows) if r["action"] == "update")
    page.table.selectRow(update)
    details = page.details.toPlainText()
    assert "Authentication: no → yes" in details
    summary = page.model.index(update, 5)
    shown = [details, str(summary.data()), str(summary.data(Qt.ItemDataRole.ToolTipRole))]
    for text in shown:
        assert "auth_enabled" not in text
        assert not CODE_NAME.search(text.replace("maria@ws", "")), text
    assert "Authentication" in str(summary.data())

    # The created entry too: every field by its label, none by its code name.
    create = next(n for n, r in enumerate(page.model.rows) if r["action"] == "create")
    page.table.selectRow(create)
    created = page.details.toPlainText()
    assert "SMTP Host: smtp.example.net" in created
    assert not CODE_NAME.search(created), created
