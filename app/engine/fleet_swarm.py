"""``SwarmFleet``: send engines as one replicated Swarm service.

The service is found by its labels like the containers are; its tasks' containers carry the
same labels (set on the container spec), so everything that looks inside engines (status,
logs, exec, supervisor, workers) is the shared code, on the containers this node runs.
The instance number is the task's slot, and the engine id is templated from it.

The database URL and the vault key are Docker secrets (encrypted in the Swarm's store,
mounted at ``/run/secrets/postroom_database_url`` and ``.../postroom_vault_key``, 0400,
owned by the image's uid). A secret cannot change, so new values make new secrets (with a
random suffix: a hash of the value would hint at it) and the old ones are removed once no
service uses them.

The image: without a registry the service names the local tag, which only this node has
(enough for a one-node swarm; a swarm of more nodes is refused with a sentence saying so).
With one (``FleetSettings.registry``), the service names ``REGISTRY/REPOSITORY:TAG`` pinned
to the digest the registry holds, so every node pulls the same build.

``status`` lists the service's current task of every slot with its node, its state and, for
one that does not run, its error. What only a container shows (health, CPU, memory,
supervisor programs) is looked up for the tasks this node runs; other nodes' tasks carry
their task state alone. ``logs``, ``exec``, ``supervisor`` and ``workers`` work on this
node's engines.
"""

from __future__ import annotations

import contextlib
import secrets as random_names
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from docker.errors import APIError
from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Healthcheck,
    SecretReference,
    ServiceMode,
    TaskTemplate,
)

from app.engine import fleet_samples
from app.engine.fleet import (
    CONFIG_LABEL,
    ENGINE_ROLE,
    ENGINE_UID,
    FLEET_LABEL,
    ROLE_LABEL,
    SECRET_MOUNTS,
    STOP_TIMEOUT_S,
    EngineStatus,
    Fleet,
    FleetError,
    FleetSettings,
    Progress,
    _nothing,
    config_hash,
)
from app.engine.fleet_containers import HEALTHCHECK
from app.engine.fleet_secrets import EngineSecrets, is_docker_desktop, plan_database
from app.engine.fleet_swarm_tasks import SlotTask, current_tasks, first_error
from app.engine.registry import registry_digest, registry_reference
from app.services.errors import PostroomError

if TYPE_CHECKING:
    from app.models.database import Database

SERVICE_ROLE = "sendengine-service"
SECRET_ROLE = "sendengine-secret"
SCALE_WAIT_S = 120


class SwarmFleet(Fleet):
    mode = "swarm"

    def __init__(
        self,
        client: Any,
        settings: FleetSettings,
        *,
        database: Database | None = None,
        secrets: EngineSecrets | None = None,
        progress: Progress = _nothing,
    ) -> None:
        super().__init__(client, settings, database=database, secrets=secrets, progress=progress)

    @property
    def service_name(self) -> str:
        return self.settings.service_name

    def check_swarm(self) -> None:
        state = (self.client.info().get("Swarm") or {}).get("LocalNodeState")
        if state != "active":
            raise FleetError(
                "this Docker engine is not part of a swarm; run `docker swarm init` (or join "
                "one), or leave out --swarm to run engines as containers on this host."
            )

    def service(self) -> Any | None:
        found = self.client.services.list(
            filters={
                "label": [f"{ROLE_LABEL}={SERVICE_ROLE}", f"{FLEET_LABEL}={self.settings.fleet}"]
            }
        )
        return found[0] if found else None

    # ---------------------------------------------------------------- the spec

    def _config(self, image_id: str, shown_database: str) -> str:
        return config_hash(
            image_id,
            {
                "fleet": self.settings.fleet,
                "mode": "swarm",
                "concurrency": self.settings.concurrency,
                "database": shown_database,
                "healthcheck": HEALTHCHECK,
            },
        )

    def current_config(self) -> str | None:
        if self.secrets is None:
            return None
        try:
            desktop = is_docker_desktop(self.client.info())
            shown = plan_database(self.secrets.database_url, desktop=desktop).shown
            return self._config(self.service_image()[1], shown)
        except PostroomError:  # FleetError, RegistryError
            return None

    def service_image(self) -> tuple[str, str]:
        """The image reference the service names, and the id its config hash is made of.

        With a registry: the registry's reference pinned to the digest it holds now (each
        node pulls exactly that build). Without one: the local tag, which only this node
        has, so a swarm of several nodes is refused.
        """
        registry = self.settings.registry
        if registry:
            reference = registry_reference(self.settings.image, registry)
            digest = registry_digest(self.client, reference, registry)
            return f"{reference}@{digest}", digest
        nodes = self.active_nodes()
        if nodes > 1:
            raise FleetError(
                f"this swarm has {nodes} nodes and the image {self.settings.image} is only "
                "on this one; push it to a registry every node reaches (`postroom sendengine "
                "push --registry HOST:PORT`) and give the same --registry (or "
                "POSTROOM_REGISTRY) here."
            )
        # The tag, not the id: the node resolves it among its own images.
        return self.settings.image, self.image_id()

    def active_nodes(self) -> int:
        """Nodes that take tasks (a drained one does not); 1 where the list is not ours
        to read (a worker node, which cannot make services anyway)."""
        try:
            nodes = self.client.nodes.list()
        except APIError:
            return 1
        return sum(1 for n in nodes if (n.attrs.get("Spec") or {}).get("Availability") == "active")

    def node_names(self) -> dict[str, str]:
        try:
            nodes = self.client.nodes.list()
        except APIError:
            return {}
        return {
            str(n.id): str(((n.attrs.get("Description") or {}).get("Hostname")) or n.id)
            for n in nodes
        }

    def _make_secrets(self) -> list[SecretReference]:
        if self.secrets is None or not self.secrets.vault_key:
            raise FleetError("starting engines needs the database URL and the vault key.")
        suffix = random_names.token_hex(6)
        references = []
        values = {"database_url": self.secrets.database_url, "vault_key": self.secrets.vault_key}
        for key, target in SECRET_MOUNTS.items():
            filename = target.rsplit("/", 1)[1]
            made = self.client.secrets.create(
                name=f"{filename}-{self.settings.fleet}-{suffix}",
                data=(values[key].strip() + "\n").encode(),
                labels={ROLE_LABEL: SECRET_ROLE, FLEET_LABEL: self.settings.fleet},
            )
            references.append(
                SecretReference(
                    made.id,
                    made.name,
                    filename=filename,
                    uid=str(ENGINE_UID),
                    gid=str(ENGINE_UID),
                    mode=0o400,
                )
            )
        return references

    def _task_template(self, image: str, config: str) -> TaskTemplate:
        prefix = self.settings.engine_id(1).removesuffix("sendengine-1")
        container = ContainerSpec(
            image,
            env={
                # Swarm fills the slot in for each task: sendengine-1, sendengine-2, ...
                "POSTROOM_ENGINE_ID": f"{prefix}sendengine-{{{{.Task.Slot}}}}",
                "POSTROOM_ENGINE_CONCURRENCY": str(self.settings.concurrency),
                "POSTROOM_DATABASE_URL_FILE": SECRET_MOUNTS["database_url"],
                "POSTROOM_VAULT_KEY_FILE": SECRET_MOUNTS["vault_key"],
            },
            labels={
                ROLE_LABEL: ENGINE_ROLE,
                FLEET_LABEL: self.settings.fleet,
                CONFIG_LABEL: config,
            },
            secrets=self._make_secrets(),
            stop_signal="SIGTERM",
            stop_grace_period=STOP_TIMEOUT_S * 10**9,
            healthcheck=Healthcheck(**HEALTHCHECK),
        )
        return TaskTemplate(container, networks=["host"])

    # ---------------------------------------------------------------- lifecycle

    def start(self, scale: int = 1) -> list[str]:
        self.check_swarm()
        if scale < 0:
            raise FleetError("the number of engines must be 0 or more.")
        if self.secrets is None:
            raise FleetError("starting engines needs the database URL and the vault key.")
        desktop = is_docker_desktop(self.client.info())
        database = plan_database(self.secrets.database_url, desktop=desktop)
        if database.folders:
            raise FleetError(
                "a SQLite file cannot be shared by engines on several nodes; use PostgreSQL "
                "or MariaDB with --swarm."
            )
        image, image_id = self.service_image()
        config = self._config(image_id, database.shown)
        service = self.service()
        if service is None:
            self.progress(f"Creating the service {self.service_name} with {scale} engine(s)…")
            self.client.api.create_service(
                self._task_template(image, config),
                name=self.service_name,
                labels={ROLE_LABEL: SERVICE_ROLE, FLEET_LABEL: self.settings.fleet},
                mode=ServiceMode("replicated", replicas=scale),
                endpoint_spec=EndpointSpec(),
            )
        else:
            spec = service.attrs["Spec"]
            labels = spec["TaskTemplate"]["ContainerSpec"].get("Labels") or {}
            if labels.get(CONFIG_LABEL) != config:
                self.progress(f"Updating the service {self.service_name} (new settings)…")
                self.client.api.update_service(
                    service.id,
                    service.version,
                    task_template=self._task_template(image, config),
                    name=spec["Name"],
                    labels=spec.get("Labels"),
                    mode=ServiceMode("replicated", replicas=scale),
                    fetch_current_spec=False,
                )
            else:
                self._set_replicas(service, scale)
        self._wait_for(scale)
        self._remove_unused_secrets()
        return [c.name for c in self.containers() if c.running]

    def stop(self) -> list[str]:
        service = self.service()
        if service is None:
            return []
        before = [c.name for c in self.containers() if c.running]
        self.progress(
            f"Scaling {self.service_name} to 0; each engine finishes its in-flight messages "
            f"(up to {STOP_TIMEOUT_S} s)…"
        )
        self._set_replicas(service, 0)
        self._wait_for(0)
        return before

    def scale(self, count: int) -> tuple[list[str], list[str]]:
        if count < 0:
            raise FleetError("the number of engines must be 0 or more.")
        service = self.service()
        if service is None:
            return (self.start(count) if count else []), []
        before = {c.name for c in self.containers() if c.running}
        self.progress(f"Scaling {self.service_name} to {count}…")
        self._set_replicas(service, count)
        self._wait_for(count)
        after = {c.name for c in self.containers() if c.running}
        return sorted(after - before), sorted(before - after)

    def remove(self) -> None:
        """The service and its secrets, gone (tests, and a host given up)."""
        service = self.service()
        if service is not None:
            service.remove()
        deadline = time.monotonic() + SCALE_WAIT_S
        while self.containers() and time.monotonic() < deadline:
            time.sleep(0.5)
        self._remove_unused_secrets()

    # ---------------------------------------------------------------- looking inside

    def status(self) -> dict[str, Any]:
        """Every slot's current task, on whichever node, with ``node`` and ``error``."""
        service = self.service()
        if service is None:
            return {"mode": self.mode, "engines": []}
        tasks = current_tasks(service.tasks())
        nodes = self.node_names()
        here = {c.container.id: c for c in self.containers()}
        local = [here[t.container_id] for t in tasks if t.container_id in here]
        inside = {s.instance: s for s in self._engine_statuses(local)}
        remote = [t for t in tasks if t.container_id not in here]
        campaigns = self._engine_campaigns() if remote else {}
        now = datetime.now(UTC)
        engines = []
        for task in tasks:
            status = inside.get(task.slot) if task.container_id in here else None
            data = status.as_dict() if status else self._remote_status(task, campaigns, now)
            # the task's own state: a container may still run while its task shuts down
            data["state"] = task.state
            data["node"] = nodes.get(task.node_id or "", task.node_id)
            data["error"] = task.error
            engines.append(data)
        engines.sort(key=lambda e: (e["node"] or "", e["instance"]))
        return {"mode": self.mode, "engines": engines}

    def drifted(self) -> list[str]:
        """Running engines made with other settings (Swarm keeps the stopped containers of
        replaced tasks for a while; those are history, not drift)."""
        expected = self.current_config()
        if expected is None:
            return []
        return [
            c.name
            for c in self.containers()
            if c.running and c.container.labels.get(CONFIG_LABEL) != expected
        ]

    def _remote_status(
        self, task: SlotTask, campaigns: dict[str, dict[str, int]], now: datetime
    ) -> dict[str, Any]:
        """What the task list says of a task whose container is not on this node."""
        return EngineStatus(
            name=task.name(self.service_name),
            instance=task.slot,
            state=task.state,
            health="unknown",
            uptime_s=task.uptime_s(now),
            cpu_percent=None,
            memory_bytes=None,
            campaigns=fleet_samples.campaigns_of(campaigns, self.settings.engine_id(task.slot)),
        ).as_dict()

    # ---------------------------------------------------------------- steps

    def _set_replicas(self, service: Any, count: int) -> None:
        """Only the replica count changes: the spec goes back as Docker gave it, so the
        tasks that stay are not replaced (docker-py's ``scale`` rebuilds the task template,
        which Docker may take for a change and roll every task)."""
        spec = service.attrs["Spec"]
        self.client.api.update_service(
            service.id,
            service.version,
            task_template=spec["TaskTemplate"],
            name=spec["Name"],
            labels=spec.get("Labels"),
            mode={"Replicated": {"Replicas": count}},
            update_config=spec.get("UpdateConfig"),
            rollback_config=spec.get("RollbackConfig"),
            endpoint_spec=spec.get("EndpointSpec"),
            fetch_current_spec=False,
        )

    def _wait_for(self, count: int) -> None:
        """Until this node runs ``count`` engines of the service (a one-node swarm), or
        the service's running tasks are ``count`` (several nodes)."""
        deadline = time.monotonic() + SCALE_WAIT_S
        while time.monotonic() < deadline:
            service = self.service()
            tasks = service.tasks(filters={"desired-state": "running"}) if service else []
            running = [t for t in tasks if t.get("Status", {}).get("State") == "running"]
            stopping = [c for c in self.containers() if c.running]
            if len(running) == count and len(tasks) == count and (count or not stopping):
                return
            time.sleep(0.5)
        service = self.service()
        error = first_error(current_tasks(service.tasks())) if service else None
        why = f"a task says: {error.rstrip('.')}" if error else "no task says why"
        raise FleetError(
            f"the service {self.service_name} did not reach {count} running engine(s) in "
            f"{SCALE_WAIT_S} s ({why}); `postroom sendengine status --swarm` shows each "
            f"task and `docker service ps {self.service_name}` its history."
        )

    def _remove_unused_secrets(self) -> None:
        used: set[str] = set()
        for service in self.client.services.list():
            spec = service.attrs["Spec"]["TaskTemplate"].get("ContainerSpec") or {}
            used |= {s["SecretID"] for s in spec.get("Secrets") or []}
        ours = [f"{ROLE_LABEL}={SECRET_ROLE}", f"{FLEET_LABEL}={self.settings.fleet}"]
        for secret in self.client.secrets.list(filters={"label": ours}):
            if secret.id not in used:
                # one still held by a task that is going away goes next time
                with contextlib.suppress(APIError):
                    secret.remove()
