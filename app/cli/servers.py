"""``postroom servers``: delivery servers (SMTP relays)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from sqlalchemy.orm import Session

from app.cli.base import (
    F,
    State,
    emit,
    fail,
    json_option,
    key_values,
    main,
    pass_state,
    read_password_stdin,
    table,
)
from app.cli.checks import servers_test
from app.services.servers import server_rows


@main.group()
def servers() -> None:
    """Delivery servers (SMTP relays)."""


# The live SMTP test lives with the other live checks; this group is where users find it.
servers.add_command(servers_test)


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


@servers.command("list")
@json_option
@pass_state
def servers_list(state: State) -> None:
    """List delivery servers with their allocation and last test."""
    with state.read() as session:
        rows = server_rows(session)
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
        rows = {r["name"]: r for r in server_rows(session)}
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
def servers_add(state: State, /, name: str, password_stdin: bool, **options: Any) -> None:
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
    /,
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
