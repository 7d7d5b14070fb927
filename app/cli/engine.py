"""``postroom engine``: run a send engine in this process, and ask whether one is healthy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from app.cli.base import State, emit, fail, json_option, main, pass_state


@main.group()
def engine() -> None:
    """The send engine: delivers the queued mail of running campaigns."""


@engine.command("run")
@click.option(
    "--engine-id",
    metavar="ID",
    help="This engine's name in leases and heartbeats (default: POSTROOM_ENGINE_ID or the "
    "host name). Restarting with the same id takes back its leases at once.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 500),
    default=10,
    show_default=True,
    help="Messages in flight at once (each server still gets at most its Max Connections).",
)
@click.option("--until-idle", is_flag=True, help="Exit 0 once nothing is sendable now.")
@click.option(
    "--lease-seconds",
    type=click.FloatRange(2, 3600),
    default=60.0,
    show_default=True,
    help="How long a claimed item stays this engine's without a heartbeat.",
)
@click.option(
    "--retry-after",
    type=click.FloatRange(0.1, 86400),
    default=60.0,
    show_default=True,
    help="Seconds before the first retry of a temporary failure; doubles each attempt.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Attempts before a temporarily failing message is marked failed.",
)
@click.option(
    "--eml-folder",
    type=click.Path(file_okay=False),
    help="Where the SaveToDisk legacy method writes .eml files (default: POSTROOM_EML_FOLDER "
    "or 'outbox' beside the default database).",
)
@click.option(
    "--cafile",
    type=click.Path(dir_okay=False, exists=True),
    help="A CA bundle to trust for the delivery servers' certificates.",
)
@click.option(
    "--recheck-hours",
    type=click.FloatRange(0, 24 * 30),
    default=6.0,
    show_default=True,
    help="Re-verify enabled sender domains' DNS this often (0: never from this engine).",
)
@click.option(
    "--nameserver",
    metavar="ADDR[:PORT]",
    help="The DNS re-check asks this server instead of the authoritative ones.",
)
@click.option(
    "--pause-failures",
    type=click.FloatRange(0, 100),
    default=50.0,
    show_default=True,
    metavar="PERCENT",
    help="Pause a running campaign once this share of its finished items failed (0: never).",
)
@click.option(
    "--pause-after",
    type=click.IntRange(1, 10_000_000),
    default=100,
    show_default=True,
    metavar="N",
    help="...but only once at least N of its items finished.",
)
@click.option(
    "--campaign",
    metavar="NAME",
    help="Send only this campaign's items (extra workers for one campaign).",
)
@click.option("--log-format", metavar="FORMAT", help="text or json (one object a line).")
@click.option("--log-level", metavar="LEVEL", help="debug, info, warning or error.")
@pass_state
def engine_run(
    state: State,
    engine_id: str | None,
    concurrency: int,
    until_idle: bool,
    lease_seconds: float,
    retry_after: float,
    max_attempts: int,
    eml_folder: str | None,
    cafile: str | None,
    recheck_hours: float,
    nameserver: str | None,
    pause_failures: float,
    pause_after: int,
    campaign: str | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """Deliver queued mail until stopped (SIGTERM finishes what is in flight, then exits)."""
    from app.cli.checks import parse_nameserver
    from app.engine.outbox import default_outbox
    from app.engine.runner import EngineOptions, default_engine_id, run_engine
    from app.services.logs import LOG_LEVEL_ENV, configure_logging

    # A service logs what it does: info unless told otherwise (the console's default is
    # warning, which would leave an engine's log empty until something goes wrong).
    configure_logging(
        log_level or state.log_level or os.environ.get(LOG_LEVEL_ENV) or "info",
        log_format or state.log_format,
    )
    options = EngineOptions(
        engine_id=engine_id or default_engine_id(),
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        retry_after=retry_after,
        max_attempts=max_attempts,
        until_idle=until_idle,
        outbox=Path(eml_folder) if eml_folder else default_outbox(),
        cafile=cafile,
        recheck_seconds=recheck_hours * 3600,
        campaign=campaign,
        nameserver=parse_nameserver(nameserver),
        pause_failure_percent=pause_failures,
        pause_min_items=pause_after,
    )
    totals = run_engine(state.db(), options)
    if state.json:
        emit(state, {"engine_id": options.engine_id, **totals.as_dict()})


@engine.command("health")
@click.option("--engine-id", metavar="ID", help="Default: POSTROOM_ENGINE_ID or the host name.")
@click.option(
    "--max-age",
    type=click.FloatRange(1, 86400),
    default=60.0,
    show_default=True,
    help="Seconds since the last heartbeat after which the engine counts as stale.",
)
@json_option
@pass_state
def engine_health(state: State, engine_id: str | None, max_age: float) -> None:
    """Exit 0 when the engine beat recently and runs; 1 otherwise (a container HEALTHCHECK)."""
    from app.engine.heartbeats import engine_health as health
    from app.engine.runner import default_engine_id

    result = health(state.db().engine, engine_id or default_engine_id(), max_age)
    data = {
        "healthy": result.healthy,
        "reason": result.reason,
        "state": result.state,
        "last_beat_at": result.last_beat_at,
    }
    if state.json:
        emit(state, data)
    elif result.healthy:
        click.echo(result.reason)
    if not result.healthy:
        if state.json:
            sys.exit(1)
        fail(result.reason)
