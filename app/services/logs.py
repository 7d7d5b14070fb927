"""One logging set-up for every Postroom process: the CLI, the console and the send engine.

Administrators read these lines through ``sendengine logs`` and the dashboard's log viewer,
so each event is exactly one line (a message's own line breaks are escaped), carries the
engine, campaign and queue item it concerns when there is one, and can be written as JSON
lines for tools that parse logs. Modules log through ``logging.getLogger(__name__)`` as
usual; they add context with :func:`log_context` rather than repeating it in messages.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Final

from app.services.errors import ValidationError

LOG_LEVEL_ENV: Final = "POSTROOM_LOG_LEVEL"
LOG_FORMAT_ENV: Final = "POSTROOM_LOG_FORMAT"
LEVELS: Final = ("debug", "info", "warning", "error", "critical")
FORMATS: Final = ("text", "json")
DEFAULT_LEVEL: Final = "warning"
DEFAULT_FORMAT: Final = "text"
# The context fields, in the order a text line shows them.
CONTEXT_FIELDS: Final = ("engine", "campaign", "item")

# The package whose loggers we configure; third-party libraries keep their own levels
# (at WARNING through the root), so a debug run of Postroom is not drowned by theirs.
_OUR_LOGGER: Final = "app"
_HANDLER_NAME: Final = "postroom"

# None stands for "no context" (a mutable default would be shared by every context).
_context: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "postroom_log_context", default=None
)


def parse_log_level(value: str) -> int:
    """A level name (any case) as a ``logging`` level; one sentence for anything else."""
    name = value.strip().lower()
    if name not in LEVELS:
        raise ValidationError(
            "--log-level", f"{value!r} is not a log level; use one of {', '.join(LEVELS)}."
        )
    level: int = getattr(logging, name.upper())
    return level


def parse_log_format(value: str) -> str:
    name = value.strip().lower()
    if name not in FORMATS:
        raise ValidationError(
            "--log-format", f"{value!r} is not a log format; use one of {', '.join(FORMATS)}."
        )
    return name


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Attach ``engine=``, ``campaign=``, ``item=`` (or others) to every line logged inside.

    A ContextVar, so each asyncio task and each thread keeps its own: two workers logging at
    once never swap their campaign numbers. A field given as None is dropped.
    """
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, object]:
    return dict(_context.get() or {})


class _ContextFilter(logging.Filter):
    """Copies the current log context onto each record, for both formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.postroom_context = {
            **(_context.get() or {}),
            **getattr(record, "postroom_context", {}),
        }
        return True


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ordered_context(record: logging.LogRecord) -> list[tuple[str, object]]:
    context: Mapping[str, object] = getattr(record, "postroom_context", {})
    known = [(name, context[name]) for name in CONTEXT_FIELDS if name in context]
    others = sorted((k, v) for k, v in context.items() if k not in CONTEXT_FIELDS)
    return known + others


class TextFormatter(logging.Formatter):
    """``2026-12-01T10:00:00.123Z INFO app.engine engine=e1 campaign=4 message``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name]
        parts += [f"{name}={_one_line(str(value))}" for name, value in _ordered_context(record)]
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        parts.append(_one_line(message))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, the context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in _ordered_context(record):
            data.setdefault(name, value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_logging(
    level: str | None = None, fmt: str | None = None, stream: IO[str] | None = None
) -> None:
    """Install Postroom's one handler (replacing an earlier one); safe to call again.

    ``level`` and ``fmt`` fall back to POSTROOM_LOG_LEVEL / POSTROOM_LOG_FORMAT, then to
    warning and text. Lines go to standard error, so ``--json`` output on standard output
    stays parseable.
    """
    level_name = level or os.environ.get(LOG_LEVEL_ENV) or DEFAULT_LEVEL
    format_name = parse_log_format(fmt or os.environ.get(LOG_FORMAT_ENV) or DEFAULT_FORMAT)
    numeric_level = parse_log_level(level_name)

    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if format_name == "json" else TextFormatter())

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    # Libraries stay at WARNING however verbose we are; only our own loggers follow --log-level.
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    ours = logging.getLogger(_OUR_LOGGER)
    ours.setLevel(numeric_level)
    handler.setLevel(min(numeric_level, logging.WARNING))
