"""``postroom audit``: who changed what."""

from __future__ import annotations

import click

from app.cli.base import State, emit, json_option, main, pass_state, table
from app.services.audit import ENTITIES


@main.command()
@click.option("--entity", help=f"Only entries about one kind: {', '.join(ENTITIES)}.")
@click.option("--search", "text", help="Substring of the entity name or the actor.")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@pass_state
def audit(state: State, entity: str | None, text: str | None, limit: int) -> None:
    """Who changed what, newest first."""
    from app.services.audit import list_entries

    with state.read() as session:
        rows = [
            {
                "at": e.at.isoformat(timespec="seconds"),
                "actor": e.actor,
                "action": e.action,
                "entity": e.entity,
                "key": e.key,
                "details": e.details,
            }
            for e in list_entries(session, entity=entity, text=text, limit=limit)
        ]
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("at", "AT"),
                ("actor", "ACTOR"),
                ("action", "ACTION"),
                ("entity", "ENTITY"),
                ("key", "NAME"),
            ],
        ),
    )
