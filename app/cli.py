"""The ``postroom`` command line: the same service calls the console makes.

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

F = TypeVar("F", bound=Callable[..., Any])

CHANNELS = ("marketing", "transactional", "autoresponder")


def fail(message: str) -> NoReturn:
    click.echo(f"postroom: {message}", err=True)
    sys.exit(1)


@dataclass
class State:
    database_url: str | None = None
    profile: str | None = None
    json: bool = False
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


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit(state: State, data: Any, human: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON under --json, else the human rendering."""
    if state.json or human is None:
        click.echo(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))
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
@click.version_option(__version__, prog_name="postroom")
@click.pass_context
def main(
    ctx: click.Context,
    database_url: str | None,
    profile: str | None,
    vault_key_file: str | None,
    json_output: bool,
) -> None:
    """Postroom: delivery servers, user groups, DNS templates and sender domains."""
    if vault_key_file:
        from app.services.vault import set_vault_key_file

        set_vault_key_file(vault_key_file)
    state = ctx.ensure_object(State)
    state.database_url = database_url
    state.profile = profile
    state.json = state.json or json_output


pass_state = click.make_pass_decorator(State, ensure=True)


# ---------------------------------------------------------------- console


@main.command()
@pass_state
def gui(state: State) -> None:
    """Open the desktop console."""
    from app.views.app import run

    url = state.url() if (state.profile or state.database_url) else None
    sys.exit(run(url))


# ---------------------------------------------------------------- delivery servers


@main.group()
def servers() -> None:
    """Delivery servers (SMTP relays)."""


def _server_options(func: F) -> F:
    options = [
        click.option("--host", help="SMTP host name or IP address."),
        click.option("--port", type=int, help="SMTP port (25, 587 STARTTLS, 465 SSL)."),
        click.option(
            "--encryption",
            type=click.Choice(["none", "ssl", "tls"], case_sensitive=False),
            help="none, ssl (TLS on connect) or tls (STARTTLS).",
        ),
        click.option("--timeout", type=int, help="Connection timeout in seconds (default 10)."),
        click.option("--username", help="SMTP username (turns authentication on)."),
        click.option(
            "--password-stdin", is_flag=True, help="Read the SMTP password from standard input."
        ),
        click.option("--link-domain", help="Link tracking domain."),
        click.option("--open-domain", help="Open tracking domain."),
        click.option("--mail-from-domain", help="Mail From (return-path) domain."),
        click.option("--enforced-from", help="Enforced From e-mail address."),
        click.option("--sender-info-as-mfrom/--no-sender-info-as-mfrom", default=None),
        click.option("--sender-info-as-from/--no-sender-info-as-from", default=None),
        click.option(
            "--allow-unverified-certificate/--verify-certificate",
            default=None,
            help="Accept a TLS certificate that does not verify (off by default).",
        ),
        click.option("--hourly-quota", type=int, help="Messages per hour through this server."),
        click.option("--daily-quota", type=int, help="Messages per day through this server."),
        click.option("--max-connections", type=int, help="Simultaneous SMTP connections."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_SERVER_OPTION_FIELDS = {
    "host": "host",
    "port": "port",
    "encryption": "encryption",
    "timeout": "timeout_seconds",
    "username": "username",
    "link_domain": "link_tracking_domain",
    "open_domain": "open_tracking_domain",
    "mail_from_domain": "mail_from_domain",
    "enforced_from": "enforced_from_email",
    "sender_info_as_mfrom": "sender_info_as_mfrom",
    "sender_info_as_from": "sender_info_as_from",
    "allow_unverified_certificate": "allow_unverified_certificate",
    "hourly_quota": "hourly_quota",
    "daily_quota": "daily_quota",
    "max_connections": "max_connections",
}


def _server_changes(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        field_name: options[opt]
        for opt, field_name in _SERVER_OPTION_FIELDS.items()
        if options.get(opt) is not None
    }


def _server_rows(session: Session) -> list[dict[str, Any]]:
    from app.services.routing import allocation_badges, badge_text
    from app.services.servers import list_servers, server_as_dict

    badges = allocation_badges(session)
    rows = []
    for server in list_servers(session):
        row = server_as_dict(server)
        row["allocation"] = [
            {"group": b.group, "channel": b.channel.value, "badge": b.code}
            for b in badges.get(server.name, [])
        ]
        row["allocation_text"] = badge_text(badges.get(server.name, []))
        rows.append(row)
    return rows


@servers.command("list")
@json_option
@pass_state
def servers_list(state: State) -> None:
    """List delivery servers with their allocation and last test."""
    with state.read() as session:
        rows = _server_rows(session)
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("name", "NAME"),
                ("host", "SMTP HOST"),
                ("port", "PORT"),
                ("encryption", "ENC"),
                ("mail_from_domain", "MAIL FROM DOMAIN"),
                ("allocation_text", "ALLOCATION"),
                ("last_test_status", "TEST"),
            ],
        ),
    )


@servers.command("show")
@click.argument("name")
@json_option
@pass_state
def servers_show(state: State, name: str) -> None:
    """Show one delivery server (never its password)."""
    from app.services.servers import get_server, server_as_dict, warnings_for

    with state.read() as session:
        server = get_server(session, name)
        data = server_as_dict(server)
        data["warnings"] = warnings_for(server)
        rows = {r["name"]: r for r in _server_rows(session)}
        data["allocation"] = rows[name]["allocation"]
    emit(state, data, key_values)


def _vault(session: Session) -> Any:
    from app.services.vault import open_vault

    return open_vault(session, create=True)


@servers.command("add")
@click.argument("name")
@_server_options
@json_option
@pass_state
def servers_add(state: State, name: str, password_stdin: bool, **options: Any) -> None:
    """Create a delivery server."""
    from app.services.servers import create_server, server_as_dict, warnings_for

    if not options.get("host"):
        fail("servers add needs --host; give the SMTP server's host name.")
    password = read_password_stdin() if password_stdin else None
    values = {"name": name, **_server_changes(options)}
    with state.write() as session:
        cipher = _vault(session) if password is not None else None
        server = create_server(session, values, password=password, cipher=cipher)
        data = server_as_dict(server)
        notes = warnings_for(server)
    if state.json:
        emit(state, {**data, "warnings": notes})
    else:
        click.echo(f"Created delivery server {name!r}.")
        for note in notes:
            click.echo(f"  note: {note}")


@servers.command("edit")
@click.argument("name")
@click.option("--rename", help="New name.")
@click.option("--clear-password", is_flag=True, help="Remove the stored password.")
@click.option("--expected-version", type=int, help="Refuse if someone saved since this version.")
@_server_options
@json_option
@pass_state
def servers_edit(
    state: State,
    name: str,
    rename: str | None,
    clear_password: bool,
    expected_version: int | None,
    password_stdin: bool,
    **options: Any,
) -> None:
    """Change a delivery server's settings."""
    from app.services.servers import server_as_dict, update_server

    changes = _server_changes(options)
    if rename:
        changes["name"] = rename
    kwargs: dict[str, Any] = {}
    if password_stdin:
        kwargs["password"] = read_password_stdin()
    elif clear_password:
        kwargs["password"] = None
    with state.write() as session:
        if kwargs.get("password"):
            kwargs["cipher"] = _vault(session)
        server = update_server(session, name, changes, expected_version=expected_version, **kwargs)
        data = server_as_dict(server)
    emit(state, data, lambda d: f"Updated delivery server {d['name']!r} (version {d['version']}).")


@servers.command("delete")
@click.argument("name")
@pass_state
def servers_delete(state: State, name: str) -> None:
    """Delete a delivery server that no user group uses."""
    from app.services.servers import delete_server

    with state.write() as session:
        delete_server(session, name)
    click.echo(f"Deleted delivery server {name!r}.")


# ---------------------------------------------------------------- user groups


@main.group()
def groups() -> None:
    """User groups: channel servers, DNS templates, preferences, limits, headers."""


def _group_options(func: F) -> F:
    options = [
        click.option("--marketing-server", metavar="SERVER"),
        click.option("--transactional-server", metavar="SERVER"),
        click.option("--autoresponder-server", metavar="SERVER"),
        click.option(
            "--legacy-send-method",
            type=click.Choice(
                ["none", "system", "smtp", "localmta", "powermta", "phpmail", "savetodisk"],
                case_sensitive=False,
            ),
            help="Fallback when a channel has no delivery server.",
        ),
        click.option("--campaign-dns-template", metavar="TEMPLATE"),
        click.option("--gateway-dns-template", metavar="TEMPLATE"),
        click.option("--sender-domain-management/--no-sender-domain-management", default=None),
        click.option("--default-sender-domain", metavar="DOMAIN"),
        click.option("--default-sender-domain-enabled/--no-default-sender-domain", default=None),
        click.option("--default-sender-domain-monthly-limit", type=int),
        click.option("--monthly-limit", "monthly_email_limit", type=int),
        click.option("--daily-limit", "daily_email_limit", type=int),
        click.option("--lifetime-limit", "lifetime_email_limit", type=int),
        click.option("--sender-domains-limit", type=int),
        click.option("--x-mailer"),
        click.option(
            "--gateway-add-domain/--no-gateway-add-domain", "perm_gateway_add_domain", default=None
        ),
        click.option(
            "--gateway-manage-domain/--no-gateway-manage-domain",
            "perm_gateway_manage_domain",
            default=None,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _group_changes(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


@groups.command("list")
@json_option
@pass_state
def groups_list(state: State) -> None:
    """List user groups and their channel servers."""
    from app.services.groups import group_as_dict, list_groups

    with state.read() as session:
        rows = [group_as_dict(g) for g in list_groups(session)]
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("name", "NAME"),
                ("marketing_server", "MARKETING"),
                ("transactional_server", "TRANSACTIONAL"),
                ("autoresponder_server", "AUTORESPONDER"),
                ("legacy_send_method", "LEGACY"),
                ("sender_domain_management", "DOMAINS"),
            ],
        ),
    )


@groups.command("show")
@click.argument("name")
@json_option
@pass_state
def groups_show(state: State, name: str) -> None:
    """Show every setting of a user group."""
    from app.services.groups import get_group, group_as_dict

    with state.read() as session:
        data = group_as_dict(get_group(session, name))
    emit(state, data, key_values)


@groups.command("add")
@click.argument("name")
@_group_options
@json_option
@pass_state
def groups_add(state: State, name: str, **options: Any) -> None:
    """Create a user group."""
    from app.services.groups import create_group, group_as_dict

    with state.write() as session:
        data = group_as_dict(create_group(session, {"name": name, **_group_changes(options)}))
    emit(state, data, lambda d: f"Created user group {d['name']!r}.")


@groups.command("edit")
@click.argument("name")
@click.option("--rename", help="New name.")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any setting, e.g. html_footer=...",
)
@click.option("--expected-version", type=int)
@_group_options
@json_option
@pass_state
def groups_edit(
    state: State,
    name: str,
    rename: str | None,
    assignments: tuple[str, ...],
    expected_version: int | None,
    **options: Any,
) -> None:
    """Change a user group (empty string clears a server or template: --marketing-server '')."""
    from app.services.groups import group_as_dict, update_group

    changes: dict[str, Any] = {**parse_assignments(assignments), **_group_changes(options)}
    if rename:
        changes["name"] = rename
    with state.write() as session:
        data = group_as_dict(
            update_group(session, name, changes, expected_version=expected_version)
        )
    emit(state, data, lambda d: f"Updated user group {d['name']!r} (version {d['version']}).")


@groups.command("delete")
@click.argument("name")
@pass_state
def groups_delete(state: State, name: str) -> None:
    """Delete a user group that has no users."""
    from app.services.groups import delete_group

    with state.write() as session:
        delete_group(session, name)
    click.echo(f"Deleted user group {name!r}.")


# ---------------------------------------------------------------- users


@main.group()
def users() -> None:
    """Users and their sending counts."""


@users.command("list")
@click.option("--group", help="Only users of this group.")
@json_option
@pass_state
def users_list(state: State, group: str | None) -> None:
    """List users."""
    from app.services.users import list_users, user_as_dict

    with state.read() as session:
        rows = [user_as_dict(u) for u in list_users(session, group=group)]
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("username", "USERNAME"),
                ("email", "EMAIL"),
                ("group", "GROUP"),
                ("is_active", "ACTIVE"),
            ],
        ),
    )


@users.command("show")
@click.argument("username")
@json_option
@pass_state
def users_show(state: State, username: str) -> None:
    """Show a user, their sender domains and their sending counts against the limits."""
    from app.services.limits import usage
    from app.services.users import get_user, user_as_dict

    with state.read() as session:
        user = get_user(session, username)
        data = user_as_dict(user)
        data["sender_domains"] = [
            {"domain": d.domain, "kind": d.kind.value, "status": d.status.value}
            for d in user.sender_domains
        ]
        data["usage"] = usage(session, user.id).as_dict()
    emit(state, data, lambda d: json.dumps(d, indent=2, default=_json_default))


@users.command("add")
@click.argument("username")
@click.option("--email", required=True, help="The user's e-mail address.")
@click.option("--group", required=True, help="The user group the user belongs to.")
@json_option
@pass_state
def users_add(state: State, username: str, email: str, group: str) -> None:
    """Create a user in a user group."""
    from app.services.users import create_user, user_as_dict

    with state.write() as session:
        data = user_as_dict(
            create_user(session, {"username": username, "email": email, "group": group})
        )
    emit(state, data, lambda d: f"Created user {d['username']!r} in group {d['group']!r}.")


@users.command("edit")
@click.argument("username")
@click.option("--rename", help="New username.")
@click.option("--email")
@click.option("--group")
@click.option("--active/--inactive", "is_active", default=None)
@click.option("--expected-version", type=int)
@json_option
@pass_state
def users_edit(
    state: State,
    username: str,
    rename: str | None,
    email: str | None,
    group: str | None,
    is_active: bool | None,
    expected_version: int | None,
) -> None:
    """Change a user."""
    from app.services.users import update_user, user_as_dict

    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "username": rename,
            "email": email,
            "group": group,
            "is_active": is_active,
        }.items()
        if v is not None
    }
    with state.write() as session:
        data = user_as_dict(
            update_user(session, username, changes, expected_version=expected_version)
        )
    emit(state, data, lambda d: f"Updated user {d['username']!r}.")


@users.command("delete")
@click.argument("username")
@pass_state
def users_delete(state: State, username: str) -> None:
    """Delete a user and their sender domains."""
    from app.services.users import delete_user

    with state.write() as session:
        delete_user(session, username)
    click.echo(f"Deleted user {username!r}.")


# ---------------------------------------------------------------- routing


@main.command()
@click.argument("username")
@click.argument("channel", type=click.Choice(CHANNELS, case_sensitive=False))
@json_option
@pass_state
def route(state: State, username: str, channel: str) -> None:
    """Which delivery server serves USERNAME on CHANNEL, and why."""
    from app.services.routing import resolve_route

    with state.read() as session:
        result = resolve_route(session, username, channel)
    data = result.as_dict()
    emit(
        state,
        data,
        lambda d: f"{d['server'] or d['method']}: {d['reason']}",
    )


# ---------------------------------------------------------------- audit


@main.command()
@click.option(
    "--entity", help="delivery_server, user_group, user, dns_template, dns_settings, sender_domain"
)
@click.option("--search", "text", help="Substring of the entity name or the actor.")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@pass_state
def audit(state: State, entity: str | None, text: str | None, limit: int) -> None:
    """Who changed what, newest first."""
    from app.services.audit import list_entries

    with state.read() as session:
        rows = [
            {
                "at": e.at.isoformat(timespec="seconds"),
                "actor": e.actor,
                "action": e.action,
                "entity": e.entity,
                "key": e.key,
                "details": e.details,
            }
            for e in list_entries(session, entity=entity, text=text, limit=limit)
        ]
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("at", "AT"),
                ("actor", "ACTOR"),
                ("action", "ACTION"),
                ("entity", "ENTITY"),
                ("key", "NAME"),
            ],
        ),
    )


def run_cli() -> None:  # pragma: no cover - console script indirection
    main()


# Commands for templates, DNS settings and domains, and for configuration, vault and
# profiles, live in their own modules to keep this one readable; importing registers them.
from app import cli_admin as _cli_admin  # noqa: E402,F401
from app import cli_checks as _cli_checks  # noqa: E402,F401
from app import cli_domains as _cli_domains  # noqa: E402,F401
