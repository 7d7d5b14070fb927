"""The one way a ``Fleet`` is made, for the command line and the console alike.

Which fleet (``--fleet`` / ``POSTROOM_SENDENGINE_FLEET``) and whether it is a Swarm service
(``--swarm`` / ``POSTROOM_SENDENGINE_SWARM``) come from the caller; the Docker engine from
``DOCKER_HOST`` and the TLS variables (``app.engine.docker_api``). Connecting raises
``DockerUnreachable`` with the one sentence to show; a Swarm fleet on a node outside a
swarm raises ``FleetError``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.engine.docker_api import connect
from app.engine.fleet import (
    DEFAULT_FLEET,
    DEFAULT_IMAGE,
    POOL_SIZE,
    Fleet,
    FleetSettings,
    Progress,
    _nothing,
)

if TYPE_CHECKING:
    from app.engine.fleet_secrets import EngineSecrets
    from app.models.database import Database

FLEET_VARIABLE = "POSTROOM_SENDENGINE_FLEET"
SWARM_VARIABLE = "POSTROOM_SENDENGINE_SWARM"
REGISTRY_VARIABLE = "POSTROOM_REGISTRY"


def fleet_name_from_environment() -> str:
    return os.environ.get(FLEET_VARIABLE) or DEFAULT_FLEET


def swarm_from_environment() -> bool:
    """As click reads a flag from the environment: 1, true, yes, on (any case)."""
    return os.environ.get(SWARM_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on", "t")


def registry_from_environment() -> str | None:
    return os.environ.get(REGISTRY_VARIABLE) or None


def open_fleet(
    *,
    fleet_name: str = DEFAULT_FLEET,
    swarm: bool = False,
    image: str | None = None,
    concurrency: int = 10,
    registry: str | None = None,
    database: Database | Callable[[], Database | None] | None = None,
    secrets: EngineSecrets | Callable[[], EngineSecrets | None] | None = None,
    progress: Progress = _nothing,
) -> Fleet:
    """A fleet on the Docker engine the environment names, checked to answer.

    ``database`` and ``secrets`` may be functions, called once the engine answered: with
    no engine the person hears that first, not about a database or a vault key.
    ``registry`` (HOST:PORT): where Swarm nodes pull the image from.
    """
    if registry:
        from app.engine.registry import check_registry

        registry = check_registry(registry)  # a typing slip is said before any connection
    # The pool as large as the calls a fleet makes at once (one per container).
    client = connect(max_pool_size=POOL_SIZE)
    if callable(database):
        database = database()
    if callable(secrets):
        secrets = secrets()
    settings = FleetSettings(
        fleet=fleet_name,
        image=image or DEFAULT_IMAGE,
        concurrency=concurrency,
        registry=registry or None,
    )
    if swarm:
        from app.engine.fleet_swarm import SwarmFleet

        fleet = SwarmFleet(client, settings, database=database, secrets=secrets, progress=progress)
        fleet.check_swarm()
        return fleet
    from app.engine.fleet_containers import ContainerFleet

    return ContainerFleet(client, settings, database=database, secrets=secrets, progress=progress)
