"""Named connection profiles: remote database URLs a workstation can pick by name.

The profile file (``profiles.yaml`` in the user config directory) holds each URL *without*
its password; the password goes to the keyring as ``profile:<name>``. A copied or
backed-up config directory therefore reveals no database password.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import platformdirs
import yaml
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.models.database import (
    APP_NAME,
    SCHEMA_HEAD,
    connection_error_sentence,
    create_db_engine,
    default_sqlite_path,
    redact_url,
    schema_revision,
)
from app.services import validation
from app.services.errors import NotFoundError, PostroomError, ValidationError
from app.services.keyring_store import SecretStore

PROFILES_FILE = "profiles.yaml"
_FORMAT_VERSION = 1
ENTITY = "connection profile"
_BAD_HOST_CHARS = re.compile(r"[/?#@\s]")

# Driver names as the user may write them, and what we store. Plain ``postgresql`` is
# pinned to psycopg so the profile keeps working whatever SQLAlchemy's default becomes.
_DRIVERS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb+pymysql": "mariadb+pymysql",
}


@dataclass(frozen=True)
class ConnectionProfile:
    """A saved connection; ``has_password`` says whether the keyring holds a password."""

    name: str
    url_without_password: str
    backend: str  # SQLAlchemy backend name: sqlite, postgresql, mysql or mariadb
    has_password: bool = False


def profiles_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / PROFILES_FILE


def _secret_name(name: str) -> str:
    return f"profile:{name}"


# A profile password has no vault-key-style opt-in: without a keyring it is simply not
# saved, and the user gives it each time instead.
KEYRING_ALTERNATIVES = (
    "install and unlock a Secret Service such as gnome-keyring or KWallet, or save the "
    "profile without its password and connect with the full URL (--database or "
    "POSTROOM_DATABASE_URL, or typed in the Database dialog) instead"
)


def _store_or_default(store: SecretStore | None) -> SecretStore:
    return store if store is not None else SecretStore(alternatives=KEYRING_ALTERNATIVES)


def _profile_name(value: object) -> str:
    return validation.name(value, "Profile name", max_length=100)


def _parse_url(url: object) -> URL:
    field = "Database URL"
    if not isinstance(url, str) or not url.strip():
        raise ValidationError(field, "a URL such as postgresql://user:password@host/db is needed.")
    validation.no_control_chars(url, field)
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):
        raise ValidationError(
            field, "is not a database URL; write it like postgresql://user:password@host/db."
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValidationError(
            field,
            f"the driver {parsed.drivername!r} is not supported; use sqlite, "
            "postgresql+psycopg, mysql+pymysql or mariadb+pymysql.",
        )
    if driver != "sqlite":
        # A password with unescaped "/", "@" or "#" makes the parser put the rest of the
        # URL somewhere odd; refuse that rather than save a profile that cannot connect.
        socket = parsed.query.get("host") or parsed.query.get("unix_socket")
        if not parsed.host and not socket:
            raise ValidationError(
                field,
                "no server host was found; write user:password@host/database and "
                "percent-encode special characters in the password (/ is %2F, @ is %40).",
            )
        if parsed.host and _BAD_HOST_CHARS.search(parsed.host):
            raise ValidationError(
                field,
                f"the host {parsed.host!r} is not a host name; percent-encode special "
                "characters in the password (/ is %2F, @ is %40, # is %23).",
            )
    # The file must never hold a password, so one smuggled into the query is refused
    # rather than silently written out.
    for key in parsed.query:
        if "pass" in key.lower():
            raise ValidationError(
                field,
                f"the query parameter {key!r} looks like a password; put the password in "
                "the user:password@ part instead.",
            )
    return parsed.set(drivername=driver)


def _without_password(url: URL) -> str:
    # URL.set(password=None) keeps the old password (None means "unchanged"), so the URL
    # is rebuilt from its parts.
    bare = URL.create(
        url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )
    return bare.render_as_string(hide_password=False)


def _broken_file(path: Path, problem: str) -> ValidationError:
    return ValidationError(
        str(path), f"{problem}; fix the file or delete it and save the profiles again."
    )


def _read_all() -> dict[str, ConnectionProfile]:
    path = profiles_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        raise _broken_file(path, "is not valid YAML") from None
    if data is None:
        return {}
    entries = data.get("profiles") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise _broken_file(path, "has no 'profiles' mapping")
    profiles: dict[str, ConnectionProfile] = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise _broken_file(path, f"has a malformed entry {name!r}")
        url = entry.get("url")
        if not isinstance(url, str):
            raise _broken_file(path, f"has no URL for the profile {name!r}")
        try:
            backend = make_url(url).get_backend_name()
        except (ArgumentError, ValueError):
            raise _broken_file(path, f"has an unreadable URL for the profile {name!r}") from None
        profiles[name] = ConnectionProfile(
            name=name,
            url_without_password=url,
            backend=backend,
            has_password=entry.get("password_in_keyring") is True,
        )
    return profiles


def _write_all(profiles: dict[str, ConnectionProfile]) -> None:
    path = profiles_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {
        "version": _FORMAT_VERSION,
        "profiles": {
            p.name: {"url": p.url_without_password, "password_in_keyring": p.has_password}
            for p in sorted(profiles.values(), key=lambda p: p.name)
        },
    }
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    # Write a private temporary file next to the target and rename it over: readers see
    # the old or the new file, never half of one, and it is never world-readable.
    fd, temp_name = tempfile.mkstemp(prefix=".profiles-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if os.name == "posix":
                os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def save_profile(name: str, url: str, store: SecretStore | None = None) -> ConnectionProfile:
    """Create or replace the profile ``name``; its password goes to the keyring only."""
    clean_name = _profile_name(name)
    parsed = _parse_url(url)
    profiles = _read_all()
    previous = profiles.get(clean_name)
    has_password = bool(parsed.password)
    secrets = _store_or_default(store)
    # Keyring first: if it is unavailable the profile file stays as it was.
    if has_password:
        secrets.set(_secret_name(clean_name), str(parsed.password))
    elif previous is not None and previous.has_password:
        secrets.delete(_secret_name(clean_name))  # a stale password must not come back
    profile = ConnectionProfile(
        name=clean_name,
        url_without_password=_without_password(parsed),
        backend=parsed.get_backend_name(),
        has_password=has_password,
    )
    profiles[clean_name] = profile
    _write_all(profiles)
    return profile


def list_profiles() -> list[ConnectionProfile]:
    return sorted(_read_all().values(), key=lambda p: p.name.casefold())


def get_profile(name: str) -> ConnectionProfile:
    clean_name = _profile_name(name)
    profile = _read_all().get(clean_name)
    if profile is None:
        raise NotFoundError(ENTITY, clean_name)
    return profile


def profile_url(name: str, store: SecretStore | None = None) -> str:
    """The profile's full URL, its password taken back from the keyring."""
    profile = get_profile(name)
    if not profile.has_password:
        return profile.url_without_password
    password = _store_or_default(store).get(_secret_name(profile.name))
    if password is None:
        raise ValidationError(
            f"Profile {profile.name!r}",
            "its password is no longer in the keyring; save the profile again with the "
            "password in the URL.",
        )
    return (
        make_url(profile.url_without_password)
        .set(password=password)
        .render_as_string(hide_password=False)
    )


def delete_profile(name: str, store: SecretStore | None = None) -> None:
    """Remove the profile and its keyring password."""
    profile = get_profile(name)
    if profile.has_password:
        # Keyring first, so a failure leaves no password behind without its profile.
        _store_or_default(store).delete(_secret_name(profile.name))
    profiles = _read_all()
    profiles.pop(profile.name, None)
    _write_all(profiles)


# ---------------------------------------------------------------- URLs the console builds and reads
#
# The database dialog and the status bar take URLs apart and put them together; they do
# it here, so that the console's views need no SQLAlchemy of their own.

KIND_SQLITE = "sqlite"
KIND_POSTGRESQL = "postgresql"
KIND_MARIADB = "mariadb"
SERVER_DRIVERS = {KIND_POSTGRESQL: "postgresql+psycopg", KIND_MARIADB: "mysql+pymysql"}
DEFAULT_PORTS = {KIND_POSTGRESQL: 5432, KIND_MARIADB: 3306}
_BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MySQL"}
# A test against a host that drops packets should answer in seconds, not minutes.
CONNECT_TIMEOUT_S = 8


class ConnectionFailed(PostroomError):
    """A test connection was refused; the message says why and what to check."""


@dataclass(frozen=True)
class UrlParts:
    """A database URL taken apart, without its password."""

    kind: str  # KIND_SQLITE, KIND_POSTGRESQL or KIND_MARIADB
    host: str | None
    port: int | None
    database: str | None
    username: str | None

    def same_target(self, other: UrlParts) -> bool:
        """Whether both reach the same database as the same user (passwords aside)."""

        def key(parts: UrlParts) -> tuple[object, ...]:
            port = parts.port or DEFAULT_PORTS.get(parts.kind)
            return (parts.kind, parts.host, port, parts.database, parts.username)

        return key(self) == key(other)


def _kind_of(url: URL) -> str:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return KIND_SQLITE
    return KIND_POSTGRESQL if backend == "postgresql" else KIND_MARIADB


def url_parts(url: str) -> UrlParts | None:
    """``url`` taken apart, or None if it is not a database URL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    return UrlParts(
        kind=_kind_of(parsed),
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        username=parsed.username,
    )


def same_target(a: str, b: str) -> bool:
    """Whether two URLs reach the same database as the same user; False if one is unreadable."""
    first, second = url_parts(a), url_parts(b)
    return first is not None and second is not None and first.same_target(second)


def sqlite_url(path: str | os.PathLike[str]) -> str:
    absolute = os.path.abspath(os.path.expanduser(path))
    return URL.create("sqlite", database=absolute).render_as_string(hide_password=False)


def server_url(
    kind: str,
    *,
    host: str,
    port: int | None,
    database: str,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """A PostgreSQL or MariaDB URL; special characters in the password are escaped."""
    return URL.create(
        SERVER_DRIVERS[kind],
        username=username or None,
        password=password or None,
        host=host,
        port=port,
        database=database,
    ).render_as_string(hide_password=False)


def without_password(url: str) -> str:
    """``url`` with no password at all (not even a mask): what a profile file holds."""
    return _without_password(make_url(url))


def display_url(url: str) -> str:
    """The URL as it may be shown (password masked); a placeholder if it is unreadable,
    since an unreadable URL may hold a password in a place the parser missed."""
    try:
        return redact_url(url)
    except (ArgumentError, ValueError):
        return "(unreadable database URL)"


def profile_for_url(url: str) -> str | None:
    """The saved profile that points where ``url`` does, if any (reads the profile file)."""
    target = url_parts(url)
    if target is None or target.kind == KIND_SQLITE:
        return None
    try:
        for profile in list_profiles():
            parts = url_parts(profile.url_without_password)
            if parts is not None and parts.same_target(target):
                return profile.name
    except (PostroomError, OSError):
        return None  # a broken profiles file only costs the name in the status bar
    return None


def describe_profile(profile: ConnectionProfile) -> str:
    """``PostgreSQL · host`` or ``SQLite · file name``: a profile in a few words."""
    parts = url_parts(profile.url_without_password)
    if parts is None:
        return profile.backend
    if parts.kind == KIND_SQLITE:
        return f"SQLite · {Path(parts.database or '').name}"
    name = "PostgreSQL" if parts.kind == KIND_POSTGRESQL else "MariaDB"
    return f"{name} · {parts.host or 'localhost'}"


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def check_connection(url: str) -> str:
    """Connect, run SELECT 1 and say what is there; ``ConnectionFailed`` says why not.

    Blocking: run it in an executor. A SQLite file that does not exist yet is not created
    here: only its folder is checked, since opening the database creates and migrates it.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConnectionFailed(
            "The database URL cannot be read; check the connection settings."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = Path(parsed.database or "")
        if path.is_dir():
            raise ConnectionFailed(f"{path} is a folder; choose a file name inside it.")
        if not path.exists():
            folder = _first_existing(path.parent)
            if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                raise ConnectionFailed(
                    f"{path.name} cannot be created because {folder} is not a writable "
                    "folder; choose another place."
                )
            if not path.parent.is_dir():
                return (
                    f"{path.name} does not exist yet; Postroom creates it, and the folder "
                    f"{path.parent}, and sets it up on connect."
                )
            return f"{path.name} does not exist yet; Postroom creates and sets it up on connect."
    elif "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    engine = create_db_engine(parsed.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        revision = schema_revision(engine)
        version = engine.dialect.server_version_info
        is_mariadb = bool(getattr(engine.dialect, "is_mariadb", False))
    except Exception as exc:
        raise ConnectionFailed(connection_error_sentence(exc, url)) from None
    finally:
        engine.dispose()
    name = "MariaDB" if is_mariadb else _BACKEND_NAMES.get(backend, backend)
    if version and backend != "sqlite":
        name += " " + ".".join(str(part) for part in version[:2])
    if revision is None:
        return f"Connected to {name}; Postroom sets up its tables when you connect."
    return f"Connected to {name}: a Postroom database (schema {revision})."


# ---------------------------------------------------------------- what a SQLite file holds

NEW_FILE_NOTE = "A new file is created and set up when you connect."
SQLITE_MAGIC = b"SQLite format 3\x00"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    amount = size / 1024
    for unit in ("KB", "MB"):
        if amount < 1024:
            return f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"


def _sqlite_revision(path: Path) -> str | None:
    """The Alembic revision in a SQLite file, read without changing the file.

    Opened read-only through the sqlite3 module, not through Postroom's engine, whose
    connect hook switches the journal to WAL: looking at someone else's file must not
    change it.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=2)) as connection:
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
    return str(row[0]) if row else None


def describe_sqlite_file(path_text: str) -> str:
    """What connecting to this SQLite path would find, in one sentence (blocking)."""
    path = Path(path_text.strip() or default_sqlite_path())
    if path.is_dir():
        return f"{path} is a folder; choose a file name inside it."
    if not path.exists():
        return NEW_FILE_NOTE
    stat = path.stat()
    changed = datetime.fromtimestamp(stat.st_mtime)
    facts = f"{_size(stat.st_size)}, changed {changed:%Y-%m-%d %H:%M}"
    if stat.st_size == 0:
        return f"This file exists and is empty ({facts}); it is set up when you connect."
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_MAGIC))
    except OSError as error:
        return f"This file exists but cannot be read ({error.strerror}); choose another file."
    if header != SQLITE_MAGIC:
        return f"This file exists but is not a SQLite database ({facts}); choose another file."
    try:
        revision = _sqlite_revision(path)
    except sqlite3.Error as exc:
        return f"This file exists but cannot be opened: {connection_error_sentence(exc)}"
    if revision is None:
        return (
            f"This file exists: a SQLite database without Postroom's tables ({facts}); "
            "they are added when you connect."
        )
    then = "opens it" if revision == SCHEMA_HEAD else "opens it and updates its tables"
    return f"This file exists: a Postroom database (schema {revision}, {facts}); connecting {then}."
