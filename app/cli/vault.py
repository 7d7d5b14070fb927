"""``postroom vault``: the database's vault key, which encrypts SMTP passwords."""

from __future__ import annotations

import click

from app.cli.base import (
    State,
    emit,
    fail,
    json_option,
    key_values,
    main,
    pass_state,
    read_password_stdin,
)


@main.group()
def vault() -> None:
    """The database's vault key, which encrypts SMTP passwords (kept in your keyring)."""


@vault.command("status")
@json_option
@pass_state
def vault_status(state: State) -> None:
    """Where the vault key comes from and whether the keyring works."""
    from app.services.secrets import keyring_status, vault_key_id

    status = keyring_status()
    with state.read() as session:
        key_id = vault_key_id(session)
    data = {
        "keyring_backend": status.backend,
        "keyring_usable": status.usable,
        "keyring_problem": status.reason,
        "vault_key_id": key_id,
    }
    emit(state, data, key_values)


@vault.command("export-key")
@click.option("--yes", is_flag=True, help="Confirm that you want the key printed.")
@pass_state
def vault_export_key(state: State, yes: bool) -> None:
    """Print the vault key, to give to a second admin workstation (handle it like a password)."""
    from app.services.secrets import export_vault_key

    if not yes:
        fail("the vault key decrypts every SMTP password; add --yes to print it.")
    with state.write() as session:
        click.echo(export_vault_key(session))


@vault.command("import-key")
@pass_state
def vault_import_key(state: State) -> None:
    """Store the vault key read from standard input in this workstation's keyring."""
    from app.services.secrets import import_vault_key

    key = read_password_stdin()
    with state.write() as session:
        import_vault_key(session, key)
    click.echo("The vault key is stored in your keyring.")
