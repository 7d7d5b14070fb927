"""Send a test campaign: the reference's step 7 in one dialog.

Step 7 asks for a new campaign from a verified sender domain, a small test list, sending,
and watching the send engine's log. Here: pick the user and a test address, and the
dialog creates a campaign of that one recipient, starts it, and follows it every second
until it is sent or fails, saying plainly when no send engine is running to take it.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.models.base import CampaignStatus, utcnow
from app.services import validation
from app.services.campaigns import create_campaign, recipient_results, sender_choices
from app.services.engine_liveness import engine_presence
from app.services.errors import ValidationError
from app.views import theme
from app.views.campaign_parts import FromField, duration_text, parse_from, user_label
from app.views.context import AppContext
from app.views.forms import Form

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

POLL_MS = 1_000
DEFAULT_SUBJECT = "Postroom test message"
DEFAULT_TEXT = (
    "This is a test message sent from Postroom to check that campaigns from this "
    "sender are delivered.\n"
)
FINAL = ("sent", "failed")


def send_test(
    session: Session, username: str, from_email: str, to: str, subject: str
) -> dict[str, Any]:
    """A running campaign of one recipient, on the marketing channel as campaigns are."""
    recipient = validation.email_address(to, "Test recipient")
    stamp = utcnow().strftime("%Y-%m-%d %H:%M:%S")
    return create_campaign(
        session,
        f"Test {stamp} {secrets.token_hex(2)}",
        username,
        "marketing",
        from_email,
        None,
        subject,
        DEFAULT_TEXT,
        None,
        [recipient],
        status=CampaignStatus.RUNNING,
    )


def follow_test(session: Session, name: str) -> dict[str, Any]:
    """The one recipient's result and whether an engine is running."""
    return {"result": recipient_results(session, name)[0], "engines": engine_presence(session)}


def _required_user(value: object, field: str) -> str:
    if not value:
        raise ValidationError(field, "choose the user the test is sent for.")
    return str(value)


def _subject(value: object, field: str) -> str:
    text = validation.header_value(value, field, max_length=998) if value else ""
    if not text:
        raise ValidationError(field, "is empty; give the test message a subject.")
    return text


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


class SendTestDialog(QDialog):
    def __init__(
        self,
        context: AppContext,
        parent: QWidget | None = None,
        *,
        preferred_user: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.preferred_user = preferred_user
        self.users: dict[str, dict[str, Any]] = {}
        self.campaign: str | None = None
        self.outcome: dict[str, Any] | None = None
        self.engines: dict[str, Any] | None = None
        self._last_status: str | None = None
        self._polling = False
        self.setObjectName("testCampaignDialog")
        self.setWindowTitle("Send a Test Campaign")
        self.resize(640, 560)

        intro = QLabel(
            "Step 7 of setting up sending: a campaign from a verified sender domain to a "
            "small test list, sent and watched until it leaves. This creates a campaign of "
            "one test address, starts it and follows it here."
        )
        intro.setWordWrap(True)
        intro.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.engine_banner = QLabel("Looking for running send engines…")
        self.engine_banner.setObjectName("engineBanner")
        self.engine_banner.setWordWrap(True)
        self.form = Form()
        self.user_combo = self.form.add_combo("username", "User", [], _required_user)
        self.from_field = FromField()
        self.form.add_custom(
            "from_email",
            "From",
            self.from_field,
            self.from_field.value,
            self.from_field.set_value,
            parse_from,
            edited=self.from_field.edited,
        )
        self.recipient = self.form.add_line(
            "to",
            "Test recipient",
            validation.email_address,
            placeholder="you@example.org",
            hint="An address you can read: the message should arrive there.",
        )
        self.subject = self.form.add_line("subject", "Subject", _subject)
        self.subject.setText(DEFAULT_SUBJECT)
        self.state = QLabel("Not sent yet.")
        self.state.setObjectName("testState")
        self.state.setWordWrap(True)
        self.log = QListWidget()
        self.log.setObjectName("testLog")
        self.log.setAccessibleName("What happened, in order")
        self.log.setWordWrap(True)  # a server's reply is read whole, not scrolled to
        self.error = QLabel()
        self.error.setObjectName("testError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {theme.error_colour()};")
        self.error.setVisible(False)
        self.send_button = QPushButton("&Send Test")
        self.send_button.setObjectName("sendTestButton")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.send_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.engine_banner)
        layout.addWidget(self.form)
        layout.addWidget(self.state)
        layout.addWidget(self.log, 1)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.user_combo.currentIndexChanged.connect(lambda _i: self._user_changed())
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        context.spawn(self._load(), on_error=self._show_error)

    async def _load(self) -> None:
        choices, engines = await asyncio.gather(
            self.context.read(sender_choices), self.context.read(engine_presence)
        )
        if not shiboken6.isValid(self):
            return
        self.users = {c["username"]: c for c in choices}
        Form.set_choices(self.user_combo, [(user_label(c), c["username"]) for c in choices])
        if self.preferred_user in self.users:
            self.user_combo.setCurrentIndex(self.user_combo.findData(self.preferred_user))
        self._user_changed()
        self._show_engines(engines)
        self.form.mark_clean()
        if not choices:
            self._show_error("There is no active user to send for; add one on the Users page.")

    def _user_changed(self) -> None:
        choice = self.users.get(str(self.user_combo.currentData()))
        self.from_field.set_domains(choice["domains"] if choice else None)
        if choice and choice["domains"] and not self.from_field.local_part():
            self.from_field.local.setText("test")

    def _show_engines(self, engines: dict[str, Any]) -> None:
        self.engines = engines
        running = bool(engines["running"])
        self.engine_banner.setText(engines["sentence"])
        self.engine_banner.setStyleSheet(
            f"color: {theme.success_colour()};"
            if running
            else f"color: {theme.warning_colour()}; {theme.banner_style('warning')}"
        )

    def _show_error(self, message: str) -> None:
        if shiboken6.isValid(self):
            self.error.setText(message)
            self.error.setVisible(bool(message))

    def _add_log(self, text: str) -> None:
        self.log.addItem(f"{_now()}  {text}")
        self.log.scrollToBottom()

    # ------------------------------------------------------------------ sending

    def send(self) -> None:
        if self._polling:
            return
        values = self.form.values()
        if values is None:
            return
        self._show_error("")
        self.send_button.setEnabled(False)
        self.context.spawn(self._send(values), on_error=self._send_failed)

    def _send_failed(self, message: str) -> None:
        if shiboken6.isValid(self):
            self.send_button.setEnabled(True)
            self._show_error(message)

    async def _send(self, values: dict[str, object]) -> None:
        try:
            created = await self.context.write(
                send_test,
                str(values["username"]),
                str(values["from_email"]),
                str(values["to"]),
                str(values["subject"]),
            )
        except ValidationError as exc:
            if shiboken6.isValid(self):
                self.send_button.setEnabled(True)
                if not self.form.show_service_error(exc):
                    self._show_error(str(exc))
            return
        if not shiboken6.isValid(self):
            return
        self.campaign = str(created["name"])
        self.outcome = None
        self._last_status = None
        self.log.clear()
        self._add_log(f"Created campaign {self.campaign!r} for {values['to']} and started it.")
        self.state.setText("Queued: waiting for a send engine to take it…")
        self.context.changed.emit("campaign")
        self._polling = True
        self.timer.start()
        self._poll()

    def _poll(self) -> None:
        if self.campaign is None or not self._polling:
            return
        name = self.campaign

        async def poll() -> None:
            progress = await self.context.read(follow_test, name)
            if shiboken6.isValid(self) and self._polling and name == self.campaign:
                self._show_progress(progress)

        self.context.spawn(poll(), on_error=self._show_error)

    def _show_progress(self, progress: dict[str, Any]) -> None:
        result = progress["result"]
        self._show_engines(progress["engines"])
        status = result["status"]
        if status != self._last_status:
            self._last_status = status
            self._add_log(self._describe(result))
        self.state.setText(self._describe(result))
        if status == "queued" and not progress["engines"]["running"]:
            self.state.setText(
                "Queued, and no send engine is running to take it: "
                + progress["engines"]["sentence"]
            )
        colour = {
            "sent": theme.success_colour(),
            "failed": theme.error_colour(),
            "held": theme.warning_colour(),
            "deferred": theme.warning_colour(),
        }.get(status)
        self.state.setStyleSheet(f"color: {colour};" if colour else "")
        if status in FINAL:
            self.outcome = result
            self._polling = False
            self.timer.stop()
            self.send_button.setEnabled(True)
            self.send_button.setText("Send &Another")
            self.context.changed.emit("campaign")

    @staticmethod
    def _describe(result: dict[str, Any]) -> str:
        status = result["status"]
        reply = result["reply"] or ""
        route = f" through {result['server']}" if result["server"] else ""
        if status == "queued":
            return "Queued: waiting for a send engine to take it."
        if status == "in_flight":
            return "In flight: a send engine is delivering it."
        if status == "deferred":
            return f"Deferred{route}; it will be tried again. The server said: {reply}"
        if status == "held":
            return f"Held: {result.get('held_reason') or reply}"
        if status == "sent":
            took = duration_text(result["queued_seconds"])
            return f"Sent{route} after {took} in the queue. The server said: {reply}"
        return f"Failed{route}. The server said: {reply}"

    def done(self, result: int) -> None:
        self._polling = False
        self.timer.stop()
        super().done(result)
