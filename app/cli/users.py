"""``postroom users``: users and their sending counts."""

from __future__ import annotations

import json
from typing import Any

import click

from app.cli.base import State, emit, json_default, json_option, main, pass_state, table


@main.group()
def users() -> None:
    """Users and their sending counts."""


@users.command("list")
@click.option("--group", help="Only users of this group.")
@json_option
@pass_state
def users_list(state: State, group: str | None) -> None:
    """List users with their sending counts (the rows of the console's Users page)."""
    from app.services.users import user_rows

    with state.read() as session:
        rows = user_rows(session, group=group)
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
    emit(state, data, lambda d: json.dumps(d, indent=2, default=json_default))


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
