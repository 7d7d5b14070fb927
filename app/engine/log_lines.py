"""What one engine log line says about itself: its level, its time, and a readable text.

An engine container's log mixes three kinds of line: Postroom's own records as JSON
(``app.services.logs.JsonFormatter``: ts, level, logger, message and context fields) or as
text (``2026-12-01T10:00:00.123Z INFO app.engine engine=e1 message``), supervisord's lines
(``2026-12-01 10:00:00,123 WARN exited: engine (exit status 1)``), and whatever a program
prints (a traceback, a library's ``WARNING:name:message``). The level is read from the JSON
object or from a level word near the start of the line; a line that names none is "info".
Parsing never raises: a log viewer must show every line, however malformed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LEVEL = "info"

# Every spelling a log line uses for a level, folded to one of LEVELS.
_LEVEL_NAMES = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "err": "error",
    "error": "error",
    "crit": "error",
    "critical": "error",
    "fatal": "error",
    "alert": "error",
    "emerg": "error",
}
_JSON_LEVEL_KEYS = ("level", "levelname", "severity", "lvl")
_JSON_TIME_KEYS = ("ts", "time", "timestamp", "asctime")
_JSON_MESSAGE_KEYS = ("message", "msg")
# Shown elsewhere in the readable text, or noise for someone reading the engine's log.
_JSON_HIDDEN_KEYS = {*_JSON_LEVEL_KEYS, *_JSON_TIME_KEYS, *_JSON_MESSAGE_KEYS, "logger", "exc"}

# A level word is only believed near the start, where formats put it: "no error found"
# late in a message is not an error line. Upper case for bare words (INFO, [WARN],
# ERROR:root:) so prose is not mistaken for a level; ``level=`` may be any case.
_PREFIX_CHARS = 80
_BARE_LEVEL = re.compile(
    r"(?:^|[\s\[(|])(TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERR(?:OR)?|CRIT(?:ICAL)?|FATAL"
    r"|ALERT|EMERG)(?=$|[\s\]):|,])"
)
_KEYED_LEVEL = re.compile(r"\b(?:level|lvl|severity)=\"?([A-Za-z]+)", re.IGNORECASE)
_LEADING_TIME = re.compile(
    r"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)
# The lines of a Python traceback that a program printed without a logger.
_TRACEBACK_START = "Traceback (most recent call last):"


@dataclass(frozen=True, slots=True)
class ParsedLine:
    level: str  # one of LEVELS
    time: str | None  # as the line wrote it; None when it has none
    text: str  # what a reader sees: the line itself, or a JSON record made readable


def level_name(word: str) -> str | None:
    """``word`` as one of LEVELS (``WARN`` → ``warning``), or None if it is no level."""
    return _LEVEL_NAMES.get(word.strip().lower())


def parse_line(line: str) -> ParsedLine:
    """The level, time and readable text of one log line (without its newline)."""
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        record = _json_object(stripped)
        if record is not None:
            return _parse_record(record, line)
    return _parse_text(line)


def _json_object(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except ValueError:  # a line that only looks like JSON: show it as text
        return None
    return value if isinstance(value, dict) else None


def _first_text(record: dict[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = record.get(key)
        if value is not None and not isinstance(value, (dict, list)):
            return str(value)
    return None


def _parse_record(record: dict[str, object], line: str) -> ParsedLine:
    level_word = _first_text(record, _JSON_LEVEL_KEYS)
    level = (level_name(level_word) if level_word else None) or DEFAULT_LEVEL
    time = _first_text(record, _JSON_TIME_KEYS)
    message = _first_text(record, _JSON_MESSAGE_KEYS)
    if message is None:  # some other program's JSON: nothing to make readable
        return ParsedLine(level, time, line)
    parts = [time] if time else []
    parts += [level.upper(), _one_line(message)]
    parts += [
        f"{key}={_one_line(str(value))}"
        for key, value in record.items()
        if key not in _JSON_HIDDEN_KEYS
    ]
    exc = record.get("exc")
    if isinstance(exc, str) and exc.strip():
        # The exception's own last line says what happened; the whole traceback stays in
        # the raw line (tooltip, saved file).
        parts.append("— " + _one_line(exc.strip().splitlines()[-1]))
    return ParsedLine(level, time, " ".join(parts))


def _parse_text(line: str) -> ParsedLine:
    time_match = _LEADING_TIME.match(line)
    time = time_match.group(1) if time_match else None
    prefix = line[:_PREFIX_CHARS]
    level = None
    keyed = _KEYED_LEVEL.search(prefix)
    if keyed:
        level = level_name(keyed.group(1))
    if level is None:
        bare = _BARE_LEVEL.search(prefix)
        if bare:
            level = level_name(bare.group(1))
    if level is None and line.startswith(_TRACEBACK_START):
        level = "error"
    return ParsedLine(level or DEFAULT_LEVEL, time, line)


def _one_line(text: str) -> str:
    # A row of the viewer is one line; the raw line keeps the newlines.
    return text.replace("\r", "").replace("\n", " ⏎ ")
