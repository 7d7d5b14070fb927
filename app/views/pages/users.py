"""The Users page: each user's group, sender domains and sending counts against the limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QWidget

from app.services import users
from app.views.context import AppContext
from app.views.pages.base import ListPage
from app.views.pages.groups import fit_columns, follow_loads, muted_colour
from app.views.table_model import Column, Row
from app.views.user_dialog import UserDialog, load_user_editor, tone


def _against(sent_key: str, limit_key: str) -> Callable[[Row], str]:
    def text(row: Row) -> str:
        limit = row.get(limit_key)
        return f"{row[sent_key]:,} / {limit:,}" if limit else f"{row[sent_key]:,} / ∞"

    return text


def _over(sent_key: str, limit_key: str) -> Callable[[Row], str | None]:
    def colour(row: Row) -> str | None:
        limit = row.get(limit_key)
        return tone("bad") if limit and row[sent_key] >= limit else None

    return colour


def _limit_tooltip(title: str, limit_key: str) -> Callable[[Row], str]:
    def tooltip(row: Row) -> str:
        limit = row.get(limit_key)
        return f"{title}: {limit:,}" if limit else f"{title}: unlimited (∞)"

    return tooltip


def sent_column(key: str, title: str, limit_key: str, limit_title: str) -> Column:
    return Column(
        key,
        title,
        text=_against(key, limit_key),
        sort_value=lambda row: row[key],
        colour=_over(key, limit_key),
        tooltip=_limit_tooltip(limit_title, limit_key),
        align_right=True,
    )


def by_username(row: Row) -> Hashable:
    return row.get("username")


class UsersPage(ListPage):
    title = "Users"
    summary = "Accounts that own sender domains and campaigns; each belongs to one user group."
    entities = ("user", "user_group", "sender_domain")
    new_label = "New User…"
    row_key = staticmethod(by_username)
    columns = (
        Column("username", "Username"),
        Column("email", "Email"),
        Column("group", "Group"),
        Column(
            "is_active",
            "Active",
            colour=lambda row: None if row.get("is_active") else muted_colour(),
        ),
        sent_column("domain_count", "Domains", "domains_limit", "Sender Domains Limit"),
        sent_column("today", "Today", "daily_limit", "Daily Email Limit"),
        sent_column("this_month", "This Month", "monthly_limit", "Monthly Email Limit"),
        sent_column("lifetime", "Lifetime", "lifetime_limit", "Lifetime Email Limit"),
    )

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.new_button.setAccessibleName("New user")
        self.table.setAccessibleName("Users")
        self.dialog: UserDialog | None = None
        follow_loads(self, self.fit_columns)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def fit_columns(self) -> None:
        # The numbers are right-aligned: stretching the last of them would push it away
        # from its title, so the email column takes the spare width instead.
        keys = [column.key for column in self.columns]
        fit_columns(self.table, keys, {"email": 140, "group": 100}, grow="email")

    async def fetch(self) -> list[Row]:
        return await self.context.read(users.user_rows)

    def describe(self, row: Row) -> str:
        return f"user {row.get('username', '')} and their sender domains"

    def new_item(self) -> None:
        self._open_editor(None)

    def edit_item(self, row: Row) -> None:
        self._open_editor(str(row["username"]))

    def _open_editor(self, username: str | None) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.raise_()
            self.dialog.activateWindow()
            return

        async def open_editor() -> None:
            data = await self.context.read(load_user_editor, username)
            dialog = UserDialog(self.context, self)
            if self.dialog is not None:
                self.dialog.deleteLater()  # the previous, closed editor
            self.dialog = dialog
            await dialog.prepare(data)
            await asyncio.sleep(0)  # the first show lays everything out: a step of its own
            dialog.open()

        self.context.spawn(open_editor(), on_error=lambda msg: self.show_status(msg, error=True))

    async def delete_item(self, row: Row) -> None:
        username = str(row["username"])
        await self.context.write(users.delete_user, username)
        self.context.changed.emit("user")
        self.show_status(f"Deleted user {username!r}.")
