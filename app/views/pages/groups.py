"""The User Groups page: each group's route per channel, DNS template, limits and members."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette, QResizeEvent
from PySide6.QtWidgets import QApplication, QTableView, QWidget

from app.models import Channel, LegacySendMethod
from app.services import groups
from app.views.context import AppContext
from app.views.group_dialog import CHANNEL_TITLES, LEGACY_TITLES, GroupDialog, load_editor
from app.views.pages.base import ListPage
from app.views.table_model import Column, Row


def muted_colour() -> str:
    """The palette's secondary text colour, read at paint time so dark mode follows."""
    return (
        QApplication.palette()
        .color(QPalette.ColorRole.PlaceholderText)
        .name(QColor.NameFormat.HexArgb)
    )


def channel_text(row: Row, channel: Channel) -> str:
    server = row.get(groups.CHANNEL_ATTRIBUTE[channel])
    if server:
        return str(server)
    method = row.get("legacy_send_method")
    if method:
        return f"legacy: {LEGACY_TITLES[LegacySendMethod(method)]}"
    return "none"


def channel_column(channel: Channel) -> Column:
    key = groups.CHANNEL_ATTRIBUTE[channel]

    def colour(row: Row) -> str | None:
        return None if row.get(key) else muted_colour()

    def tooltip(row: Row) -> str:
        if row.get(key):
            return f"Delivery server {row[key]!r} serves the {channel.value} channel."
        if row.get("legacy_send_method"):
            return (
                "No delivery server: the legacy send method is used. "
                "Assign a delivery server in Sending Settings to replace it."
            )
        return "No route: assign a delivery server in Sending Settings."

    def text(row: Row) -> str:
        return channel_text(row, channel)

    return Column(key, CHANNEL_TITLES[channel], text=text, colour=colour, tooltip=tooltip)


def template_text(row: Row) -> str:
    return str(row.get("campaign_dns_template") or "Default")


def _default_domain_active(row: Row) -> bool:
    return bool(row.get("default_sender_domain_enabled") and row.get("default_sender_domain"))


def domains_text(row: Row) -> str:
    managed = "Enabled" if row.get("sender_domain_management") else "Disabled"
    return f"{managed} + default" if _default_domain_active(row) else managed


def domains_tooltip(row: Row) -> str:
    managed = (
        "Users manage their own sender domains."
        if row.get("sender_domain_management")
        else "Sender domain management is disabled."
    )
    if not _default_domain_active(row):
        return managed
    return (
        f"{managed} Default sender domain {row['default_sender_domain']}, "
        f"{row['default_sender_domain_monthly_limit']:,} emails per user per rolling 30 days."
    )


def _amount(value: Any) -> str:
    return f"{value:,}"


LIMIT_UNITS = (
    ("daily_email_limit", "/day", "Daily Email Limit"),
    ("monthly_email_limit", "/month", "Monthly Email Limit"),
    ("lifetime_email_limit", "lifetime", "Lifetime Email Limit"),
    ("sender_domains_limit", "domains", "Sender Domains Limit"),
)


def limits_text(row: Row) -> str:
    parts = [
        f"{_amount(row[key])}{unit if unit.startswith('/') else ' ' + unit}"
        for key, unit, _ in LIMIT_UNITS
        if row.get(key)
    ]
    return " · ".join(parts) if parts else "Unlimited"


def limits_tooltip(row: Row) -> str:
    return "\n".join(
        f"{title}: {_amount(row[key]) if row.get(key) else 'unlimited'}"
        for key, _, title in LIMIT_UNITS
    )


def _muted_when(predicate: Callable[[Row], bool]) -> Callable[[Row], str | None]:
    return lambda row: muted_colour() if predicate(row) else None


def fit_columns(
    table: QTableView,
    keys: Sequence[str],
    shrinkable: Mapping[str, int],
    *,
    grow: str | None = None,
) -> None:
    """Size the columns to their contents, then make them fit the table's width.

    Too wide: the widest ``shrinkable`` columns give way (each down to its minimum),
    eliding their text, so no column is pushed off screen. Room to spare: it goes to
    ``grow`` if given (else the last column keeps stretching, as ListPage sets it).
    """
    header = table.horizontalHeader()
    wanted = [max(table.sizeHintForColumn(i), header.sectionSizeHint(i)) for i in range(len(keys))]
    available = table.viewport().width()
    fixed = sum(w for key, w in zip(keys, wanted, strict=True) if key not in shrinkable)
    flexible = [w for key, w in zip(keys, wanted, strict=True) if key in shrinkable]
    # The largest common cap that fits: narrow columns keep their width, wide ones share
    # what is left equally.
    cap = max(flexible, default=0)
    while cap > 0 and fixed + sum(min(w, cap) for w in flexible) > available:
        cap -= 4
    widths = [
        max(min(w, cap), shrinkable[key]) if key in shrinkable else w
        for key, w in zip(keys, wanted, strict=True)
    ]
    if grow is not None:
        header.setStretchLastSection(False)
        widths[keys.index(grow)] += max(available - sum(widths), 0)
    for index, width in enumerate(widths):
        header.resizeSection(index, width)


def follow_loads(page: ListPage, fit: Callable[[], None]) -> None:
    """Run ``fit`` after each load of ``page``: ListPage sizes the columns to their
    contents once the rows are in, and a zero timer runs after that loop step."""
    page.table.setWordWrap(False)  # one line per row; long texts are elided
    page.table.setTextElideMode(Qt.TextElideMode.ElideRight)
    page.loaded.connect(lambda: QTimer.singleShot(0, page, fit))


class GroupsPage(ListPage):
    title = "User Groups"
    summary = (
        "Which delivery server each channel uses, with sending limits, headers and permissions."
    )
    # Server and template renames show here; member counts change with users.
    entities = ("user_group", "user", "delivery_server", "dns_template")
    new_label = "New Group…"
    columns = (
        Column("name", "Name"),
        Column("user_count", "Users", align_right=True),
        *(channel_column(channel) for channel in Channel),
        Column(
            "campaign_dns_template",
            "DNS Template",
            text=template_text,
            colour=_muted_when(lambda row: not row.get("campaign_dns_template")),
            tooltip=lambda row: f"Email Campaign DNS Template: {template_text(row)}",
        ),
        Column(
            "sender_domain_management",
            "Sender Domains",
            text=domains_text,
            tooltip=domains_tooltip,
        ),
        Column(
            "limits",
            "Limits",
            text=limits_text,
            colour=_muted_when(lambda row: limits_text(row) == "Unlimited"),
            tooltip=limits_tooltip,
        ),
    )
    # When the columns are wider than the table, these give way (down to the given width,
    # eliding their text) so that every column stays on screen; the others keep theirs.
    shrinkable: ClassVar[dict[str, int]] = {
        "marketing_server": 100,
        "transactional_server": 100,
        "autoresponder_server": 100,
        "campaign_dns_template": 90,
        "limits": 110,
    }

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.new_button.setAccessibleName("New user group")
        self.table.setAccessibleName("User groups")
        self.dialog: GroupDialog | None = None
        follow_loads(self, self.fit_columns)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def fit_columns(self) -> None:
        fit_columns(self.table, [c.key for c in self.columns], self.shrinkable)

    async def fetch(self) -> list[Row]:
        return await self.context.read(groups.group_rows)

    def describe(self, row: Row) -> str:
        return f"user group {row.get('name', '')}"

    # ------------------------------------------------------------------ actions

    def new_item(self) -> None:
        self._open_editor(None)

    def edit_item(self, row: Row) -> None:
        self._open_editor(str(row["name"]))

    def _open_editor(self, name: str | None) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.raise_()
            self.dialog.activateWindow()
            return

        async def open_editor() -> None:
            # The row may be stale: read the group (and its version) fresh for the editor.
            choices, group = await self.context.read(load_editor, name)
            dialog = GroupDialog(self.context, self)
            if self.dialog is not None:
                self.dialog.deleteLater()  # the previous, closed editor
            self.dialog = dialog
            await dialog.prepare(choices, group)
            await asyncio.sleep(0)  # showing lays out every tab: a step of its own
            dialog.open()

        self.context.spawn(open_editor(), on_error=lambda msg: self.show_status(msg, error=True))

    async def delete_item(self, row: Row) -> None:
        name = str(row["name"])
        await self.context.write(groups.delete_group, name)
        self.context.changed.emit("user_group")
        self.show_status(f"Deleted user group {name!r}.")
