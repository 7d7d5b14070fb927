"""``postroom route``: which delivery server a user's channel resolves to."""

from __future__ import annotations

import click

from app.cli.base import CHANNELS, State, emit, json_option, main, pass_state


@main.command()
@click.argument("username")
@click.argument("channel", type=click.Choice(CHANNELS, case_sensitive=False))
@json_option
@pass_state
def route(state: State, username: str, channel: str) -> None:
    """Which delivery server serves USERNAME on CHANNEL, and why."""
    from app.services.routing import resolve_route

    with state.read() as session:
        result = resolve_route(session, username, channel)
    data = result.as_dict()
    emit(
        state,
        data,
        lambda d: f"{d['server'] or d['method']}: {d['reason']}",
    )
