"""``postroom diagnose``: the "emails are not being sent" checklist, each check with its fix."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from app.cli.base import CHANNELS, State, emit, json_option, main, pass_state


def _report(data: dict[str, Any]) -> str:
    lines = []
    for check in data["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        lines.append(f"{mark} {check['name']}: {check['detail']}")
        if not check["ok"] and check["fix"]:
            lines.append(f"     fix: {check['fix']}")
    lines.append("All checks passed." if data["ok"] else "Some checks failed (see fix lines).")
    return "\n".join(lines)


@main.command("diagnose")
@click.option("--user", "username", help="Follow this user's route, limits and domains.")
@click.option("--channel", type=click.Choice(CHANNELS), help="Only this channel's route.")
@click.option(
    "--offline",
    is_flag=True,
    help="Database checks only: skip the live SMTP test and DNS verification.",
)
@click.option(
    "--nameserver",
    metavar="ADDR[:PORT]",
    help="Verify DNS records at this server instead of the authoritative ones.",
)
@json_option
@pass_state
def diagnose_command(
    state: State,
    username: str | None,
    channel: str | None,
    offline: bool,
    nameserver: str | None,
) -> None:
    """Why mail is not going out: engines, routes, servers, limits, domains, the queue.

    Exits 1 when a check fails, so scripts can alert on it.
    """
    from app.cli.checks import parse_nameserver
    from app.services.diagnose import diagnose, vault_cipher_if_any

    db = state.db()
    result = asyncio.run(
        diagnose(
            db,
            username=username,
            channel=channel,
            cipher=vault_cipher_if_any(db),
            live=not offline,
            nameserver=parse_nameserver(nameserver),
        )
    )
    data = result.as_dict()
    emit(state, data, _report)
    if not result.ok:
        sys.exit(1)
