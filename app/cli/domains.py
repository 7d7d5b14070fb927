"""``postroom domains``: sender domains and the records they must publish."""

from __future__ import annotations

from typing import Any

import click

from app.cli.base import KINDS, State, emit, json_option, kind_option, main, pass_state, table
from app.cli.checks import domains_verify


@main.group()
def domains() -> None:
    """Sender domains and the DNS records they must publish."""


# The live DNS check lives with the other live checks; this group is where users find it.
domains.add_command(domains_verify)


def _domain_human(data: dict[str, Any]) -> str:
    lines = [f"{data['domain']} ({data['kind']}, {data['status']}) of {data['user']}"]
    if data["records"]:
        lines.append("Publish these records:")
        lines += [f"  {r['host']}  {r['type']}  {r['value']}" for r in data["records"]]
    else:
        lines.append("No records to publish: the template is empty.")
    return "\n".join(lines)


@domains.command("list")
@click.option("--user", "username")
@click.option("--status", type=click.Choice(["approval_pending", "enabled", "disabled"]))
@click.option("--kind", type=click.Choice(KINDS))
@json_option
@pass_state
def domains_list(state: State, username: str | None, status: str | None, kind: str | None) -> None:
    """List sender domains with their last check (the rows of the Sender Domains page);
    ``domains show`` has each domain's records."""
    from app.services.sender_domains import domain_rows

    with state.read() as session:
        rows = domain_rows(session, username=username, status=status, kind=kind)
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("domain", "DOMAIN"),
                ("kind", "KIND"),
                ("status", "STATUS"),
                ("user", "USER"),
                ("template", "TEMPLATE"),
            ],
        ),
    )


@domains.command("show")
@click.argument("domain")
@kind_option
@json_option
@pass_state
def domains_show(state: State, domain: str, kind: str) -> None:
    """Show a sender domain and its records."""
    from app.services.sender_domains import domain_as_dict, get_sender_domain

    with state.read() as session:
        data = domain_as_dict(get_sender_domain(session, domain, kind))
    emit(state, data, _domain_human)


@domains.command("add")
@click.argument("domain")
@click.option("--user", "username", required=True, help="The user who owns the domain.")
@kind_option
@json_option
@pass_state
def domains_add(state: State, domain: str, username: str, kind: str) -> None:
    """Create a sender domain; prints the records to publish."""
    from app.services.sender_domains import create_sender_domain, domain_as_dict

    with state.write() as session:
        data = domain_as_dict(create_sender_domain(session, username, domain, kind=kind))
    emit(state, data, _domain_human)


@domains.command("delete")
@click.argument("domain")
@kind_option
@pass_state
def domains_delete(state: State, domain: str, kind: str) -> None:
    """Delete a sender domain."""
    from app.services.sender_domains import delete_sender_domain

    with state.write() as session:
        delete_sender_domain(session, domain, kind)
    click.echo(f"Deleted sender domain {domain!r}.")


def _set_status(state: State, domain: str, kind: str, status: str) -> None:
    from app.services.sender_domains import domain_as_dict, set_domain_status

    with state.write() as session:
        data = domain_as_dict(set_domain_status(session, domain, kind, status))
    emit(state, data, lambda d: f"{d['domain']} is now {d['status']}.")


@domains.command("enable")
@click.argument("domain")
@kind_option
@json_option
@pass_state
def domains_enable(state: State, domain: str, kind: str) -> None:
    """Enable a sender domain by hand (skips DNS verification)."""
    _set_status(state, domain, kind, "enabled")


@domains.command("disable")
@click.argument("domain")
@kind_option
@json_option
@pass_state
def domains_disable(state: State, domain: str, kind: str) -> None:
    """Disable a sender domain: it can no longer be chosen as a From domain."""
    _set_status(state, domain, kind, "disabled")
