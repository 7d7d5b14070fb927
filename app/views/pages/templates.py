"""The DNS Templates page: campaign and gateway record templates, and which groups use them."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import QApplication, QComboBox, QLabel, QWidget
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import DnsTemplate, TemplateKind, UserGroup
from app.services.dns_templates import DEFAULT_TEMPLATE_NAME, delete_template
from app.views import theme
from app.views.context import AppContext
from app.views.pages.base import ListPage
from app.views.table_model import Column, Row
from app.views.template_dialog import EDITS_NOTE, TemplateDialog

KIND_TITLES = {TemplateKind.CAMPAIGN.value: "Campaign", TemplateKind.GATEWAY.value: "Gateway"}


def template_rows(session: Session) -> list[Row]:
    """Every template with its record count and the groups that select it: two queries."""
    used: dict[int, list[str]] = {}
    for name, campaign_id, gateway_id in session.execute(
        select(
            UserGroup.name, UserGroup.campaign_dns_template_id, UserGroup.gateway_dns_template_id
        ).order_by(UserGroup.name)
    ):
        for template_id in {campaign_id, gateway_id}:
            if template_id is not None:
                used.setdefault(template_id, []).append(name)
    query = (
        select(DnsTemplate)
        .options(selectinload(DnsTemplate.records))
        .order_by(DnsTemplate.kind, DnsTemplate.name)
    )
    return [
        {
            "name": template.name,
            "kind": template.kind.value,
            "records": len(template.records),
            "types": ", ".join(sorted({r.type for r in template.records})),
            "used_by": used.get(template.id, []),
            "description": template.description or "",
            "version": template.version,
        }
        for template in session.scalars(query)
    ]


def _muted() -> str:
    return QApplication.palette().color(QPalette.ColorRole.PlaceholderText).name()


def _used_by_text(row: Row) -> str:
    names: list[str] = row["used_by"]
    if names:
        return ", ".join(names)
    if row["name"].casefold() == DEFAULT_TEMPLATE_NAME.casefold():
        return "groups that select none"
    return "no group"


class TemplatesPage(ListPage):
    title = "DNS Templates"
    summary = (
        "The DNS records a new sender domain must publish, per template. Each user group "
        "selects a campaign and a gateway template in its Email Delivery settings."
    )
    entities = ("dns_template", "user_group", "dns_settings")
    new_label = "&New Template…"
    columns = (
        Column("name", "Name"),
        Column("kind", "Kind", text=lambda row: str(KIND_TITLES.get(row["kind"], row["kind"]))),
        Column(
            "records",
            "Records",
            text=lambda row: (
                f"{row['records']} ({row['types']})" if row["records"] else "none: no DNS check"
            ),
            sort_value=lambda row: row["records"],
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

    def refresh(self) -> None:
        if self.context.database is None:
            return
        self._generation += 1
        generation = self._generation

        async def load() -> None:
            rows = await self.fetch()
            if generation != self._generation:
                return
            selected = self.selected_row()
            self.model.set_rows(rows)
            self.table.resizeColumnsToContents()
            if selected is not None:
                self.select_where_key(selected["kind"], selected["name"])
            kinds = [row["kind"] for row in rows]
            text = (
                f"{len(rows)} templates: {kinds.count('campaign')} campaign, "
                f"{kinds.count('gateway')} gateway."
            )
            self.show_status(f"{text} {self.notice}".strip())
            self.notice = ""
            self._update_buttons()

        self.context.spawn(load(), on_error=lambda msg: self.show_status(msg, error=True))

    def select_where_key(self, kind: str, name: str) -> None:
        for number, row in enumerate(self.model.rows):
            if row["kind"] == kind and row["name"] == name:
                index = self.proxy.mapFromSource(self.model.index(number, 0))
                self.table.selectRow(index.row())
                return

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
