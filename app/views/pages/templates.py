"""The DNS Templates page: campaign and gateway record templates, and which groups use them."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import QApplication, QComboBox, QLabel, QWidget

from app.models import TemplateKind
from app.services.dns_templates import DEFAULT_TEMPLATE_NAME, delete_template, template_rows
from app.views import theme
from app.views.context import AppContext
from app.views.pages.base import ListPage
from app.views.table_model import Column, Row
from app.views.template_dialog import EDITS_NOTE, TemplateDialog

KIND_TITLES = {TemplateKind.CAMPAIGN.value: "Campaign", TemplateKind.GATEWAY.value: "Gateway"}


def by_kind_and_name(row: Row) -> Hashable:
    return (row.get("kind"), row.get("name"))


def _muted() -> str:
    return QApplication.palette().color(QPalette.ColorRole.PlaceholderText).name()


def _used_by_text(row: Row) -> str:
    names: list[str] = row["used_by"]
    if names:
        return ", ".join(names)
    if row["name"].casefold() == DEFAULT_TEMPLATE_NAME.casefold():
        return "groups that choose no template"
    return "no group"


class TemplatesPage(ListPage):
    title = "DNS Templates"
    summary = (
        "The DNS records a new sender domain must publish, per template. Each user group "
        "selects a campaign and a gateway template in its Email Delivery settings."
    )
    entities = ("dns_template", "user_group", "dns_settings")
    row_key = staticmethod(by_kind_and_name)
    new_label = "&New Template…"
    columns = (
        Column("name", "Name"),
        Column("kind", "Kind", text=lambda row: str(KIND_TITLES.get(row["kind"], row["kind"]))),
        Column(
            "record_count",
            "Records",
            text=lambda row: (
                f"{row['record_count']} ({', '.join(row['record_types'])})"
                if row["record_count"]
                else "none: no DNS check"
            ),
            sort_value=lambda row: row["record_count"],
        ),
        Column(
            "used_by",
            "Used By",
            text=_used_by_text,
            colour=lambda row: None if row["used_by"] else _muted(),
            sort_value=lambda row: len(row["used_by"]),
        ),
        Column(
            "description",
            "Description",
            text=lambda row: row["description"].splitlines()[0] if row["description"] else "",
            tooltip=lambda row: row["description"] or None,
        ),
    )

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.table.setObjectName("templatesTable")
        self.table.setAccessibleName("DNS templates")
        self.new_button.setObjectName("newTemplateButton")
        self.edit_button.setObjectName("editTemplateButton")
        self.delete_button.setObjectName("deleteTemplateButton")
        self.new_kind = QComboBox()
        self.new_kind.setObjectName("newKindCombo")
        self.new_kind.setAccessibleName("Kind of new template")
        for value, title in KIND_TITLES.items():
            self.new_kind.addItem(title, value)
        self.toolbar.insertWidget(1, self.new_kind)
        note = QLabel(EDITS_NOTE)
        note.setObjectName("pageEditsNote")
        note.setWordWrap(True)
        note.setStyleSheet(theme.banner_style("warning"))
        self.body.insertWidget(2, note)
        QShortcut(QKeySequence.StandardKey.New, self, self.new_item)
        self.dialog: TemplateDialog | None = None
        self.notice = ""  # what the last action did, shown with the count after the reload

    async def fetch(self) -> list[Row]:
        return await self.context.read(template_rows)

    def count_text(self, rows: Sequence[Row]) -> str:
        kinds = [row["kind"] for row in rows]
        text = (
            f"{len(rows)} templates: {kinds.count('campaign')} campaign, "
            f"{kinds.count('gateway')} gateway."
        )
        notice, self.notice = self.notice, ""
        return f"{text} {notice}".strip()

    def new_item(self) -> None:
        if self.context.database is None:
            return
        self._open(TemplateDialog(self.context, str(self.new_kind.currentData()), None, self))

    def edit_item(self, row: Row) -> None:
        self._open(TemplateDialog(self.context, row["kind"], row["name"], self))

    def _open(self, dialog: TemplateDialog) -> None:
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.saved.connect(lambda: self._saved(dialog))
        self.dialog = dialog
        dialog.open()

    def _saved(self, dialog: TemplateDialog) -> None:
        saved: dict[str, Any] | None = dialog.saved_template
        if saved is not None:
            self.notice = (
                f"Saved the {saved['kind']} template {saved['name']!r}; only sender domains "
                "created from now on get its records."
            )
            self.show_status(self.notice)

    def describe(self, row: Row) -> str:
        return f"the {row['kind']} template {row['name']!r}"

    async def delete_item(self, row: Row) -> None:
        await self.context.write(
            delete_template, row["kind"], row["name"], expected_version=row["version"]
        )
        self.notice = f"Deleted the {row['kind']} template {row['name']!r}."
        self.context.changed.emit("dns_template")
