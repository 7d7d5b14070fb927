"""The New Sender Domain dialog: user, domain and kind; the service decides whether the
user's group allows it (permission, limit) and says why not."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialogButtonBox, QLabel, QWidget

from app.models import TemplateKind
from app.services import validation
from app.services.errors import ValidationError
from app.services.sender_domains import create_sender_domain, domain_as_dict, owner_choices
from app.views import theme
from app.views.context import AppContext
from app.views.forms import EditorDialog, Form

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def create_domain(session: Session, username: str, domain: str, kind: str) -> dict[str, Any]:
    return domain_as_dict(create_sender_domain(session, username, domain, kind=kind))


def describe_user(choice: dict[str, Any] | None, kind: str) -> tuple[str, bool]:
    """A line about what the user's group allows, and whether it looks allowed."""
    if choice is None:
        return "Create a user first (Users page); sender domains belong to a user.", False
    group = choice["group"]
    if kind == TemplateKind.GATEWAY.value and not choice["gateway"]:
        return (
            f"Group {group} lacks the EmailGateway.AddDomain permission, so this will be refused.",
            False,
        )
    if kind == TemplateKind.CAMPAIGN.value and not choice["management"]:
        return (
            f"Group {group} has sender domain management turned off, so this will be refused.",
            False,
        )
    limit = choice["limit"]
    owned = choice["owned"]
    if limit:
        return f"Group {group}: {owned} of {limit} sender domains used.", owned < limit
    return f"Group {group}: {owned} sender domains, no limit.", True


# ---------------------------------------------------------------- new domain


class NewDomainDialog(EditorDialog):
    """User, domain and kind; the service decides (permissions, limit) and says why not."""

    created = Signal(object)  # the new domain as domain_as_dict

    def __init__(
        self, context: AppContext, preferred_user: str | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(context, "New Sender Domain", parent)
        self.setObjectName("newDomainDialog")
        self.resize(580, 330)
        # The refusal (limit reached, permission missing) is the point of this dialog's
        # error line: framed, so it can't be missed.
        self.error.setStyleSheet(f"color: {theme.error_colour()}; {theme.banner_style('error')}")
        self.tabs.tabBar().setVisible(False)
        self.tabs.setDocumentMode(True)
        self.users: dict[str, dict[str, Any]] = {}
        self.preferred_user = preferred_user
        form = self.add_form("Sender domain")
        self.form = form
        intro = QLabel(
            "The domain gets the DNS records of its user's group template. Use a subdomain "
            "such as mail.example.com, so mail reputation stays apart from the main domain."
        )
        intro.setWordWrap(True)
        form.layout_.insertRow(0, intro)
        self.user_combo = form.add_combo("username", "User", [], _required_user)
        self.domain_edit = form.add_line(
            "domain", "Sender domain", validation.domain, placeholder="mail.example.com"
        )
        self.kind_combo = form.add_combo(
            "kind",
            "Kind",
            [
                ("Email campaign", TemplateKind.CAMPAIGN.value),
                ("Email gateway", TemplateKind.GATEWAY.value),
            ],
        )
        self.user_info = QLabel("Loading users…")
        self.user_info.setObjectName("userInfo")
        self.user_info.setWordWrap(True)
        form.layout_.addRow(self.user_info)
        self.user_combo.currentIndexChanged.connect(lambda _i: self._update_info())
        self.kind_combo.currentIndexChanged.connect(lambda _i: self._update_info())
        save = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        save.setText("Create Sender Domain")
        save.setObjectName("createButton")
        context.spawn(self._load(), on_error=self.show_error)

    async def _load(self) -> None:
        choices = await self.context.read(owner_choices)
        self.users = {choice["username"]: choice for choice in choices}
        Form.set_choices(
            self.user_combo,
            [(f"{c['username']}  ({c['group']})", c["username"]) for c in choices],
        )
        if self.preferred_user in self.users:
            self.user_combo.setCurrentIndex(self.user_combo.findData(self.preferred_user))
        self.form.mark_clean()  # choices arriving is no edit of the user's
        self._update_info()
        self.place_focus_after_load()

    def _update_info(self) -> None:
        choice = self.users.get(str(self.user_combo.currentData()))
        text, allowed = describe_user(choice, str(self.kind_combo.currentData()))
        self.user_info.setText(text)
        self.user_info.setStyleSheet("" if allowed else f"color: {theme.warning_colour()};")

    async def save(self, values: dict[str, object]) -> None:
        created = await self.context.write(
            create_domain, str(values["username"]), str(values["domain"]), str(values["kind"])
        )
        self.context.changed.emit("sender_domain")
        self.created.emit(created)


def _required_user(value: object, field: str) -> str:
    if not value:
        raise ValidationError(field, "choose the user who will own the domain.")
    return str(value)
