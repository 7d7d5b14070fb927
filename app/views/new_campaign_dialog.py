"""The New Campaign dialog: who sends what to whom, a preview of the message as the send
engine builds it, and the recipients with the lines that will be rejected.

Checks run as the user types (the services' own validators, one sentence under the
field); the recipients are checked off the GUI thread, and creating runs there too, with
a progress bar for big lists and a Cancel that rolls the whole creation back. The dialog
stays open after creating: it lists the lines the service rejected and offers to start.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableView,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.services import validation
from app.services.campaign_preview import SAMPLE_RECIPIENT, preview_message
from app.services.campaigns import (
    check_recipients,
    create_campaign,
    parse_recipients,
    read_recipients,
    sender_choices,
    start_campaign,
)
from app.services.errors import PostroomError, ValidationError
from app.views import theme
from app.views.campaign_parts import CHANNELS, FromField, parse_from, user_label
from app.views.context import AppContext
from app.views.forms import EditorDialog, Form
from app.views.table_model import Column, RowTableModel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sqlalchemy.orm import Session

CHECK_DELAY_MS = 400  # after the last keystroke in the recipients box
REJECTED_SHOWN = 1_000  # rows of the rejected-lines table; the count says how many in all

REJECTED_COLUMNS = (
    Column("line", "Line", align_right=True),
    Column("value", "Value", tooltip=lambda row: row["value"] or None),
    Column("reason", "Reason", tooltip=lambda row: row["reason"]),
)


class CreationCancelled(PostroomError):
    def __init__(self) -> None:
        super().__init__("Cancelled; nothing was created.")


def _required_user(value: object, field: str) -> str:
    if not value:
        raise ValidationError(field, "choose the user the campaign is sent for.")
    return str(value)


def _from_name(value: object, field: str) -> str | None:
    return validation.header_value(value, field, max_length=200) or None if value else None


def _subject(value: object, field: str) -> str:
    text = validation.header_value(value, field, max_length=998) if value else ""
    if not text:
        raise ValidationError(field, "is empty; give the subject line people will see.")
    return text


def _recipients_given(value: object, field: str) -> object:
    if not value or (isinstance(value, tuple) and not value[1]):
        raise ValidationError(field, "are empty; paste addresses or import a CSV or text file.")
    return value


def recipient_lines(source: tuple[str, str]) -> Iterable[tuple[int, str]]:
    """The numbered recipient lines of pasted text or of a file (read lazily)."""
    kind, value = source
    if kind == "file":
        return read_recipients(value)
    return parse_recipients(value.splitlines())


def check_source(source: tuple[str, str]) -> dict[str, Any]:
    """``check_recipients`` of the pasted text or file (executor side)."""
    return check_recipients(recipient_lines(source))


def monospace() -> Any:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


class RecipientsBox(QWidget):
    """Pasted addresses or an imported file, and what the check found in them."""

    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.paste = QPlainTextEdit()
        self.paste.setObjectName("recipientsText")
        self.paste.setAccessibleName("Recipients, one address a line")
        self.paste.setTabChangesFocus(True)
        self.paste.setPlaceholderText(
            "One address a line, or CSV with an email column:\n"
            "email,name\nann@example.org,Ann\nbo@example.net,Bo"
        )
        self.import_button = QPushButton("&Import File…")
        self.import_button.setObjectName("importRecipients")
        self.import_button.setToolTip("Read the addresses of a CSV or text file (UTF-8).")
        self.clear_file_button = QPushButton("Use Pasted Addresses")
        self.clear_file_button.setObjectName("clearRecipientsFile")
        self.clear_file_button.setVisible(False)
        self.file_label = QLabel()
        self.file_label.setObjectName("recipientsFile")
        self.file_label.setWordWrap(True)
        self.file_label.setVisible(False)
        self.summary = QLabel("Paste addresses or import a file.")
        self.summary.setObjectName("recipientsSummary")
        self.summary.setWordWrap(True)
        self.rejected_model = RowTableModel(REJECTED_COLUMNS, self)
        self.rejected = QTableView()
        self.rejected.setObjectName("rejectedTable")
        self.rejected.setAccessibleName("Rejected lines")
        self.rejected.setModel(self.rejected_model)
        self.rejected.verticalHeader().setVisible(False)
        self.rejected.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.rejected.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.rejected.horizontalHeader().setStretchLastSection(True)
        self.rejected.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.rejected.setVisible(False)
        self.file: Path | None = None
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.clear_file_button)
        buttons.addStretch(1)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.paste, 2)
        column.addWidget(self.file_label)
        column.addLayout(buttons)
        column.addWidget(self.summary)
        column.addWidget(self.rejected, 1)
        self.paste.textChanged.connect(self.edited.emit)
        self.clear_file_button.clicked.connect(lambda: self.set_file(None))

    def source(self) -> tuple[str, str] | None:
        if self.file is not None:
            return ("file", str(self.file))
        text = self.paste.toPlainText()
        return ("text", text) if text.strip() else None

    def write(self, value: object) -> None:
        if isinstance(value, tuple) and value[0] == "file":
            self.set_file(Path(value[1]))
        else:
            self.paste.setPlainText(str(value[1]) if isinstance(value, tuple) else "")

    def set_file(self, path: Path | None) -> None:
        self.file = path
        self.paste.setVisible(path is None)
        self.file_label.setVisible(path is not None)
        self.clear_file_button.setVisible(path is not None)
        self.file_label.setText(f"Recipients from {path}" if path else "")
        self.edited.emit()

    def show_check(self, checked: dict[str, Any] | None, *, created: bool = False) -> None:
        """The check's (or the creation's) counts and rejected lines."""
        if checked is None:
            self.summary.setText("Paste addresses or import a file.")
            self.rejected_model.set_rows([])
            self.rejected.setVisible(False)
            return
        rejected = checked["rejected"]
        valid = int(checked.get("valid", checked.get("recipients", 0)))
        verb = "queued" if created else "will be queued"
        text = f"{valid:,} {'address' if valid == 1 else 'addresses'} {verb}"
        if checked.get("duplicates"):
            text += f", {checked['duplicates']:,} repeated ones skipped"
        if rejected:
            noun = "line" if len(rejected) == 1 else "lines"
            text += f"; {len(rejected):,} {noun} rejected"
            if len(rejected) > REJECTED_SHOWN:
                text += f" (the first {REJECTED_SHOWN:,} listed)"
            text += ":"
        else:
            text += "; no line is rejected."
        self.summary.setText(text)
        self.summary.setStyleSheet(f"color: {theme.warning_colour()};" if rejected else "")
        self.rejected_model.set_rows(
            [dict(row, key=n) for n, row in enumerate(rejected[:REJECTED_SHOWN])]
        )
        self.rejected.setVisible(bool(rejected))
        if rejected:
            self.rejected.resizeColumnToContents(0)
            self.rejected.setColumnWidth(1, max(self.rejected.columnWidth(1), 220))


class PreviewPane(QWidget):
    """The message for a sample recipient: headers, text, the HTML rendered and as source."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sample = QLineEdit(SAMPLE_RECIPIENT)
        self.sample.setObjectName("previewRecipient")
        self.sample.setAccessibleName("Sample recipient")
        self.render_button = QPushButton("&Render Preview")
        self.render_button.setObjectName("renderPreview")
        self.route = QLabel("The preview shows the message as the send engine will build it.")
        self.route.setObjectName("previewRoute")
        self.route.setWordWrap(True)
        self.route.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.error = QLabel()
        self.error.setObjectName("previewError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {theme.error_colour()};")
        self.error.setVisible(False)
        self.headers = self._source_view("previewHeaders")
        self.text = self._source_view("previewText")
        self.html = QTextBrowser()
        self.html.setObjectName("previewHtml")
        self.html.setOpenLinks(False)
        self.html_source = self._source_view("previewHtmlSource")
        self.views = QTabWidget()
        self.views.setObjectName("previewViews")
        self.views.addTab(self.html, "HTML")
        self.views.addTab(self.text, "Text")
        self.views.addTab(self.headers, "Headers")
        self.views.addTab(self.html_source, "HTML Source")
        top = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.sample, 1)
        row.addWidget(self.render_button)
        top.addRow("Sample recipient:", row)
        column = QVBoxLayout(self)
        column.addLayout(top)
        column.addWidget(self.route)
        column.addWidget(self.error)
        column.addWidget(self.views, 1)
        self.shown: dict[str, Any] | None = None

    @staticmethod
    def _source_view(name: str) -> QPlainTextEdit:
        view = QPlainTextEdit()
        view.setObjectName(name)
        view.setReadOnly(True)
        view.setFont(monospace())
        view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        return view

    def show_preview(self, shown: dict[str, Any]) -> None:
        self.shown = shown
        self.error.setVisible(False)
        tracked = int(shown["tracked_links"])
        links = (
            f"{tracked} {'link goes' if tracked == 1 else 'links go'} through click "
            f"tracking at {', '.join(shown['tracking_hosts'])}."
            if tracked
            else "No link is tracked."
        )
        unsubscribe = dict(shown["headers"]).get("List-Unsubscribe")
        self.route.setText(
            f"{shown['route']} {links} "
            + ("List-Unsubscribe is set. " if unsubscribe else "")
            + f"Bounces go to {shown['envelope_from']}."
        )
        self.headers.setPlainText("\n".join(f"{n}: {v}" for n, v in shown["headers"]))
        self.text.setPlainText(shown["text"] or "(no text body)")
        self.html_source.setPlainText(shown["html"] or "(no HTML body)")
        # Rendered as a document: remote images (the open pixel) are not fetched.
        self.html.setHtml(shown["html"] or "<p><i>No HTML body.</i></p>")

    def show_problem(self, message: str) -> None:
        self.shown = None
        self.error.setText(f"No preview yet: {message}")
        self.error.setVisible(True)


class NewCampaignDialog(EditorDialog):
    """Create a campaign; see the module's notes."""

    created = Signal(object)  # create_campaign's result
    started = Signal(str)  # the campaign's name, when started from here

    def __init__(
        self,
        context: AppContext,
        parent: QWidget | None = None,
        *,
        preferred_user: str | None = None,
    ) -> None:
        super().__init__(context, "New Campaign", parent)
        self.setObjectName("newCampaignDialog")
        self.resize(780, 640)
        self.preferred_user = preferred_user
        self.users: dict[str, dict[str, Any]] = {}
        self.result: dict[str, Any] | None = None
        self.last_check: dict[str, Any] | None = None
        self._cancel = threading.Event()
        self._task: asyncio.Future[Any] | None = None
        self._check_generation = 0
        self._preview_stale = True

        message = self.add_form("&Message")
        self.message_form = message
        self.name_edit = message.add_line(
            "name", "Name", validation.name, placeholder="Spring sale"
        )
        self.user_combo = message.add_combo("username", "User", [], _required_user)
        self.channel_combo = message.add_combo("channel", "Channel", CHANNELS)
        self.from_field = FromField()
        message.add_custom(
            "from_email",
            "From",
            self.from_field,
            self.from_field.value,
            self.from_field.set_value,
            parse_from,
            edited=self.from_field.edited,
        )
        self.from_hint = QLabel()
        self.from_hint.setObjectName("fromHint")
        self.from_hint.setWordWrap(True)
        self.from_hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        message.layout_.addRow("", self.from_hint)
        self.from_name_edit = message.add_line(
            "from_name", "From name", _from_name, placeholder="Shop News"
        )
        self.subject_edit = message.add_line("subject", "Subject", _subject)

        body = self.add_form("&Body")
        self.text_edit = body.add_text(
            "text", "Text body", hint="The group's text header and footer are added around it."
        )
        self.html_edit = body.add_text(
            "html",
            "HTML body",
            hint="Links are tracked and the group's HTML header and footer added when sent; "
            "see the Preview tab.",
        )

        recipients = self.add_form("&Recipients")
        self.recipients = RecipientsBox()
        recipients.add_custom(
            "recipients",
            "Recipients",
            self.recipients,
            self.recipients.source,
            self.recipients.write,
            _recipients_given,
            edited=self.recipients.edited,
        )
        self.recipients.import_button.clicked.connect(self.choose_file)
        self.recipients.edited.connect(self._schedule_check)
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self.check_now)

        self.preview = PreviewPane()
        self.tabs.addTab(self.preview, "&Preview")
        self.preview.render_button.clicked.connect(self.render_preview)
        self.tabs.currentChanged.connect(self._tab_changed)
        for form in (message, body):
            form.changed.connect(self._mark_preview_stale)

        self.progress = QProgressBar()
        self.progress.setObjectName("createProgress")
        self.progress.setAccessibleName("Creating the campaign")
        self.progress.setVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setObjectName("createProgressLabel")
        self.progress_label.setVisible(False)
        self.done_label = QLabel()
        self.done_label.setObjectName("createdLabel")
        self.done_label.setWordWrap(True)
        self.done_label.setVisible(False)
        self.done_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        position = layout.indexOf(self.error)
        layout.insertWidget(position, self.done_label)
        layout.insertWidget(position, self.progress_label)
        layout.insertWidget(position, self.progress)

        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setText("Create Campaign")
        self.save_button.setObjectName("createButton")
        self.cancel_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button.setObjectName("cancelButton")
        self.user_combo.currentIndexChanged.connect(lambda _i: self._user_changed())
        # Tests (and scripted use) give the file without a file chooser.
        self.ask_file: Callable[[], str] = self._ask_file
        context.spawn(self._load(), on_error=self.show_error)

    # ------------------------------------------------------------------ loading users

    async def _load(self) -> None:
        choices = await self.context.read(sender_choices)
        if not shiboken6.isValid(self):
            return
        self.users = {c["username"]: c for c in choices}
        Form.set_choices(self.user_combo, [(user_label(c), c["username"]) for c in choices])
        if self.preferred_user in self.users:
            self.user_combo.setCurrentIndex(self.user_combo.findData(self.preferred_user))
        self._user_changed()
        self.message_form.mark_clean()  # choices arriving are no edit of the user's
        if not choices:
            self.show_error("There is no active user to send for; add one on the Users page.")
        self.place_focus_after_load()

    def _user_changed(self) -> None:
        choice = self.users.get(str(self.user_combo.currentData()))
        domains = choice["domains"] if choice else None
        self.from_field.set_domains(domains)
        if choice is None:
            self.from_hint.setText("")
        elif domains is None:
            self.from_hint.setText(
                f"Group {choice['group']} does not manage sender domains: any From address."
            )
        elif domains:
            self.from_hint.setText(
                f"Group {choice['group']} manages sender domains: From is at one of "
                f"{choice['username']}'s enabled sender domains."
            )
        else:
            self.from_hint.setText(
                f"{choice['username']} has no enabled sender domain yet, and group "
                f"{choice['group']} requires one; add and verify one on the Sender Domains page."
            )
        self.from_hint.setStyleSheet(f"color: {theme.warning_colour()};" if domains == [] else "")
        self._mark_preview_stale()

    # ------------------------------------------------------------------ recipients

    def _ask_file(self) -> str:
        path, _filter = QFileDialog.getOpenFileName(
            self,
            "Import Recipients",
            str(Path.home()),
            "Recipient lists (*.csv *.txt);;All files (*)",
        )
        return path

    def choose_file(self) -> None:
        path = self.ask_file()
        if path:
            self.recipients.set_file(Path(path))

    def _schedule_check(self) -> None:
        self._check_generation += 1
        self._check_timer.start()

    def check_now(self) -> None:
        self._check_timer.stop()
        source = self.recipients.source()
        generation = self._check_generation
        if source is None:
            self.last_check = None
            self.recipients.show_check(None)
            return
        self.recipients.summary.setText("Checking the addresses…")

        async def check() -> None:
            try:
                checked = await self.context.in_executor(check_source, source)
            except ValidationError as exc:
                if shiboken6.isValid(self):
                    self.recipients.summary.setText(exc.reason)
                    self.recipients.summary.setStyleSheet(f"color: {theme.error_colour()};")
                return
            if generation == self._check_generation and shiboken6.isValid(self):
                self.last_check = checked
                self.recipients.show_check(checked)

        self.context.spawn(check(), on_error=self.show_error)

    # ------------------------------------------------------------------ preview

    def _mark_preview_stale(self) -> None:
        self._preview_stale = True

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.preview and self._preview_stale:
            self.render_preview()

    def render_preview(self) -> None:
        if self.context.database is None:
            return
        self._preview_stale = False
        raw = {k: v for form in self.forms[:2] for k, v in form.raw().items()}
        values = (
            str(raw.get("username") or ""),
            str(raw.get("channel") or "marketing"),
            str(raw.get("from_email") or ""),
            raw.get("from_name"),
            str(raw.get("subject") or ""),
            raw.get("text"),
            raw.get("html"),
            self.preview.sample.text().strip(),
        )

        async def render() -> None:
            try:
                shown = await self.context.read(preview_message, *values)  # type: ignore[arg-type]
            except PostroomError as exc:
                if shiboken6.isValid(self):
                    self.preview.show_problem(str(exc))
                return
            if shiboken6.isValid(self):
                self.preview.show_preview(shown)

        self.context.spawn(render(), on_error=self.preview.show_problem)

    # ------------------------------------------------------------------ creating

    def is_creating(self) -> bool:
        return self._task is not None and not self._task.done()

    def submit(self) -> None:
        if self.result is not None:
            self.context.spawn(self._start(), on_error=self.show_error)
            return
        if self.is_creating():
            return
        values = self.collect()
        if values is None:
            self.show_error("Some fields need attention; see the messages under them.")
            return
        self._cancel.clear()
        self._task = self.context.spawn(self._create(values), on_error=self._failed)

    async def _create(self, values: dict[str, object]) -> None:
        source = values["recipients"]
        assert isinstance(source, tuple)
        expected = int(self.last_check["valid"]) if self.last_check else 0
        self.show_error(None)
        self._set_busy(True, expected)
        loop = asyncio.get_running_loop()
        cancel = self._cancel

        def progress(count: int) -> None:  # in the executor thread
            if cancel.is_set():
                raise CreationCancelled()
            loop.call_soon_threadsafe(self._on_progress, count)

        try:
            result = await self.context.write(
                _create_from_source,
                values,
                source,
                progress,
            )
        except ValidationError as exc:
            self._set_busy(False, 0)
            self._show_refusal(exc)
            return
        except PostroomError:
            self._set_busy(False, 0)
            raise
        if not shiboken6.isValid(self):
            return
        self._set_busy(False, 0)
        self._created(result)

    def _failed(self, message: str) -> None:
        if shiboken6.isValid(self):
            self.show_error(message)

    def _show_refusal(self, exc: ValidationError) -> None:
        """The service's sentence under the field it names (a missing body under Text)."""
        target = "Text body" if exc.field == "Body" else exc.field
        for form in self.forms:
            if form.show_service_error(ValidationError(target, exc.reason)):
                self.tabs.setCurrentWidget(form)
                return
        self.show_error(str(exc))

    def _set_busy(self, busy: bool, expected: int) -> None:
        if not shiboken6.isValid(self):
            return
        self.progress.setVisible(busy)
        self.progress_label.setVisible(busy)
        if busy:
            self.progress.setRange(0, expected)  # 0: busy, the count is not known yet
            self.progress.setValue(0)
            self.progress_label.setText("Creating the campaign and queueing its recipients…")
        self.save_button.setEnabled(not busy)
        for form in self.forms:
            form.setEnabled(not busy)

    def _on_progress(self, count: int) -> None:
        if not shiboken6.isValid(self) or not self.progress.isVisible():
            return
        if self.progress.maximum() and count <= self.progress.maximum():
            self.progress.setValue(count)
        self.progress_label.setText(f"{count:,} recipients queued so far…")

    def _created(self, result: dict[str, Any]) -> None:
        self.result = result
        for form in self.forms:
            form.mark_clean()
            form.setEnabled(False)
        self.recipients.setEnabled(True)  # the rejected lines stay readable
        self.recipients.paste.setReadOnly(True)
        self.recipients.import_button.setEnabled(False)
        self.tabs.setCurrentWidget(self.forms[2])
        self.recipients.show_check(result, created=True)
        rejected = len(result["rejected"])
        self.done_label.setText(
            f"Created {result['name']!r} as a draft: {result['recipients']:,} recipients "
            f"queued"
            + (
                f", {rejected:,} {'line' if rejected == 1 else 'lines'} rejected (listed above)."
                if rejected
                else "."
            )
            + " Start it now, or later from the Campaigns page."
        )
        self.done_label.setStyleSheet(f"color: {theme.success_colour()};")
        self.done_label.setVisible(True)
        self.save_button.setText("Start Campaign")
        self.save_button.setObjectName("startButton")
        self.save_button.setEnabled(True)
        self.cancel_button.setText("Close")
        self.context.changed.emit("campaign")
        self.created.emit(result)

    async def _start(self) -> None:
        assert self.result is not None
        name = str(self.result["name"])
        self.save_button.setEnabled(False)
        try:
            await self.context.write(start_campaign, name)
        finally:
            if shiboken6.isValid(self):
                self.save_button.setEnabled(True)
        self.context.changed.emit("campaign")
        self.started.emit(name)
        self.accept()

    def reject(self) -> None:
        if self.is_creating():
            # Stops at the next chunk; the transaction rolls back, nothing is left.
            self._cancel.set()
            self.progress_label.setText("Cancelling…")
            return
        super().reject()

    def done(self, result: int) -> None:
        self._cancel.set()
        self._check_timer.stop()
        super().done(result)


def _create_from_source(
    session: Session,
    values: dict[str, object],
    source: tuple[str, str],
    progress: Callable[[int], None],
) -> dict[str, Any]:
    return create_campaign(
        session,
        str(values["name"]),
        str(values["username"]),
        str(values["channel"]),
        str(values["from_email"]),
        values["from_name"] if isinstance(values["from_name"], str) else None,
        str(values["subject"]),
        values["text"] if isinstance(values["text"], str) else None,
        values["html"] if isinstance(values["html"], str) else None,
        recipient_lines(source),
        progress=progress,
    )
