"""Shared fixtures: isolated user dirs, an in-memory keyring, and databases on all three backends.

PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306) are real servers; each test gets
a database of its own, dropped afterwards. ``scripts/test`` sets POSTROOM_REQUIRE_REAL_PEERS=1
so a missing server fails the run instead of skipping quietly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import keyring
import pytest
from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    import asyncio

    from PySide6.QtWidgets import QApplication
    from pytestqt.qtbot import QtBot

    from app.models.database import Database
    from app.views.main_window import MainWindow

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PG_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql"
)
REQUIRE_REAL_PEERS = os.environ.get("POSTROOM_REQUIRE_REAL_PEERS") == "1"
BACKENDS = ("sqlite", "postgresql", "mariadb")


def peer_missing(reason: str) -> None:
    """Skip when a real peer is absent on a developer machine; fail under scripts/test."""
    if REQUIRE_REAL_PEERS:
        pytest.fail(f"required test peer unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Config, data and keyring files of the code under test go to a temporary folder."""
    home = tmp_path / "home"
    for sub, var in (("config", "XDG_CONFIG_HOME"), ("data", "XDG_DATA_HOME")):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.delenv("POSTROOM_DATABASE_URL", raising=False)
    monkeypatch.delenv("POSTROOM_VAULT_KEY", raising=False)
    monkeypatch.delenv("POSTROOM_VAULT_KEY_FILE", raising=False)
    from app.services.vault import set_vault_key_file

    set_vault_key_file(None)
    for var in (
        "EMAILCAMPAIGN_DNS_SUBDOMAIN",
        "EMAILCAMPAIGN_DNS_TRACK_PREFIX",
        "EMAILCAMPAIGN_DNS_TRACK_MERGE",
        "EMAILGATEWAY_DNS_SUBDOMAIN",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[keyring.backend.KeyringBackend]:
    """Unit tests never touch a real keyring; the real one has its own marked tests."""
    from tests import memory_keyring as memory

    previous = keyring.get_keyring()
    yield memory.install()
    keyring.set_keyring(previous)


def _server_database(admin_url: str, backend: str) -> Iterator[str]:
    name = f"postroom_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except Exception as exc:  # the server is not there
        peer_missing(f"{backend} at {admin_url} is not reachable: {exc.__class__.__name__}")
        return
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def make_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'postroom.sqlite3'}"
    elif backend == "postgresql":
        yield from _server_database(PG_ADMIN_URL, "postgresql")
    else:
        yield from _server_database(MARIADB_ADMIN_URL, "mariadb")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL on each backend in turn."""
    yield from make_database_url(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'postroom.sqlite3'}"


@pytest.fixture
def database(db_url: str) -> Iterator[object]:
    """A migrated database on each backend in turn."""
    from app.models.database import Database

    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[object]:
    """A migrated SQLite database, for tests whose logic is backend-independent."""
    from app.models.database import Database

    db = Database(sqlite_url)
    yield db
    db.dispose()


# ---------------------------------------------------------------- Qt

# How long a GUI test waits for something the console does in the background (opening
# migrates the database): generous for a loaded CI machine; a pass takes far less.
WAIT_MS = 20_000


def open_database(qtbot: QtBot, window: MainWindow, url: str) -> Database | None:
    """Open ``url`` in ``window`` as File > Switch Database does; None if it was refused."""
    import asyncio

    opening = asyncio.ensure_future(window.open_database(url))
    qtbot.waitUntil(opening.done, timeout=WAIT_MS)
    return opening.result()


@pytest.fixture
def window_options() -> dict[str, object]:
    """How ``window`` starts; a module overrides this fixture to change it.

    ``open``: open the test's SQLite database before showing the window (the migration
    runs in the executor, and a first paint competing with it for the GIL is the
    framework's cost, not the pages'). ``size``: (width, height) or None.
    """
    return {"open": False, "size": None}


@pytest.fixture
def window(
    qtbot: QtBot,
    qt_loop: asyncio.AbstractEventLoop,
    sqlite_url: str,
    window_options: dict[str, object],
) -> Iterator[MainWindow]:
    """The console's main window, shown; with no database unless ``window_options`` says."""
    from app.models.database import redact_url
    from app.views.main_window import MainWindow

    main_window = MainWindow(redact_url(sqlite_url))
    qtbot.addWidget(main_window)
    size = window_options.get("size")
    if isinstance(size, tuple):
        main_window.resize(*size)
    if window_options.get("open"):
        assert open_database(qtbot, main_window, sqlite_url) is not None
    main_window.show()
    qtbot.waitExposed(main_window)
    yield main_window
    main_window.close()
    # Background reads finish before their database is closed under them.
    qtbot.waitUntil(lambda: not main_window.has_pending_work(), timeout=WAIT_MS)
    if main_window.database is not None:
        main_window.database.dispose()


@pytest.fixture(scope="session")
def session_qt_loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """One asyncio loop that runs inside Qt's own event processing, for the whole session.

    ``already_running`` makes qasync treat Qt's loop as its own, so the executor results and
    callbacks the window awaits are delivered while ``qtbot.waitUntil`` processes events.
    It is stopped only at the end: stopping calls ``QApplication.exit()``, after which Qt
    stops firing the timers qasync schedules with, for every later test in the process.
    """
    import asyncio

    import qasync
    from PySide6.QtWidgets import QLabel

    # Qt's one-time costs (font database, style) are paid at start-up in the console too;
    # pay them here so the first GUI test's watchdog doesn't count them.
    warm = QLabel("Postroom")
    warm.grab()
    warm.deleteLater()
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio._set_running_loop(None)  # marked running only during a GUI test: see qt_loop
    yield loop
    loop.stop()
    loop.close()


@pytest.fixture
def qt_loop(
    session_qt_loop: asyncio.AbstractEventLoop, loop_watchdog: object
) -> Iterator[asyncio.AbstractEventLoop]:
    """The Qt loop as this thread's running loop, and no longer after the test, so that
    pytest-asyncio's loops in other tests don't find another loop running."""
    import asyncio

    asyncio._set_running_loop(session_qt_loop)
    yield session_qt_loop
    asyncio._set_running_loop(None)


# The console must never stall its event loop. Every event Qt dispatches in the GUI tests
# goes through this application's notify(); a top-level dispatch (a click, a timer that
# runs an asyncio callback, a finished executor job) that does too much fails the test that
# caused it. Nested dispatch is timed as part of its outermost event.
#
# Two clocks, because this machine is shared: the GUI thread's own CPU time catches work done
# on the loop (a query, a big model reset), and is not inflated when other processes take the
# cores; wall time, with a wider limit, catches waiting on the loop (a blocking socket or
# lock), which costs no CPU at all.
LOOP_STALL_LIMIT_S = 0.100
LOOP_BLOCK_LIMIT_S = 1.0


def _watched_application_class() -> type:
    import time

    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication

    class WatchedApplication(QApplication):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            self.stalls: list[tuple[float, str]] = []
            self.watching = False
            self._depth = 0

        def notify(self, receiver: QObject, event: QEvent) -> bool:
            if not self.watching or self._depth:
                self._depth += 1
                try:
                    return super().notify(receiver, event)
                finally:
                    self._depth -= 1
            self._depth += 1
            started_cpu = time.thread_time()
            started_wall = time.perf_counter()
            try:
                return super().notify(receiver, event)
            finally:
                self._depth -= 1
                cpu = time.thread_time() - started_cpu
                wall = time.perf_counter() - started_wall
                if cpu > LOOP_STALL_LIMIT_S or wall > LOOP_BLOCK_LIMIT_S:
                    what = (
                        f"{type(receiver).__name__} {event.type().name} "
                        f"({cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall)"
                    )
                    self.stalls.append((max(cpu, wall), what))

    return WatchedApplication


@pytest.fixture(scope="session")
def qapp_cls() -> type:
    """pytest-qt builds the session's QApplication from this class."""
    return _watched_application_class()


@pytest.fixture
def loop_watchdog(qapp: QApplication) -> Iterator[object]:
    """Fails the test if any event dispatch stalled the GUI loop over LOOP_STALL_LIMIT_S."""
    import gc

    # A full collection of a pytest process that has imported every test module takes
    # ~200 ms and lands in whichever event happens to allocate: a pause of the test
    # process, not of the console. Collect and freeze first; later collections skip it.
    # The collector also stays off while the test watches: its pauses belong to the test
    # process (it holds every test module's objects), not to the console under test.
    gc.collect()
    gc.freeze()
    gc.disable()
    qapp.stalls.clear()  # type: ignore[attr-defined]
    qapp.watching = True  # type: ignore[attr-defined]
    try:
        yield qapp
    finally:
        qapp.watching = False  # type: ignore[attr-defined]
        gc.enable()
        gc.unfreeze()
    stalls = list(qapp.stalls)  # type: ignore[attr-defined]
    if stalls:
        worst = max(stalls)
        pytest.fail(
            f"the event loop stalled {len(stalls)} time(s), worst {worst[0] * 1000:.0f} ms "
            f"in {worst[1]} (limits {LOOP_STALL_LIMIT_S * 1000:.0f} ms CPU, "
            f"{LOOP_BLOCK_LIMIT_S * 1000:.0f} ms wall)"
        )
