"""Forms that validate inline through the services' own validators, and editor dialogs.

A field is bound to a parser of the form ``parse(raw, label) -> value`` (the same
functions the services use, e.g. ``validation.hostname`` or a service ``FIELDS`` entry);
each edit re-runs it and shows the refusal right under the field, naming the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QPalette, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.services.errors import ConcurrentEditError, PostroomError, ValidationError
from app.views.context import AppContext
from app.views.focus import apply_reading_order, focus_first_field, mark_focus_in

Parser = Callable[[object, str], object]
ERROR_COLOUR = "#c62828"


def error_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {ERROR_COLOUR};")
    label.setVisible(False)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


@dataclass
class BoundField:
    key: str
    label: str
    widget: QWidget
    error: QLabel
    read: Callable[[], object]
    write: Callable[[object], None]
    parse: Parser | None

    def check(self) -> tuple[bool, object]:
        raw = self.read()
        if self.parse is None:
            self.show_error(None)
            return True, raw
        try:
            value = self.parse(raw, self.label)
        except ValidationError as exc:
            self.show_error(exc.reason)
            return False, None
        self.show_error(None)
        return True, value

    def show_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setVisible(bool(message))


class Form(QWidget):
    """A labelled form; ``changed`` fires on every edit, ``values()`` parses everything."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fields: dict[str, BoundField] = {}
        self.layout_ = QFormLayout(self)
        self.layout_.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._snapshot: dict[str, object] = {}

    def _bind(
        self,
        key: str,
        label: str,
        widget: QWidget,
        read: Callable[[], object],
        write: Callable[[object], None],
        parse: Parser | None,
        hint: str | None,
    ) -> None:
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(widget)
        if hint:
            note = QLabel(hint)
            note.setWordWrap(True)
            note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            column.addWidget(note)
        error = error_label()
        column.addWidget(error)
        title = QLabel(f"{label}:")
        title.setBuddy(widget)
        self.layout_.addRow(title, holder)
        widget.setObjectName(f"field_{key}")
        widget.setAccessibleName(label)
        self.fields[key] = BoundField(key, label, widget, error, read, write, parse)

    def add_line(
        self,
        key: str,
        label: str,
        parse: Parser | None = None,
        *,
        placeholder: str = "",
        hint: str | None = None,
        password: bool = False,
        empty_is_none: bool = True,
    ) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        if password:
            edit.setEchoMode(QLineEdit.EchoMode.Password)

        def read() -> object:
            text = edit.text()
            return None if empty_is_none and not text.strip() else text

        def write(value: object) -> None:
            edit.setText("" if value is None else str(value))

        self._bind(key, label, edit, read, write, parse, hint)
        edit.textEdited.connect(lambda _text: self._edited(key))
        return edit

    def add_text(
        self, key: str, label: str, parse: Parser | None = None, *, hint: str | None = None
    ) -> QPlainTextEdit:
        edit = QPlainTextEdit()
        edit.setTabChangesFocus(True)  # keyboard users must be able to leave the field
        edit.setMinimumHeight(70)

        def read() -> object:
            text = edit.toPlainText()
            return text or None

        def write(value: object) -> None:
            edit.setPlainText("" if value is None else str(value))

        self._bind(key, label, edit, read, write, parse, hint)
        edit.textChanged.connect(lambda: self._edited(key))
        return edit

    def add_check(self, key: str, label: str, *, hint: str | None = None) -> QCheckBox:
        box = QCheckBox()

        def write(value: object) -> None:
            box.setChecked(bool(value))

        self._bind(key, label, box, box.isChecked, write, None, hint)
        box.toggled.connect(lambda _on: self._edited(key))
        return box

    def add_combo(
        self,
        key: str,
        label: str,
        choices: Sequence[tuple[str, object]],
        parse: Parser | None = None,
        *,
        hint: str | None = None,
    ) -> QComboBox:
        combo = QComboBox()
        self.set_choices(combo, choices)

        def write(value: object) -> None:
            index = combo.findData(value)
            combo.setCurrentIndex(max(index, 0))

        self._bind(key, label, combo, combo.currentData, write, parse, hint)
        combo.currentIndexChanged.connect(lambda _i: self._edited(key))
        return combo

    def add_custom(
        self,
        key: str,
        label: str,
        widget: QWidget,
        read: Callable[[], object],
        write: Callable[[object], None],
        parse: Parser | None = None,
        *,
        edited: Any = None,
        hint: str | None = None,
    ) -> QWidget:
        """A field made of a widget of the caller's (``edited``: its change signal)."""
        self._bind(key, label, widget, read, write, parse, hint)
        if edited is not None:
            edited.connect(lambda *_args: self._edited(key))
        return widget

    @staticmethod
    def set_choices(combo: QComboBox, choices: Sequence[tuple[str, object]]) -> None:
        current = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        for text, value in choices:
            combo.addItem(text, value)
        index = combo.findData(current)
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)

    def _edited(self, key: str) -> None:
        self.fields[key].check()
        self.changed.emit()

    # ------------------------------------------------------------------ state

    def load(self, values: dict[str, object]) -> None:
        for key, value in values.items():
            if key in self.fields:
                field = self.fields[key]
                field.widget.blockSignals(True)
                field.write(value)
                field.widget.blockSignals(False)
                field.show_error(None)
        self._snapshot = self.raw()

    def raw(self) -> dict[str, object]:
        return {key: field.read() for key, field in self.fields.items()}

    def is_dirty(self) -> bool:
        return self.raw() != self._snapshot

    def mark_clean(self) -> None:
        self._snapshot = self.raw()

    def values(self) -> dict[str, object] | None:
        """Every field parsed, or None (with the errors shown) if any is refused."""
        parsed: dict[str, object] = {}
        ok = True
        for key, field in self.fields.items():
            good, value = field.check()
            ok = ok and good
            parsed[key] = value
        return parsed if ok else None

    def show_service_error(self, error: ValidationError) -> bool:
        """Put a service's refusal under the field it names; False if no field matches."""
        for field in self.fields.values():
            if field.label == error.field or field.key == error.field:
                field.show_error(error.reason)
                field.widget.setFocus()
                return True
        return False


def ask_discard(parent: QWidget, what: str) -> bool:
    """The one "Discard changes?" question (Cancel by default); True to discard."""
    answer = QMessageBox.question(
        parent,
        "Discard changes?",
        f"{what} Discard them?",
        QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Discard


class EditorDialog(QDialog):
    """Tabs of forms, Save and Cancel, a service-error line, and an unsaved-changes guard.

    Subclasses implement ``async save(values) -> None``; the dialog closes when it returns
    and stays open (showing why) when it raises a PostroomError.
    """

    saved = Signal()

    def __init__(self, context: AppContext, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.setWindowTitle(title)
        self.setModal(True)
        self.resize(640, 560)
        self.forms: list[Form] = []
        self.tabs = QTabWidget()
        self.error = error_label()
        self.error.setObjectName("dialogError")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self._saving = False
        self._focus_placed = False
        self._focus_field: QWidget | None = None  # where place_focus put the cursor
        # The saved name of the row being edited; None while creating (subclasses set it).
        self.original_name: str | None = None
        # Tests (and scripted use) answer the discard question without a modal loop.
        self.confirm_discard: Callable[[], bool] = self._ask_discard

    def add_form(self, title: str, form: Form | None = None) -> Form:
        form = form or Form()
        self.forms.append(form)
        self.tabs.addTab(form, title)
        return form

    def is_dirty(self) -> bool:
        return any(form.is_dirty() for form in self.forms)

    # ------------------------------------------------------------------ focus

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._focus_placed:
            # Once, when first shown: every tab is built by now, and QDialog looks for
            # the focus widget right after this (without one it picks its Save button).
            self._focus_placed = True
            self.place_focus()

    def place_focus(self) -> QWidget | None:
        """Tab in reading order, and the cursor in the field where typing starts.

        Creating: the first empty field. Editing: the first field (its text selected),
        since a filled-in editor is opened to change what is there.
        """
        mark_focus_in(self)  # first: a widget made after the Tab order would join its end
        self.refresh_tab_order()
        self._focus_field = focus_first_field(self, prefer_empty=self.original_name is None)
        return self._focus_field

    def place_focus_after_load(self) -> None:
        """For editors that fill in after opening: place the cursor again, unless the
        user has already moved it (their Tab or click wins over the loaded values)."""
        if self.focusWidget() in (None, self._focus_field):
            self.place_focus()

    def refresh_tab_order(self) -> None:
        """Re-thread Tab after widgets were added (Qt appends them to the chain's end)."""
        apply_reading_order(self)

    def collect(self) -> dict[str, object] | None:
        values: dict[str, object] = {}
        first_invalid: Form | None = None
        for form in self.forms:
            parsed = form.values()
            if parsed is None:
                first_invalid = first_invalid or form
            else:
                values.update(parsed)
        if first_invalid is not None:
            # Bring the first tab that needs attention forward.
            self.tabs.setCurrentWidget(first_invalid)
            return None
        return values

    async def save(self, values: dict[str, object]) -> None:
        raise NotImplementedError

    async def reload(self) -> None:
        """Reload the row after a concurrent edit (subclasses that support it override)."""

    def submit(self) -> None:
        if self._saving:
            return
        values = self.collect()
        if values is None:
            self.show_error("Some fields need attention; see the messages under them.")
            return
        self.context.spawn(self._save(values), on_error=self.show_error)

    async def _save(self, values: dict[str, object]) -> None:
        self._saving = True
        self.buttons.setEnabled(False)
        self.show_error(None)
        try:
            await self.save(values)
        except ConcurrentEditError as exc:
            self._offer_reload(str(exc))
            return
        except ValidationError as exc:
            if not any(form.show_service_error(exc) for form in self.forms):
                self.show_error(str(exc))
            return
        except PostroomError as exc:
            self.show_error(str(exc))
            return
        finally:
            self._saving = False
            self.buttons.setEnabled(True)
        for form in self.forms:
            form.mark_clean()
        self.saved.emit()
        self.accept()

    def _offer_reload(self, message: str) -> None:
        self.show_error(message)
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Changed by someone else")
        box.setText(message)
        reload_button = box.addButton("Reload", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setObjectName("concurrentEditBox")

        def finished() -> None:
            if box.clickedButton() is reload_button:
                self.context.spawn(self.reload(), on_error=self.show_error)

        box.finished.connect(finished)
        box.open()

    def show_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setVisible(bool(message))

    def _ask_discard(self) -> bool:
        return ask_discard(self, "You have unsaved changes.")

    def reject(self) -> None:
        if self.is_dirty() and not self.confirm_discard():
            return
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.is_dirty() and not self.confirm_discard():
            event.ignore()
            return
        for form in self.forms:
            form.mark_clean()  # reject() after this must not ask again
        super().closeEvent(event)


def result_values(values: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: values[key] for key in keys if key in values}
