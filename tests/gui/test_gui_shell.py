"""The console around its pages: Database dialog, switching databases, Audit Log page,
configuration import and export, and the dark palette. Offscreen, real SQLite, and the
real PostgreSQL at 127.0.0.1:5432 for the connection test."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
import yaml
from keyring.backends import fail
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QTreeWidget
from pytestqt.qtbot import QtBot
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.models import AuditEntry
from app.models.database import Database
from app.services import audit, config_io, groups, profiles, servers
from app.services.profiles import (
    KIND_MARIADB,
    KIND_POSTGRESQL,
    KIND_SQLITE,
    check_connection,
    sqlite_url,
)
from app.views import theme
from app.views.context import AppContext
from app.views.database_dialog import DatabaseDialog
from app.views.import_export import CHANGED_ENTITIES, ImportDiffDialog
from app.views.main_window import MainWindow
from app.views.pages.audit import AuditPage
from tests.conftest import PG_ADMIN_URL, WAIT_MS, make_database_url, open_database, peer_missing
from tests.memory_keyring import MemoryKeyring

# Offscreen-only notices (real platforms implement both); any other Qt warning fails a test.
pytestmark = pytest.mark.qt_log_ignore(
    "This plugin does not support propagateSizeHints", "This plugin does not support raise"
)

PASSWORD = "p@ss/w#rd-s3cret"  # characters a URL must escape


# ---------------------------------------------------------------- helpers and fixtures


def seed(url: str, server: str, *, group: str | None = None) -> None:
    database = Database(url)
    with database.transaction() as session:
        servers.create_server(session, {"name": server, "host": "smtp.example.net"})
        if group:
            groups.create_group(session, {"name": group, "marketing_server": server})
    database.dispose()


def idle(qtbot: QtBot, context: AppContext) -> None:
    qtbot.waitUntil(lambda: not context.has_pending_work(), timeout=WAIT_MS)


def closed_port() -> int:
    """A local TCP port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_reachable() -> bool:
    url = make_url(PG_ADMIN_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def dialog(qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop) -> Iterator[DatabaseDialog]:
    context = AppContext()
    opened: list[tuple[str, str | None]] = []

    async def opener(url: str, profile: str | None) -> str | None:
        opened.append((url, profile))
        return None

    database_dialog = DatabaseDialog(context, opener=opener)
    database_dialog.opened = opened  # type: ignore[attr-defined]
    qtbot.addWidget(database_dialog)
    database_dialog.show()
    idle(qtbot, context)
    yield database_dialog
    idle(qtbot, context)


def fill_server(dialog: DatabaseDialog, kind: str, **values: object) -> None:
    dialog.set_kind(kind)
    for key, value in values.items():
        field = dialog.server.fields[key]
        field.write(value)
        field.check()


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Database dialog


def test_dialog_builds_sqlite_and_server_urls(dialog: DatabaseDialog, tmp_path: Path) -> None:
    # A fresh dialog offers the built-in SQLite file.
    from app.models.database import default_sqlite_path

    assert dialog.current_kind() == KIND_SQLITE
    assert dialog.url() == sqlite_url(default_sqlite_path())

    dialog.sqlite_path.setText(str(tmp_path / "mine.sqlite3"))
    assert dialog.url() == f"sqlite:///{tmp_path / 'mine.sqlite3'}"

    fill_server(
        dialog,
        KIND_POSTGRESQL,
        host="db.example.internal",
        database="postroom",
        username="admin",
        password=PASSWORD,
    )
    assert dialog.server.fields["port"].read() == "5432"  # the type's usual port
    url = dialog.url()
    assert url is not None
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.host, parsed.port, parsed.database) == ("db.example.internal", 5432, "postroom")
    assert (parsed.username, parsed.password) == ("admin", PASSWORD)  # escaped, not mangled

    dialog.set_kind(KIND_MARIADB)
    assert dialog.server.fields["port"].read() == "3306"
    url = dialog.url()
    assert url is not None and make_url(url).drivername == "mysql+pymysql"

    # A refused field is named under itself and no URL is built.
    fill_server(dialog, KIND_POSTGRESQL, port="99999")
    assert dialog.url() is None
    error = dialog.server.fields["port"].error
    assert not error.isHidden() and "65535" in error.text()


def test_test_connection_succeeds_against_postgresql(qtbot: QtBot, dialog: DatabaseDialog) -> None:
    if not postgres_reachable():
        peer_missing(f"PostgreSQL at {PG_ADMIN_URL} is not reachable")
    admin = make_url(PG_ADMIN_URL)
    fill_server(
        dialog,
        KIND_POSTGRESQL,
        host=admin.host,
        port=admin.port or 5432,
        database=admin.database,
        username=admin.username,
    )
    click(qtbot, dialog.test_button)
    qtbot.waitUntil(lambda: "Connected to PostgreSQL" in dialog.message.text(), timeout=WAIT_MS)
    assert dialog.test_button.isEnabled()
    assert dialog.opened == []  # type: ignore[attr-defined]  # testing switches nothing


@pytest.mark.parametrize("kind", [KIND_POSTGRESQL, KIND_MARIADB])
def test_test_connection_to_a_closed_port_says_why_in_one_sentence(
    qtbot: QtBot, dialog: DatabaseDialog, kind: str
) -> None:
    fill_server(
        dialog,
        kind,
        host="127.0.0.1",
        port=closed_port(),
        database="postroom",
        username="admin",
        password=PASSWORD,
    )
    click(qtbot, dialog.test_button)
    qtbot.waitUntil(lambda: "refused" in dialog.message.text().lower(), timeout=WAIT_MS)
    message = dialog.message.text()
    assert "\n" not in message and message.endswith(".")
    assert message.count(". ") == 0  # one sentence
    assert "check the host and port" in message
    assert PASSWORD not in message and "s3cret" not in message
    assert theme.error_colour(dialog.palette()) in dialog.message.styleSheet()


def test_test_connection_of_a_new_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new" / "postroom.sqlite3"
    assert "does not exist yet" in check_connection(sqlite_url(target))
    assert not target.exists() and not target.parent.exists()
    Database(sqlite_url(target), create_folder=True).dispose()
    assert "a Postroom database" in check_connection(sqlite_url(target))


def test_connecting_to_a_new_file_in_a_new_folder_makes_both(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    """The dialog's test promised to create the folder; connecting keeps that promise."""
    target = tmp_path / "chosen" / "folder" / "postroom.sqlite3"
    assert str(target.parent) in check_connection(sqlite_url(target))
    switching = asyncio.ensure_future(window.switch_database(sqlite_url(target)))
    qtbot.waitUntil(switching.done, timeout=WAIT_MS)
    assert switching.result() is None
    assert target.is_file()
    assert window.database is not None and str(target) in str(window.database.engine.url)


def test_saving_a_profile_keeps_the_password_in_the_keyring_only(
    qtbot: QtBot, dialog: DatabaseDialog, memory_keyring: MemoryKeyring
) -> None:
    fill_server(
        dialog,
        KIND_POSTGRESQL,
        host="db.example.internal",
        database="postroom",
        username="admin",
        password=PASSWORD,
    )
    dialog.profile_name.setText("production")
    click(qtbot, dialog.save_profile_button)
    qtbot.waitUntil(lambda: "Saved the profile" in dialog.message.text(), timeout=WAIT_MS)
    assert "keyring" in dialog.message.text()

    assert memory_keyring.get_password("postroom", "profile:production") == PASSWORD
    stored = profiles.profiles_path().read_text(encoding="utf-8")
    assert "production" in stored and PASSWORD not in stored and "s3cret" not in stored
    # The list shows the profile, selected; the password is never put back on screen.
    assert dialog.profile_list.count() == 1
    assert dialog.profile_list.currentRow() == 0
    assert dialog.password.text() == ""
    assert "keyring" in dialog.password.placeholderText()
    for row in range(dialog.profile_list.count()):
        item = dialog.profile_list.item(row)
        assert PASSWORD not in item.text() and PASSWORD not in item.toolTip()

    # Connecting with the profile takes the password from the keyring, unseen.
    click(qtbot, dialog.connect_button)
    qtbot.waitUntil(lambda: bool(dialog.opened), timeout=WAIT_MS)  # type: ignore[attr-defined]
    url, profile = dialog.opened[0]  # type: ignore[attr-defined]
    assert make_url(url).password == PASSWORD and profile == "production"


def test_forgetting_a_profile_removes_it_and_its_password(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop, memory_keyring: MemoryKeyring
) -> None:
    profiles.save_profile("old", "postgresql://admin:secret@db/x")
    assert memory_keyring.get_password("postroom", "profile:old") is not None
    context = AppContext()
    dialog = DatabaseDialog(context)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.profile_list.count() == 1, timeout=WAIT_MS)
    dialog.select_profile("old")
    asked: list[str] = []
    dialog.confirm_forget = lambda name: asked.append(name) or False
    click(qtbot, dialog.forget_button)
    assert asked == ["old"] and dialog.profile_list.count() == 1  # refused: kept
    dialog.confirm_forget = lambda name: True
    click(qtbot, dialog.forget_button)
    qtbot.waitUntil(lambda: dialog.profile_list.count() == 0, timeout=WAIT_MS)
    assert profiles.list_profiles() == []
    assert memory_keyring.get_password("postroom", "profile:old") is None
    assert "Forgot the profile 'old'" in dialog.message.text()
    assert not dialog.forget_button.isEnabled()
    idle(qtbot, context)


def test_a_saved_profile_is_offered_and_fills_the_form(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop
) -> None:
    profiles.save_profile("staging", "mysql+pymysql://deploy@10.0.0.7:3307/postroom_staging")
    context = AppContext()
    dialog = DatabaseDialog(context)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.profile_list.count() == 1, timeout=WAIT_MS)
    assert dialog.profile_list.item(0).text().startswith("staging\nMariaDB · 10.0.0.7")
    dialog.select_profile("staging")
    assert dialog.current_kind() == KIND_MARIADB
    assert dialog.server.fields["host"].read() == "10.0.0.7"
    assert dialog.server.fields["port"].read() == "3307"
    assert dialog.server.fields["username"].read() == "deploy"
    assert dialog.profile_name.text() == "staging"
    idle(qtbot, context)


def test_without_a_keyring_the_dialog_says_so_and_offers_the_alternative(
    qtbot: QtBot, qt_loop: asyncio.AbstractEventLoop
) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    context = AppContext()
    opened: list[str] = []

    async def opener(url: str, profile: str | None) -> str | None:
        opened.append(url)
        return None

    try:
        dialog = DatabaseDialog(context, opener=opener)
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitUntil(dialog.keyring_banner.isVisible, timeout=WAIT_MS)
        banner = dialog.keyring_banner.text()
        assert banner.startswith("No usable keyring was found")
        assert "connect with the password typed here for this session only" in banner
        assert banner.count(". ") == 0 and banner.endswith(".")
        assert not dialog.save_password.isEnabled() and not dialog.save_password.isChecked()

        fill_server(
            dialog,
            KIND_POSTGRESQL,
            host="db.example.internal",
            database="postroom",
            username="admin",
            password=PASSWORD,
        )
        # Saving keeps the profile, without its password, and says so.
        dialog.profile_name.setText("no-keyring")
        click(qtbot, dialog.save_profile_button)
        qtbot.waitUntil(lambda: "Saved the profile" in dialog.message.text(), timeout=WAIT_MS)
        assert "without a password" in dialog.message.text()
        saved = profiles.get_profile("no-keyring")
        assert not saved.has_password
        assert PASSWORD not in profiles.profiles_path().read_text(encoding="utf-8")

        # The explicit alternative: connect with the typed password, for this session.
        dialog.password.setText(PASSWORD)
        click(qtbot, dialog.connect_button)
        qtbot.waitUntil(lambda: bool(opened), timeout=WAIT_MS)
        assert make_url(opened[0]).password == PASSWORD
        idle(qtbot, context)
    finally:
        keyring.set_keyring(previous)


# ---------------------------------------------------------------- switching databases


def test_switching_database_reopens_and_pages_reload(
    qtbot: QtBot, window: MainWindow, sqlite_url: str, tmp_path: Path
) -> None:
    seed(sqlite_url, "Alpha relay")
    other = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    seed(other, "Beta relay")
    assert open_database(qtbot, window, sqlite_url) is not None
    first = window.database
    window.select_section("Audit Log")
    audit_page = window.current_page
    assert isinstance(audit_page, AuditPage)
    qtbot.waitUntil(lambda: audit_page.model.rowCount() == 1, timeout=WAIT_MS)
    assert audit_page.model.rows[0]["key"] == "Alpha relay"

    window.switch_action.trigger()  # File > Switch Database…
    dialog = window.database_dialog
    assert isinstance(dialog, DatabaseDialog) and dialog.isVisible()
    # It opens on the current database, and the status bar's button raises the same one.
    assert dialog.sqlite_path.text() == sqlite_url.removeprefix("sqlite:///")
    click(qtbot, window.switch_button)
    assert window.database_dialog is dialog
    idle(qtbot, window.context)

    dialog.sqlite_path.setText(other.removeprefix("sqlite:///"))
    click(qtbot, dialog.connect_button)
    qtbot.waitUntil(lambda: window.database_dialog is None, timeout=WAIT_MS)
    assert window.database is not None and window.database is not first
    assert window.database.url == other
    assert "other.sqlite3" in window.database_label.text()
    assert window.connection_label.text() == "Connected"
    assert "other.sqlite3" in window.windowTitle()
    qtbot.waitUntil(
        lambda: [r["key"] for r in audit_page.model.rows] == ["Beta relay"], timeout=WAIT_MS
    )
    idle(qtbot, window.context)


def test_a_failed_switch_keeps_the_current_database(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    assert open_database(qtbot, window, sqlite_url) is not None
    current = window.database
    dialog = window.show_database_dialog()
    assert dialog is not None
    idle(qtbot, window.context)
    fill_server(
        dialog,
        KIND_POSTGRESQL,
        host="127.0.0.1",
        port=closed_port(),
        database="postroom",
        username="admin",
        password=PASSWORD,
    )
    click(qtbot, dialog.connect_button)
    qtbot.waitUntil(lambda: "Could not open" in dialog.message.text(), timeout=WAIT_MS)
    assert PASSWORD not in dialog.message.text()
    assert dialog.isVisible() and window.database is current
    assert window.connection_label.text() == "Connected"
    dialog.reject()
    qtbot.waitUntil(lambda: window.database_dialog is None)


def test_status_bar_names_a_remote_profile_without_its_password(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    if not postgres_reachable():
        peer_missing(f"PostgreSQL at {PG_ADMIN_URL} is not reachable")
    databases = make_database_url("postgresql", tmp_path)
    url = next(databases)
    try:
        remote = make_url(url).set(password="not-shown")
        profiles.save_profile("shared", remote.render_as_string(hide_password=False))
        assert open_database(qtbot, window, url) is not None
        text = window.database_label.text()
        assert text.startswith("Database: shared (postgresql+psycopg://")
        assert "not-shown" not in text and "not-shown" not in window.database_label.toolTip()
        assert window.windowTitle() == "shared — Postroom"
        idle(qtbot, window.context)
        assert window.database is not None
        window.database.dispose()
    finally:
        next(databases, None)


# ---------------------------------------------------------------- Audit Log


def test_audit_log_filters_and_shows_copyable_details(
    qtbot: QtBot, window: MainWindow, sqlite_url: str
) -> None:
    seed(sqlite_url, "Alpha relay", group="Newsletters")
    database = Database(sqlite_url)
    with database.transaction() as session:
        for number in range(120):
            audit.record(session, "update", "user", f"user{number:03}", {"email": ["a", "b"]})
    database.dispose()
    assert open_database(qtbot, window, sqlite_url) is not None
    window.select_section("Audit Log")
    page = window.current_page
    assert isinstance(page, AuditPage)
    # Showing the page reloads it: rows from the load at opening may be there already.
    qtbot.waitUntil(lambda: page.status.text() == "122 entries", timeout=WAIT_MS)
    assert page.model.rowCount() == 122

    page.entity_filter.setCurrentIndex(page.entity_filter.findData("user_group"))
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT_MS)
    row = page.model.rows[0]
    assert (row["entity"], row["key"], row["action"]) == ("user_group", "Newsletters", "create")

    page.entity_filter.setCurrentIndex(0)  # all entities again
    qtbot.keyClicks(page.search, "Alpha")  # searched after a pause, not per keystroke
    qtbot.waitUntil(lambda: [r["key"] for r in page.model.rows] == ["Alpha relay"], timeout=WAIT_MS)

    page.search.clear()
    page.limit.setCurrentIndex(page.limit.findData(100))
    qtbot.waitUntil(lambda: page.model.rowCount() == 100, timeout=WAIT_MS)
    assert "newest 100" in page.status.text()

    # Details: the selected entry in full, in the side panel and on the clipboard.
    page.limit.setCurrentIndex(page.limit.findData(500))
    page.entity_filter.setCurrentIndex(page.entity_filter.findData("delivery_server"))
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=WAIT_MS)
    page.table.selectRow(0)
    details = page.details.toPlainText()
    assert "create Delivery server: Alpha relay" in details
    # Fields by their form labels, not internal names (host is "SMTP Host" in the editor).
    assert "SMTP Host: smtp.example.net" in details
    assert page.copy_button.isEnabled()
    click(qtbot, page.copy_button)
    assert QApplication.clipboard().text() == details
    summary_index = page.model.index(0, 5)
    assert "SMTP Host: smtp.example.net" in str(summary_index.data())
    assert "smtp.example.net" in str(summary_index.data(Qt.ItemDataRole.ToolTipRole))

    # Sorting by another column keeps the selected entry selected.
    page.entity_filter.setCurrentIndex(0)
    qtbot.waitUntil(lambda: page.model.rowCount() == 122, timeout=WAIT_MS)
    target = next(n for n, r in enumerate(page.model.rows) if r["key"] == "user005")
    page.table.selectRow(target)
    page.table.sortByColumn(4, Qt.SortOrder.AscendingOrder)
    keys = [r["key"] for r in page.model.rows]
    assert keys == sorted(keys, key=str.casefold)
    selected = page.selected_row()
    assert selected is not None and selected["key"] == "user005"
    assert "user005" in page.details.toPlainText()
    idle(qtbot, window.context)


# ---------------------------------------------------------------- import / export


def changed_entities(window: MainWindow) -> list[str]:
    seen: list[str] = []
    window.context.changed.connect(seen.append)
    return seen


def answer_file(window: MainWindow, path: Path) -> list[bool]:
    """Make the File menu's file question return ``path``; records save/open."""
    asked: list[bool] = []

    async def choose(save: bool, suggested: str) -> str | None:
        asked.append(save)
        return str(path)

    window.config_transfer.choose_path = choose
    return asked


def count_rows(url: str, model: type) -> int:
    database = Database(url)
    with database.session() as session:
        count = session.scalar(select(func.count()).select_from(model)) or 0
    database.dispose()
    return count


def test_export_then_import_a_modified_file_shows_the_diff_and_applies(
    qtbot: QtBot, window: MainWindow, sqlite_url: str, tmp_path: Path
) -> None:
    seed(sqlite_url, "Alpha relay")
    assert open_database(qtbot, window, sqlite_url) is not None
    exported = tmp_path / "exported.yaml"
    asked = answer_file(window, exported)
    window.export_action.trigger()
    qtbot.waitUntil(exported.exists, timeout=WAIT_MS)
    idle(qtbot, window.context)
    assert asked == [True]
    assert "Exported the configuration" in window.statusBar().currentMessage()

    document = yaml.safe_load(exported.read_text(encoding="utf-8"))
    assert [s["name"] for s in document["delivery_servers"]] == ["Alpha relay"]
    document["delivery_servers"][0]["port"] = 2525
    document["user_groups"].append({"name": "Imported group", "marketing_server": "Alpha relay"})
    modified = tmp_path / "modified.yaml"
    modified.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    seen = changed_entities(window)
    asked = answer_file(window, modified)
    window.import_action.trigger()
    qtbot.waitUntil(lambda: window.config_transfer.diff_dialog is not None, timeout=WAIT_MS)
    diff = window.config_transfer.diff_dialog
    assert isinstance(diff, ImportDiffDialog)
    qtbot.waitUntil(diff.isVisible)
    assert asked == [False]
    tree = diff.findChild(QTreeWidget, "importChanges")
    assert isinstance(tree, QTreeWidget)
    titles = [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]
    assert titles == ["Update delivery server Alpha relay", "Create user group Imported group"]
    port = tree.topLevelItem(0).child(0)
    assert (port.text(0), port.text(1), port.text(2)) == ("port", "587", "2525")
    assert "2 changes" in diff.summary.text()
    # Nothing is written before Apply.
    database = window.database
    assert database is not None
    with database.session() as session:
        assert servers.get_server(session, "Alpha relay").port == 587

    click(qtbot, diff.apply_button)
    qtbot.waitUntil(lambda: window.config_transfer.diff_dialog is None, timeout=WAIT_MS)
    idle(qtbot, window.context)
    with database.session() as session:
        assert servers.get_server(session, "Alpha relay").port == 2525
        assert groups.get_group(session, "Imported group").marketing_server is not None
    assert set(CHANGED_ENTITIES) <= set(seen)
    assert "2 changes applied" in window.statusBar().currentMessage()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("postroom_config: 1\ndelivery_servers: [oops", "Import file: is not valid YAML"),
        ("version: 3\n", "postroom_config: must be 1"),
        (
            "postroom_config: 1\ndelivery_servers:\n"
            "  - {name: Alpha relay, host: smtp.example.net, port: 99999}\n"
            "user_groups:\n  - {name: Fresh group}\n",
            "delivery_servers[0] SMTP Port",
        ),
    ],
    ids=["bad-yaml", "not-an-export", "refused-value"],
)
def test_a_bad_import_shows_the_reason_and_changes_nothing(
    qtbot: QtBot,
    window: MainWindow,
    sqlite_url: str,
    tmp_path: Path,
    content: str,
    expected: str,
) -> None:
    seed(sqlite_url, "Alpha relay")
    before = count_rows(sqlite_url, AuditEntry)
    assert open_database(qtbot, window, sqlite_url) is not None
    bad = tmp_path / "bad.yaml"
    bad.write_text(content, encoding="utf-8")
    answer_file(window, bad)
    window.import_action.trigger()
    qtbot.waitUntil(lambda: window.config_transfer.error_box is not None, timeout=WAIT_MS)
    box = window.config_transfer.error_box
    assert isinstance(box, QMessageBox)
    qtbot.waitUntil(box.isVisible)
    assert box.text().startswith(expected)
    assert box.informativeText() == "Nothing was changed."
    assert window.config_transfer.diff_dialog is None
    idle(qtbot, window.context)
    assert count_rows(sqlite_url, AuditEntry) == before
    database = window.database
    assert database is not None
    with database.session() as session:
        assert servers.get_server(session, "Alpha relay").port == 587
        assert [g.name for g in groups.list_groups(session)] == []
    box.close()


def test_import_with_nothing_to_change_cannot_be_applied(
    qtbot: QtBot, window: MainWindow, sqlite_url: str, tmp_path: Path
) -> None:
    seed(sqlite_url, "Alpha relay")
    assert open_database(qtbot, window, sqlite_url) is not None
    database = window.database
    assert database is not None
    with database.session() as session:
        same = tmp_path / "same.yaml"
        same.write_text(config_io.export_yaml(session), encoding="utf-8")
    answer_file(window, same)
    window.import_action.trigger()
    qtbot.waitUntil(lambda: window.config_transfer.diff_dialog is not None, timeout=WAIT_MS)
    diff = window.config_transfer.diff_dialog
    assert diff is not None
    assert diff.summary.text().startswith("No changes")
    assert not diff.apply_button.isEnabled()
    diff.reject()
    idle(qtbot, window.context)


# ---------------------------------------------------------------- light and dark


def lightness(image: QImage, x: int, y: int) -> int:
    return QColor(image.pixel(QPoint(x, y))).lightness()


def test_window_and_dialogs_follow_a_dark_palette(
    qtbot: QtBot, qapp: QApplication, window: MainWindow, sqlite_url: str, tmp_path: Path
) -> None:
    seed(sqlite_url, "Alpha relay")
    assert open_database(qtbot, window, sqlite_url) is not None
    window.select_section("Audit Log")
    idle(qtbot, window.context)
    light = window.grab().toImage()
    nav = window.navigation
    item_rect = nav.visualItemRect(nav.item(1))  # an unselected section
    origin = nav.viewport().mapTo(window, item_rect.topLeft())
    assert lightness(light, origin.x() + 4, origin.y() + 2) > 200

    original = qapp.palette()
    qapp.setPalette(theme.dark_palette())
    try:
        base = QPalette.ColorRole.Base
        qtbot.waitUntil(lambda: nav.palette().color(base).lightness() < 60)
        qtbot.waitUntil(lambda: not window._restyle_pending)
        dark = window.grab().toImage()
        dark.save(str(tmp_path / "dark.png"))
        # The navigation (a styled widget, which keeps its palette unless repolished)
        # and the page both turned dark...
        assert lightness(dark, origin.x() + 4, origin.y() + 2) < 60
        page_point = window.current_page.mapTo(window, QPoint(4, 4))
        assert lightness(dark, page_point.x(), page_point.y()) < 80
        # ...and the icon of that section is drawn light on it, not dark on dark.
        icon_area = [
            lightness(dark, origin.x() + x, origin.y() + y)
            for x in range(4, 40)
            for y in range(item_rect.height())
        ]
        assert max(icon_area) > 180

        dialog = window.show_database_dialog()
        assert dialog is not None
        idle(qtbot, window.context)
        picture = dialog.grab().toImage()
        assert lightness(picture, 3, picture.height() - 3) < 80
        # The colours the console picks itself switch to their dark-palette shades.
        assert theme.error_colour() == "#ef9a9a"
        dialog.reject()
    finally:
        qapp.setPalette(original)
    qtbot.waitUntil(lambda: window.database_dialog is None)
    qtbot.waitUntil(lambda: nav.palette().color(QPalette.ColorRole.Base).lightness() > 200)
    assert theme.error_colour() == "#c62828"


# ---------------------------------------------------------------- PySide6 workaround


def test_signal_emits_do_not_leak_references_to_true(qapp: QApplication) -> None:
    """PySide6 6.12.0's emit() returns True without taking a reference, so every emit
    drains one; on Python 3.11 the interpreter then aborts ("bool_dealloc"). pyproject.toml
    excludes that release; this catches the bug should such a build be installed again.
    Few emits on purpose: enough to see a leak, too few to reach the abort."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Probe(QObject):
        ping = Signal()

    probe = Probe()
    before = sys.getrefcount(True)
    for _ in range(200):
        probe.ping.emit()
    assert before - sys.getrefcount(True) < 50
