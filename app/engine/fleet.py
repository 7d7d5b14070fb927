"""The send engines as one thing to start, scale, watch and stop: the ``Fleet`` interface.

Two implementations sit behind it: ``ContainerFleet`` (loose containers on one Docker host,
``app.engine.fleet_containers``) and ``SwarmFleet`` (a replicated Swarm service,
``app.engine.fleet_swarm``). Everything that looks inside
running engines (stats, supervisor programs, logs, exec, extra campaign workers) works on
the engines' containers and is shared here; only starting, scaling and stopping differ.

Containers are found by their labels, never by their names (names are for people):
``app.postroom.role=sendengine``, ``app.postroom.fleet=NAME`` (more than one fleet may share
a host, e.g. tests beside a real one), ``app.postroom.instance=N`` and
``app.postroom.config=HASH`` (the image id and the settings the container was made with;
``status`` reports drift when today's settings hash differently).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from docker.errors import APIError, NotFound

from app import __version__
from app.engine import fleet_samples
from app.engine.fleet_logs import LogStream
from app.services.errors import PostroomError

if TYPE_CHECKING:
    from app.engine.fleet_secrets import EngineSecrets
    from app.models.database import Database

Progress = Callable[[str], None]
T = TypeVar("T")

ROLE_LABEL = "app.postroom.role"
FLEET_LABEL = "app.postroom.fleet"
INSTANCE_LABEL = "app.postroom.instance"
CONFIG_LABEL = "app.postroom.config"
SWARM_TASK_LABEL = "com.docker.swarm.task.name"
ENGINE_ROLE = "sendengine"
DEFAULT_FLEET = "default"
DEFAULT_IMAGE = f"postroom/sendengine:{__version__}"
# supervisord gives the engine 60 s (stopwaitsecs) to finish what is in flight; Docker must
# wait longer than that before it kills the container.
STOP_TIMEOUT_S = 75
ENGINE_USER = "postroom"
ENGINE_UID = 10001
PROGRAMS_FOLDER = "/var/lib/postroom/programs"
# Calls made at once (one per container): the Docker client's connection pool is made this
# large too (``connect(max_pool_size=POOL_SIZE)``), so none waits for a free connection.
POOL_SIZE = 64
SECRET_MOUNTS = {
    "database_url": "/run/secrets/postroom_database_url",
    "vault_key": "/run/secrets/postroom_vault_key",
}


class FleetError(PostroomError):
    """A fleet operation cannot be done; the message says why and what to do."""


class ImageMissing(FleetError):
    """The engine image is not on the Docker engine (the console offers to build it)."""


def _nothing(_line: str) -> None:
    return None


@dataclass(frozen=True)
class FleetSettings:
    """What every engine of a fleet is started with (the secrets are handed over apart)."""

    fleet: str = DEFAULT_FLEET
    image: str = DEFAULT_IMAGE
    concurrency: int = 10
    # HOST[:PORT] the Swarm nodes pull the image from (None: each node's own images)
    registry: str | None = None

    def engine_id(self, instance: int) -> str:
        """The engine's name in leases and heartbeats (host networking shares the host
        name, so each container is told its own)."""
        prefix = "" if self.fleet == DEFAULT_FLEET else f"{self.fleet}-"
        return f"{prefix}sendengine-{instance}"

    def container_name(self, instance: int) -> str:
        return f"postroom-{self.engine_id(instance)}"

    @property
    def service_name(self) -> str:
        """The Swarm service's name (for people, like the containers')."""
        prefix = "" if self.fleet == DEFAULT_FLEET else f"{self.fleet}-"
        return f"postroom-{prefix}sendengine"


@dataclass(frozen=True)
class ExecResult:
    name: str
    instance: int
    exit_code: int
    output: str


@dataclass
class EngineContainer:
    """One engine's container as the Docker API lists it."""

    container: Any  # docker.models.containers.Container
    instance: int

    @property
    def name(self) -> str:
        return str(self.container.name)

    @property
    def state(self) -> str:
        return str(self.container.attrs.get("State", {}).get("Status", "unknown"))

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass
class EngineStatus:
    name: str
    instance: int
    state: str
    health: str
    uptime_s: float | None
    cpu_percent: float | None
    memory_bytes: int | None
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    programs: list[dict[str, str]] = field(default_factory=list)
    drift: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("drift")
        return data


def config_hash(image_id: str, settings: dict[str, Any]) -> str:
    """A short hash of what makes two containers interchangeable (never a secret)."""
    text = json.dumps({"image": image_id, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parallel(function: Callable[[Any], T], items: list[Any]) -> list[T]:
    """``function`` over ``items`` at once (Docker calls wait on the daemon, not the CPU)."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(len(items), POOL_SIZE)) as pool:
        return list(pool.map(function, items))


class Fleet(ABC):
    """The send engines. Subclasses decide how engines are started, scaled and stopped."""

    mode: str

    def __init__(
        self,
        client: Any,
        settings: FleetSettings,
        *,
        database: Database | None = None,
        secrets: EngineSecrets | None = None,
        progress: Progress = _nothing,
    ) -> None:
        self.client = client
        self.settings = settings
        self.database = database
        self.secrets = secrets
        self.progress = progress

    def image_id(self) -> str:
        """The id of the engine image on this Docker engine, or why there is none."""
        try:
            return str(self.client.images.get(self.settings.image).id)
        except NotFound:  # ImageNotFound is one
            raise ImageMissing(
                f"the send-engine image {self.settings.image} is not on this Docker engine; "
                "build it with `postroom sendengine build`."
            ) from None

    # ---------------------------------------------------------------- lifecycle (per mode)

    @abstractmethod
    def start(self, scale: int = 1) -> list[str]:
        """Have ``scale`` engines running; the names of those started or made."""

    @abstractmethod
    def stop(self) -> list[str]:
        """Stop every engine gracefully (in-flight messages finish, leases are released)."""

    @abstractmethod
    def scale(self, count: int) -> tuple[list[str], list[str]]:
        """Add the next instance numbers or remove the highest: (added, removed)."""

    def restart(self, scale: int | None = None) -> list[str]:
        """Stop gracefully, then start ``scale`` engines (default: as many as there were)."""
        count = scale if scale is not None else max(1, len(self.containers()))
        self.stop()
        self.scale(0)
        return self.start(count)

    # ---------------------------------------------------------------- finding containers

    def containers(self, *, instance: int | None = None) -> list[EngineContainer]:
        """This fleet's engine containers, running or not, by instance number."""
        labels = [f"{ROLE_LABEL}={ENGINE_ROLE}", f"{FLEET_LABEL}={self.settings.fleet}"]
        if instance is not None:
            labels.append(f"{INSTANCE_LABEL}={instance}")
        found = []
        for container in self.client.containers.list(all=True, filters={"label": labels}):
            # a Swarm task's container: its slot, from "SERVICE.SLOT.TASK"
            task = container.labels.get(SWARM_TASK_LABEL, "").split(".")
            number = container.labels.get(INSTANCE_LABEL) or (task[1] if len(task) == 3 else "")
            if number.isdigit():
                found.append(EngineContainer(container, int(number)))
        return sorted(found, key=lambda c: c.instance)

    def running(self, instance: int | None = None) -> list[EngineContainer]:
        chosen = [c for c in self.containers(instance=instance) if c.running]
        if not chosen:
            where = f"instance {instance}" if instance is not None else "any send engine"
            raise FleetError(
                f"{where} is not running; start engines with `postroom sendengine start`."
            )
        return chosen

    def current_config(self) -> str | None:
        """The config hash containers made now would carry (None: no image to hash)."""
        return None

    # ---------------------------------------------------------------- looking inside

    def status(self) -> dict[str, Any]:
        engines = self._engine_statuses(self.containers())
        return {"mode": self.mode, "engines": [e.as_dict() for e in engines]}

    def _engine_statuses(self, containers: list[EngineContainer]) -> list[EngineStatus]:
        """What ``status`` says of each of ``containers`` (sampled at once)."""
        running = [c for c in containers if c.running]
        # Every container's probe (programs, CPU and memory, ENGINE_PROBE) at once, with the
        # heartbeat query beside them.
        with ThreadPoolExecutor(max_workers=min(POOL_SIZE, len(running) + 1)) as pool:
            inside_of = {c.instance: pool.submit(self._inside, c) for c in running}
            heartbeats = pool.submit(self._engine_campaigns)
            campaigns: dict[str, dict[str, int]] = heartbeats.result()
            inside = {n: f.result() for n, f in inside_of.items()}
        expected = self.current_config()
        now = datetime.now(UTC)
        engines = []
        for engine in containers:
            attrs = engine.container.attrs
            found = inside.get(engine.instance) or fleet_samples.EngineInside([], None, None)
            engines.append(
                EngineStatus(
                    name=engine.name,
                    instance=engine.instance,
                    state=engine.state,
                    health=fleet_samples.health_of(attrs),
                    uptime_s=fleet_samples.uptime_of(attrs, now),
                    cpu_percent=found.cpu_percent,
                    memory_bytes=found.memory_bytes,
                    campaigns=fleet_samples.campaigns_of(
                        campaigns, self.settings.engine_id(engine.instance)
                    ),
                    programs=found.programs,
                    drift=expected is not None
                    and engine.container.labels.get(CONFIG_LABEL) != expected,
                )
            )
        return engines

    def drifted(self) -> list[str]:
        """Names of containers made with other settings or another image than now."""
        expected = self.current_config()
        if expected is None:
            return []
        return [
            c.name for c in self.containers() if c.container.labels.get(CONFIG_LABEL) != expected
        ]

    def one_shot(self, engine: EngineContainer) -> dict[str, Any]:
        """One stats reading, at once (``one_shot``, API >= 1.41: without it the daemon
        waits a second for a reading of its own to compare); empty if the container went."""
        try:
            found: dict[str, Any] = engine.container.stats(stream=False, one_shot=True)
        except (APIError, NotFound, OSError):  # requests' errors are OSErrors
            return {}
        return found

    def _paired_readings(
        self, running: list[EngineContainer], pool: ThreadPoolExecutor
    ) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
        """Two readings of each container, all at once: CPU % is the CPU time between them
        (``fleet_samples.cpu_percent_between``). The daemon's collector reads every
        container once a second and a one-shot answer waits for its next reading, so the
        second reading comes up to a second after the first, as ``docker stats`` compares."""
        first = [pool.submit(self.one_shot, c) for c in running]
        earlier = [f.result() for f in first]
        later = [f.result() for f in [pool.submit(self.one_shot, c) for c in running]]
        for number, (before, after) in enumerate(zip(earlier, later, strict=True)):
            if before and after and before.get("read") == after.get("read"):
                later[number] = self.one_shot(running[number])  # the same reading twice
        return {
            c.instance: (before, after)
            for c, before, after in zip(running, earlier, later, strict=True)
        }

    def _engine_campaigns(self) -> dict[str, dict[str, int]]:
        return fleet_samples.engine_campaigns(self.database) if self.database else {}

    def _inside(self, engine: EngineContainer) -> fleet_samples.EngineInside:
        probe = ["python3", "-I", "-S", "-c", fleet_samples.ENGINE_PROBE]
        return fleet_samples.parse_engine_probe(self._exec_one(engine, probe).output)

    def _programs(self, engine: EngineContainer) -> list[dict[str, str]]:
        probe = ["python3", "-I", "-S", "-c", fleet_samples.PROGRAMS_PROBE]
        result = self._exec_one(engine, probe)
        return fleet_samples.parse_supervisor_status(result.output)

    def stats(self) -> dict[str, Any]:
        running = [c for c in self.containers() if c.running]
        with ThreadPoolExecutor(max_workers=min(POOL_SIZE, len(running) + 1)) as pool:
            readings = self._paired_readings(running, pool)
        engines = []
        for engine in running:
            earlier, stats = readings[engine.instance]
            rx, tx = fleet_samples.network_bytes(stats)
            engines.append(
                {
                    "name": engine.name,
                    "cpu_percent": fleet_samples.cpu_percent_between(earlier, stats),
                    "memory_bytes": fleet_samples.memory_bytes(stats),
                    "net_rx_bytes": rx,
                    "net_tx_bytes": tx,
                }
            )
        queue: list[dict[str, Any]] = []
        consumers = 0
        if self.database is not None:
            queue = fleet_samples.queue_depths(self.database)
            consumers = fleet_samples.fresh_consumers(self.database)
        return {"engines": engines, "queue": queue, "consumers": consumers}

    def logs(
        self, *, follow: bool = False, lines: int | None = None, instance: int | None = None
    ) -> LogStream:
        chosen = self.containers(instance=instance)
        if not chosen:
            raise FleetError(
                "no send-engine container exists"
                + (f" for instance {instance}" if instance is not None else "")
                + "; start engines with `postroom sendengine start`."
            )
        return LogStream([(c.name, c.container) for c in chosen], follow=follow, lines=lines)

    def exec(self, argv: list[str], instance: int | None = None) -> list[ExecResult]:
        """``argv`` (a list, never a shell string) in every running engine, or in one."""
        if not argv:
            raise FleetError("the command to run is missing; give it after `--`.")
        return parallel(lambda engine: self._exec_one(engine, argv), self.running(instance))

    def _exec_one(
        self, engine: EngineContainer, argv: list[str], user: str = ENGINE_USER
    ) -> ExecResult:
        try:
            code, output = engine.container.exec_run(argv, user=user, demux=False)
        except (APIError, NotFound) as exc:
            return ExecResult(engine.name, engine.instance, 126, f"{exc.explanation or exc}\n")
        text = (output or b"").decode("utf-8", "replace")
        return ExecResult(engine.name, engine.instance, int(code or 0), text)

    def supervisor(
        self, action: str, program: str | None = None, instance: int | None = None
    ) -> list[ExecResult]:
        """``supervisorctl ACTION [PROGRAM|all]`` in every running engine, or in one."""
        if action not in ("status", "start", "stop", "restart"):
            raise FleetError(
                f"supervisor action {action!r} is not known; use status, start, stop or restart."
            )
        target = [program] if program else ([] if action == "status" else ["all"])
        return self.exec(["supervisorctl", action, *target], instance)

    def workers(self, campaign: str, count: int, instance: int = 1) -> ExecResult:
        """``count`` more workers for ``campaign`` on one engine (0 removes them): a
        supervisord program running ``postroom engine run --campaign``."""
        if count < 0:
            raise FleetError("the worker count must be 0 or more; 0 removes the extra workers.")
        if self.database is None:
            raise FleetError("extra workers need the database, to find the campaign.")
        campaign_id, campaign_name = fleet_samples.find_campaign(self.database, campaign)
        engine = self.running(instance)[0]
        program = f"campaign-{campaign_id}"
        path = f"{PROGRAMS_FOLDER}/{program}.conf"
        if count == 0:
            self._exec_one(engine, ["rm", "-f", path])
        else:
            engine_id = f"{self.settings.engine_id(engine.instance)}-c{campaign_id}"
            text = program_config(program, campaign_name, count, engine_id)
            self._put_file(engine, path, text)
        result = self._exec_one(engine, ["supervisorctl", "update"])
        if result.exit_code != 0:
            raise FleetError(
                f"supervisord in {engine.name} did not take the change: "
                f"{result.output.strip() or 'no answer'}."
            )
        return result

    def _put_file(self, engine: EngineContainer, path: str, text: str) -> None:
        """Write a file into the container through the API (no shell inside)."""
        folder, name = path.rsplit("/", 1)
        data = text.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            info.uid = info.gid = ENGINE_UID
            info.mtime = int(datetime.now(UTC).timestamp())
            archive.addfile(info, io.BytesIO(data))
        self._exec_one(engine, ["mkdir", "-p", folder])
        if not engine.container.put_archive(folder, buffer.getvalue()):
            raise FleetError(f"{path} could not be written in {engine.name}.")


def program_config(program: str, campaign: str, count: int, engine_id: str) -> str:
    """A supervisord program running extra workers for one campaign.

    supervisord splits ``command`` like a shell and expands ``%(name)s``, so the campaign
    name is quoted and its ``%`` doubled.
    """
    argv = [
        "/opt/postroom/bin/postroom",
        "engine",
        "run",
        "--campaign",
        campaign,
        "--concurrency",
        str(count),
        "--engine-id",
        engine_id,
    ]
    command = " ".join(shlex.quote(part) for part in argv).replace("%", "%%")
    secrets = ",".join(
        f'POSTROOM_{key.upper()}_FILE="{path}"' for key, path in SECRET_MOUNTS.items()
    )
    if re.search(r"[\r\n]", command):
        raise FleetError("a campaign name with a line break cannot be given to supervisord.")
    return "\n".join(
        [
            "; extra workers for one campaign, written by `postroom sendengine workers`",
            f"[program:{program}]",
            f"command={command}",
            f"environment={secrets}",
            "autostart=true",
            "autorestart=true",
            "startsecs=3",
            "stopsignal=TERM",
            "stopwaitsecs=60",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "",
        ]
    )


def iter_progress(items: list[T], progress: Progress, verb: str) -> Iterator[T]:
    for number, item in enumerate(items, 1):
        progress(f"{verb} {number}/{len(items)}…")
        yield item
