"""The Users page (a row count until the full page lands)."""

from __future__ import annotations

from app.models import User
from app.views.pages.count_page import CountPage


class UsersPage(CountPage):
    title = "Users"
    summary = "Accounts that own sender domains and campaigns; each belongs to one user group."
    entities = ("user",)
    model = User
