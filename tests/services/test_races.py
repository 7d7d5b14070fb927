"""Races between consoles end in one sentence that says what happened, on every backend."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.models.database import Database, connection_error_sentence
from app.services import groups, servers, users
from app.services.errors import ConcurrentEditError, ConflictError


def seed(db: Database) -> None:
    with db.transaction() as s:
        servers.create_server(s, {"name": "M1", "host": "m1.example.com"})
        groups.create_group(s, {"name": "G"})
        users.create_user(s, {"username": "alice", "email": "alice@example.com", "group": "G"})


EDITS: dict[str, tuple[Callable[..., object], Callable[..., object], str, dict[str, object]]] = {
    "server": (servers.get_server, servers.update_server, "M1", {"port": 2525}),
    "group": (groups.get_group, groups.update_group, "G", {"daily_email_limit": 10}),
    "user": (users.get_user, users.update_user, "alice", {"email": "a2@example.com"}),
}


@pytest.mark.parametrize("entity", sorted(EDITS))
def test_an_edit_lost_to_another_console_says_reload(database: Database, entity: str) -> None:
    """Console A read the row, console B saved it, then A saves: a sentence, not StaleDataError."""
    seed(database)
    get, update, key, change = EDITS[entity]
    with database.session() as console_a:
        opened = get(console_a, key)  # A's form holds the row (the identity map is weak)
        console_a.commit()  # ... loaded at version 1
        with database.transaction() as console_b:
            update(console_b, key, change)
        with pytest.raises(ConcurrentEditError, match=r"changed by someone else.*reload"):
            update(console_a, key, change)
        assert opened is not None


def test_two_consoles_adding_one_name_at_once_say_it_exists(database: Database) -> None:
    """The second INSERT waits on the first's unique index, then must read as a sentence."""
    outcome: list[BaseException | None] = []

    def second_console() -> None:
        try:
            with database.transaction() as s:
                groups.create_group(s, {"name": "Sales"})
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    with database.transaction() as first:
        groups.create_group(first, {"name": "Sales"})
        worker = threading.Thread(target=second_console)
        worker.start()
        time.sleep(1.0)  # long enough for the second console to block on our row
    worker.join(30)
    assert len(outcome) == 1
    error = outcome[0]
    assert isinstance(error, ConflictError), repr(error)
    assert "already exists" in str(error)
    assert "connection" not in str(error)


def test_database_errors_get_a_hint_that_fits(sqlite_url: str, tmp_path: Path) -> None:
    db = Database(sqlite_url)
    db.dispose()
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, entity, entity_key) "
                "VALUES ('2026-01-01', 'a', 'b', 'c', 'd')"
            )
        )
    duplicate: DBAPIError | None = None
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit_log (id, at, actor, action, entity, "
                    "entity_key) VALUES (1, '2026-01-01', 'a', 'b', 'c', 'd')"
                )
            )
    except IntegrityError as exc:
        duplicate = exc
    engine.dispose()
    assert duplicate is not None
    sentence = connection_error_sentence(duplicate)
    assert "already exists" in sentence and "connection" not in sentence

    path = tmp_path / "postroom.sqlite3"
    read_only = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(DBAPIError) as info, read_only.begin() as connection:
        connection.execute(text("DELETE FROM audit_log"))
    read_only.dispose()
    sentence = connection_error_sentence(info.value)
    assert "readonly" in sentence.lower() and "permission" in sentence
    assert "connection" not in sentence

    damaged = tmp_path / "damaged.sqlite3"
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema page
    damaged.write_bytes(bytes(data))
    broken = create_engine(f"sqlite:///{damaged}")
    with pytest.raises(DBAPIError) as info, broken.connect() as connection:
        connection.execute(text("SELECT count(*) FROM audit_log"))
    broken.dispose()
    sentence = connection_error_sentence(info.value)
    assert "backup" in sentence and "connection" not in sentence


# Each process waits for the go file, then opens (creates and migrates) the same database.
OPENER = """
import os, sys, time
from app.models.database import Database
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.002)
Database(sys.argv[1]).dispose()
"""


def _open_at_once(url: str, folder: Path, processes: int) -> list[subprocess.CompletedProcess[str]]:
    go = folder / f"go-{time.monotonic_ns()}"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, url, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    time.sleep(2.5)  # every interpreter has imported the application and waits
    go.touch()
    results = []
    for process in started:
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_processes_creating_one_new_database_at_once_all_succeed(
    db_url: str, tmp_path: Path
) -> None:
    rounds = 3 if db_url.startswith("sqlite") else 1
    for number in range(rounds):
        url = db_url
        if db_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / f'new-{number}.sqlite3'}"
        results = _open_at_once(url, tmp_path, 6)
        # The whole error tail, so a rare failure says which statement met which error.
        failures = [r.stderr.strip().splitlines()[-12:] for r in results if r.returncode]
        assert failures == [], failures
        db = Database(url)
        with db.session() as s:
            assert len(groups.list_groups(s)) == 0
            assert s.execute(text("SELECT count(*) FROM installation")).scalar() == 1
        db.dispose()
