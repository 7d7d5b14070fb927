"""``postroom gui``: the desktop console, on the database the options name."""

from __future__ import annotations

import sys

from app.cli.base import State, main, pass_state


@main.command()
@pass_state
def gui(state: State) -> None:
    """Open the desktop console."""
    from app.views.app import run

    url = state.url() if (state.profile or state.database_url) else None
    sys.exit(run(url))
