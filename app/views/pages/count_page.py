"""A stand-in page that shows how many rows a section's table holds.

Used for sections whose full page is not built yet, so navigation never shows a blank.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Base
from app.views.context import AppContext
from app.views.pages.base import Page, scaled_font

PENDING = "…"


def count_rows(session: Session, model: type[Base]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


class CountPage(Page):
    model: type[Base]

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        self.count = QLabel(PENDING)
        self.count.setObjectName("countLabel")
        self.count.setFont(scaled_font(self.font(), 3.2, bold=True))
        self.caption = QLabel()
        self.caption.setObjectName("countCaption")
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body.addSpacing(24)
        self.body.addWidget(self.count)
        self.body.addWidget(self.caption)
        self.body.addStretch(1)
        self.body.addWidget(self.status)

    def refresh(self) -> None:
        if self.context.database is None:
            return
        table = str(self.model.__tablename__)

        async def load() -> None:
            count = await self.context.read(count_rows, self.model)
            self.count.setText(str(count))
            self.caption.setText(f"{'row' if count == 1 else 'rows'} in {table}")

        self.context.spawn(load(), on_error=lambda msg: self.show_status(msg, error=True))
