"""The user group editor: the reference's sections as tabs, and a live route preview.

The route preview answers "which server will serve each channel, and why" for the choices
on screen, before they are saved. It does not re-implement the routing rule: it hands
``routing.route_for_user`` (the rule behind ``postroom route`` and ``require_route``) a
transient, never-persisted user and group built from the form, so the preview and the
real route agree word for word (a test holds them equal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QTabWidget,
    QWidget,
)

from app.models import Channel, DeliveryServer, LegacySendMethod, User, UserGroup
from app.services import groups, routing
from app.services.errors import ValidationError
from app.services.groups import GroupChoices
from app.views.context import AppContext
from app.views.forms import ERROR_COLOUR, EditorDialog, Form

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

NONE_CHOICE = "(none)"
CHANNEL_TITLES = {
    Channel.MARKETING: "Marketing",
    Channel.TRANSACTIONAL: "Transactional",
    Channel.AUTORESPONDER: "Auto Responder",
}
# The reference's spelling of each legacy method.
LEGACY_TITLES = {
    LegacySendMethod.SYSTEM: "System",
    LegacySendMethod.SMTP: "SMTP",
    LegacySendMethod.LOCALMTA: "LocalMTA",
    LegacySendMethod.POWERMTA: "PowerMTA",
    LegacySendMethod.PHPMAIL: "PHPMail",
    LegacySendMethod.SAVETODISK: "SaveToDisk",
}
CHANNEL_HINTS = {
    Channel.MARKETING: "The delivery server used for email campaigns.",
    Channel.TRANSACTIONAL: (
        "The delivery server used for transactional emails "
        "(e.g., password resets, order confirmations)."
    ),
    Channel.AUTORESPONDER: "The delivery server used for autoresponder sequences.",
}
LEGACY_HINT = (
    "If no delivery server is assigned for a channel, the system falls back to this legacy "
    "send method (System, SMTP, LocalMTA, PowerMTA, PHPMail, or SaveToDisk). For new "
    "installations, always use delivery servers instead of the legacy send method."
)
DEFAULT_DOMAIN_WARNING = (
    "<b>Warning:</b> the default sender domain does not go through DNS verification. "
    "You must ensure its DNS records (SPF, DKIM, DMARC) are properly configured on your mail "
    "server before enabling it. Misconfigured records affect all users in the group."
)
PREVIEW_USER = "preview"
UNNAMED_GROUP = "(unnamed)"


def label_of(key: str) -> str:
    """The label the service uses for a field, so its refusals land under that field."""
    if key in groups.FIELDS:
        return groups.FIELDS[key].label
    if key in groups.SERVER_REFERENCES:
        return groups.SERVER_REFERENCES[key][0]
    return groups.TEMPLATE_REFERENCES[key][0]


def parser_of(key: str) -> Any:
    return groups.FIELDS[key].parse


# ---------------------------------------------------------------- data (executor side)


def load_editor(session: Session, name: str | None) -> tuple[GroupChoices, dict[str, Any] | None]:
    """The dropdown choices and the group as saved, read in one transaction so they agree."""
    group = groups.group_as_dict(groups.get_group(session, name)) if name is not None else None
    return groups.group_choices(session), group


# ---------------------------------------------------------------- route preview


def preview_routes(
    group_name: str,
    servers: Mapping[Channel, str | None],
    legacy_method: LegacySendMethod | None,
) -> dict[Channel, routing.Route]:
    """The route of every channel for unsaved choices, worded exactly as resolve_route does."""
    group = UserGroup(name=group_name or UNNAMED_GROUP, legacy_send_method=legacy_method)
    for channel, server_name in servers.items():
        server = DeliveryServer(name=server_name) if server_name else None
        setattr(group, groups.CHANNEL_ATTRIBUTE[channel], server)
    user = User(username=PREVIEW_USER, group=group)
    return {channel: routing.route_for_user(user, channel) for channel in Channel}


def route_outcome(route: routing.Route) -> str:
    """A short answer for the preview's second column."""
    if route.server is not None:
        return f"→ {route.server}"
    if route.method != "none":
        return f"→ legacy send method {LEGACY_TITLES[LegacySendMethod(route.method)]}"
    return "→ no route: mail on this channel cannot be sent"


class RoutePreview(QGroupBox):
    """One row per channel: where its mail goes and the routing rule's own explanation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Route preview", parent)
        self.setObjectName("routePreview")
        grid = QGridLayout(self)
        grid.setColumnStretch(1, 1)
        grid.setHorizontalSpacing(12)
        intro = QLabel("Which server serves each channel with the choices above, before saving.")
        intro.setWordWrap(True)
        intro.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        grid.addWidget(intro, 0, 0, 1, 2)
        self.outcomes: dict[Channel, QLabel] = {}
        self.reasons: dict[Channel, QLabel] = {}
        bold = QFont(self.font())
        bold.setBold(True)
        for number, channel in enumerate(Channel):
            title = QLabel(CHANNEL_TITLES[channel])
            title.setFont(bold)
            outcome = QLabel()
            outcome.setObjectName(f"routeOutcome_{channel.value}")
            outcome.setFont(bold)
            reason = QLabel()
            reason.setObjectName(f"routeReason_{channel.value}")
            reason.setWordWrap(True)
            reason.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            reason.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            row = 1 + number * 2
            grid.addWidget(title, row, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(outcome, row, 1)
            grid.addWidget(reason, row + 1, 1)
            self.outcomes[channel] = outcome
            self.reasons[channel] = reason

    def show_routes(self, routes: Mapping[Channel, routing.Route]) -> None:
        for channel, route in routes.items():
            outcome = self.outcomes[channel]
            outcome.setText(route_outcome(route))
            # Only a missing route is an error; a legacy route works, the reason says more.
            outcome.setStyleSheet(f"color: {ERROR_COLOUR};" if route.method == "none" else "")
            self.reasons[channel].setText(route.reason)
            outcome.setAccessibleName(f"{CHANNEL_TITLES[channel]} route")
            outcome.setAccessibleDescription(route.reason)


# ---------------------------------------------------------------- dialog


class _TabForm(Form):
    """A form that brings its tab forward when a service refusal is shown under a field."""

    def __init__(self, tabs: QTabWidget) -> None:
        super().__init__()
        self._tabs = tabs

    def show_service_error(self, error: ValidationError) -> bool:
        shown = super().show_service_error(error)
        if shown:
            self._tabs.setCurrentWidget(self)
        return shown


def note(text: str, *, rich: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    return label


class GroupDialog(EditorDialog):
    """Create or edit one user group: ``await prepare(choices, group)``, then ``open()``.

    Six tabs of fields take a few tens of milliseconds to build and polish on a busy
    machine, so ``prepare`` builds one tab per event-loop step instead of all at once.
    """

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(context, "New User Group", parent)
        self.setObjectName("groupDialog")
        self.original_name: str | None = None
        self.version: int | None = None
        self.resize(760, 720)
        self.combos: dict[str, QComboBox] = {}

    def build_steps(self) -> Iterator[None]:
        """Build the tabs, one per step; the caller may let the loop run between steps."""
        self.sending = self._sending_tab()
        self.sending.ensurePolished()  # style work now, not all at once when shown
        yield
        self.delivery = self._delivery_tab()
        self.delivery.ensurePolished()
        yield
        self.preferences = self._preferences_tab()
        self.preferences.ensurePolished()
        yield
        self.limits = self._limits_tab()
        self.limits.ensurePolished()
        yield
        self.headers = self._headers_tab()
        self.headers.ensurePolished()
        yield
        self.permissions = self._permissions_tab()
        self.permissions.ensurePolished()
        self.sending.changed.connect(self.update_preview)
        self.preferences.changed.connect(self._update_enabled)

    async def prepare(self, choices: GroupChoices, group: Mapping[str, Any] | None) -> None:
        """Build every tab without stalling the loop, then fill them from ``group``."""
        for _ in self.build_steps():
            await asyncio.sleep(0)
        self.apply(choices, group)

    def _tab(self, title: str) -> Form:
        return self.add_form(title, _TabForm(self.tabs))

    # ------------------------------------------------------------------ tabs

    def _sending_tab(self) -> Form:
        form = self._tab("&Sending Settings")
        form.add_line("name", label_of("name"), parser_of("name"), placeholder="e.g. UserGroup1")
        for channel in Channel:
            key = groups.CHANNEL_ATTRIBUTE[channel]
            self.combos[key] = form.add_combo(
                key, label_of(key), [(NONE_CHOICE, None)], hint=CHANNEL_HINTS[channel]
            )
        legacy_choices: list[tuple[str, object]] = [(NONE_CHOICE, None)]
        legacy_choices += [(title, method.value) for method, title in LEGACY_TITLES.items()]
        self.combos["legacy_send_method"] = form.add_combo(
            "legacy_send_method",
            label_of("legacy_send_method"),
            legacy_choices,
            parser_of("legacy_send_method"),
            hint=LEGACY_HINT,
        )
        self.route_preview = RoutePreview()
        form.layout_.addRow(self.route_preview)
        return form

    def _delivery_tab(self) -> Form:
        form = self._tab("&Email Delivery")
        form.layout_.addRow(
            note(
                "The DNS records generated when users in this group create new sender domains. "
                "Changing the template affects only domains created afterwards; existing "
                "domains keep their records."
            )
        )
        for key, kind_hint in (
            ("campaign_dns_template", "For sender domains used by email campaigns."),
            ("gateway_dns_template", "If you also use the Email Gateway feature."),
        ):
            self.combos[key] = form.add_combo(
                key,
                label_of(key),
                [(NONE_CHOICE, None)],
                hint=f"{kind_hint} (none) uses the template named Default, if there is one.",
            )
        return form

    def _preferences_tab(self) -> Form:
        form = self._tab("&Preferences")
        form.add_check(
            "sender_domain_management",
            label_of("sender_domain_management"),
            hint=(
                "When enabled, users can create, edit, verify and delete their own sender "
                "domains, and must have at least one verified sender domain to send campaigns. "
                "When disabled, campaigns use a free-text From Email."
            ),
        )
        self.default_domain_check = form.add_check(
            "default_sender_domain_enabled",
            label_of("default_sender_domain_enabled"),
            hint="A fallback sender domain, so users can send without their own sender domains.",
        )
        self.default_domain_edit = form.add_line(
            "default_sender_domain",
            label_of("default_sender_domain"),
            parser_of("default_sender_domain"),
            placeholder="example.com",
        )
        self.default_limit_edit = form.add_line(
            "default_sender_domain_monthly_limit",
            label_of("default_sender_domain_monthly_limit"),
            parser_of("default_sender_domain_monthly_limit"),
            placeholder="200",
            hint=(
                "The maximum number of emails each user can send per rolling 30-day window "
                "through the default domain (default: 200)."
            ),
        )
        self.default_domain_warning = note(DEFAULT_DOMAIN_WARNING, rich=True)
        self.default_domain_warning.setObjectName("defaultDomainWarning")
        form.layout_.addRow(self.default_domain_warning)
        return form

    def _limits_tab(self) -> Form:
        form = self._tab("&Limits")
        form.layout_.addRow(
            note("How many emails each user of the group can send. Empty or 0 means unlimited.")
        )
        for key, description in (
            ("monthly_email_limit", "Maximum number of emails per calendar month."),
            ("daily_email_limit", "Maximum number of emails per day (UTC)."),
            ("lifetime_email_limit", "Maximum total emails over the account's lifetime."),
            ("sender_domains_limit", "Maximum number of sender domains a user can create."),
        ):
            form.add_line(
                key,
                label_of(key),
                parser_of(key),
                placeholder="Unlimited",
                hint=f"{description} Empty or 0 = unlimited.",
            )
        return form

    def _headers_tab(self) -> Form:
        form = self._tab("Email &Headers")
        for key, hint in (
            ("plain_text_header", "Text prepended to all plain text emails."),
            ("plain_text_footer", "Text appended to all plain text emails."),
            ("html_header", "HTML content prepended to all HTML emails."),
            ("html_footer", "HTML content appended to all HTML emails."),
        ):
            edit = form.add_text(key, label_of(key), parser_of(key), hint=hint)
            edit.setMinimumHeight(56)
            if key.startswith("html"):
                edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        form.add_line(
            "x_mailer",
            label_of("x_mailer"),
            parser_of("x_mailer"),
            placeholder="System default",
            hint="Custom X-Mailer header value. Leave empty to use the system default.",
        )
        return form

    def _permissions_tab(self) -> Form:
        form = self._tab("Per&missions")
        form.layout_.addRow(note("Which email features users in the group can access."))
        form.add_check(
            "perm_gateway_add_domain",
            label_of("perm_gateway_add_domain"),
            hint="Allows users to add new Email Gateway sender domains.",
        )
        form.add_check(
            "perm_gateway_manage_domain",
            label_of("perm_gateway_manage_domain"),
            hint=(
                "Allows users to manage Email Gateway domains (update, verify, delete, "
                "configure SMTPs, and webhooks)."
            ),
        )
        return form

    # ------------------------------------------------------------------ state

    def apply(self, choices: GroupChoices, group: Mapping[str, Any] | None) -> None:
        """Fill the dropdowns and every form from a fresh read (open and reload)."""
        values: dict[str, Any] = dict(group) if group is not None else {}
        offered = {
            "campaign_dns_template": choices.campaign_templates,
            "gateway_dns_template": choices.gateway_templates,
        }
        for key in groups.SERVER_REFERENCES:
            offered[key] = choices.servers
        for key, names in offered.items():
            Form.set_choices(self.combos[key], [(NONE_CHOICE, None), *((n, n) for n in names)])
        if group is None:
            values["default_sender_domain_monthly_limit"] = 200
        else:
            self.original_name = self.original_name or group["name"]
            self.version = group["version"]
            self.setWindowTitle(f"Edit User Group {group['name']}")
        for form in self.forms:
            form.load(values)
        self._update_enabled()
        self.update_preview()

    def _update_enabled(self) -> None:
        active = self.default_domain_check.isChecked()
        layout = self.preferences.layout_
        for widget in (self.default_domain_edit, self.default_limit_edit):
            widget.setEnabled(active)
            holder = widget.parentWidget()
            title = layout.labelForField(holder) if holder is not None else None
            if title is not None:
                title.setEnabled(active)

    def current_routes(self) -> dict[Channel, routing.Route]:
        raw = self.sending.raw()
        servers = {
            channel: cast(str | None, raw[groups.CHANNEL_ATTRIBUTE[channel]]) for channel in Channel
        }
        method = raw["legacy_send_method"]
        legacy = LegacySendMethod(method) if isinstance(method, str) else None
        name = raw["name"]
        return preview_routes(name.strip() if isinstance(name, str) else "", servers, legacy)

    def update_preview(self) -> None:
        self.route_preview.show_routes(self.current_routes())

    # ------------------------------------------------------------------ saving

    async def save(self, values: dict[str, object]) -> None:
        if self.original_name is None:
            await self.context.write(groups.create_group, values)
        else:
            await self.context.write(
                groups.update_group, self.original_name, values, expected_version=self.version
            )
        self.context.changed.emit("user_group")

    async def reload(self) -> None:
        choices, group = await self.context.read(load_editor, self.original_name)
        self.apply(choices, group)
        self.show_error("Reloaded the values saved by someone else; apply your change again.")
