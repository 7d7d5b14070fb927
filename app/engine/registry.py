"""The send-engine image in a registry, so every Swarm node can pull it.

``push_image`` tags the local image as ``REGISTRY/REPOSITORY:TAG`` and pushes it through the
Docker API, passing each layer's progress on. ``registry_digest`` asks the registry (through
the Docker engine, which holds the logins of ``docker login``) which manifest that
reference names now; services pin it, so every node runs the same build.

A registry is ``HOST[:PORT]`` as Docker writes it, without ``http://``: Docker talks plain
HTTP only to registries on the loopback or listed in the engine's ``insecure-registries``.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from docker.errors import APIError, DockerException, NotFound

from app.engine.images import Progress, split_tag
from app.services.errors import PostroomError

ADDRESS = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9-]+(?::\d{1,5})?")
# Layer states worth a line each; "Pushing" repeats for every chunk sent.
QUIET_STATES = {"Pushing", "Waiting", "Preparing"}


class RegistryError(PostroomError):
    """The registry cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class PushResult:
    image: str
    reference: str
    digest: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_registry(registry: str) -> str:
    """``registry`` as Docker writes it, or one sentence saying how to write it."""
    value = registry.strip().rstrip("/")
    port = value.rpartition(":")[2] if ":" in value else "1"
    if not ADDRESS.fullmatch(value) or not 1 <= int(port or 0) <= 65535:
        raise RegistryError(
            f"the registry {registry!r} is not HOST[:PORT]; give it as Docker writes it, "
            "without http:// and without a path, e.g. --registry 127.0.0.1:5000."
        )
    return value


def registry_reference(image: str, registry: str) -> str:
    """The name ``image`` has in ``registry``: ``REGISTRY/REPOSITORY:TAG``."""
    repository, tag = split_tag(image.split("@", 1)[0])
    first, _, rest = repository.partition("/")
    # a repository already named after another registry keeps only its path
    if rest and ("." in first or ":" in first or first == "localhost"):
        repository = rest
    return f"{check_registry(registry)}/{repository}:{tag}"


def registry_digest(client: Any, reference: str, registry: str) -> str:
    """The manifest digest ``reference`` names in the registry, or why there is none."""
    try:
        data = client.images.get_registry_data(reference)
    except NotFound:
        raise RegistryError(
            f"the image {reference} is not in the registry; push it with "
            f"`postroom sendengine push --registry {registry}`."
        ) from None
    except APIError as exc:
        raise RegistryError(
            f"the registry {registry} could not say which image {reference} is "
            f"({one_line(str(exc.explanation or exc))}); check that it answers at "
            f"http://{registry}/v2/ (or https://) and that this engine may use it."
        ) from None
    return str(data.id)


def one_line(text: str) -> str:
    return " ".join(text.split())[:300].rstrip(".")


def push_image(client: Any, image: str, registry: str, progress: Progress) -> PushResult:
    """Tag the local ``image`` for ``registry`` and push it; the reference and its digest."""
    started = time.monotonic()
    reference = registry_reference(image, registry)
    registry = check_registry(registry)
    try:
        local = client.images.get(image)
    except NotFound:
        raise RegistryError(
            f"the image {image} is not on this Docker engine; build it with "
            "`postroom sendengine build` first."
        ) from None
    repository, tag = split_tag(reference)
    client.api.tag(local.id, repository, tag)
    progress(f"Pushing {reference}")
    digest = ""
    layers: dict[str, str] = {}
    try:
        for chunk in client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                raise RegistryError(push_error_sentence(reference, registry, str(detail)))
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            status, layer = str(chunk.get("status", "")), str(chunk.get("id", ""))
            if not layer:
                if status and not status.startswith("The push refers to"):
                    progress(f"  {status}")
            elif layers.get(layer) != status and status not in QUIET_STATES - {"Pushing"}:
                layers[layer] = status
                progress(f"  {layer}: {status}")
    except (APIError, DockerException) as exc:
        raise RegistryError(
            push_error_sentence(reference, registry, str(getattr(exc, "explanation", "") or exc))
        ) from None
    if not digest:
        raise RegistryError(f"the registry {registry} took {reference} without naming its digest.")
    return PushResult(image, reference, digest, round(time.monotonic() - started, 1))


def push_error_sentence(reference: str, registry: str, detail: str) -> str:
    return (
        f"the push of {reference} failed ({one_line(detail)}); check that the registry "
        f"answers at http://{registry}/v2/ (Docker uses plain HTTP only for a registry on "
        "127.0.0.1 or one in its insecure-registries) and, if it asks for a login, "
        f"`docker login {registry}`."
    )
