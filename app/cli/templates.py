"""``postroom templates``: DNS record templates (campaign and gateway)."""

from __future__ import annotations

from typing import Any

import click

from app.cli.base import KINDS, State, emit, fail, json_option, kind_option, main, pass_state, table


def _records_from_options(records: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """``HOST TYPE VALUE`` triples given as ``--record 'HOST TYPE VALUE'``."""
    parsed = []
    for raw in records:
        parts = raw.split(None, 2)
        if len(parts) != 3:
            fail(
                f"--record {raw!r} must be 'HOST TYPE VALUE', "
                "e.g. '_Subdomain_._SenderDomain_ CNAME mailer.example.com'."
            )
        parsed.append((parts[0], parts[1], parts[2]))
    return parsed


def _records_human(data: dict[str, Any]) -> str:
    lines = [f"{data.get('kind', '')} template {data['name']!r}"]
    lines += [f"  {r['host']}  {r['type']}  {r['value']}" for r in data["records"]] or [
        "  (no records: domains are enabled at once)"
    ]
    return "\n".join(lines)


@main.group()
def templates() -> None:
    """DNS record templates (campaign and gateway)."""


@templates.command("list")
@click.option("--kind", type=click.Choice(KINDS))
@json_option
@pass_state
def templates_list(state: State, kind: str | None) -> None:
    """List DNS templates (the rows of the console's DNS Templates page)."""
    from app.services.dns_templates import template_rows

    with state.read() as session:
        rows = template_rows(session, kind=kind)
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("kind", "KIND"),
                ("name", "NAME"),
                ("record_count", "RECORDS"),
                ("description", "DESCRIPTION"),
            ],
        ),
    )


@templates.command("show")
@click.argument("name")
@kind_option
@json_option
@pass_state
def templates_show(state: State, name: str, kind: str) -> None:
    """Show a template's records (with placeholders)."""
    from app.services.dns_templates import get_template, template_as_dict

    with state.read() as session:
        data = template_as_dict(get_template(session, kind, name))
    emit(state, data, _records_human)


@templates.command("add")
@click.argument("name")
@kind_option
@click.option("--record", "records", multiple=True, metavar="'HOST TYPE VALUE'")
@click.option("--description")
@json_option
@pass_state
def templates_add(
    state: State, name: str, kind: str, records: tuple[str, ...], description: str | None
) -> None:
    """Create a template; repeat --record for each record."""
    from app.services.dns_templates import create_template, template_as_dict

    with state.write() as session:
        data = template_as_dict(
            create_template(
                session,
                name=name,
                kind=kind,
                records=_records_from_options(records),
                description=description,
            )
        )
    emit(
        state,
        data,
        lambda d: f"Created {d['kind']} template {d['name']!r} with {len(d['records'])} record(s).",
    )


@templates.command("edit")
@click.argument("name")
@kind_option
@click.option("--rename")
@click.option(
    "--record", "records", multiple=True, metavar="'HOST TYPE VALUE'", help="Replaces all records."
)
@click.option("--clear-records", is_flag=True, help="Make the template empty.")
@click.option("--description")
@click.option("--expected-version", type=int)
@json_option
@pass_state
def templates_edit(
    state: State,
    name: str,
    kind: str,
    rename: str | None,
    records: tuple[str, ...],
    clear_records: bool,
    description: str | None,
    expected_version: int | None,
) -> None:
    """Change a template. Existing sender domains keep their records."""
    from app.services.dns_templates import template_as_dict, update_template

    new_records = [] if clear_records else (_records_from_options(records) if records else None)
    with state.write() as session:
        data = template_as_dict(
            update_template(
                session,
                kind,
                name,
                new_name=rename,
                records=new_records,
                description=description,
                expected_version=expected_version,
            )
        )
    emit(
        state,
        data,
        lambda d: (
            f"Updated {d['kind']} template {d['name']!r}; only new sender domains use the change."
        ),
    )


@templates.command("delete")
@click.argument("name")
@kind_option
@pass_state
def templates_delete(state: State, name: str, kind: str) -> None:
    """Delete a template no user group uses."""
    from app.services.dns_templates import delete_template

    with state.write() as session:
        delete_template(session, kind, name)
    click.echo(f"Deleted {kind} template {name!r}.")


@templates.command("preview")
@click.argument("name")
@kind_option
@click.option("--domain", default="example.com", show_default=True, help="Sample sender domain.")
@json_option
@pass_state
def templates_preview(state: State, name: str, kind: str, domain: str) -> None:
    """Render a template for a sample domain without storing anything."""
    from app.services.dns_records import record_dicts
    from app.services.dns_templates import preview

    with state.read() as session:
        rendered = preview(session, kind, name, domain)
    data = {
        "name": name,
        "kind": kind,
        "domain": domain,
        "records": record_dicts(rendered),
    }
    emit(state, data, _records_human)
