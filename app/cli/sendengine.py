"""``postroom sendengine``: the send-engine image and its base, made through the Docker API.

Progress lines go to standard error, so standard output holds only the result (JSON under
``--json``). The engine is the one ``DOCKER_HOST`` (and the TLS variables) name, as for the
Docker CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from app.cli.base import State, emit, fail, json_option, key_values, main, pass_state, table

if TYPE_CHECKING:
    from app.engine.images import ImageResult


@main.group()
def sendengine() -> None:
    """Send engines in containers: their image; starting, scaling and watching them."""


def progress(line: str) -> None:
    click.echo(line, err=True)


def show_result(state: State, made: ImageResult, what: str) -> None:
    def human(data: dict[str, Any]) -> str:
        verb = f"was built in {data['seconds']:.0f} s" if data["built"] else "is up to date"
        size = data["size_bytes"] / 1_000_000
        return "\n".join(
            [
                f"The {what} {data['tags'][0]} {verb}.",
                key_values(
                    {
                        "tags": ", ".join(data["tags"]),
                        "id": data["image_id"],
                        "size": f"{size:.0f} MB",
                    }
                ),
            ]
        )

    emit(state, made.as_dict(), human)


@sendengine.command("base")
@click.option("--tag", metavar="IMAGE", help="Name the image. Default: postroom/base:SUITE.")
@click.option("--suite", default="bookworm", show_default=True, help="The Debian release.")
@click.option(
    "--mirror",
    metavar="URL",
    help="The Debian mirror. Default: the one apt on this machine uses, else deb.debian.org.",
)
@click.option("--force", is_flag=True, help="Make it again even if nothing changed.")
@json_option
@pass_state
def sendengine_base(
    state: State, tag: str | None, suite: str, mirror: str | None, force: bool
) -> None:
    """Make a base image without a registry: debootstrap a minimal Debian with python3, then
    import it (needs root and debootstrap)."""
    from app.engine.base_image import make_base_image

    made = make_base_image(tag=tag, suite=suite, mirror=mirror, force=force, progress=progress)
    show_result(state, made, "base image")


@sendengine.command("build")
@click.option(
    "--base",
    metavar="IMAGE",
    default="python:3.11-slim",
    show_default=True,
    help="The image to build on: a Python 3.11 image from a registry, or the one "
    "`postroom sendengine base` made (postroom/base:bookworm).",
)
@click.option(
    "--tag",
    "tags",
    metavar="IMAGE",
    multiple=True,
    help="Name the image (repeatable). Default: postroom/sendengine:VERSION and :latest.",
)
@click.option("--force", is_flag=True, help="Build again, without the layer cache.")
@click.option("--push", is_flag=True, help="Then push the first tag to --registry.")
@click.option(
    "--registry",
    metavar="HOST:PORT",
    envvar="POSTROOM_REGISTRY",
    help="The registry --push sends the image to (or POSTROOM_REGISTRY).",
)
@json_option
@pass_state
def sendengine_build(
    state: State,
    base: str,
    tags: tuple[str, ...],
    force: bool,
    push: bool,
    registry: str | None,
) -> None:
    """Build the send-engine image: a wheelhouse made here, then docker build through the API."""
    from app.engine.images import build_engine_image

    if push and not registry:
        fail("--push needs the registry; give --registry HOST:PORT or set POSTROOM_REGISTRY.")
    if push and registry:
        from app.engine.registry import check_registry

        check_registry(registry)  # before a build of minutes, not after it
    made = build_engine_image(base=base, tags=list(tags) or None, force=force, progress=progress)
    if not push or registry is None:
        show_result(state, made, "send-engine image")
        return
    pushed = push_to_registry(made.tags[0], registry)
    emit(
        state,
        {**made.as_dict(), "pushed": pushed.as_dict()},
        lambda d: (
            f"The send-engine image {d['tags'][0]} is built and pushed as "
            f"{d['pushed']['reference']} ({d['pushed']['digest']})."
        ),
    )


def push_to_registry(image: str, registry: str) -> Any:
    from app.engine.docker_api import SLOW_CALL_TIMEOUT_S, connect
    from app.engine.registry import check_registry, push_image

    registry = check_registry(registry)  # before any connection: bad input changes nothing
    client = connect(timeout=SLOW_CALL_TIMEOUT_S)
    try:
        return push_image(client, image, registry, progress)
    finally:
        client.close()


@sendengine.command("push")
@click.option(
    "--registry",
    metavar="HOST:PORT",
    envvar="POSTROOM_REGISTRY",
    help="Where every Swarm node can pull from, e.g. 127.0.0.1:5000 (or POSTROOM_REGISTRY).",
)
@click.option(
    "--image",
    metavar="IMAGE",
    default=None,
    help="The local image to push. Default: postroom/sendengine:VERSION.",
)
@json_option
@pass_state
def sendengine_push(state: State, registry: str | None, image: str | None) -> None:
    """Tag the send-engine image as REGISTRY/postroom/sendengine:VERSION and push it, so
    Swarm nodes can pull it (`--registry` on the other commands then names it)."""
    from app.engine.fleet import DEFAULT_IMAGE

    if not registry:
        fail("the registry is missing; give --registry HOST:PORT or set POSTROOM_REGISTRY.")
    pushed = push_to_registry(image or DEFAULT_IMAGE, registry)
    emit(
        state,
        pushed.as_dict(),
        lambda d: f"Pushed {d['image']} as {d['reference']} ({d['digest']}, {d['seconds']:.0f} s).",
    )


# ------------------------------------------------------------------ the engines themselves
#
# Every command below works on a fleet: the containers labelled as this fleet's engines
# (`--fleet`, default "default"). The reference's spellings (`sendengine:start` ...) are
# top-level aliases of the same commands.


def fleet_options(func: Any) -> Any:
    func = click.option(
        "--fleet",
        "fleet_name",
        metavar="NAME",
        envvar="POSTROOM_SENDENGINE_FLEET",
        default="default",
        show_default=True,
        help="Which group of engines on this Docker host (found by their labels).",
    )(func)
    func = click.option(
        "--swarm",
        is_flag=True,
        envvar="POSTROOM_SENDENGINE_SWARM",
        help="Manage a replicated Swarm service instead of containers on one host.",
    )(func)
    # Read by open_fleet from the context, so each command's signature stays as it was.
    return click.option(
        "--registry",
        metavar="HOST:PORT",
        envvar="POSTROOM_REGISTRY",
        expose_value=False,
        callback=lambda ctx, _param, value: ctx.meta.__setitem__("registry", value),
        help="With --swarm: the registry the nodes pull the image from (`sendengine push` "
        "put it there). Without it, only a one-node swarm has the image.",
    )(func)


def image_options(func: Any) -> Any:
    from app.engine.fleet import DEFAULT_IMAGE

    func = click.option(
        "--image",
        metavar="IMAGE",
        default=DEFAULT_IMAGE,
        show_default=True,
        help="The send-engine image (`postroom sendengine build` makes it).",
    )(func)
    return click.option(
        "--concurrency",
        type=click.IntRange(1, 500),
        default=10,
        show_default=True,
        help="Messages in flight at once in each engine.",
    )(func)


def open_fleet(
    state: State,
    fleet_name: str,
    swarm: bool,
    *,
    image: str | None = None,
    concurrency: int = 10,
    secrets: bool = False,
    database: bool = True,
) -> Any:
    """The fleet the options name; the database URL and vault key read only to start."""
    from app.engine.fleet_open import open_fleet as open_engine_fleet
    from app.engine.fleet_secrets import EngineSecrets

    def engine_secrets() -> EngineSecrets | None:
        if secrets:
            from app.services.vault import open_vault

            with state.write() as session:
                key = open_vault(session).key
            return EngineSecrets(state.url(), key)
        # Without `secrets` the URL alone: enough to tell whether containers drifted.
        return EngineSecrets(state.url(), "") if database else None

    return open_engine_fleet(
        fleet_name=fleet_name,
        swarm=swarm,
        image=image,
        concurrency=concurrency,
        registry=click.get_current_context().meta.get("registry"),
        database=lambda: state.db() if database else None,
        secrets=engine_secrets,
        progress=progress,
    )


def names(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def warn_drift(fleet: Any) -> None:
    drifted = fleet.drifted()
    if drifted:
        progress(
            f"Made with other settings or an older image: {names(drifted)}; "
            "`postroom sendengine restart` replaces them."
        )


@sendengine.command("start")
@click.option("--scale", type=click.IntRange(0, 1000), default=1, show_default=True)
@image_options
@fleet_options
@json_option
@pass_state
def sendengine_start(
    state: State, scale: int, image: str, concurrency: int, fleet_name: str, swarm: bool
) -> None:
    """Start SCALE send engines (instances 1..SCALE; others are removed)."""
    fleet = open_fleet(state, fleet_name, swarm, image=image, concurrency=concurrency, secrets=True)
    started = fleet.start(scale)
    emit(
        state,
        {"started": started, "engines": scale},
        lambda d: f"{scale} send engine(s) running; started: {names(d['started'])}.",
    )


@sendengine.command("stop")
@fleet_options
@json_option
@pass_state
def sendengine_stop(state: State, fleet_name: str, swarm: bool) -> None:
    """Stop every engine gracefully: in-flight messages finish, leases are released."""
    fleet = open_fleet(state, fleet_name, swarm, database=False)
    stopped = fleet.stop()
    emit(state, {"stopped": stopped}, lambda d: f"Stopped: {names(d['stopped'])}.")


@sendengine.command("restart")
@click.option("--scale", type=click.IntRange(0, 1000), help="Default: as many as now.")
@image_options
@fleet_options
@json_option
@pass_state
def sendengine_restart(
    state: State, scale: int | None, image: str, concurrency: int, fleet_name: str, swarm: bool
) -> None:
    """Stop gracefully, then start again with today's image and settings."""
    fleet = open_fleet(state, fleet_name, swarm, image=image, concurrency=concurrency, secrets=True)
    if hasattr(fleet, "plan"):
        fleet.plan()  # the image and the database are checked before anything stops
    started = fleet.restart(scale)
    emit(state, {"started": started}, lambda d: f"Restarted: {names(d['started'])}.")


@sendengine.command("scale")
@click.argument("count", type=click.IntRange(0, 1000))
@image_options
@fleet_options
@json_option
@pass_state
def sendengine_scale(
    state: State, count: int, image: str, concurrency: int, fleet_name: str, swarm: bool
) -> None:
    """Add the next instance numbers up to COUNT, or remove the highest; the rest stay."""
    fleet = open_fleet(state, fleet_name, swarm, image=image, concurrency=concurrency, secrets=True)
    added, removed = fleet.scale(count)
    emit(
        state,
        {"added": added, "removed": removed, "engines": count},
        lambda d: (
            f"{count} send engine(s); added: {names(d['added'])}; removed: {names(d['removed'])}."
        ),
    )


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value = value / 1024  # type: ignore[assignment]
    return str(value)


def human_status(data: dict[str, Any]) -> str:
    if not data["engines"]:
        return "No send engines exist here; start them with `postroom sendengine start`."
    rows = []
    for engine in data["engines"]:
        uptime = engine["uptime_s"]
        rows.append(
            {
                **engine,
                "uptime": "-" if uptime is None else f"{uptime:.0f} s",
                "cpu": "-" if engine["cpu_percent"] is None else f"{engine['cpu_percent']:.1f} %",
                "memory": human_bytes(engine["memory_bytes"]),
                "campaign_list": ", ".join(
                    f"{c['name']} ({c['workers']})" for c in engine["campaigns"]
                )
                or "-",
                "program_list": ", ".join(f"{p['name']} {p['state']}" for p in engine["programs"])
                or "-",
            }
        )
    swarm = data.get("mode") == "swarm"
    node_column = [("node", "NODE")] if swarm else []
    if swarm:
        # grouped by node (the engine sorts them so), a node's name once per group
        previous = None
        for row in rows:
            node = row["node"] or "(no node yet)"
            row["node"], previous = ("" if node == previous else node), node
    shown = table(
        rows,
        [
            *node_column,
            ("name", "NAME"),
            ("instance", "#"),
            ("state", "STATE"),
            ("health", "HEALTH"),
            ("uptime", "UPTIME"),
            ("cpu", "CPU"),
            ("memory", "MEMORY"),
            ("campaign_list", "CAMPAIGNS (WORKERS)"),
            ("program_list", "PROGRAMS"),
        ],
    )
    errors = [
        f"Engine {e['instance']} ({e['state']}"
        + (f" on {e['node']}" if e.get("node") else "")
        + f"): {e['error']}"
        for e in data["engines"]
        if e.get("error")
    ]
    return "\n".join([shown, *errors])


@sendengine.command("status")
@fleet_options
@json_option
@pass_state
def sendengine_status(state: State, fleet_name: str, swarm: bool) -> None:
    """Each engine: state, health, uptime, CPU, memory, campaigns, supervisor programs."""
    fleet = open_fleet(state, fleet_name, swarm)
    emit(state, fleet.status(), human_status)
    if not state.json:
        warn_drift(fleet)


def human_stats(data: dict[str, Any]) -> str:
    engines = [
        {
            **e,
            "cpu": "-" if e["cpu_percent"] is None else f"{e['cpu_percent']:.1f} %",
            "memory": human_bytes(e["memory_bytes"]),
            "net": "host network"
            if e["net_rx_bytes"] is None
            else f"{human_bytes(e['net_rx_bytes'])} / {human_bytes(e['net_tx_bytes'])}",
        }
        for e in data["engines"]
    ]
    return "\n\n".join(
        [
            table(
                engines,
                [("name", "NAME"), ("cpu", "CPU"), ("memory", "MEMORY"), ("net", "NET RX / TX")],
            ),
            table(
                data["queue"],
                [
                    ("campaign", "CAMPAIGN"),
                    ("queued", "QUEUED"),
                    ("in_flight", "IN FLIGHT"),
                    ("deferred", "DEFERRED"),
                    ("held", "HELD"),
                ],
            ),
            f"Active consumers: {data['consumers']}",
        ]
    )


@sendengine.command("stats")
@fleet_options
@json_option
@pass_state
def sendengine_stats(state: State, fleet_name: str, swarm: bool) -> None:
    """CPU, memory and network per engine; queue depth per campaign; active consumers."""
    fleet = open_fleet(state, fleet_name, swarm)
    emit(state, fleet.stats(), human_stats)


def instance_of(fleet: Any, container: str | None) -> int | None:
    """An instance number, or a container's name or id turned into its instance number."""
    if container is None:
        return None
    if container.isdigit():
        return int(container)
    for engine in fleet.containers():
        if container in (engine.name, engine.container.id, engine.container.short_id):
            return int(engine.instance)
    fail(f"{container!r} is not a send engine of this fleet; give its instance number or name.")


@sendengine.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C ends).")
@click.option("--lines", "-n", type=click.IntRange(0), help="Only the last N lines of each.")
@click.argument("container", required=False)
@fleet_options
@pass_state
def sendengine_logs(
    state: State,
    follow: bool,
    lines: int | None,
    container: str | None,
    fleet_name: str,
    swarm: bool,
) -> None:
    """The logs of every engine, or of one (CONTAINER: instance number or name)."""
    fleet = open_fleet(state, fleet_name, swarm, database=False)
    stream = fleet.logs(follow=follow, lines=lines, instance=instance_of(fleet, container))
    many = container is None and len(fleet.containers()) > 1
    try:
        for line in stream:
            click.echo(f"{line.container} | {line.text}" if many else line.text)
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()


def show_exec_results(state: State, results: list[Any], what: str) -> None:
    data = [
        {"name": r.name, "instance": r.instance, "exit_code": r.exit_code, "output": r.output}
        for r in results
    ]

    def human(rows: list[dict[str, Any]]) -> str:
        parts = []
        for row in rows:
            head = f"== {row['name']} (exit {row['exit_code']})" if len(rows) > 1 else ""
            parts.append("\n".join(p for p in (head, row["output"].rstrip()) if p))
        return "\n".join(parts)

    emit(state, data, human)
    failed = [r.name for r in results if r.exit_code != 0]
    if failed and what != "supervisor status":
        fail(f"{what} failed in {names(failed)}; its output is above.")


@sendengine.command("supervisor")
@click.argument("action", type=click.Choice(["status", "start", "stop", "restart"]))
@click.argument("program", required=False)
@click.option("-i", "--instance", type=click.IntRange(1), help="Only this engine.")
@fleet_options
@json_option
@pass_state
def sendengine_supervisor(
    state: State,
    action: str,
    program: str | None,
    instance: int | None,
    fleet_name: str,
    swarm: bool,
) -> None:
    """supervisorctl ACTION [PROGRAM] in every engine (all programs when none is named)."""
    fleet = open_fleet(state, fleet_name, swarm, database=False)
    show_exec_results(state, fleet.supervisor(action, program, instance), f"supervisor {action}")


@sendengine.command("workers")
@click.argument("campaign_arg", metavar="CAMPAIGN", required=False)
@click.argument("count_arg", metavar="COUNT", required=False, type=click.IntRange(0, 500))
@click.argument("instance_arg", metavar="INSTANCE", required=False, type=click.IntRange(1))
@click.option("-c", "--campaign", help="The campaign (instead of the first argument).")
@click.option("-n", "--count", type=click.IntRange(0, 500), help="Workers; 0 removes them.")
@click.option("-i", "--instance", type=click.IntRange(1), help="The engine (default 1).")
@fleet_options
@json_option
@pass_state
def sendengine_workers(
    state: State,
    campaign_arg: str | None,
    count_arg: int | None,
    instance_arg: int | None,
    campaign: str | None,
    count: int | None,
    instance: int | None,
    fleet_name: str,
    swarm: bool,
) -> None:
    """COUNT more workers for CAMPAIGN on one engine (a supervisor program; 0 removes it)."""
    name = campaign or campaign_arg
    workers = count if count is not None else count_arg
    where = instance or instance_arg or 1
    if not name:
        fail("the campaign is missing; give its name first or with -c.")
    if workers is None:
        fail("the number of workers is missing; give it after the campaign or with -n.")
    fleet = open_fleet(state, fleet_name, swarm)
    fleet.workers(name, workers, where)
    emit(
        state,
        {"campaign": name, "workers": workers, "instance": where},
        lambda d: (
            f"Extra workers for {name} removed from engine {where}."
            if workers == 0
            else f"{workers} extra worker(s) for {name} run on engine {where}."
        ),
    )


class CommandAfterDashes(click.Command):
    """Keeps what follows ``--`` as the command's argv, untouched by option parsing."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["argv"] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)


@sendengine.command("exec", cls=CommandAfterDashes)
@click.argument("instance", required=False, type=click.IntRange(1))
@fleet_options
@json_option
@pass_state
def sendengine_exec(state: State, instance: int | None, fleet_name: str, swarm: bool) -> None:
    """Run a command in every engine, or in INSTANCE: `exec [INSTANCE] -- COMMAND...`."""
    argv = click.get_current_context().meta.get("argv") or []
    if not argv:
        fail("the command is missing; give it after `--`, e.g. exec 1 -- supervisorctl status.")
    fleet = open_fleet(state, fleet_name, swarm, database=False)
    show_exec_results(state, fleet.exec(argv, instance), argv[0])


for _name, _command in list(sendengine.commands.items()):
    if _name not in ("base", "build", "push"):
        main.add_command(_command, f"sendengine:{_name}")
