"""The User Groups page (a row count until the full page lands)."""

from __future__ import annotations

from app.models import UserGroup
from app.views.pages.count_page import CountPage


class GroupsPage(CountPage):
    title = "User Groups"
    summary = (
        "Which delivery server each channel uses, with sending limits, headers and permissions."
    )
    entities = ("user_group",)
    model = UserGroup
