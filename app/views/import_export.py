"""File > Import / Export Configuration: the foundation's YAML, with the diff before applying.

Export writes ``config_io.export_yaml`` (never a secret) to a file the user picks. Import
reads and checks the file, computes the plan (``plan_import`` does the changes and rolls
them back, so the diff is exactly what applying will do) and shows it; Apply then runs
``apply_import`` in one transaction, so a refusal anywhere changes nothing. All of the
file and database work runs in the executor.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QFont, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.services import config_io
from app.services.errors import PostroomError
from app.views import theme
from app.views.context import AppContext

YAML_FILTER = "Postroom configuration (*.yaml *.yml);;All files (*)"
DEFAULT_EXPORT_NAME = "postroom-config.yaml"

SECTION_LABELS = {
    "dns_settings": "DNS settings",
    "dns_templates": "DNS template",
    "delivery_servers": "delivery server",
    "user_groups": "user group",
    "users": "user",
    "sender_domains": "sender domain",
}
# Every page's change name: an import can touch any of them, and it writes an audit entry.
CHANGED_ENTITIES = (
    "dns_settings",
    "dns_template",
    "delivery_server",
    "user_group",
    "user",
    "sender_domain",
    "audit",
)
_HIDDEN = "••••••"

# (save?, suggested path) -> the chosen path, or None when the user cancelled.
PathChooser = Callable[[bool, str], Awaitable[str | None]]
# How long the status bar keeps a finished transfer's sentence (milliseconds).
DONE_MESSAGE_MS = 30_000


def open_in_file_manager(folder: Path) -> None:
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class TransferFailed(PostroomError):
    """A configuration file could not be read or written."""


async def choose_file(
    parent: QWidget,
    *,
    title: str,
    suggested: str,
    filters: str,
    save: bool,
    confirm_overwrite: bool = True,
) -> str | None:
    """Ask for a file with a window-modal dialog that never starts a nested event loop."""
    dialog = QFileDialog(parent, title, suggested, filters)
    dialog.setAcceptMode(
        QFileDialog.AcceptMode.AcceptSave if save else QFileDialog.AcceptMode.AcceptOpen
    )
    dialog.setFileMode(QFileDialog.FileMode.AnyFile if save else QFileDialog.FileMode.ExistingFile)
    if not confirm_overwrite:
        dialog.setOption(QFileDialog.Option.DontConfirmOverwrite)
    future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def finished(result: int) -> None:
        files = dialog.selectedFiles()
        accepted = result == QDialog.DialogCode.Accepted.value and bool(files)
        if not future.done():
            future.set_result(files[0] if accepted else None)
        dialog.deleteLater()

    dialog.finished.connect(finished)
    dialog.open()
    return await future


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise TransferFailed(
            f"The configuration could not be written to {path} ({_reason(error)}); "
            "choose another folder."
        ) from None


def _is_records(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, list | tuple) for v in value)
    )


def _shown(field: str, value: Any) -> str:
    if "password" in field.lower() or "secret" in field.lower():
        return _HIDDEN if value not in (None, "") else ""
    if value is None:
        return "—"
    if _is_records(value):
        return f"{len(value)} record{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return str(value)


def _full(field: str, value: Any) -> str:
    """The tooltip: records one per line, so a changed record can be spotted."""
    if "password" in field.lower() or "secret" in field.lower():
        return _shown(field, value)
    if _is_records(value):
        return "\n".join("  ".join(str(part) for part in record) for record in value) or "—"
    return _shown(field, value)


class ImportDiffDialog(QDialog):
    """What the import would change; Apply runs it in one transaction."""

    applied = Signal(object)  # the ImportResult of the applied import

    def __init__(
        self,
        context: AppContext,
        source: str,
        document: Mapping[str, Any],
        plan: config_io.ImportResult,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.document = document
        self.plan = plan
        self.setWindowTitle("Import Configuration")
        self.setModal(True)
        self.resize(760, 520)

        count = len(plan.changes)
        name = Path(source).name
        self.summary = QLabel(
            f"Importing {name} makes {count} change{'s' if count != 1 else ''}. "
            "Nothing is deleted: entries missing from the file stay as they are."
            if count
            else f"No changes: the database already matches {name}."
        )
        self.summary.setObjectName("importSummary")
        self.summary.setWordWrap(True)

        self.changes = QTreeWidget()
        self.changes.setObjectName("importChanges")
        self.changes.setAccessibleName("Changes the import makes")
        self.changes.setHeaderLabels(["Change", "Now", "After import"])
        self.changes.setAlternatingRowColors(True)
        self.changes.setUniformRowHeights(True)
        header = self.changes.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self._fill(plan)
        self.changes.setVisible(bool(count))

        self.note = QLabel(
            "Apply makes every change in one transaction: if any of them is refused, "
            "nothing is changed."
        )
        self.note.setWordWrap(True)
        self.note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.error = QLabel()
        self.error.setObjectName("importError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setVisible(False)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.apply_button = QPushButton("&Apply")
        self.apply_button.setObjectName("applyButton")
        self.apply_button.setEnabled(bool(count))
        self.apply_button.setDefault(bool(count))
        self.buttons.addButton(self.apply_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.copy_button = QPushButton("&Copy as Text")
        self.copy_button.setObjectName("copyDiffButton")
        self.copy_button.setToolTip("Copy the list of changes to the clipboard")
        self.buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.rejected.connect(self.reject)
        self.apply_button.clicked.connect(self.apply)
        self.copy_button.clicked.connect(self.copy_text)

        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.changes, 1)
        if not count:
            layout.addStretch(1)
        layout.addWidget(self.note)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self._applying = False

    def _fill(self, plan: config_io.ImportResult) -> None:
        bold = QFont(self.font())
        bold.setBold(True)
        created = QBrush(QColor(theme.success_colour(self.palette())))
        field_names: list[str] = []
        for change in plan.changes:
            label = SECTION_LABELS.get(change.section, change.section)
            creating = change.action == "create"
            if change.section == "dns_settings":
                title = "Update the DNS settings"
            else:
                verb = "Create" if creating else "Update"
                title = f"{verb} {label} {change.key}"
            top = QTreeWidgetItem([title, "", ""])
            top.setFont(0, bold)
            top.setToolTip(0, title)
            if creating:
                top.setForeground(0, created)
            for field, pair in change.fields.items():
                field_names.append(field)
                paired = isinstance(pair, list | tuple) and len(pair) == 2
                old, new = pair if paired else (None, pair)
                child = QTreeWidgetItem([field, "" if creating else _shown(field, old), ""])
                child.setText(2, _shown(field, new))
                child.setToolTip(1, _full(field, old))
                child.setToolTip(2, _full(field, new))
                top.addChild(child)
            self.changes.addTopLevelItem(top)
            top.setFirstColumnSpanned(True)  # the title reads across; fields go below it
        self.changes.expandAll()
        metrics = self.changes.fontMetrics()
        widest = max((metrics.horizontalAdvance(name) for name in field_names), default=120)
        self.changes.setColumnWidth(0, widest + 2 * self.changes.indentation() + 24)

    def describe(self) -> str:
        return self.plan.describe()

    def copy_text(self) -> None:
        QApplication.clipboard().setText(self.describe())

    def apply(self) -> None:
        if self._applying or not self.plan.changes:
            return
        self.context.spawn(self._apply(), on_error=self.show_error)

    async def _apply(self) -> None:
        self._applying = True
        self.apply_button.setEnabled(False)
        self.show_error(None)
        try:
            result = await self.context.write(config_io.apply_import, self.document)
        except PostroomError:
            self.apply_button.setEnabled(True)
            raise
        finally:
            self._applying = False
        for entity in CHANGED_ENTITIES:
            self.context.changed.emit(entity)
        self.applied.emit(result)
        self.accept()

    def show_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setStyleSheet(f"color: {theme.error_colour(self.palette())};")
        self.error.setVisible(bool(message))


class ConfigTransfer(QObject):
    """The File menu's import and export, driven by the main window."""

    message = Signal(str)  # one sentence for the status bar
    done = Signal(str)  # a finished transfer's sentence, to stay in the status bar a while

    def __init__(self, context: AppContext, parent: QWidget) -> None:
        super().__init__(parent)
        self.context = context
        self._window = parent
        # Tests (and scripts) answer the file question without a dialog.
        self.choose_path: PathChooser = self._ask_path
        self.diff_dialog: ImportDiffDialog | None = None
        self.error_box: QMessageBox | None = None
        self.export_box: QMessageBox | None = None
        # Tests replace it instead of starting the desktop's file manager.
        self.open_folder: Callable[[Path], None] = open_in_file_manager

    async def _ask_path(self, save: bool, suggested: str) -> str | None:
        return await choose_file(
            self._window,
            title="Export Configuration" if save else "Import Configuration",
            suggested=suggested,
            filters=YAML_FILTER,
            save=save,
        )

    # ------------------------------------------------------------------ export

    def export_configuration(self) -> None:
        self.context.spawn(self.export_interactively(), on_error=self.show_error)

    async def export_interactively(self) -> None:
        path = await self.choose_path(True, str(Path.home() / DEFAULT_EXPORT_NAME))
        if path:
            await self.export_to(path)

    async def export_to(self, path: str) -> None:
        text = await self.context.read(config_io.export_yaml)
        await self.context.in_executor(write_text, Path(path), text)
        self.done.emit(f"Exported the configuration to {path} (no passwords or keys).")
        self._confirm_export(Path(path))

    def _confirm_export(self, path: Path) -> None:
        """A box that stays until dismissed, with the path and a way to the file."""
        if self.export_box is not None:
            self.export_box.close()
        box = QMessageBox(self._window)
        box.setObjectName("exportDoneBox")
        box.setIcon(QMessageBox.Icon.Information)
        box.setWindowTitle("Configuration exported")
        box.setText(f"The configuration was exported to:\n{path}")
        box.setInformativeText("The file holds no passwords or keys.")
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Wide enough that a usual path reads on one line instead of breaking at slashes.
        box.setStyleSheet("QLabel#qt_msgbox_label { min-width: 460px; }")
        box.setWindowModality(Qt.WindowModality.NonModal)  # nothing waits on it
        open_button = box.addButton("&Open Folder", QMessageBox.ButtonRole.ActionRole)
        open_button.setObjectName("openFolderButton")
        box.addButton(QMessageBox.StandardButton.Close)
        box.setDefaultButton(QMessageBox.StandardButton.Close)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def finished() -> None:
            if box.clickedButton() is open_button:
                self.open_folder(path.parent)
            if self.export_box is box:
                self.export_box = None

        box.finished.connect(finished)
        self.export_box = box
        box.show()

    # ------------------------------------------------------------------ import

    def import_configuration(self) -> None:
        self.context.spawn(self.import_interactively(), on_error=self.show_error)

    async def import_interactively(self) -> None:
        path = await self.choose_path(False, str(Path.home()))
        if path:
            await self.import_from(path)

    async def import_from(self, path: str) -> ImportDiffDialog:
        """Read, check and plan ``path``, then show the diff (raises what the user must fix)."""
        self.message.emit(f"Reading {path}…")
        # The service refuses an oversized file before reading it, and names bad UTF-8.
        document = await self.context.in_executor(config_io.read_config, Path(path))
        plan = await self.context.read(config_io.plan_import, document)
        dialog = ImportDiffDialog(self.context, path, document, plan, self._window)
        dialog.setObjectName("importDiffDialog")
        dialog.applied.connect(self._applied)
        dialog.finished.connect(self._diff_closed)
        self.diff_dialog = dialog
        self.message.emit("")  # the diff dialog takes over from "Reading…"
        dialog.open()
        return dialog

    def _applied(self, result: config_io.ImportResult) -> None:
        count = len(result.changes)
        self.done.emit(
            f"Imported the configuration: {count} change{'s' if count != 1 else ''} applied."
        )

    def _diff_closed(self) -> None:
        if self.diff_dialog is not None:
            self.diff_dialog.deleteLater()
        self.diff_dialog = None

    def show_error(self, message: str) -> None:
        """A refused import or export: the reason, and that nothing was changed."""
        if self.error_box is not None:
            self.error_box.close()
        box = QMessageBox(self._window)
        box.setObjectName("transferErrorBox")
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Configuration not transferred")
        box.setText(message)
        box.setInformativeText("Nothing was changed.")
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._error_closed)
        self.error_box = box
        self.message.emit(message)
        box.open()

    def _error_closed(self) -> None:
        self.error_box = None
