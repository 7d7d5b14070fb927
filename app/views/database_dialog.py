"""The Database dialog: pick a SQLite file or a PostgreSQL / MariaDB server, test it, save it.

Profiles (``app.services.profiles``) remember remote connections; their passwords live in
the OS keyring, never in the profile file and never on screen. Where no usable keyring
exists the dialog says so in one sentence and offers the explicit alternative: connect
with the password typed for this session only, or save the profile without it.

Everything that may block (connecting, the keyring, the profile file) runs in the
executor; the dialog only awaits the results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QPalette, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.models.database import (
    default_sqlite_path,
)
from app.services import profiles, validation
from app.services.errors import SecretsUnavailable, ValidationError
from app.services.keyring_store import KeyringStatus, keyring_status
from app.services.profiles import (
    DEFAULT_PORTS,
    KIND_MARIADB,
    KIND_POSTGRESQL,
    KIND_SQLITE,
    NEW_FILE_NOTE,
    ConnectionFailed,
    check_connection,
    describe_profile,
    describe_sqlite_file,
    same_target,
    server_url,
    sqlite_url,
    url_parts,
    without_password,
)
from app.views import theme
from app.views.context import AppContext
from app.views.focus import apply_reading_order, focus_first_field, mark_focus_in
from app.views.forms import Form, error_label

KINDS = (
    (KIND_SQLITE, "SQLite file on this computer"),
    (KIND_POSTGRESQL, "PostgreSQL server"),
    (KIND_MARIADB, "MariaDB or MySQL server"),
)

# (url, profile name or None) -> None when the database is open, else why not (one sentence).
Opener = Callable[[str, str | None], Awaitable[str | None]]

LOOK_DELAY_MS = 250  # after the last keystroke, before the file is looked at


# ---------------------------------------------------------------- the dialog


def _required_text(value: object, field: str) -> str:
    if value is None or not str(value).strip():
        raise ValidationError(field, "is required.")
    return validation.name(value, field)


def _optional_text(value: object, field: str) -> str | None:
    if value is None or not str(value).strip():
        return None
    return validation.name(value, field)


class DatabaseDialog(QDialog):
    """Choose, test and remember the database the console works on."""

    def __init__(
        self,
        context: AppContext,
        *,
        opener: Opener | None = None,
        current_url: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.context = context
        self.opener = opener
        self.keyring: KeyringStatus | None = None
        self.saved_profiles: list[profiles.ConnectionProfile] = []
        self._selected: profiles.ConnectionProfile | None = None
        self._busy = False
        self.setObjectName("databaseDialog")
        self.setWindowTitle("Open a Database")
        self.setModal(True)
        self.resize(880, 580)
        # Tests replace these instead of answering a real file dialog or question box.
        self.choose_sqlite_file: Callable[[str], Awaitable[str | None]] = self._browse
        self.confirm_forget: Callable[[str], bool] = self._ask_forget

        intro = QLabel(
            "Postroom keeps its configuration in a database: a SQLite file on this computer, "
            "or a PostgreSQL or MariaDB server that several administrators share."
        )
        intro.setWordWrap(True)
        self.keyring_banner = QLabel()
        self.keyring_banner.setObjectName("keyringBanner")
        self.keyring_banner.setWordWrap(True)
        self.keyring_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.keyring_banner.setVisible(False)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.keyring_banner)
        columns = QHBoxLayout()
        columns.addWidget(self._build_profiles(), 3)
        columns.addSpacing(8)
        columns.addLayout(self._build_connection(), 6)
        layout.addLayout(columns, 1)
        self.message = QLabel()
        self.message.setObjectName("databaseMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setMinimumHeight(self.message.fontMetrics().lineSpacing() * 2)
        self.message.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.message)
        layout.addLayout(self._build_buttons())

        self._load_url(current_url)
        self._note_timer.stop()  # the first look at the file need not wait
        self._look_at_file()
        self.context.spawn(self._load_profiles(), on_error=self.show_error)
        self.context.spawn(self._check_keyring(), on_error=self.show_error)

    # ------------------------------------------------------------------ building

    def _build_profiles(self) -> QWidget:
        box = QGroupBox("Saved profiles")
        self.profile_list = QListWidget()
        self.profile_list.setObjectName("profileList")
        self.profile_list.setAccessibleName("Saved profiles")
        # Long host names are cut short (the tooltip has the whole URL) rather
        # than hidden behind a horizontal scroll bar.
        self.profile_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.profile_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.profile_list.setMinimumWidth(230)
        self.profile_list.currentRowChanged.connect(self._on_profile_selected)
        self.profile_list.itemActivated.connect(lambda _item: self.connect_database())
        self.no_profiles = QLabel("None yet. Fill in a server on the right and save it.")
        self.no_profiles.setWordWrap(True)
        self.no_profiles.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.forget_button = QPushButton("&Forget")
        self.forget_button.setObjectName("forgetProfileButton")
        self.forget_button.setToolTip("Remove the profile and its password from this computer")
        self.forget_button.setEnabled(False)
        self.forget_button.clicked.connect(self.forget_profile)
        column = QVBoxLayout(box)
        column.addWidget(self.profile_list, 1)
        column.addWidget(self.no_profiles)
        column.addWidget(self.forget_button, 0, Qt.AlignmentFlag.AlignLeft)
        return box

    def _build_connection(self) -> QVBoxLayout:
        column = QVBoxLayout()
        top = QFormLayout()
        self.kind = QComboBox()
        self.kind.setObjectName("databaseKind")
        self.kind.setAccessibleName("Database type")
        for kind, label in KINDS:
            self.kind.addItem(label, kind)
        kind_label = QLabel("&Type:")
        kind_label.setBuddy(self.kind)
        top.addRow(kind_label, self.kind)
        column.addLayout(top)

        self.pages = QStackedWidget()
        self.pages.addWidget(self._build_sqlite_page())
        self.pages.addWidget(self._build_server_page())
        column.addWidget(self.pages)
        column.addWidget(self._build_save_box())
        column.addStretch(1)
        self.kind.currentIndexChanged.connect(self._on_kind_changed)
        return column

    def _build_sqlite_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        self.sqlite_path = QLineEdit()
        self.sqlite_path.setObjectName("sqlitePath")
        self.sqlite_path.setAccessibleName("SQLite file")
        self.sqlite_path.setPlaceholderText(str(default_sqlite_path()))
        self.browse_button = QPushButton("&Browse…")
        self.browse_button.setObjectName("browseButton")
        self.browse_button.clicked.connect(self.browse)
        self.default_button = QPushButton("Use the &Default")
        self.default_button.setToolTip(f"The built-in database: {default_sqlite_path()}")
        self.default_button.clicked.connect(
            lambda: self.sqlite_path.setText(str(default_sqlite_path()))
        )
        row = QHBoxLayout()
        row.addWidget(self.sqlite_path, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.default_button)
        self.sqlite_error = error_label()
        self.sqlite_error.setObjectName("sqlitePathError")
        holder = QVBoxLayout()
        holder.setSpacing(2)
        holder.addLayout(row)
        # Says whether the file exists and what it holds, as the path changes.
        self.sqlite_note = QLabel(NEW_FILE_NOTE)
        self.sqlite_note.setObjectName("sqliteFileNote")
        self.sqlite_note.setWordWrap(True)
        self.sqlite_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self._note_timer = QTimer(self)
        self._note_timer.setSingleShot(True)
        self._note_timer.setInterval(LOOK_DELAY_MS)
        self._note_timer.timeout.connect(self._look_at_file)
        holder.addWidget(self.sqlite_note)
        holder.addWidget(self.sqlite_error)
        file_label = QLabel("F&ile:")
        file_label.setBuddy(self.sqlite_path)
        form.addRow(file_label, holder)
        self.sqlite_path.textEdited.connect(lambda _text: self.sqlite_error.setVisible(False))
        self.sqlite_path.textChanged.connect(lambda _text: self._note_timer.start())
        return page

    def _look_at_file(self) -> None:
        path = self.sqlite_path.text()
        self.context.spawn(self._describe_file(path), on_error=self.sqlite_note.setText)

    async def _describe_file(self, path: str) -> None:
        note = await self.context.in_executor(describe_sqlite_file, path)
        if self.sqlite_path.text() == path:  # not superseded by further typing
            self.sqlite_note.setText(note)

    def _build_server_page(self) -> QWidget:
        self.server = Form()
        self.server.layout_.setContentsMargins(0, 0, 0, 0)
        self.server.add_line("host", "Host", validation.hostname, placeholder="db.example.internal")
        self.server.add_line("port", "Port", validation.port)
        self.server.add_line("database", "Database", _required_text, placeholder="postroom")
        self.server.add_line("username", "User", _optional_text)
        self.password = self.server.add_line(
            "password", "Password", None, password=True, empty_is_none=True
        )
        self.password.setObjectName("passwordField")
        self.server.changed.connect(self._on_server_edited)
        return self.server

    def _build_save_box(self) -> QWidget:
        box = QGroupBox("Remember this connection")
        form = QFormLayout(box)
        self.profile_name = QLineEdit()
        self.profile_name.setObjectName("profileName")
        self.profile_name.setAccessibleName("Profile name")
        self.profile_name.setPlaceholderText("e.g. production")
        name_label = QLabel("Profile &name:")
        name_label.setBuddy(self.profile_name)
        self.save_password = QCheckBox("Save the password in the &keyring")
        self.save_password.setObjectName("savePasswordCheck")
        self.save_password.setChecked(True)
        self.save_profile_button = QPushButton("&Save Profile")
        self.save_profile_button.setObjectName("saveProfileButton")
        self.save_profile_button.clicked.connect(self.save_profile)
        form.addRow(name_label, self.profile_name)
        form.addRow("", self.save_password)
        button_row = QHBoxLayout()
        button_row.addWidget(self.save_profile_button)
        button_row.addStretch(1)
        form.addRow("", button_row)
        return box

    def _build_buttons(self) -> QHBoxLayout:
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.test_button = QPushButton("&Test Connection")
        self.test_button.setObjectName("testConnectionButton")
        self.test_button.setToolTip("Connect and run SELECT 1, without switching (Ctrl+T)")
        self.connect_button = QPushButton("&Connect")
        self.connect_button.setObjectName("connectButton")
        self.connect_button.setDefault(True)
        self.buttons.addButton(self.connect_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.test_button.clicked.connect(self.test_connection)
        self.connect_button.clicked.connect(self.connect_database)
        self.buttons.rejected.connect(self.reject)
        QShortcut(QKeySequence("Ctrl+T"), self, self.test_connection)
        # Test sits apart from the buttons that close the dialog.
        row = QHBoxLayout()
        row.addWidget(self.test_button)
        row.addStretch(1)
        row.addWidget(self.buttons)
        return row

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not event.spontaneous():
            mark_focus_in(self)
            apply_reading_order(self)
            # The connection's first field: the file, or the first empty server field
            # (often the password, which is never filled in for you).
            page = self.pages.currentWidget()
            if page is not None:
                focus_first_field(page)

    # ------------------------------------------------------------------ state

    def current_kind(self) -> str:
        kind = self.kind.currentData()
        return kind if isinstance(kind, str) else KIND_SQLITE

    def set_kind(self, kind: str) -> None:
        self.kind.setCurrentIndex(max(self.kind.findData(kind), 0))

    def _on_kind_changed(self, _index: int) -> None:
        kind = self.current_kind()
        self.pages.setCurrentIndex(0 if kind == KIND_SQLITE else 1)
        if kind != KIND_SQLITE:
            port = self.server.fields["port"]
            # Follow the server type's usual port unless the user typed another one.
            if port.read() in (None, *[str(p) for p in DEFAULT_PORTS.values()]):
                port.write(DEFAULT_PORTS[kind])
        self._update_save_box()
        self.show_message(None)

    def _update_save_box(self) -> None:
        remote = self.current_kind() != KIND_SQLITE
        keyring_ok = self.keyring is None or self.keyring.usable
        self.save_password.setEnabled(remote and keyring_ok)
        if not keyring_ok:
            self.save_password.setChecked(False)

    def _load_url(self, url: str | None) -> None:
        """Fill the fields from ``url`` (the current database), never its password."""
        parsed = url_parts(url) if url else None
        if parsed is None or parsed.kind == KIND_SQLITE:
            path = parsed.database if parsed is not None and parsed.database else None
            self.sqlite_path.setText(path or str(default_sqlite_path()))
            self.set_kind(KIND_SQLITE)
            self._on_kind_changed(0)
            return
        self.set_kind(parsed.kind)
        self.server.load(
            {
                "host": parsed.host,
                "port": parsed.port or DEFAULT_PORTS[parsed.kind],
                "database": parsed.database,
                "username": parsed.username,
                "password": None,
            }
        )
        self._on_kind_changed(0)

    def url(self) -> str | None:
        """The URL the fields describe (with the typed password), or None if one is refused."""
        if self.current_kind() == KIND_SQLITE:
            path = self.sqlite_path.text().strip() or str(default_sqlite_path())
            if "\x00" in path:
                self._sqlite_refused("must not contain control characters.")
                return None
            self.sqlite_error.setVisible(False)
            return sqlite_url(path)
        values = self.server.values()
        if values is None:
            return None
        port = values["port"]
        return server_url(
            self.current_kind(),
            host=str(values["host"]),
            port=port if isinstance(port, int) else None,
            database=str(values["database"]),
            username=values["username"] if isinstance(values["username"], str) else None,
            password=self.password.text() or None,
        )

    def _sqlite_refused(self, reason: str) -> None:
        self.sqlite_error.setText(f"File {reason}")
        self.sqlite_error.setVisible(True)

    def _uses_saved_password(self, url: str) -> bool:
        profile = self._selected
        return bool(
            profile is not None
            and profile.has_password
            and not self.password.text()
            and same_target(url, profile.url_without_password)
        )

    async def resolved_url(self) -> str | None:
        """The URL to use: a saved profile's password comes from the keyring, unseen."""
        url = self.url()
        if url is None:
            self.show_error("Some fields need attention; see the messages under them.")
            return None
        if self._selected is not None and self._uses_saved_password(url):
            try:
                return await self.context.in_executor(profiles.profile_url, self._selected.name)
            except SecretsUnavailable:
                raise ConnectionFailed(
                    f"The password of {self._selected.name!r} is in a keyring that cannot be "
                    "opened now; type the password to connect without it."
                ) from None
        return url

    def _profile_name_for(self, url: str) -> str | None:
        profile = self._selected
        if profile is None:
            return None
        same = same_target(url, profile.url_without_password)
        return profile.name if same else None

    def _on_server_edited(self) -> None:
        self.show_message(None)

    # ------------------------------------------------------------------ keyring and profiles

    async def _check_keyring(self) -> None:
        self.keyring = await self.context.in_executor(keyring_status)
        usable = self.keyring.usable
        if not usable:
            self.keyring_banner.setText(
                f"No usable keyring was found ({self.keyring.backend}: {self.keyring.reason}), "
                "so Postroom cannot save passwords on this computer: connect with the "
                "password typed here for this session only, or save the profile without it."
            )
            self.keyring_banner.setStyleSheet(theme.banner_style("warning", self.palette()))
        self.keyring_banner.setVisible(not usable)
        self.save_password.setText(
            "Save the password in the &keyring"
            if usable
            else "Save the password (unavailable: no keyring)"
        )
        self._update_save_box()

    async def _load_profiles(self, select: str | None = None) -> None:
        self.saved_profiles = await self.context.in_executor(profiles.list_profiles)
        self.profile_list.blockSignals(True)
        self.profile_list.clear()
        for profile in self.saved_profiles:
            item = QListWidgetItem(f"{profile.name}\n{describe_profile(profile)}")
            item.setIcon(theme.tinted_icon("database", self.profile_list.palette()))
            # The URL never holds the password: profiles store it without one.
            item.setToolTip(profile.url_without_password)
            self.profile_list.addItem(item)
        self.profile_list.blockSignals(False)
        self.no_profiles.setVisible(not self.saved_profiles)
        names = [p.name for p in self.saved_profiles]
        if select in names:
            self.profile_list.setCurrentRow(names.index(select))
        else:
            self._selected = None
            self.forget_button.setEnabled(False)

    def _on_profile_selected(self, row: int) -> None:
        if not 0 <= row < len(self.saved_profiles):
            self._selected = None
            self.forget_button.setEnabled(False)
            return
        profile = self.saved_profiles[row]
        self._selected = profile
        self.forget_button.setEnabled(True)
        self.profile_name.setText(profile.name)
        self._load_url(profile.url_without_password)
        self.password.clear()
        self.password.setPlaceholderText(
            "saved in the keyring (type to replace)" if profile.has_password else ""
        )
        self.show_message(None)

    def select_profile(self, name: str) -> None:
        names = [p.name for p in self.saved_profiles]
        self.profile_list.setCurrentRow(names.index(name))

    # ------------------------------------------------------------------ actions

    def browse(self) -> None:
        self.context.spawn(self._choose_file(), on_error=self.show_error)

    async def _choose_file(self) -> None:
        start = self.sqlite_path.text().strip() or str(default_sqlite_path())
        chosen = await self.choose_sqlite_file(start)
        if chosen:
            self.sqlite_path.setText(chosen)
            self.sqlite_error.setVisible(False)

    async def _browse(self, start: str) -> str | None:
        from app.views.import_export import choose_file

        return await choose_file(
            self,
            title="Choose a SQLite Database File",
            suggested=start,
            filters="SQLite databases (*.sqlite3 *.sqlite *.db);;All files (*)",
            save=True,  # a new file name is allowed: connecting creates it
            confirm_overwrite=False,
        )

    def test_connection(self) -> None:
        if not self._busy:
            self.context.spawn(self._test(), on_error=self._failed)

    async def _test(self) -> str | None:
        url = await self.resolved_url()
        if url is None:
            return None
        self._set_busy(True, "Testing the connection…")
        try:
            result = await self.context.in_executor(check_connection, url)
        finally:
            self._set_busy(False)
        self.show_message(result, ok=True)
        return result

    def connect_database(self) -> None:
        if not self._busy:
            self.context.spawn(self._connect(), on_error=self._failed)

    async def _connect(self) -> None:
        url = await self.resolved_url()
        if url is None or self.opener is None:
            return
        self._set_busy(True, "Opening the database (and updating its tables if needed)…")
        try:
            problem = await self.opener(url, self._profile_name_for(url))
        finally:
            self._set_busy(False)
        if problem:
            self.show_error(problem)
            return
        self.accept()

    def save_profile(self) -> None:
        if not self._busy:
            self.context.spawn(self._save_profile(), on_error=self._failed)

    async def _save_profile(self) -> profiles.ConnectionProfile | None:
        name = self.profile_name.text()
        url = self.url()
        if url is None:
            self.show_error("Some fields need attention; see the messages under them.")
            return None
        remote = self.current_kind() != KIND_SQLITE
        keep_password = remote and self.save_password.isChecked() and self.save_password.isEnabled()
        if not keep_password:
            url = without_password(url)
        elif self._uses_saved_password(url):
            url = await self.resolved_url() or url  # re-saving keeps the keyring's password
        self._set_busy(True, "Saving the profile…")
        try:
            profile = await self.context.in_executor(profiles.save_profile, name, url)
        finally:
            self._set_busy(False)
        await self._load_profiles(select=profile.name)
        if profile.has_password:
            note = "its password is in the keyring"
        elif remote:
            note = "without a password: type it when you connect"
        else:
            note = "a SQLite file needs no password"
        self.show_message(f"Saved the profile {profile.name!r}; {note}.", ok=True)
        return profile

    def forget_profile(self) -> None:
        profile = self._selected
        if profile is None or self._busy or not self.confirm_forget(profile.name):
            return
        self.context.spawn(self._forget(profile.name), on_error=self._failed)

    async def _forget(self, name: str) -> None:
        await self.context.in_executor(profiles.delete_profile, name)
        await self._load_profiles()
        self.show_message(f"Forgot the profile {name!r} and its saved password.", ok=True)

    def _ask_forget(self, name: str) -> bool:
        answer = QMessageBox.question(
            self,
            "Forget the profile?",
            f"Forget the profile {name!r} and its saved password? The database itself is "
            "not touched.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------------------ messages

    def _set_busy(self, busy: bool, message: str | None = None) -> None:
        self._busy = busy
        for button in (self.test_button, self.connect_button, self.save_profile_button):
            button.setEnabled(not busy)
        if message:
            self.show_message(message)

    def _failed(self, message: str) -> None:
        self.show_error(message)

    def show_error(self, message: str) -> None:
        self.show_message(message, error=True)

    def show_message(self, message: str | None, *, ok: bool = False, error: bool = False) -> None:
        self.message.setText(message or "")
        if error:
            colour = theme.error_colour(self.palette())
        elif ok:
            colour = theme.success_colour(self.palette())
        else:
            colour = ""
        self.message.setStyleSheet(f"color: {colour};" if colour else "")
