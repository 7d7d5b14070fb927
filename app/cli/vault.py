"""``postroom vault``: the database's vault key, which encrypts SMTP passwords."""

from __future__ import annotations

import sys

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
    from app.services.keyring_store import keyring_status
    from app.services.vault import vault_key_id

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
    from app.services.vault import export_vault_key

    if not yes:
        fail("the vault key decrypts every SMTP password; add --yes to print it.")
    with state.write() as session:
        click.echo(export_vault_key(session))


@vault.command("import-key")
@pass_state
def vault_import_key(state: State) -> None:
    """Store the vault key read from standard input in this workstation's keyring."""
    from app.services.vault import import_vault_key

    key = read_password_stdin()
    with state.write() as session:
        import_vault_key(session, key)
    click.echo("The vault key is stored in your keyring.")


@vault.command("reset")
@click.option("--yes", "-y", is_flag=True, help="Reset without asking.")
@json_option
@pass_state
def vault_reset(state: State, yes: bool) -> None:
    """Start a new vault when the key is lost: stored SMTP passwords are cleared and listed.

    The new key is the one given with POSTROOM_VAULT_KEY or --vault-key-file, else a new
    key saved in your keyring. The reset is recorded in the audit log.
    """
    from app.services.vault import passwords_to_reenter, reset_vault

    if not yes:
        with state.read() as session:
            pending = passwords_to_reenter(session)
        if not sys.stdin.isatty():
            fail(
                f"vault reset clears {len(pending)} stored password(s) and needs confirmation; "
                "run it again with --yes."
            )
        click.echo(
            f"A new vault key will be made and {len(pending)} stored password(s) cleared: "
            + (", ".join(p.describe() for p in pending) or "none")
        )
        click.confirm("Reset the vault?", abort=True)
    with state.write() as session:
        result = reset_vault(session)
    if state.json:
        emit(state, result.as_dict())
        return
    where = {"keyring": "your keyring", "env": "POSTROOM_VAULT_KEY"}.get(
        result.key_source, "the vault key file"
    )
    click.echo(f"Started a new vault for this database; its key is the one in {where}.")
    if result.cleared:
        click.echo(
            "Enter these passwords again (e.g. `postroom servers edit NAME --password-stdin`):"
        )
        for cleared in result.cleared:
            click.echo(f"  {cleared.describe()}")
    else:
        click.echo("No stored password was cleared.")
