"""``ContainerFleet``: send engines as loose containers on one Docker host.

Instance N is a container labelled ``app.postroom.instance=N``, named
``postroom-sendengine-N`` for people, running as engine ``sendengine-N`` (host networking
shares the host's name, so each is told its id). Stopping is ``docker stop`` with time for
supervisord to let the engine finish what is in flight and release its leases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docker.errors import APIError, NotFound
from docker.types import Mount

from app.engine.docker_api import is_local_engine
from app.engine.fleet import (
    CONFIG_LABEL,
    ENGINE_ROLE,
    FLEET_LABEL,
    INSTANCE_LABEL,
    ROLE_LABEL,
    SECRET_MOUNTS,
    STOP_TIMEOUT_S,
    EngineContainer,
    Fleet,
    FleetError,
    FleetSettings,
    Progress,
    _nothing,
    config_hash,
    parallel,
)
from app.engine.fleet_secrets import (
    EngineSecrets,
    default_secrets_folder,
    is_docker_desktop,
    plan_database,
    secret_file_paths,
    secrets_archive,
    write_secret_files,
)

if TYPE_CHECKING:
    from app.models.database import Database


# The image's check, with more time: `postroom engine health` starts Python and opens the
# database, which on a busy host takes longer than the image's 10 s. No "test": the image's.
HEALTHCHECK = {
    "interval": 15 * 10**9,
    "timeout": 30 * 10**9,
    "retries": 3,
    "start_period": 60 * 10**9,
}


@dataclass(frozen=True)
class ContainerPlan:
    """How every container of the fleet is made today."""

    image_id: str
    environment: dict[str, str]
    mounts: tuple[tuple[str, str, bool], ...]  # (host path, container path, read-only)
    config: str
    # For a remote Docker engine: the secrets, copied into each container before it starts.
    secrets_tar: bytes | None = field(default=None, repr=False)


class ContainerFleet(Fleet):
    mode = "containers"

    def __init__(
        self,
        client: Any,
        settings: FleetSettings,
        *,
        database: Database | None = None,
        secrets: EngineSecrets | None = None,
        secrets_folder: Path | None = None,
        progress: Progress = _nothing,
    ) -> None:
        super().__init__(client, settings, database=database, secrets=secrets, progress=progress)
        self.secrets_folder = secrets_folder or default_secrets_folder(settings.fleet)
        self._plan: ContainerPlan | None = None
        self._written = False

    # ---------------------------------------------------------------- the plan

    def plan(self, *, write_secrets: bool = True) -> ContainerPlan:
        """Checks the database for this host and writes the secret files (once); without
        ``write_secrets`` only works out what containers made now would look like."""
        if self._plan is not None and (self._written or not write_secrets):
            return self._plan
        if self.secrets is None or (write_secrets and not self.secrets.vault_key):
            raise FleetError("starting engines needs the database URL and the vault key.")
        image_id = self.image_id()
        desktop = is_docker_desktop(self.client.info())
        remote = not is_local_engine(self.client)
        database = plan_database(self.secrets.database_url, desktop=desktop, remote=remote)
        engine_secrets = EngineSecrets(database.url, self.secrets.vault_key)
        mounts: list[tuple[str, str, bool]] = []
        secrets_tar = None
        if remote:
            # Files here are not on the engine's disk: each container gets a copy instead.
            secrets_tar = secrets_archive(engine_secrets) if write_secrets else None
            self._written = write_secrets
        else:
            if write_secrets:
                files = write_secret_files(self.secrets_folder, engine_secrets)
                self._written = True
            else:
                files = secret_file_paths(self.secrets_folder)
            mounts += [(str(files[key]), target, True) for key, target in SECRET_MOUNTS.items()]
        mounts += [(folder, folder, False) for folder in database.folders]
        environment = {
            "POSTROOM_DATABASE_URL_FILE": SECRET_MOUNTS["database_url"],
            "POSTROOM_VAULT_KEY_FILE": SECRET_MOUNTS["vault_key"],
            "POSTROOM_ENGINE_CONCURRENCY": str(self.settings.concurrency),
        }
        settings = {
            "fleet": self.settings.fleet,
            "environment": environment,
            "mounts": mounts,
            "database": database.shown,
            "network": "host",
            "healthcheck": HEALTHCHECK,
            "secrets": "copied" if remote else "mounted",
        }
        self._plan = ContainerPlan(
            image_id, environment, tuple(mounts), config_hash(image_id, settings), secrets_tar
        )
        return self._plan

    def current_config(self) -> str | None:
        if self.secrets is None:
            return None
        try:
            return self.plan(write_secrets=False).config
        except FleetError:  # no image, or a database engines cannot use: no comparison
            return None

    # ---------------------------------------------------------------- lifecycle

    def start(self, scale: int = 1) -> list[str]:
        """Instances 1..scale running with today's settings: stopped ones started, drifted
        ones made again, missing ones made; instances above ``scale`` are removed."""
        check_count(scale)
        plan = self.plan()
        existing = {c.instance: c for c in self.containers()}
        extra = [c for c in existing.values() if c.instance > scale]
        self._remove(sorted(extra, key=lambda c: c.instance, reverse=True))
        for engine in extra:
            existing.pop(engine.instance)
        stale = [
            c
            for n, c in existing.items()
            if n <= scale and c.container.labels.get(CONFIG_LABEL) != plan.config
        ]
        if stale:
            self.progress(f"Replacing {len(stale)} engine(s) made with other settings…")
            self._remove(sorted(stale, key=lambda c: c.instance, reverse=True))
            for engine in stale:
                existing.pop(engine.instance)
        stopped = [c for n, c in existing.items() if n <= scale and not c.running]
        missing = [n for n in range(1, scale + 1) if n not in existing]
        if stopped:
            self.progress(f"Starting {len(stopped)} stopped engine(s)…")
            parallel(lambda engine: engine.container.start(), stopped)
        started = [c.name for c in stopped]
        started += self._add(missing, plan)
        return started

    def stop(self) -> list[str]:
        running = [c for c in self.containers() if c.running]
        if running:
            self.progress(
                f"Stopping {len(running)} engine(s); each finishes its in-flight messages "
                f"(up to {STOP_TIMEOUT_S} s)…"
            )
        parallel(lambda engine: engine.container.stop(timeout=STOP_TIMEOUT_S), running)
        return [c.name for c in running]

    def scale(self, count: int) -> tuple[list[str], list[str]]:
        check_count(count)
        existing = self.containers()
        numbers = {c.instance for c in existing}
        removing = sorted(
            (c for c in existing if c.instance > count), key=lambda c: c.instance, reverse=True
        )
        removed = self._remove(removing)
        missing = [n for n in range(1, count + 1) if n not in numbers]
        added = self._add(missing, self.plan()) if missing else []
        return added, removed

    # ---------------------------------------------------------------- steps

    def _remove(self, engines: list[EngineContainer]) -> list[str]:
        """Stop gracefully and remove, all at once (each stop waits for its engine's
        in-flight messages); the names in the order given, highest instance first."""

        def remove(engine: EngineContainer) -> str:
            self.progress(f"Stopping and removing {engine.name}…")
            try:
                if engine.running:
                    engine.container.stop(timeout=STOP_TIMEOUT_S)
                engine.container.remove()
            except NotFound:
                pass
            return engine.name

        return parallel(remove, engines)

    def _add(self, instances: list[int], plan: ContainerPlan) -> list[str]:
        if not instances:
            return []
        self.progress(
            f"Starting {len(instances)} engine(s): instance {', '.join(map(str, instances))}…"
        )
        return parallel(lambda number: self._create_and_start(number, plan), instances)

    def _create_and_start(self, instance: int, plan: ContainerPlan) -> str:
        name: str | None = self.settings.container_name(instance)
        try:
            self.client.containers.get(name)
            # Someone else's container has the name: ours is found by labels, so it goes
            # without one rather than touch theirs.
            name = None
        except NotFound:
            pass
        api = self.client.api
        try:
            # The low-level call: the high-level one cannot set StopTimeout, which makes a
            # plain `docker stop` wait for the engine as well.
            created = api.create_container(
                plan.image_id,
                name=name,
                labels={
                    ROLE_LABEL: ENGINE_ROLE,
                    FLEET_LABEL: self.settings.fleet,
                    INSTANCE_LABEL: str(instance),
                    CONFIG_LABEL: plan.config,
                },
                environment={
                    **plan.environment,
                    "POSTROOM_ENGINE_ID": self.settings.engine_id(instance),
                },
                host_config=api.create_host_config(
                    network_mode="host",
                    mounts=[
                        Mount(target=target, source=source, type="bind", read_only=read_only)
                        for source, target, read_only in plan.mounts
                    ],
                    restart_policy={"Name": "unless-stopped"},
                ),
                stop_signal="SIGTERM",
                stop_timeout=STOP_TIMEOUT_S,
                healthcheck=HEALTHCHECK,
            )
            if plan.secrets_tar is not None:
                # Made, not started: the engine finds its secrets when it first looks.
                api.put_archive(created["Id"], "/run", plan.secrets_tar)
            container = self.client.containers.get(created["Id"])
            container.start()
        except APIError as exc:
            raise FleetError(
                f"Docker could not start send engine {instance}: {exc.explanation or exc}."
            ) from None
        return str(container.name)


def check_count(count: int) -> None:
    if count < 0:
        raise FleetError("the number of engines must be 0 or more.")
