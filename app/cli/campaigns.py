"""``postroom campaigns`` and ``postroom send``: queue mail for the send engines."""

from __future__ import annotations

from typing import Any

import click

from app.cli.base import CHANNELS, State, emit, json_option, key_values, main, pass_state, table

ITEM_STATUSES = ("queued", "in_flight", "deferred", "held", "sent", "failed")


@main.group()
def campaigns() -> None:
    """Campaigns: recipients queued for the send engines, and how far they got."""


def _created(data: dict[str, Any]) -> str:
    lines = [
        f"Created campaign {data['name']!r} ({data['status']}) with "
        f"{data['recipients']} recipient(s) queued."
    ]
    if data["rejected"]:
        lines.append(f"{len(data['rejected'])} line(s) rejected:")
        lines += [f"  line {r['line']}: {r['value']!r}: {r['reason']}" for r in data["rejected"]]
    return "\n".join(lines)


@campaigns.command("create")
@click.argument("name")
@click.option("--user", "username", required=True, help="The user the campaign sends as.")
@click.option("--channel", type=click.Choice(CHANNELS), default="marketing", show_default=True)
@click.option("--from", "from_email", required=True, metavar="ADDRESS", help="From address.")
@click.option("--from-name", metavar="TEXT", help="The name shown beside the From address.")
@click.option("--subject", required=True, metavar="TEXT")
@click.option("--text-file", type=click.Path(dir_okay=False), help="The plain-text body.")
@click.option("--html-file", type=click.Path(dir_okay=False), help="The HTML body.")
@click.option(
    "--recipients",
    "recipients_file",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help='One address a line, or CSV with an "email" column.',
)
@json_option
@pass_state
def campaigns_create(
    state: State,
    name: str,
    username: str,
    channel: str,
    from_email: str,
    from_name: str | None,
    subject: str,
    text_file: str | None,
    html_file: str | None,
    recipients_file: str,
) -> None:
    """Create a draft campaign and queue its recipients (invalid lines are listed)."""
    from app.services.campaigns import create_campaign, read_body, read_recipients

    text = read_body(text_file, "--text-file")
    html = read_body(html_file, "--html-file")
    with state.write() as session:
        data = create_campaign(
            session,
            name,
            username,
            channel,
            from_email,
            from_name,
            subject,
            text,
            html,
            read_recipients(recipients_file),
        )
    emit(state, data, _created)


def _transition(action: str, done: str) -> None:
    @campaigns.command(action, help=f"{action.capitalize()} a campaign.")
    @click.argument("name")
    @json_option
    @pass_state
    def command(state: State, name: str) -> None:
        from app.services.campaigns import change_status

        with state.write() as session:
            data = change_status(session, name, action)
        emit(state, data, lambda d: f"Campaign {d['name']!r} {done} (now {d['status']}).")


_transition("start", "started")
_transition("pause", "paused")
_transition("resume", "resumed")
_transition("cancel", "cancelled")


@campaigns.command("list")
@json_option
@pass_state
def campaigns_list(state: State) -> None:
    """List campaigns, newest first, with their sent and failed counts."""
    from app.services.campaigns import list_campaigns

    with state.read() as session:
        rows = list_campaigns(session)
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("name", "NAME"),
                ("user", "USER"),
                ("channel", "CHANNEL"),
                ("status", "STATUS"),
                ("recipients", "RECIPIENTS"),
                ("sent", "SENT"),
                ("failed", "FAILED"),
            ],
        ),
    )


@campaigns.command("retry")
@click.argument("name")
@click.option(
    "--status",
    "statuses",
    type=click.Choice(("failed", "held")),
    multiple=True,
    help="Which items to queue again (default: failed and held).",
)
@json_option
@pass_state
def campaigns_retry(state: State, name: str, statuses: tuple[str, ...]) -> None:
    """Queue the campaign's failed and held recipients again, with fresh attempts."""
    from app.services.campaigns import RETRYABLE, retry_items

    with state.write() as session:
        data = retry_items(session, name, statuses or RETRYABLE)
    emit(
        state,
        data,
        lambda d: f"Queued {d['retried']} item(s) of {d['name']!r} again ({d['status']}).",
    )


@campaigns.command("status")
@click.argument("name")
@json_option
@pass_state
def campaigns_status(state: State, name: str) -> None:
    """Counts of the campaign's items per status, and why any are held."""
    from app.services.campaigns import campaign_status

    with state.read() as session:
        data = campaign_status(session, name)

    def human(d: dict[str, Any]) -> str:
        shown = {k: v for k, v in d.items() if k != "held_reasons"}
        lines = [key_values(shown)]
        lines += [f"  held: {reason}: {count}" for reason, count in d["held_reasons"].items()]
        return "\n".join(lines)

    emit(state, data, human)


@campaigns.command("results")
@click.argument("name")
@click.option("--status", type=click.Choice(ITEM_STATUSES), help="Only items in this status.")
@json_option
@pass_state
def campaigns_results(state: State, name: str, status: str | None) -> None:
    """One row per recipient: status, attempts, the server's reply, Message-ID."""
    from app.services.campaigns import campaign_results

    with state.read() as session:
        rows = campaign_results(session, name, status=status)
    emit(
        state,
        rows,
        lambda r: table(
            r,
            [
                ("recipient", "RECIPIENT"),
                ("status", "STATUS"),
                ("attempts", "ATTEMPTS"),
                ("server", "SERVER"),
                ("sent_at", "SENT AT"),
                ("reply", "REPLY"),
            ],
        ),
    )


@main.command("send")
@click.option("--user", "username", required=True, help="The user the message is sent as.")
@click.option("--channel", type=click.Choice(CHANNELS), default="transactional", show_default=True)
@click.option("--from", "from_email", required=True, metavar="ADDRESS")
@click.option("--from-name", metavar="TEXT")
@click.option("--to", "to", required=True, metavar="ADDRESS")
@click.option("--subject", required=True, metavar="TEXT")
@click.option("--text", metavar="TEXT", help="The plain-text body.")
@click.option("--text-file", type=click.Path(dir_okay=False), help="Read the text body here.")
@click.option("--html-file", type=click.Path(dir_okay=False), help="The HTML body.")
@json_option
@pass_state
def send(
    state: State,
    username: str,
    channel: str,
    from_email: str,
    from_name: str | None,
    to: str,
    subject: str,
    text: str | None,
    text_file: str | None,
    html_file: str | None,
) -> None:
    """Queue one message (a running campaign of one item) for the send engines."""
    from app.services.campaigns import read_body, send_message
    from app.services.errors import ValidationError

    if text is not None and text_file is not None:
        raise ValidationError("--text", "give either --text or --text-file, not both.")
    if text is None and text_file is None:
        raise ValidationError("--text", "is required; give --text TEXT or --text-file FILE.")
    body = text if text is not None else read_body(text_file, "--text-file")
    html = read_body(html_file, "--html-file")
    with state.write() as session:
        data = send_message(
            session, username, channel, from_email, to, subject, body, html, from_name=from_name
        )
    emit(
        state,
        data,
        lambda d: f"Queued {d['message_id']} to {d['recipient']} (campaign {d['campaign']!r}).",
    )
