"""``postroom dns-settings``: the global DNS values templates are rendered with."""

from __future__ import annotations

import click

from app.cli.base import State, emit, json_option, key_values, main, parse_assignments, pass_state


@main.group("dns-settings")
def dns_settings() -> None:
    """Global DNS values: SPF include, DKIM, DMARC, CNAME targets, subdomain and prefixes."""


@dns_settings.command("show")
@json_option
@pass_state
def dns_settings_show(state: State) -> None:
    """Show the effective DNS settings."""
    from app.services.dns_settings import get_settings, settings_as_dict

    with state.read() as session:
        data = settings_as_dict(get_settings(session))
    emit(state, data, key_values)


@dns_settings.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--expected-version", type=int)
@json_option
@pass_state
def dns_settings_set(
    state: State, assignments: tuple[str, ...], expected_version: int | None
) -> None:
    """Change DNS settings, e.g. `dkim_selector=key2 sender_domain_target=mailer.example.com`."""
    from app.services.dns_settings import get_settings, settings_as_dict, update_settings

    changes = parse_assignments(assignments)
    with state.write() as session:
        update_settings(session, changes, expected_version=expected_version)
        data = settings_as_dict(get_settings(session))
    emit(state, data, lambda d: "Updated DNS settings:\n" + key_values(d))
