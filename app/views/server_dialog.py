"""Create / edit a delivery server: the tabs Delivery Method, Domains and Test.

Every field is bound to the parser of ``app.services.servers.FIELDS``, so the form refuses
exactly what the service would, with the same sentence, as the user types. The password
never leaves its password field except to be encrypted with the database's vault (on
Save) or used for the SMTP session (on Test); an empty field keeps the stored one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.models import DeliveryServer, Encryption
from app.services import servers, smtp_check, validation
from app.services.coerce import boolean
from app.services.errors import ValidationError
from app.services.servers import FIELDS, PasswordCipher
from app.services.smtp_report import SmtpCheckReport, SmtpTarget
from app.views import theme
from app.views.context import AppContext
from app.views.forms import EditorDialog, Form
from app.views.smtp_test_panel import SmtpTestPanel, load_icon

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Used when the dialog creates a server: the reference's defaults (Timeout 10 seconds).
NEW_SERVER_DEFAULTS: dict[str, object] = {
    "port": 587,
    "encryption": Encryption.TLS.value,
    "timeout_seconds": 10,
    "auth_enabled": False,
    "allow_unverified_certificate": False,
    "sender_info_as_mfrom": False,
    "sender_info_as_from": False,
    "max_connections": 5,
}
# The stored values keep the reference's names (ssl, tls); the words say what they do.
ENCRYPTION_CHOICES = (
    ("None (unencrypted)", "none"),
    ("SSL (encrypted from the start)", "ssl"),
    ("STARTTLS (encrypted after connecting)", "tls"),
)
AUTH_CHOICES = (("No login", False), ("Log in with a username and password", True))
# The fields that decide how the SMTP session is opened (what the Test tab uses).
CONNECTION_FIELDS = (
    "host",
    "port",
    "encryption",
    "timeout_seconds",
    "auth_enabled",
    "username",
    "allow_unverified_certificate",
)


def server_row(session: Session, name: str) -> dict[str, Any]:
    """The stored server as the form shows it (reload after someone else's edit)."""
    return servers.server_as_dict(servers.get_server(session, name))


def stored_password(session: Session, name: str, cipher: PasswordCipher) -> str | None:
    """The stored password in clear, only to open the test session; never shown."""
    return servers.decrypt_password(servers.get_server(session, name), cipher)


def create_tested_server(
    session: Session,
    /,
    values: dict[str, object],
    report: SmtpCheckReport | None,
    **options: Any,
) -> DeliveryServer:
    """Create the server and, in the same transaction, record the test run before saving."""
    server = servers.create_server(session, values, **options)
    if report is not None:
        smtp_check.record_result(session, server.name, report)
    return server


def target_from(values: dict[str, Any], password: str | None) -> SmtpTarget:
    """The SMTP test target that parsed form values describe (raises ValidationError)."""
    auth = boolean(values["auth_enabled"], "Authentication")
    return SmtpTarget(
        host=values["host"],
        port=values["port"],
        encryption=values["encryption"],
        timeout=float(values["timeout_seconds"]),
        username=values["username"] if auth else None,
        password=password if auth else None,
        insecure=bool(values["allow_unverified_certificate"]),
        mail_from_domain=values["mail_from_domain"],
    )


def _password(value: object, field: str) -> str | None:
    # Empty means "no new password" (on edit: keep the stored one). Spaces are kept:
    # a password may legitimately contain them.
    if value is None or value == "":
        return None
    return validation.smtp_password(value, field)


def _spec(key: str) -> tuple[str, Any]:
    return FIELDS[key].label, FIELDS[key].parse


class NotesBox(QFrame):
    """Likely mistakes that are still allowed (servers.warnings_for), updated as you type."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("serverNotes")
        self.setStyleSheet(f"QFrame#serverNotes {{ {theme.banner_style('warning')} }}")
        self.icon = QLabel()
        self.icon.setPixmap(load_icon("warning").pixmap(QSize(18, 18)))
        self.text = QLabel()
        self.text.setObjectName("serverNotesText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 0, 2, 0)  # the banner style pads too
        row.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.text, 1)
        self.notes: list[str] = []

    def set_notes(self, notes: list[str], *, bullets: bool = True) -> None:
        self.notes = notes
        mark = "• " if bullets else ""
        self.text.setText("\n".join(f"{mark}{note}" for note in notes))
        self.setVisible(bool(notes))


class ServerDialog(EditorDialog):
    """``row`` is ``servers.server_as_dict`` of the server to edit, or None to create one.

    With ``build_now=False`` the caller runs ``build_steps()`` one per event-loop turn:
    the dialog has some 150 widgets, and making and polishing them all in one go can hold
    the loop longer than a frame on a slow machine.
    """

    test_panel: SmtpTestPanel

    def __init__(
        self,
        context: AppContext,
        row: dict[str, Any] | None,
        parent: QWidget | None = None,
        *,
        build_now: bool = True,
    ) -> None:
        title = f"Edit Delivery Server: {row['name']}" if row else "Create a New Delivery Server"
        super().__init__(context, title, parent)
        self.setObjectName("serverDialog")
        self.resize(720, 700)
        self.row = row
        self.original_name: str | None = row["name"] if row else None
        self.version: int | None = row["version"] if row else None
        self.saved_name: str | None = None
        self.notes = NotesBox()
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(1, self.notes)
        if build_now:
            for step in self.build_steps():
                step()

    def build_steps(self) -> list[Callable[[], None]]:
        return [self._build_method_tab, self._build_domains_tab, self._build_test_tab, self._ready]

    def _build_method_tab(self) -> None:
        self.method = self.add_form("Delivery &Method")
        self.method.setObjectName("deliveryMethodForm")
        self._build_method(self.method)
        self.method.ensurePolished()

    def _build_domains_tab(self) -> None:
        self.domains = self.add_form("&Domains")
        self.domains.setObjectName("domainsForm")
        self._build_domains(self.domains)
        self.domains.ensurePolished()

    def _build_test_tab(self) -> None:
        self.test_panel = SmtpTestPanel(self.context, self.build_target, self._record_as)
        self.test_panel.setObjectName("testPanel")
        self.tabs.addTab(self.test_panel, "Te&st")
        self.test_panel.ensurePolished()

    def _ready(self) -> None:
        for form in self.forms:
            form.changed.connect(self._form_changed)
        self._load(self.row or NEW_SERVER_DEFAULTS)

    def _record_as(self) -> str | None:
        return self.original_name

    # ------------------------------------------------------------------ building

    def add_form(self, title: str, form: Form | None = None) -> Form:
        """Forms scroll inside their tab: the Delivery Method tab is taller than a laptop."""
        form = form or Form()
        self.forms.append(form)
        scroller = QScrollArea()
        scroller.setWidgetResizable(True)
        scroller.setFrameShape(QFrame.Shape.NoFrame)
        scroller.setWidget(form)
        # The viewport would otherwise paint the Base colour, unlike the other tab pages.
        scroller.viewport().setBackgroundRole(QPalette.ColorRole.Window)
        form.setBackgroundRole(QPalette.ColorRole.Window)
        self.tabs.addTab(scroller, title)
        return form

    def _build_method(self, form: Form) -> None:
        form.add_line("name", *_spec("name"), placeholder="e.g. US Marketing Server")
        form.add_line("host", *_spec("host"), placeholder="smtp.example.com")
        form.add_line(
            "port",
            *_spec("port"),
            placeholder="587",
            hint="Common ports: 25 (unencrypted), 587 (STARTTLS), 465 (SSL).",
        )
        label, parse = _spec("encryption")
        form.add_combo(
            "encryption",
            label,
            ENCRYPTION_CHOICES,
            parse,
            hint="SSL (usually port 465) encrypts from the first byte; STARTTLS (usually "
            "587) connects unencrypted, then switches to encryption. Use one of them in "
            'production. (The reference calls STARTTLS "TLS".)',
        )
        form.add_line(
            "timeout_seconds",
            *_spec("timeout_seconds"),
            placeholder="10",
            hint="Seconds. Increase it for a remote or slow SMTP server.",
        )
        label, parse = _spec("auth_enabled")
        self.auth_combo = form.add_combo(
            "auth_enabled",
            label,
            AUTH_CHOICES,
            parse,
            hint="Most production SMTP servers need a login.",
        )
        self.username_edit = form.add_line("username", *_spec("username"), placeholder="SMTP login")
        self.password_edit = form.add_line(
            "password", "Password", _password, password=True, empty_is_none=False
        )
        self.remove_password = form.add_check("remove_password", "Remove stored password")
        form.add_check(
            "allow_unverified_certificate",
            *_spec("allow_unverified_certificate")[:1],
            hint="Warning: skips the certificate check, so anyone on the network path can "
            "read the mail and the password. Only for a relay with a self-signed "
            "certificate on a network you trust.",
        )
        form.add_line("hourly_quota", *_spec("hourly_quota"), placeholder="Unlimited")
        form.add_line(
            "daily_quota",
            *_spec("daily_quota"),
            placeholder="Unlimited",
            hint="Messages this server may take; empty or 0 means unlimited.",
        )
        form.add_line(
            "max_connections",
            *_spec("max_connections"),
            placeholder="5",
            hint="Parallel SMTP sessions the send engines may open to this server.",
        )

    def _build_domains(self, form: Form) -> None:
        form.add_line(
            "link_tracking_domain", *_spec("link_tracking_domain"), placeholder="click.example.com"
        )
        form.add_line(
            "open_tracking_domain", *_spec("open_tracking_domain"), placeholder="track.example.com"
        )
        form.add_line(
            "mail_from_domain",
            *_spec("mail_from_domain"),
            placeholder="bounces.example.com",
            hint="The return-path (MFROM) domain: bounce notifications are sent to it.",
        )
        form.add_line(
            "enforced_from_email",
            *_spec("enforced_from_email"),
            placeholder="Leave empty to let each campaign set its From address",
        )
        form.add_check(
            "sender_info_as_mfrom",
            *_spec("sender_info_as_mfrom")[:1],
            hint="Use the sender information of the subscriber list in the Mail From address.",
        )
        form.add_check(
            "sender_info_as_from",
            *_spec("sender_info_as_from")[:1],
            hint="Use the sender information of the subscriber list in the From header.",
        )
        dns_note = NotesBox()
        dns_note.setObjectName("dnsNote")
        dns_note.setStyleSheet(f"QFrame#dnsNote {{ {theme.banner_style('warning')} }}")
        dns_note.set_notes(
            [
                "The Link Tracking, Open Tracking and Mail From domains need DNS records (A "
                "or CNAME) pointing to your Postroom server; without them tracking links do "
                "not work and bounces are not processed."
            ],
            bullets=False,
        )
        form.layout_.addRow(dns_note)

    def field(self, key: str) -> QWidget:
        for form in self.forms:
            if key in form.fields:
                return form.fields[key].widget
        raise KeyError(key)

    # ------------------------------------------------------------------ state

    def _load(self, row: dict[str, object]) -> None:
        values = {**row, "password": "", "remove_password": False}
        for form in self.forms:
            form.load(values)
        has_password = bool(row.get("has_password"))
        # The form lays out a holder (field, hint, error) per row: hide that row.
        holder = self.remove_password.parentWidget()
        assert holder is not None
        self.method.layout_.setRowVisible(holder, has_password)
        self.password_edit.setPlaceholderText(
            "Stored: leave empty to keep it" if has_password else ""
        )
        self._form_changed()

    def _form_changed(self) -> None:
        auth = self.auth_combo.currentData() is True
        self.username_edit.setEnabled(auth)
        removing = self.remove_password.isChecked()
        self.password_edit.setEnabled(auth and not removing)
        self.remove_password.setEnabled(auth)
        self.notes.set_notes(servers.warnings_for(self._draft()))

    def _parsed(self, key: str) -> object:
        """The field's value if it parses, else None (a draft for the notes only)."""
        for form in self.forms:
            bound = form.fields.get(key)
            if bound is not None and bound.parse is None:
                return bound.read()  # a check box: nothing to refuse
            if bound is not None and bound.parse is not None:
                try:
                    return bound.parse(bound.read(), bound.label)
                except ValidationError:
                    return None
        return None

    def _will_have_password(self) -> bool:
        if self.password_edit.text():
            return True
        stored = bool(self.row and self.row.get("has_password"))
        return stored and not self.remove_password.isChecked()

    def _draft(self) -> DeliveryServer:
        # A transient row, never added to a session: warnings_for only reads attributes,
        # so the form shows the service's own notes without a database round trip.
        draft = DeliveryServer()
        for key in ("port", "encryption", "auth_enabled", "allow_unverified_certificate"):
            setattr(draft, key, self._parsed(key))
        draft.mail_from_domain = self._parsed("mail_from_domain")  # type: ignore[assignment]
        draft.password_encrypted = "stored" if self._will_have_password() else None
        return draft

    def collect(self) -> dict[str, object] | None:
        values = super().collect()
        if values is None:
            # Show the first tab with a refused field (the forms sit inside scroll areas,
            # so the base class cannot select their tab by the form itself).
            for index, form in enumerate(self.forms):
                if any(not bound.error.isHidden() for bound in form.fields.values()):
                    self.tabs.setCurrentIndex(index)
                    break
        return values

    # ------------------------------------------------------------------ saving

    async def save(self, values: dict[str, object]) -> None:
        values = dict(values)
        password = values.pop("password")
        remove = bool(values.pop("remove_password", False))
        if not values.get("auth_enabled"):
            password = None  # the service drops a password nobody would use
        assert password is None or isinstance(password, str)
        options: dict[str, Any] = {}
        if password is not None:
            # May raise SecretsUnavailable / VaultKeyError: one sentence in the dialog.
            options = {"password": password, "cipher": await self.context.cipher()}
        if self.original_name is None:
            # A test run on these very settings before the first save is what the list
            # should show, not "Not tested"; a test of other settings would mislead.
            report = self._report_for(values, password)
            server = await self.context.write(create_tested_server, values, report, **options)
        else:
            if password is None and remove:
                options = {"password": None}
            server = await self.context.write(
                servers.update_server,
                self.original_name,
                values,
                expected_version=self.version,
                **options,
            )
        self.saved_name = server.name
        self.context.changed.emit("delivery_server")

    async def reload(self) -> None:
        if self.original_name is None:
            return
        row = await self.context.read(server_row, self.original_name)
        self.row = row
        self.version = row["version"]
        self._load(row)
        self.show_error(None)

    # ------------------------------------------------------------------ testing

    def _report_for(
        self, values: dict[str, object], password: str | None
    ) -> SmtpCheckReport | None:
        """The Test tab's last result if it tested exactly the settings being saved."""
        try:
            target = target_from(dict(values), password)
        except ValidationError:
            return None
        return self.test_panel.result_for(target)

    async def build_target(self) -> SmtpTarget:
        """The form's current connection values as a test target (saved or not)."""
        parsed: dict[str, Any] = {}
        problems: list[str] = []
        for form in self.forms:
            for key in (*CONNECTION_FIELDS, "password", "mail_from_domain"):
                bound = form.fields.get(key)
                if bound is None:
                    continue
                good, value = bound.check()
                if good:
                    parsed[key] = value
                else:
                    problems.append(bound.label)
        if problems:
            raise ValidationError(
                problems[0], "needs a valid value before testing; see the message under it."
            )
        auth = boolean(parsed["auth_enabled"], "Authentication")
        password: str | None = parsed["password"] if auth else None
        if (
            auth
            and password is None
            and self.original_name is not None
            and self.row is not None
            and self.row.get("has_password")
            and not self.remove_password.isChecked()
        ):
            # The stored password, decrypted in the executor only for this session.
            cipher = await self.context.cipher()
            password = await self.context.read(stored_password, self.original_name, cipher)
        return target_from(parsed, password)

    def done(self, result: int) -> None:
        # A test still running would write into a closed dialog: stop it with the dialog.
        if hasattr(self, "test_panel"):
            self.test_panel.cancel()
        super().done(result)
