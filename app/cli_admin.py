"""``postroom config|vault|profiles`` commands (registered on app.cli.main)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.cli import (
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

# ---------------------------------------------------------------- configuration export/import


@main.group()
def config() -> None:
    """Export or import the whole configuration as YAML (secrets are never exported)."""


@config.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
@pass_state
def config_export(state: State, output: Path | None) -> None:
    """Write servers, groups, users, templates, DNS settings and domains as YAML."""
    from app.services.config_io import export_yaml

    with state.read() as session:
        text = export_yaml(session)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {output}.", err=True)


@config.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@json_option
@pass_state
def config_import(state: State, source: Path, dry_run: bool, yes: bool) -> None:
    """Show the changes SOURCE would make, then apply them in one transaction."""
    from app.services.config_io import apply_import, parse_config, plan_import

    document = parse_config(source.read_bytes())
    with state.read() as session:
        plan = plan_import(session, document)
    if state.json and (dry_run or not plan.changes):
        emit(state, plan.as_dict())
        return
    if not state.json:
        click.echo(plan.describe())
    if dry_run or not plan.changes:
        return
    if not yes:
        if not sys.stdin.isatty():
            fail("import needs confirmation; run it again with --yes to apply these changes.")
        click.confirm("Apply these changes?", abort=True)
    with state.write() as session:
        applied = apply_import(session, document)
    if state.json:
        emit(state, applied.as_dict())
    else:
        click.echo(f"Applied {len(applied.changes)} change(s) in one transaction.")


# ---------------------------------------------------------------- vault key


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


# ---------------------------------------------------------------- connection profiles


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
