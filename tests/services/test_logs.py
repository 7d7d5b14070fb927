"""The one logging set-up: one line per event, context fields, JSON lines, levels."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.models.database import Database
from app.services import servers
from app.services.errors import ValidationError
from app.services.logs import (
    LEVELS,
    configure_logging,
    current_context,
    log_context,
    parse_log_format,
    parse_log_level,
)

POSTROOM = [sys.executable, "-m", "app"]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Postroom's handler writing into a buffer; the root and app loggers restored after."""
    root = logging.getLogger()
    ours = logging.getLogger("app")
    saved = (list(root.handlers), root.level, ours.level)
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        if handler not in saved[0]:
            root.removeHandler(handler)
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


def test_text_lines_carry_context_and_stay_on_one_line(captured: io.StringIO) -> None:
    configure_logging("info", "text", stream=captured)
    log = logging.getLogger("app.engine.worker")
    with log_context(engine="e1", campaign=7), log_context(item=42):
        log.info("sent to %s\nsecond line", "a@example.com")
    log.info("outside")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2
    first = lines[0].split(" ")
    assert first[1:6] == ["INFO", "app.engine.worker", "engine=e1", "campaign=7", "item=42"]
    assert lines[0].endswith("sent to a@example.com\\nsecond line")
    assert "engine=" not in lines[1] and lines[1].endswith("outside")


def test_json_lines_parse_and_hold_the_fields(captured: io.StringIO) -> None:
    configure_logging("debug", "json", stream=captured)
    log = logging.getLogger("app.services.x")
    with log_context(engine="e2", campaign=3):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("delivery failed")
    (line,) = captured.getvalue().splitlines()
    data = json.loads(line)
    assert data["level"] == "error"
    assert data["logger"] == "app.services.x"
    assert data["message"] == "delivery failed"
    assert (data["engine"], data["campaign"]) == ("e2", 3)
    assert "RuntimeError: boom" in data["exc"]
    assert data["ts"].endswith("Z")


def test_level_applies_to_our_loggers_only(captured: io.StringIO) -> None:
    configure_logging("debug", "text", stream=captured)
    logging.getLogger("app.services.y").debug("ours")
    logging.getLogger("some.library").info("theirs, too chatty")
    logging.getLogger("some.library").warning("theirs, worth seeing")
    text = captured.getvalue()
    assert "ours" in text
    assert "too chatty" not in text
    assert "worth seeing" in text


def test_configure_again_replaces_the_handler(captured: io.StringIO) -> None:
    configure_logging("info", "text", stream=captured)
    second = io.StringIO()
    configure_logging("info", "json", stream=second)
    logging.getLogger("app.z").info("once")
    assert captured.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "once"


def test_environment_chooses_level_and_format(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTROOM_LOG_LEVEL", "INFO")
    monkeypatch.setenv("POSTROOM_LOG_FORMAT", "json")
    configure_logging(stream=captured)
    logging.getLogger("app.env").info("from env")
    assert json.loads(captured.getvalue())["message"] == "from env"


def test_bad_environment_level_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match=r"--log-level.*use one of debug"):
        configure_logging(stream=io.StringIO())


async def test_context_is_private_to_each_task() -> None:
    seen: dict[str, object] = {}

    async def worker(campaign: int) -> None:
        with log_context(campaign=campaign):
            await asyncio.sleep(0.01)
            seen[str(campaign)] = current_context()["campaign"]

    await asyncio.gather(worker(1), worker(2))
    assert seen == {"1": 1, "2": 2}
    assert current_context() == {}


@given(st.text(max_size=20))
def test_level_parser_accepts_exactly_the_names(value: str) -> None:
    if value.strip().lower() in LEVELS:
        assert parse_log_level(value) == getattr(logging, value.strip().upper())
    else:
        with pytest.raises(ValidationError, match=r"^--log-level: "):
            parse_log_level(value)


@given(st.text(max_size=20))
def test_format_parser_accepts_exactly_the_names(value: str) -> None:
    if value.strip().lower() in ("text", "json"):
        assert parse_log_format(value) == value.strip().lower()
    else:
        with pytest.raises(ValidationError, match=r"^--log-format: "):
            parse_log_format(value)


def test_the_command_line_refuses_a_bad_level_in_one_sentence(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    run = subprocess.run(
        [sys.executable, "-m", "app", "--log-level", "loud", "--database", url, "servers", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "postroom: --log-level: 'loud' is not a log level; "
        "use one of debug, info, warning, error, critical."
    ]
    assert not (tmp_path / "db.sqlite3").exists()


def test_committed_changes_are_logged_once_and_rolled_back_ones_never(
    captured: io.StringIO, sqlite_database: Database
) -> None:
    configure_logging("info", "text", stream=captured)
    with sqlite_database.transaction() as session:
        servers.create_server(session, {"name": "Relay", "host": "smtp.example.com"})
    with pytest.raises(RuntimeError), sqlite_database.transaction() as session:
        servers.create_server(session, {"name": "Ghost", "host": "smtp.example.com"})
        raise RuntimeError("the caller gave up")
    lines = [line for line in captured.getvalue().splitlines() if "app.services.audit" in line]
    assert len(lines) == 1
    assert "create delivery_server 'Relay' by " in lines[0]
    assert "Ghost" not in captured.getvalue()


def test_the_command_line_logs_json_lines_to_stderr_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    logging_options = ["--log-level", "info", "--log-format", "json"]
    add = ["servers", "add", "Relay", "--host", "smtp.example.com"]
    run = subprocess.run(
        [*POSTROOM, *logging_options, "--database", url, *add],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines()]
    messages = [event["message"] for event in events]
    assert any("upgrading schema (empty) to" in m for m in messages)
    assert any(m.startswith("create delivery_server 'Relay' by ") for m in messages)
    assert all(event["level"] == "info" for event in events)
    assert "Relay" in run.stdout and "{" not in run.stdout
