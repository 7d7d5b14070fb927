"""Reading a log line's level and time: Postroom's own formatters (the real ones, from
app.services.logs), supervisord's lines, and anything else a program prints."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.log_lines import DEFAULT_LEVEL, LEVELS, level_name, parse_line
from app.services.logs import JsonFormatter, TextFormatter

PYTHON_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}


def record(level: int, message: str, **context: object) -> logging.LogRecord:
    made = logging.LogRecord("app.engine.runner", level, __file__, 1, message, None, None)
    made.postroom_context = context  # what the engine's _ContextFilter attaches
    return made


@pytest.mark.parametrize(
    ("line", "level", "time"),
    [
        (
            "2026-12-01 10:00:00,123 INFO spawned: 'engine' with pid 12",
            "info",
            "2026-12-01 10:00:00,123",
        ),
        (
            "2026-12-01 10:00:01,004 WARN exited: engine (exit status 1; not expected)",
            "warning",
            "2026-12-01 10:00:01,004",
        ),
        (
            "2026-12-01 10:00:02,000 CRIT Supervisor is running as root",
            "error",
            "2026-12-01 10:00:02,000",
        ),
        (
            "2026-12-01T10:00:00.123Z DEBUG app.engine engine=e1 sent: 250 ok",
            "debug",
            "2026-12-01T10:00:00.123Z",
        ),
        ("WARNING:root:the vault key is missing", "warning", None),
        ("ERROR:app.engine:could not connect", "error", None),
        ("[ERROR] boom", "error", None),
        ("ts=2026-12-01 level=warn msg=slow", "warning", None),
        ("Traceback (most recent call last):", "error", None),
        ('  File "/app/x.py", line 3, in <module>', "info", None),
        ("there was no error in this line, just prose", "info", None),
        ("the INFORMATION desk", "info", None),
        ("", "info", None),
        ("{not json at all}", "info", None),
        ("[1, 2, 3]", "info", None),
    ],
)
def test_text_lines(line: str, level: str, time: str | None) -> None:
    parsed = parse_line(line)
    assert (parsed.level, parsed.time, parsed.text) == (level, time, line)


def test_a_level_word_late_in_a_long_line_is_prose() -> None:
    line = "x" * 100 + " ERROR"
    assert parse_line(line).level == DEFAULT_LEVEL


def test_json_record_is_made_readable() -> None:
    formatter = JsonFormatter()
    line = formatter.format(
        record(logging.WARNING, "took back %d item(s)", engine="e1", campaign=4)
    )
    parsed = parse_line(line)
    data = json.loads(line)
    assert parsed.level == "warning"
    assert parsed.time == data["ts"]
    assert parsed.text.startswith(f"{data['ts']} WARNING took back")
    assert "engine=e1" in parsed.text and "campaign=4" in parsed.text
    assert "logger" not in parsed.text


def test_json_exception_shows_its_last_line_only() -> None:
    try:
        raise ValueError("bad reply")
    except ValueError:
        import sys

        made = record(logging.ERROR, "failed")
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    parsed = parse_line(line)
    assert parsed.level == "error"
    assert parsed.text.endswith("— ValueError: bad reply")
    assert "\n" not in parsed.text


def test_foreign_json_without_a_message_is_shown_as_is() -> None:
    line = json.dumps({"severity": "CRITICAL", "event": "disk full"})
    parsed = parse_line(line)
    assert (parsed.level, parsed.text) == ("error", line)


def test_level_names() -> None:
    assert [level_name(w) for w in ("WARN", "Warning", "crit", "notice", "loud")] == [
        "warning",
        "warning",
        "error",
        "info",
        None,
    ]


# ---------------------------------------------------------------- properties

messages = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
context_values = st.one_of(st.integers(), st.text(max_size=30), st.none())


@given(st.text(max_size=400))
def test_any_text_parses_to_a_known_level(line: str) -> None:
    parsed = parse_line(line)
    assert parsed.level in LEVELS
    assert parsed.text == line


@given(st.sampled_from(sorted(PYTHON_LEVELS)), messages)
def test_text_formatter_level_is_read_back(level: int, message: str) -> None:
    line = TextFormatter().format(record(level, message, engine="e1"))
    assert parse_line(line).level == PYTHON_LEVELS[level]


@given(
    st.sampled_from(sorted(PYTHON_LEVELS)),
    messages,
    st.dictionaries(st.sampled_from(["engine", "campaign", "item", "worker"]), context_values),
)
def test_json_formatter_level_and_message_are_read_back(
    level: int, message: str, context: dict[str, object]
) -> None:
    line = JsonFormatter().format(record(level, message, **context))
    parsed = parse_line(line)
    assert parsed.level == PYTHON_LEVELS[level]
    assert parsed.time == json.loads(line)["ts"]
    assert "\n" not in parsed.text
    assert message.replace("\r", "").replace("\n", " ⏎ ") in parsed.text


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=10,
    )
)
def test_any_json_value_parses(value: object) -> None:
    parsed = parse_line(json.dumps(value))
    assert parsed.level in LEVELS
