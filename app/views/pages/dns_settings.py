"""The DNS Settings page: the global values every sender domain's records are rendered with.

A form page rather than a dialog: there is one set of settings, and it is edited in place.
Each field is checked as it is typed with ``dns_settings.normalize_setting`` (what Save
will store). The four naming settings may be left unset, so the reference's environment
variable or built-in default applies; the page says which one is in force. Save sends the
version it loaded, so a second console's save is refused with an offer to reload instead
of silently overwriting, and leaving the page with unsaved edits asks first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QFontDatabase, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpacerItem,
    QVBoxLayout,
    QWidget,
)

from app.services.dns_settings import (
    DEFAULT_VALUES,
    ENV_FALLBACKS,
    LABELS,
    get_settings,
    load_row,
    normalize_setting,
    settings_as_dict,
    update_settings,
)
from app.services.errors import ConcurrentEditError, ValidationError
from app.views import theme
from app.views.context import AppContext
from app.views.forms import Form, ask_discard
from app.views.pages.base import Page, scaled_font

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# What each value is for, in plain words; the reference's name last, for administrators
# moving from it (the placeholders in _underscores_ are those DNS templates use).
HINTS: dict[str, str] = {
    "spf_include": (
        "The mechanism every sender domain's SPF record must contain so receivers accept "
        "mail from your servers, e.g. include:spf.example.net. Called DNS_SPF in the reference."
    ),
    "dkim_selector": (
        "The name in front of ._domainkey where domains publish the signing key, e.g. key1 "
        "gives key1._domainkey.example.com (_DkimSelector_ in templates). Called DNS_DKIM_KEY "
        "in the reference."
    ),
    "dkim_public_key": (
        "The public half of the signing key (the p= value, a PEM block or the whole v=DKIM1 "
        "record); verification compares published keys with it. May be left empty. Called "
        "DNS_DKIM in the reference."
    ),
    "dmarc_policy": (
        "What receivers do with mail that fails SPF and DKIM, e.g. v=DMARC1; p=none; "
        "rua=mailto:dmarc@example.com. Called DNS_DMARC in the reference."
    ),
    "sender_domain_target": (
        "The host the bounce (MFROM), DKIM and DMARC CNAME records point to "
        "(_SenderTarget_ in templates). Called DNS_SENDER_DOMAIN in the reference."
    ),
    "link_tracker_target": (
        "The host the click tracking CNAME points to (_LinkTracker_ in templates). Called "
        "DNS_LINK_TRACKER in the reference."
    ),
    "open_tracker_target": (
        "The host the open tracking CNAME points to (_OpenTracker_ in templates). Called "
        "DNS_OPEN_TRACKER in the reference."
    ),
    "campaign_subdomain": (
        "The subdomain campaign sender domains send from: sl gives sl.example.com "
        "(_Subdomain_ in templates)."
    ),
    "campaign_track_prefix": (
        "Put in front of the subdomain for tracking links: track gives track-sl.example.com "
        "(_TrackPrefix_ in templates)."
    ),
    "campaign_track_merge": (
        "The character between the prefix and the subdomain: '-', '.' or nothing "
        "(_TrackMerge_ in templates)."
    ),
    "gateway_subdomain": (
        "The subdomain Email Gateway sender domains send from (_Subdomain_ in templates)."
    ),
}
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Authentication", ("spf_include", "dkim_selector", "dkim_public_key", "dmarc_policy")),
    ("CNAME targets", ("sender_domain_target", "link_tracker_target", "open_tracker_target")),
    (
        "Sender domain names",
        (
            "campaign_subdomain",
            "campaign_track_prefix",
            "campaign_track_merge",
            "gateway_subdomain",
        ),
    ),
)


def load_dns_settings(session: Session) -> dict[str, Any]:
    """The stored values (None = not set), the values in force, and the version."""
    row = load_row(session)
    effective = settings_as_dict(get_settings(session))
    return {
        "stored": settings_as_dict(row) if row is not None else {},
        "effective": effective,
        "version": effective["version"],
    }


def save_dns_settings(
    session: Session, changes: dict[str, Any], expected_version: int
) -> dict[str, Any]:
    update_settings(session, changes, expected_version=expected_version)
    return load_dns_settings(session)


def fallback(key: str) -> tuple[str, str | None, str]:
    """(variable, its value or None when unset, built-in default) of an env-backed key."""
    variable, default = ENV_FALLBACKS[key]
    return variable, os.environ.get(variable), default


def fallback_text(key: str) -> str:
    variable, value, default = fallback(key)
    if value is not None:
        return f"Not set here: the environment variable {variable}={value!r} applies."
    return f"Not set here: the built-in default {default!r} applies ({variable} is not set)."


def _parser(key: str) -> Callable[[object, str], object]:
    def parse(raw: object, _label: str) -> object:
        if key in ENV_FALLBACKS:
            return None if raw is None else normalize_setting(key, raw)
        # Empty is a refusal (or, for the DKIM key, "no key"), never a silent default.
        return normalize_setting(key, "" if raw is None else raw)

    return parse


class SettingsForm(Form):
    """A Form whose env-backed fields carry a "use the default" box and say where it's from."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sources: dict[str, QLabel] = {}
        self.defaults: dict[str, QCheckBox] = {}

    def add_defaultable(self, key: str, label: str, hint: str) -> QLineEdit:
        edit = QLineEdit()
        box = QCheckBox("Use the default")
        box.setObjectName(f"default_{key}")
        box.setAccessibleName(f"{label}: use the environment variable or built-in default")
        source = QLabel()
        source.setObjectName(f"source_{key}")
        source.setWordWrap(True)
        source.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        holder = QWidget()
        holder.setFocusProxy(edit)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        row.addWidget(box)
        self.defaults[key] = box
        self.sources[key] = source

        def read() -> object:
            return None if box.isChecked() else edit.text()

        def write(value: object) -> None:
            box.blockSignals(True)
            box.setChecked(value is None)
            box.blockSignals(False)
            edit.setText(self.fallback_value(key) if value is None else str(value))
            self._show_source(key)

        # The source line names the variable in either state; the hint says what it is for.
        self._bind(key, label, holder, read, write, _parser(key), hint)
        self.fields[key].widget = edit  # errors focus the text, not the container
        holder.setObjectName(f"holder_{key}")
        edit.setObjectName(f"field_{key}")
        edit.setAccessibleName(label)
        # The source line sits under the hint, above the inline error.
        outer = holder.parentWidget()
        column = outer.layout() if outer is not None else None
        if isinstance(column, QVBoxLayout):
            column.insertWidget(1, source)
        edit.textEdited.connect(lambda _text: self._edited(key))

        def toggled(on: bool) -> None:
            if on:
                edit.setText(self.fallback_value(key))
            self._show_source(key)
            self._edited(key)

        box.toggled.connect(toggled)
        self._show_source(key)
        return edit

    @staticmethod
    def fallback_value(key: str) -> str:
        _variable, value, default = fallback(key)
        return default if value is None else value

    def _show_source(self, key: str) -> None:
        box = self.defaults[key]
        edit = self.fields[key].widget
        edit.setEnabled(not box.isChecked())
        self.sources[key].setText(
            fallback_text(key)
            if box.isChecked()
            else f"Set here; it overrides {ENV_FALLBACKS[key][0]} and the built-in default."
        )


class DnsSettingsPage(Page):
    title = "DNS Settings"
    summary = (
        "The values every sender domain's DNS records are made from: what they point to and "
        "how they are named. Changes apply to sender domains created afterwards."
    )
    entities = ("dns_settings",)

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.version: int | None = None
        self.loaded: dict[str, Any] | None = None
        self._reads = 0  # a newer read supersedes an older one still running
        self.forms: list[SettingsForm] = []
        # One form for every section, so the labels of all sections line up.
        self.form = SettingsForm()
        self.forms = [self.form]
        form = self.form
        for number, (title, keys) in enumerate(SECTIONS):
            heading = QLabel(title)
            heading.setFont(scaled_font(heading.font(), 1.1, bold=True))
            if number:
                form.layout_.addItem(QSpacerItem(0, 10))
            form.layout_.addRow(heading)
            for key in keys:
                if key in ENV_FALLBACKS:
                    form.add_defaultable(key, LABELS[key], HINTS[key])
                elif key == "dkim_public_key":
                    text = form.add_text(key, LABELS[key], _parser(key), hint=HINTS[key])
                    # A key is read character by character: a fixed-width font helps.
                    text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
                    text.setFixedHeight(text.fontMetrics().lineSpacing() * 4 + 12)
                else:
                    default = DEFAULT_VALUES[key]
                    form.add_line(
                        key,
                        LABELS[key],
                        _parser(key),
                        placeholder=default,
                        hint=f"{HINTS[key]} Default: {default}",
                    )
        form.changed.connect(self._on_edit)
        # QFormLayout keeps the row heights it measured for word-wrapped rows: when an
        # inline error or a longer source line appears, the row would stay as short as
        # before and squeeze its field (the DKIM box shrank under its own help text).
        for field in form.fields.values():
            if isinstance(field.widget, QLineEdit):
                # A long value (a DMARC policy) is cut by the box; the tooltip has it whole.
                field.widget.textChanged.connect(field.widget.setToolTip)
        self._relayout_pending = False
        for holder in form.findChildren(QWidget):
            if holder.parentWidget() is form:
                holder.installEventFilter(self)
        content = QWidget()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 12, 0)
        column.addWidget(form)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setObjectName("settingsScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)

        self.save_button = QPushButton("&Save")
        self.save_button.setObjectName("saveButton")
        self.revert_button = QPushButton("&Revert")
        self.revert_button.setObjectName("revertButton")
        self.revert_button.setToolTip("Discard the changes and show the stored settings again.")
        self.save_button.clicked.connect(self.save)
        self.revert_button.clicked.connect(self.revert)
        self.dirty_label = QLabel()
        self.dirty_label.setObjectName("dirtyLabel")
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.dirty_label)
        buttons.addStretch(1)
        self.body.addWidget(scroll, 1)
        self.body.addLayout(buttons)
        self.body.addWidget(self.status)
        QShortcut(QKeySequence.StandardKey.Save, self, self.save)
        # Tests (and scripted use) answer these without a modal loop.
        self.confirm_discard: Callable[[], bool] = self._ask_discard
        self.reload_box: QMessageBox | None = None
        self._saving = False
        self._announcing = False
        self._saved_shown = False
        context.database_changed.connect(self._database_changed)
        self._update_buttons()

    # -------------------------------------------------------------- state

    def is_dirty(self) -> bool:
        return any(form.is_dirty() for form in self.forms)

    def field(self, key: str) -> QWidget:
        """The input widget of a setting (tests and focus handling)."""
        for form in self.forms:
            if key in form.fields:
                return form.fields[key].widget
        raise KeyError(key)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.LayoutRequest and not self._relayout_pending:
            # After the row has laid itself out, so the form measures its new height.
            self._relayout_pending = True
            QTimer.singleShot(0, self, self._relayout_form)
        return super().eventFilter(watched, event)

    def _relayout_form(self) -> None:
        self._relayout_pending = False
        self.form.layout_.invalidate()
        self.form.layout_.activate()

    def _on_edit(self) -> None:
        self._update_buttons()

    def _update_buttons(self) -> None:
        dirty = self.is_dirty()
        loaded = self.loaded is not None
        self.save_button.setEnabled(dirty and loaded and not self._saving)
        self.revert_button.setEnabled(dirty and not self._saving)
        self.dirty_label.setText("Unsaved changes" if dirty else "")
        if dirty and self._saved_shown:
            # "Saved." next to "Unsaved changes" would contradict it.
            self.show_status("")
        self.dirty_label.setStyleSheet(f"color: {theme.warning_colour(self.palette())};")

    def show_status(self, message: str, *, error: bool = False) -> None:
        self._saved_shown = False
        super().show_status(message, error=error)

    def can_leave(self) -> bool:
        if not self.is_dirty():
            return True
        if not self.confirm_discard():
            return False
        self.revert()
        return True

    def _ask_discard(self) -> bool:
        return ask_discard(self, "The DNS settings have unsaved changes.")

    # -------------------------------------------------------------- loading

    def refresh(self) -> None:
        if self.context.database is None:
            return
        if self.is_dirty():
            # Never overwrite what is being typed; Revert loads the stored values.
            return
        self.context.spawn(self._load(), on_error=lambda msg: self.show_status(msg, error=True))

    def _on_changed(self, entity: str) -> None:
        if not self._announcing:
            super()._on_changed(entity)

    def _database_changed(self) -> None:
        # Edits belong to the database they were made for.
        for form in self.forms:
            form.mark_clean()
        self.loaded = None
        self.refresh()

    async def _load(self, *, force: bool = False) -> None:
        self._reads += 1
        read = self._reads
        data = await self.context.read(load_dns_settings)
        if read != self._reads:
            return  # an older read (e.g. from before an environment change) arrived late
        if self.is_dirty() and not force:
            # Edited while the read was under way: the edits win; Save's version check
            # catches a conflict with whatever the read would have shown.
            return
        self.show_settings(data)

    def show_settings(self, data: dict[str, Any]) -> None:
        self.loaded = data
        self.version = int(data["version"])
        stored = data["stored"] or data["effective"]
        for form in self.forms:
            form.load({key: stored.get(key) for key in form.fields})
            for field in form.fields.values():
                if isinstance(field.widget, QLineEdit):
                    # Loading blocks textChanged, so the tooltip is set here as well.
                    field.widget.setToolTip(field.widget.text())
        self._update_buttons()

    def revert(self) -> None:
        if self.loaded is not None:
            self.show_settings(self.loaded)
        for form in self.forms:
            form.mark_clean()
        self._update_buttons()
        if self.context.database is not None:
            self.context.spawn(self._load(), on_error=lambda msg: self.show_status(msg, error=True))

    # -------------------------------------------------------------- saving

    def collect(self) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        ok = True
        for form in self.forms:
            parsed = form.values()
            if parsed is None:
                ok = False
            else:
                values.update(parsed)
        return values if ok else None

    def save(self) -> None:
        if self._saving or self.loaded is None or not self.is_dirty():
            return
        values = self.collect()
        if values is None:
            self.show_status("Some fields need attention; see the messages under them.", error=True)
            return
        assert self.version is not None
        self.context.spawn(self._save(values, self.version), on_error=self._save_failed)

    async def _save(self, values: dict[str, Any], version: int) -> None:
        self._saving = True
        self._update_buttons()
        self.show_status("Saving…")
        try:
            data = await self.context.write(save_dns_settings, values, version)
        except ConcurrentEditError as exc:
            self.offer_reload(str(exc))
            return
        except ValidationError as exc:
            if not any(form.show_service_error(exc) for form in self.forms):
                self.show_status(str(exc), error=True)
            else:
                self.show_status("The value marked below was refused.", error=True)
            return
        finally:
            self._saving = False
            self._update_buttons()
        for form in self.forms:
            form.mark_clean()
        self.show_settings(data)
        self.show_status(
            "Saved. New sender domains get records made with these values; existing "
            "domains keep theirs."
        )
        self._saved_shown = True
        self._announcing = True  # other pages reload; this one already shows the result
        try:
            self.context.changed.emit("dns_settings")
        finally:
            self._announcing = False

    def _save_failed(self, message: str) -> None:
        self.show_status(message, error=True)

    def offer_reload(self, message: str) -> None:
        """Someone else saved first: keep the edits on screen, offer the stored values."""
        self.show_status(message, error=True)
        box = QMessageBox(self)
        box.setObjectName("concurrentEditBox")
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Changed by someone else")
        box.setText(message)
        box.setInformativeText(
            "Reload shows their values (your edits are discarded); Cancel keeps your edits "
            "on screen so you can note them."
        )
        reload_button = box.addButton("Reload", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)

        def finished() -> None:
            if box.clickedButton() is reload_button:
                for form in self.forms:
                    form.mark_clean()
                self.loaded = None
                self.refresh()
            self.reload_box = None

        box.finished.connect(finished)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        self.reload_box = box
        box.open()
