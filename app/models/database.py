"""Opening a database: URL resolution, engine tuning per backend, migrations on connect."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# The one error module every layer shares; it imports nothing of the application.
from app.services.errors import PostroomError, ValidationError

log = logging.getLogger(__name__)

APP_NAME = "postroom"
DATABASE_URL_ENV = "POSTROOM_DATABASE_URL"
# A file holding the URL: how a container gets it (a mounted secret), so the password is
# neither in the image nor in the container's environment as `docker inspect` shows it.
DATABASE_URL_FILE_ENV = "POSTROOM_DATABASE_URL_FILE"
SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "postroom_write"


def default_sqlite_path() -> Path:
    """The embedded database in the platform's user data directory."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "postroom.sqlite3"


def resolve_database_url(explicit: str | None = None) -> str:
    """``--database`` wins, then ``POSTROOM_DATABASE_URL``, then the file that
    ``POSTROOM_DATABASE_URL_FILE`` names, then the embedded SQLite file."""
    if explicit:
        return explicit
    from_env = os.environ.get(DATABASE_URL_ENV)
    if from_env:
        return from_env
    url_file = os.environ.get(DATABASE_URL_FILE_ENV)
    if url_file:
        return read_database_url_file(Path(url_file))
    return f"sqlite:///{default_sqlite_path()}"


def read_database_url_file(path: Path) -> str:
    """The URL in ``path``: its first non-blank line, without surrounding white space.

    The file is a secret, so no error repeats what it holds.
    """
    try:
        text_in_file = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(
            DATABASE_URL_FILE_ENV,
            f"{path} does not exist; mount the file holding the database URL there, "
            "or unset the variable.",
        ) from None
    except IsADirectoryError:
        raise ValidationError(
            DATABASE_URL_FILE_ENV,
            f"{path} is a folder; name the file holding the database URL.",
        ) from None
    except PermissionError:
        raise ValidationError(
            DATABASE_URL_FILE_ENV,
            f"{path} may not be read by this user; make it readable to the user running "
            "Postroom (mode 0400 or 0600, owned by that user).",
        ) from None
    except UnicodeDecodeError:
        raise ValidationError(
            DATABASE_URL_FILE_ENV,
            f"{path} is not a UTF-8 text file; write the database URL into it as one line.",
        ) from None
    url = next((line.strip() for line in text_in_file.splitlines() if line.strip()), "")
    if not url:
        raise ValidationError(
            DATABASE_URL_FILE_ENV,
            f"{path} is empty; write the database URL into it as one line.",
        )
    return url


def redact_url(url: str | URL) -> str:
    """The URL as it may be shown or logged: never with its password."""
    return make_url(url).render_as_string(hide_password=True)


URL_FIELD = "--database"
_URL_EXAMPLES = (
    "sqlite:///path/to/postroom.db, postgresql+psycopg://user@host/dbname or "
    "mysql+pymysql://user@host/dbname"
)
_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")


def check_database_url(url: str, *, create_folder: bool = False) -> URL:
    """The parsed URL, or ValidationError naming ``--database`` and what to write instead.

    A SQLite file's folder must exist: a typo in a path would otherwise silently create a
    new, empty database somewhere. Only the application's own data folder is created, or
    any folder when ``create_folder`` says the user was asked (the console's dialog).
    """
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise ValidationError(
            URL_FIELD, f"{url[:60]!r} is not a database URL; write one like {_URL_EXAMPLES}."
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _BACKENDS:
        raise ValidationError(
            URL_FIELD,
            f"{backend!r} is not a database Postroom can use; write a URL like {_URL_EXAMPLES}.",
        )
    try:
        parsed.get_dialect()
    except (ArgumentError, ImportError):
        raise ValidationError(
            URL_FIELD,
            f"the driver {parsed.drivername!r} is not installed; write a URL like {_URL_EXAMPLES}.",
        ) from None
    if backend == "sqlite":
        _check_sqlite_path(parsed.database, create_folder)
    return parsed


def _check_sqlite_path(database: str | None, create_folder: bool) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    if path.is_dir():
        raise ValidationError(
            URL_FIELD, f"{path} is a folder; add a file name, e.g. {path}/postroom.db."
        )
    folder = path.parent
    if folder.is_dir():
        return
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValidationError(
            URL_FIELD,
            f"{blocker} is a file, not a folder, so {path.name} cannot be created inside it; "
            "choose a path in an existing folder.",
        )
    if create_folder or folder == default_sqlite_path().parent:
        folder.mkdir(parents=True, exist_ok=True)
        return
    raise ValidationError(
        URL_FIELD,
        f"the folder {folder} does not exist; create it first (mkdir -p {folder}) or choose "
        "a file in an existing folder.",
    )


def is_unique_violation(exc: IntegrityError) -> bool:
    """Whether the database refused a duplicate (rather than, e.g., a missing reference)."""
    cause = exc.orig
    args = getattr(cause, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (1062, "Duplicate entry ...")
        return args[0] in (1062, 1586)
    sqlstate = getattr(cause, "sqlstate", None)  # psycopg; MariaDB's 23000 is any constraint
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    return "unique constraint failed" in str(cause).lower()  # sqlite3


# Words in a driver's error and what the person connecting should check. Only for errors
# raised while connecting: a refused statement gets a hint about the data, not the login.
_CONNECTION_HINTS = (
    (("refused",), "check the host and port, and that the server is running"),
    (("resolve", "name or service not known", "nodename"), "check the host name"),
    (("timeout", "timed out"), "check the host, the port and any firewall in between"),
    (
        ("password", "access denied", "authentication"),
        "check the user name and the password",
    ),
    (("does not exist", "unknown database"), "check the database and user names"),
    (("unable to open",), "check that the folder exists and that you may write to it"),
)
# Problems of the database itself, whatever the statement.
_DATABASE_HINTS = (
    (("not a database", "file is encrypted"), "choose a SQLite database file"),
    (("malformed", "corrupt"), "the database file is damaged; restore it from a backup"),
    (
        ("readonly", "read-only", "read only"),
        "you may only read this database; check the file's and its folder's permissions",
    ),
    (("locked", "lock wait timeout", "deadlock"), "another program was writing; try again"),
    (("disk is full", "no space"), "free some disk space and try again"),
)


def connection_error_sentence(exc: BaseException, url: str | None = None) -> str:
    """The driver's own first line, made a sentence with what to check; never a password.

    SQLAlchemy wraps the driver's error and appends SQL and a documentation link; the
    driver's first line ("connection refused", "unknown database") is the useful part.
    The hint fits the kind of error: the connection settings only for a failed connect.
    """
    if isinstance(exc, PostroomError):
        return str(exc)
    cause = getattr(exc, "orig", None)
    error = cause if isinstance(cause, BaseException) else exc
    args: tuple[object, ...] = tuple(getattr(error, "args", ()))
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        raw = args[1]  # PyMySQL: (2003, "Can't connect to MySQL server on ...")
    else:
        raw = str(error)
    lines = [line for line in raw.strip().splitlines() if line.strip()]
    detail = " ".join(lines[0].split()) if lines else type(error).__name__
    detail = detail.removeprefix("connection failed: ").rstrip(" .")
    password = None
    if url:
        try:
            password = make_url(url).password
        except ArgumentError:
            password = None
    if password:
        detail = detail.replace(str(password), "***")
    return f"{detail[:1].upper()}{detail[1:]}; {_hint(exc, raw.lower())}."


def _hint(exc: BaseException, lowered: str) -> str:
    if isinstance(exc, IntegrityError):
        if is_unique_violation(exc):
            return "a row with this name already exists; choose another name"
        return "it refers to a row that was changed or deleted meanwhile; reload and try again"
    found = next(
        (hint for words, hint in _DATABASE_HINTS if any(w in lowered for w in words)), None
    )
    if found is not None:
        return found
    if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError):
        # A statement the database did not accept: not a connection problem.
        return "the database refused the statement; if this repeats, please report it"
    return next(
        (hint for words, hint in _CONNECTION_HINTS if any(w in lowered for w in words)),
        "check the connection settings",
    )


def _tune_sqlite(engine: Engine) -> None:
    # WAL lets the console read while a send engine writes; foreign keys are off by
    # default in SQLite; the busy timeout waits for a writer instead of failing at once.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 module's own transaction handling would defeat BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Write transactions take the lock up front so two writers queue (busy timeout)
        # instead of one failing at its first write; readers never block anybody.
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def create_db_engine(url: str, *, create_folder: bool = False) -> Engine:
    parsed = check_database_url(url, create_folder=create_folder)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"future": True}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif backend in ("mysql", "mariadb"):
        kwargs["pool_pre_ping"] = True
        kwargs["pool_recycle"] = 3600
        kwargs["connect_args"] = {"charset": "utf8mb4"}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite":
        _tune_sqlite(engine)
    return engine


# The newest migration's revision id. A database already there skips loading Alembic,
# which costs more than half a second per CLI call; a test keeps this in step.
SCHEMA_HEAD = "0005"


def schema_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, or None for an empty / unversioned database."""
    with engine.connect() as connection:
        return _revision_on(connection)


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates it on an empty database).

    Several programs may open a new database at once (two CLI calls, a console and a send
    engine): one migrates while the others wait for it, then find the schema current.
    """
    if schema_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    # On SQLite the write option begins with BEGIN IMMEDIATE: the database lock is taken
    # before anything is read, so a second migrator waits (busy timeout) instead of both
    # reading "no schema" and one failing with "database is locked" when upgrading its lock.
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        _lock_for_migration(connection)
        try:
            found = _revision_on(connection)
            if found == SCHEMA_HEAD:
                return
            log.info(
                "database %s: upgrading schema %s to %s",
                redact_url(engine.url),
                found or "(empty)",
                SCHEMA_HEAD,
            )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        finally:
            _unlock_after_migration(connection)


# SQLite can still answer "database is locked" to a process that arrives while another one
# is creating a brand-new file (its first journal-mode switch and schema write), in spite of
# the busy timeout. Opening is idempotent, so it is tried again a few times before the
# error is reported; anything other than a lock is reported at once.
_SQLITE_OPEN_ATTEMPTS = 5


def _upgrade_when_free(engine: Engine) -> None:
    attempt = 1
    while True:
        try:
            upgrade_schema(engine)
            return
        except OperationalError as exc:
            locked = engine.dialect.name == "sqlite" and "locked" in str(exc.orig).lower()
            if not locked or attempt >= _SQLITE_OPEN_ATTEMPTS:
                raise
            log.info("database %s is locked while opening; trying again", redact_url(engine.url))
            engine.dispose()  # a connection that met the lock may hold a stale state
            time.sleep(0.2 * attempt)
            attempt += 1


# An arbitrary constant shared by every Postroom process: the migration lock's name.
_MIGRATION_LOCK_ID = 0x706F7374  # "post"
_MIGRATION_LOCK_WAIT_S = 120


def _lock_for_migration(connection: Connection) -> None:
    backend = connection.dialect.name
    if backend == "postgresql":
        # Released with the transaction; PostgreSQL's DDL is transactional.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    elif backend in ("mysql", "mariadb"):
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": f"postroom_migrate_{_MIGRATION_LOCK_ID}", "wait": _MIGRATION_LOCK_WAIT_S},
        ).scalar()
        if got != 1:
            raise OperationalError(
                "GET_LOCK", {}, Exception("timed out waiting for another migration")
            )


def _unlock_after_migration(connection: Connection) -> None:
    if connection.dialect.name in ("mysql", "mariadb"):
        connection.execute(
            text("SELECT RELEASE_LOCK(:name)"),
            {"name": f"postroom_migrate_{_MIGRATION_LOCK_ID}"},
        )


def _revision_on(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(revision) if revision is not None else None


class Database:
    """One open database: an engine, a session factory, and the URL it came from."""

    def __init__(self, url: str, *, migrate: bool = True, create_folder: bool = False) -> None:
        self.url = url
        self.engine = create_db_engine(url, create_folder=create_folder)
        self.backend = self.engine.dialect.name
        if migrate:
            _upgrade_when_free(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def session(self) -> Session:
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on any error."""
        with self._write_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
