"""The DNS Templates and DNS Settings pages, driven offscreen against a real SQLite database.

Templates: the editor checks every field as it is typed with the services' own rules, the
live preview re-renders on each keystroke, saving creates or updates through the service
(with the reload offer when someone else saved first), and deleting a template a group
still uses is refused with the service's sentence. Settings: inline validation, Save with
optimistic locking, the environment/default indication, and the unsaved-changes guard on
navigation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
)
from pytestqt.qtbot import QtBot

from app.models import TemplateKind
from app.models.database import Database
from app.services import groups
from app.services.dns_settings import get_settings, load_row, update_settings
from app.services.dns_templates import create_template, get_template, update_template
from app.services.errors import NotFoundError
from app.views import theme
from app.views.main_window import MainWindow
from app.views.pages.dns_settings import DnsSettingsPage
from app.views.pages.templates import TemplatesPage
from app.views.template_dialog import TemplateDialog
from tests.conftest import WAIT_MS

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture
def window_options() -> dict[str, object]:
    return {"open": True, "size": (1200, 760)}


@pytest.fixture
def window(window: MainWindow) -> MainWindow:
    for page in window.pages:
        if isinstance(page, DnsSettingsPage):
            # pytest-qt closes the window before this fixture's teardown runs: a test that
            # fails with unsaved edits must not leave a modal question waiting forever.
            page.confirm_discard = lambda: True
    return window


def db_of(window: MainWindow) -> Database:
    assert window.database is not None
    return window.database


def settle(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)


def templates_page(qtbot: QtBot, window: MainWindow) -> TemplatesPage:
    window.select_section("DNS Templates")
    page = window.current_page
    assert isinstance(page, TemplatesPage)
    settle(qtbot, window)
    return page


def settings_page(qtbot: QtBot, window: MainWindow) -> DnsSettingsPage:
    window.select_section("DNS Settings")
    page = window.current_page
    assert isinstance(page, DnsSettingsPage)
    qtbot.waitUntil(lambda: page.loaded is not None, timeout=WAIT_MS)
    return page


def open_new_template(qtbot: QtBot, page: TemplatesPage, kind: str = "campaign") -> TemplateDialog:
    page.new_kind.setCurrentIndex(page.new_kind.findData(kind))
    qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)
    dialog = page.dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.settings is not None, timeout=WAIT_MS)
    return dialog


def preview_rows(dialog: TemplateDialog) -> list[tuple[str, str, str]]:
    table = dialog.preview
    rows = []
    for row in range(table.rowCount()):
        cells = [table.item(row, column) for column in range(3)]
        rows.append(tuple(cell.text() if cell else "" for cell in cells))
    return rows  # type: ignore[return-value]


# ---------------------------------------------------------------- templates


def test_template_editor_checks_inline_and_previews_as_you_type(
    qtbot: QtBot, window: MainWindow
) -> None:
    page = templates_page(qtbot, window)
    dialog = open_new_template(qtbot, page)
    note = dialog.findChild(QLabel, "editsNote")
    assert note is not None and note.isVisible()
    assert "only to sender domains created after you save" in note.text()
    assert "No records" in dialog.preview_note.text()

    qtbot.mouseClick(dialog.records.add_button, Qt.MouseButton.LeftButton)
    row = dialog.records.rows[0]
    assert row.host.hasFocus()  # Add Record puts the cursor where typing starts
    assert not row.error.isVisible()  # an untouched new row is not scolded yet
    qtbot.keyClicks(row.host, "_Subdomain_._SenderDomain_")
    assert row.error.isVisible()
    assert row.error.text() == "Record 1 value: must not be empty."
    assert dialog.preview_error.isVisible()

    qtbot.keyClicks(row.value, "mailer.example.net")
    assert not row.error.isVisible()
    assert preview_rows(dialog) == [("sl.example.com", "CNAME", "mailer.example.net")]

    # Every keystroke re-renders: the sample domain, then a placeholder typed in the value.
    dialog.sample_edit.clear()
    qtbot.keyClicks(dialog.sample_edit, "news.shop.test")
    assert preview_rows(dialog) == [("sl.news.shop.test", "CNAME", "mailer.example.net")]
    row.value.clear()
    qtbot.keyClicks(row.value, "_LinkTracker_")
    assert preview_rows(dialog)[0][2] == "primary-sender-domain.com"

    # An unknown placeholder is named, under its record, with the allowed ones.
    qtbot.keyClicks(row.host, "_Oops_")
    assert row.error.text().startswith(
        "Record 1 host: unknown placeholder '_Oops_'; allowed: _SenderDomain_, "
    )
    assert dialog.preview.rowCount() == 0
    row.host.setText("")
    qtbot.keyClicks(row.host, "_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_")
    assert preview_rows(dialog)[0][0] == "track-sl.news.shop.test"

    # Gateway templates refuse the tracking placeholders.
    dialog.kind_combo.setCurrentIndex(dialog.kind_combo.findData("gateway"))
    assert (
        "_TrackPrefix_ is not available in gateway templates (they have no tracking)."
        in row.error.text()
    )
    dialog.kind_combo.setCurrentIndex(dialog.kind_combo.findData("campaign"))
    assert not row.error.isVisible()

    # A second record, a CNAME at the same host: refused across records.
    qtbot.mouseClick(dialog.records.add_button, Qt.MouseButton.LeftButton)
    second = dialog.records.rows[1]
    qtbot.keyClicks(second.host, "_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_")
    second.type.setCurrentIndex(second.type.findText("TXT"))
    qtbot.keyClicks(second.value, "hello")
    assert "a CNAME must be the only record at its name" in second.error.text()
    qtbot.mouseClick(second.remove, Qt.MouseButton.LeftButton)
    assert len(dialog.records.rows) == 1

    qtbot.keyClicks(dialog.name_edit, "Tracking Only")
    with qtbot.waitSignal(dialog.saved, timeout=WAIT_MS):
        qtbot.mouseClick(
            dialog.buttons.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton
        )
    with db_of(window).session() as session:
        saved = get_template(session, "campaign", "Tracking Only")
        assert [(r.host, r.type, r.value) for r in saved.records] == [
            ("_TrackPrefix__TrackMerge__Subdomain_._SenderDomain_", "CNAME", "_LinkTracker_")
        ]
    qtbot.waitUntil(
        lambda: any(r["name"] == "Tracking Only" for r in page.model.rows), timeout=WAIT_MS
    )
    assert "only sender domains created from now on" in page.status.text()


def test_records_can_be_moved_and_placeholders_inserted(qtbot: QtBot, window: MainWindow) -> None:
    page = templates_page(qtbot, window)
    assert page.select_where("kind", "campaign")
    qtbot.mouseClick(page.edit_button, Qt.MouseButton.LeftButton)
    dialog = page.dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: len(dialog.records.rows) == 5, timeout=WAIT_MS)
    assert not dialog.kind_combo.isEnabled()
    assert not dialog.is_dirty()
    hosts = [row.host.text() for row in dialog.records.rows]
    before = [r[0] for r in preview_rows(dialog)]

    qtbot.mouseClick(dialog.records.rows[0].down, Qt.MouseButton.LeftButton)
    assert [row.host.text() for row in dialog.records.rows] == [hosts[1], hosts[0], *hosts[2:]]
    assert [r[0] for r in preview_rows(dialog)] == [before[1], before[0], *before[2:]]
    assert dialog.is_dirty()
    qtbot.mouseClick(dialog.records.rows[1].up, Qt.MouseButton.LeftButton)
    assert [row.host.text() for row in dialog.records.rows] == hosts
    assert not dialog.is_dirty()

    # Insert a placeholder from the cheat-sheet where the cursor was.
    value = dialog.records.rows[2].value
    value.setFocus()
    value.setText("")
    value.setCursorPosition(0)
    item = next(
        dialog.cheat_sheet.item(i)
        for i in range(dialog.cheat_sheet.count())
        if dialog.cheat_sheet.item(i).data(Qt.ItemDataRole.UserRole) == "_OpenTracker_"
    )
    dialog.cheat_sheet.setCurrentItem(item)
    qtbot.mouseClick(dialog.insert_button, Qt.MouseButton.LeftButton)
    assert value.text() == "_OpenTracker_"
    assert preview_rows(dialog)[2][2] == "primary-sender-domain.com"

    # Cancel with changes asks first; "keep editing" keeps the dialog open.
    asked: list[bool] = []

    def keep_editing() -> bool:
        asked.append(True)
        return False

    dialog.confirm_discard = keep_editing
    dialog.reject()
    assert asked and dialog.isVisible()
    with qtbot.waitSignal(dialog.rejected):
        dialog.confirm_discard = lambda: True
        dialog.reject()


def test_second_save_is_refused_with_a_reload_offer(qtbot: QtBot, window: MainWindow) -> None:
    db = db_of(window)
    with db.transaction() as session:
        create_template(session, name="Shared", kind="campaign", records=[])
    page = templates_page(qtbot, window)
    dialog = TemplateDialog(page.context, "campaign", "Shared", page)
    dialog.open()
    qtbot.waitUntil(lambda: dialog.version is not None, timeout=WAIT_MS)
    with db.transaction() as session:  # another console saves first
        update_template(
            session, "campaign", "Shared", records=[("_SenderDomain_", "TXT", "theirs")]
        )
    qtbot.mouseClick(dialog.records.add_button, Qt.MouseButton.LeftButton)
    row = dialog.records.rows[0]
    qtbot.keyClicks(row.host, "_SenderDomain_")
    row.type.setCurrentIndex(row.type.findText("TXT"))
    qtbot.keyClicks(row.value, "mine")
    qtbot.mouseClick(
        dialog.buttons.button(QDialogButtonBox.StandardButton.Save), Qt.MouseButton.LeftButton
    )
    box = None

    def offered() -> bool:
        nonlocal box
        box = dialog.findChild(QMessageBox, "concurrentEditBox")
        return box is not None and box.isVisible()

    qtbot.waitUntil(offered, timeout=WAIT_MS)
    assert "changed by someone else" in dialog.error.text()
    assert box is not None
    reload_button = next(b for b in box.buttons() if b.text() == "Reload")
    qtbot.mouseClick(reload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: [r.value.text() for r in dialog.records.rows] == ["theirs"], timeout=WAIT_MS
    )
    assert not dialog.is_dirty()
    dialog.reject()


def test_deleting_a_template_in_use_is_refused(qtbot: QtBot, window: MainWindow) -> None:
    db = db_of(window)
    with db.transaction() as session:
        create_template(session, name="EU Server", kind="campaign", records=[])
        create_template(session, name="Unused", kind="campaign", records=[])
        groups.create_group(session, {"name": "Europe", "campaign_dns_template": "EU Server"})
    page = templates_page(qtbot, window)
    qtbot.waitUntil(lambda: len(page.model.rows) == 4, timeout=WAIT_MS)
    row = next(r for r in page.model.rows if r["name"] == "EU Server")
    assert row["used_by"] == ["Europe"]
    page.confirm_delete = lambda row: True  # type: ignore[method-assign]

    assert page.select_where("name", "EU Server")
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: "is used by user group(s) Europe" in page.status.text(), timeout=WAIT_MS
    )
    assert page.status.text() == (
        "The campaign template 'EU Server' is used by user group(s) Europe; choose another "
        "template for them first."
    )
    with db.session() as session:
        get_template(session, "campaign", "EU Server")  # still there

    assert page.select_where("name", "Unused")
    qtbot.mouseClick(page.delete_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: all(r["name"] != "Unused" for r in page.model.rows), timeout=WAIT_MS)
    assert "Deleted the campaign template 'Unused'." in page.status.text()
    with db.session() as session, pytest.raises(NotFoundError):
        get_template(session, "campaign", "Unused")


# ---------------------------------------------------------------- DNS settings


def test_dns_settings_validate_inline_and_save(qtbot: QtBot, window: MainWindow) -> None:
    page = settings_page(qtbot, window)
    spf = page.field("spf_include")
    assert isinstance(spf, QLineEdit)
    assert spf.text() == "include:spf.yourdomain.com"
    assert not page.save_button.isEnabled()

    spf.selectAll()
    qtbot.keyClicks(spf, "v=spf1 include:spf.example.net")
    error = page.form.fields["spf_include"].error
    assert error.isVisible()
    assert "without v=spf1" in error.text()
    assert page.dirty_label.text() == "Unsaved changes"
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    assert "need attention" in page.status.text()

    spf.selectAll()
    qtbot.keyClicks(spf, "include:spf.example.net")
    assert not error.isVisible()
    target = page.field("sender_domain_target")
    assert isinstance(target, QLineEdit)
    target.selectAll()
    qtbot.keyClicks(target, "Mailer.Example.NET")
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.status.text().startswith("Saved."), timeout=WAIT_MS)
    assert not page.is_dirty()
    assert page.dirty_label.text() == ""
    assert target.text() == "mailer.example.net"  # shown as stored, normalised
    with db_of(window).session() as session:
        settings = get_settings(session)
    assert settings.spf_include == "include:spf.example.net"
    assert settings.sender_domain_target == "mailer.example.net"
    assert page.version == settings.version


def test_environment_and_default_values_are_named(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMAILCAMPAIGN_DNS_SUBDOMAIN", "mail")
    page = settings_page(qtbot, window)
    subdomain = page.field("campaign_subdomain")
    box = page.form.defaults["campaign_subdomain"]
    assert isinstance(subdomain, QLineEdit)
    # The load at opening read the settings before the variable was set; showing the
    # page reads them again.
    qtbot.waitUntil(lambda: subdomain.text() == "mail", timeout=WAIT_MS)
    assert box.isChecked() and not subdomain.isEnabled()
    assert page.form.sources["campaign_subdomain"].text() == (
        "Not set here: the environment variable EMAILCAMPAIGN_DNS_SUBDOMAIN='mail' applies."
    )
    assert "the built-in default 'track' applies (EMAILCAMPAIGN_DNS_TRACK_PREFIX is not set)" in (
        page.form.sources["campaign_track_prefix"].text()
    )

    # Set an explicit empty subdomain here, then give it back to the environment.
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert subdomain.isEnabled()
    assert "Set here" in page.form.sources["campaign_subdomain"].text()
    subdomain.clear()
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.status.text().startswith("Saved."), timeout=WAIT_MS)
    db = db_of(window)
    with db.session() as session:
        row = load_row(session)
        assert row is not None and row.campaign_subdomain == ""
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert subdomain.text() == "mail"
    assert page.is_dirty()
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page.is_dirty(), timeout=WAIT_MS)
    assert page.status.text().startswith("Saved.")
    with db.session() as session:
        row = load_row(session)
        assert row is not None and row.campaign_subdomain is None


def test_concurrent_save_offers_a_reload(qtbot: QtBot, window: MainWindow) -> None:
    page = settings_page(qtbot, window)
    with db_of(window).transaction() as session:  # another console saves first
        update_settings(session, {"dkim_selector": "theirs"})
    selector = page.field("dkim_selector")
    assert isinstance(selector, QLineEdit)
    selector.selectAll()
    qtbot.keyClicks(selector, "mine")
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.reload_box is not None, timeout=WAIT_MS)
    assert "changed by someone else" in page.status.text()
    assert selector.text() == "mine"  # nothing silently overwritten or lost yet
    box = page.reload_box
    assert box is not None
    reload_button = next(b for b in box.buttons() if b.text() == "Reload")
    qtbot.mouseClick(reload_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: selector.text() == "theirs", timeout=WAIT_MS)
    assert not page.is_dirty()


def test_unsaved_settings_guard_navigation(qtbot: QtBot, window: MainWindow) -> None:
    page = settings_page(qtbot, window)
    selector = page.field("dkim_selector")
    assert isinstance(selector, QLineEdit)
    qtbot.keyClicks(selector, "2")
    assert page.is_dirty()

    asked: list[bool] = []

    def keep_editing() -> bool:
        asked.append(True)
        return False

    page.confirm_discard = keep_editing
    window.select_section("Users")
    assert asked == [True]
    assert window.current_page is page  # stayed, the edit kept
    assert selector.text() == "key12"

    page.confirm_discard = lambda: True
    window.select_section("Users")
    assert window.current_page is not page
    assert not page.is_dirty()
    window.select_section("DNS Settings")
    qtbot.waitUntil(lambda: selector.text() == "key1", timeout=WAIT_MS)

    # Revert throws edits away without leaving.
    qtbot.keyClicks(selector, "9")
    qtbot.mouseClick(page.revert_button, Qt.MouseButton.LeftButton)
    assert selector.text() == "key1"
    assert not page.is_dirty()


# ---------------------------------------------------------------- rendering


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_pages_and_dialogs_render(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, dark: bool
) -> None:
    """Renders the three pages and the template editor; dark mode follows the palette."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    previous = app.palette()
    if dark:
        app.setPalette(theme.dark_palette())
    try:
        for title in ("Sender Domains", "DNS Templates", "DNS Settings"):
            window.select_section(title)
            settle(qtbot, window)
            image = window.grab().toImage()
            assert image.save(str(tmp_path / f"{title}.png"))
            # Sample the page body, right of the navigation, below the heading.
            colour = image.pixelColor(window.width() - 40, window.height() // 2)
            assert (colour.lightness() < 110) is dark, title
        page = templates_page(qtbot, window)
        dialog = open_new_template(qtbot, page, TemplateKind.CAMPAIGN.value)
        dialog.resize(1100, 800)
        base = dialog.preview.palette().color(QPalette.ColorRole.Base)
        assert (base.lightness() < 110) is dark
        assert dialog.grab().save(str(tmp_path / "template.png"))
        dialog.reject()
        buttons = window.findChildren(QPushButton)
        assert buttons  # the pages' actions are real buttons, reachable by keyboard
    finally:
        app.setPalette(previous)
        settle(qtbot, window)
