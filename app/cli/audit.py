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
    from app.services.audit import list_entries, summary_line

    with state.read() as session:
        entries = list_entries(session, entity=entity, text=text, limit=limit)
    # JSON keeps the recorded field names (scripts rely on them); people read the labels.
    rows = [
        {
            "at": e.at.isoformat(timespec="seconds"),
            "actor": e.actor,
            "action": e.action,
            "entity": e.entity,
            "key": e.key,
            "details": e.details,
        }
        for e in entries
    ]
    changes = [summary_line(e.entity, e.action, e.details, 100) for e in entries]
    emit(
        state,
        rows,
        lambda r: table(
            [dict(row, changes=line) for row, line in zip(r, changes, strict=True)],
            [
                ("at", "AT"),
                ("actor", "ACTOR"),
                ("action", "ACTION"),
                ("entity", "ENTITY"),
                ("key", "NAME"),
                ("changes", "DETAILS"),
            ],
        ),
    )
