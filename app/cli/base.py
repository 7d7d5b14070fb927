"""The root ``postroom`` group, its options, and what every command module shares.

The command line makes the same service calls the console makes. Command modules import
``main`` from here and hang their groups on it; ``app.cli`` imports them all.

User errors print one line (``postroom: <what> ; <fix>``) and exit 1; a bad command line
exits 2 (click's convention). Tracebacks are only for bugs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app import __version__
from app.models.database import (
    Database,
    connection_error_sentence,
    redact_url,
    resolve_database_url,
)
from app.services.errors import PostroomError
from app.services.logs import configure_logging

F = TypeVar("F", bound=Callable[..., Any])

CHANNELS = ("marketing", "transactional", "autoresponder")
KINDS = ("campaign", "gateway")
# The kind of the sender domain or template a command acts on: campaign unless told.
kind_option = click.option(
    "--kind", type=click.Choice(KINDS), default="campaign", show_default=True
)


def fail(message: str) -> NoReturn:
    click.echo(f"postroom: {message}", err=True)
    sys.exit(1)


@dataclass
class State:
    database_url: str | None = None
    profile: str | None = None
    json: bool = False
    log_level: str | None = None  # the root options, for commands that log differently
    log_format: str | None = None
    _db: Database | None = field(default=None, repr=False)

    def url(self) -> str:
        if self.profile:
            from app.services.profiles import profile_url

            return profile_url(self.profile)
        return resolve_database_url(self.database_url)

    def db(self) -> Database:
        if self._db is None:
            url = self.url()
            try:
                self._db = Database(url)
            except (OperationalError, DBAPIError) as exc:
                reason = connection_error_sentence(exc, url)
                fail(f"cannot open the database {redact_url(url)}: {reason}")
        return self._db

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self.db().transaction() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.db().session() as session:
            yield session

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


def json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit(state: State, data: Any, human: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON under --json, else the human rendering."""
    if state.json or human is None:
        click.echo(json.dumps(data, indent=2, default=json_default, ensure_ascii=False))
    else:
        click.echo(human(data))


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain aligned text table; ``columns`` is [(key, heading)]."""
    if not rows:
        return "(none)"
    cells = [[("" if r.get(k) is None else str(r.get(k))) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def key_values(data: Mapping[str, Any]) -> str:
    width = max((len(k) for k in data), default=0)
    return "\n".join(f"{k.ljust(width)}  {'' if v is None else v}" for k, v in data.items())


def json_option(func: F) -> F:
    """``--json`` accepted after the subcommand too (``servers list --json``)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(State).json = True

    return click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        callback=callback,
        help="Print JSON.",
    )(func)


def read_password_stdin() -> str:
    """The first line of standard input, without its line ending (never a CLI argument)."""
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        fail("--password-stdin was given but standard input held no password; pipe it in.")
    return password


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` arguments for generic edits."""
    changes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"{pair!r} is not KEY=VALUE; write e.g. port=2525.")
        changes[key.strip().replace("-", "_")] = value
    return changes


class PostroomGroup(click.Group):
    """Turns expected errors into one line and a non-zero exit, everywhere below."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PostroomError as exc:
            fail(str(exc))
        except (OperationalError, DBAPIError) as exc:
            fail(f"the database refused the operation: {connection_error_sentence(exc)}")
        finally:
            state = ctx.find_object(State)
            if state is not None and ctx.parent is None:
                state.close()


@click.group(cls=PostroomGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database",
    "database_url",
    envvar="POSTROOM_DATABASE_URL",
    metavar="URL",
    help="SQLAlchemy URL (sqlite:///path, postgresql+psycopg://..., mysql+pymysql://...). "
    "Default: the embedded SQLite file in your user data directory.",
)
@click.option("--profile", metavar="NAME", help="A saved connection profile (see `profiles`).")
@click.option(
    "--vault-key-file",
    type=click.Path(dir_okay=False, exists=True),
    envvar="POSTROOM_VAULT_KEY_FILE",
    help="Read the vault key from this file (mode 0600) instead of the keyring.",
)
@click.option("--json", "json_output", is_flag=True, help="Print JSON for every read.")
@click.option(
    "--log-level",
    metavar="LEVEL",
    help="debug, info, warning (default), error or critical; or set POSTROOM_LOG_LEVEL. "
    "Log lines go to standard error.",
)
@click.option(
    "--log-format",
    metavar="FORMAT",
    help="text (default) or json (one JSON object a line); or set POSTROOM_LOG_FORMAT.",
)
@click.version_option(__version__, prog_name="postroom")
@click.pass_context
def main(
    ctx: click.Context,
    database_url: str | None,
    profile: str | None,
    vault_key_file: str | None,
    json_output: bool,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Postroom: delivery servers, user groups, DNS templates and sender domains."""
    configure_logging(log_level, log_format)
    if vault_key_file:
        from app.services.vault import set_vault_key_file

        set_vault_key_file(vault_key_file)
    state = ctx.ensure_object(State)
    state.database_url = database_url
    state.profile = profile
    state.json = state.json or json_output
    state.log_level, state.log_format = log_level, log_format


pass_state = click.make_pass_decorator(State, ensure=True)
