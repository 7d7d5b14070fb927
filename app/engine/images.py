"""The send-engine image: a wheelhouse built here, then ``docker build`` through the API.

The build context is made in a temporary folder: ``sendengine_image/``'s files, ``wheels/``
(the engine's dependencies, from ``sendengine_image/requirements.txt``) and ``app/``
(Postroom's own wheel, installed with ``--no-deps`` so the console's Qt stays out). Pip runs
here, on the host, where the package index is reachable; inside the build nothing needs a
network. A label on the image holds a hash of every input (the sources, the image files and
the base image's id), so a build whose inputs have not changed is skipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs
from docker.errors import APIError, DockerException, ImageNotFound
from docker.utils import parse_repository_tag

from app import __version__
from app.engine.docker_api import SLOW_CALL_TIMEOUT_S, connect
from app.services.errors import PostroomError

Progress = Callable[[str], None]

ROLE_LABEL = "app.postroom.role"
INPUTS_LABEL = "app.postroom.inputs-sha256"
BASE_LABEL = "app.postroom.base-image"
ENGINE_IMAGE_ROLE = "sendengine-image"
ENGINE_REPOSITORY = "postroom/sendengine"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
# The image's Python: the wheels pip builds here must fit it.
IMAGE_PYTHON = (3, 11)
SOURCE_URL = "https://postroom.invalid/"

IMAGE_FOLDER = "sendengine_image"
IMAGE_FILES = ("Dockerfile", "requirements.txt", "supervisord.conf", "postroom-engine")
# What Postroom's wheel is made of (pyproject.toml and setup.py say how).
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md")
PROJECT_FOLDERS = ("app", "resources")
# Bump when the way inputs are hashed or the context is laid out changes.
CONTEXT_FORMAT = "1"


class ImageBuildError(PostroomError):
    """A step of an image build failed; the message says which and what to do."""


@dataclass(frozen=True)
class ImageResult:
    """What a build command made, or found already made."""

    tags: list[str]
    image_id: str
    size_bytes: int
    inputs_sha256: str
    built: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_engine_tags() -> list[str]:
    return [f"{ENGINE_REPOSITORY}:{__version__}", f"{ENGINE_REPOSITORY}:latest"]


def split_tag(tag: str) -> tuple[str, str]:
    """``repo[:tag]`` as (repository, tag), ``latest`` when none is given."""
    repository, name = parse_repository_tag(tag)
    return str(repository), str(name or "latest")


def find_image(client: Any, reference: str) -> Any | None:
    """The image ``reference`` names on the engine, or None."""
    try:
        return client.images.get(reference)
    except ImageNotFound:
        return None


def image_labels(image: Any) -> dict[str, str]:
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def up_to_date(client: Any, tags: list[str], inputs_sha256: str) -> Any | None:
    """The image already built from these inputs under the first tag, or None.

    The other tags are pointed at it, so a skipped build still leaves every tag right.
    """
    image = find_image(client, tags[0])
    if image is None or image_labels(image).get(INPUTS_LABEL) != inputs_sha256:
        return None
    for tag in tags[1:]:
        if tag not in image.tags:
            client.api.tag(image.id, *split_tag(tag))
    return image


def sha256_of_files(files: Iterable[tuple[str, Path]], extra: Iterable[str] = ()) -> str:
    """A hash of (name, executable bit, content) of each file, then each ``extra`` string."""
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        data = path.read_bytes()
        digest.update(len(data).to_bytes(8, "big") + data)
    for value in extra:
        digest.update(b"\1" + value.encode() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------- the sources


def find_source_root() -> Path:
    """The checkout that holds ``sendengine_image/`` next to ``app/``."""
    root = Path(__file__).resolve().parents[2]
    if (
        not (root / IMAGE_FOLDER / "Dockerfile").is_file()
        or not (root / "pyproject.toml").is_file()
    ):
        raise ImageBuildError(
            f"the send-engine image is built from Postroom's source checkout, and {root} is "
            f"not one (no {IMAGE_FOLDER}/Dockerfile or pyproject.toml); run this command "
            "from a checkout's environment."
        )
    return root


def project_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Every file Postroom's wheel is built from, by relative name, in a stable order."""
    for name in PROJECT_FILES:
        yield name, root / name
    for folder in PROJECT_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                yield path.relative_to(root).as_posix(), path


def image_files(root: Path) -> Iterator[tuple[str, Path]]:
    for name in IMAGE_FILES:
        yield f"{IMAGE_FOLDER}/{name}", root / IMAGE_FOLDER / name


def engine_inputs_sha256(root: Path, base_reference: str, base_id: str | None) -> str:
    files = [*image_files(root), *project_files(root)]
    return sha256_of_files(files, (CONTEXT_FORMAT, base_reference, base_id or "not local"))


# ---------------------------------------------------------------- the wheelhouse


def check_build_host(client: Any) -> None:
    """Pip builds the wheels here: this Python and this CPU must match the image's."""
    if sys.version_info[:2] != IMAGE_PYTHON:
        wanted = ".".join(map(str, IMAGE_PYTHON))
        raise ImageBuildError(
            f"the image runs Python {wanted} and its wheels are built by this Python "
            f"({platform.python_version()}); run the build from a Python {wanted} environment."
        )
    if importlib.util.find_spec("pip") is None:
        raise ImageBuildError(
            f"building the image needs pip in this Python ({sys.executable}); "
            "run it from the checkout's .venv."
        )
    aliases = {"amd64": "x86_64", "arm64": "aarch64"}
    here = aliases.get(platform.machine().lower(), platform.machine().lower())
    engine_arch = str(client.info().get("Architecture", "")).lower()
    engine = aliases.get(engine_arch, engine_arch)
    if engine and engine != here:
        raise ImageBuildError(
            f"the Docker engine runs on {engine} but this machine builds wheels for {here}; "
            "build the image on a machine of the engine's architecture."
        )


def run_pip(
    args: list[str], progress: Progress, what: str, env: dict[str, str] | None = None
) -> None:
    """``python -m pip ARGS``, passing on which wheels it saved; one sentence on failure."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    tail: list[str] = []
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            line = line.rstrip()
            tail = [*tail[-20:], line]
            saved = re.match(r"\s*(Saved|Stored in directory:)\s+(\S+)", line)
            if saved and saved.group(2).endswith(".whl"):
                progress(f"  {Path(saved.group(2)).name}")
    if pip.returncode != 0:
        errors = [t for t in tail if t.lstrip().startswith("ERROR")] or tail or ["no output"]
        raise ImageBuildError(
            f"pip could not {what} (exit {pip.returncode}: {errors[-1].strip()}); "
            "check the network to the package index and the requirement named."
        )


def dependency_wheels(root: Path, into: Path, progress: Progress) -> None:
    """The engine's dependencies as wheels in ``into``, from a cache kept per requirements.

    The cache is keyed by the requirements file and this Python, so a rebuild after a code
    change needs no package index at all.
    """
    requirements = root / IMAGE_FOLDER / "requirements.txt"
    key = sha256_of_files(
        [("requirements.txt", requirements)],
        (sys.implementation.cache_tag, platform.machine()),
    )[:16]
    cache = Path(platformdirs.user_cache_dir("postroom", appauthor=False)) / "wheelhouse" / key
    if (cache / ".complete").is_file():
        progress(f"Dependency wheels: cached in {cache}")
        source = cache
    else:
        progress(f"Building the dependency wheels (pip wheel -r {requirements.name})")
        cache.parent.mkdir(parents=True, exist_ok=True)
        # A folder of its own, renamed into place when complete: two builds at once
        # neither see half a wheelhouse nor delete each other's.
        source = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=cache.parent))
        run_pip(
            ["wheel", "--prefer-binary", "--wheel-dir", str(source), "-r", str(requirements)],
            progress,
            "build the dependency wheels",
        )
        (source / ".complete").write_text(datetime.now(UTC).isoformat() + "\n")
        shutil.rmtree(cache, ignore_errors=True)
        try:
            source.rename(cache)
            source = cache
        except OSError:  # another build put its own in place first; this one is as good
            pass
    into.mkdir(parents=True)
    for wheel in sorted(source.glob("*.whl")):
        shutil.copy2(wheel, into / wheel.name)
    if source != cache:
        shutil.rmtree(source, ignore_errors=True)


def project_wheel(root: Path, work: Path, into: Path, progress: Progress) -> None:
    """Postroom's wheel, built from a copy of its sources (the checkout stays clean)."""
    progress("Building Postroom's wheel")
    source = work / "source"
    for name, path in project_files(root):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    into.mkdir(parents=True)
    # Without isolation when this environment has the build backend: no index needed.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    run_pip(
        ["wheel", "--no-deps", *isolation, "--wheel-dir", str(into), str(source)],
        progress,
        "build Postroom's wheel",
        # Fixed timestamps inside the wheel: the same code gives the same bytes, so the
        # image's layer cache recognises it (1980-01-01, the earliest a zip file can hold).
        env={"SOURCE_DATE_EPOCH": "315532800"},
    )


def make_context(root: Path, work: Path, progress: Progress) -> Path:
    context = work / "context"
    context.mkdir()
    for name, path in image_files(root):
        shutil.copy2(path, context / Path(name).name)
    dependency_wheels(root, context / "wheels", progress)
    project_wheel(root, work, context / "app", progress)
    return context


# ---------------------------------------------------------------- the build


def build_engine_image(
    *,
    base: str = DEFAULT_BASE_IMAGE,
    tags: list[str] | None = None,
    force: bool = False,
    progress: Progress,
) -> ImageResult:
    """Build the send-engine image from ``base``, unless one from the same inputs exists."""
    started = time.monotonic()
    tags = tags or default_engine_tags()
    root = find_source_root()
    client = connect(timeout=SLOW_CALL_TIMEOUT_S)
    base_image = find_image(client, base)
    inputs = engine_inputs_sha256(root, base, base_image.id if base_image else None)
    existing = None if force else up_to_date(client, tags, inputs)
    if existing is not None:
        progress(f"{tags[0]} is up to date (inputs unchanged); --force builds it again")
        return result(existing, tags, inputs, built=False, started=started)
    check_build_host(client)
    if base_image is None:
        progress(f"{base} is not on this Docker host: the build pulls it from its registry")
    with tempfile.TemporaryDirectory(prefix="postroom-sendengine-") as work:
        context = make_context(root, Path(work), progress)
        progress(f"Building {tags[0]} from {base}")
        image_id = run_build(
            client, context, base, tags, inputs, force, base_image is None, progress
        )
    for tag in tags[1:]:
        client.api.tag(image_id, *split_tag(tag))
    image = client.images.get(image_id)
    return result(image, tags, inputs, built=True, started=started)


def run_build(
    client: Any,
    context: Path,
    base: str,
    tags: list[str],
    inputs: str,
    no_cache: bool,
    base_missing: bool,
    progress: Progress,
) -> str:
    """``docker build`` through the API, its steps passed on as progress; the image id."""
    build_args = {
        "BASE_IMAGE": base,
        "POSTROOM_VERSION": __version__,
        "CREATED": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "SOURCE": SOURCE_URL,
    }
    labels = {INPUTS_LABEL: inputs, BASE_LABEL: base}
    image_id = ""
    try:
        for chunk in client.api.build(
            path=str(context),
            tag=tags[0],
            buildargs=build_args,
            labels=labels,
            rm=True,
            forcerm=True,
            nocache=no_cache,
            decode=True,
        ):
            if "error" in chunk:
                raise ImageBuildError(build_error_sentence(str(chunk["error"]), base, base_missing))
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    progress(line.rstrip())
                built = re.match(r"Successfully built ([0-9a-f]+)", line)
                if built:
                    image_id = built.group(1)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    except (APIError, DockerException) as exc:
        raise ImageBuildError(build_error_sentence(str(exc), base, base_missing)) from None
    except OSError as exc:  # requests' connection errors are OSErrors
        raise ImageBuildError(
            f"the Docker engine stopped answering during the build ({exc.__class__.__name__}); "
            "check that it still runs, then build again."
        ) from None
    if not image_id:
        raise ImageBuildError("the Docker engine ended the build without naming an image.")
    return image_id


def build_error_sentence(error: str, base: str, base_missing: bool) -> str:
    detail = " ".join(error.split())[:300].rstrip(".")
    if base_missing:
        return (
            f"the build could not get the base image {base} ({detail}); where no registry is "
            "reachable, make one with `postroom sendengine base` and build with "
            "--base postroom/base:bookworm."
        )
    return f"the image build failed ({detail}); the build's output above shows the step."


def result(image: Any, tags: list[str], inputs: str, *, built: bool, started: float) -> ImageResult:
    return ImageResult(
        tags=tags,
        image_id=str(image.id),
        size_bytes=int(image.attrs.get("Size", 0)),
        inputs_sha256=inputs,
        built=built,
        seconds=round(time.monotonic() - started, 1),
    )
