"""``postroom groups``: user groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from app.cli.base import (
    F,
    State,
    emit,
    json_option,
    key_values,
    main,
    parse_assignments,
    pass_state,
    table,
)


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
    """List user groups and their channel servers (the rows of the console's User Groups page)."""
    from app.services.groups import group_rows

    with state.read() as session:
        rows = group_rows(session)
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
def groups_add(state: State, /, name: str, **options: Any) -> None:
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
    /,
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
