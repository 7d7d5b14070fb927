"""The DNS template editor: name, kind, description, a records editor and a live preview.

Every edit is checked at once with the services' own rules (``validation.template_text``
and ``record_type`` per field, ``dns_templates.normalize_records`` across records) and
rendered with ``dns_templates.render_records`` for a sample domain, using the DNS settings
and hash secret read once when the dialog opens. Rendering is pure string work on at most
50 records, so it runs on the GUI thread on each keystroke; nothing touches the database
until Save.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.models import TemplateKind
from app.services import validation
from app.services.dns_settings import EffectiveDnsSettings, get_settings
from app.services.dns_templates import (
    MAX_RECORDS,
    PREVIEW_DOMAIN,
    create_template,
    installation_hash_secret,
    normalize_records,
    random_label,
    render_records,
    template_as_dict,
    template_detail,
    update_template,
)
from app.services.errors import ValidationError
from app.views import theme
from app.views.context import AppContext
from app.views.forms import EditorDialog, Form, error_label

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Triple = tuple[str, str, str]
KIND_CHOICES = [
    ("Email campaign", TemplateKind.CAMPAIGN.value),
    ("Email gateway", TemplateKind.GATEWAY.value),
]
EDITS_NOTE = (
    "Edits apply only to sender domains created after you save. Existing domains keep the "
    "records they were given when they were created."
)


# ---------------------------------------------------------------- reads and writes


def preview_inputs(session: Session) -> tuple[EffectiveDnsSettings, str]:
    """What rendering needs besides the records: the settings and the hash secret."""
    return get_settings(session), installation_hash_secret(session)


def save_new(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    return template_as_dict(
        create_template(
            session,
            name=values["name"],
            kind=values["kind"],
            records=values["records"],
            description=values["description"],
        )
    )


def save_changes(
    session: Session, kind: str, name: str, values: dict[str, Any], version: int
) -> dict[str, Any]:
    return template_as_dict(
        update_template(
            session,
            kind,
            name,
            new_name=values["name"],
            records=values["records"],
            description=values["description"] or "",  # "" clears, None would keep
            expected_version=version,
        )
    )


def record_number(field: str) -> int | None:
    """1 for "Record 1 host", "Record 1" and the like; None for other fields."""
    parts = field.split()
    if len(parts) >= 2 and parts[0] == "Record" and parts[1].isdigit():
        return int(parts[1])
    return None


# ---------------------------------------------------------------- records editor


class RecordRow(QWidget):
    """Host, type and value of one record, its move/remove buttons and its error line."""

    edited = Signal()
    remove_requested = Signal(object)
    move_requested = Signal(object, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.touched = False
        self.number = QLabel()
        self.number.setMinimumWidth(self.fontMetrics().horizontalAdvance("50.") + 4)
        self.host = QLineEdit()
        self.host.setPlaceholderText("_Subdomain_._SenderDomain_")
        self.type = QComboBox()
        self.type.addItems(list(validation.RECORD_TYPES))
        self.value = QLineEdit()
        self.value.setPlaceholderText("_SenderTarget_")
        self.up = self._tool("↑", "Move up")
        self.down = self._tool("↓", "Move down")
        self.remove = self._tool("✕", "Remove")
        self.error = error_label()
        grid = QHBoxLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        grid.addWidget(self.number)
        grid.addWidget(self.host, 5)
        grid.addWidget(self.type)
        grid.addWidget(self.value, 6)
        for button in (self.up, self.down, self.remove):
            grid.addWidget(button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 2, 0, 2)
        column.setSpacing(2)
        column.addLayout(grid)
        column.addWidget(self.error)
        self.host.textEdited.connect(self._edited)
        self.value.textEdited.connect(self._edited)
        self.type.currentIndexChanged.connect(lambda _i: self._edited())
        self.up.clicked.connect(lambda: self.move_requested.emit(self, -1))
        self.down.clicked.connect(lambda: self.move_requested.emit(self, 1))
        self.remove.clicked.connect(lambda: self.remove_requested.emit(self))

    def _tool(self, text: str, action: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setAutoRaise(True)
        button.setProperty("action", action)
        button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        return button

    def _edited(self, *_args: object) -> None:
        self.touched = True
        self.edited.emit()

    def set_number(self, number: int, count: int) -> None:
        self.number.setText(f"{number}.")
        for widget, name in ((self.host, "host"), (self.type, "type"), (self.value, "value")):
            widget.setAccessibleName(f"Record {number} {name}")
            widget.setObjectName(f"record{number}_{name}")
        for button in (self.up, self.down, self.remove):
            text = f"{button.property('action')} record {number}"
            button.setToolTip(text)
            button.setAccessibleName(text)
        self.up.setEnabled(number > 1)
        self.down.setEnabled(number < count)

    def triple(self) -> Triple:
        return self.host.text(), self.type.currentText(), self.value.text()

    def set_triple(self, triple: Triple) -> None:
        host, rtype, value = triple
        for widget in (self.host, self.type, self.value):
            widget.blockSignals(True)
        self.host.setText(host)
        index = self.type.findText(rtype.upper())
        self.type.setCurrentIndex(max(index, 0))
        self.value.setText(value)
        # Long hosts are read from the start: that's where they differ.
        self.host.setCursorPosition(0)
        self.value.setCursorPosition(0)
        for widget in (self.host, self.type, self.value):
            widget.blockSignals(False)

    def show_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setVisible(bool(message))


class RecordsEditor(QWidget):
    """An ordered list of RecordRows with Add, and the last focused field for inserting."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[RecordRow] = []
        self.last_field: QLineEdit | None = None
        self._snapshot: list[Triple] = []
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        spacer = QLabel()
        spacer.setMinimumWidth(self.fontMetrics().horizontalAdvance("50.") + 4)
        header.addWidget(spacer)
        for text, stretch in (("Host", 5), ("Type", 0), ("Value", 6)):
            label = QLabel(text)
            font = label.font()
            font.setBold(True)
            label.setFont(font)
            if text == "Type":
                label.setMinimumWidth(QComboBox().sizeHint().width())
            header.addWidget(label, stretch)
        header.addSpacing(3 * (QToolButton().sizeHint().width() + 6))
        self.container = QWidget()
        self.list_layout = QVBoxLayout(self.container)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(0)
        self.list_layout.addStretch(1)
        self.empty_note = QLabel(
            "No records. New sender domains with this template are Enabled at once, without "
            "DNS verification, as in the reference."
        )
        self.empty_note.setObjectName("emptyTemplateNote")
        self.empty_note.setWordWrap(True)
        self.list_layout.insertWidget(0, self.empty_note)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.container)
        self.add_button = QPushButton("&Add Record")
        self.add_button.setObjectName("addRecordButton")
        self.add_button.clicked.connect(lambda: self.add_record(focus=True))
        self.problem = error_label()  # refusals about the list as a whole
        self.problem.setObjectName("recordsError")
        footer = QHBoxLayout()
        footer.addWidget(self.add_button)
        footer.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.problem)
        layout.addLayout(footer)

    # -------------------------------------------------------------- rows

    def add_record(self, triple: Triple = ("", "CNAME", ""), *, focus: bool = False) -> RecordRow:
        row = RecordRow()
        row.set_triple(triple)
        row.edited.connect(self.changed.emit)
        row.remove_requested.connect(self.remove_record)
        row.move_requested.connect(self.move_record)
        for field in (row.host, row.value):
            field.installEventFilter(self)
        self.rows.append(row)
        self.list_layout.insertWidget(len(self.rows), row)  # after the note, before the stretch
        row.show()  # a layout would only show it on the next event loop pass
        self._renumber()
        if focus:
            row.host.setFocus()
            self.changed.emit()
        return row

    def remove_record(self, row: RecordRow) -> None:
        index = self.rows.index(row)
        self.rows.remove(row)
        if self.last_field in (row.host, row.value):
            self.last_field = None
        row.deleteLater()
        self._renumber()
        if self.rows:
            self.rows[min(index, len(self.rows) - 1)].host.setFocus()
        else:
            self.add_button.setFocus()
        self.changed.emit()

    def move_record(self, row: RecordRow, delta: int) -> None:
        index = self.rows.index(row)
        target = index + delta
        if not 0 <= target < len(self.rows):
            return
        # Swap the contents, not the widgets: the tab order stays top to bottom.
        other = self.rows[target]
        mine, theirs = row.triple(), other.triple()
        row.set_triple(theirs)
        other.set_triple(mine)
        row.touched = other.touched = row.touched or other.touched
        button = other.up if delta < 0 else other.down
        (button if button.isEnabled() else other.host).setFocus()
        self.changed.emit()

    def _renumber(self) -> None:
        for number, row in enumerate(self.rows, start=1):
            row.set_number(number, len(self.rows))
        self.empty_note.setVisible(not self.rows)
        self.add_button.setEnabled(len(self.rows) < MAX_RECORDS)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusIn and isinstance(watched, QLineEdit):
            self.last_field = watched
        return False

    # -------------------------------------------------------------- state

    def triples(self) -> list[Triple]:
        return [row.triple() for row in self.rows]

    def set_triples(self, triples: list[Triple]) -> None:
        for row in list(self.rows):
            self.rows.remove(row)
            row.deleteLater()
        for triple in triples:
            self.add_record(triple).touched = True
        self._renumber()
        self.mark_clean()

    def is_dirty(self) -> bool:
        return self.triples() != self._snapshot

    def mark_clean(self) -> None:
        self._snapshot = self.triples()

    def insert_placeholder(self, token: str) -> bool:
        field = self.last_field
        if field is None and self.rows:
            field = self.rows[-1].value
        if field is None:
            return False
        field.insert(token)
        field.setFocus()
        # insert() is no user edit, so the row hears of it here.
        for row in self.rows:
            if field in (row.host, row.value):
                row.touched = True
        self.changed.emit()
        return True


# ---------------------------------------------------------------- dialog


class TemplateDialog(EditorDialog):
    """Create (``name=None``) or edit one DNS template."""

    def __init__(
        self,
        context: AppContext,
        kind: str = TemplateKind.CAMPAIGN.value,
        name: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(context, f"DNS Template {name}" if name else "New DNS Template", parent)
        self.setObjectName("templateDialog")
        self.resize(1120, 820)
        self.original_kind = kind
        self.original_name = name
        self.version: int | None = None
        self.settings: EffectiveDnsSettings | None = None
        self.hash_secret = ""
        # One random label for the whole session, so the preview doesn't jump as you type.
        self.sample_token = random_label()
        self.saved_template: dict[str, Any] | None = None

        self.tabs.tabBar().setVisible(False)
        self.tabs.setDocumentMode(True)
        page = QWidget()
        self.tabs.addTab(page, "Template")

        form = Form()
        self.form = form
        self.forms.append(form)
        self.name_edit = form.add_line("name", "Template name", validation.name)
        self.kind_combo = form.add_combo("kind", "Kind", KIND_CHOICES)
        self.kind_combo.setCurrentIndex(max(self.kind_combo.findData(kind), 0))
        self.kind_combo.setEnabled(name is None)  # a template's kind is fixed once created
        self.description_edit = form.add_text("description", "Description", _description)
        self.description_edit.setFixedHeight(self.fontMetrics().lineSpacing() * 2 + 14)
        form.mark_clean()

        note = QLabel(EDITS_NOTE)
        note.setObjectName("editsNote")
        note.setWordWrap(True)
        note.setStyleSheet(theme.banner_style("warning"))
        self.used_by = QLabel()
        self.used_by.setObjectName("usedByLabel")
        self.used_by.setWordWrap(True)

        self.records = RecordsEditor()
        records_box = QGroupBox("Records")
        QVBoxLayout(records_box).addWidget(self.records)

        self.cheat_sheet = QListWidget()
        self.cheat_sheet.setObjectName("placeholderList")
        self.cheat_sheet.setAccessibleName("Placeholders")
        self.cheat_sheet.setWordWrap(True)
        self.cheat_sheet.setUniformItemSizes(False)
        self.cheat_sheet.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.cheat_sheet.setSpacing(2)
        for token, meaning in validation.PLACEHOLDERS.items():
            item = QListWidgetItem(f"{token}\n{meaning}")
            item.setData(Qt.ItemDataRole.UserRole, token)
            self.cheat_sheet.addItem(item)
        self.cheat_sheet.itemActivated.connect(self._insert)
        self.insert_button = QPushButton("&Insert into Field")
        self.insert_button.setObjectName("insertPlaceholderButton")
        self.insert_button.setToolTip(
            "Insert the selected placeholder into the host or value field you were last in "
            "(or double-click it)."
        )
        self.insert_button.clicked.connect(self._insert_selected)
        sheet_box = QGroupBox("Placeholders")
        sheet_layout = QVBoxLayout(sheet_box)
        sheet_layout.addWidget(self.cheat_sheet, 1)
        sheet_layout.addWidget(self.insert_button, 0, Qt.AlignmentFlag.AlignRight)

        self.sample_edit = QLineEdit(PREVIEW_DOMAIN)
        self.sample_edit.setObjectName("sampleDomainEdit")
        self.sample_edit.setAccessibleName("Sample domain")
        self.sample_edit.setMaximumWidth(320)
        sample_label = QLabel("&Sample domain:")
        sample_label.setBuddy(self.sample_edit)
        self.preview_error = error_label()
        self.preview_error.setObjectName("previewError")
        self.preview_note = QLabel()
        self.preview_note.setObjectName("previewNote")
        self.preview_note.setWordWrap(True)
        self.preview_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.preview = QTableWidget(0, 3)
        self.preview.setObjectName("previewTable")
        self.preview.setAccessibleName("Preview of the rendered records")
        self.preview.setHorizontalHeaderLabels(["Host", "Type", "Value"])
        self.preview.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.preview.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.preview.verticalHeader().setVisible(False)
        self.preview.setWordWrap(False)
        self.preview.setAlternatingRowColors(True)
        self.preview.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        preview_header = self.preview.horizontalHeader()
        preview_header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        preview_header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        preview_header.setStretchLastSection(True)
        preview_header.resizeSection(0, 360)
        sample_row = QHBoxLayout()
        sample_row.addWidget(sample_label)
        sample_row.addWidget(self.sample_edit)
        sample_row.addWidget(self.preview_note, 1)
        preview_box = QGroupBox("Live preview: the records a new sender domain would get")
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.addLayout(sample_row)
        preview_layout.addWidget(self.preview_error)
        preview_layout.addWidget(self.preview, 1)

        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(preview_box)
        bottom.addWidget(sheet_box)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 1)
        bottom.setSizes([780, 300])
        bottom.setChildrenCollapsible(False)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(records_box)
        split.addWidget(bottom)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([380, 300])
        split.setChildrenCollapsible(False)

        layout = QVBoxLayout(page)
        layout.addWidget(form)
        layout.addWidget(note)
        layout.addWidget(self.used_by)
        layout.addWidget(split, 1)
        self.used_by.setVisible(False)

        self.records.changed.connect(self.check)
        self.records.changed.connect(self._follow_rows)
        self._ordered_rows = 0  # how many record rows the Tab order has threaded through
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._kind_changed())
        self.sample_edit.textEdited.connect(lambda _text: self.update_preview())
        save = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        save.setShortcut(QKeySequence.StandardKey.Save)
        self._kind_changed()
        self.preview_note.setText("Loading DNS settings…")
        context.spawn(self._load(), on_error=self.show_error)

    # -------------------------------------------------------------- loading

    async def _load(self) -> None:
        self.settings, self.hash_secret = await self.context.read(preview_inputs)
        if self.original_name is not None:
            data = await self.context.read(template_detail, self.original_kind, self.original_name)
            self.show_template(data)
        self.place_focus_after_load()
        self.check()

    def show_template(self, data: dict[str, Any]) -> None:
        self.version = data["version"]
        self.form.load(
            {"name": data["name"], "kind": data["kind"], "description": data["description"]}
        )
        self.records.set_triples([(r["host"], r["type"], r["value"]) for r in data["records"]])
        self._follow_rows()
        used = data.get("used_by") or []
        self.used_by.setVisible(bool(used))
        self.used_by.setText(
            f"Selected by user group(s) {', '.join(used)}: their new sender domains get these "
            "records."
        )

    def _follow_rows(self) -> None:
        # A row added after the dialog opened would otherwise be reached by Tab last.
        if len(self.records.rows) != self._ordered_rows:
            self._ordered_rows = len(self.records.rows)
            self.refresh_tab_order()

    async def reload(self) -> None:
        if self.original_name is None:
            return
        data = await self.context.read(template_detail, self.original_kind, self.original_name)
        self.show_template(data)
        self.show_error(None)
        self.check()

    # -------------------------------------------------------------- checking

    @property
    def kind(self) -> str:
        return str(self.kind_combo.currentData())

    def _kind_changed(self) -> None:
        gateway = self.kind == TemplateKind.GATEWAY.value
        for index in range(self.cheat_sheet.count()):
            item = self.cheat_sheet.item(index)
            token = str(item.data(Qt.ItemDataRole.UserRole))
            forbidden = gateway and token in validation.GATEWAY_FORBIDDEN_PLACEHOLDERS
            meaning = validation.PLACEHOLDERS[token]
            if forbidden:
                meaning = "not in gateway templates (they have no tracking)"
            item.setText(f"{token}\n{meaning}")
            flags = item.flags()
            item.setFlags(
                flags & ~Qt.ItemFlag.ItemIsEnabled
                if forbidden
                else flags | Qt.ItemFlag.ItemIsEnabled
            )
        self.check()

    def check(self, *, force: bool = False) -> list[Triple] | None:
        """Validate every record inline; the normalised triples, or None if any is refused."""
        gateway = self.kind == TemplateKind.GATEWAY.value
        triples: list[Triple] = []
        ok = True
        for number, row in enumerate(self.records.rows, start=1):
            host, rtype, value = row.triple()
            problems: list[str] = []
            parsed = (
                _checked(
                    problems, validation.template_text, host, f"Record {number} host", gateway
                ),
                _checked(problems, validation.record_type, rtype, f"Record {number} type"),
                _checked(
                    problems, validation.template_text, value, f"Record {number} value", gateway
                ),
            )
            if problems:
                ok = False
            else:
                triples.append((str(parsed[0]), str(parsed[1]), str(parsed[2])))
            row.show_error("\n".join(problems) if problems and (row.touched or force) else None)
        self.records.problem.setVisible(False)
        if ok:
            try:
                triples = normalize_records(triples, kind=self.kind)
            except ValidationError as exc:
                self._place(exc)
                ok = False
        self._render_preview(triples if ok else None)
        return triples if ok else None

    def _place(self, exc: ValidationError) -> None:
        """Show a refusal under the record it names, else under the records list."""
        number = record_number(exc.field)
        if number is not None and 0 < number <= len(self.records.rows):
            self.records.rows[number - 1].show_error(str(exc))
        else:
            self.records.problem.setText(str(exc))
            self.records.problem.setVisible(True)

    def update_preview(self) -> None:
        """Re-check the records and render them again (e.g. for another sample domain)."""
        self.check()

    def _render_preview(self, triples: list[Triple] | None) -> None:
        self.preview.setRowCount(0)
        if self.settings is None:
            return
        try:
            sample = validation.domain(self.sample_edit.text(), "Sample domain")
        except ValidationError as exc:
            self._preview_problem(str(exc))
            return
        if triples is None:
            self._preview_problem("Fix the records marked above to see the preview.")
            return
        if not triples:
            self.preview_error.setVisible(False)
            self.preview_note.setText(
                "No records: a new domain is Enabled at once, without DNS verification."
            )
            return
        try:
            rendered = render_records(
                triples,
                domain=sample,
                kind=self.kind,
                settings=self.settings,
                hash_secret=self.hash_secret,
                random_token=self.sample_token,
            )
        except ValidationError as exc:
            self._place(exc)
            self._preview_problem(str(exc))
            return
        self.preview_error.setVisible(False)
        self.preview_note.setText(
            f"With the current DNS settings; _SenderDomainRandom_ shown as {self.sample_token} "
            "(each domain gets its own)."
        )
        self.preview.setRowCount(len(rendered))
        for number, record in enumerate(rendered):
            for column, text in enumerate((record.host, record.type, record.value)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.preview.setItem(number, column, item)

    def _preview_problem(self, message: str) -> None:
        self.preview_error.setText(message)
        self.preview_error.setVisible(True)
        self.preview_note.setText("")

    # -------------------------------------------------------------- placeholders

    def _insert_selected(self) -> None:
        item = self.cheat_sheet.currentItem()
        if item is not None:
            self._insert(item)

    def _insert(self, item: QListWidgetItem) -> None:
        if not item.flags() & Qt.ItemFlag.ItemIsEnabled:
            return
        self.records.insert_placeholder(str(item.data(Qt.ItemDataRole.UserRole)))

    # -------------------------------------------------------------- saving

    def is_dirty(self) -> bool:
        return super().is_dirty() or self.records.is_dirty()

    def collect(self) -> dict[str, object] | None:
        values = super().collect()
        for row in self.records.rows:
            row.touched = True
        triples = self.check(force=True)
        if values is None or triples is None:
            return None
        values["records"] = triples
        return values

    async def save(self, values: dict[str, object]) -> None:
        try:
            if self.original_name is None:
                saved = await self.context.write(save_new, dict(values))
            else:
                assert self.version is not None, "the template has not loaded yet"
                saved = await self.context.write(
                    save_changes, self.original_kind, self.original_name, dict(values), self.version
                )
        except ValidationError as exc:
            self._place(exc)  # under its record too, besides the dialog's message line
            raise
        self.saved_template = saved
        self.records.mark_clean()
        self.context.changed.emit("dns_template")

    def closeEvent(self, event: QCloseEvent) -> None:
        # The base class guards its forms; the records editor needs the same, and marking
        # it clean here keeps QDialog's own reject() from asking a second time.
        if self.is_dirty() and not self.confirm_discard():
            event.ignore()
            return
        self.records.mark_clean()
        for form in self.forms:
            form.mark_clean()
        QDialog.closeEvent(self, event)


def _checked(problems: list[str], parse: Any, raw: str, field: str, *gateway: bool) -> str | None:
    """``parse(raw, field)``; a refusal is added to ``problems`` and gives None."""
    try:
        if gateway:
            return str(parse(raw, field, gateway=gateway[0]))
        return str(parse(raw, field))
    except ValidationError as exc:
        problems.append(str(exc))
        return None


def _description(value: object, field: str) -> str | None:
    if value is None:
        return None
    text = validation.multiline_text(value, field, max_length=2000).strip()
    return text or None
