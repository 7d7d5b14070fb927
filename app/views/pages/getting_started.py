"""Getting Started: the reference's setup walkthrough as a checklist that ticks itself.

Each row is one step of ``app.services.getting_started``: a tick or an empty circle, the
step, what the data says about it now, and the button that does it (a page, or the dialog
that creates the first thing). The steps are read in the executor whenever the page is
shown, after any save, after a database switch, and every few seconds while visible (an
engine starting or a test message going out tells nobody).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from app.services.getting_started import (
    DELIVERY_SERVER,
    DNS_SETTINGS,
    SEND_ENGINE,
    SENDER_DOMAIN,
    TEST_CAMPAIGN,
    USER,
    USER_GROUP,
    Step,
    progress_text,
    setup_steps,
)
from app.views import theme
from app.views.context import AppContext
from app.views.pages.base import Page, scaled_font
from app.views.send_test_dialog import SendTestDialog
from app.views.troubleshoot_dialog import TroubleshootDialog, open_troubleshooter

REFRESH_MS = 5_000
ICON_SIZE = 22
SEND_ENGINES = "Send Engines"


@dataclass(frozen=True)
class StepAction:
    label: str
    section: str | None  # the page it opens; None: a dialog of this page
    new_when_empty: bool = False  # with none of the step's things yet, open the page's New…


ACTIONS: dict[str, StepAction] = {
    DNS_SETTINGS: StepAction("Open DNS Settings", "DNS Settings"),
    DELIVERY_SERVER: StepAction("Delivery Servers", "Delivery Servers", new_when_empty=True),
    USER_GROUP: StepAction("User Groups", "User Groups"),
    USER: StepAction("Users", "Users", new_when_empty=True),
    SENDER_DOMAIN: StepAction("Sender Domains", "Sender Domains"),
    SEND_ENGINE: StepAction("Send Engines", SEND_ENGINES),
    TEST_CAMPAIGN: StepAction("Send a Test…", None),
}
NEW_LABELS = {DELIVERY_SERVER: "New Server…", USER: "New User…"}
ENGINE_FALLBACK = (
    "Start one from a terminal: `postroom sendengine start` (containers) or `postroom engine run`."
)


class StepRow(QFrame):
    """One step: verdict icon, title, explanation, what the data says, the button."""

    def __init__(self, step_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.step_id = step_id
        self.setObjectName(f"step_{step_id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.icon = QLabel()
        self.icon.setObjectName("stepIcon")
        self.icon.setFixedSize(ICON_SIZE, ICON_SIZE)
        self.number = QLabel()
        self.title = QLabel()
        self.title.setObjectName("stepTitle")
        self.title.setFont(scaled_font(self.font(), 1.05, bold=True))
        self.explanation = QLabel()
        self.explanation.setWordWrap(True)
        self.explanation.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.detail = QLabel()
        self.detail.setObjectName("stepDetail")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.button = QPushButton()
        self.button.setObjectName(f"stepButton_{step_id}")
        self.done = False

        grid = QGridLayout(self)
        grid.setContentsMargins(12, 8, 12, 8)
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(2)
        grid.addWidget(self.icon, 0, 0, 2, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.title, 0, 1)
        grid.addWidget(self.explanation, 1, 1)
        grid.addWidget(self.detail, 2, 1)
        grid.addWidget(self.button, 0, 2, 3, 1, Qt.AlignmentFlag.AlignVCenter)
        grid.setColumnStretch(1, 1)

    def show_step(self, number: int, step: Step) -> None:
        self.done = step.done
        self.icon.setPixmap(
            theme.file_icon("status-ok" if step.done else "status-todo").pixmap(
                ICON_SIZE, ICON_SIZE
            )
        )
        self.icon.setToolTip("Done" if step.done else "To do")
        self.icon.setAccessibleName("Done" if step.done else "To do")
        self.title.setText(f"{number}. {step.title}")
        self.explanation.setText(step.explanation)
        self.detail.setText(step.detail)
        self.detail.setStyleSheet(f"color: {theme.success_colour()};" if step.done else "")


class GettingStartedPage(Page):
    title = "Getting Started"
    summary = (
        "The way from an empty database to mail going out, in the reference's order. Each "
        "step ticks itself when what it asks for is there."
    )
    refresh_ms = REFRESH_MS
    entities = (
        "dns_settings",
        "delivery_server",
        "user_group",
        "user",
        "sender_domain",
        "campaign",
    )
    icon = "nav-start"

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)
        # Set by the main window: open a section by title (None when there is no such
        # page), and whether one exists.
        self.open_section: Callable[[str], Page | None] = lambda _title: None
        self.has_section: Callable[[str], bool] = lambda _title: False
        self.steps: list[Step] = []
        self.test_dialog: SendTestDialog | None = None
        self.troubleshoot_dialog: TroubleshootDialog | None = None
        self._loading = False

        self.progress = QLabel("Loading…")
        self.progress.setObjectName("startProgress")
        self.progress.setFont(scaled_font(self.font(), 1.1, bold=True))
        self.body.addSpacing(6)
        self.body.addWidget(self.progress)
        self.rows: dict[str, StepRow] = {}
        for step_id, action in ACTIONS.items():
            row = StepRow(step_id)
            row.button.setText(action.label)
            row.button.clicked.connect(lambda _c=False, s=step_id: self.do_step(s))
            self.rows[step_id] = row
            self.body.addWidget(row)
        # One width for every button, so they line up down the right edge.
        labels = [a.label for a in ACTIONS.values()] + list(NEW_LABELS.values())
        width = max(self.fontMetrics().horizontalAdvance(label) for label in labels) + 40
        for row in self.rows.values():
            row.button.setMinimumWidth(width)

        self.troubleshoot_button = QPushButton("&Troubleshoot…")
        self.troubleshoot_button.setObjectName("troubleshootButton")
        self.troubleshoot_button.setToolTip(
            "Run the checklist for mail that is not going out, with what to do for each problem."
        )
        self.troubleshoot_button.clicked.connect(self.open_troubleshooter)
        trouble = QLabel("Everything ticked and still nothing arrives?")
        trouble.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        footer = QHBoxLayout()
        footer.addWidget(trouble)
        footer.addWidget(self.troubleshoot_button)
        footer.addStretch(1)
        self.body.addSpacing(6)
        self.body.addLayout(footer)
        self.body.addStretch(1)
        self.body.addWidget(self.status)

    # -------------------------------------------------------------- loading

    def refresh(self) -> None:
        if self.context.database is None:
            self.progress.setText("No database is open.")
            return
        self._loading = True

        async def load() -> None:
            try:
                steps = await self.context.read(setup_steps)
            finally:
                self._loading = False
            if shiboken6.isValid(self):
                self.show_steps(steps)

        def failed(message: str) -> None:
            if shiboken6.isValid(self):
                self.show_status(message, error=True)

        self.context.spawn(load(), on_error=failed)

    def show_steps(self, steps: list[Step]) -> None:
        self.steps = steps
        self.progress.setText(progress_text(steps))
        for number, step in enumerate(steps, start=1):
            row = self.rows.get(step.id)
            if row is None:
                continue
            row.show_step(number, step)
            action = ACTIONS[step.id]
            empty = action.new_when_empty and step.count == 0
            row.button.setText(NEW_LABELS[step.id] if empty else action.label)
            if action.section is not None and not self.has_section(action.section):
                row.button.setEnabled(False)
                row.button.setToolTip(f"This console has no {action.section} page.")
                if step.id == SEND_ENGINE:
                    row.button.setToolTip(ENGINE_FALLBACK)
                    if not step.done:
                        row.detail.setText(f"{step.detail} {ENGINE_FALLBACK}")
            else:
                row.button.setEnabled(True)
                row.button.setToolTip("")
        self.show_status("")

    def tick(self) -> None:
        if self.isVisible() and not self._loading and self.context.database is not None:
            self.refresh()

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    # -------------------------------------------------------------- actions

    def do_step(self, step_id: str) -> None:
        action = ACTIONS[step_id]
        if action.section is None:
            self.open_test_dialog()
            return
        page = self.open_section(action.section)
        step = self.step(step_id)
        if page is not None and action.new_when_empty and step is not None and step.count == 0:
            new_item = getattr(page, "new_item", None)
            if callable(new_item):
                new_item()

    def open_test_dialog(self) -> SendTestDialog | None:
        if self.context.database is None:
            return None
        dialog = SendTestDialog(self.context, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(lambda _r: self.tick())
        self.test_dialog = dialog
        dialog.open()
        return dialog

    def open_troubleshooter(self) -> TroubleshootDialog:
        dialog = open_troubleshooter(self.context, self)
        self.troubleshoot_dialog = dialog
        return dialog
