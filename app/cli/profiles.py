"""``postroom profiles``: named database connections (passwords in the keyring)."""

from __future__ import annotations

import click

from app.cli.base import State, emit, json_option, main, pass_state, read_password_stdin, table


@main.group()
def profiles() -> None:
    """Named database connections; their passwords live in the keyring."""


@profiles.command("list")
@json_option
@pass_state
def profiles_list(state: State) -> None:
    """List saved connection profiles (no passwords)."""
    from app.services.profiles import list_profiles

    rows = [
        {"name": p.name, "url": p.url_without_password, "backend": p.backend}
        for p in list_profiles()
    ]
    emit(
        state, rows, lambda r: table(r, [("name", "NAME"), ("backend", "BACKEND"), ("url", "URL")])
    )


@profiles.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--password-stdin", is_flag=True, help="Read the database password from standard input."
)
@pass_state
def profiles_add(state: State, name: str, url: str, password_stdin: bool) -> None:
    """Save a profile; a password in URL or from stdin goes to the keyring only."""
    from sqlalchemy.engine import make_url

    from app.services.profiles import save_profile

    if password_stdin:
        url = (
            make_url(url).set(password=read_password_stdin()).render_as_string(hide_password=False)
        )
    save_profile(name, url)
    click.echo(f"Saved profile {name!r}.")


@profiles.command("remove")
@click.argument("name")
@pass_state
def profiles_remove(state: State, name: str) -> None:
    """Forget a profile and its keyring password."""
    from app.services.profiles import delete_profile

    delete_profile(name)
    click.echo(f"Removed profile {name!r}.")
