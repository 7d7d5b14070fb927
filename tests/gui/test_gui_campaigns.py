"""The Campaigns page and its dialogs, offscreen, under the loop watchdog, against real
SQLite and a real SMTP peer (aiosmtpd) that an in-process send engine delivers to.

Covers creating a campaign in the dialog (rejected lines before and after, a file
import, the From drop-down of a group that manages sender domains), the message
preview as the engine builds it, start / pause / resume / cancel from the page, the 2 s
refresh that keeps the selection, per-recipient results after a real engine run, retry,
a campaign paused for failures, and "Send a test campaign" followed until it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from sqlalchemy import select, update

from app.engine.runner import EngineOptions, EngineTotals, SendEngine
from app.models import DomainStatus, QueueItem, QueueStatus, SenderDomain, TemplateKind, User
from app.models.database import Database
from app.services import campaigns, groups, servers, users
from app.views.campaign_detail_dialog import CampaignDetailDialog
from app.views.main_window import MainWindow
from app.views.new_campaign_dialog import NewCampaignDialog
from app.views.pages.campaigns import CampaignsPage
from app.views.send_test_dialog import SendTestDialog
from tests.conftest import WAIT_MS
from tests.engine.test_engine import ScriptedHandler
from tests.smtp_peers import Peer, start_smtp

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

T = TypeVar("T")


@pytest.fixture
def window_options() -> dict[str, object]:
    return {"open": True, "size": (1200, 720)}


# ---------------------------------------------------------------- helpers


def db_of(window: MainWindow) -> Database:
    assert window.database is not None
    return window.database


def run(qtbot: QtBot, coroutine: Coroutine[Any, Any, T], timeout: int = WAIT_MS) -> T:
    """Run ``coroutine`` on the Qt loop (the console's own) until it is done."""
    task = asyncio.ensure_future(coroutine)
    qtbot.waitUntil(task.done, timeout=timeout)
    return task.result()


def set_up(
    db: Database,
    *,
    port: int = 2525,
    managed: bool = False,
    group_values: dict[str, Any] | None = None,
    server_values: dict[str, Any] | None = None,
) -> None:
    """A relay on ``port``, group Senders routing marketing to it, users alice and bob."""
    with db.transaction() as session:
        servers.create_server(
            session,
            {
                "name": "relay",
                "host": "127.0.0.1",
                "port": port,
                "encryption": "none",
                "timeout_seconds": 5,
                **(server_values or {}),
            },
        )
        groups.create_group(
            session,
            {
                "name": "Senders",
                "marketing_server": "relay",
                "sender_domain_management": managed,
                **(group_values or {}),
            },
        )
        groups.create_group(session, {"name": "Free", "marketing_server": "relay"})
        users.create_user(
            session, {"username": "alice", "email": "alice@example.com", "group": "Senders"}
        )
        users.create_user(session, {"username": "bob", "email": "bob@example.com", "group": "Free"})


def add_domain(db: Database, username: str, domain: str, status: DomainStatus) -> None:
    with db.transaction() as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        session.add(
            SenderDomain(
                user_id=user.id,
                domain=domain,
                kind=TemplateKind.CAMPAIGN,
                status=status,
                random_token="abcdefghij",
            )
        )


def make_campaign(
    db: Database, recipients: list[str], name: str = "Spring", *, start: bool = False
) -> None:
    with db.transaction() as session:
        campaigns.create_campaign(
            session,
            name,
            "bob",
            "marketing",
            "news@example.com",
            "News",
            "Hello",
            "Hello there\n",
            None,
            recipients,
        )
        if start:
            campaigns.start_campaign(session, name)


def campaigns_page(qtbot: QtBot, window: MainWindow) -> CampaignsPage:
    window.select_section("Campaigns")
    page = window.current_page
    assert isinstance(page, CampaignsPage)
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
    return page


def row_of(page: CampaignsPage, name: str) -> dict[str, Any] | None:
    return next((r for r in page.model.all_rows if r["name"] == name), None)


def select_campaign(qtbot: QtBot, page: CampaignsPage, name: str) -> None:
    qtbot.waitUntil(lambda: row_of(page, name) is not None, timeout=WAIT_MS)
    assert page.select_where("name", name)


def open_new_dialog(qtbot: QtBot, page: CampaignsPage) -> NewCampaignDialog:
    qtbot.mouseClick(page.new_button, Qt.MouseButton.LeftButton)
    dialog = page.new_dialog
    assert dialog is not None
    qtbot.waitUntil(lambda: dialog.user_combo.count() > 0, timeout=WAIT_MS)
    return dialog


def fill_message(
    qtbot: QtBot, dialog: NewCampaignDialog, user: str = "bob", from_email: str = ""
) -> None:
    dialog.user_combo.setCurrentIndex(dialog.user_combo.findData(user))
    qtbot.keyClicks(dialog.name_edit, "Spring")
    if from_email:
        qtbot.keyClicks(dialog.from_field.address, from_email)
    qtbot.keyClicks(dialog.from_name_edit, "Shop News")
    qtbot.keyClicks(dialog.subject_edit, "Spring offers")
    dialog.text_edit.setPlainText("Hello there")
    dialog.html_edit.setPlainText('<p>See <a href="https://shop.example.com/spring">offers</a></p>')


async def run_engine(db: Database) -> EngineTotals:
    options = EngineOptions(
        engine_id="gui-engine",
        until_idle=True,
        install_signal_handlers=False,
        lease_seconds=30.0,
        retry_after=0.2,
        recheck_seconds=0,
        poll_seconds=0.05,
    )
    return await SendEngine(db, options).run()


async def start_peer(handler: ScriptedHandler) -> Peer:
    peer = await start_smtp(handler)
    handler.peer = peer
    return peer


# ---------------------------------------------------------------- creating


def test_create_a_campaign_in_the_dialog_with_its_rejected_lines(
    qtbot: QtBot, window: MainWindow
) -> None:
    db = db_of(window)
    set_up(db)
    page = campaigns_page(qtbot, window)
    dialog = open_new_dialog(qtbot, page)

    # Nothing filled in: every field says what to fix, in one sentence, beside it.
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    name_error = dialog.message_form.fields["name"].error
    assert name_error.isVisible() and name_error.text()
    from_error = dialog.message_form.fields["from_email"].error
    assert "is empty; give the address the campaign is sent from." in from_error.text()

    fill_message(qtbot, dialog, "bob", "news@example.com")
    assert not dialog.message_form.fields["from_email"].error.isVisible()
    dialog.tabs.setCurrentWidget(dialog.forms[2])
    dialog.recipients.paste.setPlainText(
        "ann@example.org\nnot an address\nbo@example.net\nann@example.org\n"
    )
    box = dialog.recipients
    qtbot.waitUntil(lambda: "will be queued" in box.summary.text(), timeout=WAIT_MS)
    assert box.summary.text() == (
        "2 addresses will be queued, 1 repeated ones skipped; 1 line rejected:"
    )
    assert box.rejected.isVisible()
    assert [(r["line"], r["value"]) for r in box.rejected_model.rows] == [(2, "not an address")]
    assert box.rejected_model.rows[0]["reason"]

    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=WAIT_MS)
    assert dialog.result is not None and dialog.result["recipients"] == 2
    # After creating, the service's own rejected lines are listed, and Start is offered.
    assert box.summary.text() == "2 addresses queued; 1 line rejected:"
    assert [r["line"] for r in box.rejected_model.rows] == [2]
    assert "Created 'Spring' as a draft: 2 recipients queued, 1 line rejected" in (
        dialog.done_label.text()
    )
    assert dialog.save_button.text() == "Start Campaign"
    with db.session() as session:
        status = campaigns.campaign_report(session, "Spring")
    assert (status["status"], status["queued"], status["from_name"]) == ("draft", 2, "Shop News")

    qtbot.waitUntil(lambda: row_of(page, "Spring") is not None, timeout=WAIT_MS)
    row = row_of(page, "Spring")
    assert row is not None and row["queued"] == 2 and row["sent"] == 0
    # Never "sent" for what is only queued: progress counts finished items.
    assert page.model.columns[2].display(row) == "0% (0 of 2)"

    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)  # Start Campaign
    qtbot.waitUntil(  # closed (and deleted: it deletes itself on close)
        lambda: not shiboken6.isValid(dialog) or not dialog.isVisible(), timeout=WAIT_MS
    )
    qtbot.waitUntil(
        lambda: (row_of(page, "Spring") or {}).get("status") == "running", timeout=WAIT_MS
    )


def test_import_a_big_csv_file_and_create_with_progress(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    db = db_of(window)
    set_up(db)
    lines = ["email,name"] + [f"user{n}@example.org,User {n}" for n in range(25_000)]
    lines[7] = "broken-address,Nobody"
    source = tmp_path / "list.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    page = campaigns_page(qtbot, window)
    dialog = open_new_dialog(qtbot, page)
    fill_message(qtbot, dialog, "bob", "news@example.com")
    dialog.ask_file = lambda: str(source)
    qtbot.mouseClick(dialog.recipients.import_button, Qt.MouseButton.LeftButton)
    box = dialog.recipients
    assert box.file_label.text() == f"Recipients from {source}"
    qtbot.waitUntil(lambda: "will be queued" in box.summary.text(), timeout=WAIT_MS)
    assert box.summary.text() == "24,999 addresses will be queued; 1 line rejected:"
    assert [(r["line"], r["value"]) for r in box.rejected_model.rows] == [(8, "broken-address")]

    # The progress bar counts toward the checked total while the rows go in.
    seen: list[tuple[int, int]] = []
    dialog.progress.valueChanged.connect(
        lambda value: seen.append((value, dialog.progress.maximum()))
    )
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=WAIT_MS)
    assert (10_000, 24_999) in seen and (20_000, 24_999) in seen
    assert dialog.result is not None and dialog.result["recipients"] == 24_999
    assert not dialog.progress.isVisible()
    assert [r["line"] for r in box.rejected_model.rows] == [8]
    dialog.reject()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=WAIT_MS)


def test_cancel_while_creating_rolls_everything_back(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    db = db_of(window)
    set_up(db)
    source = tmp_path / "list.txt"
    source.write_text("".join(f"user{n}@example.org\n" for n in range(30_000)), encoding="utf-8")
    page = campaigns_page(qtbot, window)
    dialog = open_new_dialog(qtbot, page)
    fill_message(qtbot, dialog, "bob", "news@example.com")
    dialog.ask_file = lambda: str(source)
    qtbot.mouseClick(dialog.recipients.import_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert dialog.is_creating()
    dialog.reject()  # Cancel (or Esc) while creating stops it; the dialog stays
    qtbot.waitUntil(lambda: dialog.error.text() != "", timeout=WAIT_MS)
    assert dialog.error.text() == "Cancelled; nothing was created."
    assert dialog.isVisible() and dialog.result is None and dialog.save_button.isEnabled()
    with db.session() as session:
        assert campaigns.list_campaigns(session) == []
    dialog.confirm_discard = lambda: True
    dialog.reject()


def test_from_is_a_drop_down_of_enabled_sender_domains_when_the_group_manages_them(
    qtbot: QtBot, window: MainWindow
) -> None:
    db = db_of(window)
    set_up(db, managed=True)
    add_domain(db, "alice", "news.shop.example", DomainStatus.ENABLED)
    add_domain(db, "alice", "mail.shop.example", DomainStatus.ENABLED)
    add_domain(db, "alice", "pending.shop.example", DomainStatus.APPROVAL_PENDING)
    page = campaigns_page(qtbot, window)
    dialog = open_new_dialog(qtbot, page)
    field = dialog.from_field

    dialog.user_combo.setCurrentIndex(dialog.user_combo.findData("alice"))
    assert field.managed() and field.local.isVisibleTo(dialog)
    assert not field.address.isVisibleTo(dialog)
    domains = [field.domain.itemText(i) for i in range(field.domain.count())]
    assert domains == ["mail.shop.example", "news.shop.example"]  # enabled ones only
    assert "manages sender domains" in dialog.from_hint.text()
    qtbot.keyClicks(field.local, "offers")
    field.domain.setCurrentIndex(field.domain.findData("news.shop.example"))
    assert field.value() == "offers@news.shop.example"
    assert not dialog.message_form.fields["from_email"].error.isVisible()

    # A group that leaves From free: one address field, the local part carried over.
    dialog.user_combo.setCurrentIndex(dialog.user_combo.findData("bob"))
    assert not field.managed() and field.address.isVisibleTo(dialog)
    assert field.address.text() == "offers"
    assert "does not manage sender domains" in dialog.from_hint.text()

    # Back to alice, creating: the service's rule holds (and agrees with the list).
    dialog.user_combo.setCurrentIndex(dialog.user_combo.findData("alice"))
    field.domain.setCurrentIndex(field.domain.findData("mail.shop.example"))
    qtbot.keyClicks(dialog.name_edit, "Managed")
    qtbot.keyClicks(dialog.subject_edit, "Hi")
    dialog.text_edit.setPlainText("Hi")
    dialog.recipients.paste.setPlainText("ann@example.org")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=WAIT_MS)
    with db.session() as session:
        assert campaigns.get_campaign(session, "Managed").from_email == "offers@mail.shop.example"
    dialog.reject()


def test_a_user_without_an_enabled_domain_is_told_beside_from(
    qtbot: QtBot, window: MainWindow
) -> None:
    db = db_of(window)
    set_up(db, managed=True)
    page = campaigns_page(qtbot, window)
    dialog = open_new_dialog(qtbot, page)
    dialog.user_combo.setCurrentIndex(dialog.user_combo.findData("alice"))
    assert "has no enabled sender domain yet" in dialog.from_hint.text()
    assert not dialog.from_field.domain.isEnabled()
    qtbot.keyClicks(dialog.from_field.local, "news")
    error = dialog.message_form.fields["from_email"].error
    assert error.isVisible() and "add and verify a sender domain" in error.text()
    dialog.confirm_discard = lambda: True
    dialog.reject()


def test_preview_shows_the_group_header_footer_and_tracked_links(
    qtbot: QtBot, window: MainWindow
) -> None:
    db = db_of(window)
    set_up(
        db,
        group_values={"html_header": "<p>GROUP HEADER</p>", "html_footer": "<p>GROUP FOOTER</p>"},
        server_values={"link_tracking_domain": "click.example.net"},
    )
    page = campaigns_page(qtbot, window)
    dialog = open_new_dialog(qtbot, page)
    dialog.user_combo.setCurrentIndex(dialog.user_combo.findData("alice"))
    fill_message(qtbot, dialog, "alice", "news@example.com")
    dialog.preview.sample.setText("ann@example.org")
    dialog.tabs.setCurrentWidget(dialog.preview)
    qtbot.waitUntil(lambda: dialog.preview.shown is not None, timeout=WAIT_MS)
    shown = dialog.preview.shown
    assert shown is not None
    source = dialog.preview.html_source.toPlainText()
    assert source.index("GROUP HEADER") < source.index("See ") < source.index("GROUP FOOTER")
    assert "https://click.example.net/c/" in source
    assert "https://shop.example.com/spring" not in source
    headers = dialog.preview.headers.toPlainText()
    assert "To: ann@example.org" in headers
    assert "List-Unsubscribe: <mailto:" in headers and "https://click.example.net/u/" in headers
    assert "GROUP HEADER" in dialog.preview.html.toPlainText()  # rendered, not as source
    assert "'relay'" in dialog.preview.route.text()
    assert "1 link goes through click tracking at click.example.net." in (
        dialog.preview.route.text()
    )

    # A field the engine would refuse: the preview says why instead of showing old text.
    dialog.tabs.setCurrentWidget(dialog.forms[0])
    dialog.subject_edit.clear()
    qtbot.keyClicks(dialog.subject_edit, " ")
    dialog.tabs.setCurrentWidget(dialog.preview)
    qtbot.waitUntil(lambda: dialog.preview.error.isVisible(), timeout=WAIT_MS)
    assert "Subject" in dialog.preview.error.text()
    dialog.confirm_discard = lambda: True
    dialog.reject()


# ---------------------------------------------------------------- steering


def test_start_pause_resume_cancel_and_refresh_keeps_the_selection(
    qtbot: QtBot, window: MainWindow
) -> None:
    db = db_of(window)
    set_up(db)
    make_campaign(db, ["a@example.org", "b@example.org", "c@example.org"], "Spring")
    make_campaign(db, ["d@example.org"], "Autumn")
    page = campaigns_page(qtbot, window)
    select_campaign(qtbot, page, "Spring")
    assert page.start_button.isEnabled() and not page.pause_button.isEnabled()

    def status_is(value: str) -> bool:
        return (row_of(page, "Spring") or {}).get("status") == value

    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: status_is("running"), timeout=WAIT_MS)
    qtbot.waitUntil(page.pause_button.isEnabled, timeout=WAIT_MS)
    assert "Spring is running." in page.status.text()
    qtbot.mouseClick(page.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: status_is("paused"), timeout=WAIT_MS)
    qtbot.waitUntil(page.resume_button.isEnabled, timeout=WAIT_MS)
    qtbot.mouseClick(page.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: status_is("running"), timeout=WAIT_MS)

    # A send engine's work shows within the 2 s refresh, with no click, and the
    # selected row stays selected.
    with db.transaction() as session:
        session.execute(
            update(QueueItem)
            .where(QueueItem.recipient.in_(["a@example.org", "b@example.org"]))
            .values(status=QueueStatus.SENT)
        )
    qtbot.waitUntil(lambda: (row_of(page, "Spring") or {}).get("sent") == 2, timeout=WAIT_MS)
    row = row_of(page, "Spring")
    assert row is not None
    assert page.model.columns[2].display(row) == "66% (2 of 3)"
    selected = page.selected_row()
    assert selected is not None and selected["name"] == "Spring"

    answers: list[str] = []
    page.confirm_cancel = lambda name: answers.append(name) is None
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: status_is("cancelled"), timeout=WAIT_MS)
    assert answers == ["Spring"]
    qtbot.waitUntil(lambda: not page.cancel_button.isEnabled(), timeout=WAIT_MS)
    assert not page.start_button.isEnabled() and not page.resume_button.isEnabled()
    # Filtering by status keeps to the chosen campaigns.
    page.status_filter.setCurrentIndex(page.status_filter.findData("draft"))
    assert [r["name"] for r in page.model.rows] == ["Autumn"]


def test_results_after_a_real_engine_run_then_retry(qtbot: QtBot, window: MainWindow) -> None:
    db = db_of(window)
    handler = ScriptedHandler()
    handler.rcpt_replies["gone@example.org"] = "550 5.1.1 Mailbox gone@example.org does not exist"
    peer = run(qtbot, start_peer(handler))
    try:
        set_up(db, port=peer.port)
        make_campaign(db, ["ann@example.org", "gone@example.org", "bo@example.org"], start=True)
        page = campaigns_page(qtbot, window)
        totals = run(qtbot, run_engine(db), timeout=60_000)
        assert (totals.sent, totals.failed) == (2, 1)
        qtbot.waitUntil(
            lambda: (row_of(page, "Spring") or {}).get("status") == "completed", timeout=WAIT_MS
        )
        row = row_of(page, "Spring")
        assert row is not None and (row["sent"], row["failed"], row["queued"]) == (2, 1, 0)
        select_campaign(qtbot, page, "Spring")
        assert page.retry_button.isEnabled()

        detail = page.open_detail("Spring")
        assert isinstance(detail, CampaignDetailDialog)
        qtbot.waitUntil(lambda: detail.data is not None, timeout=WAIT_MS)
        rows = {r["recipient"]: r for r in detail.model.all_rows}
        assert rows["ann@example.org"]["status"] == "sent"
        assert rows["ann@example.org"]["reply"].startswith("250 ")
        assert rows["ann@example.org"]["server"] == "relay"
        assert rows["ann@example.org"]["in_queue"]  # time in queue, shown
        assert rows["gone@example.org"]["status"] == "failed"
        assert rows["gone@example.org"]["shown_reply"].startswith("550 5.1.1")
        assert rows["gone@example.org"]["in_queue"] == ""
        assert detail.counts.text() == (
            "Queued 0 · In flight 0 · Deferred 0 · Held 0 · Sent 2 · Failed 1"
        )
        detail.status_filter.setCurrentIndex(detail.status_filter.findData("failed"))
        qtbot.waitUntil(lambda: len(detail.model.all_rows) == 1, timeout=WAIT_MS)
        assert detail.model.all_rows[0]["recipient"] == "gone@example.org"
        detail.reject()

        # The mailbox exists now: retry the failed one, and the engine delivers it.
        handler.rcpt_replies.clear()
        qtbot.mouseClick(page.retry_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: (row_of(page, "Spring") or {}).get("queued") == 1, timeout=WAIT_MS)
        assert (row_of(page, "Spring") or {}).get("status") == "running"
        assert "Queued 1 failed or held recipients of Spring again." in page.status.text()
        totals = run(qtbot, run_engine(db), timeout=60_000)
        assert totals.sent == 1
        qtbot.waitUntil(lambda: (row_of(page, "Spring") or {}).get("sent") == 3, timeout=WAIT_MS)
        assert sorted(r for e in handler.envelopes for r in e.rcpt_tos) == [
            "ann@example.org",
            "bo@example.org",
            "gone@example.org",
        ]
    finally:
        run(qtbot, peer.stop())


def test_a_campaign_paused_for_failures_shows_the_reason(qtbot: QtBot, window: MainWindow) -> None:
    db = db_of(window)
    set_up(db)
    make_campaign(db, [f"u{n}@example.org" for n in range(10)], start=True)
    with db.transaction() as session:
        ids = session.scalars(select(QueueItem.id).order_by(QueueItem.id).limit(6)).all()
        session.execute(
            update(QueueItem).where(QueueItem.id.in_(ids)).values(status=QueueStatus.FAILED)
        )
        paused = campaigns.pause_if_failing(session, "Spring", 50, 5)
    assert paused is not None
    page = campaigns_page(qtbot, window)
    select_campaign(qtbot, page, "Spring")
    row = row_of(page, "Spring")
    assert row is not None and page.model.columns[1].display(row) == "Paused (failures)"
    assert page.reason.isVisible()
    assert page.reason.text() == f"Spring: {paused['reason']}"
    detail = page.open_detail("Spring")
    qtbot.waitUntil(lambda: detail.data is not None, timeout=WAIT_MS)
    assert detail.paused.isVisible() and detail.paused.text() == paused["reason"]
    detail.reject()


# ---------------------------------------------------------------- the test campaign


def test_send_a_test_campaign_says_when_no_engine_runs_then_follows_it_to_sent(
    qtbot: QtBot, window: MainWindow
) -> None:
    db = db_of(window)
    handler = ScriptedHandler()
    peer = run(qtbot, start_peer(handler))
    try:
        set_up(db, port=peer.port, managed=True)
        add_domain(db, "alice", "news.shop.example", DomainStatus.ENABLED)
        page = campaigns_page(qtbot, window)
        qtbot.mouseClick(page.test_button, Qt.MouseButton.LeftButton)
        dialog = page.test_dialog
        assert isinstance(dialog, SendTestDialog)
        qtbot.waitUntil(lambda: dialog.engines is not None, timeout=WAIT_MS)
        assert "No send engine has ever run" in dialog.engine_banner.text()
        dialog.user_combo.setCurrentIndex(dialog.user_combo.findData("alice"))
        assert dialog.from_field.value() == "test@news.shop.example"
        qtbot.keyClicks(dialog.recipient, "me@example.org")
        qtbot.mouseClick(dialog.send_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.campaign is not None, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: "no send engine is running" in dialog.state.text(), timeout=WAIT_MS)

        totals = run(qtbot, run_engine(db), timeout=60_000)
        assert totals.sent == 1
        qtbot.waitUntil(lambda: dialog.outcome is not None, timeout=WAIT_MS)
        assert dialog.state.text().startswith("Sent through relay after ")
        assert "The server said: 250 " in dialog.state.text()
        log = [dialog.log.item(i).text() for i in range(dialog.log.count())]
        assert "Created campaign" in log[0] and log[-1].split("  ", 1)[1].startswith("Sent")
        assert [r for e in handler.envelopes for r in e.rcpt_tos] == ["me@example.org"]
        message = handler.envelopes[0].original_content or b""
        assert b"From: test@news.shop.example" in message
        dialog.reject()
    finally:
        run(qtbot, peer.stop())
    assert QApplication.activeModalWidget() is None
