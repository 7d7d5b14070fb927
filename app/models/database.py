"""Opening a database: URL resolution, engine tuning per backend, migrations on connect."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

APP_NAME = "postroom"
DATABASE_URL_ENV = "POSTROOM_DATABASE_URL"
SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "postroom_write"


def default_sqlite_path() -> Path:
    """The embedded database in the platform's user data directory."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "postroom.sqlite3"


def resolve_database_url(explicit: str | None = None) -> str:
    """``--database`` wins, then ``POSTROOM_DATABASE_URL``, then the embedded SQLite file."""
    if explicit:
        return explicit
    from_env = os.environ.get(DATABASE_URL_ENV)
    if from_env:
        return from_env
    return f"sqlite:///{default_sqlite_path()}"


def redact_url(url: str | URL) -> str:
    """The URL as it may be shown or logged: never with its password."""
    return make_url(url).render_as_string(hide_password=True)


# Words in a driver's error and what the person connecting should check.
_HINTS = (
    (("refused",), "check the host and port, and that the server is running"),
    (("resolve", "name or service not known", "nodename"), "check the host name"),
    (("timeout", "timed out"), "check the host, the port and any firewall in between"),
    (
        ("password", "access denied", "authentication"),
        "check the user name and the password",
    ),
    (("does not exist", "unknown database"), "check the database and user names"),
    (("not a database", "file is encrypted"), "choose a SQLite database file"),
    (("unable to open",), "check that the folder exists and that you may write to it"),
)


def connection_error_sentence(exc: BaseException, url: str | None = None) -> str:
    """The driver's own first line, made a sentence with what to check; never a password.

    SQLAlchemy wraps the driver's error and appends SQL and a documentation link; the
    driver's first line ("connection refused", "unknown database") is the useful part.
    """
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
    lowered = raw.lower()
    hint = next(
        (hint for words, hint in _HINTS if any(word in lowered for word in words)),
        "check the connection settings",
    )
    return f"{detail[:1].upper()}{detail[1:]}; {hint}."


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


def create_db_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"future": True}
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
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
SCHEMA_HEAD = "0001"


def schema_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, or None for an empty / unversioned database."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return str(revision) if revision is not None else None


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates it on an empty database)."""
    if schema_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """One open database: an engine, a session factory, and the URL it came from."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.backend = self.engine.dialect.name
        if migrate:
            upgrade_schema(self.engine)
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
