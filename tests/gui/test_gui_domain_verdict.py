"""A domain that can't be checked at all: the detail window says why once, at the top.

Issue 13 item 2: verifying a domain nobody can be asked about used to show the DNS
library's exception text under every record. Driven offscreen against real peers: a
closed loopback port (no name server answers), the local NSD asked about a domain it does
not serve, and the system resolver asked about a name under the reserved ``.invalid``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QLabel, QLineEdit, QWidget
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from app.models import DomainStatus, SenderDomain, User, UserGroup
from app.models.database import Database
from app.services.sender_domains import create_sender_domain
from app.views.domain_detail_dialog import DomainDetailDialog
from app.views.main_window import MainWindow
from app.views.pages.domains import DomainsPage
from tests.conftest import WAIT_MS, peer_missing
from tests.dns_peer import free_port, library_text, missing_reason, start_server, zone_text

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@pytest.fixture
def window_options() -> dict[str, object]:
    return {"open": True, "size": (1200, 720)}


def add_domain(window: MainWindow, domain: str) -> Database:
    db = window.database
    assert db is not None
    with db.transaction() as session:
        group = UserGroup(name="Senders", sender_domain_management=True)
        session.add(User(username="alice", email="alice@example.com", group=group))
        session.flush()
        create_sender_domain(session, "alice", domain)
    return db


def open_detail(qtbot: QtBot, window: MainWindow, domain: str) -> DomainDetailDialog:
    window.select_section("Sender Domains")
    page = window.current_page
    assert isinstance(page, DomainsPage)
    qtbot.waitUntil(lambda: not window.has_pending_work(), timeout=WAIT_MS)
    detail = page.open_detail(domain, "campaign")
    qtbot.waitUntil(lambda: len(detail.rows) == 5, timeout=WAIT_MS)
    return detail


def verify_at(qtbot: QtBot, detail: DomainDetailDialog, nameserver: str) -> None:
    if nameserver:
        qtbot.mouseClick(detail.advanced.toggle, Qt.MouseButton.LeftButton)
        qtbot.keyClicks(detail.advanced.nameserver, nameserver)
    qtbot.mouseClick(detail.verify_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: detail.report is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: detail.verify_button.isEnabled(), timeout=WAIT_MS)


def everything_shown(dialog: QWidget) -> str:
    """Every text the dialog shows, tooltips and accessible names included."""
    texts: list[str] = []
    for widget in dialog.findChildren(QWidget):
        if not widget.isVisibleTo(dialog):
            continue
        if isinstance(widget, (QLabel, QLineEdit, QAbstractButton)):
            texts.append(widget.text())
        texts += [widget.toolTip(), widget.accessibleName()]
    return "\n".join(t for t in texts if t)


def assert_said_once_at_top(detail: DomainDetailDialog, sentence: str) -> None:
    assert detail.verdict.isVisible()
    assert detail.verdict.text().startswith(sentence), detail.verdict.text()
    assert "Advanced › Name server" in detail.verdict.text()
    # Above the records: the verdict sits before the records box in the layout.
    assert detail.verdict.y() < detail.records_box.y()
    shown = everything_shown(detail)
    assert shown.count(sentence) == 1, shown
    assert library_text(shown) == [], shown
    assert [row.result.text() for row in detail.rows] == ["Not checked"] * 5
    assert not any(row.detail.isVisible() for row in detail.rows)
    assert "see the message at the top" in detail.outcome.text()


def test_name_server_that_does_not_answer(qtbot: QtBot, window: MainWindow) -> None:
    domain = "mail.silent.gui.test"
    db = add_domain(window, domain)
    detail = open_detail(qtbot, window, domain)
    closed = free_port()
    verify_at(qtbot, detail, f"127.0.0.1:{closed}")
    assert_said_once_at_top(detail, f"The name server 127.0.0.1 port {closed} did not answer")
    detail.close()

    # The stored check shows the same way when the window is opened again.
    again = open_detail(qtbot, window, domain)
    qtbot.waitUntil(lambda: again.report is not None, timeout=WAIT_MS)
    assert again.verdict.isVisible()
    assert again.verdict.text().startswith(f"The name server 127.0.0.1 port {closed}")
    assert [row.result.text() for row in again.rows] == ["Not checked"] * 5
    with db.session() as session:
        status = session.scalar(select(SenderDomain.status).where(SenderDomain.domain == domain))
    assert status is DomainStatus.APPROVAL_PENDING
    again.close()


def test_name_server_that_does_not_serve_the_domain(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    reason = missing_reason()
    if reason:
        peer_missing(reason)
    domain = "mail.acme.example"
    add_domain(window, domain)
    detail = open_detail(qtbot, window, domain)
    peer = start_server(tmp_path / "zones", {"other.test": zone_text("other.test", [])})
    try:
        verify_at(qtbot, detail, f"127.0.0.1:{peer.port}")
    finally:
        peer.stop()
    assert_said_once_at_top(
        detail, f"The name server 127.0.0.1 port {peer.port} answered, but not for {domain}"
    )
    detail.close()


def test_domain_not_in_public_dns(qtbot: QtBot, window: MainWindow) -> None:
    """The system resolver, asked about a name under the reserved .invalid (RFC 6761): the
    one peer here that is not local; NSD can't stand in, it would have to serve the root."""
    domain = "mail.acme.invalid"
    add_domain(window, domain)
    detail = open_detail(qtbot, window, domain)
    verify_at(qtbot, detail, "")
    if "No name server could be reached" in detail.verdict.text():
        pytest.skip("the system DNS resolver does not answer (it is not one of the test peers)")
    assert_said_once_at_top(detail, f"{domain} does not exist in public DNS")
    detail.close()
